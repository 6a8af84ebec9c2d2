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

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

TARGET_PPI = 500.0
MAX_SIDE = 4000  # pixels at 500 ppi (the template stores block counts in a byte)
WIN = 32  # analysis window (pixels)
HOP = 16  # block size = hop between windows
MIN_PERIOD, MAX_PERIOD = 4.0, 18.0  # ridge period band searched (pixels at 500 ppi)

# contextual filter: radial Gaussian sigma (fraction of the block frequency) and the half-width of
# the angular window (radians), widened where the orientation is uncertain
RADIAL_SIGMA = 0.3
ANGULAR_BW = np.pi / 5
ANGULAR_BW_LOW_COH = np.pi / 4

ENDING, BIFURCATION = 1, 2

# orientation field: Gaussian smoothing of the doubled-angle vectors (in blocks); minutia
# directions from the structure tensor of the enhanced image around each minutia (else the
# block field)
ORIENT_SIGMA = 1.5
LOCAL_ORIENTATION = True
# segmentation: blocks with less than exp(-SEG_DROP) of the strong blocks' ridge energy are
# background (and at most the lower 45 % of the log-energy range)
SEG_DROP = 3.0
# spurious minutiae (lengths in ridge periods)
BORDER_MARGIN = 0.8  # closer than this to the print's border
LOOK_AHEAD = 2.0  # an ending whose ridge would run out of the print within this is a cut ridge
CLOSE = 0.5  # two minutiae closer than this
CLUSTER = 3  # this many other minutiae within 1.5 periods: a noisy place
FACING = True  # two endings facing each other within 2 periods: a broken ridge
MIN_QUALITY = 0.0  # minutiae of lower quality are dropped (0: none)
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


def _neighbour_code(b: np.ndarray) -> np.ndarray:
    """8-neighbour code of every interior pixel of a 0/1 uint8 array padded by one pixel."""
    c = b[:-2, 1:-1].copy()
    c |= b[:-2, 2:] << 1
    c |= b[1:-1, 2:] << 2
    c |= b[2:, 2:] << 3
    c |= b[2:, 1:-1] << 4
    c |= b[2:, :-2] << 5
    c |= b[1:-1, :-2] << 6
    c |= b[:-2, :-2] << 7
    return c


