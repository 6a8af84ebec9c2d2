"""A/B of comparison-side rules on the six FVC sets B over block-grid offsets (issue 17).

Run on demand (not in CI)::

    .venv/bin/python benchmarks/compare_ab.py                      # every variant, offsets 0, 5, 11
    .venv/bin/python benchmarks/compare_ab.py --variant mutual --offsets 0

The templates are extracted once as ``benchmarks/accuracy.py`` extracts them, in its cache
(``benchmarks/out/cache/<digest of the matcher>/``: a run of either fills it for the other), then
``compare`` and every variant score the same pairs with the same protocol and functions
(imported).  Printed per variant: EER with the FVC and the all-pairs impostors and FNMR at FMR
1 % (all pairs) per set, each the mean over the offsets, and the sum of those 18 means (the
figure issue 17's changes are judged on, as in ``benchmarks/extraction_ab.py``).  Accuracy only,
no timing; a variant over 6 sets and 3 offsets takes 5-30 seconds.

The variants (:data:`VARIANTS`) change only how two templates are scored; nothing here is in the
package (``docs/matcher.md``, "Session 12", has what they gave):

* ``mutual``: MCC's one-to-one pairs only where each cylinder is the other's best (mutual best)
  instead of each minutia of the first template proposing its best and each cylinder of the
  second keeping its best proposal;
* ``both``: the proposals of both templates' cylinders together, made one-to-one greedily by
  similarity;
* ``overlap np``: n_P (how many relaxed pairs the score averages) from the number of cylinders
  that lie inside the other print under the rigid fit of the n_P best pairs, instead of the
  smaller cylinder count (prints that overlap little keep fewer pairs to average);
* ``vector b t``: the score plus ``b * max(0, v - t)``, v the cosine of the two templates' first-
  stage vectors (:mod:`gateway.matcher.vector`, the 1:N search's bag of local minutia pairs);
* ``gauss gate t s``: the ridge-period gate falling as a Gaussian of width ``s`` past the
  tolerance ``t`` (log period ratio) instead of linearly over 0.2;
* ``density r d0 a``: the cylinders of a template with more minutiae than ``MAX_CYLINDERS``
  chosen by quality divided by ``1 + a max(0, d - d0)``, d the other minutiae within ``r`` ridge
  periods (dense places: dry, broken ridges); ``spread r b``: chosen one after another by
  quality, each choice multiplying the quality of the minutiae within ``r`` periods by ``b``;
* ``other order``, ``mean|max|min of both orders``: ``compare`` with the operands the other way
  round, or both ways combined (the pairing is asymmetric: the first operand's cylinders
  propose), which says how far a change that only reshuffles pairs moves the figures.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
from multiprocessing import Pool  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # (the repository before this folder: benchmarks/gateway.py)

import accuracy  # noqa: E402  (benchmarks/accuracy.py: this script's folder is on sys.path)
import orientation_fusion  # noqa: E402

from gateway.matcher import Template, mcc, vector  # noqa: E402
from gateway.matcher.features import HOP, pixel_mask  # noqa: E402


def load(db: str, offset: int, workers: int) -> dict:
    """{(finger, impression): Template} of one set at one offset, from accuracy.py's cache."""
    files = accuracy.images(db, 10)
    folder = accuracy.template_cache(db, offset)
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [
        (p, folder / f"{p.stem}.tpl", offset, accuracy.features.SECOND_PASS_BW,
         accuracy.features.SECOND_PASS_KEEP)
        for p in files.values()
    ]  # fmt: skip
    with Pool(workers) as pool:
        got = {path: data for path, data, _ in pool.map(accuracy._extract_one, jobs, chunksize=2)}
    return {k: Template.from_bytes(got[str(p)]) for k, p in files.items()}


# ---------------------------------------------------------------------------------------------
# the variants: each scores two templates in compare's canonical order (a.key <= b.key)


def _gated(fn):
    """``fn(pa, pb)`` times the ridge-period gate, 0 with fewer than two cylinders (as
    ``mcc.score``)."""

    def score(a: Template, b: Template) -> float:
        pa, pb = a.prepared, b.prepared
        if pa.n < 2 or pb.n < 2:
            return 0.0
        gate = mcc.period_factor(pa.log_period, pb.log_period)
        return gate * fn(pa, pb) if gate else 0.0

    return score


