"""Minutia Cylinder-Code descriptors and their comparison (after Cappelli, Ferrara and Maltoni,
"Minutia Cylinder-Code: a new representation and matching technique for fingerprint
recognition", IEEE TPAMI 32(12), 2010; written from the published description).

A cylinder is centred on a minutia and aligned with its direction: ``NS x NS`` spatial cells of a
disc of radius ``R`` times ``ND`` angular sections.  Each cell sums, over the neighbouring
minutiae, a spatial Gaussian of the distance to the cell centre times the mass of an angular
Gaussian of the relative direction falling in the section, squashed by a sigmoid.  Cells outside
the disc or outside the print are invalid.

Local similarity of two cylinders (real-valued, restricted to the cells valid in both)::

    lambda = 1 - |a - b| / (|a| + |b|)

computed for all pairs at once with two matrix products (values, and [S; M] x [M; S] for the
norms restricted to the common cells and the common-cell count).  Pairs whose directions differ by
more than 90 degrees or that share too few valid cells score 0.

Consolidation (in the spirit of the paper's LSS-R): every minutia of the first template proposes
its most similar cylinder of the second, each cylinder of the second keeps its best proposal
(one-to-one pairs), at most ``MAX_PAIRS`` best pairs go on; their similarities are relaxed
``N_REL`` times by their geometric compatibility with the other pairs (distance, relative
direction and radial angle differences through sigmoids), and the score is the mean of the
``n_P`` largest relaxed similarities, ``n_P`` growing from 4 to 12 with the smaller minutiae
count.  Parameters are the paper's except where measurements on FVC2000 set B said otherwise
(8 x 8 x 6 cells, distance tolerance 8 px); see ``docs/matcher.md``.

One-to-many: :class:`Batch` packs K prepared templates once (chunks of similar cylinder counts,
padded, values transposed side by side), :func:`score_many` scores a template against all of
them with one set of products per chunk, the pairing as one sort of all proposals and the
relaxation on stacked (K, pairs, pairs) arrays; same scores as :func:`score` up to float
rounding.

One pair (:func:`score`, behind ``compare``) costs about 40 numpy calls of about a microsecond
each besides the products, so it is written for the fewest and cheapest calls (see
``_relaxed``); its scores are those of the plain steps above up to float32 rounding
(``tests/test_mcc_batch.py`` checks it against a float64 reference).
"""

from __future__ import annotations

import math
import threading

import numpy as np
from scipy.special import erf

from .features import pairs_within

R = 70.0  # cylinder radius (pixels at 500 ppi)
NS = 8  # spatial cells per side
ND = 4  # angular sections
SIGMA_S = 28.0 / 3.0
SIGMA_D = 2.0 * np.pi / 9.0
MU_PSI, TAU_PSI = 0.01, 400.0
MIN_VALID_CELLS = 0.5  # fraction of the disc's cells that must lie in the print
MIN_NEIGHBOURS = 2
MAX_CYLINDERS = 40  # keep only this many best-quality cylinders (0: all)
MAX_PAIRS = 32  # pairs entering the relaxation at most
MIN_COMMON = 0.6  # fraction of the disc's cells valid in both cylinders for a comparison

# LSS-R parameters
MIN_NP, MAX_NP, MU_P, TAU_P = 4, 12, 20.0, 0.4
W_R, N_REL = 0.5, 5
MU_1, TAU_1 = 8.0, -0.8
MU_2, TAU_2 = np.pi / 12, -30.0
MU_3, TAU_3 = np.pi / 12, -30.0

# ridge-period gate: the score is multiplied by 1 - (|ln(period_a / period_b)| - PERIOD_TOL) /
# PERIOD_FALL, clipped to [0, 1] (1 when either period is unknown, i.e. 0).  The same finger
# keeps its ridge spacing (on FVC2000 set B the median periods of two impressions of a finger
# differ by a factor of at most 1.127, ln 0.119), while the minutiae near the cores of two
# different loops often match geometrically whatever their ridge spacing
PERIOD_TOL, PERIOD_FALL = 0.13, 0.2

_DS = 2 * R / NS
_DD = 2 * np.pi / ND
_IDX = np.arange(NS) - (NS - 1) / 2.0
_CY, _CX = np.meshgrid(_IDX * _DS, _IDX * _DS, indexing="ij")
_CELL = np.stack([_CX.ravel(), _CY.ravel()], axis=1)  # (NS*NS, 2) offsets, unrotated
_IN_DISC = np.hypot(_CELL[:, 0], _CELL[:, 1]) <= R
_DISC_CELLS = int(_IN_DISC.sum())
_SECTION = -np.pi + (np.arange(ND) + 0.5) * _DD


def _adiff(a, b):
    """Signed angle difference a - b wrapped to [-pi, pi)."""
    return (a - b + np.pi) % (2 * np.pi) - np.pi


def _sigmoid(v, mu, tau):
    return 1.0 / (1.0 + np.exp(-tau * (v - mu)))


