"""Accuracy and speed of the numpy matcher on FVC2000 DB1-DB3 and FVC2004 DB2-DB4 set B (FVC
protocol).

Run on demand (not in CI)::

    .venv/bin/python benchmarks/accuracy.py                  # all six databases
    .venv/bin/python benchmarks/accuracy.py --db 1 --limit 5  # quick iteration (FVC2000 DB1)
    .venv/bin/python benchmarks/accuracy.py --db 2004-2       # FVC2004 DB2_B

Protocol (per database, 10 fingers x 8 impressions, files ``NNN_I.tif`` or ``.png``): genuine =
all 28 impression pairs of every finger (280); impostor "fvc" = impression 1 of each finger against
impression 1 of every other finger (45); impostor "ext" = all cross-finger pairs of any
impressions (2,880).  Printed per database and impostor set: EER, FMR100 and FMR1000 (the lowest
FNMR at FMR <= 1 % / 0.1 %), the median extraction time per image and the comparisons per second
on one core (BLAS limited to one thread; CPU time of the fastest of ``--passes`` passes over
all pairs, since the machine is shared), both one pair at a time (``compare``) and 1:N (the pairs
grouped by their first template, ``template.compare_many`` per group, which gives the same
scores up to float rounding; the largest difference is printed).  DET curves are drawn into
``benchmarks/out/`` with Pillow.

Quality (issue 17): each template carries a finger quality 0-100.  The error-versus-reject curve
drops the comparisons that involve the lowest-quality fraction of the images (0 to 30 %) and
gives FNMR at FMR 1 % ("ext" impostors) of the rest; the FNMR cut at 10 % rejected is printed per
database (the target: at least a third) and the curves are drawn beside the DET curves
(``benchmarks/out/evr-<db>.png``).  When NIST NBIS ``mindtct`` and ``bozorth3`` are on PATH they
run on the same images in the same run; otherwise the reference figures of ``ANCHORS.md`` are
printed, labelled as such.

``--ab-mcc FILE`` also times another ``mcc.py`` (``git show REV:gateway/matcher/mcc.py > FILE``)
against this one in one process, interleaved passes on the same pairs, and prints the ratio and
the largest score difference (a steadier speed comparison than two runs on a shared machine).
Noise floor (session 7): ``--offset N`` crops N pixels from the top and the left of every image
before our extraction (NBIS still reads the whole image), which moves the 16-pixel block grid over
the print; the spread of the figures over a few offsets (0, 5, 11) is the noise of a set, and a
change is worth keeping only when it holds over them.  ``--second-pass BW`` sets the
extraction's second contextual filtering (``features.SECOND_PASS_BW``, angular half-width BW
radians; ``none``: one pass, as before 0.5.0; default: the extraction's own, pi/4);
``--second-pass-keep D`` sets which of the first pass's minutiae it keeps
(``features.SECOND_PASS_KEEP``: where the first skeleton has at most D crossing-number
candidates per 100 squared ridge periods; ``none``: the second pass's minutiae alone).

Templates are cached under ``benchmarks/out/cache`` (or ``--cache DIR``) keyed by a digest of the
matcher's source, so a changed matcher re-extracts; ``--no-cache`` forces it.  At most two
worker processes extract.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import hashlib  # noqa: E402
import importlib.util  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from multiprocessing import Pool  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.matcher import Template, compare, extract, features  # noqa: E402
from gateway.matcher.template import candidate_batches, compare_many  # noqa: E402

EVAL = ROOT.parent / "shared" / "eval"
OUT = ROOT / "benchmarks" / "out"

# the databases: name -> (folder under ../shared/eval, title)
SETS = {
    "2000-1": ("fvc2000-db1-b", "FVC2000 DB1_B"),
    "2000-2": ("fvc2000-db2-b", "FVC2000 DB2_B"),
    "2000-3": ("fvc2000-db3-b", "FVC2000 DB3_B"),
    "2004-2": ("fvc2004-db2-b", "FVC2004 DB2_B"),
    "2004-3": ("fvc2004-db3-b", "FVC2004 DB3_B"),
    "2004-4": ("fvc2004-db4-b", "FVC2004 DB4_B"),
}
ALIASES = {"1": "2000-1", "2": "2000-2", "3": "2000-3"}

# ANCHORS.md, NBIS mindtct + bozorth3 on this kind of machine (reference, not re-measured;
# FVC2004: no timings there)
NBIS_REFERENCE = {
    "2000-1": {
        "eer_fvc": 8.2,
        "eer_ext": 10.5,
        "fmr100_ext": 19.3,
        "extract_s": 0.044,
        "cmp_s": 1447,
    },
    "2000-2": {
        "eer_fvc": 10.2,
        "eer_ext": 8.8,
        "fmr100_ext": 13.6,
        "extract_s": 0.060,
        "cmp_s": 1680,
    },
    "2000-3": {
        "eer_fvc": 7.0,
        "eer_ext": 10.6,
        "fmr100_ext": 20.0,
        "extract_s": 0.112,
        "cmp_s": 277,
    },
    "2004-2": {"eer_fvc": 17.6, "eer_ext": 14.1, "fmr100_ext": 28.9},
    "2004-3": {"eer_fvc": 4.9, "eer_ext": 5.1, "fmr100_ext": 7.9},
    "2004-4": {"eer_fvc": 7.3, "eer_ext": 5.7, "fmr100_ext": 9.6},
}
# the targets: EER (both impostor sets) and FMR100 ext at most these (per cent)
TARGETS = {"2004-2": (5.0, 10.0)}
TARGET_DEFAULT = (2.0, 4.0)


# ---------------------------------------------------------------------------------------------
# protocol and metrics


def images(db: str, limit: int) -> dict[tuple[int, int], Path]:
    folder = EVAL / SETS[db][0]
    found = {}
    for path in sorted([*folder.glob("*_*.tif"), *folder.glob("*_*.png")]):
        finger, impression = path.stem.split("_")
        found[int(finger), int(impression)] = path
    fingers = sorted({f for f, _ in found})[:limit]
    return {k: v for k, v in found.items() if k[0] in fingers}


def pairs(keys) -> dict[str, list]:
    fingers = sorted({f for f, _ in keys})
    imps = sorted({i for _, i in keys})
    genuine = [((f, i), (f, j)) for f in fingers for i, j in itertools.combinations(imps, 2)]
    fvc = [((f, 1), (g, 1)) for f, g in itertools.combinations(fingers, 2)]
    ext = [
        ((f, i), (g, j))
        for f, g in itertools.combinations(fingers, 2)
        for i in imps
        for j in imps
        if not (i == 1 and j == 1)
    ]
    # "ext" = all cross-finger pairs; the FVC impostors are part of it
    ext = fvc + ext
    return {"genuine": genuine, "fvc": fvc, "ext": ext}


def rates(genuine: np.ndarray, impostor: np.ndarray):
    """FMR and FNMR at every distinct threshold (score >= t accepts)."""
    thresholds = np.unique(np.concatenate([genuine, impostor, [np.inf]]))
    g = np.sort(genuine)
    i = np.sort(impostor)
    fnmr = np.searchsorted(g, thresholds, side="left") / len(g)
    fmr = 1 - np.searchsorted(i, thresholds, side="left") / len(i)
    return thresholds, fmr, fnmr


def eer(genuine, impostor) -> float:
    _, fmr, fnmr = rates(genuine, impostor)
    # fmr decreases, fnmr increases with the threshold: find the crossing and interpolate
    k = int(np.argmax(fnmr >= fmr))
    if k == 0:
        return float((fmr[0] + fnmr[0]) / 2)
    a1, b1, a2, b2 = fmr[k - 1], fnmr[k - 1], fmr[k], fnmr[k]
    # FVC convention: the EER lies between the two rates at the crossing; take the middle
    lo = max(min(a1, b1), min(a2, b2))
    hi = min(max(a1, b1), max(a2, b2))
    return float((lo + hi) / 2)


def fnmr_at(genuine, impostor, target: float) -> float:
    _, fmr, fnmr = rates(genuine, impostor)
    ok = fmr <= target
    return float(fnmr[ok].min()) if ok.any() else 1.0


REJECT_FRACTIONS = tuple(np.round(np.arange(0, 0.31, 0.02), 2))


def reject_curve(prs: dict, scores: dict, quality: dict, fractions=REJECT_FRACTIONS) -> list:
    """Error versus reject: for each fraction r, the images are ranked by quality (lowest first,
    ties by key) and the lowest round(r * images) rejected; the comparisons involving one of
    them are dropped and FNMR at FMR 1 % ("ext" impostors) taken over the rest.  Returns
    ``[(r, fnmr, genuine pairs kept), ...]``."""
    keys = sorted(quality, key=lambda k: (quality[k] if quality[k] is not None else -1, k))
    out = []
    for r in fractions:
        rejected = set(keys[: int(round(r * len(keys)))])
        kept = {
            name: np.array(
                [
                    s
                    for (a, b), s in zip(prs[name], scores[name], strict=True)
                    if a not in rejected and b not in rejected
                ]
            )
            for name in ("genuine", "ext")
        }
        out.append((float(r), fnmr_at(kept["genuine"], kept["ext"], 0.01), kept["genuine"].size))
    return out


def reject_cut(curve: list, at: float = 0.10) -> float:
    """The relative FNMR cut at ``at`` rejected (0.4 = FNMR 40 % lower than with none)."""
    base = curve[0][1]
    fnmr = next(f for r, f, _ in curve if abs(r - at) < 1e-9)
    return (base - fnmr) / base if base else 0.0


def figures(scores: dict[str, np.ndarray]) -> dict:
    g = scores["genuine"]
    out = {}
    for name in ("fvc", "ext"):
        imp = scores[name]
        out[name] = {
            "eer": eer(g, imp),
            "fmr100": fnmr_at(g, imp, 0.01),
            "fmr1000": fnmr_at(g, imp, 0.001),
        }
    return out


# ---------------------------------------------------------------------------------------------
# our matcher


def _source_digest() -> str:
    h = hashlib.sha256()
    for path in sorted((ROOT / "gateway" / "matcher").glob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def cropped(path, offset: int = 0) -> np.ndarray:
    """An evaluation image as every benchmark here extracts it: gray, ``offset`` pixels cropped
    from the top and the left (``--offset``: the 16-pixel block grid falls elsewhere)."""
    pixels = np.asarray(Image.open(path).convert("L"))
    return np.ascontiguousarray(pixels[offset:, offset:])


def template_cache(
    db: str,
    offset: int = 0,
    second_pass: float | None = features.SECOND_PASS_BW,
    keep: float | None = features.SECOND_PASS_KEEP,
    cache_root: Path | None = None,
) -> Path:
    """The folder of one set's cached templates (one ``.tpl`` per image) for this matcher's
    source and these extraction settings."""
    variant = f"-o{offset}" if offset else ""
    variant += f"-s{second_pass:g}" if second_pass is not None else ""
    variant += f"-k{keep:g}" if second_pass is not None and keep is not None else ""
    return (cache_root or OUT / "cache") / _source_digest() / f"db{db}{variant}"


def _extract_one(job):
    path, cache, offset, second_pass, keep = job
    if cache is not None and cache.exists():
        meta = json.loads(cache.with_suffix(".json").read_text())
        return str(path), cache.read_bytes(), meta["seconds"]
    features.SECOND_PASS_BW = second_pass
    features.SECOND_PASS_KEEP = keep
    pixels = cropped(path, offset)
    t0 = time.process_time()
    # the comparison descriptors (MCC cylinders) are part of making a template comparable
    template = extract(pixels, 500).prepare()
    seconds = time.process_time() - t0
    data = template.to_bytes()
    if cache is not None:
        cache.write_bytes(data)
        cache.with_suffix(".json").write_text(json.dumps({"seconds": seconds}))
    return str(path), data, seconds


def run_ours(
    db: str,
    files: dict,
    prs: dict,
    workers: int,
    use_cache: bool,
    passes: int = 1,
    cache_root: Path | None = None,
    ab_mcc: Path | None = None,
    offset: int = 0,
    second_pass: float | None = features.SECOND_PASS_BW,
    keep: float | None = features.SECOND_PASS_KEEP,
) -> dict:
    digest = _source_digest()
    cache_root = cache_root or OUT / "cache"
    cache_dir = template_cache(db, offset, second_pass, keep, cache_root)
    if use_cache:
        cache_dir.mkdir(parents=True, exist_ok=True)
        for stale in cache_root.iterdir():  # templates of older matcher versions
            if stale.name != digest and stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
    jobs = [
        (p, (cache_dir / f"{p.stem}.tpl") if use_cache else None, offset, second_pass, keep)
        for p in files.values()
    ]
    with Pool(workers) as pool:
        results = pool.map(_extract_one, jobs, chunksize=2)
    by_path = {p: (d, s) for p, d, s in results}
    templates = {k: Template.from_bytes(by_path[str(p)][0]) for k, p in files.items()}
    seconds = [by_path[str(p)][1] for p in files.values()]
    for t in templates.values():
        t.prepare()  # descriptors are built at load; comparisons are timed alone
    n_cmp = sum(len(plist) for plist in prs.values())
    # the machine is shared: the rate is that of the fastest of ``passes`` passes over all pairs
    elapsed = math.inf
    for _ in range(max(passes, 1)):
        t0 = time.process_time()
        scores = {
            name: np.array([compare(templates[a], templates[b]) for a, b in plist])
            for name, plist in prs.items()
        }
        elapsed = min(elapsed, time.process_time() - t0)
    many = run_many(templates, prs, passes)
    ab = run_ab(templates, prs, ab_mcc, passes) if ab_mcc else None
    worst = max(
        float(np.abs(many["scores"][name] - scores[name]).max()) if len(scores[name]) else 0.0
        for name in prs
    )
    minutiae = [len(t) for t in templates.values()]
    return {
        "scores": scores,
        "extract_s": statistics.median(seconds),
        "cmp_per_s": n_cmp / max(elapsed, 1e-9),
        "many_per_s": many["per_s"],
        "many_groups": many["groups"],
        "many_pack_us": many["pack_us"],
        "many_max_diff": worst,
        "minutiae": statistics.median(minutiae),
        "quality": {k: t.quality for k, t in templates.items()},
        "ab": ab,
    }


def run_many(templates: dict, prs: dict, passes: int) -> dict:
    """The same pairs scored 1:N: grouped by their first template, each group's second
    templates packed once (not timed: a gallery packs its candidates once), then one
    ``compare_many`` per group; CPU time of the fastest of ``passes`` passes."""
    groups: dict = {}
    for name, plist in prs.items():
        for n, (a, b) in enumerate(plist):
            groups.setdefault(a, []).append((name, n, b))
    t0 = time.process_time()
    packed = {
        a: candidate_batches([templates[b] for _, _, b in items], templates[a].key)
        for a, items in groups.items()
    }
    pack = time.process_time() - t0
    n_cmp = sum(len(items) for items in groups.values())
    elapsed = math.inf
    out = {name: np.zeros(len(plist)) for name, plist in prs.items()}
    for _ in range(max(passes, 1)):
        t0 = time.process_time()
        got = {
            a: compare_many(templates[a], [templates[b] for _, _, b in items], packed[a])
            for a, items in groups.items()
        }
        elapsed = min(elapsed, time.process_time() - t0)
    for a, items in groups.items():
        for (name, n, _), s in zip(items, got[a], strict=True):
            out[name][n] = s
    return {
        "scores": out,
        "per_s": n_cmp / max(elapsed, 1e-9),
        "groups": len(groups),
        "pack_us": 1e6 * pack / max(n_cmp, 1),
    }


def run_ab(templates: dict, prs: dict, path: Path, passes: int) -> dict:
    """In one process, the matcher's ``mcc.score`` against the ``mcc.py`` at ``path`` (for
    instance an older version, ``git show REV:gateway/matcher/mcc.py > FILE``), each with its
    own descriptors, on the same pairs in interleaved passes (the fastest of ``passes`` each):
    on a shared machine a ratio measured this way is steadier than two runs' rates."""
    from gateway.matcher import mcc
    from gateway.matcher.features import pixel_mask

    spec = importlib.util.spec_from_file_location("mcc_ab", path)
    other = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(other)

    def prepared(t):
        m = t.minutiae
        mask = pixel_mask(t.block_mask, (t.height, t.width))
        return other.Prepared(m[:, 0], m[:, 1], m[:, 2], mask, m[:, 4], t.period)

    theirs = {k: prepared(t) for k, t in templates.items()}
    keys = [
        (a, b) if templates[a].key <= templates[b].key else (b, a)
        for plist in prs.values()
        for a, b in plist
    ]
    runs = {
        "ours": (mcc.score, [(templates[a].prepared, templates[b].prepared) for a, b in keys]),
        "other": (other.score, [(theirs[a], theirs[b]) for a, b in keys]),
    }
    scores = {n: np.array([f(x, y) for x, y in pl]) for n, (f, pl) in runs.items()}
    best = dict.fromkeys(runs, math.inf)
    for _ in range(max(passes, 1)):
        for name, (f, pl) in runs.items():
            t0 = time.process_time()
            for x, y in pl:
                f(x, y)
            best[name] = min(best[name], time.process_time() - t0)
    return {
        "ours": len(keys) / max(best["ours"], 1e-9),
        "other": len(keys) / max(best["other"], 1e-9),
        "max_diff": float(np.abs(scores["ours"] - scores["other"]).max()) if keys else 0.0,
    }