def thin(binary: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning of a boolean image; returns a one-pixel padded uint8 skeleton."""
    b = np.zeros((binary.shape[0] + 2, binary.shape[1] + 2), np.uint8)
    b[1:-1, 1:-1] = binary
    ys, xs = np.nonzero(binary)
    if ys.size == 0:
        return b
    # work on the bounding box only
    y0, y1, x0, x1 = ys.min(), ys.max() + 3, xs.min(), xs.max() + 3
    box = b[y0:y1, x0:x1]
    ibox = box[1:-1, 1:-1]
    for _ in range(60):
        changed = False
        for lut in (_ZS1, _ZS2):
            code = _neighbour_code(box)
            kill = lut[code] & (ibox == 1)
            if kill.any():
                ibox[kill] = 0
                changed = True
        if not changed:
            break
    return b


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


def _smooth(field: np.ndarray, sigma: float, weight: np.ndarray | None = None) -> np.ndarray:
    if weight is None:
        return ndimage.gaussian_filter(field, sigma, mode="nearest")
    num = ndimage.gaussian_filter(field * weight, sigma, mode="nearest")
    den = ndimage.gaussian_filter(weight, sigma, mode="nearest")
    return num / np.maximum(den, 1e-9)


def _segment(energy: np.ndarray) -> np.ndarray:
    """Block mask of the print from the ridge-band energy of each block."""
    loge = np.log(energy + 1e-6)
    hi = np.percentile(loge, 95)
    lo = np.percentile(loge, 5)
    if hi - lo < 1.0:  # flat image: no contrast anywhere
        return np.zeros(energy.shape, bool)
    thr = max(lo + 0.45 * (hi - lo), hi - SEG_DROP)
    mask = _smooth(loge, 0.8) > thr
    mask = ndimage.binary_opening(mask, np.ones((2, 2), bool))
    mask = ndimage.binary_closing(mask, np.ones((3, 3), bool), border_value=0)
    mask = ndimage.binary_fill_holes(mask)
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum(mask, labels, np.arange(1, n + 1))
        mask = labels == (1 + int(np.argmax(sizes)))
    return mask


def pixel_mask(block_mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The segmentation mask at pixel resolution: every pixel takes its nearest block."""
    h, w = shape
    rows, cols = block_mask.shape
    iy = np.minimum((np.arange(h) + HOP // 2) // HOP, rows - 1)
    ix = np.minimum((np.arange(w) + HOP // 2) // HOP, cols - 1)
    return np.asarray(block_mask, bool)[iy[:, None], ix[None, :]]


def enhance(img: np.ndarray):
    """Contextual filtering of a mean-removed image (ridges positive).

    Returns the enhanced image, the block mask, the block ridge-normal orientation, the block
    coherence and the median ridge period.
    """
    h, w = img.shape
    nby, nbx = -(-h // HOP) + 1, -(-w // HOP) + 1
    hp, wp = (nby + 1) * HOP, (nbx + 1) * HOP
    pad = np.pad(img, ((HOP, hp - h - HOP), (HOP, wp - w - HOP)), mode="reflect")
    blocks = np.lib.stride_tricks.sliding_window_view(pad, (WIN, WIN))[::HOP, ::HOP]
    blocks = blocks[:nby, :nbx]
    spec = np.fft.rfft2(blocks * _WIN2)
    power = (spec.real**2 + spec.imag**2).astype(np.float32) * _WEIGHT
    energy = power.sum((2, 3)) + 1e-9
    mask = _segment(energy)

    # orientation of the ridge normal (doubled angle), coherence
    p2 = power * power  # sharpen towards the spectral peak
    e2 = p2.sum((2, 3)) + 1e-12
    c2 = (p2 * _COS2).sum((2, 3)) / e2
    s2 = (p2 * _SIN2).sum((2, 3)) / e2
    freq = (p2 * _RADIUS).sum((2, 3)) / e2
    wgt = np.sqrt(energy) * (0.2 + mask)
    wgt = wgt / wgt.max()
    sc = _smooth(c2, ORIENT_SIGMA, wgt)
    ss = _smooth(s2, ORIENT_SIGMA, wgt)
    coh = np.clip(np.hypot(sc, ss), 0, 1)
    normal = 0.5 * np.arctan2(ss, sc)
    freq = _smooth(freq, 2.0, wgt * np.hypot(c2, s2))
    freq = np.clip(freq, 1.0 / 14, 1.0 / 5)
    inside = freq[mask] if mask.any() else freq.ravel()
    period = float(1.0 / np.median(inside))

    # filters: radial Gaussian band x angular raised cosine
    f32 = np.float32
    f0 = freq.astype(f32)[:, :, None, None]
    sig_r = f32(RADIAL_SIGMA) * f0 + f32(0.01)
    radial = np.exp(-((_RADIUS - f0) ** 2) / (2 * sig_r**2))
    half = f32(np.pi / 2)
    dphi = (_PHI - normal.astype(f32)[:, :, None, None] + half) % f32(np.pi) - half
    bw = (ANGULAR_BW + (1 - coh) * ANGULAR_BW_LOW_COH).astype(f32)[:, :, None, None]
    angular = np.where(np.abs(dphi) < bw, np.cos(half * dphi / bw) ** 2, f32(0))
    filt = radial * angular
    filt[:, :, 0, 0] = 0
    out = np.fft.irfft2(spec * filt, s=(WIN, WIN)).astype(np.float32) * _WIN2

    # overlap-add
    acc = np.zeros((hp, wp), np.float32)
    for dy in (0, 1):
        for dx in (0, 1):
            sub = out[dy::2, dx::2]
            ny, nx = sub.shape[:2]
            tiled = sub.transpose(0, 2, 1, 3).reshape(ny * WIN, nx * WIN)
            y0, x0 = dy * HOP, dx * HOP
            acc[y0 : y0 + ny * WIN, x0 : x0 + nx * WIN] += tiled[: hp - y0, : wp - x0]
    enhanced = acc[HOP : HOP + h, HOP : HOP + w]
    return enhanced, mask, normal, coh, period


# --------------------------------------------------------------------------------------------
# tracing


class _Tracer:
    """Walks a one-pixel skeleton (flat indices into the padded array)."""

    def __init__(self, skel: np.ndarray, cn: np.ndarray):
        self.w = skel.shape[1]
        w = self.w
        # 4-neighbours first, then diagonals
        self.offsets = (-w, 1, w, -1, -w + 1, w + 1, w - 1, -w - 1)
        self.skel = skel.ravel().tobytes()
        self.cn = cn.ravel().tobytes()

    def neighbours(self, p: int):
        s = self.skel
        return [p + o for o in self.offsets if s[p + o]]

    def trace(self, start: int, visited: set, maxlen: int, through=()):
        """Follow the ridge from ``start``; returns (path, kind) with kind 0 (still running after
        ``maxlen``), 1 (ran into an ending) or 3 (ran into a junction).  Pixels in ``through``
        (the junction the trace leaves) never stop it."""
        path = [start]
        cur = start
        skel, cn = self.skel, self.cn
        visited.add(cur)
        for _ in range(maxlen):
            c = cn[cur]
            if len(path) > 1 and c != 2 and cur not in through:
                return path, (1 if c == 1 else 3)
            nxt = -1
            for o in self.offsets:
                q = cur + o
                if skel[q] and q not in visited:
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
        w = self.w
        circle = (-w, -w + 1, 1, w + 1, w, w - 1, -1, -w - 1)  # N, NE, E, SE, S, SW, W, NW
        on = [self.skel[p + o] != 0 for o in circle]
        starts = []
        for i in range(8):
            if on[i] and not on[i - 1]:
                run = []
                j = i
                while on[j % 8] and len(run) < 8:
                    run.append(j % 8)
                    j += 1
                best = next((k for k in run if k % 2 == 0), run[0])
                starts.append(p + circle[best])
        return starts


def _local_orientation(img: np.ndarray, xs: np.ndarray, ys: np.ndarray, radius: int):
    """Ridge-normal direction (mod pi) at the given pixels from the gradient structure tensor
    over a Gaussian-weighted disc around each."""
    gy, gx = np.gradient(img)
    r = radius
    pad = np.pad(np.stack([gx * gx - gy * gy, 2 * gx * gy]), ((0, 0), (r, r), (r, r)))
    off = np.arange(-r, r + 1)
    wgt = np.exp(-(off[:, None] ** 2 + off[None, :] ** 2) / (2 * (r / 2) ** 2))
    yy = ys[:, None, None] + r + off[None, :, None]
    xx = xs[:, None, None] + r + off[None, None, :]
    c2 = (pad[0][yy, xx] * wgt).sum((1, 2))
    s2 = (pad[1][yy, xx] * wgt).sum((1, 2))
    return 0.5 * np.arctan2(s2, c2)


def find_cores(normal: np.ndarray, bmask: np.ndarray) -> np.ndarray:
    """Cores (Poincare index +1/2 over 2 x 2 block loops) of the block orientation field."""
    z = np.exp(2j * normal)
    z = ndimage.gaussian_filter(z.real, 1.0) + 1j * ndimage.gaussian_filter(z.imag, 1.0)
    ang = np.angle(z)
    loop = [ang[:-1, :-1], ang[:-1, 1:], ang[1:, 1:], ang[1:, :-1]]
    total = sum(_angle_diff(loop[(i + 1) % 4], loop[i]) for i in range(4))
    index = np.rint(total / (2 * np.pi))
    inner = ndimage.binary_erosion(bmask, np.ones((3, 3), bool))
    ok = inner[:-1, :-1] & inner[1:, 1:] & inner[:-1, 1:] & inner[1:, :-1]
    ys, xs = np.nonzero((index == CORE_INDEX) & ok)
    pts = np.stack([(xs + 0.5) * HOP, (ys + 0.5) * HOP], axis=1).astype(np.float32)
    return pts[:2]


def _angle_diff(a, b):
    return (a - b + np.pi) % (2 * np.pi) - np.pi


# --------------------------------------------------------------------------------------------


def _rescale(pixels: np.ndarray, ppi: float) -> np.ndarray:
    img = np.asarray(pixels, dtype=np.float32)
    if ppi and abs(ppi - TARGET_PPI) > 0.01 * TARGET_PPI:
        img = ndimage.zoom(img, TARGET_PPI / ppi, order=1, mode="nearest")
    return img


def extract_features(pixels: np.ndarray, ppi: float = TARGET_PPI) -> Features:
    """Minutiae, block mask and ridge period of a fingerprint image (uint8, dark ridges)."""
    pixels = np.asarray(pixels)
    if pixels.ndim != 2 or min(pixels.shape) < 2 * WIN:
        raise ValueError(f"need a grey-scale image of at least {2 * WIN} pixels a side")
    if not (ppi > 0 and np.isfinite(ppi)):
        raise ValueError(f"bad resolution: {ppi!r}")
    img = _rescale(pixels, float(ppi))
    h, w = img.shape
    if max(h, w) > MAX_SIDE:
        raise ValueError(f"image of {w} x {h} pixels at 500 ppi: larger than {MAX_SIDE}")
    img = img - ndimage.uniform_filter(img, 15, mode="reflect")
    img = -img  # ridges (dark) positive
    enhanced, bmask, normal, coh, period = enhance(img)
    mask = pixel_mask(bmask, (h, w))
    cores = find_cores(normal, bmask)
    empty = Features(w, h, np.zeros((0, 5), np.float32), bmask, period, cores)
    if not mask.any():
        return empty

    binary = (enhanced > 0) & mask
    skel = thin(binary)
    code = _neighbour_code(skel)
    cn = np.zeros_like(skel)
    cn[1:-1, 1:-1] = np.where(skel[1:-1, 1:-1] == 1, _CN[code], 0)
    count = _COUNT[code]
    inner_cn = cn[1:-1, 1:-1]
    ends = (inner_cn == 1) & (count <= 2)
    bifs = (inner_cn == 3) & (count >= 3)
    # distance to the border of the print
    dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    margin = BORDER_MARGIN * period
    cand = (ends | bifs) & (dist > margin)
    ys, xs = np.nonzero(cand)
    if ys.size == 0:
        return empty
    kinds = np.where(ends[ys, xs], ENDING, BIFURCATION)

    tracer = _Tracer(skel, cn)
    wp = skel.shape[1]
    maxlen = int(round(1.6 * period))
    spur_len = 1.0 * period
    short_len = 1.6 * period
    keep = np.ones(ys.size, bool)
    theta = np.zeros(ys.size)
    flat = (ys + 1) * wp + (xs + 1)
    index = {int(p): i for i, p in enumerate(flat)}
    drop_near: list[tuple[int, int]] = []  # junction positions whose bifurcation must go

    def near_index(p, kind):
        py, px = divmod(p, wp)
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                j = index.get(p + dy * wp + dx)
                if j is not None and kinds[j] == kind:
                    return j
        return None

    cluster_of: set[int] = set()
    for i in range(ys.size):
        p = int(flat[i])
        if kinds[i] == ENDING:
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
            q = path[min(len(path) - 1, maxlen)]
            qy, qx = divmod(q, wp)
            theta[i] = np.arctan2((ys[i] + 1) - qy, (xs[i] + 1) - qx)
        else:
            if p in cluster_of:  # another pixel of the same junction was taken already
                keep[i] = False
                continue
            starts = tracer.branches(p)
            if len(starts) != 3:
                keep[i] = False
                continue
            # the pixels of this junction (a junction can be two or three adjacent pixels)
            through = {p + dy * wp + dx for dy in (-2, -1, 0, 1, 2) for dx in (-2, -1, 0, 1, 2)}
            for q in through:
                cluster_of.add(q)
            visited = {p, *starts}
            dirs = []
            for s in starts:
                vis = set(visited)
                vis.discard(s)
                path, hit = tracer.trace(s, vis, maxlen, through)
                if hit == 3 and len(path) < 0.6 * period:
                    keep[i] = False
                    drop_near.append((path[-1], BIFURCATION))
                q = path[-1]
                qy, qx = divmod(q, wp)
                dirs.append(np.arctan2(qy - (ys[i] + 1), qx - (xs[i] + 1)))
            if not keep[i]:
                continue
            d = np.array(dirs)
            sep = [
                abs(_angle_diff(d[1], d[2])),
                abs(_angle_diff(d[0], d[2])),
                abs(_angle_diff(d[0], d[1])),
            ]
            # the two fork branches are the closest pair; the stem is the third
            stem = int(np.argmin(sep))
            theta[i] = d[stem]

    for p, kind in drop_near:
        j = near_index(p, kind)
        if j is not None:
            keep[j] = False

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

    sel = np.nonzero(keep)[0]
    xs, ys, theta, kinds = xs[sel], ys[sel], theta[sel], kinds[sel]
    bi, bj = bi[sel], bj[sel]

    # endings whose ridge runs out into the background (or off the image) are cut ridges
    if LOOK_AHEAD > 0 and xs.size:
        steps = np.arange(1, int(LOOK_AHEAD * period) + 1)
        px_ = np.rint(xs[:, None] + np.cos(theta)[:, None] * steps).astype(int)
        py_ = np.rint(ys[:, None] + np.sin(theta)[:, None] * steps).astype(int)
        inside = (px_ >= 0) & (px_ < w) & (py_ >= 0) & (py_ < h)
        inside[inside] = mask[py_[inside], px_[inside]]
        cut = (kinds == ENDING) & ~inside.all(1)
        sel = np.nonzero(~cut)[0]
        xs, ys, theta, kinds, bi, bj = (a[sel] for a in (xs, ys, theta, kinds, bi, bj))

    # geometric clean-up on the remaining minutiae
    if xs.size > 1:
        dx = xs[:, None] - xs[None, :]
        dy = ys[:, None] - ys[None, :]
        d = np.hypot(dx, dy)
        np.fill_diagonal(d, np.inf)
        bad = np.zeros(xs.size, bool)
        # clusters of minutiae in noisy places, and pairs that are too close
        bad |= (d < CLOSE * period).any(1)
        bad |= (d < 1.5 * period).sum(1) >= CLUSTER
        # endings facing each other across a ridge break
        e = kinds == ENDING
        opposite = np.abs(_angle_diff(theta[:, None], theta[None, :])) > 0.75 * np.pi
        ahead = np.arctan2(-dy, -dx)  # direction from i to j
        aligned = np.abs(_angle_diff(ahead, theta[:, None])) < np.pi / 4
        facing = e[:, None] & e[None, :] & opposite & aligned & (d < 2.0 * period)
        if FACING:
            bad |= facing.any(1) | facing.any(0)
        sel = np.nonzero(~bad)[0]
        xs, ys, theta, kinds, bi, bj = (a[sel] for a in (xs, ys, theta, kinds, bi, bj))

    quality = np.clip(coh[bi, bj], 0, 1) * np.clip(dist[ys, xs] / (2.5 * period), 0, 1)
    if MIN_QUALITY > 0:
        sel = np.nonzero(quality >= MIN_QUALITY)[0]
        xs, ys, theta, kinds, quality = (a[sel] for a in (xs, ys, theta, kinds, quality))
    minutiae = np.stack([xs, ys, theta, kinds, quality], axis=1).astype(np.float32)
    return Features(w, h, minutiae, bmask, period, cores)
