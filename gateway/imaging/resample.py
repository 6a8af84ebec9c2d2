"""Resolution normalisation: bring an image to 500 pixels per inch (the EBTS matching scale).

The scale comes from the image's ``ppi`` (and ``ppi_y`` for non-square pixels), which
:func:`gateway.imaging.decode_record` takes from THPS/TVPS with SLC (Types 10, 13-17) or from
1.012 NTR (binary Types 3-8).  Images already within 1 % of 500 ppi, and images of unknown scale
(SLC 0), are returned unchanged.  Resampling is Lanczos (Pillow), per channel.
"""

from __future__ import annotations

import numpy as np
from PIL import Image as PILImage

from .errors import TOO_LARGE, ImagingError
from .image import DEFAULT_MAX_SIDE, Image

TARGET_PPI = 500.0
TOLERANCE = 0.01  # relative: 495-505 ppi counts as 500 (19.69 ppmm = 500.1 ppi)


def to_500ppi(
    image: Image, *, target: float = TARGET_PPI, max_side: int = DEFAULT_MAX_SIDE
) -> Image:
    """``image`` resampled to ``target`` ppi; unchanged when its scale is unknown or close.

    The result may not exceed ``max_side`` on a side (an upsampled 4000-pixel image at 250 ppi
    would): that raises :class:`ImagingError` ``IMG_TOO_LARGE``.
    """
    ppi_x = image.ppi
    ppi_y = image.ppi_y or ppi_x
    if not ppi_x or not ppi_y or ppi_x <= 0 or ppi_y <= 0:
        return image
    if abs(ppi_x / target - 1) <= TOLERANCE and abs(ppi_y / target - 1) <= TOLERANCE:
        return image
    width = max(1, round(image.width * target / ppi_x))
    height = max(1, round(image.height * target / ppi_y))
    if width > max_side or height > max_side:
        raise ImagingError(
            TOO_LARGE, f"at {target:g} ppi the image would be {width} x {height} pixels"
        )
    source = PILImage.fromarray(np.ascontiguousarray(image.pixels))
    pixels = np.asarray(source.resize((width, height), PILImage.Resampling.LANCZOS))
    return Image(pixels, float(target), image.compression, image.bits)
