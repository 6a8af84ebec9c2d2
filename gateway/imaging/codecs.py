"""Pluggable pixel decoders, keyed by the canonical compression code of ANSI/NIST-ITL.

Codes (ANSI/NIST-ITL 1-2011 Table 15, the CGA of tagged records): ``NONE``, ``WSQ20``, ``JPEGB``,
``JPEGL``, ``JP2``, ``JP2L``, ``PNG``; Type-4/7 GCA and NIEM XML use the numbers 0..6 for them.
``TIFF`` is not a standard code: it names the CCITT fax streams found in real Type-5/8 records.

Each :class:`Decoder` says whether it can run here (``available``); several may serve one code,
the first available one wins.  :func:`register_decoder` adds one (``prefer=True`` puts it first).
A decoder turns a whole stream into a numpy array (``uint8``/``uint16``, HxW or HxWxC); the
caller (:func:`gateway.imaging.decode`) has already checked the stream's header and its size.
"""

from __future__ import annotations

import faulthandler
import io
import os
import select
import signal
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .errors import DECODE_FAILED, UNKNOWN_COMPRESSION, ImagingError
from .headers import StreamHeader

NONE, WSQ20, JPEGB, JPEGL, JP2, JP2L, PNG, TIFF = (
    "NONE",
    "WSQ20",
    "JPEGB",
    "JPEGL",
    "JP2",
    "JP2L",
    "PNG",
    "TIFF",
)
CODES = (NONE, WSQ20, JPEGB, JPEGL, JP2, JP2L, PNG)
# Numeric codes of Type-4/7 GCA and of XML ImageCompressionAlgorithmCode (BRIEF 1.8).
NUMERIC_CODES = dict(enumerate(CODES))
_ALIASES = {
    "WSQ": WSQ20,  # legacy spelling in 0201 files (valid1.11.an2)
    "RAW": NONE,
    "JPEG": JPEGB,
    "JPG": JPEGB,
    "JPEG2000": JP2,
    "J2K": JP2,
    "TIF": TIFF,
}


