"""Orientation-field evidence for hard prints: a prototype beside today's ``compare`` (issue 17).

Run on demand (not in CI)::

    .venv/bin/python benchmarks/orientation_fusion.py                 # all six sets, offset 0
    .venv/bin/python benchmarks/orientation_fusion.py --offset 5      # the block grid elsewhere
    .venv/bin/python benchmarks/orientation_fusion.py --synth 20      # also synthetic fingers

For every image the extraction runs as in ``benchmarks/accuracy.py`` (the same protocol, EER and
FMR functions, imported) and its first pass's smoothed block orientation field (the ridge
normal's angle and the coherence of :func:`gateway.matcher.features.enhance`) and block mask are
kept beside the template, quantised as a template would carry them (u8 angle over pi, u8
coherence).  Cached under ``benchmarks/out/orient/`` keyed by a digest of the matcher's source.

Evidence measured, each fused with ``compare``'s score and printed per set as EER fvc / EER ext /
FMR100 ext (the sum of the 18 figures last):

* LOCAL, after Tico and Kuosmanen, "Fingerprint matching using an orientation-based minutia
  descriptor" (IEEE TPAMI 25(8), 2003): per cylinder minutia, the ridge orientation sampled at
  ``K`` points on each of a few circles around it, relative to the minutia's direction; the
  similarity of two descriptors is the mean of cos 2(difference) over the points inside both
  prints, mapped to [0, 1].  It is mixed into MCC's local similarity matrix before the pairing
  and the relaxation (``mcc._ratio`` replaced in this process only: the package is unchanged).
* GLOBAL: the agreement of the two orientation fields in their overlap (coherence-weighted mean
  of cos 2(difference)), under the rigid alignment fitted to the relaxed pairs of
  ``compare_detail`` (``--evidence aligned``) or the best over an exhaustive search of rotation
  (+-45 degrees) and block translation by FFT correlation of the complex fields (``--evidence
  searched``, a few ms per pair), fused with the score as a product with a clipped ramp or a
  bonus above a level.
* SECOND MATCHER (``--evidence second``, the default): the local descriptor computed for every
  minutia of both templates (not only the <= 40 cylinders), one-to-one pairs on its similarity
  (rescaled by ``(s - s0) / (1 - s0)``), MCC's relaxation and n_P mean on them; its score ``o``
  mixed with ``compare``'s as ``(1 - w) score + w o``.

* FRONTIER (``--evidence frontier``, session 11): cheaper forms of the second matcher, each a
  dict of FRONTIER_VARIANTS laid out as a package would keep it (:class:`Fast`: the cos 2d
  descriptor, s0 0.75, MCC's direction test as a product, MCC's pairing, lookup tables and
  relaxation; same scores as ``--evidence second``'s cos 2d row up to float rounding) with these
  keys: ``n_rel`` relaxation steps, ``pairs`` pairs relaxed at most, ``limit`` minutiae kept by
  quality, ``radii``/``points`` the descriptor's circles, ``one_call`` (num and den from one
  product), ``views`` (no transposed copies: ``dot`` on a transposed view), ``cosnorm`` (no den
  product: the mean over sqrt(cnt_a cnt_b) points), ``prefilter``
  (minutiae with too few points in their own print left out: exact), ``gate`` (o computed only
  where ``compare``'s score is at least this; else o = 0), ``rigid`` (no relaxation: the o-pairs
  weighted by their agreement with a rigid fit to MCC's relaxed pairs), ``w`` (fusion weights).
  Printed: a row per variant and weight, then (``--passes N``, default 3; 0: none) a cost
  table, CPU microseconds per pair of ``compare`` and of each variant's o on the same FVC pairs,
  all interleaved in one process, the fastest of N passes, and the ratio o / ``compare``.
  ``--variant NAME`` (repeatable) runs only the variants so named.  For example::

      .venv/bin/python benchmarks/orientation_fusion.py --evidence frontier --synth 0 \
          --passes 7 --variant "24 pairs" --variant "24 pairs, o where compare >= 0.016"

``--synth N`` adds the image-level synthetic fingers of ``benchmarks/synth_hardness.py`` (its EER
in the last column; default 20 fingers, 0: none).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import math  # noqa: E402
import pickle  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from multiprocessing import Pool  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # (this folder stays next: accuracy, synth_hardness)

import accuracy  # noqa: E402
import synth_hardness  # noqa: E402

from gateway.matcher import Template, compare, compare_detail, extract, features, mcc  # noqa: E402

OUT = ROOT / "benchmarks" / "out" / "orient"
HOP = features.HOP


# ---------------------------------------------------------------------------------------------
# extraction with the orientation field


def _with_field(pixels: np.ndarray):
    """The template of ``extract(pixels, 500)`` (through its bytes, as a gallery stores it) and
    the first pass's block fields: (template bytes, angle u8, coherence u8)."""
    seen = []
    real = features.enhance

    def spy(img, everywhere=True, angular_bw=features.ANGULAR_BW, near=None):
        out = real(img, everywhere, angular_bw, near)
        if near is None and not seen:
            seen.append((out[2], out[3]))
        return out

    features.enhance = spy
    try:
        t = extract(pixels, 500)
    finally:
        features.enhance = real
    normal, coh = seen[0]
    ridge = (normal + np.pi / 2) % np.pi  # the ridge direction, mod pi
    ang = (np.rint(ridge / np.pi * 256) % 256).astype(np.uint8)
    c8 = np.rint(np.clip(coh, 0, 1) * 255).astype(np.uint8)
    return t.to_bytes(), ang, c8


def _fvc_job(job):
    path, offset = job
    return _with_field(accuracy.cropped(path, offset))


def _synth_job(job):
    from gateway import synth

    identity, position, impression, difficulty = job
    return _with_field(synth.finger(identity, position, impression, difficulty=difficulty))


def load_set(db: str, offset: int, workers: int) -> dict:
    """{(finger, impression): (Template, angle u8, coherence u8)} of one FVC set (cached)."""
    OUT.mkdir(parents=True, exist_ok=True)
    cache = OUT / f"{accuracy._source_digest()}-{db}-o{offset}.pkl"
    if cache.exists():
        raw = pickle.loads(cache.read_bytes())
    else:
        files = accuracy.images(db, 100)
        keys = sorted(files)
        with Pool(workers) as pool:
            got = pool.map(_fvc_job, [(files[k], offset) for k in keys], chunksize=2)
        raw = dict(zip(keys, got, strict=True))
        cache.write_bytes(pickle.dumps(raw))
    return {k: (Template.from_bytes(b), a, c) for k, (b, a, c) in raw.items()}


def load_synth(fingers: int, workers: int, start: int = 900000) -> dict:
    """The image-level synthetic set of ``benchmarks/synth_hardness.py`` (fvc difficulty)."""
    OUT.mkdir(parents=True, exist_ok=True)
    cache = OUT / f"{accuracy._source_digest()}-synth{fingers}.pkl"
    if cache.exists():
        raw = pickle.loads(cache.read_bytes())
    else:
        jobs = [(i, 1 + i % 10, k, "fvc") for i in range(start, start + fingers) for k in range(8)]
        with Pool(workers) as pool:
            got = pool.map(_synth_job, jobs, chunksize=8)
        raw = {(i, k): g for (i, _p, k, _d), g in zip(jobs, got, strict=True)}
        cache.write_bytes(pickle.dumps(raw))
    return {k: (Template.from_bytes(b), a, c) for k, (b, a, c) in raw.items()}


# ---------------------------------------------------------------------------------------------
# the orientation field as a sampled function


def field_vectors(ang: np.ndarray, coh: np.ndarray, bmask: np.ndarray):
    """Doubled-angle unit vectors (cos 2 phi, sin 2 phi) of the ridge direction per block, the
    coherence (0-1) and the block mask."""
    phi = ang.astype(np.float64) * (np.pi / 256)
    return np.cos(2 * phi), np.sin(2 * phi), coh.astype(np.float64) / 255, bmask