def _relaxed_mean(pa, pb, ia, ib, v, n_small: int) -> float:
    """MCC's relaxation of the pairs (ia, ib) with ratios ``v`` (1 - similarity; the best
    MAX_PAIRS kept) and the mean of the n_P best (``orientation_fusion._relaxed_mean``: the
    steps of ``mcc._relaxed`` and ``mcc.score``)."""
    if ia.size > mcc.MAX_PAIRS:
        keep = np.sort(np.argsort(v, kind="stable")[: mcc.MAX_PAIRS])
        ia, ib, v = ia[keep], ib[keep], v[keep]
    lr = (1 - v).astype(np.float32)
    return orientation_fusion._relaxed_mean(lr, pa.planes, pb.planes, ia, ib, n_small)


def _mutual(pa, pb) -> float:
    ratio = mcc._ratio(pa, pb)
    j, i = ratio.argmin(1), ratio.argmin(0)
    ia = np.nonzero(i[j] == np.arange(pa.n))[0]
    ib = j[ia]
    v = ratio[ia, ib]
    ok = v < 1
    order = np.argsort(ib[ok], kind="stable")  # in slot order, as mcc keeps them
    return _relaxed_mean(pa, pb, ia[ok][order], ib[ok][order], v[ok][order], min(pa.n, pb.n))


def _both(pa, pb) -> float:
    ratio = mcc._ratio(pa, pb)
    ca = np.concatenate([np.arange(pa.n), ratio.argmin(0)])
    cb = np.concatenate([ratio.argmin(1), np.arange(pb.n)])
    v = ratio[ca, cb]
    used_a, used_b, rows = set(), set(), []
    for k in np.lexsort((ca, v)):
        if v[k] >= 1:
            break
        if ca[k] not in used_a and cb[k] not in used_b:
            used_a.add(ca[k])
            used_b.add(cb[k])
            rows.append((cb[k], ca[k], v[k]))
    if len(rows) < 2:
        return 0.0
    rows.sort()
    ib, ia, vv = (np.array(x) for x in zip(*rows, strict=True))
    return _relaxed_mean(pa, pb, ia, ib, vv.astype(np.float32), min(pa.n, pb.n))


def _inside(t: Template, xy: np.ndarray) -> int:
    """How many of the points ``xy`` fall in ``t``'s block mask."""
    rows, cols = t.block_mask.shape
    i = np.rint(xy[:, 1] / HOP).astype(np.int64)
    j = np.rint(xy[:, 0] / HOP).astype(np.int64)
    ok = (i >= 0) & (i < rows) & (j >= 0) & (j < cols)
    return int(t.block_mask[i[ok], j[ok]].sum())


def _overlap_np(a: Template, b: Template) -> float:
    pa, pb = a.prepared, b.prepared
    if pa.n < 2 or pb.n < 2:
        return 0.0
    gate = mcc.period_factor(pa.log_period, pb.log_period)
    found = mcc._relaxed(pa, pb) if gate else None
    if found is None:
        return 0.0
    r, dx, dy = orientation_fusion.fit_from(found, pa, pb)  # a onto b, the n_P best pairs
    rot = np.array([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]])
    shift = np.array([dx, dy])
    _ia, _ib, lr, c = found
    nr = lr.size
    n_ov = min(_inside(b, pa.xy @ rot.T + shift), _inside(a, (pb.xy - shift) @ rot))
    k = min(mcc._NP[min(max(n_ov, 4), pa.n, pb.n, mcc._NP_LAST)], nr)
    return gate * math.fsum(np.sort(lr)[nr - k :].tolist()) * c**mcc.N_REL / k


_EMBEDDED: dict[int, np.ndarray] = {}


def _embed_all(templates: dict) -> None:
    """The first-stage vectors (before the sign bits) of a set's templates, by object id."""
    ts = list(templates.values())
    m = np.zeros((len(ts), max(len(t) for t in ts), 5))
    count = np.array([len(t) for t in ts])
    for i, t in enumerate(ts):
        m[i, : len(t)] = t.minutiae
    for t, e in zip(ts, vector.embed(m, count), strict=True):
        _EMBEDDED[id(t)] = e


def _vector(beta: float, tau: float):
    def score(a: Template, b: Template) -> float:
        v = float(_EMBEDDED[id(a)] @ _EMBEDDED[id(b)])
        return mcc.score(a.prepared, b.prepared) + beta * max(0.0, v - tau)

    return score


def _gauss_gate(tol: float, sigma: float):
    def score(a: Template, b: Template) -> float:
        pa, pb = a.prepared, b.prepared
        la, lb = pa.log_period, pb.log_period
        pa.log_period = pb.log_period = 0.0  # the score without the gate, then this gate
        try:
            s = mcc.score(pa, pb)
        finally:
            pa.log_period, pb.log_period = la, lb
        d = abs(la - lb) if la and lb else 0.0
        return s if d <= tol else s * math.exp(-(((d - tol) / sigma) ** 2))

    return score


