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

computed for all pairs at once as three matrix products.  The global score consolidates the
local similarities by Local Similarity Sort with Relaxation (LSS-R): the best pairs are relaxed
by their geometric compatibility with the others and the most "efficient" ones are averaged.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

R = 70.0  # cylinder radius (pixels at 500 ppi)
NS = 16  # spatial cells per side
ND = 6  # angular sections
SIGMA_S = 28.0 / 3.0
SIGMA_D = 2.0 * np.pi / 9.0
MU_PSI, TAU_PSI = 0.01, 400.0
MIN_VALID_CELLS = 0.5  # fraction of the disc's cells that must lie in the print
MIN_NEIGHBOURS = 2
MIN_COMMON = 0.6  # fraction of the disc's cells valid in both cylinders for a comparison

# LSS-R parameters
MIN_NP, MAX_NP, MU_P, TAU_P = 4, 12, 20.0, 0.4
W_R, N_REL = 0.5, 5
MU_1, TAU_1 = 8.0, -0.8
MU_2, TAU_2 = np.pi / 12, -30.0
MU_3, TAU_3 = np.pi / 12, -30.0

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


def cylinders(x, y, theta, mask: np.ndarray):
    """Cylinders of all minutiae.

    Returns ``values`` (n, NS*NS*ND) float32, ``cells`` (n, NS*NS) float32 0/1 validity and
    ``ok`` (n,) bool: the cylinder has enough valid cells and neighbours to be used.
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

    # spatial contributions: (n, cells, n)
    d2 = (px[:, :, None] - x[None, None, :]) ** 2 + (py[:, :, None] - y[None, None, :]) ** 2
    gs = np.exp(-d2 / (2 * SIGMA_S**2)) / (SIGMA_S * np.sqrt(2 * np.pi))
    gs[d2 > (3 * SIGMA_S) ** 2] = 0
    own = np.arange(n)
    gs[own, :, own] = 0  # a minutia does not contribute to its own cylinder
    # directional contributions: (n, n, ND)
    rel = _adiff(theta[:, None], theta[None, :])  # d_phi(theta_m, theta_t)
    a = _adiff(_SECTION[None, None, :], rel[:, :, None])
    k = 1.0 / (SIGMA_D * np.sqrt(2))
    gd = 0.5 * (erf((a + _DD / 2) * k) - erf((a - _DD / 2) * k))
    total = np.matmul(gs, gd)  # (n, cells, ND)
    values = _sigmoid(total, MU_PSI, TAU_PSI) * valid[:, :, None]

    dist = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
    neighbours = (dist <= R + 3 * SIGMA_S).sum(1) - 1
    ok = (valid.sum(1) >= MIN_VALID_CELLS * _DISC_CELLS) & (neighbours >= MIN_NEIGHBOURS)
    return (values.reshape(n, -1).astype(np.float32), valid.astype(np.float32), ok)


class Prepared:
    """Everything :func:`score` needs about one template (valid cylinders only)."""

    __slots__ = (
        "n",
        "values",
        "left",
        "right",
        "x",
        "y",
        "theta",
        "dist",
        "rel",
        "radial",
        "mask",
        "all_x",
        "all_y",
        "all_t",
    )

    def __init__(self, x, y, theta, mask):
        self.mask = mask
        self.all_x = np.asarray(x, np.float64)
        self.all_y = np.asarray(y, np.float64)
        self.all_t = np.asarray(theta, np.float64)
        values, cells, ok = cylinders(x, y, theta, mask)
        sel = np.nonzero(ok)[0]
        self.n = int(sel.size)
        values = values[sel]
        cells = cells[sel]
        sq = (values.reshape(self.n, NS * NS, ND) ** 2).sum(2)  # (n, NS*NS)
        self.values = np.ascontiguousarray(values)
        self.left = np.ascontiguousarray(np.concatenate([sq, cells]))  # [S; M]
        self.right = np.ascontiguousarray(np.concatenate([cells, sq]))  # [M; S]
        x = np.asarray(x, np.float64)[sel]
        y = np.asarray(y, np.float64)[sel]
        t = np.asarray(theta, np.float64)[sel]
        self.theta = t
        self.x = x
        self.y = y
        dx = x[:, None] - x[None, :]
        dy = y[:, None] - y[None, :]
        self.dist = np.hypot(dx, dy)
        self.rel = _adiff(t[:, None], t[None, :])
        # angle between each minutia's direction and the segment to each other minutia
        self.radial = _adiff(t[:, None], np.arctan2(-dy, -dx))


def local_similarity(a: Prepared, b: Prepared) -> np.ndarray:
    """The (na, nb) matrix of cylinder similarities."""
    na, nb = a.n, b.n
    dot = a.values @ b.values.T
    x = a.left @ b.right.T
    sa = x[:na, :nb]  # |a restricted to b's valid cells|^2
    common = x[na:, :nb]
    sb = x[na:, nb:]  # |b restricted to a's valid cells|^2
    diff2 = np.maximum(sa + sb - 2 * dot, 0)
    den = np.sqrt(sa) + np.sqrt(sb)
    lam = 1 - np.sqrt(diff2) / np.maximum(den, 1e-9)
    bad = (den <= 1e-9) | (common < MIN_COMMON * _DISC_CELLS)
    bad |= np.abs(_adiff(a.theta[:, None], b.theta[None, :])) > np.pi / 2
    lam[bad] = 0
    return lam


def score(a: Prepared, b: Prepared) -> float:
    """Global similarity in [0, 1] by LSS-R."""
    na, nb = a.n, b.n
    if na < 2 or nb < 2:
        return 0.0
    lam = local_similarity(a, b)
    nr = min(na, nb)
    flat = lam.ravel()
    if UNIQUE:
        order = np.argsort(-flat, kind="stable")
        used_a, used_b, top = set(), set(), []
        for k in order[: 4 * (na + nb)]:
            i, j = divmod(int(k), nb)
            if i in used_a or j in used_b:
                continue
            used_a.add(i)
            used_b.add(j)
            top.append(k)
            if len(top) == nr:
                break
        top = np.array(top)
    else:
        top = np.argpartition(flat, -nr)[-nr:]
    l0 = flat[top]
    pos = l0 > 0
    if pos.sum() < 2:
        return 0.0
    top, l0 = top[pos], l0[pos]
    nr = top.size
    ia, ib = np.divmod(top, nb)
    d1 = np.abs(a.dist[ia][:, ia] - b.dist[ib][:, ib])
    d2 = np.abs(_adiff(a.rel[ia][:, ia], b.rel[ib][:, ib]))
    d3 = np.abs(_adiff(a.radial[ia][:, ia], b.radial[ib][:, ib]))
    rho = _sigmoid(d1, MU_1, TAU_1) * _sigmoid(d2, MU_2, TAU_2) * _sigmoid(d3, MU_3, TAU_3)
    np.fill_diagonal(rho, 0)
    rho /= nr - 1
    lr = l0
    for _ in range(N_REL):
        lr = W_R * lr + (1 - W_R) * (rho @ lr)
    eff = lr / l0 if SELECT == "eff" else lr
    np_ = MIN_NP + int(round(_sigmoid(min(na, nb), MU_P, TAU_P) * (MAX_NP - MIN_NP)))
    np_ = min(np_, nr)
    best = np.argpartition(eff, -np_)[-np_:]
    s_mcc = float(lr[best].mean())
    if MODE == "mcc":
        return s_mcc
    s_pair = pairing(a, b, ia[best], ib[best], lr[best])
    if MODE == "pair":
        return s_pair
    return (
        s_pair * min(1.0, s_mcc / MCC_NORM)
        if MODE == "prod"
        else 0.5 * (s_pair + min(1.0, s_mcc / MCC_NORM))
    )


MODE = "mcc"
UNIQUE = True
SELECT = "lr"
MCC_NORM = 0.1
PAIR_DIST = 15.0
PAIR_ANGLE = np.pi / 6


def pairing(a: Prepared, b: Prepared, ia, ib, w) -> float:
    """Align a onto b with the consistent pairs, count one-to-one mated minutiae."""
    dt = np.angle(np.sum(w * np.exp(1j * (b.theta[ib] - a.theta[ia]))))
    c, s = np.cos(dt), np.sin(dt)
    ax, ay = a.x[ia], a.y[ia]
    bx, by = b.x[ib], b.y[ib]
    wn = w / w.sum()
    tx = np.sum(wn * (bx - (c * ax - s * ay)))
    ty = np.sum(wn * (by - (s * ax + c * ay)))
    # all minutiae of a, moved into b's frame
    x = c * a.all_x - s * a.all_y + tx
    y = s * a.all_x + c * a.all_y + ty
    t = a.all_t + dt
    d = np.hypot(x[:, None] - b.all_x[None, :], y[:, None] - b.all_y[None, :])
    da = np.abs(_adiff(t[:, None], b.all_t[None, :]))
    d = np.where(da < PAIR_ANGLE, d, np.inf)
    j = d.argmin(1)
    i = d.argmin(0)
    mutual = (i[j] == np.arange(len(j))) & (d[np.arange(len(j)), j] < PAIR_DIST)
    m = int(mutual.sum())
    # minutiae of each inside the other's print
    h, w_ = b.mask.shape
    xi, yi = np.rint(x).astype(int), np.rint(y).astype(int)
    ok = (xi >= 0) & (xi < w_) & (yi >= 0) & (yi < h)
    na = int(b.mask[yi[ok], xi[ok]].sum())
    # inverse transform for b's minutiae
    bx0, by0 = b.all_x - tx, b.all_y - ty
    xb = c * bx0 + s * by0
    yb = -s * bx0 + c * by0
    h, w_ = a.mask.shape
    xi, yi = np.rint(xb).astype(int), np.rint(yb).astype(int)
    ok = (xi >= 0) & (xi < w_) & (yi >= 0) & (yi < h)
    nb = int(a.mask[yi[ok], xi[ok]].sum())
    na, nb = max(na, m, PAIR_MIN), max(nb, m, PAIR_MIN)
    return m * m / (na * nb)


PAIR_MIN = 10