def sample(field, xs: np.ndarray, ys: np.ndarray):
    """The field at pixel positions (nearest block: block (i, j) is centred on pixel (j HOP,
    i HOP)): (cos 2 phi, sin 2 phi, coherence, inside the print)."""
    c2, s2, coh, bmask = field
    rows, cols = bmask.shape
    i = np.rint(ys / HOP).astype(np.intp)
    j = np.rint(xs / HOP).astype(np.intp)
    inside = (i >= 0) & (i < rows) & (j >= 0) & (j < cols)
    i = np.clip(i, 0, rows - 1)
    j = np.clip(j, 0, cols - 1)
    inside &= bmask[i, j]
    return c2[i, j], s2[i, j], coh[i, j], inside


# ---------------------------------------------------------------------------------------------
# (a) local: the orientation-based minutia descriptor


class Descriptor:
    """Per cylinder of a prepared template, the sampled orientations relative to the minutia
    direction as (n, 2K) [v cos; v sin] and (n, K) validity v."""

    def __init__(self, prep: mcc.Prepared, field, radii, points, weight_coh: bool, sigma=None):
        xy, th = prep.xy, prep.theta
        offs = []
        for r, k in zip(radii, points, strict=True):
            a = 2 * np.pi * np.arange(k) / k
            offs.append(np.stack([r * np.cos(a), r * np.sin(a)], 1))
        offs = np.concatenate(offs)  # (K, 2) in the minutia's frame
        c, s = np.cos(th)[:, None], np.sin(th)[:, None]
        px = xy[:, :1] + c * offs[None, :, 0] - s * offs[None, :, 1]
        py = xy[:, 1:] + s * offs[None, :, 0] + c * offs[None, :, 1]
        c2, s2, coh, inside = sample(field, px, py)
        # relative to the minutia direction: rotate the doubled angle by -2 theta
        t2 = 2 * th[:, None]
        rc = c2 * np.cos(t2) + s2 * np.sin(t2)
        rs = s2 * np.cos(t2) - c2 * np.sin(t2)
        v = inside.astype(np.float64)
        if weight_coh:
            v = v * coh
        if sigma is None:  # per point cos 2 d, mapped to [0, 1] by (1 + x) / 2 after the mean
            self.vec = np.concatenate([rc * v, rs * v], 1).astype(np.float32)
            self.valid = v.astype(np.float32)
        else:  # per point exp(-(d / sigma)^2) (d the difference mod pi) as a cosine series of
            # the doubled angle: the mean over the points is then a product of two vectors
            coef = _series(sigma)
            z = rc + 1j * rs
            parts, zh = [], np.ones_like(z)
            for h, c in enumerate(coef):
                if h:
                    zh = zh * z
                    parts += [math.sqrt(c) * zh.real * v, math.sqrt(c) * zh.imag * v]
                else:
                    parts.append(math.sqrt(c) * v)
            self.vec = np.concatenate(parts, 1).astype(np.float32)
            self.valid = v.astype(np.float32)
        self.series = sigma is not None
        self.count = inside.astype(np.float32)
        self.k = offs.shape[0]


def descriptor_similarity(a: Descriptor, b: Descriptor, min_frac: float):
    """(na, nb) similarity in [0, 1] (mean cos 2 diff mapped by (1 + x) / 2) and a bool matrix:
    enough points inside both prints."""
    num = a.vec.dot(b.vec.T)
    den = a.valid.dot(b.valid.T)
    cnt = a.count.dot(b.count.T)
    s = num / np.maximum(den, 1e-6)
    if not a.series:
        s = (1 + s) / 2
    return np.clip(s, 0, 1), cnt >= min_frac * a.k


def _series(sigma: float, terms: int = 6) -> list[float]:
    """Cosine-series coefficients c_h of f(d) = exp(-(d / sigma)^2) on d in [-pi/2, pi/2]
    (period pi), in the doubled angle: f ~ c_0 + sum c_h cos(2 h d); negative c_h set to 0."""
    d = np.linspace(-np.pi / 2, np.pi / 2, 2049)[:-1]
    f = np.exp(-((d / sigma) ** 2))
    out = [float(f.mean())]
    for h in range(1, terms + 1):
        out.append(max(float(2 * (f * np.cos(2 * h * d)).mean()), 0.0))
    return out


class LocalFusion:
    """Replaces ``mcc._ratio`` in this process: MCC's local similarity mixed with the
    descriptor similarity (convex ``(1 - w) l + w s**p`` or geometric ``l**(1 - w) s**(p w)``)
    where both are defined; ``rescue``: a pair MCC finds not comparable (too few common cells)
    but with directions within 90 degrees takes ``w s**p`` alone."""

    def __init__(self, w, p=1.0, mode="convex", min_frac=0.5, rescue=False, pair_only=False):
        self.w, self.p, self.mode, self.min_frac, self.rescue = w, p, mode, min_frac, rescue
        self.pair_only = pair_only
        self.desc: dict[int, Descriptor] = {}  # by id() of a prepared template
        self.real = mcc._ratio

    def __call__(self, a, b):
        ratio = self.real(a, b)
        da, db = self.desc.get(id(a)), self.desc.get(id(b))
        if da is None or db is None or self.w == 0:
            return ratio
        s, ok = descriptor_similarity(da, db, self.min_frac)
        s = s**self.p
        lam = 1 - ratio
        comparable = ratio < 1
        both = comparable & ok
        if self.mode == "convex":
            mixed = (1 - self.w) * lam + self.w * s
        else:
            mixed = np.power(np.maximum(lam, 1e-9), 1 - self.w) * np.power(s, self.w)
        out = np.where(both, 1 - mixed, ratio)
        if self.rescue:
            dirs_ok = (np.cos(a.theta[:, None] - b.theta[None, :]) >= 0) & ok & ~comparable
            out = np.where(dirs_ok, 1 - self.w * s, out)
        return np.ascontiguousarray(out, np.float32)


def score_pair_only(a: mcc.Prepared, b: mcc.Prepared, fusion: LocalFusion) -> float:
    """``mcc.score`` with the pairs chosen on the fused similarity but relaxed and averaged with
    MCC's own (the steps of ``mcc._relaxed`` and ``mcc.score``, the pairing's input swapped)."""
    if a.n < 2 or b.n < 2:
        return 0.0
    own = fusion.real(a, b)
    ia, ib, _ = _one_to_one(fusion(a, b), mcc.MAX_PAIRS)
    lr = np.maximum(1 - own[ia, ib], 0).astype(np.float32)
    sc = _relaxed_mean(lr, a.planes, b.planes, ia, ib, min(a.n, b.n))
    return sc * mcc.period_factor(a.log_period, b.log_period)


class AllMinutiae:
    """A Tico-Kuosmanen style matcher on every minutia of a template (not only the cylinders):
    the orientation descriptor of each, and the pairwise geometry planes of ``mcc.Prepared``
    (distance, relative direction, radial angle as uint16) for the same relaxation."""

    def __init__(self, t: Template, field, radii, points, sigma, limit: int):
        m = t.minutiae
        if limit and len(m) > limit:
            m = m[np.sort(np.argsort(-m[:, 4], kind="stable")[:limit])]
        x, y, th = m[:, 0], m[:, 1], m[:, 2]

        class _P:  # what Descriptor reads of a prepared template
            pass

        p = _P()
        p.xy, p.theta = np.stack([x, y], 1), th
        self.desc = Descriptor(p, field, radii, points, False, sigma)
        self.n = len(m)
        g = mcc.pair_geometry(x, y, th)[:, :, :3].transpose(2, 0, 1)
        self.planes = np.ascontiguousarray(g).view(np.uint16)
        self.theta = th


