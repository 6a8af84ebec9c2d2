"""A/B of extraction constants on the six FVC sets B over block-grid offsets (issue 17).

Run on demand (not in CI)::

    .venv/bin/python benchmarks/extraction_ab.py --set SECOND_PASS_KEEP=12.0
    .venv/bin/python benchmarks/extraction_ab.py --ref SECOND_PASS_KEEP=None --set CLUSTER=4 \
        --db 2004-2 --offsets 0

Each variant is the extraction with some module constants of ``gateway.matcher.features``
overridden (``--set NAME=VALUE``, a Python literal; repeat for several); the reference is the
extraction as it is, or with its own overrides (``--ref NAME=VALUE``), measured in the same run
on the same images, so the two differ by the overrides alone.  Printed per set and offset
(``--offset`` of ``benchmarks/accuracy.py``: N pixels cropped from the top and left, which
moves the 16-pixel block grid): EER with the FVC and the all-pairs impostors and FNMR at FMR
1 % (all pairs), then their means over the offsets and the sum of those 18 means (the figure
issue 17's extraction changes are judged on), and the genuine pairs of FVC2004 DB2_B failing
at FMR 1 % per finger at the first offset.  Accuracy
only: no timing (``benchmarks/accuracy.py`` times extraction and comparison).  Templates are
cached under ``benchmarks/out/cache-ab/<digest of the matcher and the overrides>``.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import ast  # noqa: E402
import collections  # noqa: E402
import hashlib  # noqa: E402
import sys  # noqa: E402
from multiprocessing import Pool  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # (the repository before this folder: benchmarks/gateway.py)

import accuracy  # noqa: E402  (benchmarks/accuracy.py: this script's folder is on sys.path)

from gateway.matcher import Template, compare, extract, features  # noqa: E402

CACHE = ROOT / "benchmarks" / "out" / "cache-ab"


def _override(overrides: dict) -> None:
    for name, value in overrides.items():
        setattr(features, name, value)


def _extract_one(job):
    path, cache, offset, overrides = job
    if cache.exists():
        return str(path), cache.read_bytes()
    _override(overrides)
    data = extract(accuracy.cropped(path, offset), 500).to_bytes()
    cache.write_bytes(data)
    return str(path), data


def _key(overrides: dict) -> str:
    h = hashlib.sha256(accuracy._source_digest().encode())
    h.update(repr(sorted(overrides.items())).encode())
    return h.hexdigest()[:12]


def scores(db: str, offset: int, overrides: dict, workers: int):
    files = accuracy.images(db, 10)
    prs = accuracy.pairs(files)
    folder = CACHE / _key(overrides) / f"db{db}-o{offset}"
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(p, folder / f"{p.stem}.tpl", offset, overrides) for p in files.values()]
    with Pool(workers) as pool:
        got = dict(pool.map(_extract_one, jobs, chunksize=2))
    t = {k: Template.from_bytes(got[str(p)]) for k, p in files.items()}
    return prs, {n: np.array([compare(t[a], t[b]) for a, b in pl]) for n, pl in prs.items()}


def per_finger(prs, s) -> dict:
    """Genuine pairs failing at FMR 1 % (the all-pairs impostors' threshold) per finger."""
    imp = np.sort(s["ext"])
    thr = imp[int(len(imp) * 0.99)]
    fails: collections.Counter = collections.Counter()
    for (a, _), v in zip(prs["genuine"], s["genuine"], strict=True):
        if v < thr:
            fails[a[0]] += 1
    return dict(sorted(fails.items()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument(
        "--ref", action="append", default=[], metavar="NAME=VALUE", help="the reference's"
    )
    ap.add_argument("--db", action="append", choices=tuple(accuracy.SETS))
    ap.add_argument("--offsets", default="0,5,11")
    ap.add_argument("--workers", type=int, default=2, choices=(1, 2))
    ap.add_argument("--no-ref", action="store_true", help="the variant only")
    args = ap.parse_args(argv)
    overrides, reference = {}, {}
    for items, into in ((args.set, overrides), (args.ref, reference)):
        for item in items:
            name, _, value = item.partition("=")
            if not hasattr(features, name):
                ap.error(f"features has no constant {name}")
            into[name] = ast.literal_eval(value)
    dbs = args.db or list(accuracy.SETS)
    offsets = [int(o) for o in args.offsets.split(",")]
    runs = {"variant": overrides}
    if not args.no_ref:
        runs = {"reference": reference, **runs}
    print(f"reference: {reference or 'as is'}; variant: {overrides or 'as is'}; offsets {offsets}")
    total = {name: 0.0 for name in runs}
    fingers = {}
    for db in dbs:
        for name, ov in runs.items():
            rows = []
            for off in offsets:
                prs, s = scores(db, off, ov, args.workers)
                f = accuracy.figures(s)
                fvc, ext = f["fvc"], f["ext"]
                rows.append([100 * fvc["eer"], 100 * ext["eer"], 100 * ext["fmr100"]])
                if db == "2004-2" and off == offsets[0]:
                    fingers[name] = per_finger(prs, s)
            mean = np.mean(rows, axis=0)
            total[name] += float(mean.sum())
            each = "  ".join("/".join(f"{v:.2f}" for v in r) for r in rows)
            print(
                f"{db} {name:9}  " + each + "  mean " + "/".join(f"{v:.2f}" for v in mean),
                flush=True,
            )
    for name in runs:
        print(f"sum of the means ({name}): {total[name]:.2f}")
    for name, f in fingers.items():
        print(f"FVC2004 DB2_B failures at FMR 1 % per finger ({name}): {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
