"""Finger quality formulas measured against failure, offline (issue 17, session 9).

The comparison scores never depend on the finger quality, so each FVC set B is extracted once
per block-grid offset with hooks that record, per image, what the extraction computes anyway
(block mask and coherence of both filtering passes, crossing-number candidates, minutiae counts
and qualities, ...), together with the scores of ``benchmarks/accuracy.py``'s genuine and "ext"
pairs.  A quality formula is then a function of those statistics and is judged in seconds by
accuracy.py's own ``reject_curve`` / ``reject_cut`` (FNMR at FMR 1 % with the comparisons of the
lowest-quality 10 % of images dropped)::

    .venv/bin/python benchmarks/quality_sweep.py table                      # the extraction's
    .venv/bin/python benchmarks/quality_sweep.py table --formula session8   # before session 9
    .venv/bin/python benchmarks/quality_sweep.py limit --db 2000-3 --offset 11 --exclude-finger 110

``table`` takes the quality the extraction gave each image (``Template.quality``; ``--formula
session8``: the formula before session 9, recomputed from the recorded block fields) and prints
the 6 x 3 table of cuts and their means, two steadier views (the mean cut over 4-20 % rejected
and Spearman's rho between the quality and the image's worst genuine scores) and the quality
distribution (median, 10th percentile, lowest) per set and offset.  ``limit`` searches for the
best cut any choice of rejected images reaches (``--exclude-finger``: never rejecting that
finger).  The statistics (about a minute for the six sets at three offsets) are cached in
``benchmarks/out/quality/`` keyed by the same digest of the matcher's source as accuracy.py's
template cache (a changed extraction re-collects).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import math  # noqa: E402
import pickle  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import accuracy  # noqa: E402
from accuracy import OUT, SETS, images, pairs, reject_curve, reject_cut  # noqa: E402

from gateway.matcher import compare, extract, features  # noqa: E402

OFFSETS = (0, 5, 11)
STORE = OUT / "quality"


# ---------------------------------------------------------------------------------------------
# collection: one extraction per image, hooked


class _Recorder:
    """Wraps the extraction's internal steps (module globals looked up at call time) and keeps
    what one extraction computed."""

    def __init__(self):
        self.calls: list = []
        self._orig = {
            name: getattr(features, name) for name in ("enhance", "_minutiae", "finger_quality")
        }

    def __enter__(self):
        orig = self._orig

        def enhance(img, *a, **k):
            out = orig["enhance"](img, *a, **k)
            self.calls.append(("enhance", img, out))
            return out

        def minutiae(enhanced, *a, **k):
            args = list(a)
            cand = k.get("candidates", args[5] if len(args) > 5 else None)
            mine = cand is None
            if mine:
                cand = []
                if len(args) > 5:
                    args[5] = cand
                else:
                    k["candidates"] = cand
            out = orig["_minutiae"](enhanced, *args, **k)
            self.calls.append(("minutiae", enhanced, out, cand))
            return out

        def quality(*a, **k):
            self.calls.append(("quality", a, k))
            return orig["finger_quality"](*a, **k)

        features.enhance = enhance
        features._minutiae = minutiae
        features.finger_quality = quality
        return self

    def __exit__(self, *exc):
        for name, fn in self._orig.items():
            setattr(features, name, fn)


def _density(ys, xs, bmask, period):
    """Crossing-number candidates per 100 squared ridge periods per block (as _clean_blocks)."""
    rows, cols = bmask.shape
    bi, bj = features._block_of(ys, xs, bmask.shape)
    count = np.bincount(bi * cols + bj, minlength=rows * cols).reshape(rows, cols)
    num, den = features._gaussian_stack(
        [count.astype(np.float64), bmask.astype(np.float64)], 1.0, "constant"
    )
    raw = count * (100 * period * period / (features.HOP * features.HOP))
    return (num / np.maximum(den, 1e-9) * (100 * period * period / (features.HOP**2))), raw


def _stats(rec: _Recorder) -> dict:
    enh = [c for c in rec.calls if c[0] == "enhance"]
    mins = [c for c in rec.calls if c[0] == "minutiae"]
    quals = [c for c in rec.calls if c[0] == "quality"]
    img0, (e1, bmask, _, coh1, period) = enh[0][1], enh[0][2]
    s = {
        "bmask": bmask.copy(),
        "coh1": coh1.astype(np.float32),
        "period": period,
        "quality_args": quals[-1][1:] if quals else None,
    }
    if len(enh) > 1:
        e2, mask2, _, coh2, period2 = enh[1][2]
        s.update(coh2=coh2.astype(np.float32), mask2=mask2.copy(), period2=period2)
        pm = features.pixel_mask(bmask, e1.shape)
        if pm.any():
            a, b = e1[pm], e2[pm]
            s["disagree"] = float(np.mean((a > 0) != (b > 0)))
            s["e21"] = float(np.sum(b * b) / max(np.sum(a * a), 1e-9))
            s["e10"] = float(np.sum(a * a) / max(np.sum(img0[pm] ** 2), 1e-9))
            s["corr12"] = float(np.sum(a * b) / max(np.sqrt(np.sum(a * a) * np.sum(b * b)), 1e-9))
    for m in mins:
        tag = "1" if m[1] is e1 else "2"
        f = m[2]
        s["n" + tag] = len(f.minutiae)
        s["mq" + tag] = f.minutiae[:, 4].copy()
        if m[3]:
            ys, xs = m[3][0]
            s["ncand" + tag] = int(ys.size)
            d, raw = _density(ys, xs, bmask, period)
            s["dens" + tag] = d.astype(np.float32)
            s["rawd" + tag] = raw.astype(np.float32)
    return s


def collect(db: str, offset: int) -> dict:
    files = images(db, 10)
    prs = pairs(files)
    stats, templates = {}, {}
    for key, path in files.items():
        with _Recorder() as rec:
            t = extract(accuracy.cropped(path, offset), 500)
        s = _stats(rec)
        s["quality"] = t.quality
        s["n"] = len(t)
        s["mq"] = t.minutiae[:, 4].copy() if len(t) else np.zeros(0, np.float32)
        stats[key] = s
        templates[key] = t.prepare()
    scores = {
        name: np.array([compare(templates[a], templates[b]) for a, b in plist])
        for name, plist in prs.items()
        if name in ("genuine", "ext")
    }
    return {"stats": stats, "scores": scores, "pairs": {k: prs[k] for k in ("genuine", "ext")}}


def _path(db: str, offset: int) -> Path:
    return STORE / accuracy._source_digest() / f"{db}-o{offset}.pkl"


def load(db: str, offset: int, build: bool = True) -> dict:
    path = _path(db, offset)
    if path.exists():
        return pickle.loads(path.read_bytes())
    if not build:
        raise FileNotFoundError(path)
    data = collect(db, offset)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(data))
    return data


# ---------------------------------------------------------------------------------------------
# evaluation


def cuts(formula, data_sets: dict) -> dict:
    """{(db, offset): (cut at 10 %, FNMR all, FNMR rejected)} of a quality formula
    (a function of one image's statistics)."""
    out = {}
    for (db, off), data in data_sets.items():
        q = {k: formula(s) for k, s in data["stats"].items()}
        curve = reject_curve(data["pairs"], data["scores"], q, (0.0, 0.1))
        out[db, off] = (reject_cut(curve), curve[0][1], curve[1][1])
    return out


def production(s: dict) -> int:
    """The quality the extraction gave the image (``Template.quality``)."""
    return s["quality"]


def session8(s: dict) -> int:
    """The formula before session 9 (100 x clarity x area x count, the clarity from the mean
    block coherence alone: 0 at 0.35, 1 from 0.85), from the recorded block fields (FVC is
    at 500 ppi: no area scale)."""
    bmask = s["bmask"]
    if not bmask.any() or s["n"] == 0:
        return 0
    clarity = min(max((float(np.mean(s["coh1"][bmask])) - 0.35) / 0.5, 0.0), 1.0)
    area = min(1.0, math.sqrt(np.count_nonzero(bmask) * features.HOP**2 / 60000.0))
    return int(round(100 * clarity * area * min(1.0, s["n"] / 12)))


FORMULAS = {"template": production, "session8": session8}


def steadier(formula, data_sets: dict) -> dict:
    """Two less granular views than the cut at 10 %, per (db, offset): the mean relative FNMR
    cut over 4-20 % rejected (the curve, not one point of it), and Spearman's rank correlation
    between an image's quality and the mean log margin of its three worst genuine scores over
    the FMR 1 % threshold (does the quality order the images as their genuine scores do)."""
    out = {}
    for key, data in data_sets.items():
        q = {k: formula(s) for k, s in data["stats"].items()}
        curve = reject_curve(data["pairs"], data["scores"], q, STEADY_FRACTIONS)
        base = curve[0][1]
        mean_cut = float(np.mean([(base - f) / base if base else 0.0 for _, f, _ in curve[1:]]))
        ext = np.sort(data["scores"]["ext"])
        thr = ext[int(0.99 * len(ext))]
        worst: dict = {}
        for (a, b), g in zip(data["pairs"]["genuine"], data["scores"]["genuine"], strict=True):
            margin = math.log(max(g, 1e-4) / thr)
            worst.setdefault(a, []).append(margin)
            worst.setdefault(b, []).append(margin)
        keys = sorted(worst)
        target = [float(np.mean(sorted(worst[k])[:3])) for k in keys]
        out[key] = (mean_cut, _spearman([q[k] for k in keys], target))
    return out


STEADY_FRACTIONS = (0.0, 0.04, 0.06, 0.08, 0.1, 0.12, 0.14, 0.16, 0.2)


def _spearman(a, b) -> float:
    """Spearman's rho (average ranks for ties)."""

    def ranks(v):
        v = np.asarray(v, float)
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v))
        for value in np.unique(v):  # ties share their mean rank
            tie = v == value
            r[tie] = r[tie].mean()
        return r

    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def limit(data: dict, exclude: set, rounds: int = 600, seed: int = 0):
    """The best cut at 10 % rejected that any choice of images reaches (a local search from
    the lowest mean coherences: swap one rejected image for another while the cut does not
    drop), never rejecting the impressions of the fingers ``exclude``: what a per-image score
    could reach at best."""
    keys = sorted(k for k in data["stats"] if k[0] not in exclude)
    n = int(round(0.1 * len(data["stats"])))

    def cut(rejected):
        q = {k: (0 if k in rejected else 1) for k in data["stats"]}
        return reject_cut(reject_curve(data["pairs"], data["scores"], q, (0.0, 0.1)))

    coh = {
        k: float(np.mean(s["coh1"][s["bmask"]])) if s["bmask"].any() else 0.0
        for k, s in data["stats"].items()
    }
    current = set(sorted(keys, key=lambda k: (coh[k], k))[:n])
    best = cut(current)
    rng = np.random.default_rng(seed)
    for _ in range(rounds):
        out = sorted(current)[rng.integers(n)]
        rest = [k for k in keys if k not in current]
        new = (current - {out}) | {rest[rng.integers(len(rest))]}
        c = cut(new)
        if c >= best:
            current, best = new, c
    return best, sorted(current)


