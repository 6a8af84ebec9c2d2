"""Standalone image files (.wsq, .jp2, .j2k, .jpg, .png, .tif): the one place that reads a file.

The format is told by the file's magic bytes, never by its name.
"""

from __future__ import annotations

import os

from .codecs import JP2, JPEGB, PNG, TIFF, WSQ20
from .errors import NO_HEADER, TOO_LARGE, ImagingError
from .headers import J2K, JPEG, WSQ, read_header, sniff
from .headers import JP2 as JP2_BOX
from .headers import PNG as PNG_KIND
from .headers import TIFF as TIFF_KIND
from .image import DEFAULT_MAX_SIDE, Image, decode

MAX_FILE_BYTES = 256 * 1024 * 1024
_KIND_TO_CODE = {WSQ: WSQ20, JPEG: JPEGB, PNG_KIND: PNG, JP2_BOX: JP2, J2K: JP2, TIFF_KIND: TIFF}


def load_image_file(
    path: str | os.PathLike, *, max_side: int = DEFAULT_MAX_SIDE, gray: bool = False
) -> Image:
    """Read and decode one image file.  ``ppi`` comes from the file where it says (WSQ NISTCOM,
    JFIF/PNG/TIFF density); otherwise it is ``None``.  Raises only :class:`ImagingError`
    (``IMG_FILE`` when the file cannot be read)."""
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise ImagingError(TOO_LARGE, f"{path}: {size} bytes is larger than any image file")
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ImagingError("IMG_FILE", f"cannot read {path}: {exc.strerror or exc}") from exc
    kind = sniff(data)
    if kind is None:
        raise ImagingError(NO_HEADER, f"{path}: not a WSQ, JPEG, JPEG 2000, PNG or TIFF file")
    code = _KIND_TO_CODE[kind]
    if kind == JPEG and read_header(data, kind).process in ("lossless", "jpeg-ls"):
        code = "JPEGL"
    image = decode(data, code, max_side=max_side, gray=gray)
    if image.ppi is None:
        ppi = _density(data, kind)
        if ppi:
            image = Image(image.pixels, ppi, image.compression, image.bits)
    return image


def _density(data: bytes, kind: str) -> float | None:
    """Pixels per inch from a JFIF APP0, PNG pHYs or TIFF resolution (via Pillow's header)."""
    if kind not in (JPEG, PNG_KIND, TIFF_KIND):
        return None
    try:
        import io

        from PIL import Image as PILImage

        fmt = {JPEG: "JPEG", PNG_KIND: "PNG", TIFF_KIND: "TIFF"}[kind]
        with PILImage.open(io.BytesIO(data), formats=[fmt]) as im:
            dpi = im.info.get("dpi")
        ppi = float(dpi[0]) if dpi else None
    except Exception:
        return None
    return ppi if ppi and 50 <= ppi <= 20000 else None