def score_all_minutiae(a: AllMinutiae, b: AllMinutiae, s0: float, min_frac: float) -> float:
    """One-to-one pairs on the descriptor similarity (rescaled: (s - s0) / (1 - s0), directions
    within 90 degrees, enough points in both prints), MCC's relaxation and n_P mean."""
    if a.n < 2 or b.n < 2:
        return 0.0
    s, ok = descriptor_similarity(a.desc, b.desc, min_frac)
    s = (s - s0) / (1 - s0)
    ok &= np.cos(a.theta[:, None] - b.theta[None, :]) >= 0
    ratio = np.where(ok & (s > 0), 1 - s, 1.0).astype(np.float32)
    ia, ib, lr = _one_to_one(ratio, mcc.MAX_PAIRS)
    return _relaxed_mean(lr, a.planes, b.planes, ia, ib, min(a.n, b.n))


class Lean:
    """:class:`AllMinutiae` with the cos 2d descriptor laid out for the fewest numpy calls per
    comparison (what a package version would precompute once per template), for ``--cost``."""

    __slots__ = ("n", "k", "vec", "vec_t", "valid", "valid_t", "theta", "planes")

    def __init__(self, m: AllMinutiae):
        self.n, self.k = m.n, m.desc.k
        self.vec = np.ascontiguousarray(m.desc.vec, np.float32)
        self.vec_t = np.ascontiguousarray(m.desc.vec.T, np.float32)
        self.valid = np.ascontiguousarray(m.desc.valid, np.float32)
        self.valid_t = np.ascontiguousarray(m.desc.valid.T, np.float32)
        self.theta, self.planes = m.theta, m.planes


def lean_score(a: Lean, b: Lean, s0: float, min_frac: float) -> float:
    """:func:`score_all_minutiae` for the cos 2d descriptor (unweighted), the same score up to
    float rounding: the rescaled similarity's ratio ``1 - ((1 + s) / 2 - s0) / (1 - s0)`` is
    ``(1 - s) / (2 (1 - s0))``."""
    na, nb = a.n, b.n
    if na < 2 or nb < 2:
        return 0.0
    ratio = a.vec.dot(b.vec_t)
    den = a.valid.dot(b.valid_t)
    bad = den < min_frac * a.k
    bad |= np.cos(a.theta[:, None] - b.theta[None, :]) < 0  # (the harness's tie at 90 degrees)
    np.maximum(den, 1e-6, out=den)
    ratio /= den
    np.subtract(1, ratio, out=ratio)
    ratio *= 1 / (2 * (1 - s0))
    ratio[bad] = 1.0
    ia, ib, lr = _one_to_one(ratio, mcc.MAX_PAIRS)
    return _relaxed_mean(lr, a.planes, b.planes, ia, ib, min(na, nb))


def cost(sets: dict, prs: dict, passes: int = 3) -> None:
    """CPU time per pair of ``compare`` and of :func:`lean_score` (cos 2d, s0 0.75) on the same
    pairs in interleaved passes (the fastest of ``passes``), and the largest difference of the
    lean scores from :func:`score_all_minutiae`'s."""
    for db, data in sets.items():
        if db == "synth":
            continue
        pl = [
            (a, b) if data[a][0].key <= data[b][0].key else (b, a)
            for p in prs[db].values()
            for a, b in p
        ]
        mats = {
            k: AllMinutiae(t, field_vectors(a, c, t.block_mask), *_R3, None, 0)
            for k, (t, a, c) in data.items()
        }
        lean = {k: Lean(m) for k, m in mats.items()}
        ref = np.array([score_all_minutiae(mats[a], mats[b], 0.75, 0.5) for a, b in pl])
        got = np.array([lean_score(lean[a], lean[b], 0.75, 0.5) for a, b in pl])
        best = {"compare": math.inf, "lean": math.inf}
        for _ in range(passes):
            t0 = time.process_time()
            for a, b in pl:
                compare(data[a][0], data[b][0])
            best["compare"] = min(best["compare"], time.process_time() - t0)
            t0 = time.process_time()
            for a, b in pl:
                lean_score(lean[a], lean[b], 0.75, 0.5)
            best["lean"] = min(best["lean"], time.process_time() - t0)
        print(
            f"{db}: compare {1e6 * best['compare'] / len(pl):.0f} us, orientation matcher "
            f"{1e6 * best['lean'] / len(pl):.0f} us per pair (largest difference from the "
            f"harness's {np.abs(ref - got).max():.1e}), load {os.getloadavg()[0]:.1f}",
            flush=True,
        )


def _one_to_one(ratio: np.ndarray, limit: int | None = None):
    """MCC's pairing on a ratio matrix (1 - similarity; >= 1: no pair), the steps of
    ``mcc._relaxed``: rows, columns and similarities of the pairs (the best ``limit`` of them,
    kept in column order)."""
    na, nb = ratio.shape
    j = ratio.argmin(1)
    ar = np.arange(na)
    prop = np.full((nb, na), 2.0, np.float32)
    prop[j, ar] = ratio[ar, j]
    ia = prop.argmin(1)
    r0 = prop[np.arange(nb), ia]
    ib = np.nonzero(r0 < 1)[0]
    if limit is not None and ib.size > limit:
        ib = np.sort(ib[np.argsort(r0[ib], kind="stable")[:limit]])
    return ia[ib], ib, 1 - r0[ib]


def _relaxed_mean(lr, planes_a, planes_b, ia, ib, n_small: int, n_rel: int = mcc.N_REL) -> float:
    """MCC's relaxation of the pairs (ia, ib) with similarities ``lr`` on two sets of geometry
    planes, and the mean of the n_P best (``n_small``: the smaller minutiae count); the steps
    of ``mcc._relaxed`` and ``mcc.score`` without the ridge-period gate. 0 with fewer than two
    pairs."""
    nr = len(lr)
    if nr < 2:
        return 0.0
    d = planes_a.take(ia, 1).take(ia, 2)
    d -= planes_b.take(ib, 1).take(ib, 2)
    rho = mcc._SYM_DIST.take(d[0], mode="clip")
    ang = mcc._SYM_ANGLE.take(d[1:], mode="clip")
    rho *= ang[0]
    rho *= ang[1]
    c = (1 - mcc.W_R) / (nr - 1)
    rho.ravel()[:: nr + 1] = mcc.W_R / c
    for _ in range(n_rel):
        lr = rho.dot(lr)
    k = min(mcc._NP[min(n_small, mcc._NP_LAST)], nr)
    lr = np.sort(lr)
    return math.fsum(lr[nr - k :].tolist()) * c**n_rel / k


def score_joint(
    ta: Template,
    tb: Template,
    ma: AllMinutiae,
    mb: AllMinutiae,
    alpha: float,
    s0: float = 0.75,
    max_pairs: int = 48,
) -> float:
    """One relaxation for both evidences: MCC's one-to-one cylinder pairs (their similarity) and
    the orientation matcher's (``alpha`` times its rescaled similarity; the larger value where
    both propose a pair), the best ``max_pairs`` relaxed together on the all-minutiae geometry,
    MCC's n_P mean and ridge-period gate."""
    pa, pb = ta.prepared, tb.prepared
    if min(pa.n, pb.n, ma.n, mb.n) < 2:
        return 0.0
    ia, ib, v = _one_to_one(mcc._ratio(pa, pb))
    s, ok = descriptor_similarity(ma.desc, mb.desc, 0.5)
    s = (s - s0) / (1 - s0)
    ok &= np.cos(ma.theta[:, None] - mb.theta[None, :]) >= 0
    oa, ob, ov = _one_to_one(np.where(ok & (s > 0), 1 - s, 1.0).astype(np.float32))
    vals: dict = {}
    for x, y, z in zip(pa.index[ia], pb.index[ib], v, strict=True):
        vals[int(x), int(y)] = float(z)
    for x, y, z in zip(oa, ob, ov, strict=True):
        vals[int(x), int(y)] = max(vals.get((int(x), int(y)), 0.0), alpha * float(z))
    items = sorted(vals.items(), key=lambda kv: -kv[1])[:max_pairs]
    nr = len(items)
    if nr < 2:
        return 0.0
    a_ = np.array([k[0] for k, _ in items])
    b_ = np.array([k[1] for k, _ in items])
    lr = np.array([z for _, z in items], np.float32)
    gate = mcc.period_factor(pa.log_period, pb.log_period)
    return _relaxed_mean(lr, ma.planes, mb.planes, a_, b_, min(pa.n, pb.n)) * gate


