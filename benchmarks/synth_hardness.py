"""How hard are synthetic fingerprints for our matcher, next to the FVC sets? (issue 17)

Run on demand (not in CI)::

    .venv/bin/python benchmarks/synth_hardness.py [--difficulty fvc] [--fingers 10]
        [--template-fingers 100] [--sets all|none|2000-1,...] [--workers 2]

One protocol for every source: F fingers x 8 impressions; genuine = the 28 impression pairs of
each finger, impostors = all cross-finger impression pairs (FVC's "ext"; a fixed sample of 10,000
of them when there are more).  The sources:

* each FVC set B under ``../shared/eval`` (10 fingers x 8 impressions, extracted at 500 ppi as in
  ``benchmarks/accuracy.py``);
* image-level synthetic fingers: :func:`gateway.synth.finger` rendered with the ``--difficulty``
  preset and extracted with :func:`gateway.matcher.extract` (``--fingers`` identities from
  ``--start``, finger positions 1-10 in turn);
* template-level synthetic fingers: :func:`gateway.synth.templates.impressions` with the same
  preset (``--template-fingers`` fingers).

Printed side by side: the mean, standard deviation and quantiles of ``gateway.matcher.compare``
genuine and impostor scores, the EER of genuine against those impostors, the minutiae counts
per template and the finger quality (0-100, image-level only: template-level fingers have none).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import itertools  # noqa: E402
import multiprocessing as mp  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway import synth  # noqa: E402
from gateway.matcher import Template, compare, extract  # noqa: E402
from gateway.synth import templates  # noqa: E402

EVAL = ROOT.parent / "shared" / "eval"
SETS = {
    "2000-1": "fvc2000-db1-b",
    "2000-2": "fvc2000-db2-b",
    "2000-3": "fvc2000-db3-b",
    "2004-2": "fvc2004-db2-b",
    "2004-3": "fvc2004-db3-b",
    "2004-4": "fvc2004-db4-b",
}
IMPRESSIONS = 8
MAX_IMPOSTORS = 10_000


def pairs(fingers: list, impressions: list) -> dict[str, list]:
    """Genuine (all impression pairs of a finger) and impostor (all cross-finger pairs) keys."""
    genuine = [((f, a), (f, b)) for f in fingers for a, b in itertools.combinations(impressions, 2)]
    impostor = [
        ((f, a), (g, b))
        for f, g in itertools.combinations(fingers, 2)
        for a in impressions
        for b in impressions
    ]
    if len(impostor) > MAX_IMPOSTORS:  # a fixed sample (many template-level fingers)
        pick = np.random.default_rng(0).choice(len(impostor), MAX_IMPOSTORS, replace=False)
        impostor = [impostor[i] for i in np.sort(pick)]
    return {"genuine": genuine, "impostor": impostor}


def eer(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """Equal error rate (score >= threshold accepts), the middle of the crossing interval."""
    thresholds = np.unique(np.concatenate([genuine, impostor, [np.inf]]))
    fnmr = np.searchsorted(np.sort(genuine), thresholds, side="left") / len(genuine)
    fmr = 1 - np.searchsorted(np.sort(impostor), thresholds, side="left") / len(impostor)
    k = int(np.argmax(fnmr >= fmr))
    if k == 0:
        return float((fmr[0] + fnmr[0]) / 2)
    lo = max(min(fmr[k - 1], fnmr[k - 1]), min(fmr[k], fnmr[k]))
    hi = min(max(fmr[k - 1], fnmr[k - 1]), max(fmr[k], fnmr[k]))
    return float((lo + hi) / 2)


def _fvc_one(path: str) -> bytes:
    return extract(np.asarray(Image.open(path).convert("L")), 500).to_bytes()


def _synth_one(job) -> bytes:
    identity, position, impression, difficulty = job
    img = synth.finger(identity, position, impression, difficulty=difficulty)
    return extract(img, 500).to_bytes()


def fvc_templates(folder: Path, pool) -> dict:
    paths = {}
    for path in sorted([*folder.glob("*_*.tif"), *folder.glob("*_*.png")]):
        finger, impression = (int(v) for v in path.stem.split("_"))
        paths[finger, impression] = str(path)
    keys = sorted(paths)
    blobs = pool.map(_fvc_one, [paths[k] for k in keys], chunksize=4)
    return {k: Template.from_bytes(b) for k, b in zip(keys, blobs, strict=True)}


def image_templates(fingers: list, difficulty: str, pool) -> dict:
    # impressions of one finger in one chunk: the master is cached per process
    jobs = [(i, 1 + i % 10, k, difficulty) for i in fingers for k in range(IMPRESSIONS)]
    blobs = pool.map(_synth_one, jobs, chunksize=IMPRESSIONS)
    keys = [(i, k) for i, _p, k, _d in jobs]
    return {k: Template.from_bytes(b) for k, b in zip(keys, blobs, strict=True)}


def template_templates(fingers: list, difficulty: str) -> dict:
    subjects = np.asarray(fingers)
    positions = subjects % 10 + 1
    out = {}
    for k in range(IMPRESSIONS):
        b = templates.impressions(subjects, positions, k, difficulty=difficulty)
        for i, f in enumerate(fingers):
            out[f, k] = templates.template(b, i)
    return out


def measure(label: str, tpl: dict) -> dict:
    fingers = sorted({f for f, _ in tpl})
    imps = sorted({k for _, k in tpl})
    prs = pairs(fingers, imps)
    scores = {n: np.array([compare(tpl[a], tpl[b]) for a, b in p]) for n, p in prs.items()}
    counts = np.array([len(t.minutiae) for t in tpl.values()])
    quals = [t.quality for t in tpl.values() if t.quality is not None]
    return {
        "label": label,
        "scores": scores,
        "minutiae": (float(np.median(counts)), float(np.percentile(counts, 10))),
        "quality": float(np.median(quals)) if quals else float("nan"),
        "eer": eer(scores["genuine"], scores["impostor"]),
    }


def report(rows: list[dict]) -> None:
    qs = (0.05, 0.25, 0.5, 0.75, 0.95)
    head = f"{'source':<30}{'n':>6}{'mean':>7}{'std':>7}" + "".join(
        f"{'q' + str(int(q * 100)):>7}" for q in qs
    )
    for kind in ("genuine", "impostor"):
        print(f"\n{kind} compare scores")
        print(head)
        for r in rows:
            s = r["scores"][kind]
            print(
                f"{r['label']:<30}{len(s):>6}{s.mean():>7.3f}{s.std():>7.3f}"
                + "".join(f"{v:>7.3f}" for v in np.quantile(s, qs))
            )
    print(f"\n{'source':<30}{'EER':>7}{'minutiae median':>17}{'p10':>6}{'quality median':>16}")
    for r in rows:
        m50, m10 = r["minutiae"]
        print(
            f"{r['label']:<30}{100 * r['eer']:>6.2f}%{m50:>17.0f}{m10:>6.0f}{r['quality']:>16.0f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--difficulty", default="fvc", choices=synth.DIFFICULTIES)
    parser.add_argument("--fingers", type=int, default=10, help="image-level synthetic fingers")
    parser.add_argument("--template-fingers", type=int, default=100)
    parser.add_argument("--start", type=int, default=900000, help="first synthetic identity")
    parser.add_argument("--sets", default="all", help="FVC sets: all, none or 2000-1,2004-2,...")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    sets = list(SETS) if args.sets == "all" else [] if args.sets == "none" else args.sets.split(",")
    print(f"synth_hardness: load average {os.getloadavg()[0]:.1f}, difficulty {args.difficulty}")
    rows = []
    with mp.get_context("fork").Pool(args.workers) as pool:
        for name in sets:
            t0 = time.perf_counter()
            rows.append(measure(f"FVC{name} B", fvc_templates(EVAL / SETS[name], pool)))
            print(f"  {name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        if args.fingers:
            t0 = time.perf_counter()
            fingers = list(range(args.start, args.start + args.fingers))
            tpl = image_templates(fingers, args.difficulty, pool)
            rows.append(measure(f"synth image {args.difficulty}", tpl))
            print(f"  image-level: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if args.template_fingers:
        fingers = list(range(args.start, args.start + args.template_fingers))
        rows.append(
            measure(
                f"synth template {args.difficulty}", template_templates(fingers, args.difficulty)
            )
        )
    report(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