def cylinders(x, y, theta, mask: np.ndarray, keep=None):
    """Cylinders of all minutiae.

    Returns ``values`` (n, NS*NS*ND) float32, ``cells`` (n, NS*NS) float32 0/1 validity and
    ``ok`` (n,) bool: the cylinder has enough valid cells and neighbours to be used.  With
    ``keep``, a function of ``ok`` returning row indices, ``values`` and ``cells`` hold only
    those rows (every other minutia still contributes to them: the same values as the rows of
    the full result), so that cylinders a template leaves out are never computed.
    """
    n = len(x)
    if n == 0:
        return (
            np.zeros((0, NS * NS * ND), np.float32),
            np.zeros((0, NS * NS), np.float32),
            np.zeros(0, bool),
        )
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    theta = np.asarray(theta, np.float64)
    c, s = np.cos(theta), np.sin(theta)
    # cell centres rotated by each minutia's direction: (n, NS*NS)
    px = x[:, None] + c[:, None] * _CELL[None, :, 0] - s[:, None] * _CELL[None, :, 1]
    py = y[:, None] + s[:, None] * _CELL[None, :, 0] + c[:, None] * _CELL[None, :, 1]
    h, w = mask.shape
    ix = np.rint(px).astype(np.intp)
    iy = np.rint(py).astype(np.intp)
    inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
    valid = np.zeros(px.shape, bool)
    valid[inside] = mask[iy[inside], ix[inside]]
    valid &= _IN_DISC[None, :]
    # (the neighbours from a grid, not an all-pairs matrix: a template may hold tens of
    # thousands of minutiae, of which at most MAX_CYLINDERS get a cylinder)
    i, _, _ = pairs_within(x, y, x, y, R + 3 * SIGMA_S, same=True)
    neighbours = np.bincount(i, minlength=n)
    ok = (valid.sum(1) >= MIN_VALID_CELLS * _DISC_CELLS) & (neighbours >= MIN_NEIGHBOURS)
    rows = np.arange(n) if keep is None else np.asarray(keep(ok), np.intp)
    m = rows.size
    dist = np.hypot(x[rows, None] - x[None, :], y[rows, None] - y[None, :])  # (rows, n)
    valid = valid[rows]
    # the cells inside the disc only (the others are never valid: their values are zero)
    px, py = px[rows][:, _IN_DISC], py[rows][:, _IN_DISC]

    # only the minutiae within R + 3 sigma of a cylinder's own minutia reach one of its cells
    # (the spatial term is cut at 3 sigma): each row takes those first, in index order, and as
    # many others as the row with the most of them (their terms are zero)
    near = dist <= R + 3 * SIGMA_S
    width = int(near.sum(1).max()) if m else 0
    nb = np.argsort(~near, axis=1, kind="stable")[:, :width]  # (rows, width)
    # spatial contributions: (rows, disc cells, width)
    d2 = (px[:, :, None] - x[nb][:, None, :]) ** 2 + (py[:, :, None] - y[nb][:, None, :]) ** 2
    gs = np.exp(-d2 / (2 * SIGMA_S**2)) / (SIGMA_S * np.sqrt(2 * np.pi))
    gs[d2 > (3 * SIGMA_S) ** 2] = 0
    # a minutia does not contribute to its own cylinder
    np.copyto(gs, 0, where=(nb == rows[:, None])[:, None, :])
    # directional contributions: (rows, width, ND)
    rel = _adiff(theta[rows, None], theta[nb])  # d_phi(theta_m, theta_t)
    a = _adiff(_SECTION[None, None, :], rel[:, :, None])
    k = 1.0 / (SIGMA_D * np.sqrt(2))
    gd = 0.5 * (erf((a + _DD / 2) * k) - erf((a - _DD / 2) * k))
    total = np.matmul(gs, gd)  # (rows, disc cells, ND)
    values = np.zeros((m, NS * NS, ND), np.float32)
    values[:, _IN_DISC] = _sigmoid(total, MU_PSI, TAU_PSI) * valid[:, _IN_DISC, None]
    return (values.reshape(m, NS * NS * ND), valid.astype(np.float32), ok)


# the geometry of a template is stored as int16 so that a difference needs no wrapping: angles
# in units of 2 pi / 65536 (two's-complement overflow is the wrap to [-pi, pi)), distances in
# units of 1/32 pixel; the relaxation's sigmoids are then lookup tables of |difference|
_ANGLE_UNIT = 2 * np.pi / 65536
_DIST_SCALE = 32.0
_MAX_DIST = 32767 / _DIST_SCALE


def _table(step, n, mu, tau):
    v = np.arange(n) * step
    t = (1.0 / (1.0 + np.exp(np.clip(-tau * (v - mu), -80, 80)))).astype(np.float32)
    t[t < _LUT_FLOOR] = 0
    return t


# compatibilities below this are 0: the product of three such factors and a relaxed similarity
# (at least 2^-24, 1 minus a ratio below 1 in float32) then stays a normal float32 (>= 2^-126)
# or is 0.  Subnormal operands, which the tails of the sigmoids (down to 1e-35) multiplied
# together gave, cost the CPU a microcode assist each: the relaxation's products took 5 times
# as long with them (session 8).  The terms left out are below 1e-9 of a relaxed similarity:
# scores move by float32 rounding only
_LUT_FLOOR = 1e-9
assert _LUT_FLOOR**3 * 2.0**-24 >= 2.0**-126


