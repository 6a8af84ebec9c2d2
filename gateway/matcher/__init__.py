"""The fingerprint matcher (pure numpy + scipy.ndimage): minutiae extraction and 1:1 comparison.

``extract(pixels, ppi=500) -> Template`` and ``compare(a, b) -> float`` (0..1, higher is more
alike, symmetric).  The design is described in ``docs/matcher.md``.
"""

from __future__ import annotations

import numpy as np

from . import mcc
from .features import extract_features
from .template import Template

__all__ = ["Template", "compare", "extract"]


def extract(pixels: np.ndarray, ppi: float = 500) -> Template:
    """Extract the template of a grey-scale fingerprint image (uint8 H x W, dark ridges).

    Images not at 500 ppi are rescaled first.  Deterministic.  Raises ValueError for an image
    that is not two-dimensional or smaller than 64 pixels a side.
    """
    f = extract_features(pixels, ppi)
    # the comparison descriptors are built on first use (Template.prepared): a gallery
    # enrolment or a search with the default second stage never needs them
    return Template(f.width, f.height, f.minutiae, f.block_mask, ppi, f.cores, f.period, f.quality)


def compare(a: Template, b: Template) -> float:
    """Similarity of two templates in [0, 1]; higher means more alike; compare(a, b) ==
    compare(b, a) exactly (the operands are put in a canonical order)."""
    if a.key > b.key:
        a, b = b, a
    return mcc.score(a.prepared, b.prepared)
