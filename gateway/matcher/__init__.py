"""The fingerprint matcher (pure numpy + scipy.ndimage): minutiae extraction and 1:1 comparison.

``extract(pixels, ppi=500) -> Template`` and ``compare(a, b) -> float`` (0..1, higher is more
alike, symmetric).  The design is described in ``docs/matcher.md``.
"""

from __future__ import annotations

import numpy as np

from . import mcc
from .features import extract_features
from .template import Template

__all__ = ["MATCH_THRESHOLD", "Template", "compare", "compare_detail", "extract"]

#: The 1:1 decision threshold of :func:`compare`: FMR 0.1 % over the 17,280 cross-finger pairs
#: of the six FVC sets B (FVC2000 DB1-3, FVC2004 DB2-4; ``benchmarks/accuracy.py``), where 12.6 %
#: of their genuine pairs fall below it (most of them FVC2004 DB2's).
MATCH_THRESHOLD = 0.036


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


def compare_detail(a: Template, b: Template) -> dict:
    """:func:`compare` with the evidence a person can check.

    Returns ``score`` (equal to ``compare(a, b)``); ``pairs``: a list of ``(i, j, similarity)``,
    the minutia ``i`` of ``a`` (row of ``a.minutiae``) paired with the minutia ``j`` of ``b``,
    for the pairs the score averages, best first; ``alignment``: the rigid transform that
    carries ``a`` onto ``b`` fitted to those pairs by least squares, ``{"rotation": radians,
    "dx": px, "dy": px, "residual": RMS distance in px after the fit}`` (None with fewer than
    two pairs); ``period_factor``: the ridge-period gate applied to the score.
    """
    swap = a.key > b.key  # the same canonical order as compare()
    first, second = (b, a) if swap else (a, b)
    pa, pb = first.prepared, second.prepared
    d = mcc.detail(pa, pb)
    rows = [
        (int(pa.index[i]), int(pb.index[j]), float(s))
        for (i, j), s in zip(d["pairs"], d["similarity"], strict=True)
    ]
    if swap:
        rows = [(j, i, s) for i, j, s in rows]
    alignment = None
    if len(rows) >= 2:
        pts_a = a.minutiae[[r[0] for r in rows], :2]
        pts_b = b.minutiae[[r[1] for r in rows], :2]
        alignment = _rigid_fit(pts_a, pts_b)
    return {
        "score": d["score"],
        "pairs": rows,
        "alignment": alignment,
        "period_factor": d["period_factor"],
    }


def _rigid_fit(src: np.ndarray, dst: np.ndarray) -> dict:
    """The rotation and translation that carry ``src`` onto ``dst`` (least squares, Kabsch)."""
    ca, cb = src.mean(0), dst.mean(0)
    h = (src - ca).T @ (dst - cb)
    angle = float(np.arctan2(h[0, 1] - h[1, 0], h[0, 0] + h[1, 1]))
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    shift = cb - rot @ ca
    moved = src @ rot.T + shift
    residual = float(np.sqrt(np.mean(np.sum((moved - dst) ** 2, 1))))
    return {
        "rotation": angle,
        "dx": float(shift[0]),
        "dy": float(shift[1]),
        "residual": residual,
    }