# indexed by |int16 difference| as uint16: at most 32767 for distances (both are 0..32767) and
# 32768 for angles (|-32768| stays -32768, i.e. 32768 as uint16); every index is in range, so
# the lookups use take(mode="clip"), which skips numpy's per-element bounds error (faster)
_LUT_DIST = _table(1 / _DIST_SCALE, 32768, MU_1, TAU_1)
_LUT_ANGLE = _table(_ANGLE_UNIT, 32769, MU_2, TAU_2)
assert (MU_2, TAU_2) == (MU_3, TAU_3)  # one table serves both angle terms
# the same tables indexed by the int16 difference itself read as uint16 (two's complement: -d
# is 65536 - d), for :func:`score`, whose planes are uint16: no absolute value to take (a
# distance difference is never -32768; that entry is unused)
_SYM_DIST = np.concatenate([_LUT_DIST, _LUT_DIST[-1:], _LUT_DIST[:0:-1]])
_SYM_ANGLE = np.concatenate([_LUT_ANGLE, _LUT_ANGLE[-2:0:-1]])
assert _SYM_DIST.size == _SYM_ANGLE.size == 65536


class Prepared:
    """Everything :func:`score` needs about one template (valid cylinders only).

    ``values`` (n, D) float32 cylinder values over the cells inside the disc; ``left`` =
    [S; M], ``right_m`` = M and ``right_s`` = S transposed, where S holds the squared values
    summed over the angular sections and M the cell validity (both per spatial cell; ``left``
    has one more column, a tiny constant that keeps the norms positive); ``dirs`` (n, 3) and
    ``dirs_t`` (3, n) give, as one product, the direction test next to the common-cell count;
    ``geometry`` (n * n, 4) int16 the pairwise distance, relative direction and radial angle
    used by the relaxation (``planes``: the same as (3, n, n), read as uint16, whose
    differences wrap the same way); ``log_period`` the natural logarithm of the median ridge
    period (0 when unknown).
    """

    __slots__ = (
        "n",
        "values",
        "values_m2",
        "values_t",
        "left",
        "right_m",
        "right_s",
        "dirs",
        "dirs_t",
        "geometry",
        "planes",
        "log_period",
        "index",
        "xy",
        "theta",
    )

    def __init__(self, x, y, theta, mask, quality=None, period=0.0):
        self.log_period = math.log(period) if period and period > 0 else 0.0

        def keep(ok):
            sel = np.nonzero(ok)[0]
            if MAX_CYLINDERS and sel.size > MAX_CYLINDERS:
                q = np.ones(len(x)) if quality is None else np.asarray(quality, np.float64)
                sel = np.sort(sel[np.argsort(-q[sel], kind="stable")[:MAX_CYLINDERS]])
            return sel

        values, cells, ok = cylinders(x, y, theta, mask, keep)
        sel = keep(ok)
        self.n = n = int(sel.size)
        self.index = sel  # the minutia of each cylinder (row of the template's minutiae)
        # cells outside the disc are never valid: leave them out of every product
        values = values.reshape(n, NS * NS, ND)[:, _IN_DISC].astype(np.float32)
        cells = cells[:, _IN_DISC].astype(np.float32)
        sq = (values**2).sum(2)  # (n, cells)
        self.values = np.ascontiguousarray(values.reshape(n, _DISC_CELLS * ND))
        self.values_m2 = -2 * self.values
        self.values_t = np.ascontiguousarray(self.values.T)
        eps = np.zeros((2 * n, 1), np.float32)
        eps[:n] = 1e-12
        pad = np.zeros((2 * n, _PAD), np.float32)  # inner size a multiple of 8: faster
        self.left = np.ascontiguousarray(np.concatenate([np.concatenate([sq, cells]), eps, pad], 1))
        one = np.zeros((2 * n, 1), np.float32)
        one[:n] = 1  # with eps: |a|_b^2 + 1e-12, so that the denominator is never 0
        right = np.concatenate([np.concatenate([cells, sq]), one, pad], 1).T
        # [M; S] in two halves: left @ right_m = [|a|_b^2; common cells] and left[n:] @
        # right_s = |b|_a^2, the three blocks used (not the fourth: [S; M] x [S; M])
        self.right_m = np.ascontiguousarray(right[:, :n], np.float32)
        self.right_s = np.ascontiguousarray(right[:, n:], np.float32)
        x = np.asarray(x, np.float64)[sel]
        y = np.asarray(y, np.float64)[sel]
        t = np.asarray(theta, np.float64)[sel]
        self.xy = np.stack([x, y], 1)
        self.theta = t
        # (big cos, big sin, sqrt(MIN_COMMON cells)) . (cos, sin, 1): at least the threshold
        # exactly when the directions are at most 90 degrees apart
        self.dirs = np.stack([_BIG * np.cos(t), _BIG * np.sin(t), np.full(n, _ROOT_COMMON)], 1)
        self.dirs = np.ascontiguousarray(self.dirs, np.float32)
        self.dirs_t = np.ascontiguousarray(np.stack([np.cos(t), np.sin(t), np.ones(n)]), np.float32)
        geometry = pair_geometry(x, y, t)
        self.geometry = np.ascontiguousarray(geometry).view(np.uint64).reshape(n, n)
        # the same three quantities as planes (3, n, n) for :func:`score`: a pair selection's
        # differences and lookups then run on contiguous arrays (as uint16: see _SYM_DIST)
        self.planes = np.ascontiguousarray(geometry[:, :, :3].transpose(2, 0, 1)).view(np.uint16)


