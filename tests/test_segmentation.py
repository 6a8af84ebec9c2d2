"""The print's border in the extraction (gateway/matcher/features.py): which minutiae near it
are dropped as border minutiae (docs/matcher.md, "Session 8")."""

from __future__ import annotations

import numpy as np

from gateway.matcher import features


def _border_periods(seed: int) -> np.ndarray:
    """The distance of every minutia of a synthetic print to its border, in ridge periods."""
    from gateway.synth import finger

    pixels = finger(seed, 1, 1)
    f = features.extract_features(pixels)
    m = f.minutiae
    assert len(m) > 10
    ys, xs = m[:, 1].astype(int), m[:, 0].astype(int)
    return features.border_distance(f.block_mask, pixels.shape, ys, xs, 3 * f.period) / f.period


def test_the_border_margin_keeps_minutiae_from_half_a_period_inside():
    # the border filter drops the minutiae within BORDER_MARGIN periods of the border and keeps
    # the others: since session 8 it is half a period, so the minutiae 0.5-0.8 periods inside,
    # which 0.8 dropped (on FVC2004 DB2 true minutiae of the pale print border), stay
    d = np.concatenate([_border_periods(seed) for seed in range(1, 7)])
    assert (d > features.BORDER_MARGIN).all()
    assert ((d > 0.5) & (d <= 0.8)).sum() >= 3, np.sort(d)[:10]
