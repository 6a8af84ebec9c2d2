"""Segmentation hygiene of the extraction (gateway/matcher/features.py, session 8): flat
saturated areas (FVC2004 DB2's sensor frame of 255) are no print, and no minutia grows along
their edge."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from gateway.matcher import features


def _framed(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic print under a slanted saturated strip (255) on its right, the way FVC2004
    DB2's sensor frame covers every image; and the strip's pixels."""
    from gateway.synth import finger

    pixels = finger(seed, 1, 1).copy()
    h, w = pixels.shape
    y, x = np.mgrid[0:h, 0:w]
    strip = x > 0.62 * w + 0.15 * y
    pixels[strip] = 255
    return pixels, strip


def _near_strip(f: features.Features, strip: np.ndarray, within: float) -> int:
    distance = ndimage.distance_transform_edt(~strip)
    m = f.minutiae
    return int((distance[m[:, 1].astype(int), m[:, 0].astype(int)] < within).sum())


def test_no_minutia_grows_along_a_saturated_frame(monkeypatch):
    # the step from the print to the flat 255 strip makes a ridge along the edge in the
    # mean-removed image: without the rule minutiae sit on it, with it none is that close
    near = {}
    for size in (0, 15):
        monkeypatch.setattr(features, "SAT_SIZE", size)
        found = []
        for seed in (1, 3, 4):
            pixels, strip = _framed(seed)
            f = features.extract_features(pixels)
            assert len(f.minutiae) > 15
            within = features.BORDER_MARGIN * f.period
            found.append(_near_strip(f, strip, within + 0.5))
            if size:
                mask = features.pixel_mask(f.block_mask, pixels.shape)
                # the blocks mostly in the strip left the mask
                assert mask[strip].mean() < 0.3
        near[size] = found
    assert sum(near[0]) > 0, near
    assert near[15] == [0, 0, 0], near


def test_thin_saturated_valleys_are_no_flat_area():
    # a print whose valleys reach the maximum grey level has no flat saturated area; a
    # saturated square as wide as the opening has one, exactly its pixels
    h = w = 120
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    pixels = np.where(np.cos(2 * np.pi * (x + 0.3 * y) / 9.0) > -0.3, 255.0, 60.0)
    assert not features.saturated_areas(pixels, 15).any()
    pixels[30:60, 40:90] = 255
    area = features.saturated_areas(pixels, 15)
    assert area[30:60, 40:90].all()
    assert area.sum() < 30 * 50 + 200  # only the valleys that touch the square join it
    dark = pixels.copy()
    dark[30:60, 40:90] = 60
    assert not features.saturated_areas(dark, 15).any()  # the low level only with SAT_LOW


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_void_distance_is_the_distance_transform(seed):
    rng = np.random.default_rng(seed)
    area = ndimage.binary_dilation(rng.random((90, 70)) < 0.003, np.ones((9, 9), bool))
    void = features._Void(area)
    ys, xs = np.nonzero(np.ones(area.shape, bool))
    limit = 12.0
    got = void.distance(ys, xs, limit)
    edt = ndimage.distance_transform_edt(~area)[ys, xs]
    near = edt <= limit
    assert np.allclose(got[near], edt[near])
    assert (got[~near] > limit).all()