# ---------------------------------------------------------------------------------------------
# (d) the frontier: cheaper forms of the second matcher (session 11)


class Fast:
    """The second matcher's operand of one template laid out as a package would keep it, for
    :func:`fast_score`: every minutia (or the ``limit`` best by quality), the cos 2d descriptor
    on ``radii`` x ``points`` as ``vec`` (n, 2K) = [v cos; v sin] and ``valid`` (n, K), both
    also transposed, ``dirs`` (n, 3) / ``dirs_t`` (3, n) for MCC's direction test as a product
    (``den`` >= the threshold and ``BIG cos(d theta) + threshold`` >= it), ``cnt`` (n,) the
    points inside the print, the minutiae ``xy`` and ``theta``, the geometry ``planes`` of
    ``mcc.Prepared`` and the ridge period's logarithm."""

    __slots__ = (
        "n", "k", "vec", "vec_t", "valid", "valid_t", "dirs", "dirs_t", "cnt", "xy", "theta",
        "planes", "log_period", "both", "both_t", "n_all", "cn", "cn_t",
    )  # fmt: skip

    def __init__(
        self, t: Template, ang, coh, radii, points, limit=0, prefilter=False, min_frac=0.5
    ):
        m = t.minutiae
        field = field_vectors(ang, coh, t.block_mask)
        # for n_P: the count the reference layout averages over
        self.n_all = min(len(m), limit) if limit else len(m)
        if prefilter and len(m):
            # a minutia with fewer than min_frac K points inside its own print never pairs
            # (the test ``den >= min_frac K`` needs them in both): leave it out of the products
            # (exact: the same pairs; with ``limit``, the best of those left)
            x, y, th = m[:, 0], m[:, 1], m[:, 2]

            class _Q:
                pass

            q = _Q()
            q.xy, q.theta = np.stack([x, y], 1), th
            cnt = Descriptor(q, field, radii, points, False, None).count.sum(1)
            m = m[cnt >= min_frac * sum(points)]
        if limit and len(m) > limit:
            m = m[np.sort(np.argsort(-m[:, 4], kind="stable")[:limit])]
        x, y, th = m[:, 0], m[:, 1], m[:, 2]

        class _P:
            pass

        p = _P()
        p.xy, p.theta = np.stack([x, y], 1), th
        d = Descriptor(p, field, radii, points, False, None)
        self.n, self.k = len(m), d.k
        f32 = np.float32
        self.vec = np.ascontiguousarray(d.vec, f32)
        self.vec_t = np.ascontiguousarray(d.vec.T, f32)
        self.valid = np.ascontiguousarray(d.valid, f32)
        self.valid_t = np.ascontiguousarray(d.valid.T, f32)
        thr = min_frac * d.k
        self.dirs = np.ascontiguousarray(
            np.stack([mcc._BIG * np.cos(th), mcc._BIG * np.sin(th), np.full(len(th), thr)], 1), f32
        )
        ones = np.ones(len(th))
        self.dirs_t = np.ascontiguousarray(np.stack([np.cos(th), np.sin(th), ones]), f32)
        # [vec | valid] against [[vec_t, 0], [0, valid_t]]: num and den from one product
        self.both = np.ascontiguousarray(np.concatenate([self.vec, self.valid], 1))
        kk, n = d.k, len(m)
        bt = np.zeros((3 * kk, 2 * n), f32)
        bt[: 2 * kk, :n] = self.vec_t
        bt[2 * kk :, n:] = self.valid_t
        self.both_t = bt
        self.cnt = d.count.sum(1).astype(f32)
        # cosine-normalised (no den product): vec / sqrt(cnt), the left operand times -1 /
        # (2 (1 - s0)) with s0 0.75, so that one product plus a constant is the ratio
        unit = self.vec / np.sqrt(np.maximum(self.cnt, 1))[:, None]
        self.cn = np.ascontiguousarray(unit * np.float32(-1 / (2 * (1 - 0.75))), f32)
        self.cn_t = np.ascontiguousarray(unit.T, f32)
        self.xy, self.theta = p.xy, th
        g = mcc.pair_geometry(x, y, th)[:, :, :3].transpose(2, 0, 1)
        self.planes = np.ascontiguousarray(g).view(np.uint16)
        self.log_period = t.prepared.log_period


_F1 = np.ones((), np.float32)


def fast_ratio(
    a: Fast, b: Fast, s0: float, min_frac: float, one_call=False, cosnorm=False, views=False
) -> np.ndarray:
    """The o-matcher's (na, nb) ratio matrix (1 - rescaled similarity; >= 1: no pair), as
    :func:`lean_score` computes it, with MCC's direction test as a product (``mcc._ratio``)."""
    nb = b.n
    if cosnorm:  # mean cos 2d over sqrt(cnt_a cnt_b) points (s0 0.75 folded into a.cn)
        ratio = a.cn.dot(b.cn_t)
        ratio += np.float32(1 / (2 * (1 - 0.75)))
        bad = a.dirs.dot(b.dirs_t)
        np.less(bad, np.float32(min_frac * a.k), out=bad)
        np.maximum(ratio, bad, out=ratio)
        return ratio
    if one_call:  # num and den side by side from one product (the zero blocks cost flops)
        x = a.both.dot(b.both_t)
        num, den = x[:, :nb], x[:, nb:]
    elif views:  # no transposed copies kept: BLAS reads the transposed view
        num = a.vec.dot(b.vec.T)
        den = a.valid.dot(b.valid.T)
    else:
        num = a.vec.dot(b.vec_t)
        den = a.valid.dot(b.valid_t)
    bad = np.minimum(den, a.dirs.dot(b.dirs_t))
    np.less(bad, np.float32(min_frac * a.k), out=bad)
    np.maximum(den, np.float32(1e-6), out=den)
    # 1 - ((1 + num / den) / 2 - s0) / (1 - s0) = (1 - num / den) / (2 (1 - s0))
    num /= den
    np.subtract(_F1, num, out=num)
    num *= np.float32(1 / (2 * (1 - s0)))
    np.maximum(num, bad, out=num)
    return num if num.flags.c_contiguous else np.ascontiguousarray(num)


def fast_pairs(ratio: np.ndarray, max_pairs: int):
    """MCC's one-to-one pairing on ``ratio`` (the steps of ``mcc._relaxed``): rows, columns and
    similarities (float32) of at most ``max_pairs`` best pairs in column order; None with fewer
    than two."""
    na, nb = ratio.shape
    j = ratio.argmin(1)
    ar = mcc._ARANGE[:na]
    prop = np.empty((nb, na), np.float32)
    prop.fill(2.0)
    prop[j, ar] = ratio[ar, j]
    ia = prop.argmin(1)
    r0 = prop[mcc._ARANGE[:nb], ia]
    ib = (r0 < _F1).nonzero()[0]
    nr = ib.size
    if nr < 2:
        return None
    if nr > max_pairs:
        ib = np.sort(ib[np.argsort(r0[ib], kind="stable")[:max_pairs]])
    ia = ia[ib]
    lr = r0[ib]
    np.subtract(_F1, lr, out=lr)
    return ia, ib, lr


def rowbest_pairs(ratio: np.ndarray, max_pairs: int):
    """Each row's best column (not one-to-one: a column may serve several rows), the best
    ``max_pairs`` of them; None with fewer than two."""
    na = ratio.shape[0]
    j = ratio.argmin(1)
    r0 = ratio[mcc._ARANGE[:na], j]
    ia = (r0 < _F1).nonzero()[0]
    if ia.size < 2:
        return None
    if ia.size > max_pairs:
        ia = np.sort(ia[np.argsort(r0[ia], kind="stable")[:max_pairs]])
    lr = r0[ia]
    np.subtract(_F1, lr, out=lr)
    return ia, j[ia], lr