def pair_geometry(x, y, t) -> np.ndarray:
    """The pairwise geometry of minutiae (x, y, direction t) that the relaxation compares:
    (n, n, 4) int16, the distance in 1/32 pixel, the relative direction and the radial angle
    (each minutia's direction against the segment to the other) in units of 2 pi / 65536, and
    a zero fourth plane (so that a row of four packs into a uint64)."""
    n = len(x)
    dx = x[:, None] - x[None, :]
    dy = y[:, None] - y[None, :]
    geometry = np.zeros((n, n, 4), np.int16)
    geometry[:, :, 0] = np.rint(np.minimum(np.hypot(dx, dy), _MAX_DIST) * _DIST_SCALE)
    geometry[:, :, 1] = _angle_units(t[:, None] - t[None, :])
    geometry[:, :, 2] = _angle_units(t[:, None] - np.arctan2(-dy, -dx))
    return geometry


def _angle_units(a):
    """Angles as int16 in units of 2 pi / 65536 (wrapped)."""
    return (np.rint(a / _ANGLE_UNIT).astype(np.int64) % 65536).astype(np.uint16).view(np.int16)


_PAD = -(_DISC_CELLS + 1) % 8
_ROOT_COMMON = float(np.sqrt(np.float32(MIN_COMMON * _DISC_CELLS)))
_BIG = 1e4
# float32 constants as arrays: no conversion of a Python scalar per call
_F0 = np.zeros((), np.float32)
_F1 = np.ones((), np.float32)
_ROOT_F32 = np.array(_ROOT_COMMON, np.float32)


def local_similarity(a: Prepared, b: Prepared) -> np.ndarray:
    """The (na, nb) matrix of cylinder similarities (0 where not comparable)."""
    lam = _ratio(a, b)
    np.subtract(1, lam, out=lam)
    return lam


def _ratio(a: Prepared, b: Prepared) -> np.ndarray:
    """``|a - b| / (|a| + |b|)`` (restricted to the common cells) for all pairs; 1 where the
    cylinders are not comparable (so that 1 - ratio is the local similarity; the larger of 1
    and the ratio, in case float32 rounding put a ratio above 1: the pairing treats every
    value from 1 up alike).

    Of the norm product [S; M] x [M; S] only the three blocks used are computed (one product
    against ``right_m``, one against ``right_s``), with ``ndarray.dot`` rather than ``@`` (the
    same BLAS call without the ufunc machinery, about a microsecond less for these sizes) and
    float32 constants as arrays.  All four products go into one buffer, so that one square
    root serves the distance, both norms and the common-cell count."""
    na, nb = a.n, b.n
    # -2 a.b, then |a|_b^2 (+ 1e-12), common cells, |b|_a^2
    x = np.empty((4 * na, nb), np.float32)
    a.values_m2.dot(b.values_t, out=x[:na])
    a.left.dot(b.right_m, out=x[na : 3 * na])
    x3 = x[3 * na :]
    a.left[na:].dot(b.right_s, out=x3)
    ratio = x[:na]
    den = x[na : 2 * na]
    ratio += den
    ratio += x3
    np.maximum(ratio, _F0, out=ratio)
    np.sqrt(x, out=x)
    den += x3
    ratio /= den
    # not comparable: too few common cells or directions more than 90 degrees apart; the test
    # written as 1.0 / 0.0 into a float buffer and applied by a maximum (ratio is at most 1):
    # cheaper than copyto(..., where=) for these sizes, the same values
    bad = np.minimum(x[2 * na : 3 * na], a.dirs.dot(b.dirs_t), out=den)
    np.less(bad, _ROOT_F32, out=bad)
    np.maximum(ratio, bad, out=ratio)
    return ratio


def period_factor(log_a: float, log_b: float) -> float:
    """The ridge-period gate (see PERIOD_TOL) of two logarithms of ridge periods: 1 up to a
    period ratio of exp(PERIOD_TOL), then down linearly to 0 at exp(PERIOD_TOL + PERIOD_FALL);
    1 when a period is unknown (0).  Symmetric exactly."""
    if not (log_a and log_b):
        return 1.0
    return min(max(1.0 - (abs(log_a - log_b) - PERIOD_TOL) / PERIOD_FALL, 0.0), 1.0)


def _period_factors(log_a: float, log_b: np.ndarray) -> np.ndarray:
    """:func:`period_factor` of one logarithm against an array (the same float64 operations,
    so the same values)."""
    f = np.abs(log_b - log_a)
    f -= PERIOD_TOL
    f /= PERIOD_FALL
    np.subtract(1.0, f, out=f)
    np.clip(f, 0.0, 1.0, out=f)
    f[(log_b == 0) | (log_a == 0)] = 1.0
    return f


def score(a: Prepared, b: Prepared) -> float:
    """Global similarity in [0, 1] by LSS-R: the best one-to-one pairs of cylinders are
    relaxed by their geometric compatibility and the best relaxed similarities averaged (times
    the ridge-period gate :func:`period_factor`; when the gate is closed, 0 at once: the same
    score, none of the work)."""
    if a.n < 2 or b.n < 2:
        return 0.0
    gate = period_factor(a.log_period, b.log_period)
    if gate == 0.0:
        return 0.0
    found = _relaxed(a, b)
    if found is None:
        return 0.0
    lr, c = found[2], found[3]
    nr = lr.size
    k = min(_NP[min(a.n, b.n, _NP_LAST)], nr)
    lr.sort()
    # exactly rounded: the same float64 sum as numpy's whenever that one is exact (the top
    # values of one comparison span far fewer than the 29 binades that would take)
    s = math.fsum(lr[nr - k :].tolist()) * c**N_REL / k
    return s * gate