def canonical_compression(value) -> str:
    """``"WSQ"`` -> ``"WSQ20"``, ``1`` or ``"1"`` -> ``"WSQ20"``, ``"jpegb"`` -> ``"JPEGB"``."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value in NUMERIC_CODES:
            return NUMERIC_CODES[value]
    elif isinstance(value, str):
        text = value.strip().upper()
        if text.isascii() and text.isdigit() and len(text) < 4 and int(text) in NUMERIC_CODES:
            return NUMERIC_CODES[int(text)]
        if text in CODES or text == TIFF:
            return text
        if text in _ALIASES:
            return _ALIASES[text]
    raise ImagingError(UNKNOWN_COMPRESSION, f"unknown compression code {value!r}")


@dataclass(frozen=True)
class Decoder:
    """One way of decoding one compression code.

    ``function(data, header)`` returns the pixels; ``probe()`` says whether the library it
    needs is importable and capable (evaluated once, never raising); ``accepts(header)`` whether
    it handles that particular stream (e.g. Pillow reads only 8-bit JPEG).
    """

    code: str
    name: str
    function: Callable[[bytes, StreamHeader], np.ndarray]
    probe: Callable[[], bool] = lambda: True
    accepts: Callable[[StreamHeader], bool] = lambda header: True
    _state: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def isolated(self) -> bool:
        """It runs in a forked child (see :func:`isolated`)."""
        return getattr(self.function, "isolated", False)

    @property
    def available(self) -> bool:
        if "available" not in self._state:
            try:
                self._state["available"] = bool(self.probe())
            except Exception:  # a broken optional library only makes the decoder unavailable
                self._state["available"] = False
        return self._state["available"]


_REGISTRY: dict[str, list[Decoder]] = {}


def register_decoder(decoder: Decoder, *, prefer: bool = False) -> None:
    """Add ``decoder`` for its code (first in line when ``prefer``)."""
    line = _REGISTRY.setdefault(decoder.code, [])
    line.insert(0, decoder) if prefer else line.append(decoder)


def prefer_in_process() -> None:
    """Put the in-process native decoders ahead of their isolated (forked) twins.

    For a process that is itself disposable, such as a gateway worker: a native decoder that
    crashes there kills only that worker, which its pool replaces, and each decode saves the
    cost of a fork.  Idempotent.
    """
    for line in _REGISTRY.values():
        line.sort(key=lambda d: d.isolated)


def unregister_decoder(decoder: Decoder) -> None:
    _REGISTRY.get(decoder.code, []).remove(decoder)


def decoders_for(code: str) -> list[Decoder]:
    """All decoders registered for ``code``, in order of preference."""
    return list(_REGISTRY.get(canonical_compression(code), ()))


def find_decoder(code: str, header: StreamHeader | None = None) -> Decoder | None:
    """The first available decoder of ``code`` (that accepts ``header``), or ``None``."""
    for decoder in decoders_for(code):
        if decoder.available and (header is None or decoder.accepts(header)):
            return decoder
    return None


def available_codecs() -> dict[str, bool]:
    """Each known code (the standard ones and TIFF) and whether it can be decoded here."""
    return {code: find_decoder(code) is not None for code in (*CODES, TIFF)}


# -- helpers ------------------------------------------------------------------------------------
def _importable(name: str) -> Callable[[], bool]:
    def probe() -> bool:
        __import__(name)
        return True

    return probe


def _pil_open(data: bytes, formats: list[str]):
    from PIL import Image as PILImage

    image = PILImage.open(io.BytesIO(data), formats=formats)
    image.load()
    return image


def pil_to_array(image) -> np.ndarray:
    """A Pillow image as uint8/uint16 numpy pixels: gray HxW or colour HxWx3 (alpha dropped)."""
    mode = image.mode
    if mode == "1":
        return np.asarray(image.convert("L"))
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode == "LA":
        return np.asarray(image)[..., 0]
    if mode in ("RGBA", "RGBX"):
        return np.asarray(image)[..., :3]  # alpha dropped without a converted copy
    if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(image.convert("RGB"))
    if mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16)
    if mode in ("I", "F"):
        return np.clip(np.asarray(image), 0, 65535).astype(np.uint16)
    return np.asarray(image)


# -- built-in decoders --------------------------------------------------------------------------
def _decode_pillow(fmt: str):
    def decode(data: bytes, header: StreamHeader) -> np.ndarray:
        return pil_to_array(_pil_open(data, [fmt]))

    return decode


def _decode_ljpeg(data: bytes, header: StreamHeader) -> np.ndarray:
    import imagecodecs

    if header.process == "jpeg-ls":
        return imagecodecs.jpegls_decode(data)
    return imagecodecs.ljpeg_decode(data)


def _probe_ljpeg() -> bool:
    import imagecodecs

    return bool(imagecodecs.LJPEG.available)


def _decode_jpeg_imagecodecs(data: bytes, header: StreamHeader) -> np.ndarray:
    import imagecodecs

    return imagecodecs.jpeg8_decode(data)


def _probe_jpeg8() -> bool:
    import imagecodecs

    return bool(imagecodecs.JPEG8.available)


def _decode_jpeg2k_imagecodecs(data: bytes, header: StreamHeader) -> np.ndarray:
    import imagecodecs

    return imagecodecs.jpeg2k_decode(data)


def _probe_jpeg2k() -> bool:
    import imagecodecs

    return bool(imagecodecs.JPEG2K.available)


def _probe_pil_jp2() -> bool:
    from PIL import features

    return bool(features.check("jpg_2000"))


def _probe_pil_wsq() -> bool:
    import wsq  # noqa: F401  (registers the Pillow plugin)

    return True


# Native decoders that are not memory-safe on hostile input.  Fuzzing (tests/test_imaging.py)
# crashed the interpreter with SIGSEGV in the NBIS WSQ decoder of PyPI ``wsq`` (one flipped bit
# in the entropy-coded data is enough) and in imagecodecs' ljpeg decoder.  Such decoders run in
# a short-lived forked child that sends the pixels back through a pipe: a crash of the child
# becomes an ImagingError.  Where fork is missing, only the in-process decoders remain.
ISOLATION_TIMEOUT = 20.0  # seconds for one isolated decode
_ARRAY_HEADER = struct.Struct(">4sBIII")  # dtype, ndim, shape (up to 3)


def isolated(function: Callable[[bytes, StreamHeader], np.ndarray]):
    """``function`` run in a forked child process; its crash or hang is an ImagingError."""

    def run(data: bytes, header: StreamHeader) -> np.ndarray:
        limit = (
            1 + _ARRAY_HEADER.size + header.width * header.height * max(header.components, 1) * 2
        )
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: decode, write, exit at once (no Python cleanup, no atexit)
            try:
                os.close(read_fd)
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 2)  # NBIS prints its diagnostics to stderr
                faulthandler.disable()  # a crash here is expected news, not a report
                try:
                    pixels = np.ascontiguousarray(function(data, header))
                    if pixels.dtype.itemsize > 2 or not 2 <= pixels.ndim <= 3:
                        raise ValueError(f"unexpected {pixels.dtype} array of {pixels.shape}")
                    shape = (*pixels.shape, 1)[:3]
                    dtype = pixels.dtype.str.encode().ljust(4)
                    out = b"A" + _ARRAY_HEADER.pack(dtype, pixels.ndim, *shape) + pixels.tobytes()
                except Exception as exc:  # the library's own error, sent back as text
                    out = b"E" + f"{type(exc).__name__}: {exc}".encode("utf-8", "replace")[:500]
                view = memoryview(out)
                while view:
                    view = view[os.write(write_fd, view) :]
            finally:
                os._exit(0)
        os.close(write_fd)
        chunks, received = [], 0
        deadline = time.monotonic() + ISOLATION_TIMEOUT
        try:
            while received <= limit:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([read_fd], [], [], left)[0]:
                    os.kill(pid, signal.SIGKILL)
                    raise ImagingError(DECODE_FAILED, "the decoder timed out")
                chunk = os.read(read_fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
                received += len(chunk)
        finally:
            os.close(read_fd)
            if received > limit:
                os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
        out = b"".join(chunks)
        if received > limit:
            raise ImagingError(DECODE_FAILED, "the decoder returned more pixels than announced")
        if os.WIFSIGNALED(status):
            raise ImagingError(
                DECODE_FAILED, f"the decoder crashed on this data (signal {os.WTERMSIG(status)})"
            )
        if out[:1] == b"E":
            raise ValueError(out[1:].decode("utf-8", "replace"))  # becomes DECODE_FAILED
        if out[:1] != b"A" or len(out) < 1 + _ARRAY_HEADER.size:
            raise ImagingError(DECODE_FAILED, "the decoder ended without an answer")
        code, ndim, *dims = _ARRAY_HEADER.unpack_from(out, 1)
        dtype = np.dtype(code.strip().decode())
        shape = tuple(dims[:ndim])
        if len(out) != 1 + _ARRAY_HEADER.size + dtype.itemsize * int(np.prod(shape)):
            raise ImagingError(DECODE_FAILED, "the decoder returned a damaged image")
        return np.frombuffer(out, dtype, offset=1 + _ARRAY_HEADER.size).reshape(shape)

    run.__name__ = f"isolated_{function.__name__}"
    run.isolated = True  # type: ignore[attr-defined]  # a mark the decoder table reads
    return run


def _probe_isolated(probe: Callable[[], bool]) -> Callable[[], bool]:
    return lambda: hasattr(os, "fork") and probe()


def _decode_wsq_native(data: bytes, header: StreamHeader) -> np.ndarray:
    import _wsq  # the C extension of PyPI wsq (what its Pillow plugin calls)

    pixels, width, height, _ppi = _wsq.decompress(data)
    return np.frombuffer(pixels, np.uint8, width * height).reshape(height, width)


def _decode_wsq_numpy(data: bytes, header: StreamHeader) -> np.ndarray:
    from . import wsq

    return wsq.decode(data, max_pixels=header.width * header.height)


def _wsq_numpy_accepts(header: StreamHeader) -> bool:
    from . import wsq

    return header.width * header.height <= wsq.HARD_MAX_PIXELS


for _decoder in (
    # ours first: pure numpy, so hostile input cannot crash the process, pixel-identical to
    # NBIS on conforming streams and about twice as fast (benchmarks/wsq_decode.py); NBIS stays for
    # images above 4096 x 4096 pixels, which ours refuses
    Decoder(WSQ20, "WSQ (numpy)", _decode_wsq_numpy, accepts=_wsq_numpy_accepts),
    Decoder(
        WSQ20, "wsq (NBIS, isolated)", isolated(_decode_wsq_native), _probe_isolated(_probe_pil_wsq)
    ),
    # the Pillow plugin's own C call, without Pillow's image object around it (a quarter less)
    Decoder(WSQ20, "wsq (NBIS, in process)", _decode_wsq_native, _probe_pil_wsq),
    Decoder(JPEGB, "Pillow JPEG", _decode_pillow("JPEG"), accepts=lambda h: h.precision == 8),
    Decoder(JPEGB, "imagecodecs jpeg8", _decode_jpeg_imagecodecs, _probe_jpeg8),
    Decoder(
        JPEGL,
        "imagecodecs ljpeg / jpegls (isolated)",
        isolated(_decode_ljpeg),
        _probe_isolated(_probe_ljpeg),
    ),
    Decoder(JPEGL, "imagecodecs ljpeg / jpegls (in process)", _decode_ljpeg, _probe_ljpeg),
    Decoder(JP2, "Pillow JPEG 2000 (OpenJPEG)", _decode_pillow("JPEG2000"), _probe_pil_jp2),
    Decoder(JP2, "imagecodecs jpeg2k", _decode_jpeg2k_imagecodecs, _probe_jpeg2k),
    Decoder(JP2L, "Pillow JPEG 2000 (OpenJPEG)", _decode_pillow("JPEG2000"), _probe_pil_jp2),
    Decoder(JP2L, "imagecodecs jpeg2k", _decode_jpeg2k_imagecodecs, _probe_jpeg2k),
    Decoder(PNG, "Pillow PNG", _decode_pillow("PNG")),
    Decoder(TIFF, "Pillow TIFF (CCITT fax, LZW ...)", _decode_pillow("TIFF")),
):
    register_decoder(_decoder)
del _decoder


# -- raw (NONE) ---------------------------------------------------------------------------------
RAW = "RAW"  # StreamHeader.kind of uncompressed data (geometry from the record, not the stream)


def raw_length(width: int, height: int, bits: int) -> int:
    """Bytes of an uncompressed image: rows of 1-bit pixels are padded to whole bytes."""
    if bits == 1:
        return (width + 7) // 8 * height
    return width * height * (bits // 8)


def _decode_raw(data: bytes, header: StreamHeader) -> np.ndarray:
    """Uncompressed pixels, row by row from the top left (ANSI/NIST-ITL 1-2011 7.7.11).

    BPX 1 is MSB-first with rows padded to whole bytes, 1 = black ink (Type-5/6 binary prints
    and Type-8 signatures; checked on the corpus: about 30 % of the bits of a print are set);
    8 and 16 are gray (16 big-endian), 24 and 48 interleaved RGB.
    """
    width, height, bits = header.width, header.height, header.bits
    need = raw_length(width, height, bits)
    buf = np.frombuffer(data, np.uint8, need)
    if bits == 1:
        rows = buf.reshape(height, (width + 7) // 8)
        ink = np.unpackbits(rows, axis=1)[:, :width]
        return np.where(ink == 1, 0, 255).astype(np.uint8)
    if bits == 8:
        return buf.reshape(height, width)
    if bits == 24:
        return buf.reshape(height, width, 3)
    if bits in (16, 48):
        return buf.view(">u2").astype(np.uint16).reshape(height, width, -1).squeeze(axis=2)
    raise ImagingError("IMG_UNSUPPORTED", f"uncompressed images of {bits} bits per pixel")


register_decoder(Decoder(NONE, "raw (1, 8, 16, 24, 48 bits per pixel)", _decode_raw))