def fast_relaxed_mean(a: Fast, b: Fast, ia, ib, lr, n_rel: int) -> float:
    """MCC's relaxation (``n_rel`` steps) of the pairs and the n_P mean (``mcc.score``)."""
    return _relaxed_mean(lr, a.planes, b.planes, ia, ib, min(a.n_all, b.n_all), n_rel)


def fast_rigid_mean(a: Fast, b: Fast, ia, ib, lr, fit, tol_d: float, tol_a: float) -> float:
    """No relaxation: the o-pairs weighted by their agreement with ``fit`` (rotation, dx, dy
    carrying ``a`` onto ``b``, from MCC's relaxed pairs), a Gaussian of the position residual
    (``tol_d`` px) times one of the direction residual (``tol_a`` rad); the n_P mean."""
    if fit is None:
        return 0.0
    r, dx, dy = fit
    cr, sr = math.cos(r), math.sin(r)
    pa = a.xy[ia]
    ex = cr * pa[:, 0] - sr * pa[:, 1] + dx - b.xy[ib, 0]
    ey = sr * pa[:, 0] + cr * pa[:, 1] + dy - b.xy[ib, 1]
    et = (a.theta[ia] + r - b.theta[ib] + np.pi) % (2 * np.pi) - np.pi
    w = np.exp(-(ex * ex + ey * ey) / (2 * tol_d**2) - et * et / (2 * tol_a**2))
    v = np.sort(lr * w)
    nr = v.size
    k = min(mcc._NP[min(a.n_all, b.n_all, mcc._NP_LAST)], nr)
    return math.fsum(v[nr - k :].tolist()) / k


def fast_score(a: Fast, b: Fast, cfg: dict, fit=None) -> float:
    """The o-matcher's score of one pair in ``compare``'s operand order, times the ridge-period
    gate (0 at once when it is closed, as ``mcc.score``)."""
    if a.n < 2 or b.n < 2:
        return 0.0
    gate = mcc.period_factor(a.log_period, b.log_period)
    if gate == 0.0:
        return 0.0
    ratio = fast_ratio(
        a,
        b,
        cfg.get("s0", 0.75),
        0.5,
        cfg.get("one_call", False),
        cfg.get("cosnorm", False),
        cfg.get("views", False),
    )
    if cfg.get("rowbest"):
        got = rowbest_pairs(ratio, cfg.get("pairs", mcc.MAX_PAIRS))
    else:
        got = fast_pairs(ratio, cfg.get("pairs", mcc.MAX_PAIRS))
    if got is None:
        return 0.0
    if cfg.get("rigid"):
        return gate * fast_rigid_mean(a, b, *got, fit, *cfg["rigid"])
    return gate * fast_relaxed_mean(a, b, *got, cfg.get("n_rel", mcc.N_REL))


def fit_from(found, pa: mcc.Prepared, pb: mcc.Prepared):
    """The rigid transform (rotation, dx, dy) carrying ``a`` onto ``b``, fitted by weighted
    least squares to the n_P best relaxed pairs of ``found`` (``mcc._relaxed``'s result, which
    ``compare`` has at hand: this is the part a package would add); None without pairs."""
    if found is None:
        return None
    ia, ib, lr, _c = found
    k = min(mcc._NP[min(pa.n, pb.n, mcc._NP_LAST)], lr.size)
    top = np.argsort(lr)[lr.size - k :]
    w = np.maximum(lr[top].astype(np.float64), 1e-12)
    p, q = pa.xy[ia[top]], pb.xy[ib[top]]
    pm, qm = (w[:, None] * p).sum(0) / w.sum(), (w[:, None] * q).sum(0) / w.sum()
    u, v = p - pm, q - qm
    r = math.atan2(
        float((w * (u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0])).sum()),
        float((w * (u[:, 0] * v[:, 0] + u[:, 1] * v[:, 1])).sum()),
    )
    cr, sr = math.cos(r), math.sin(r)
    return r, qm[0] - (cr * pm[0] - sr * pm[1]), qm[1] - (sr * pm[0] + cr * pm[1])


def _found(pa: mcc.Prepared, pb: mcc.Prepared):
    if pa.n < 2 or pb.n < 2:
        return None
    return mcc._relaxed(pa, pb)


def frontier(sets: dict, prs: dict, names: list, passes: int) -> None:
    """Every variant of FRONTIER_VARIANTS named in ``names`` (all when empty): its o fused with
    ``compare``'s score as ``(1 - w) score + w o`` (a row per w), and its CPU time per pair
    beside ``compare``'s on the same FVC pairs (interleaved passes, the fastest of
    ``passes``; a rigid variant's time includes its fit from MCC's relaxed pairs, not
    ``mcc._relaxed``, which ``compare`` has computed)."""
    table = Table(list(sets))
    ordered = {
        n: [
            (a, b) if data[a][0].key <= data[b][0].key else (b, a)
            for k in prs[n]
            for a, b in prs[n][k]
        ]
        for n, data in sets.items()
    }
    base = {n: score_all(sets[n], prs[n]) for n in sets}
    flats = {n: np.concatenate([base[n][k] for k in prs[n]]).tolist() for n in sets}
    table.row("baseline (compare)", base)
    found = {}
    built: dict = {}
    timed: list = []
    for cfg in FRONTIER_VARIANTS:
        if names and cfg["name"] not in names:
            continue
        key = _layout_key(cfg)
        if key not in built:
            built[key] = {
                n: {k: Fast(t, a, c, *key) for k, (t, a, c) in data.items()}
                for n, data in sets.items()
            }
        fast = built[key]
        rigid = bool(cfg.get("rigid"))
        if rigid and not found:
            for n, data in sets.items():
                found[n] = [_found(data[a][0].prepared, data[b][0].prepared) for a, b in ordered[n]]
        ev, share, gate = {}, [], cfg.get("gate", -1.0)
        for n, data in sets.items():
            fits = (
                [
                    fit_from(f, data[a][0].prepared, data[b][0].prepared)
                    for f, (a, b) in zip(found[n], ordered[n], strict=True)
                ]
                if rigid
                else [None] * len(ordered[n])
            )
            flat = np.concatenate([base[n][k] for k in prs[n]])
            s = np.array(
                [
                    fast_score(fast[n][a], fast[n][b], cfg, f) if bs >= gate else 0.0
                    for (a, b), f, bs in zip(ordered[n], fits, flat, strict=True)
                ]
            )
            share.append(np.mean(flat >= gate))
            ev[n], i = {}, 0
            for k in prs[n]:
                ev[n][k] = s[i : i + len(prs[n][k])]
                i += len(prs[n][k])
        if gate >= 0:
            print(f"  {cfg['name']}: o computed for {100 * np.mean(share):.0f} % of the pairs")
        for w in cfg.get("w", (0.2,)):
            table.row(
                f"{cfg['name']}, w {w}",
                {n: {k: (1 - w) * base[n][k] + w * ev[n][k] for k in base[n]} for n in sets},
            )
        timed.append(cfg)
    if passes:
        frontier_cost(sets, ordered, flats, found, timed, built, passes)


def _layout_key(cfg: dict) -> tuple:
    return (
        cfg.get("radii", _R3[0]),
        cfg.get("points", _R3[1]),
        cfg.get("limit", 0),
        cfg.get("prefilter", False) or cfg.get("cosnorm", False),
    )