def table(formula=production, data_sets=None, label: str = "") -> None:
    dbs = list(SETS)
    offsets = sorted({o for _, o in data_sets})
    res = cuts(formula, data_sets)
    print(f"cut at 10 % rejected {label}")
    print("| set | " + " | ".join(f"offset {o}" for o in offsets) + " | mean | min |")
    for db in dbs:
        row = [res[db, o][0] for o in offsets]
        print(
            f"| {SETS[db][1]} | "
            + " | ".join(
                f"{100 * c:.0f} % ({100 * res[db, o][1]:.2f} -> {100 * res[db, o][2]:.2f})"
                for c, o in zip(row, offsets, strict=True)
            )
            + f" | {100 * np.mean(row):.0f} % | {100 * min(row):.0f} % |"
        )
    allc = [res[k][0] for k in res]
    print(f"overall min {100 * min(allc):.0f} %, mean {100 * np.mean(allc):.1f} %")
    steady = steadier(formula, data_sets)
    print("mean cut over 4-20 % rejected / Spearman rho (quality vs worst genuine margins):")
    for db in dbs:
        print(
            f"  {SETS[db][1]}: "
            + "  ".join(f"{100 * steady[db, o][0]:.0f} % / {steady[db, o][1]:.2f}" for o in offsets)
        )
    print(
        f"  all: {100 * np.mean([v[0] for v in steady.values()]):.1f} % / "
        f"{np.mean([v[1] for v in steady.values()]):.3f} "
        f"(lowest rho {min(v[1] for v in steady.values()):.2f})"
    )
    print(f"quality median / 10th percentile / min per set (offsets {offsets}):")
    for db in dbs:
        parts = []
        for o in offsets:
            qs = [formula(s) for s in data_sets[db, o]["stats"].values()]
            parts.append(f"{statistics.median(qs):.0f}/{np.percentile(qs, 10):.0f}/{min(qs):.0f}")
        print(f"  {SETS[db][1]}: " + "  ".join(parts))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=("collect", "table", "limit"))
    ap.add_argument("--offsets", default=",".join(map(str, OFFSETS)))
    ap.add_argument(
        "--formula",
        choices=sorted(FORMULAS),
        default="template",
        help="template: the extraction's quality; session8: the formula before session 9",
    )
    ap.add_argument("--db", help="limit: the set (e.g. 2000-3)")
    ap.add_argument("--offset", type=int, default=0, help="limit: the block-grid offset")
    ap.add_argument("--exclude-finger", default="", help="limit: never reject these (110,105)")
    args = ap.parse_args(argv)
    if args.what == "limit":
        exclude = {int(f) for f in args.exclude_finger.split(",") if f}
        best, rejected = limit(load(args.db, args.offset), exclude)
        print(f"best cut at 10 % rejected {100 * best:.0f} %, rejecting {rejected}")
        return 0
    offsets = [int(o) for o in args.offsets.split(",")]
    data = {(db, o): load(db, o) for o in offsets for db in SETS}
    if args.what == "table":
        label = f"({args.formula}, matcher {accuracy._source_digest()})"
        table(FORMULAS[args.formula], data, label)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