# ---------------------------------------------------------------------------------------------
# NBIS, when installed


def nbis_available() -> bool:
    return bool(shutil.which("mindtct") and shutil.which("bozorth3"))


def run_nbis(db: int, files: dict, prs: dict) -> dict:
    """mindtct on every image and bozorth3 on every pair of ``prs``, timed as CPU time of the
    child processes (as ours is CPU time).  The images reach mindtct losslessly, as NBIS
    lossless JPEG made by its own ``cjpegl`` when that is installed beside it (our matcher reads
    the original TIFF), else as WSQ at the ``wsq`` plugin's ratio of 12 (lossy; said so)."""
    work = Path(tempfile.mkdtemp(prefix=f"nbis-db{db}-", dir=OUT))
    lossless = shutil.which("cjpegl") is not None
    if not lossless:
        import wsq  # noqa: F401 - registers the WSQ plugin with Pillow
    xyt = {}
    seconds = []
    try:
        for key, path in files.items():
            stem = work / f"{key[0]}_{key[1]}"
            img = Image.open(path).convert("L")
            if lossless:
                stem.with_suffix(".raw").write_bytes(img.tobytes())
                w, h = img.size
                _run(["cjpegl", "jpl", str(stem.with_suffix(".raw")), "-r", f"{w},{h},8,500"])
                src = stem.with_suffix(".jpl")
            else:
                src = stem.with_suffix(".wsq")
                img.save(src, "WSQ")
            seconds.append(_timed(["mindtct", str(src), str(stem)])[1])
            xyt[key] = stem.with_suffix(".xyt")
        scores = {}
        n_cmp = 0
        elapsed = 0.0
        for name, plist in prs.items():
            mates = work / f"{name}.lis"
            mates.write_text("".join(f"{xyt[a]}\n{xyt[b]}\n" for a, b in plist))
            out, cpu = _timed(["bozorth3", "-M", str(mates)])
            elapsed += cpu
            scores[name] = np.array([float(v) for v in out.split()])
            n_cmp += len(plist)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "scores": scores,
        "extract_s": statistics.median(seconds),
        "cmp_per_s": n_cmp / max(elapsed, 1e-9),
        "input": "lossless JPEG (cjpegl)" if lossless else "WSQ ratio 12 (lossy)",
    }