def frontier_cost(sets, ordered, flats, found, variants, built, passes: int) -> None:
    """CPU time per pair (``time.process_time``) of ``compare`` and of every variant's o on the
    same FVC pairs in ``compare``'s operand order, all interleaved in one process: per pass,
    ``compare`` over the set, then each variant over it; the fastest of ``passes`` counts.
    Printed per set as microseconds and the ratio o / ``compare``."""
    rows = {cfg["name"]: {} for cfg in variants}
    base_us = {}
    for n, data in sets.items():
        if n == "synth":
            continue
        pl = ordered[n]
        best = {"compare": math.inf} | {cfg["name"]: math.inf for cfg in variants}
        for _ in range(passes):
            t0 = time.process_time()
            for a, b in pl:
                compare(data[a][0], data[b][0])
            best["compare"] = min(best["compare"], time.process_time() - t0)
            for cfg in variants:
                fa = built[_layout_key(cfg)][n]
                gate = cfg.get("gate", -1.0)
                t0 = time.process_time()
                if cfg.get("rigid"):
                    for (a, b), f in zip(pl, found[n], strict=True):
                        fit = fit_from(f, data[a][0].prepared, data[b][0].prepared)
                        fast_score(fa[a], fa[b], cfg, fit)
                elif gate >= 0:
                    for (a, b), bs in zip(pl, flats[n], strict=True):
                        if bs >= gate:
                            fast_score(fa[a], fa[b], cfg)
                else:
                    for a, b in pl:
                        fast_score(fa[a], fa[b], cfg)
                t = time.process_time() - t0
                best[cfg["name"]] = min(best[cfg["name"]], t)
        base_us[n] = 1e6 * best["compare"] / len(pl)
        for cfg in variants:
            rows[cfg["name"]][n] = 1e6 * best[cfg["name"]] / len(pl)
    names = list(base_us)
    print(
        f"\ncost (fastest of {passes} interleaved passes, CPU us per pair; load "
        f"{os.getloadavg()[0]:.1f}): compare " + ", ".join(f"{n} {base_us[n]:.0f}" for n in names)
    )
    print("| variant | " + " | ".join(names) + " | o / compare min-max (mean) |")
    for name, got in rows.items():
        r = [got[n] / base_us[n] for n in names]
        print(
            f"| {name} | "
            + " | ".join(f"{got[n]:.0f} ({got[n] / base_us[n]:.2f})" for n in names)
            + f" | {min(r):.2f}-{max(r):.2f} ({np.mean(r):.2f}) |",
            flush=True,
        )


_R2 = ((27, 45), (16, 22))
FRONTIER_VARIANTS = [
    {"name": "F0 reference layout (3 circles 48 points, 5 steps, 32 pairs)"},
    {"name": "F0 one product for num and den", "one_call": True},
    {"name": "F0 without transposed copies (views into dot)", "views": True},
    {"name": "24 pairs, without transposed copies", "pairs": 24, "views": True},
    {"name": "N_REL 3", "n_rel": 3},
    {"name": "N_REL 2", "n_rel": 2},
    {"name": "24 pairs", "pairs": 24},
    {"name": "20 pairs", "pairs": 20},
    {"name": "16 pairs", "pairs": 16},
    {"name": "24 pairs, o where compare >= 0.015", "pairs": 24, "gate": 0.015},
    {"name": "24 pairs, o where compare >= 0.016", "pairs": 24, "gate": 0.016},
    {"name": "24 pairs, o where compare >= 0.0175", "pairs": 24, "gate": 0.0175},
    {"name": "24 pairs, each row's best (not one-to-one)", "pairs": 24, "rowbest": True},
    {
        "name": "24 pairs, each row's best, o where compare >= 0.016",
        "pairs": 24,
        "rowbest": True,
        "gate": 0.016,
    },
    {"name": "24 pairs, 36 points", "pairs": 24, "points": (12, 12, 12)},
    {"name": "N_REL 3, 24 pairs", "n_rel": 3, "pairs": 24},
    {"name": "N_REL 2, 16 pairs", "n_rel": 2, "pairs": 16},
    {"name": "limit 64", "limit": 64},
    {"name": "limit 56", "limit": 56},
    {"name": "limit 48", "limit": 48},
    {"name": "3 circles x 12 (36 points)", "points": (12, 12, 12)},
    {"name": "3 circles x 8-16 (36 points)", "points": (8, 12, 16)},
    {"name": "2 circles 27/45 x 16/22 (38 points)", "radii": _R2[0], "points": _R2[1]},
    {"name": "2 circles 45/63 x 16/22 (38 points)", "radii": (45, 63), "points": (16, 22)},
    {"name": "2 circles 27/54 x 12/16 (28 points)", "radii": (27, 54), "points": (12, 16)},
    {"name": "prefilter (exact)", "prefilter": True},
    {"name": "cosine-normalised, no den product", "cosnorm": True},
    {"name": "o where compare >= 0.01", "gate": 0.01},
    {"name": "o where compare >= 0.0125", "gate": 0.0125},
    {"name": "o where compare >= 0.015", "gate": 0.015},
    {"name": "o where compare >= 0.016", "gate": 0.016},
    {"name": "o where compare >= 0.0175", "gate": 0.0175},
    {"name": "o where compare >= 0.02", "gate": 0.02},
    {"name": "28 points, 24 pairs", "radii": (27, 54), "points": (12, 16), "pairs": 24},
    {"name": "28 points, cosine-normalised", "radii": (27, 54), "points": (12, 16), "cosnorm": 1},
    {
        "name": "28 points, 24 pairs, o where compare >= 0.015",
        "radii": (27, 54),
        "points": (12, 16),
        "pairs": 24,
        "gate": 0.015,
    },
    {
        "name": "28 points, 24 pairs, o where compare >= 0.016",
        "radii": (27, 54),
        "points": (12, 16),
        "pairs": 24,
        "gate": 0.016,
    },
    {
        "name": "28 points, 24 pairs, o where compare >= 0.0175",
        "radii": (27, 54),
        "points": (12, 16),
        "pairs": 24,
        "gate": 0.0175,
    },
    {"name": "rigid to MCC's fit (16 px, 0.35 rad)", "rigid": (16.0, 0.35), "w": (0.02, 0.05, 0.1)},
    {"name": "rigid to MCC's fit (24 px, 0.5 rad)", "rigid": (24.0, 0.5), "w": (0.02, 0.05, 0.1)},
]


# ---------------------------------------------------------------------------------------------
# (b) global: field agreement under the fitted alignment


def field_agreement(ta: Template, fa, tb: Template, fb, fit) -> tuple[float, float]:
    """Coherence-weighted mean cos 2(difference) of the two fields over the blocks of ``a``
    whose image under ``fit`` (a -> b) falls inside ``b``'s print, and the overlap as a
    fraction of ``a``'s print blocks."""
    if fit is None:
        return 0.0, 0.0
    c2a, s2a, coha, ma = fa
    rows, cols = ma.shape
    ii, jj = np.nonzero(ma)
    if ii.size == 0:
        return 0.0, 0.0
    x, y = jj * HOP, ii * HOP
    r = fit["rotation"]
    cr, sr = math.cos(r), math.sin(r)
    xb = cr * x - sr * y + fit["dx"]
    yb = sr * x + cr * y + fit["dy"]
    c2b, s2b, cohb, inside = sample(fb, xb, yb)
    if not inside.any():
        return 0.0, 0.0
    # b's doubled angle rotated back by -2 r into a's frame
    rc = c2b * math.cos(2 * r) + s2b * math.sin(2 * r)
    rs = s2b * math.cos(2 * r) - c2b * math.sin(2 * r)
    cos2 = c2a[ii, jj] * rc + s2a[ii, jj] * rs
    w = coha[ii, jj] * cohb * inside
    agree = float((w * cos2).sum() / max(w.sum(), 1e-9))
    return agree, float(inside.mean())


def _pad(x: np.ndarray) -> np.ndarray:
    out = np.zeros((SEARCH_SIZE, SEARCH_SIZE), x.dtype)
    out[: x.shape[0], : x.shape[1]] = x
    return out


SEARCH_SIZE = 64  # FFT size in blocks (a print is at most about 40 blocks across, rotated)
SEARCH_ROTATIONS = np.deg2rad(np.arange(-45, 46, 5))
SEARCH_MIN_OVERLAP = 0.35  # of the smaller print's coherence-weighted blocks


