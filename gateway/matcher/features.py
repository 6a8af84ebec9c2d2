"""Minutiae extraction from a grey-scale fingerprint image (pure numpy + scipy.ndimage).

Pipeline (all at 500 ppi, see ``docs/matcher.md``):

1. short-time Fourier analysis on overlapping 32 x 32 windows (hop 16) of the mean-removed image:
   per block the ridge-band energy (segmentation), the dominant ridge orientation as a doubled-angle
   vector (smoothed, its length is the coherence) and the ridge frequency;
2. contextual filtering in the frequency domain: every block's spectrum is multiplied by a
   band-pass tuned to its smoothed frequency and an angular window around its smoothed orientation,
   and the blocks are overlap-added (square-root Hann analysis and synthesis windows);
3. binarisation (sign of the enhanced image inside the mask), Zhang-Suen thinning with a lookup
   table, crossing-number minutiae;
4. ridge tracing from every minutia: its direction, and the removal of spurs, short fragments,
   bridges, facing endings, clusters and border minutiae;
5. a quality per minutia from the local coherence and the distance to the print's border.

Coordinates are image pixels (x right, y down); a direction ``theta`` is ``atan2(dy, dx)`` in
those coordinates.  A ridge ending points away from its ridge; a bifurcation points along its
stem (away from the fork), which makes both types behave alike under ridge/valley inversion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

TARGET_PPI = 500.0
MAX_SIDE = 4000  # pixels at 500 ppi (the template stores block counts in a byte)
WIN = 32  # analysis window (pixels)
HOP = 16  # block size = hop between windows
MIN_PERIOD, MAX_PERIOD = 4.0, 18.0  # ridge period band searched (pixels at 500 ppi)
_CHUNK = 4  # block rows transformed at a time (even)
_PICK = 0.875  # on a later pass (enhance's ``near``), the blocks of a chunk are picked out (the
# others not transformed) only when fewer than this fraction of them are needed: picking costs
# a gather and a scatter, about what an eighth of the transforms saves

# contextual filter: radial Gaussian sigma (fraction of the block frequency) and the half-width of
# the angular window (radians), widened where the orientation is uncertain
RADIAL_SIGMA = 0.3
ANGULAR_BW = np.pi / 5
ANGULAR_BW_LOW_COH = np.pi / 4
# a second contextual filtering of the enhanced image (its own orientation and frequency fields,
# this angular half-width; None: one pass).  It bridges the broken ridges of dry prints, but
# alone it also loses true minutiae of clean prints (FVC2004 DB4's impostor tail rose), so the
# minutiae of both passes are merged: the second pass's, and the first pass's that it loses
# (none of its own within 0.8 periods) where the first pass's skeleton was clean, at most
# SECOND_PASS_KEEP crossing-number candidates per 100 squared ridge periods (smoothed over a
# block; None: the second pass's minutiae alone).  Merged, it is better than one pass on the
# six FVC sets (three-offset means) and on synthetic prints' EER; it lowers the clean "easy"
# synthetic prints' genuine scores, rescaled ones most, which real prints do not show (on
# since 0.5.0; docs/matcher.md, "Session 7" and "Session 8")
SECOND_PASS_BW: float | None = np.pi / 4
SECOND_PASS_KEEP: float | None = 16.0

ENDING, BIFURCATION = 1, 2

# orientation field: Gaussian smoothing of the doubled-angle vectors (in blocks); minutia
# directions from the structure tensor of the enhanced image around each minutia (else the
# block field)
ORIENT_SIGMA = 1.5
LOCAL_ORIENTATION = True
# segmentation: blocks with less than exp(-SEG_DROP) of the strong blocks' ridge energy are
# background (and at most the lower 45 % of the log-energy range)
SEG_DROP = 3.0
# an image whose blocks all carry about the same ridge-band energy is all print when that energy
# is above this (natural logarithm; a ridge amplitude of a few grey levels is about 15) and
# all background below it (a flat image: about -14)
SEG_FLOOR = 10.0
# resolutions (ppi) extracted as they are, the features then scaled to 500 ppi (outside: the
# image is rescaled first, since the period band and the windows are in pixels)
FEATURE_SCALING = (450.0, 650.0)
# spurious minutiae (lengths in ridge periods)
BORDER_MARGIN = 0.8  # closer than this to the print's border
LOOK_AHEAD = 2.0  # an ending whose ridge would run out of the print within this is a cut ridge
CLOSE = 0.5  # two minutiae closer than this
CLUSTER = 3  # this many other minutiae within 1.5 periods: a noisy place
FACING = True  # two endings facing each other within 2 periods: a broken ridge
MIN_QUALITY = 0.0  # minutiae of lower quality are dropped (0: none)
# finger quality (0-100, :func:`finger_quality`): the product of a clarity term, an area term
# (square root of the print's area over QUALITY_AREA pixels at 500 ppi, at most 1) and a
# minutiae term (count over QUALITY_MINUTIAE, at most 1).  No print at or below a mean block
# coherence of QUALITY_COH_LO (noise: 0.08-0.25); above it the clarity is that coherence
# plus QUALITY_ENERGY x (the share of the print's energy the first contextual filtering keeps
# - QUALITY_ENERGY_MID) minus QUALITY_DISAGREE x (the share of the print's pixels the two
# filtering passes binarise differently - QUALITY_DISAGREE_MID), over QUALITY_CLARITY (at
# most 1), and faded in over the first QUALITY_FADE of coherence above QUALITY_COH_LO (so
# that a print barely clearer than noise is near 0, not a step from 0 to about 40).  The MIDs
# are about the medians of the six FVC sets B, an unknown term (one pass) counts as its MID,
# and QUALITY_CLARITY keeps those sets' quality distribution about where the coherence alone
# put it.  Chosen on those 480 images at block-grid offsets 0, 5 and 11 (session 9,
# docs/matcher.md): disagreement weights 1.5-3 and energy weights 0.5-1 measured alike
QUALITY_COH_LO = 0.35
QUALITY_FADE = 0.15
QUALITY_CLARITY = 0.9
QUALITY_ENERGY, QUALITY_ENERGY_MID = 0.75, 0.4
QUALITY_DISAGREE, QUALITY_DISAGREE_MID = 2.0, 0.035
QUALITY_AREA = 60000.0
QUALITY_MINUTIAE = 12
CORE_INDEX = 1  # sign of the doubled-angle winding of a core (image coordinates, y down)


@dataclass
class Features:
    """The result of :func:`extract_features`."""

    width: int
    height: int
    minutiae: (
        np.ndarray
    )  # (n, 5) float32: x, y, theta, type (1 ending, 2 bifurcation), quality 0..1
    block_mask: np.ndarray  # (nby, nbx) bool: block (i, j) is centred on pixel (i*HOP, j*HOP)
    period: float  # median ridge period in pixels
    cores: np.ndarray  # (k, 2) float32: x, y of the cores found by the Poincare index (k <= 2)
    quality: int = 0  # 0-100, see :func:`finger_quality`


# --------------------------------------------------------------------------------------------
# lookup tables on the 8-neighbourhood code (bit 0 = N, then clockwise: NE, E, SE, S, SW, W, NW)


def _build_luts():
    codes = np.arange(256)
    bits = (codes[:, None] >> np.arange(8)) & 1  # (256, 8): P2..P9
    count = bits.sum(1)
    trans = ((bits == 0) & (np.roll(bits, -1, axis=1) == 1)).sum(1)
    p2, p4, p6, p8 = bits[:, 0], bits[:, 2], bits[:, 4], bits[:, 6]
    base = (count >= 2) & (count <= 6) & (trans == 1)
    sub1 = base & (p2 * p4 * p6 == 0) & (p4 * p6 * p8 == 0)
    sub2 = base & (p2 * p4 * p8 == 0) & (p2 * p6 * p8 == 0)
    return sub1, sub2, trans.astype(np.uint8), count.astype(np.uint8)


_ZS1, _ZS2, _CN, _COUNT = _build_luts()


def _row_order(lut: np.ndarray) -> np.ndarray:
    """The same table indexed by the row-major code (bit 0 = NW, N, NE, W, E, SW, S, 7 = SE)."""
    codes = np.arange(256)
    # row-major bit k is the neighbour of clockwise bit row_to_cw[k]
    row_to_cw = (7, 0, 1, 6, 2, 5, 4, 3)
    cw = sum(((codes >> k) & 1) << b for k, b in enumerate(row_to_cw))
    return lut[cw]


_ZS1_ROW, _ZS2_ROW = _row_order(_ZS1), _row_order(_ZS2)


# bit k of an 8-neighbour code as a uint8 factor: NumPy has no vector loop for a uint8 shift,
# and a multiplication (also modulo 256) gives the same bits several times faster
_BIT = tuple(np.uint8(1 << k) for k in range(8))


def _codes_at(flat: np.ndarray, idx: np.ndarray, wp: int) -> np.ndarray:
    """8-neighbour codes (bit 0 = N, then clockwise) of the pixels ``idx``: flat indices into a
    padded 0/1 uint8 array of width ``wp``."""
    # one index array, read through views shifted by each neighbour's offset
    m = wp + 1
    base = idx - m
    c = flat[m - wp :][base]
    c |= flat[m - wp + 1 :][base] * _BIT[1]
    c |= flat[m + 1 :][base] * _BIT[2]
    c |= flat[m + wp + 1 :][base] * _BIT[3]
    c |= flat[m + wp :][base] * _BIT[4]
    c |= flat[m + wp - 1 :][base] * _BIT[5]
    c |= flat[m - 1 :][base] * _BIT[6]
    c |= flat[:][base] * _BIT[7]
    return c


def _row_codes(flat: np.ndarray, lo: int, hi: int, wp: int) -> np.ndarray:
    """Row-major 8-neighbour codes of the flat pixels lo..hi-1 of a padded image of width wp
    (three neighbours above in bits 0-2, left and right in bits 3-4, three below in bits 5-7)."""
    # horizontal triples of the rows above and below, pairs of the row itself
    t = flat[lo - wp - 1 : hi + wp - 1].copy()
    t |= flat[lo - wp : hi + wp] * _BIT[1]
    t |= flat[lo - wp + 1 : hi + wp + 1] * _BIT[2]
    code = t[: hi - lo].copy()
    code |= flat[lo - 1 : hi - 1] * _BIT[3]
    code |= flat[lo + 1 : hi + 1] * _BIT[4]
    t *= _BIT[5]
    code |= t[2 * wp :]
    return code


_SPARSE = 8  # a sub-iteration looks only near the removed pixels when they are this sparse
# (fewer than 1 / _SPARSE of the ridge pixels removed by the last two sub-iterations)
_SORT = 16  # the neighbours of the removed pixels are sorted (not marked on an image) if they
# are fewer than 1 / _SORT of the image
_GATHER = 5  # otherwise it codes all ridge pixels by rows if they are over 1 / _GATHER of the span


def _distinct(a: np.ndarray) -> np.ndarray:
    """``np.unique(a)``: the distinct values of an integer array, ascending, found by a sort
    (NumPy 2's np.unique hashes first, several times slower on these arrays)."""
    a = np.sort(a, axis=None)
    keep = np.empty(a.size, bool)
    keep[:1] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


def thin(binary: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning of a boolean image; returns a one-pixel padded uint8 skeleton."""
    return _thin(binary)[0]


def _thin(binary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zhang-Suen thinning of a boolean image; returns a one-pixel padded uint8 skeleton and an
    ascending list of flat indices that holds every skeleton pixel (and maybe removed ones).

    Works on the flat padded image.  The first passes look at every ridge pixel (a list kept up
    to date); later ones only at the pixels next to those removed since the same sub-iteration
    last ran (the others cannot change), which gives exactly the classical result.
    """
    b = np.zeros((binary.shape[0] + 2, binary.shape[1] + 2), np.uint8)
    b[1:-1, 1:-1] = binary
    wp = b.shape[1]
    flat = b.reshape(-1)
    on = flat.view(bool)
    ridge = np.flatnonzero(on)  # the ridge pixels (the padding keeps every neighbour inside)
    if ridge.size == 0:
        return b, ridge
    stale = False  # ``ridge`` still lists pixels removed by sparse sub-iterations
    ring = np.array([-wp - 1, -wp, -wp + 1, -1, 0, 1, wp - 1, wp, wp + 1])
    # pixels removed by the last two sub-iterations (None: that sub-iteration has not run yet)
    history: list[np.ndarray | None] = [None, None]
    for _ in range(60):
        changed = False
        for lut, row_lut in ((_ZS1, _ZS1_ROW), (_ZS2, _ZS2_ROW)):
            if history[0] is None or (history[0].size + history[1].size) * _SPARSE > ridge.size:  # type: ignore[union-attr]
                if stale:
                    ridge = ridge[on[ridge]]
                    stale = False
                lo, hi = int(ridge[0]), int(ridge[-1]) + 1
                if ridge.size * _GATHER > hi - lo:  # dense: codes of the whole span, by rows
                    kill = np.take(row_lut, _row_codes(flat, lo, hi, wp))
                    kill &= on[lo:hi]
                    removed = np.flatnonzero(kill) + lo
                    stale = True
                else:  # codes of the ridge pixels only
                    kill = np.take(lut, _codes_at(flat, ridge, wp))
                    removed = ridge[kill]
                    if removed.size:
                        ridge = ridge[~kill]
            else:
                n_near = (history[0].size + history[1].size) * ring.size  # type: ignore[union-attr]
                if n_near * _SORT < on.size:  # few: sort the neighbours
                    near = np.concatenate(history)[:, None] + ring  # type: ignore[arg-type]
                    near = _distinct(near)
                    near = near[on[near]]
                else:
                    near = np.zeros(on.size, bool)
                    for r in history:
                        near[(r[:, None] + ring).ravel()] = True  # type: ignore[index]
                    near &= on
                    near = np.flatnonzero(near)
                removed = near[np.take(lut, _codes_at(flat, near, wp))]
                stale = True
            if removed.size:
                flat[removed] = 0
                changed = True
            history = [history[1], removed]
        if not changed:
            break
    return b, ridge


# --------------------------------------------------------------------------------------------
# frequency-domain analysis and enhancement


def _window() -> np.ndarray:
    w = np.sin(np.pi * (np.arange(WIN) + 0.5) / WIN)  # sqrt of a periodic Hann window
    return np.outer(w, w).astype(np.float32)


_WIN2 = _window()
_FY = np.fft.fftfreq(WIN)[:, None]
_FX = np.fft.rfftfreq(WIN)[None, :]
_RADIUS = np.hypot(_FY, _FX).astype(np.float32)
_PHI = np.arctan2(_FY, _FX).astype(np.float32)  # direction of the frequency vector (ridge normal)
_BAND = (_RADIUS >= 1.0 / MAX_PERIOD) & (_RADIUS <= 1.0 / MIN_PERIOD)
_COS2 = np.cos(2 * _PHI).astype(np.float32)
_SIN2 = np.sin(2 * _PHI).astype(np.float32)
# rfft stores the half plane: columns other than 0 and WIN/2 stand for two bins.
_WEIGHT = np.where((np.arange(_FX.shape[1]) == 0) | (np.arange(_FX.shape[1]) == WIN // 2), 1, 2)
_WEIGHT = (_WEIGHT[None, :] * _BAND).astype(np.float32)
# the ridge band only (the analysis ignores the other bins)
_BAND_IDX = np.flatnonzero(_BAND)
_WEIGHT_B = _WEIGHT.ravel()[_BAND_IDX]
_COS2_B = _COS2.ravel()[_BAND_IDX]
_SIN2_B = _SIN2.ravel()[_BAND_IDX]
_RADIUS_B = _RADIUS.ravel()[_BAND_IDX]
# the distinct radii, and the index of each bin's radius among them (WIN x WIN // 2 + 1)
_RADII, _RADIUS_OF = np.unique(_RADIUS, return_inverse=True)
_RADIUS_OF = _RADIUS_OF.reshape(_RADIUS.shape)


def _smooth(field: np.ndarray, sigma: float, weight: np.ndarray | None = None) -> np.ndarray:
    if weight is None:
        return ndimage.gaussian_filter(field, sigma, mode="nearest")
    num, den = _gaussian_stack([field * weight, weight], sigma, "nearest")
    return num / np.maximum(den, 1e-9)


def _gaussian_stack(fields, sigma: float, mode: str = "reflect") -> np.ndarray:
    """``ndimage.gaussian_filter(f, sigma, mode=mode)`` of every 2-D field (of one dtype) in one
    call on the stack (the same line filters, in the same axis order: the same values)."""
    return ndimage.gaussian_filter(np.stack(fields), (0, sigma, sigma), mode=mode)


def _box(mask: np.ndarray, r: int, op) -> np.ndarray:
    """``op`` (np.logical_or or np.logical_and) over the (2r + 1) x (2r + 1) square around each
    pixel, False outside the array: ``ndimage.binary_dilation`` / ``binary_erosion`` with that
    square (border value 0) on small arrays, without their call overhead."""
    h, w = mask.shape
    p = np.zeros((h + 2 * r, w + 2 * r), bool)
    p[r : r + h, r : r + w] = mask
    k = 2 * r + 1
    rows = p[:h].copy()
    for i in range(1, k):
        op(rows, p[i : i + h], out=rows)
    out = rows[:, :w].copy()
    for j in range(1, k):
        op(out, rows[:, j : j + w], out=out)
    return out


def _open2(mask: np.ndarray) -> np.ndarray:
    """``ndimage.binary_opening(mask, np.ones((2, 2), bool))``: erosion over the pixel and its
    neighbours above and to the left (False outside), then dilation over the pixel and its
    neighbours below and to the right."""
    ero = np.zeros(mask.shape, bool)
    ero[1:, 1:] = mask[1:, 1:] & mask[:-1, 1:] & mask[1:, :-1] & mask[:-1, :-1]
    out = ero.copy()
    out[:-1] |= ero[1:]
    out[:, :-1] |= out[:, 1:].copy()
    return out


def _segment(energy: np.ndarray) -> np.ndarray:
    """Block mask of the print from the ridge-band energy of each block."""
    loge = np.log(energy + 1e-6)
    hi = np.percentile(loge, 95)
    lo = np.percentile(loge, 5)
    if hi - lo < 1.0:
        # the same ridge-band energy everywhere: a flat image (no print), or an image that
        # is print everywhere (a crop); the finger quality (coherence) tells print from noise
        return np.full(energy.shape, float(np.median(loge)) > SEG_FLOOR)
    thr = max(lo + 0.45 * (hi - lo), hi - SEG_DROP)
    mask = _smooth(loge, 0.8) > thr
    mask = _open2(mask)  # ndimage.binary_opening(mask, np.ones((2, 2), bool))
    mask = _box(_box(mask, 1, np.logical_or), 1, np.logical_and)  # binary_closing, 3 x 3
    mask = ndimage.binary_fill_holes(mask)
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]  # (the pixels of each)
        mask = labels == (1 + int(np.argmax(sizes)))
    return mask


def pixel_mask(block_mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The segmentation mask at pixel resolution: every pixel takes its nearest block."""
    h, w = shape
    rows, cols = block_mask.shape
    # pixel y takes block min((y + HOP / 2) // HOP, rows - 1): runs of equal blocks
    ny = np.bincount(np.minimum((np.arange(h) + HOP // 2) // HOP, rows - 1), minlength=rows)
    nx = np.bincount(np.minimum((np.arange(w) + HOP // 2) // HOP, cols - 1), minlength=cols)
    return np.asarray(block_mask, bool).repeat(ny, axis=0).repeat(nx, axis=1)


def border_distance(
    block_mask: np.ndarray, shape: tuple[int, int], ys: np.ndarray, xs: np.ndarray, limit: float
) -> np.ndarray:
    """Euclidean distance from the pixels (ys, xs) to the nearest pixel outside the print: off
    the image, or in a background block of ``pixel_mask(block_mask, shape)``.  Exact where it is
    at most ``limit`` (a larger distance may come out larger than the true one, never below
    ``limit``); the same values as a Euclidean distance transform of the padded pixel mask."""
    h, w = shape
    rows, cols = block_mask.shape
    ys = np.asarray(ys, np.int64)
    xs = np.asarray(xs, np.int64)
    # the image edge: the row or column just outside it
    edge = np.minimum(np.minimum(ys + 1, h - ys), np.minimum(xs + 1, w - xs))
    d2 = edge * edge
    # blocks within reach of a background pixel at most ``limit`` away (beyond the whole grid
    # there is nothing to reach: a huge limit never sizes the padding)
    r = min(int(limit // HOP) + 1, max(rows, cols) + 1)
    bg = np.zeros((rows + 2 * r, cols + 2 * r), bool)  # the background, padded with False
    bg[r : r + rows, r : r + cols] = ~np.asarray(block_mask, bool)
    # pixel extent of every (padded) block row / column; the last ones reach the image edge
    bi = np.arange(-r, rows + r)
    bj = np.arange(-r, cols + r)
    ylo, yhi = bi * HOP - HOP // 2, np.where(bi == rows - 1, h - 1, bi * HOP + HOP // 2 - 1)
    xlo, xhi = bj * HOP - HOP // 2, np.where(bj == cols - 1, w - 1, bj * HOP + HOP // 2 - 1)
    iy = np.minimum((ys + HOP // 2) // HOP, rows - 1) + r
    ix = np.minimum((xs + HOP // 2) // HOP, cols - 1) + r
    off = np.arange(-r, r + 1)
    step = max(1, (1 << 20) // off.size**2)  # points at a time: (step, k, k) arrays of ~8 MB
    for lo in range(0, ys.size, step):
        y, x = ys[lo : lo + step, None, None], xs[lo : lo + step, None, None]
        ny = (iy[lo : lo + step, None] + off)[:, :, None]  # (n, k, 1)
        nx = (ix[lo : lo + step, None] + off)[:, None, :]  # (n, 1, k)
        dy = np.maximum(np.maximum(ylo[ny] - y, y - yhi[ny]), 0)
        dx = np.maximum(np.maximum(xlo[nx] - x, x - xhi[nx]), 0)
        blk = np.where(bg[ny, nx], dy * dy + dx * dx, np.iinfo(np.int64).max)
        d2[lo : lo + step] = np.minimum(d2[lo : lo + step], blk.reshape(len(y), -1).min(1))
    return np.sqrt(d2.astype(np.float64))


def _pad_reflect(img: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    """``np.pad(img, ((top, bottom), (left, right)), mode="reflect")`` for pads narrower than
    the image (plain slice copies: rows first, then columns over the padded rows)."""
    h, w = img.shape
    if not (0 < top < h - 1 and 0 < bottom < h - 1 and 0 < left < w - 1 and 0 < right < w - 1):
        return np.pad(img, ((top, bottom), (left, right)), mode="reflect")
    out = np.empty((h + top + bottom, w + left + right), img.dtype)
    mid = out[:, left : left + w]
    mid[top : top + h] = img
    mid[:top] = img[top:0:-1]
    mid[top + h :] = img[h - 2 : h - 2 - bottom : -1]
    out[:, :left] = out[:, 2 * left : left : -1]
    out[:, left + w :] = out[:, left + w - 2 : left + w - 2 - right : -1]
    return out


def _spectra(blocks: np.ndarray) -> np.ndarray:
    """Windowed spectra of a stack of WIN x WIN blocks (float32 in, complex64 out)."""
    return sfft.rfft2(np.multiply(blocks, _WIN2, dtype=np.float32))


def _filters(
    freq: np.ndarray, normal: np.ndarray, coh: np.ndarray, angular_bw: float = ANGULAR_BW
) -> np.ndarray:
    """Contextual filters (float32, one per block): radial Gaussian around the block frequency
    times a raised-cosine angular window around its ridge normal."""
    f32 = np.float32
    f0 = freq.astype(f32)[..., None]
    sig_r = f32(RADIAL_SIGMA) * f0 + f32(0.01)
    # the radial part at the distinct radii only (a fraction of the bins), then spread
    rad = _RADII - f0
    rad *= rad
    rad *= f32(-0.5) / (sig_r * sig_r)
    np.exp(rad, out=rad)
    filt = rad[..., _RADIUS_OF]
    # angle between the bin and the block's ridge normal, wrapped to [-pi/2, pi/2]
    dphi = _PHI - normal.astype(f32)[..., None, None]
    wrap = dphi * f32(1 / np.pi)
    np.rint(wrap, out=wrap)
    wrap *= f32(np.pi)
    dphi -= wrap
    # cos^2(pi/2 * dphi / bw) inside |dphi| < bw, zero outside: the scaled angle stays below
    # 3 pi / 2 (bw >= pi / 5), where the cosine is negative, so clipping it at zero is the edge
    bw = (angular_bw + (1 - coh) * ANGULAR_BW_LOW_COH).astype(f32)[..., None, None]
    dphi *= f32(np.pi / 2) / bw
    ang = np.cos(dphi, out=dphi)
    np.maximum(ang, 0, out=ang)
    ang *= ang
    filt *= ang
    filt[..., 0, 0] = 0
    return filt


def _reach(period: float) -> int:
    """How far outside the print (pixels, along each axis) :func:`extract_features` reads the
    enhanced image: the structure tensor of a minutia covers the pixels within
    round(1.2 period) + 1 (its gradient) on each axis, and a minutia lies more than
    BORDER_MARGIN * period (Euclidean) from the nearest pixel outside the print, so the square of
    half-side s around it, with 2 s^2 < margin^2, lies inside the print."""
    margin = BORDER_MARGIN * period
    s = int(margin / math.sqrt(2))
    while s > 0 and 2 * s * s >= margin * margin:
        s -= 1
    return max(int(round(1.2 * period)) + 1 - s, 0)


def _near_blocks(mask: np.ndarray, period: float) -> np.ndarray:
    """The blocks whose window reaches a pixel within ``_reach(period)`` of the print (block i's
    window covers the pixels from i*HOP - HOP to i*HOP + HOP - 1, the pixel mask of block j
    those from j*HOP - HOP/2 to j*HOP + HOP/2 - 1)."""
    d = (_reach(period) + HOP + HOP // 2 - 1) // HOP
    return _box(mask, d, np.logical_or)  # binary_dilation, (2 d + 1) squared


def enhance(
    img: np.ndarray,
    everywhere: bool = True,
    angular_bw: float = ANGULAR_BW,
    near: tuple[np.ndarray, float] | None = None,
):
    """Contextual filtering of a mean-removed image (ridges positive).

    Returns the enhanced image, the block mask, the block ridge-normal orientation, the block
    coherence and the median ridge period.  With ``everywhere`` false, the enhanced image is
    only computed near the print: it is exact at the pixels within ``_reach(period)`` (along
    each axis) of the pixel mask, and may be anything (zero without ``near``) further out.
    ``angular_bw`` is the half-width of the angular window where the ridge flow is clear
    (radians, at least pi / 5: the window's edge is found by clipping a cosine).  ``near``:
    with ``everywhere`` false, the print whose reach is exact, as the block mask and median
    ridge period of an earlier pass over an image of the same size (default: this image's own);
    ``img`` is then that pass's enhanced image, and its windows of zeros are not transformed
    (their spectrum is zero).

    The blocks are transformed a few block rows at a time (_CHUNK): the working arrays stay small,
    which saves the page faults of large temporary arrays and keeps them in the cache.
    """
    h, w = img.shape
    nby, nbx = -(-h // HOP) + 1, -(-w // HOP) + 1
    hp, wp = (nby + 1) * HOP, (nbx + 1) * HOP
    pad = _pad_reflect(img, HOP, hp - h - HOP, HOP, wp - w - HOP)
    blocks = np.lib.stride_tricks.sliding_window_view(pad, (WIN, WIN))[::HOP, ::HOP]
    blocks = blocks[:nby, :nbx]
    chunks = range(0, nby, _CHUNK)
    power = np.empty((nby, nbx, _BAND_IDX.size), np.float32)
    spectra = []
    live = None  # the blocks whose window holds a pixel other than zero (None: all)
    if near is not None:
        # an earlier pass's output is zero where it was not synthesised, and a window of zeros
        # has a zero spectrum: not transformed (only the windows a block or more away from
        # that pass's blocks are looked at)
        live = _box(_near_blocks(*near), 1, np.logical_or)
        far = np.nonzero(~live)
        live[far] = blocks[far].any(axis=(1, 2))
    for r in chunks:
        rows = blocks[r : r + _CHUNK]
        pick = None if live is None else live[r : r + _CHUNK]
        if pick is None or pick.mean() >= _PICK:
            spec = _spectra(rows)
        else:
            spec = np.zeros(rows.shape[:2] + (WIN, WIN // 2 + 1), np.complex64)
            idx = np.nonzero(pick)
            if idx[0].size:
                spec[idx] = _spectra(rows[idx])
        spectra.append(spec)
        band = spec.reshape(-1, WIN * (WIN // 2 + 1))[:, _BAND_IDX]
        p = power[r : r + _CHUNK].reshape(-1, _BAND_IDX.size)
        np.multiply(band.real, band.real, out=p)
        p += band.imag * band.imag
    power *= _WEIGHT_B
    energy = power.sum(2) + 1e-9
    mask = _segment(energy)

    # orientation of the ridge normal (doubled angle), coherence
    p2 = power * power  # sharpen towards the spectral peak
    e2 = p2.sum(2) + 1e-12
    c2 = (p2 * _COS2_B).sum(2) / e2
    s2 = (p2 * _SIN2_B).sum(2) / e2
    freq = (p2 * _RADIUS_B).sum(2) / e2
    wgt = np.sqrt(energy) * (0.2 + mask)
    wgt = wgt / wgt.max()
    # (_smooth of c2 and s2 with the weight wgt, in one call)
    sc, ss, den = _gaussian_stack([c2 * wgt, s2 * wgt, wgt], ORIENT_SIGMA, "nearest")
    den = np.maximum(den, 1e-9)
    sc /= den
    ss /= den
    coh = np.clip(np.hypot(sc, ss), 0, 1)
    normal = 0.5 * np.arctan2(ss, sc)
    freq = _smooth(freq, 2.0, wgt * np.hypot(c2, s2))
    freq = np.clip(freq, 1.0 / 14, 1.0 / 5)
    inside = freq[mask] if mask.any() else freq.ravel()
    period = float(1.0 / np.median(inside))

    # the blocks to synthesise: all, or those near the print (this image's, or ``near``)
    if everywhere:
        need = np.ones((nby, nbx), bool)
    else:
        need = _near_blocks(mask, period) if near is None else _near_blocks(*near)

    # filter, inverse transform and overlap-add (block row i covers rows i*HOP .. i*HOP+WIN-1
    # of the padded image; _CHUNK is even, so the parity of a row within a chunk is its own, and
    # the column range starts at an even column: every pixel adds up its blocks in one order)
    acc = np.zeros((hp, wp), np.float32)
    for r, spec in zip(chunks, spectra, strict=True):
        cols = np.flatnonzero(need[r : r + _CHUNK].any(0))
        if cols.size == 0:
            continue
        c0, c1 = cols[0] - cols[0] % 2, cols[-1] + 1
        sl = (slice(r, r + _CHUNK), slice(c0, c1))
        spec = spec[:, c0:c1]
        sel = need[sl]
        # (on a later pass, the blocks outside the reach may as well be synthesised)
        if sel.all() or (near is not None and sel.mean() >= _PICK):
            spec *= _filters(freq[sl], normal[sl], coh[sl], angular_bw)
            out = sfft.irfft2(spec, s=(WIN, WIN))
            out *= _WIN2
        else:  # only the blocks needed (the others add zeros)
            sel = np.nonzero(sel)  # type: ignore[assignment]
            part = spec[sel]
            part *= _filters(freq[sl][sel], normal[sl][sel], coh[sl][sel], angular_bw)
            part = sfft.irfft2(part, s=(WIN, WIN))
            part *= _WIN2
            out = np.zeros(spec.shape[:2] + (WIN, WIN), np.float32)
            out[sel] = part
        for dy in (0, 1):
            for dx in (0, 1):
                sub = out[dy::2, dx::2]
                ny, nx = sub.shape[:2]
                y0, x0 = (r + dy) * HOP, (c0 + dx) * HOP
                tile = acc[y0 : y0 + ny * WIN, x0 : x0 + nx * WIN].reshape(ny, WIN, nx, WIN)
                tile += sub.transpose(0, 2, 1, 3)
    enhanced = acc[HOP : HOP + h, HOP : HOP + w]
    return enhanced, mask, normal, coh, period


# --------------------------------------------------------------------------------------------
# tracing


@lru_cache(maxsize=16)
def _walk_tables(w: int):
    """For each 8-neighbour code (clockwise bits from N) of a pixel in an array of width w: the
    offsets of its neighbours in tracing order (4-neighbours first, then diagonals), and the
    offsets of one starting pixel per branch (runs of the 8-circle; a 4-neighbour if the run has
    one)."""
    circle = (-w, -w + 1, 1, w + 1, w, w - 1, -1, -w - 1)  # N, NE, E, SE, S, SW, W, NW
    order = (0, 2, 4, 6, 1, 3, 5, 7)
    steps, starts = [], []
    for code in range(256):
        on = [(code >> k) & 1 == 1 for k in range(8)]
        steps.append(tuple(circle[k] for k in order if on[k]))
        first = []
        for i in range(8):
            if on[i] and not on[i - 1]:
                run: list[int] = []
                j = i
                while on[j % 8] and len(run) < 8:
                    run.append(j % 8)
                    j += 1
                best = next((k for k in run if k % 2 == 0), run[0])
                first.append(circle[best])
        starts.append(tuple(first))
    return tuple(steps), tuple(starts)


class _Tracer:
    """Walks a one-pixel skeleton (flat indices into the padded array)."""

    def __init__(self, skel: np.ndarray, cn: np.ndarray, code: np.ndarray):
        """``cn``: crossing number, ``code``: 8-neighbour code (bit 0 = N, then clockwise) of
        every skeleton pixel (arrays of the skeleton's shape)."""
        self.w = skel.shape[1]
        self.steps, self.starts = _walk_tables(self.w)
        self.cn = cn.ravel().tobytes()
        self.code = code.ravel().tobytes()

    def trace(self, start: int, visited: set, maxlen: int, through=()):
        """Follow the ridge from ``start``; returns (path, kind) with kind 0 (still running after
        ``maxlen``), 1 (ran into an ending) or 3 (ran into a junction).  Pixels in ``through``
        (the junction the trace leaves) never stop it."""
        path = [start]
        cur = start
        cn, code, steps = self.cn, self.code, self.steps
        visited.add(cur)
        for k in range(maxlen):
            c = cn[cur]
            if k and c != 2 and cur not in through:
                return path, (1 if c == 1 else 3)
            nxt = -1
            for o in steps[code[cur]]:
                q = cur + o
                if q not in visited:
                    if nxt < 0:
                        nxt = q
                    visited.add(q)
            if nxt < 0:
                return path, 1
            path.append(nxt)
            cur = nxt
        return path, 0

    def branches(self, p: int):
        """One starting pixel per branch leaving a junction pixel (runs of the 8-circle)."""
        return [p + o for o in self.starts[self.code[p]]]


def _gradient_at(img: np.ndarray, flat: np.ndarray):
    """``np.gradient(img)`` (float32 in) at the flat pixel indices ``flat``: the same values,
    computed at those pixels only (central differences, one-sided at the image edges)."""
    h, w = img.shape
    f = img.reshape(-1)
    y, x = np.divmod(flat, w)
    # neighbours along x and y, and the divisor (2 inside, 1 at an edge)
    xl, xr = np.where(x > 0, flat - 1, flat), np.where(x < w - 1, flat + 1, flat)
    yl, yr = np.where(y > 0, flat - w, flat), np.where(y < h - 1, flat + w, flat)
    gx = f[xr] - f[xl]
    gx /= np.where((x > 0) & (x < w - 1), 2, 1).astype(gx.dtype)
    gy = f[yr] - f[yl]
    gy /= np.where((y > 0) & (y < h - 1), 2, 1).astype(gy.dtype)
    return gx, gy


def _disc_gradients(img: np.ndarray, xs: np.ndarray, ys: np.ndarray, r: int):
    """``np.gradient(img)`` on the squares of half-side r around the pixels (ys, xs), shape
    (n, 2r + 1, 2r + 1) each, and the mask of the square pixels inside the image (None: all
    are); outside the image the values are those of pixel (0, 0), as with
    ``_gradient_at(img, np.where(inside, flat, 0))``.  Squares one pixel or more inside the
    image are plain central differences of a patch (the same values)."""
    h, w = img.shape
    n, k = ys.size, 2 * r + 1
    ax = np.empty((n, k, k), img.dtype)
    ay = np.empty((n, k, k), img.dtype)
    clear = (ys > r) & (ys < h - 1 - r) & (xs > r) & (xs < w - 1 - r)
    if clear.any():
        sel = np.nonzero(clear)[0]
        patch = np.lib.stride_tricks.sliding_window_view(img, (k + 2, k + 2))
        patch = patch[ys[sel] - r - 1, xs[sel] - r - 1]
        two = img.dtype.type(2)
        ax[sel] = np.subtract(patch[:, 1:-1, 2:], patch[:, 1:-1, :-2]) / two
        ay[sel] = np.subtract(patch[:, 2:, 1:-1], patch[:, :-2, 1:-1]) / two
    if clear.all():
        return ax, ay, None
    off = np.arange(-r, r + 1)
    yy = ys[:, None, None] + off[None, :, None]
    xx = xs[:, None, None] + off[None, None, :]
    inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
    sel = np.nonzero(~clear)[0]
    flat = np.where(inside[sel], yy[sel] * w + xx[sel], 0)
    ax[sel], ay[sel] = _gradient_at(img, flat)
    return ax, ay, inside


def _local_orientation(img: np.ndarray, xs: np.ndarray, ys: np.ndarray, radius: int):
    """Ridge-normal direction (mod pi) at the given pixels from the gradient structure tensor
    over a Gaussian-weighted disc around each."""
    r = radius
    off = np.arange(-r, r + 1)
    wgt = np.exp(-(off[:, None] ** 2 + off[None, :] ** 2) / (2 * (r / 2) ** 2))
    # the disc around each pixel; outside the image the tensor is zero
    ax, ay, inside = _disc_gradients(img, np.asarray(xs), np.asarray(ys), r)
    if inside is not None:
        wgt = np.where(inside, wgt, 0)
    c2 = ((ax * ax - ay * ay) * wgt).sum((1, 2))
    s2 = (2 * ax * ay * wgt).sum((1, 2))
    return 0.5 * np.arctan2(s2, c2)


def find_cores(normal: np.ndarray, bmask: np.ndarray) -> np.ndarray:
    """Cores (Poincare index +1/2 over 2 x 2 block loops) of the block orientation field."""
    z = np.exp(2j * normal)
    zr, zi = _gaussian_stack([z.real, z.imag], 1.0)
    z = zr + 1j * zi
    ang = np.angle(z)
    loop = [ang[:-1, :-1], ang[:-1, 1:], ang[1:, 1:], ang[1:, :-1]]
    total = sum(_angle_diff(loop[(i + 1) % 4], loop[i]) for i in range(4))
    index = np.rint(total / (2 * np.pi))
    inner = _box(bmask, 1, np.logical_and)  # binary_erosion, 3 x 3
    ok = inner[:-1, :-1] & inner[1:, 1:] & inner[:-1, 1:] & inner[1:, :-1]
    ys, xs = np.nonzero((index == CORE_INDEX) & ok)
    pts = np.stack([(xs + 0.5) * HOP, (ys + 0.5) * HOP], axis=1).astype(np.float32)
    return pts[:2]


def _angle_diff(a, b):
    return (a - b + np.pi) % (2 * np.pi) - np.pi


_DENSE_PAIRS = 1 << 16  # pairs_within: at most this many candidate pairs, an all-pairs matrix


def pairs_within(ax, ay, bx, by, r: float, same: bool = False):
    """Every pair (i, j) of points a[i], b[j] at most ``r`` apart, with their distance
    ``np.hypot(ax[i] - bx[j], ay[i] - by[j])`` (the same values as an all-pairs matrix, in
    memory proportional to the pairs found): the points of b are bucketed on a grid of cells of
    side ``r`` and each point of a looks into the 3 x 3 cells around its own.  ``same``: a and
    b are one set, and the pairs (i, i) are left out.  Up to ``_DENSE_PAIRS`` candidate pairs
    (every minutiae list of a real print) the matrix itself is cheaper and is used."""
    empty = np.zeros(0, np.intp)
    if len(ax) == 0 or len(bx) == 0:
        return empty, empty, np.zeros(0)
    if len(ax) * len(bx) <= _DENSE_PAIRS:
        full = np.hypot(ax[:, None] - bx[None, :], ay[:, None] - by[None, :])
        near = full <= r
        if same:
            np.fill_diagonal(near, False)
        i, j = np.nonzero(near)  # (row-major, as the grid's result is ordered)
        return i, j, full[i, j]
    side = max(float(r), 1.0) * (1 + 1e-6)  # (a cell wider than r: rounding never splits a pair)
    acx = np.floor(np.asarray(ax, np.float64) / side).astype(np.int64)
    acy = np.floor(np.asarray(ay, np.float64) / side).astype(np.int64)
    bcx = np.floor(np.asarray(bx, np.float64) / side).astype(np.int64)
    bcy = np.floor(np.asarray(by, np.float64) / side).astype(np.int64)
    x0, y0 = min(acx.min(), bcx.min()) - 1, min(acy.min(), bcy.min()) - 1
    span = max(acx.max(), bcx.max()) - x0 + 2
    key = (bcy - y0) * span + (bcx - x0)
    order = np.argsort(key, kind="stable")
    skey = key[order]
    akey = (acy - y0) * span + (acx - x0)
    ii, jj = [], []
    for oy in (-1, 0, 1):
        for ox in (-1, 0, 1):
            want = akey + (oy * span + ox)
            lo = np.searchsorted(skey, want, "left")
            n = np.searchsorted(skey, want, "right") - lo
            if not n.any():
                continue
            i = np.repeat(np.arange(len(ax)), n)
            first = np.repeat(lo - np.cumsum(n) + n, n)  # each run's start, per element
            jj.append(order[first + np.arange(i.size)])
            ii.append(i)
    if not ii:
        return empty, empty, np.zeros(0)
    i, j = np.concatenate(ii), np.concatenate(jj)
    if same:
        keep = i != j
        i, j = i[keep], j[keep]
    d = np.hypot(ax[i] - bx[j], ay[i] - by[j])
    keep = d <= r
    i, j, d = i[keep], j[keep], d[keep]
    o = np.lexsort((j, i))  # a stable, row-major order whatever the grid
    return i[o], j[o], d[o]


# --------------------------------------------------------------------------------------------


def _rescale(pixels: np.ndarray, ppi: float) -> np.ndarray:
    img = np.asarray(pixels, dtype=np.float32)
    if ppi and abs(ppi - TARGET_PPI) > 0.01 * TARGET_PPI:
        scale = TARGET_PPI / ppi
        if scale < 1:  # shrinking: a Gaussian low-pass first, so no ridge aliases
            sigma = 0.5 * math.sqrt(1 / scale**2 - 1)
            img = ndimage.gaussian_filter(img, sigma, mode="nearest")
        img = ndimage.zoom(img, scale, order=1, mode="nearest")
    return img


def extract_features(pixels: np.ndarray, ppi: float = TARGET_PPI) -> Features:
    """Minutiae, block mask and ridge period of a fingerprint image (uint8, dark ridges)."""
    pixels = np.asarray(pixels)
    if pixels.ndim != 2 or min(pixels.shape) < 2 * WIN:
        raise ValueError(f"need a grey-scale image of at least {2 * WIN} pixels a side")
    if not (ppi > 0 and np.isfinite(ppi)):
        raise ValueError(f"bad resolution: {ppi!r}")
    ppi = float(ppi)
    scale = TARGET_PPI / ppi
    h, w = (max(1, int(round(n * scale))) for n in pixels.shape)  # the size at 500 ppi
    if max(h, w) > MAX_SIDE:
        raise ValueError(f"image of {w} x {h} pixels at 500 ppi: larger than {MAX_SIDE}")
    if (
        abs(ppi - TARGET_PPI) > 0.01 * TARGET_PPI
        and FEATURE_SCALING[0] <= ppi <= FEATURE_SCALING[1]
    ):
        # extracted at the image's own resolution, the features scaled to 500 ppi
        return _scaled(_extract(np.asarray(pixels, np.float32), scale * scale), scale, (h, w))
    return _extract(_rescale(pixels, ppi))


def _scaled(f: Features, scale: float, shape: tuple[int, int]) -> Features:
    """Features extracted at another resolution brought to 500 ppi: coordinates and period
    times ``scale``, the block mask resampled on the 500 ppi block grid (each block takes the
    native pixel mask at its centre), the quality's area term measured at 500 ppi."""
    h, w = shape
    m = f.minutiae.copy()
    m[:, 0] = np.clip(m[:, 0] * scale, 0, w - 1)
    m[:, 1] = np.clip(m[:, 1] * scale, 0, h - 1)
    native = pixel_mask(f.block_mask, (f.height, f.width))
    rows, cols = -(-h // HOP) + 1, -(-w // HOP) + 1
    ys = np.minimum(np.rint(np.minimum(np.arange(rows) * HOP, h - 1) / scale), f.height - 1)
    xs = np.minimum(np.rint(np.minimum(np.arange(cols) * HOP, w - 1) / scale), f.width - 1)
    bmask = native[ys.astype(int)[:, None], xs.astype(int)[None, :]]
    cores = (f.cores * scale).astype(np.float32)
    return Features(w, h, m, bmask, f.period * scale, cores, f.quality)


def _extract(img: np.ndarray, area_scale: float = 1.0) -> Features:
    """:func:`extract_features` of a float32 image at the resolution it is (all lengths in
    ridge periods, so 450-650 ppi work as well as 500); ``area_scale`` converts its pixel
    areas to 500 ppi (for the quality)."""
    h, w = img.shape
    # minus the local mean: ridges (dark) positive
    mean = ndimage.uniform_filter(img, 15, mode="reflect")
    img = np.subtract(mean, img, out=mean)  # (the caller's array is never written)
    enhanced, bmask, normal, coh, period = enhance(img, everywhere=False)
    if SECOND_PASS_BW is None:
        return _minutiae(enhanced, bmask, normal, coh, period, area_scale)
    # (the second enhanced image is read where the first one is: near the first pass's print)
    again = enhance(enhanced, False, SECOND_PASS_BW, (bmask, period))[0]
    # (both passes share the block fields: their pixel mask and cores are computed once)
    mask, cores = pixel_mask(bmask, (h, w)), find_cores(normal, bmask)
    ridge = _ridge_clarity(img, enhanced, again, mask)  # (for the finger quality)
    second = _minutiae(
        again, bmask, normal, coh, period, area_scale, mask=mask, cores=cores, clarity=ridge
    )
    if SECOND_PASS_KEEP is None:
        return second
    candidates: list = []
    first = _minutiae(
        enhanced, bmask, normal, coh, period, area_scale, candidates, mask=mask, cores=cores
    )
    if not candidates or len(first.minutiae) == 0:
        return second
    ys, xs = candidates[0]  # the first skeleton's crossing-number candidates
    clean = _clean_blocks(ys, xs, bmask, period)
    m1, m2 = first.minutiae, second.minutiae
    lost = np.ones(len(m1), bool)
    if len(m2):
        i, _, _ = pairs_within(m1[:, 0], m1[:, 1], m2[:, 0], m2[:, 1], 0.8 * period)
        lost[i] = False  # a minutia of the second pass within 0.8 periods
    bi, bj = _block_of(m1[:, 1].astype(int), m1[:, 0].astype(int), bmask.shape)
    m = np.concatenate([m2, m1[lost & clean[bi, bj]]])
    m = m[np.lexsort((m[:, 0], m[:, 1]))]  # row-major, as one extraction lists them
    quality = finger_quality(bmask, coh, len(m), area_scale, *ridge)
    return Features(second.width, second.height, m, bmask, period, second.cores, quality)


def _ridge_clarity(
    img: np.ndarray, enhanced: np.ndarray, again: np.ndarray, mask: np.ndarray
) -> tuple[float | None, float | None]:
    """For :func:`finger_quality`, over the print's pixels (``mask``): the share of the
    mean-removed image's energy that the first contextual filtering keeps (``enhanced``: ridges
    kept, dots, smudges and noise off the ridge band and orientation removed), and the share
    of pixels whose sign (ridge or valley) the second filtering (``again``) turns over (places
    where the first binarisation was a guess).  (None, None) without a print."""
    if not mask.any():
        return None, None
    e, o = enhanced[mask], img[mask]
    total = float(np.dot(o, o))
    energy = float(np.dot(e, e)) / total if total > 0 else None
    disagree = float(np.count_nonzero((e > 0) != (again[mask] > 0))) / e.size
    return disagree, energy


def _block_of(ys: np.ndarray, xs: np.ndarray, shape: tuple[int, int]):
    """The block of each pixel (ys, xs), the one whose pixel mask holds it (:func:`pixel_mask`)."""
    rows, cols = shape
    return np.minimum((ys + HOP // 2) // HOP, rows - 1), np.minimum(
        (xs + HOP // 2) // HOP, cols - 1
    )


def _clean_blocks(ys: np.ndarray, xs: np.ndarray, bmask: np.ndarray, period: float) -> np.ndarray:
    """The print's blocks where a skeleton is clean: its crossing-number candidates (the pixels
    (ys, xs): endings and junction pixels before any filter) counted per block, smoothed
    (Gaussian, sigma one block, normalised by the print's blocks around), at most
    SECOND_PASS_KEEP per 100 squared ridge periods.  Dry, dotted or smudged places have
    several times more than clear ridges (docs/matcher.md, "Session 8")."""
    rows, cols = bmask.shape
    bi, bj = _block_of(ys, xs, bmask.shape)
    count = np.bincount(bi * cols + bj, minlength=rows * cols).reshape(rows, cols)
    num, den = _gaussian_stack(
        [count.astype(np.float64), bmask.astype(np.float64)], 1.0, "constant"
    )
    density = num / np.maximum(den, 1e-9) * (100 * period * period / (HOP * HOP))
    return bmask & (density <= SECOND_PASS_KEEP)


def _minutiae(
    enhanced: np.ndarray,
    bmask: np.ndarray,
    normal: np.ndarray,
    coh: np.ndarray,
    period: float,
    area_scale: float = 1.0,
    candidates: list | None = None,
    *,
    mask: np.ndarray | None = None,
    cores: np.ndarray | None = None,
    clarity: tuple[float | None, float | None] = (None, None),
) -> Features:
    """The features of one enhanced image: binarisation, thinning, minutiae, their filters and
    quality (the block fields are the first pass's); ``candidates``, when given, receives the
    (ys, xs) of the skeleton's crossing-number candidates.  ``mask`` and ``cores``: the pixel
    mask and the cores of these block fields, when already computed; ``clarity``: the ridge
    clarity terms of the finger quality (:func:`_ridge_clarity`; None: unknown)."""
    h, w = enhanced.shape
    if mask is None:
        mask = pixel_mask(bmask, (h, w))
    if cores is None:
        cores = find_cores(normal, bmask)
    empty = Features(w, h, np.zeros((0, 5), np.float32), bmask, period, cores, 0)
    if not mask.any():
        return empty

    binary = (enhanced > 0) & mask
    skel, ridge = _thin(binary)
    # crossing number of every skeleton pixel (flat indices, row-major order)
    wp = skel.shape[1]
    sflat = skel.reshape(-1)
    on = ridge[sflat.view(bool)[ridge]]  # np.flatnonzero(sflat)
    code = _codes_at(sflat, on, wp)
    cn = np.zeros_like(skel)
    cn.reshape(-1)[on] = _CN[code]
    codes = np.zeros_like(skel)
    codes.reshape(-1)[on] = code
    count = _COUNT[code]
    on_cn = _CN[code]
    pick = ((on_cn == 1) & (count <= 2)) | ((on_cn == 3) & (count >= 3))
    ys, xs = np.divmod(on[pick], wp)
    ys -= 1
    xs -= 1
    if candidates is not None:
        candidates.append((ys, xs))
    # distance to the border of the print (exact up to where the quality saturates)
    dist = border_distance(bmask, (h, w), ys, xs, 2.5 * period)
    margin = BORDER_MARGIN * period
    sel = np.nonzero(dist > margin)[0]
    ys, xs, dist = ys[sel], xs[sel], dist[sel]
    if ys.size == 0:
        return empty
    kinds = np.where(cn[ys + 1, xs + 1] == 1, ENDING, BIFURCATION)

    tracer = _Tracer(skel, cn, codes)
    maxlen = int(round(1.6 * period))
    spur_len = 1.0 * period
    short_len = 1.6 * period
    n = ys.size
    keep = [True] * n
    theta_l = [0.0] * n
    kind_l = kinds.tolist()
    py_l = (ys + 1).tolist()  # padded coordinates
    px_l = (xs + 1).tolist()
    flat = [y * wp + x for y, x in zip(py_l, px_l, strict=True)]
    index = {p: i for i, p in enumerate(flat)}
    drop_near: list[tuple[int, int]] = []  # junction positions whose bifurcation must go
    around = [dy * wp + dx for dy in (-2, -1, 0, 1, 2) for dx in (-2, -1, 0, 1, 2)]

    def near_index(p, kind):
        for o in around:
            j = index.get(p + o)
            if j is not None and kind_l[j] == kind:
                return j
        return None

    cluster_of: set[int] = set()
    for i in range(n):
        p = flat[i]
        if kind_l[i] == ENDING:
            path, hit = tracer.trace(p, set(), maxlen)
            if len(path) < 4:
                keep[i] = False
                continue
            if hit == 3 and len(path) <= spur_len:
                keep[i] = False
                drop_near.append((path[-1], BIFURCATION))
                continue
            if hit == 1 and len(path) <= short_len:
                keep[i] = False
                j = near_index(path[-1], ENDING)
                if j is not None:
                    keep[j] = False
                continue
            qy, qx = divmod(path[min(len(path) - 1, maxlen)], wp)
            theta_l[i] = math.atan2(py_l[i] - qy, px_l[i] - qx)
        else:
            if p in cluster_of:  # another pixel of the same junction was taken already
                keep[i] = False
                continue
            starts = tracer.branches(p)
            if len(starts) != 3:
                keep[i] = False
                continue
            # the pixels of this junction (a junction can be two or three adjacent pixels)
            through = {p + o for o in around}
            cluster_of |= through
            visited = {p, *starts}
            dirs = []
            for s in starts:
                vis = set(visited)
                vis.discard(s)
                path, hit = tracer.trace(s, vis, maxlen, through)
                if hit == 3 and len(path) < 0.6 * period:
                    keep[i] = False
                    drop_near.append((path[-1], BIFURCATION))
                qy, qx = divmod(path[-1], wp)
                dirs.append(math.atan2(qy - py_l[i], qx - px_l[i]))
            if not keep[i]:
                continue
            sep = [
                abs(_angle_diff(dirs[1], dirs[2])),
                abs(_angle_diff(dirs[0], dirs[2])),
                abs(_angle_diff(dirs[0], dirs[1])),
            ]
            # the two fork branches are the closest pair; the stem is the third
            theta_l[i] = dirs[sep.index(min(sep))]

    for p, kind in drop_near:
        j = near_index(p, kind)
        if j is not None:
            keep[j] = False
    sel = np.flatnonzero(np.array(keep, bool))
    xs, ys, kinds, dist = xs[sel], ys[sel], kinds[sel], dist[sel]
    theta = np.array(theta_l)[sel]

    # refine the direction with the smoothed orientation field (mod pi), keep the traced sense
    bi = np.clip(np.rint(ys / HOP).astype(int), 0, bmask.shape[0] - 1)
    bj = np.clip(np.rint(xs / HOP).astype(int), 0, bmask.shape[1] - 1)
    if LOCAL_ORIENTATION:
        ridge = _local_orientation(enhanced, xs, ys, int(round(1.2 * period))) + np.pi / 2
    else:
        ridge = normal[bi, bj] + np.pi / 2
    flip = np.abs(_angle_diff(ridge, theta)) > np.pi / 2
    refined = np.where(flip, ridge + np.pi, ridge)
    close = np.abs(_angle_diff(refined, theta)) < np.pi / 4
    theta = np.where(close, refined, theta)
    theta = theta % (2 * np.pi)

    # endings whose ridge runs out into the background (or off the image) are cut ridges
    if LOOK_AHEAD > 0 and xs.size:
        steps = np.arange(1, int(LOOK_AHEAD * period) + 1)
        px_ = np.rint(xs[:, None] + np.cos(theta)[:, None] * steps).astype(int)
        py_ = np.rint(ys[:, None] + np.sin(theta)[:, None] * steps).astype(int)
        inside = (px_ >= 0) & (px_ < w) & (py_ >= 0) & (py_ < h)
        inside[inside] = mask[py_[inside], px_[inside]]
        cut = (kinds == ENDING) & ~inside.all(1)
        sel = np.nonzero(~cut)[0]
        xs, ys, theta, kinds, bi, bj, dist = (a[sel] for a in (xs, ys, theta, kinds, bi, bj, dist))

    # geometric clean-up on the remaining minutiae
    if xs.size > 1:
        # (every pair closer than 2 periods, both orders; never an all-pairs matrix: a noisy
        # image the size limit allows has tens of thousands of minutiae)
        i, j, d = pairs_within(xs, ys, xs, ys, 2.0 * period, same=True)
        bad = np.zeros(xs.size, bool)
        # clusters of minutiae in noisy places, and pairs that are too close
        bad[i[d < CLOSE * period]] = True
        bad |= np.bincount(i[d < 1.5 * period], minlength=xs.size) >= CLUSTER
        # endings facing each other across a ridge break
        e = kinds == ENDING
        opposite = np.abs(_angle_diff(theta[i], theta[j])) > 0.75 * np.pi
        ahead = np.arctan2(ys[j] - ys[i], xs[j] - xs[i])  # direction from i to j
        aligned = np.abs(_angle_diff(ahead, theta[i])) < np.pi / 4
        facing = e[i] & e[j] & opposite & aligned & (d < 2.0 * period)
        if FACING:
            bad[i[facing]] = True
            bad[j[facing]] = True
        sel = np.nonzero(~bad)[0]
        xs, ys, theta, kinds, bi, bj, dist = (a[sel] for a in (xs, ys, theta, kinds, bi, bj, dist))

    # (dist: the border distance measured above, exact up to 2.5 periods)
    quality = np.clip(coh[bi, bj], 0, 1) * np.clip(dist / (2.5 * period), 0, 1)
    if MIN_QUALITY > 0:
        sel = np.nonzero(quality >= MIN_QUALITY)[0]
        xs, ys, theta, kinds, quality = (a[sel] for a in (xs, ys, theta, kinds, quality))
    minutiae = np.stack([xs, ys, theta, kinds, quality], axis=1).astype(np.float32)
    quality = finger_quality(bmask, coh, xs.size, area_scale, *clarity)
    return Features(w, h, minutiae, bmask, period, cores, quality)


def finger_quality(
    bmask: np.ndarray,
    coh: np.ndarray,
    minutiae: int,
    area_scale: float = 1.0,
    disagree: float | None = None,
    energy: float | None = None,
) -> int:
    """The quality of one finger impression, 0 (no usable print) to 100, from what the
    extraction measured: how clear the ridge flow is (the mean block coherence inside the
    print, corrected by the ridge clarity of the filtered print: ``energy``, the share of the
    print's energy that the contextual filtering keeps, and ``disagree``, the share of its
    pixels that the two filtering passes binarise differently; None: unknown, neutral), how
    much print there is (its area in pixels at 500 ppi) and how many minutiae survived.  On
    the six FVC sets B, dropping the comparisons of the 10 % lowest-quality images cuts FNMR
    at FMR 1 % by 11-100 % (block-grid offsets 0, 5 and 11; ``benchmarks/accuracy.py``,
    ``benchmarks/quality_sweep.py``; docs/matcher.md).  ``area_scale`` converts the block
    areas to pixels at 500 ppi."""
    blocks = int(np.count_nonzero(bmask))
    if blocks == 0 or minutiae == 0:
        return 0
    coherence = float(np.mean(coh[bmask]))
    if coherence <= QUALITY_COH_LO:  # ridge flow no clearer than noise: no print
        return 0
    fade = min(1.0, (coherence - QUALITY_COH_LO) / QUALITY_FADE)
    if energy is not None:
        coherence += QUALITY_ENERGY * (energy - QUALITY_ENERGY_MID)
    if disagree is not None:
        coherence -= QUALITY_DISAGREE * (disagree - QUALITY_DISAGREE_MID)
    clarity = fade * min(max(coherence / QUALITY_CLARITY, 0.0), 1.0)
    area = min(1.0, math.sqrt(blocks * HOP * HOP * area_scale / QUALITY_AREA))
    count = min(1.0, minutiae / QUALITY_MINUTIAE)
    return int(round(100 * clarity * area * count))