def _chosen(rank):
    """Score with the cylinders of templates over ``MAX_CYLINDERS`` minutiae chosen by
    ``rank(minutiae, period)`` (a quality-like array: the highest are kept) instead of the
    minutiae quality (prepared once per template)."""
    cache: dict[int, mcc.Prepared] = {}

    def prepared(t: Template) -> mcc.Prepared:
        if id(t) not in cache:
            m = t.minutiae
            if len(m) <= mcc.MAX_CYLINDERS:
                cache[id(t)] = t.prepared
            else:
                mask = pixel_mask(t.block_mask, (t.height, t.width))
                q = rank(m, t.period or 9.0)
                cache[id(t)] = mcc.Prepared(m[:, 0], m[:, 1], m[:, 2], mask, q, t.period)
        return cache[id(t)]

    return lambda a, b: mcc.score(prepared(a), prepared(b))


def _near(m: np.ndarray, radius: float) -> np.ndarray:
    """(n, n) bool: minutiae within ``radius`` pixels of each other."""
    dx = m[:, 0][:, None] - m[:, 0][None, :]
    dy = m[:, 1][:, None] - m[:, 1][None, :]
    return dx * dx + dy * dy < radius * radius


def _density(r: float, d0: int, a: float):
    def rank(m, period):
        d = _near(m, r * period).sum(1) - 1
        return m[:, 4] / (1 + a * np.maximum(0, d - d0))

    return _chosen(rank)


def _spread(r: float, b: float):
    def rank(m, period):
        near = _near(m, r * period)
        score = m[:, 4].astype(np.float64)
        out = np.zeros(len(m))
        for k in range(mcc.MAX_CYLINDERS):
            i = int(np.argmax(np.where(out > 0, -np.inf, score)))
            out[i] = 2.0 - k * 1e-3  # the order of choice
            score = score * np.where(near[i], b, 1.0)
        return out

    return _chosen(rank)


def _orders(combine):
    def score(a: Template, b: Template) -> float:
        return combine(mcc.score(a.prepared, b.prepared), mcc.score(b.prepared, a.prepared))

    return score


VARIANTS = {
    "mutual": _gated(_mutual),
    "both": _gated(_both),
    "overlap np": _overlap_np,
    "vector 0.01 0.1": _vector(0.01, 0.1),
    "vector 0.02 0.0": _vector(0.02, 0.0),
    "gauss gate 0.1 0.16": _gauss_gate(0.10, 0.16),
    "gauss gate 0.13 0.12": _gauss_gate(0.13, 0.12),
    "density 3 2 0.5": _density(3.0, 2, 0.5),
    "spread 3 0.8": _spread(3.0, 0.8),
    "other order": lambda a, b: mcc.score(b.prepared, a.prepared),
    "mean of both orders": _orders(lambda x, y: (x + y) / 2),
    "max of both orders": _orders(max),
    "min of both orders": _orders(min),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", action="append", choices=tuple(VARIANTS))
    ap.add_argument("--db", action="append", choices=tuple(accuracy.SETS))
    ap.add_argument("--offsets", default="0,5,11")
    ap.add_argument("--workers", type=int, default=2, choices=(1, 2))
    args = ap.parse_args(argv)
    runs = {"compare": lambda a, b: mcc.score(a.prepared, b.prepared)}
    runs.update({name: VARIANTS[name] for name in args.variant or VARIANTS})
    dbs = args.db or list(accuracy.SETS)
    offsets = [int(o) for o in args.offsets.split(",")]
    sets = {}
    for db in dbs:
        for off in offsets:
            templates = load(db, off, args.workers)
            _embed_all(templates)
            prs = accuracy.pairs(templates)
            ordered = {
                name: [(templates[a], templates[b]) for a, b in plist]
                for name, plist in prs.items()
            }
            sets[db, off] = {
                name: [(a, b) if a.key <= b.key else (b, a) for a, b in plist]
                for name, plist in ordered.items()
            }
    print(f"offsets {offsets}; per set EER fvc / EER ext / FMR100 ext (%), means over them")
    print("| variant | " + " | ".join(dbs) + " | sum |")
    for name, fn in runs.items():
        cells, total = [], 0.0
        for db in dbs:
            rows = []
            for off in offsets:
                s = {k: np.array([fn(a, b) for a, b in pl]) for k, pl in sets[db, off].items()}
                f = accuracy.figures(s)
                fvc, ext = f["fvc"], f["ext"]
                rows.append([100 * fvc["eer"], 100 * ext["eer"], 100 * ext["fmr100"]])
            mean = np.mean(rows, axis=0)
            total += float(mean.sum())
            cells.append("/".join(f"{v:.2f}" for v in mean))
        print(f"| {name} | " + " | ".join(cells) + f" | {total:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