def _relaxed(a: Prepared, b: Prepared):
    """The LSS-R steps of :func:`score` and :func:`detail` (both templates with at least two
    cylinders): ``(ia, ib, lr, c)``, the cylinders of the one-to-one pairs in ``a`` and ``b``
    and their relaxed similarities before the common factor ``c ** N_REL``; None with fewer
    than two pairs.

    Written for the fewest numpy calls (one call costs about a microsecond, the products of two
    templates of 30 cylinders about seven): the similarity matrix of :func:`_ratio`, the
    pairing on a fresh ``empty`` buffer, the geometry as contiguous planes, the relaxation as
    matrix-vector products."""
    na, nb = a.n, b.n
    ratio = _ratio(a, b)
    # one-to-one pairs: each minutia of a proposes its best match in b (first on ties), of the
    # proposals to the same minutia of b the best one (first on ties) is kept
    j = ratio.argmin(1)
    ar = _ARANGE[:na]
    prop = np.empty((nb, na), np.float32)
    prop.fill(2.0)
    prop[j, ar] = ratio[ar, j]
    ia = prop.argmin(1)
    r0 = prop[_ARANGE[:nb], ia]
    ib = (r0 < _F1).nonzero()[0]
    nr = ib.size
    if nr < 2:
        return None
    if nr > MAX_PAIRS:  # the best MAX_PAIRS, kept in slot order
        ib = np.sort(ib[np.argsort(r0[ib], kind="stable")[:MAX_PAIRS]])
        nr = MAX_PAIRS
    ia = ia[ib]
    lr = r0[ib]
    np.subtract(_F1, lr, out=lr)
    # compatibility of every two pairs from the differences of their geometry: distance,
    # relative direction and radial angle planes (uint16: the subtraction wraps the angles)
    d = a.planes.take(ia, 1).take(ia, 2)
    d -= b.planes.take(ib, 1).take(ib, 2)
    rho = _SYM_DIST.take(d[0], mode="clip")  # (indices in range: see _SYM_*)
    ang = _SYM_ANGLE.take(d[1:], mode="clip")
    rho *= ang[0]
    rho *= ang[1]
    # lr <- W_R * lr + c * sum of the others' compatibility-weighted lr, c = (1 - W_R) / (nr
    # - 1); the factor c is taken out of the iterations (diagonal W_R / c) and applied once
    c = (1 - W_R) / (nr - 1)
    rho.ravel()[:: nr + 1] = W_R / c
    # rho^N_REL @ lr as matrix-vector products (``ndarray.dot``: for at most 32 pairs a
    # matrix-matrix product costs more than the two matrix-vector products it saves), in the
    # order of :func:`_consolidate`
    for _ in range(N_REL):
        lr = rho.dot(lr)
    return ia, ib, lr, c


_ARANGE = np.arange(1 << 16)


def detail(a: Prepared, b: Prepared) -> dict:
    """:func:`score` with its working shown: ``score``; ``pairs`` (k, 2) the cylinder indices
    (rows of ``a`` and ``b``) of the n_P pairs the score averages, best first, and
    ``similarity`` their relaxed similarities (before the common factor); ``period_factor``.
    The same steps as :func:`score` (so the same score)."""
    out = {
        "score": 0.0,
        "pairs": np.zeros((0, 2), np.int64),
        "similarity": np.zeros(0),
        "period_factor": period_factor(a.log_period, b.log_period),
    }
    if a.n < 2 or b.n < 2:
        return out
    found = _relaxed(a, b)
    if found is None:
        return out
    ia, ib, lr, c = found
    nr = lr.size
    k = min(_NP[min(a.n, b.n, _NP_LAST)], nr)
    order = np.argsort(lr, kind="stable")[::-1][:k]
    top = np.sort(lr)[nr - k :]
    s = math.fsum(top.tolist()) * c**N_REL / k
    out["score"] = s * out["period_factor"]
    out["pairs"] = np.stack([ia[order], ib[order]], 1)
    out["similarity"] = lr[order].astype(np.float64) * c**N_REL
    return out


def _n_pairs(n: int) -> int:
    """How many pairs the score averages (MCC's n_P), from the smaller minutiae count."""
    z = 1.0 / (1.0 + math.exp(-TAU_P * (n - MU_P)))
    return MIN_NP + int(round(z * (MAX_NP - MIN_NP)))


_NP = [_n_pairs(n) for n in range(4 * MAX_NP + int(MU_P) + 100)]
_NP_LAST = len(_NP) - 1


# -- one-to-many ----------------------------------------------------------------------------------
_CHUNK_COLUMNS = 1024  # candidate cylinders per similarity block (keeps the block in cache)