class SearchField:
    """The field of one print for the exhaustive search: coherence-weighted doubled-angle
    complex field ``w exp(2 i phi)`` and weight ``w`` (coherence inside the mask), their FFTs as
    the fixed operand, and lazily the conjugate FFTs of the field rotated by each angle of
    SEARCH_ROTATIONS about its centre (nearest block; the doubled angle turns by 2 r)."""

    def __init__(self, ang: np.ndarray, coh: np.ndarray, bmask: np.ndarray):
        phi = ang.astype(np.float64) * (np.pi / 256)
        self.w = (coh / 255.0) * bmask
        self.z = self.w * np.exp(2j * phi)
        self.fw, self.fz = np.fft.fft2(_pad(self.w)), np.fft.fft2(_pad(self.z))
        self.total = float(self.w.sum())
        self._rot = None

    def rotated(self):
        if self._rot is None:
            h, wd = self.w.shape
            n = int(np.ceil(np.hypot(h, wd))) + 1
            yy, xx = np.mgrid[0:n, 0:n] - (n - 1) / 2
            self._rot = []
            for r in SEARCH_ROTATIONS:
                c, s = math.cos(r), math.sin(r)
                ix = np.rint(c * xx + s * yy + (wd - 1) / 2).astype(np.intp)
                iy = np.rint(-s * xx + c * yy + (h - 1) / 2).astype(np.intp)
                ok = (ix >= 0) & (ix < wd) & (iy >= 0) & (iy < h)
                ow = np.zeros((n, n))
                oz = np.zeros((n, n), complex)
                ow[ok] = self.w[iy[ok], ix[ok]]
                oz[ok] = self.z[iy[ok], ix[ok]] * np.exp(2j * r)
                self._rot.append(
                    (np.conj(np.fft.fft2(_pad(ow))), np.conj(np.fft.fft2(_pad(oz))), ow.sum())
                )
        return self._rot


def searched_agreement(a: SearchField, b: SearchField) -> float:
    """The best coherence-weighted mean cos 2(difference) over rotations of ``b`` (+-45 deg,
    5 deg steps) and all block translations (FFT correlation) with enough overlap."""
    best = -1.0
    for fw, fz, total in b.rotated():
        den = np.fft.ifft2(a.fw * fw).real
        num = np.fft.ifft2(a.fz * fz).real
        ok = den >= SEARCH_MIN_OVERLAP * min(a.total, total)
        if ok.any():
            best = max(best, float((num[ok] / den[ok]).max()))
    return best


# ---------------------------------------------------------------------------------------------
# running


def score_all(data: dict, prs: dict, local: LocalFusion | None = None) -> dict:
    """``compare`` on every pair of ``prs`` (the local fusion in place of ``mcc._ratio``)."""
    if local is not None and local.pair_only:

        def one(a, b):
            ta, tb = data[a][0], data[b][0]
            if ta.key > tb.key:
                ta, tb = tb, ta
            return score_pair_only(ta.prepared, tb.prepared, local)

        return {n: np.array([one(a, b) for a, b in p]) for n, p in prs.items()}
    if local is not None:
        mcc._ratio = local
    try:
        return {
            n: np.array([compare(data[a][0], data[b][0]) for a, b in p]) for n, p in prs.items()
        }
    finally:
        if local is not None:
            mcc._ratio = local.real


def figures(scores: dict) -> tuple[float, float, float]:
    """EER fvc, EER ext, FMR100 ext in per cent (``benchmarks/accuracy.py``'s functions); a
    synthetic set (genuine / impostor): its EER three times, so that the sum stays comparable."""
    if "impostor" in scores:
        e = 100 * synth_hardness.eer(scores["genuine"], scores["impostor"])
        return e, e, e
    f = accuracy.figures(scores)
    return 100 * f["fvc"]["eer"], 100 * f["ext"]["eer"], 100 * f["ext"]["fmr100"]


def evidence_second(data: dict, prs: dict, cfg: dict) -> tuple[dict, float]:
    """The all-minutiae orientation matcher's score of every pair (times the ridge-period gate,
    operands in ``compare``'s order) and its CPU time per pair."""
    mats = {
        k: AllMinutiae(t, field_vectors(a, c, t.block_mask), *cfg["geometry"], cfg.get("limit", 0))
        for k, (t, a, c) in data.items()
    }

    def one(a, b):
        ta, tb = data[a][0], data[b][0]
        if ta.key > tb.key:
            a, b, ta, tb = b, a, tb, ta
        s = score_all_minutiae(mats[a], mats[b], cfg["s0"], 0.5)
        return s * mcc.period_factor(ta.prepared.log_period, tb.prepared.log_period)

    t0 = time.process_time()
    out = {n: np.array([one(a, b) for a, b in p]) for n, p in prs.items()}
    n = sum(len(p) for p in prs.values())
    return out, (time.process_time() - t0) / max(n, 1)


def evidence_aligned(data: dict, prs: dict) -> dict:
    """Field agreement under the rigid fit of ``compare_detail``'s pairs, every pair."""
    fields = {k: field_vectors(a, c, t.block_mask) for k, (t, a, c) in data.items()}

    def one(a, b):
        d = compare_detail(data[a][0], data[b][0])
        return field_agreement(data[a][0], fields[a], data[b][0], fields[b], d["alignment"])[0]

    return {n: np.array([one(a, b) for a, b in p]) for n, p in prs.items()}


def evidence_searched(data: dict, prs: dict) -> dict:
    """Field agreement under the exhaustive search (slow: a few ms per pair)."""
    fields = {k: SearchField(a, c, t.block_mask) for k, (t, a, c) in data.items()}
    return {
        n: np.array([searched_agreement(fields[a], fields[b]) for a, b in p])
        for n, p in prs.items()
    }


class Table:
    """Rows of figures per set, the sum of the 18 FVC figures, the synthetic EER."""

    def __init__(self, names: list):
        self.names = names
        fvc = [n for n in names if n != "synth"]
        print(
            "| variant | "
            + " | ".join(fvc)
            + " | sum |"
            + (" synth EER |" if "synth" in names else "")
        )

    def row(self, label: str, scores: dict) -> None:
        cells, total, extra = [], 0.0, ""
        for name in self.names:
            f = figures(scores[name])
            if name == "synth":
                extra = f" {f[0]:.2f} |"
                continue
            total += sum(f)
            cells.append("/".join(f"{v:.2f}" for v in f))
        print(f"| {label} | " + " | ".join(cells) + f" | {total:.1f} |" + extra, flush=True)


