"""Are synthetic fingerprints as distinct (and as alike) as real ones under our matcher?

Run on demand (not in CI)::

    .venv/bin/python benchmarks/synth_distinctness.py [--fingers 10] [--impressions 8]
        [--start 900000] [--crop 0] [--difficulty fvc]

The same protocol is applied to FVC2000 DB1 set B (``../shared/eval/fvc2000-db1-b/NNN_I.tif``,
10 fingers x 8 impressions) and to synthetic fingers from :func:`gateway.synth.finger`
(``--fingers`` identities at FGP 2, the right index, impressions 0-7): genuine = all impression
pairs of each finger, impostor "fvc" = first impressions of every pair of fingers, impostor
"ext" = all cross-finger impression pairs.  Printed for each set: count, mean, std, quantiles,
and the EER of genuine against each impostor set; histograms of the four score distributions
are written with Pillow to ``benchmarks/out/synth_distinctness.png``.  ``--crop N`` cuts the
synthetic impressions to N x N around the finger (FVC2000 DB1 images are 300 x 300).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import itertools  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway import synth  # noqa: E402
from gateway.matcher import compare, extract  # noqa: E402

FVC = ROOT.parent / "shared" / "eval" / "fvc2000-db1-b"
OUT = ROOT / "benchmarks" / "out"


def pair_sets(fingers: list, impressions: list) -> dict[str, list]:
    """Genuine, FVC impostor and extended impostor pairs of (finger, impression) keys."""
    genuine = [((f, a), (f, b)) for f in fingers for a, b in itertools.combinations(impressions, 2)]
    first = impressions[0]
    fvc = [((f, first), (g, first)) for f, g in itertools.combinations(fingers, 2)]
    ext = [
        ((f, a), (g, b))
        for f, g in itertools.combinations(fingers, 2)
        for a in impressions
        for b in impressions
    ]
    return {"genuine": genuine, "impostor_fvc": fvc, "impostor_ext": ext}


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


def crop_to_finger(img: np.ndarray, size: int) -> np.ndarray:
    """An ``size`` x ``size`` window centred on the dark (ridge) pixels of ``img``."""
    ys, xs = np.nonzero(img < 160)
    cy = int(np.clip(np.median(ys), size // 2, img.shape[0] - size // 2))
    cx = int(np.clip(np.median(xs), size // 2, img.shape[1] - size // 2))
    return img[cy - size // 2 : cy + size // 2, cx - size // 2 : cx + size // 2]


def score(templates: dict, pairs: dict[str, list]) -> dict[str, np.ndarray]:
    return {
        name: np.array([compare(templates[a], templates[b]) for a, b in p])
        for name, p in pairs.items()
    }


def summary(label: str, scores: dict[str, np.ndarray]) -> None:
    print(f"\n{label}")
    print(
        f"  {'set':<14}{'n':>6}"
        + "".join(f"{c:>8}" for c in ("mean", "std", "q05", "q25", "q50", "q75", "q95", "max"))
    )
    for name, s in scores.items():
        q = np.quantile(s, [0.05, 0.25, 0.5, 0.75, 0.95])
        print(
            f"  {name:<14}{len(s):>6}{s.mean():>8.4f}{s.std():>8.4f}"
            + "".join(f"{v:>8.4f}" for v in q)
            + f"{s.max():>8.4f}"
        )
    g = scores["genuine"]
    print(
        f"  EER genuine vs impostor_fvc {100 * eer(g, scores['impostor_fvc']):.1f} %, "
        f"vs impostor_ext {100 * eer(g, scores['impostor_ext']):.1f} %"
    )


COLOURS = {"genuine": (30, 140, 60), "impostor_fvc": (230, 140, 20), "impostor_ext": (200, 40, 40)}


def histograms(panels: list[tuple[str, dict[str, np.ndarray]]], path: Path) -> None:
    """Side-by-side panels of normalised score histograms (one line per set), drawn with Pillow."""
    top = max(float(s.max()) for _, sc in panels for s in sc.values())
    edges = np.linspace(0.0, max(top, 1e-6) * 1.02, 41)
    w, h, pad = 520, 320, 40
    img = Image.new("RGB", (w * len(panels), h + 40), "white")
    draw = ImageDraw.Draw(img)
    density = {
        (i, name): np.histogram(s, edges)[0] / max(len(s), 1)
        for i, (_, sc) in enumerate(panels)
        for name, s in sc.items()
    }
    ymax = max(float(d.max()) for d in density.values()) or 1.0
    for i, (label, sc) in enumerate(panels):
        x0 = i * w + pad
        draw.text((x0, 8), label, fill="black")
        draw.line([(x0, h), (x0 + w - 2 * pad, h)], fill="black")
        draw.line([(x0, pad), (x0, h)], fill="black")
        for t in np.linspace(0, edges[-1], 5):
            x = x0 + (w - 2 * pad) * t / edges[-1]
            draw.text((x - 10, h + 6), f"{t:.2f}", fill="black")
        for k, name in enumerate(sc):
            d = density[i, name]
            pts = [
                (x0 + (w - 2 * pad) * (j + 0.5) / len(d), h - (h - pad) * v / ymax)
                for j, v in enumerate(d)
            ]
            draw.line(pts, fill=COLOURS[name], width=2)
            draw.text((x0 + w - 2 * pad - 110, 24 + 14 * k), name, fill=COLOURS[name])
    img.save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fingers", type=int, default=10)
    parser.add_argument("--impressions", type=int, default=8)
    parser.add_argument("--start", type=int, default=900000, help="first synthetic identity")
    parser.add_argument("--position", type=int, default=2, help="FGP of the synthetic fingers")
    parser.add_argument("--crop", type=int, default=0, help="crop synthetic images to N x N")
    parser.add_argument(
        "--difficulty", default="fvc", choices=synth.DIFFICULTIES, help="synthetic preset"
    )
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)

    t0 = time.process_time()
    fvc = {}
    for path in sorted(FVC.glob("*_*.tif")):
        finger, impression = (int(v) for v in path.stem.split("_"))
        fvc[finger, impression] = extract(np.asarray(Image.open(path).convert("L")), 500)
    t_fvc = time.process_time() - t0
    fvc_fingers = sorted({f for f, _ in fvc})
    fvc_scores = score(fvc, pair_sets(fvc_fingers, sorted({i for _, i in fvc})))

    t0 = time.process_time()
    gen_seconds = 0.0
    syn = {}
    fingers = list(range(args.start, args.start + args.fingers))
    for identity in fingers:
        for k in range(args.impressions):
            g0 = time.process_time()
            img = synth.finger(identity, args.position, k, difficulty=args.difficulty)
            gen_seconds += time.process_time() - g0
            if args.crop:
                img = crop_to_finger(img, args.crop)
            syn[identity, k] = extract(img, 500)
    t_syn = time.process_time() - t0
    syn_scores = score(syn, pair_sets(fingers, list(range(args.impressions))))

    minutiae_fvc = np.median([len(t.minutiae) for t in fvc.values()])
    minutiae_syn = np.median([len(t.minutiae) for t in syn.values()])
    print(
        f"FVC2000 DB1-b: {len(fvc)} images, extraction {t_fvc:.1f} s CPU, "
        f"median {minutiae_fvc:.0f} minutiae"
    )
    print(
        f"synthetic: {len(syn)} images (identities {fingers[0]}-{fingers[-1]}, FGP "
        f"{args.position}, crop {args.crop or 'none'}, {args.difficulty}), "
        f"generation {gen_seconds:.1f} s CPU, "
        f"generation + extraction {t_syn:.1f} s CPU, median {minutiae_syn:.0f} minutiae"
    )
    summary("FVC2000 DB1-b (real)", fvc_scores)
    summary("synthetic", syn_scores)
    path = OUT / "synth_distinctness.png"
    histograms([("FVC2000 DB1-b", fvc_scores), ("synthetic", syn_scores)], path)
    print(f"\nhistograms: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