class Batch:
    """K prepared templates packed for :func:`score_many` (built once per set of candidates).

    The candidates are ordered by cylinder count and cut into chunks of similar sizes, each
    padded to its largest count (cut points chosen by :func:`_cuts`: fewest padded columns plus
    a fixed cost per chunk): stacked transposed values, validity and squared-value columns and
    directions per chunk, all geometry back to back.  ``n`` holds the counts and
    ``log_period`` the logarithms of the ridge periods in the order given; the ``cand_*`` and
    ``col_*`` arrays locate candidates and columns in the flat similarity array of
    :func:`_ratio_all`.
    """

    __slots__ = (
        "k",
        "n",
        "chunks",
        "geometry",
        "offsets",
        "columns",
        "cand",
        "cand_start",
        "cand_width",
        "cand_off",
        "col_start",
        "col_width",
        "col_local",
        "col_cand",
        "col_slot",
        "log_period",
    )

    def __init__(self, prepared):
        prepared = list(prepared)
        self.k = k = len(prepared)
        self.n = n = np.array([p.n for p in prepared], np.int64)
        self.log_period = np.array([p.log_period for p in prepared], np.float64)
        self.offsets = np.zeros(k, np.int64)
        if k:
            self.offsets[1:] = np.cumsum(n[:-1] ** 2)
        self.geometry = (
            np.concatenate([p.geometry.ravel() for p in prepared])
            if k and n.sum()
            else np.zeros(1, np.uint64)
        )
        self.chunks = []
        order = np.argsort(n, kind="stable")
        order = order[n[order] >= 2]  # fewer than two cylinders: score 0
        for s, e in _cuts(n[order]):
            idx = order[s:e]
            self.chunks.append(_Chunk([prepared[i] for i in idx], idx, int(n[idx].max())))
        # where each chunk's columns start among all columns, and per candidate (in chunk order)
        # and per column: the chunk's first column and width, the offset inside the chunk,
        # the candidate and the slot
        widths = [ch.values_t.shape[1] for ch in self.chunks]
        self.columns = int(sum(widths))
        start = np.cumsum([0] + widths)[:-1].astype(np.int64)
        for ch, c0 in zip(self.chunks, start, strict=True):
            ch.start = int(c0)
        cat = np.concatenate
        if self.chunks:
            cs = [np.full(ch.idx.size, ch.start) for ch in self.chunks]
            cw = [np.full(ch.idx.size, ch.values_t.shape[1]) for ch in self.chunks]
            self.cand = cat([ch.idx for ch in self.chunks])
            self.cand_start = cat(cs)
            self.cand_width = cat(cw)
            self.cand_off = cat([np.arange(ch.idx.size) * ch.nmax for ch in self.chunks])
            self.col_start = cat([np.full(ch.values_t.shape[1], ch.start) for ch in self.chunks])
            self.col_width = cat([np.full(w, w) for w in widths])
            self.col_local = cat([np.arange(w) for w in widths])
            self.col_cand = cat([np.repeat(ch.idx, ch.nmax) for ch in self.chunks])
            self.col_slot = cat([np.tile(np.arange(ch.nmax), ch.idx.size) for ch in self.chunks])

    @classmethod
    def from_prepared(cls, prepared) -> Batch:
        return cls(prepared)