def _run(cmd: list[str]) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def _timed(cmd: list[str]) -> tuple[str, float]:
    """Run ``cmd``; its standard output and its CPU seconds (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = _run(cmd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return out, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


# ---------------------------------------------------------------------------------------------
# DET curve with Pillow


def draw_det(path: Path, title: str, curves: list[tuple[str, np.ndarray, np.ndarray, tuple]]):
    size, margin = 520, 60
    img = Image.new("RGB", (size + margin + 20, size + margin + 30), "white")
    d = ImageDraw.Draw(img)
    lo = -4.0  # log10 of 0.01 %

    def xy(fmr, fnmr):
        fx = (math.log10(max(fmr, 1e-4)) - lo) / -lo
        fy = (math.log10(max(fnmr, 1e-4)) - lo) / -lo
        return margin + fx * size, 20 + (1 - fy) * size

    for e in range(int(lo), 1):
        p = (margin + (e - lo) / -lo * size, 20 + (1 - (e - lo) / -lo) * size)
        d.line([p[0], 20, p[0], 20 + size], fill=(225, 225, 225))
        d.line([margin, p[1], margin + size, p[1]], fill=(225, 225, 225))
        label = f"{100 * 10**e:g}%"
        d.text((p[0] - 12, 24 + size), label, fill="black")
        d.text((5, p[1] - 6), label, fill="black")
    d.rectangle([margin, 20, margin + size, 20 + size], outline="black")
    d.text((margin, 2), title, fill="black")
    d.text((margin + size // 2 - 10, 40 + size), "FMR", fill="black")
    d.text((margin + 4, 24), "FNMR", fill="black")
    for n, (name, fmr, fnmr, colour) in enumerate(curves):
        pts = [xy(a, b) for a, b in zip(fmr, fnmr, strict=True)]
        if len(pts) > 1:
            d.line(pts, fill=colour, width=2)
        d.text((margin + size - 150, 30 + 14 * n), name, fill=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def draw_reject(path: Path, title: str, curve: list):
    """FNMR at FMR 1 % against the fraction of images rejected by quality (Pillow)."""
    size, margin = 420, 60
    img = Image.new("RGB", (size + margin + 20, size + margin + 30), "white")
    d = ImageDraw.Draw(img)
    top = max(max(f for _, f, _ in curve) * 1.1, 0.01)
    rmax = max(r for r, _, _ in curve) or 1.0

    def xy(r, f):
        return margin + r / rmax * size, 20 + (1 - f / top) * size

    for k in range(6):
        x = margin + k / 5 * size
        y = 20 + k / 5 * size
        d.line([x, 20, x, 20 + size], fill=(225, 225, 225))
        d.line([margin, y, margin + size, y], fill=(225, 225, 225))
        d.text((x - 12, 24 + size), f"{100 * rmax * k / 5:.0f}%", fill="black")
        d.text((5, y - 6), f"{100 * top * (1 - k / 5):.1f}%", fill="black")
    d.rectangle([margin, 20, margin + size, 20 + size], outline="black")
    d.text((margin, 2), title, fill="black")
    d.text((margin + size // 2 - 60, 40 + size), "images rejected (lowest quality)", fill="black")
    d.text((margin + 4, 24), "FNMR at FMR 1 %", fill="black")
    d.line([xy(r, f) for r, f, _ in curve], fill=(0, 90, 200), width=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


# ---------------------------------------------------------------------------------------------


def _pct(v: float) -> str:
    return f"{100 * v:5.2f} %"


def _number_or_none(text: str) -> float | None:
    """An option's value: a number, or 'none'."""
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a number or 'none'") from None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--db",
        action="append",
        choices=(*SETS, *ALIASES),
        help="database(s) to run: 2000-1 .. 2000-3 (or 1-3), 2004-2 .. 2004-4 (default: all)",
    )
    ap.add_argument(
        "--cache", type=Path, help="template cache folder (default benchmarks/out/cache)"
    )
    ap.add_argument("--limit", type=int, default=10, help="fingers per database (default 10)")
    ap.add_argument("--workers", type=int, default=2, choices=(1, 2))
    ap.add_argument("--no-cache", action="store_true", help="re-extract every template")
    ap.add_argument("--no-nbis", action="store_true", help="skip NBIS even when installed")
    ap.add_argument(
        "--passes",
        type=int,
        default=3,
        help="timed passes over all pairs; the fastest gives the comparison rate (default 3)",
    )
    ap.add_argument(
        "--ab-mcc",
        type=Path,
        help="also time another mcc.py (e.g. from git show) against this one in one process",
    )
    ap.add_argument(
        "--offset",
        type=int,
        default=0,
        help="crop this many pixels from the top and left of every image (the noise floor)",
    )
    ap.add_argument(
        "--second-pass",
        metavar="BW",
        type=_number_or_none,
        default=features.SECOND_PASS_BW,
        help="second contextual filtering with this angular half-width (radians, >= pi/5; "
        "'none': one pass; default: the extraction's, features.SECOND_PASS_BW)",
    )
    ap.add_argument(
        "--second-pass-keep",
        metavar="D",
        type=_number_or_none,
        default=features.SECOND_PASS_KEEP,
        help="with --second-pass: keep the first pass's minutiae where its skeleton has at most "
        "D crossing-number candidates per 100 squared periods ('none': the second's alone)",
    )
    args = ap.parse_args(argv)
    if not 0 <= args.offset <= 32:
        ap.error("--offset must be 0-32 pixels")
    bw, keep = args.second_pass, args.second_pass_keep
    if bw is not None and not math.pi / 5 <= bw <= math.pi / 2:
        ap.error("--second-pass must be between pi/5 and pi/2 radians")
    if keep is not None and not 0 <= keep <= 1000:
        ap.error("--second-pass-keep must be 0-1000 or 'none'")
    dbs = [ALIASES.get(d, d) for d in args.db] if args.db else list(SETS)
    nbis = nbis_available() and not args.no_nbis
    OUT.mkdir(parents=True, exist_ok=True)
    print(
        f"FVC set B, fingers per DB: {args.limit}; NBIS: "
        f"{'measured in this run' if nbis else 'not on PATH, ANCHORS.md reference figures'}"
    )
    summary = {}
    for db in dbs:
        files = images(db, args.limit)
        if not files:
            print(f"DB{db}: no images under {EVAL}", file=sys.stderr)
            return 2
        prs = pairs(files)
        ours = run_ours(
            db,
            files,
            prs,
            args.workers,
            not args.no_cache,
            args.passes,
            args.cache,
            ab_mcc=args.ab_mcc,
            offset=args.offset,
            second_pass=bw,
            keep=keep,
        )
        fig = figures(ours["scores"])
        title = SETS[db][1]
        print(
            f"\n{title}  ({len(files)} images; genuine {len(prs['genuine'])}, impostor fvc "
            f"{len(prs['fvc'])}, ext {len(prs['ext'])}; median minutiae {ours['minutiae']})"
        )
        print(f"  {'':28} {'EER':>8} {'FMR100':>8} {'FMR1000':>8}")
        for name in ("fvc", "ext"):
            f = fig[name]
            print(
                f"  ours  impostors {name:<12} {_pct(f['eer'])} {_pct(f['fmr100'])} "
                f"{_pct(f['fmr1000'])}"
            )
        curves = []
        colours = {"fvc": (0, 90, 200), "ext": (200, 40, 40)}
        nbis_colours = {"fvc": (140, 180, 235), "ext": (235, 160, 160)}  # lighter: the peer
        for name in ("fvc", "ext"):
            _, fmr, fnmr = rates(ours["scores"]["genuine"], ours["scores"][name])
            curves.append((f"ours, {name}", fmr, fnmr, colours[name]))
        ref = None
        if nbis:
            ref = run_nbis(db, files, prs)
            nf = figures(ref["scores"])
            for name in ("fvc", "ext"):
                f = nf[name]
                print(
                    f"  NBIS  impostors {name:<12} {_pct(f['eer'])} {_pct(f['fmr100'])} "
                    f"{_pct(f['fmr1000'])}"
                )
                _, fmr, fnmr = rates(ref["scores"]["genuine"], ref["scores"][name])
                curves.append((f"NBIS, {name}", fmr, fnmr, nbis_colours[name]))
        else:
            r = NBIS_REFERENCE[db]
            print(
                f"  NBIS reference (ANCHORS.md): EER fvc {r['eer_fvc']} %, ext {r['eer_ext']} %, "
                f"FMR100 ext {r['fmr100_ext']} %"
            )
        curve = reject_curve(prs, ours["scores"], ours["quality"])
        cut = reject_cut(curve)
        qs = [q for q in ours["quality"].values() if q is not None]
        print(
            "  error vs reject (FNMR at FMR 1 %): "
            + ", ".join(f"{100 * r:.0f} % -> {100 * f:.2f} %" for r, f, _ in curve[:6:])
        )
        print(
            f"  quality median {statistics.median(qs) if qs else 0:.0f} (min {min(qs, default=0)});"
            f" rejecting the lowest 10 % cuts FNMR at FMR 1 % by {100 * cut:.0f} % "
            f"(target: at least 33 %: {'met' if cut >= 1 / 3 else 'MISSED'})"
        )
        evr = OUT / f"evr-{db}.png"
        draw_reject(evr, f"{title}: error versus reject", curve)
        print(f"  error-versus-reject curve: {evr.relative_to(ROOT)}")
        print(
            f"  extraction median {ours['extract_s']:.3f} s/image (CPU time, one core); "
            f"comparisons {ours['cmp_per_s']:,.0f}/s (one core, 1:1 compare; 1-minute load "
            f"average {os.getloadavg()[0]:.1f})"
        )
        print(
            f"  batched 1:N comparisons {ours['many_per_s']:,.0f}/s (one core; "
            f"{ours['many_groups']} probes; packing {ours['many_pack_us']:.0f} us per "
            f"candidate, not timed); max |1:N - 1:1| score {ours['many_max_diff']:.1e}"
        )
        if ours["ab"]:
            ab = ours["ab"]
            print(
                f"  A/B in one process against {args.ab_mcc}: ours {ab['ours']:,.0f}/s, "
                f"that one {ab['other']:,.0f}/s ({ab['ours'] / ab['other']:.2f} times), "
                f"max |score difference| {ab['max_diff']:.1e} (1-minute load average "
                f"{os.getloadavg()[0]:.1f})"
            )
        if nbis:
            print(
                f"  NBIS extraction median {ref['extract_s']:.3f} s/image (CPU time of mindtct, "
                f"input {ref['input']}); bozorth3 {ref['cmp_per_s']:,.0f} comparisons/s "
                f"(CPU time, one pair list)"
            )
            print(
                f"  ours/NBIS: extraction {ref['extract_s'] / ours['extract_s']:.1f}x faster; "
                f"comparisons 1:1 {ours['cmp_per_s'] / ref['cmp_per_s']:.1f}x, 1:N "
                f"{ours['many_per_s'] / ref['cmp_per_s']:.1f}x"
            )
        else:
            r = NBIS_REFERENCE[db]
            if "extract_s" in r:
                print(
                    f"  NBIS reference (ANCHORS.md): extraction {r['extract_s']} s/image, "
                    f"comparisons {r['cmp_s']:,}/s"
                )
        det = OUT / f"det-{db}.png"
        draw_det(det, f"{title} DET", curves)
        print(f"  DET curve: {det.relative_to(ROOT)}")
        summary[db] = {
            "nbis": None
            if ref is None
            else {
                "figures": nf,
                "extract_s": ref["extract_s"],
                "cmp_per_s": ref["cmp_per_s"],
            },
            "ours": fig,
            "extract_s": ours["extract_s"],
            "cmp_per_s": ours["cmp_per_s"],
            "many_per_s": ours["many_per_s"],
            "many_max_diff": ours["many_max_diff"],
            "reject_curve": curve,
            "reject_cut_10": cut,
        }
    (OUT / "accuracy.json").write_text(json.dumps(summary, indent=1))
    print(
        "\n| DB | EER fvc | EER ext | FMR100 ext | FMR1000 ext | NBIS EER fvc / ext, FMR100 "
        "| targets | FNMR cut at 10 % rejected | extraction s/image "
        "| comparisons/s 1:1 | comparisons/s 1:N |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for db, r in summary.items():
        f = r["ours"]
        t_eer, t_fmr = TARGETS.get(db, TARGET_DEFAULT)
        met = max(f["fvc"]["eer"], f["ext"]["eer"]) * 100 <= t_eer
        met = met and f["ext"]["fmr100"] * 100 <= t_fmr
        if r["nbis"]:
            n = r["nbis"]["figures"]
            peer = (
                f"{_pct(n['fvc']['eer']).strip()} / {_pct(n['ext']['eer']).strip()}, "
                f"{_pct(n['ext']['fmr100']).strip()} (same run)"
            )
        else:
            n = NBIS_REFERENCE[db]
            peer = f"{n['eer_fvc']} / {n['eer_ext']} %, {n['fmr100_ext']} % (ANCHORS.md)"
        print(
            f"| {SETS[db][1]} | {_pct(f['fvc']['eer']).strip()} | {_pct(f['ext']['eer']).strip()} "
            f"| {_pct(f['ext']['fmr100']).strip()} | {_pct(f['ext']['fmr1000']).strip()} "
            f"| {peer} | EER <= {t_eer:g} %, FMR100 <= {t_fmr:g} %: {'met' if met else 'MISSED'} "
            f"| {100 * r['reject_cut_10']:.0f} % | {r['extract_s']:.3f} | {r['cmp_per_s']:,.0f} "
            f"| {r['many_per_s']:,.0f} |"
        )
    for db, r in summary.items():
        if r["nbis"]:
            f = r["nbis"]["figures"]
            print(
                f"| NBIS {SETS[db][1]} (same run) | {_pct(f['fvc']['eer']).strip()} "
                f"| {_pct(f['ext']['eer']).strip()} | {_pct(f['ext']['fmr100']).strip()} "
                f"| {_pct(f['ext']['fmr1000']).strip()} | {r['nbis']['extract_s']:.3f} "
                f"| {r['nbis']['cmp_per_s']:,.0f} | |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