def _ramp(a0, a1, floor):
    return lambda s, e: s * np.clip((e - a0) / (a1 - a0), floor, 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", action="append", help="sets (default: all six)")
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--synth", type=int, default=20, help="image-level synthetic fingers (0: none)")
    ap.add_argument(
        "--evidence",
        default="second",
        choices=("local", "aligned", "searched", "second", "joint", "cost", "frontier"),
        help="local: descriptor mixed into MCC's similarity; aligned / searched: global field "
        "agreement under the pairs' fit / an exhaustive search; second: the all-minutiae "
        "orientation matcher's score mixed with compare's; joint: its pairs and MCC's in one "
        "relaxation; cost: its rate beside compare's; frontier: cheaper forms of it, each with "
        "its accuracy and its cost beside compare's",
    )
    ap.add_argument(
        "--angle-bits",
        type=int,
        default=8,
        choices=range(2, 9),
        help="store the block angle in this many bits (default 8: u8)",
    )
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        help="with --evidence frontier: run only this variant (its name; repeatable)",
    )
    ap.add_argument(
        "--passes",
        type=int,
        default=3,
        help="with --evidence frontier: timed passes per set (the fastest counts; 0: none)",
    )
    args = ap.parse_args(argv)
    dbs = [accuracy.ALIASES.get(d, d) for d in args.db] if args.db else list(accuracy.SETS)
    print(
        f"orientation_fusion: offset {args.offset}, evidence {args.evidence}, load "
        f"{os.getloadavg()[0]:.1f}"
    )
    sets = {db: load_set(db, args.offset, args.workers) for db in dbs}
    prs = {db: accuracy.pairs(list(sets[db])) for db in dbs}
    if args.synth:
        sets["synth"] = load_synth(args.synth, args.workers)
        fingers = sorted({f for f, _ in sets["synth"]})
        prs["synth"] = synth_hardness.pairs(fingers, list(range(8)))
    if args.angle_bits < 8:  # coarser angles: the middle of each step
        step = 1 << (8 - args.angle_bits)
        for data in sets.values():
            for k, (t, a, c) in data.items():
                data[k] = (t, (a // step) * step + step // 2, c)
    if args.evidence == "cost":
        cost(sets, prs)
        return 0
    if args.evidence == "frontier":
        frontier(sets, prs, args.variant, args.passes)
        return 0
    base = {n: score_all(sets[n], prs[n]) for n in sets}
    table = Table(list(sets))
    table.row("baseline (compare)", base)

    if args.evidence == "local":
        for label, geo, fusion in LOCAL_VARIANTS:
            local = LocalFusion(**fusion)
            local.desc = prepare_local(sets, **geo)
            table.row(label, {n: score_all(sets[n], prs[n], local) for n in sets})
        return 0

    if args.evidence == "joint":
        for alpha in (0.0, 0.5, 1.0):
            got = {}
            for n, data in sets.items():
                mats = {
                    k: AllMinutiae(t, field_vectors(a, c, t.block_mask), *_R3, None, 0)
                    for k, (t, a, c) in data.items()
                }

                def one(a, b, data=data, mats=mats, alpha=alpha):
                    if data[a][0].key > data[b][0].key:
                        a, b = b, a
                    return score_joint(data[a][0], data[b][0], mats[a], mats[b], alpha)

                got[n] = {k: np.array([one(a, b) for a, b in p]) for k, p in prs[n].items()}
            table.row(f"joint relaxation, orientation pairs x {alpha} (cos 2d, s0 0.75)", got)
        return 0

    if args.evidence in ("aligned", "searched"):
        get = evidence_aligned if args.evidence == "aligned" else evidence_searched
        ev = {n: get(sets[n], prs[n]) for n in sets}
        for n in dbs:
            g, i = ev[n]["genuine"], ev[n]["ext"]
            print(
                f"{n}: agreement genuine median {np.median(g):.3f} p10 {np.percentile(g, 10):.3f},"
                f" impostors median {np.median(i):.3f} p99 {np.percentile(i, 99):.3f}"
            )
        table.row("agreement alone", ev)
        rules = GLOBAL_RULES[args.evidence]
        for label, rule in rules:
            table.row(label, {n: {k: rule(base[n][k], ev[n][k]) for k in base[n]} for n in sets})
        return 0

    for cfg in SECOND_VARIANTS:
        got = {n: evidence_second(sets[n], prs[n], cfg) for n in sets}
        ev = {n: g[0] for n, g in got.items()}
        per_pair = max(g[1] for g in got.values())
        print(
            f"{cfg['label']}: {1e6 * per_pair:.0f} us per pair at most (CPU, one set), load "
            f"{os.getloadavg()[0]:.1f}"
        )
        table.row(f"{cfg['label']} alone", ev)
        for w in cfg["w"]:
            table.row(
                f"{cfg['label']}, (1 - {w}) score + {w} o",
                {n: {k: (1 - w) * base[n][k] + w * ev[n][k] for k in base[n]} for n in sets},
            )
        for g in cfg.get("gate", ()):
            w = cfg["w"][len(cfg["w"]) // 2]
            share = np.mean(
                np.concatenate([base[n][k] >= g for n in dbs for k in ("genuine", "ext")])
            )
            table.row(
                f"{cfg['label']}, w {w}, o only where score >= {g} ({100 * share:.0f} % of pairs)",
                {
                    n: {k: (1 - w) * base[n][k] + w * ev[n][k] * (base[n][k] >= g) for k in base[n]}
                    for n in sets
                },
            )
    return 0


def prepare_local(sets: dict, radii, points, weight_coh: bool, sigma=None) -> dict:
    desc = {}
    for data in sets.values():
        for t, ang, coh in data.values():
            p = t.prepared
            desc[id(p)] = Descriptor(
                p, field_vectors(ang, coh, t.block_mask), radii, points, weight_coh, sigma
            )
    return desc


# (label, descriptor geometry, fusion) of the local descriptor mixed into MCC's similarity
_G1 = {"radii": (27, 45, 63), "points": (10, 16, 22), "weight_coh": False}
_G1S = {**_G1, "sigma": 0.3}
LOCAL_VARIANTS = [
    ("local cos 2d, convex w 0.3", _G1, {"w": 0.3}),
    ("local cos 2d, convex w 0.5", _G1, {"w": 0.5}),
    ("local cos 2d, geometric w 0.5", _G1, {"w": 0.5, "mode": "geometric"}),
    ("local cos 2d coherence-weighted, convex w 0.3", {**_G1, "weight_coh": True}, {"w": 0.3}),
    ("local exp(-(d/0.3)^2), convex w 0.3", _G1S, {"w": 0.3}),
    ("local exp(-(d/0.3)^2), convex w 0.5", _G1S, {"w": 0.5}),
    ("local exp(-(d/0.3)^2), w 0.3, rescue", _G1S, {"w": 0.3, "rescue": True}),
    (
        "local exp(-(d/0.3)^2), 4 circles, w 0.3",
        {**_G1S, "radii": (20, 40, 60, 80), "points": (8, 14, 20, 26)},
        {"w": 0.3},
    ),
    ("local cos 2d, w 0.3, pairing only", _G1, {"w": 0.3, "pair_only": True}),
    ("local cos 2d, w 0.5, pairing only", _G1, {"w": 0.5, "pair_only": True}),
    ("local exp(-(d/0.3)^2), w 0.5, pairing only", _G1S, {"w": 0.5, "pair_only": True}),
]
GLOBAL_RULES = {
    "aligned": [
        (f"x ramp({a0}..{a1}) floor {f}", _ramp(a0, a1, f))
        for a0, a1 in ((0.3, 0.9), (0.6, 0.95), (0.7, 0.95))
        for f in (0.3, 0.5)
    ]
    + [("x agreement^0.5", lambda s, e: s * np.clip(e, 0, 1) ** 0.5)],
    "searched": [
        (f"x ramp({a0}..{a1}) floor {f}", _ramp(a0, a1, f))
        for a0, a1 in ((0.9, 0.98), (0.95, 0.99))
        for f in (0.5, 0.7)
    ]
    + [
        (f"+ {w} max(agreement - {a0}, 0)", lambda s, e, w=w, a0=a0: s + w * np.maximum(e - a0, 0))
        for a0 in (0.9, 0.97)
        for w in (0.05, 0.2)
    ],
}
_R3 = ((27, 45, 63), (10, 16, 22))
SECOND_VARIANTS = [
    {
        "label": "o: exp(-(d/0.3)^2), s0 0.6",
        "geometry": (*_R3, 0.3),
        "s0": 0.6,
        "w": (0.15, 0.2, 0.25),
        "gate": (0.015, 0.02),
    },
    {"label": "o: exp(-(d/0.3)^2), s0 0.5", "geometry": (*_R3, 0.3), "s0": 0.5, "w": (0.2,)},
    {"label": "o: exp(-(d/0.2)^2), s0 0.5", "geometry": (*_R3, 0.2), "s0": 0.5, "w": (0.2,)},
    {"label": "o: cos 2d, s0 0.75", "geometry": (*_R3, None), "s0": 0.75, "w": (0.2,)},
    {
        "label": "o: 40 best minutiae only, exp(-(d/0.3)^2), s0 0.5",
        "geometry": (*_R3, 0.3),
        "s0": 0.5,
        "w": (0.2,),
        "limit": 40,
    },
    {
        "label": "o: 4 circles, exp(-(d/0.3)^2), s0 0.5",
        "geometry": ((20, 40, 60, 80), (8, 14, 20, 26), 0.3),
        "s0": 0.5,
        "w": (0.2,),
    },
]


if __name__ == "__main__":
    sys.exit(main())