def _cuts(counts: np.ndarray) -> list[tuple[int, int]]:
    """Chunks ``[(start, end), ...]`` of ascending ``counts``, each padded to its last (largest)
    count and at most _CHUNK_COLUMNS wide (or one candidate), with the least padded columns plus
    _CHUNK_COST per chunk (dynamic programming over the cut points)."""
    k = counts.size
    best = np.zeros(k + 1)
    back = np.zeros(k + 1, np.int64)
    for e in range(1, k + 1):
        width = int(counts[e - 1])
        lo = max(0, e - max(1, _CHUNK_COLUMNS // max(width, 1)))
        cost = best[lo:e] + (e - np.arange(lo, e)) * width + _CHUNK_COST
        j = int(np.argmin(cost))
        best[e] = cost[j]
        back[e] = lo + j
    out = []
    e = k
    while e > 0:
        out.append((int(back[e]), e))
        e = int(back[e])
    return out[::-1]


# the fixed cost of a chunk (a dozen numpy calls) in padded columns of one probe
_CHUNK_COST = 24


class _Chunk:
    __slots__ = ("idx", "nmax", "cells_t", "sq_t", "values_t", "dirs_t", "dirs", "start")
    start: int  # first column of the chunk, set by Batch

    def __init__(self, prepared, idx, nmax):
        c = len(prepared)
        self.idx = idx
        self.nmax = nmax
        w = _DISC_CELLS + 1 + _PAD
        cells_t = np.zeros((w, c, nmax), np.float32)
        sq_t = np.zeros((w, c, nmax), np.float32)
        values_t = np.zeros((_DISC_CELLS * ND, c, nmax), np.float32)
        dirs_t = np.zeros((3, c, nmax), np.float32)
        dirs = np.zeros((c, nmax, 3), np.float32)
        cells_t[_DISC_CELLS] = 1  # padding too: the denominators are never 0
        for q, p in enumerate(prepared):
            cells_t[:, q, : p.n] = p.right_m
            sq_t[:, q, : p.n] = p.right_s
            values_t[:, q, : p.n] = p.values_t
            dirs_t[:, q, : p.n] = p.dirs_t
            dirs[q, : p.n] = p.dirs
        self.cells_t = cells_t.reshape(w, c * nmax)
        self.sq_t = sq_t.reshape(w, c * nmax)
        self.values_t = values_t.reshape(-1, c * nmax)
        self.dirs_t = dirs_t.reshape(3, c * nmax)
        self.dirs = dirs.reshape(c * nmax, 3)


def _ratio_all(a: Prepared, batch: Batch, first: bool) -> np.ndarray:
    """:func:`_ratio` of ``a`` against every candidate of the batch, chunk after chunk in one
    flat float32 array (chunk ``ch``: ``(na, c, nmax)`` from ``na * ch.start`` on), with values
    of at least 1 (not always exactly 1) where the cylinders are not comparable.  The direction
    test is that of ``_ratio(a, b)`` when ``first``, else that of ``_ratio(b, a)``: at exactly
    90 degrees it hangs on the rounding of a product that is not symmetric.  The products of
    all chunks go into shared buffers, so that the element-wise steps run once per batch."""
    na = a.n
    size = na * batch.columns
    ratio, x1, x2, common, dirs, bad, bad2 = _workspace(size)
    s_a, m_a = a.left[:na], a.left[na:]
    for ch in batch.chunks:
        w = ch.values_t.shape[1]
        o = slice(na * ch.start, na * (ch.start + w))
        np.matmul(s_a, ch.cells_t, out=x1[o].reshape(na, w))  # |a|_b^2 (+ 1e-12)
        np.matmul(m_a, ch.cells_t, out=common[o].reshape(na, w))  # common cells
        np.matmul(m_a, ch.sq_t, out=x2[o].reshape(na, w))  # |b|_a^2
        np.matmul(a.values_m2, ch.values_t, out=ratio[o].reshape(na, w))  # -2 a.b
        if first:
            np.matmul(a.dirs, ch.dirs_t, out=dirs[o].reshape(na, w))
        else:
            dirs[o].reshape(na, w)[...] = (ch.dirs @ a.dirs_t).T
    ratio += x1
    ratio += x2
    np.maximum(ratio, _zeros(ratio.shape), out=ratio)  # (same-shape zeros: much faster)
    np.sqrt(ratio, out=ratio)
    den = np.sqrt(x1, out=x1)
    den += np.sqrt(x2, out=x2)
    ratio /= den
    # not comparable: fewer common cells than the threshold (sqrt(common) < _ROOT_COMMON for
    # an integer count) or directions more than 90 degrees apart; adding 1 is cheaper than
    # writing 1 through a mask, and any value >= 1 plays the same part in the pairing
    np.less(dirs, _ROOT_COMMON, out=bad)
    np.less(common, _MIN_COMMON_COUNT, out=bad2)
    bad |= bad2
    ratio += bad
    return ratio


_LOCAL = threading.local()


def _workspace(size: int):
    """Seven reusable flat buffers of at least ``size`` elements (per thread): five float32,
    two bool."""
    ws = getattr(_LOCAL, "ws", None)
    if ws is None or ws[0].size < size:
        cap = max(size, 2 * (ws[0].size if ws is not None else 0), 1 << 16)
        f = [np.empty(cap, np.float32) for _ in range(5)]
        ws = (*f, np.empty(cap, bool), np.empty(cap, bool))
        _LOCAL.ws = ws
    return tuple(b[:size] for b in ws)


# the common-cell count is an exact small integer: sqrt(count) < _ROOT_COMMON exactly when
# count < _MIN_COMMON_COUNT
_MIN_COMMON_COUNT = np.float32(
    next(c for c in range(_DISC_CELLS + 2) if np.sqrt(np.float32(c)) >= np.float32(_ROOT_COMMON))
    - 0.5
)
_ZEROS = np.zeros(0, np.float32)


def _zeros(shape) -> np.ndarray:
    """A read-only zero array of ``shape`` (a view of one shared buffer)."""
    global _ZEROS
    size = math.prod(shape)
    if _ZEROS.size < size:
        z = np.zeros(max(size, 2 * _ZEROS.size), np.float32)
        z.flags.writeable = False
        _ZEROS = z
    return _ZEROS[:size].reshape(shape)


def score_many(a: Prepared, batch: Batch, first: bool = True) -> np.ndarray:
    """``score(a, b)`` for every template ``b`` of ``batch`` (float64 array of K, in the
    batch's order), or ``score(b, a)`` when not ``first``.  Equal to the one-pair scores up to
    float rounding (the products are blocked differently): within 1e-5, except for pairs of
    identical cylinders (a template against itself), whose similarity is 1 minus the square
    root of a rounding residue and moves by up to about 3e-4."""
    out = np.zeros(batch.k)
    na = a.n
    if na < 2 or not batch.chunks:
        return out
    ratio = _ratio_all(a, batch, first)
    if first:  # each cylinder of a proposes its best cylinder of each candidate
        j = np.concatenate(
            [
                ratio[na * ch.start : na * (ch.start + ch.values_t.shape[1])]
                .reshape(na, -1, ch.nmax)
                .argmin(2)
                for ch in batch.chunks
            ],
            1,
        )  # (na, candidates in chunk order)
        flat = batch.cand_width * _ARANGE[:na, None]
        flat += batch.cand_start * na + batch.cand_off
        flat += j
        v = ratio.take(flat)
        i, q = np.nonzero(v < 1)
        k, p, t = batch.cand[q], i, j[i, q]
        v = v[i, q]
    else:  # each cylinder of each candidate proposes its best cylinder of a
        i = np.concatenate(
            [
                ratio[na * ch.start : na * (ch.start + ch.values_t.shape[1])]
                .reshape(na, -1)
                .argmin(0)
                for ch in batch.chunks
            ]
        )  # (columns,)
        flat = batch.col_width * i
        flat += batch.col_start * na + batch.col_local
        v = ratio.take(flat)
        (col,) = np.nonzero(v < 1)
        k, p, t = batch.col_cand[col], batch.col_slot[col], i[col]
        v = v[col]
    _consolidate(a, batch, k, p, t, v, first, out)
    return out


# _consolidate packs (candidate, target slot, value bits, proposer slot) into one int64 sort
# key with 7 bits per slot: no template may keep more than 127 cylinders
assert 0 < MAX_CYLINDERS < 128


def _consolidate(a, batch, k, p, t, v, first, out):
    """One-to-one pairs from the proposals (candidate k, proposer slot p, target slot t, value
    v = 1 - similarity) and the LSS-R relaxation, as in :func:`score`; ``first``: the proposers
    are the cylinders of ``a``.  Writes the scores of the candidates involved into ``out``."""
    if k.size == 0:
        return
    # each target keeps its best proposal (the smallest proposer slot on ties)
    bits = v.astype(np.float32).view(np.int32).astype(np.int64)  # monotonic for v >= 0
    key = (k.astype(np.int64) << 45) | (t.astype(np.int64) << 38) | (bits << 7) | p
    key.sort()
    kt = key >> 38
    head = np.ones(key.size, bool)
    head[1:] = kt[1:] != kt[:-1]
    key = key[head]  # winners, ordered by candidate then target slot
    kw = key >> 45
    tw = (key >> 38) & 127
    bw = (key >> 7) & 0x7FFFFFFF
    pw = key & 127
    nr = np.bincount(kw, minlength=batch.k)
    if nr.max() > MAX_PAIRS:  # keep the best MAX_PAIRS of a candidate (ties: smaller slot)
        key2 = (kw << 38) | (bw << 7) | tw
        perm = np.argsort(key2)
        start = np.zeros(batch.k + 1, np.int64)
        np.cumsum(nr, out=start[1:])
        rank = np.empty(key.size, np.int64)
        rank[perm] = np.arange(key.size) - start[kw[perm]]
        keep = rank < MAX_PAIRS
        kw, tw, bw, pw = kw[keep], tw[keep], bw[keep], pw[keep]
        nr = np.minimum(nr, MAX_PAIRS)
    start = np.zeros(batch.k + 1, np.int64)
    np.cumsum(nr, out=start[1:])
    slot = np.arange(kw.size) - start[kw]
    cand = np.flatnonzero(nr >= 2)
    if cand.size == 0:
        return
    # compact to the candidates with at least two pairs
    pos = np.full(batch.k, -1, np.int64)
    pos[cand] = np.arange(cand.size)
    sel = pos[kw] >= 0
    kc = pos[kw[sel]]
    slot = slot[sel]
    nrc = nr[cand]
    m = int(nrc.max())
    ia = np.zeros((cand.size, m), np.int64)  # probe cylinder of each pair
    ib = np.zeros((cand.size, m), np.int64)  # candidate cylinder of each pair
    lr = np.zeros((cand.size, m), np.float32)
    pi, pj = (pw, tw) if first else (tw, pw)
    ia[kc, slot] = pi[sel]
    ib[kc, slot] = pj[sel]
    lr[kc, slot] = 1 - bw[sel].astype(np.int32).view(np.float32)
    valid = np.arange(m)[None, :] < nrc[:, None]
    # geometry of the chosen pairs: probe's and candidate's, then their difference
    na = a.n
    ga = a.geometry.ravel().take((ia * na)[:, :, None] + ia[:, None, :])
    nb = batch.n[cand]
    rows = batch.offsets[cand][:, None] + ib * nb[:, None]
    d = ga.view(np.int16)
    d -= batch.geometry.take(rows[:, :, None] + ib[:, None, :]).view(np.int16)
    np.abs(d, out=d)
    d = d.view(np.uint16).reshape(cand.size, m, m, 4)
    rho = _LUT_DIST.take(d[..., 0], mode="clip")
    rho *= _LUT_ANGLE.take(d[..., 1], mode="clip")
    rho *= _LUT_ANGLE.take(d[..., 2], mode="clip")
    rho *= valid[:, :, None]  # padding pairs: no influence
    c = (1 - W_R) / (nrc - 1)
    diag = np.arange(m)
    rho[:, diag, diag] = (W_R / c).astype(np.float32)[:, None]
    x = lr[:, :, None]
    for _ in range(N_REL):
        x = np.matmul(rho, x)
    x = x[:, :, 0]
    npairs = np.minimum(_NP_ARRAY[np.minimum(np.minimum(na, nb), len(_NP) - 1)], nrc)
    x.sort(1)
    top = np.arange(m)[None, :] >= m - npairs[:, None]
    s = np.where(top, x, 0).sum(1, dtype=np.float64)
    s = s * c**N_REL / npairs
    if a.log_period:
        s *= _period_factors(a.log_period, batch.log_period[cand])
    out[cand] = s


_NP_ARRAY = np.array(_NP)
