"""The :class:`Image` value and :func:`decode`: bytes and a compression code in, pixels out.

Order of work in :func:`decode` (no decompression bombs): the declared size is checked first,
then the stream's own header is read cheaply (:mod:`.headers`) and checked, and only then is a
decoder run.  Whatever a decoder raises comes back as an :class:`ImagingError`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from . import codecs
from .codecs import NONE, RAW, TIFF, canonical_compression, find_decoder, raw_length
from .errors import (
    BAD_GEOMETRY,
    CODEC_UNAVAILABLE,
    CORRUPT,
    DECODE_FAILED,
    NO_DATA,
    NO_HEADER,
    RAW_SIZE_MISMATCH,
    TOO_LARGE,
    ImagingError,
)
from .headers import J2K, JP2, JPEG, PNG, WSQ, StreamHeader, read_header, sniff

DEFAULT_MAX_SIDE = 4000  # pixels; issue 4: refuse anything larger before decoding
RAW_BITS = (1, 8, 16, 24, 48)


@dataclass(frozen=True, eq=False)
class Image:
    """Decoded pixels and what is known about them.

    ``pixels`` is ``uint8``, HxW gray or HxWx3 RGB; ``ppi`` the resolution in pixels per inch
    (``None`` when unknown); ``compression`` the canonical code of the stream actually decoded;
    ``bits`` the bits per pixel of the source (BPX: 8 gray, 24 RGB, 1 binary, 16 deep gray).
    """

    pixels: np.ndarray
    ppi: float | None
    compression: str
    bits: int = 8
    ppi_y: float | None = None  # vertical resolution when it differs from ``ppi`` (TVPS)

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def is_color(self) -> bool:
        return self.pixels.ndim == 3

    def sha256(self) -> str:
        """Digest of the pixel values (with the shape), for regression checks."""
        digest = hashlib.sha256(repr(self.pixels.shape).encode())
        digest.update(np.ascontiguousarray(self.pixels).tobytes())
        return digest.hexdigest()

    def to_gray(self) -> Image:
        """This image with colour folded to luma (ITU-R BT.601 weights)."""
        if not self.is_color:
            return self
        return Image(to_gray(self.pixels), self.ppi, self.compression, self.bits, self.ppi_y)

    def __repr__(self) -> str:
        kind = "RGB" if self.is_color else "gray"
        return (
            f"<Image {self.width}x{self.height} {kind} {self.compression} "
            f"bits={self.bits} ppi={self.ppi}>"
        )


_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_GRAY_ROWS = 256  # rows converted at a time: the float copy stays small whatever the image


def to_gray(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim == 2:
        return pixels
    height = pixels.shape[0]
    out = np.empty(pixels.shape[:2], np.uint8)
    for top in range(0, height, _GRAY_ROWS):
        rgb = pixels[top : top + _GRAY_ROWS, :, :3].astype(np.float32)
        out[top : top + _GRAY_ROWS] = np.clip(np.rint(rgb @ _LUMA), 0, 255)
    return out


def _to_uint8(pixels: np.ndarray, precision: int) -> np.ndarray:
    """Scale deeper samples down to 8 bits (``precision`` significant bits)."""
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.bool_:
        return np.where(pixels, 255, 0).astype(np.uint8)
    if pixels.dtype.kind not in "ui":
        raise ImagingError(DECODE_FAILED, f"decoder returned {pixels.dtype} pixels")
    # Shifted in the decoder's own width (issue 14: no needless widening of deep images).
    top = precision if 8 < precision <= 16 else 16
    if pixels.dtype.kind == "i" or pixels.dtype.itemsize > 2:
        pixels = np.clip(pixels, 0, (1 << top) - 1).astype(np.uint16)
    elif top < 16:
        pixels = np.minimum(pixels, (1 << top) - 1)
    return (pixels >> (top - 8)).astype(np.uint8)


def _check_side(width, height, max_side: int, what: str) -> None:
    if width is not None and width > max_side or height is not None and height > max_side:
        raise ImagingError(
            TOO_LARGE,
            f"{what} size {width} x {height} exceeds the maximum of {max_side} x {max_side}",
        )


def _actual_code(declared: str, header: StreamHeader) -> str:
    """The compression code that matches the stream found (it may differ from the declared)."""
    if header.kind == WSQ:
        return codecs.WSQ20
    if header.kind == JPEG:
        return codecs.JPEGL if header.process in ("lossless", "jpeg-ls") else codecs.JPEGB
    if header.kind == PNG:
        return codecs.PNG
    if header.kind in (JP2, J2K):
        if declared in (codecs.JP2, codecs.JP2L):
            return declared
        return codecs.JP2L if header.process == "reversible" else codecs.JP2
    return TIFF


def decode(
    data,
    compression,
    *,
    width: int | None = None,
    height: int | None = None,
    bits: int = 8,
    max_side: int = DEFAULT_MAX_SIDE,
    ppi: float | None = None,
    gray: bool = False,
) -> Image:
    """Decode ``data`` compressed as ``compression`` (a CGA string or GCA number).

    ``width``/``height`` are the declared size (HLL/VLL: required for ``NONE``), ``bits`` the
    declared bits per pixel of uncompressed data.  Anything declared or found larger than
    ``max_side`` on a side is refused before decoding.  ``gray`` folds colour to gray.
    Raises only :class:`ImagingError`.
    """
    code = canonical_compression(compression)
    if data is None or len(data) == 0:
        raise ImagingError(NO_DATA, "there is no image data")
    _check_side(width, height, max_side, "declared")
    data = bytes(data)
    kind = sniff(data)
    if code == NONE:
        image = _decode_uncompressed(data, kind, width, height, bits, max_side, ppi)
    else:
        if kind is None:
            raise ImagingError(NO_HEADER, f"the data is not a {code} stream (no known signature)")
        image = _decode_stream(data, code, kind, max_side, ppi)
    return image.to_gray() if gray else image


def _decode_uncompressed(data, kind, width, height, bits, max_side, ppi) -> Image:
    if not width or not height or width < 0 or height < 0:
        raise ImagingError(BAD_GEOMETRY, "uncompressed data needs a positive width and height")
    if bits not in RAW_BITS:
        raise ImagingError(BAD_GEOMETRY, f"uncompressed data of {bits} bits per pixel")
    need = raw_length(width, height, bits)
    if len(data) != need and kind is not None:
        # Real Type-5/8 records say "uncompressed" and carry a CCITT fax TIFF (type_5_wvu.an2).
        return _decode_stream(data, NONE, kind, max_side, ppi)
    if len(data) < need:
        raise ImagingError(
            RAW_SIZE_MISMATCH,
            f"{len(data)} bytes of data for {width} x {height} x {bits} bits ({need} bytes)",
        )
    # Trailing bytes up to one row are tolerated (padding); more means the geometry is wrong.
    if len(data) - need > max(need // height, 1):
        raise ImagingError(
            RAW_SIZE_MISMATCH,
            f"{len(data)} bytes of data for {width} x {height} x {bits} bits ({need} bytes)",
        )
    components = 3 if bits in (24, 48) else 1
    header = StreamHeader(RAW, width, height, components, bits // components)
    pixels = _run(find_decoder(NONE), data, header)
    return Image(_to_uint8(pixels, header.precision), ppi, NONE, bits)


def _decode_stream(data: bytes, declared: str, kind: str, max_side: int, ppi) -> Image:
    header = read_header(data, kind)
    _check_side(header.width, header.height, max_side, f"{header.kind} header")
    code = _actual_code(declared, header)
    decoder = find_decoder(code, header)
    if decoder is None:
        raise ImagingError(
            CODEC_UNAVAILABLE,
            f"no {code} decoder for {header.precision}-bit, {header.components}-component "
            "images is available here",
        )
    pixels = _run(decoder, data, header)
    if pixels.ndim not in (2, 3) or pixels.shape[:2] != (header.height, header.width):
        raise ImagingError(
            CORRUPT,
            f"{header.kind} decoded to {pixels.shape[1::-1]} while its header says "
            f"{header.width} x {header.height}",
        )
    if pixels.ndim == 3:
        channels = pixels.shape[2]
        if channels == 1:
            pixels = pixels[..., 0]
        elif channels == 2:
            pixels = pixels[..., 0]  # gray + alpha
        elif channels >= 3:
            pixels = pixels[..., :3]
    pixels = _to_uint8(pixels, header.precision)
    bits = 1 if header.kind == TIFF and header.precision == 1 else header.bits
    return Image(np.ascontiguousarray(pixels), ppi or header.ppi, code, bits)


def _run(decoder, data: bytes, header: StreamHeader) -> np.ndarray:
    try:
        pixels = decoder.function(data, header)
        return np.asarray(pixels)
    except (ImagingError, MemoryError):  # (past the worker's memory: the job's answer says so)
        raise
    except Exception as exc:  # any library's error is a value here (issue 4)
        raise ImagingError(
            DECODE_FAILED, f"{decoder.name} cannot decode the data: {type(exc).__name__}: {exc}"
        ) from exc
