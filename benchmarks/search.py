"""1:N tenprint search benchmark on template-level synthetic galleries (not run in CI).

    .venv/bin/python benchmarks/search.py [--sizes 1000,10000,100000] [--mated 300]
        [--nonmated 1000] [--calibration 1000] [--workers 2] [--validate 4]

For each gallery size N (N subjects x 10 fingers, :mod:`gateway.matcher.synthetic`, built once and
cached under ``benchmarks/out/``):

* load time of the memory-mapped gallery and bytes per finger;
* the threshold calibrated at FPIR 0.1 % on ``--calibration`` non-mated tenprint searches, then
  on fresh searches: rank-1 identification rate and FNIR at the threshold (``--mated`` searches,
  probes are impressions 1-3 of enrolled subjects whose impression 0 is in the gallery) and FPIR
  (``--nonmated`` searches of subjects not in the gallery);
* search latency p50 / p99 (per search, measured inside each worker, ``--workers`` processes
  searching concurrently on this 2-core machine) and the effective finger comparisons per second
  (N x 10 / p50 latency);
* the same with the first stage switched off (the second stage over every subject): a few probes
  at 1k and 10k; at 100k the latency is extrapolated linearly from 10k (labelled so);
* at the smallest size, the precise ``gateway.matcher.compare`` as second stage on a short list,
  for its comparisons per second;
* ``--validate K``: K image-level synthetic identities (``gateway.synth.finger``, rendered and
  extracted) against template-level ones: minutiae statistics and score distributions.

Every synthetic finger uses the ``--difficulty`` preset (default ``fvc``: genuine ``compare``
scores as hard as FVC2000 DB1's, see ``benchmarks/synth_hardness.py``; ``easy`` reproduces the
galleries of earlier sessions, cached under their old names).  Image-level probes (issue 17):
``--image-mated`` gallery subjects get image-level fingers (impression 0 rendered by
``gateway.synth`` and extracted, enrolled in memory over their template-level ones) and are
searched with image-level impressions 1; ``--image-nonmated`` image-level non-mated tenprints,
of which ``--image-calibration`` join the threshold's calibration (``Gallery.calibrate``'s
``image_level``) and the rest measure FPIR.  The rendered templates are cached in
``benchmarks/out/image-fingers-<difficulty>.pickle``; every other gallery subject stays
template-level.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

# One BLAS thread per process, as in the gateway's workers (gateway.matcher.pool): the search
# workers already fill the cores, and two BLAS threads per worker spinning against each other
# made every search about twice as slow (the first-stage codes are a BLAS product).  Set
# before numpy is imported: the forked workers inherit the initialised library.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.matcher import synthetic  # noqa: E402
from gateway.matcher.gallery import Gallery  # noqa: E402
from gateway.matcher.template import Template  # noqa: E402

OUT = REPO / "benchmarks" / "out"
SEED = 1  # gallery subjects
NONMATED_SEED = 77  # test non-mated probes
CALIBRATION_SEED = 78  # calibration non-mated probes
FPIR = 0.001
IMAGE_MATED_SEED = 12345  # which gallery subjects get image-level fingers and probes
IMAGE_POOL = 10_000  # ... chosen among the first IMAGE_POOL subjects


def log(msg: str) -> None:
    print(msg, flush=True)


# -- building -----------------------------------------------------------------------------------
def _parts(args):
    seed, s, e, background, difficulty = args
    return synthetic.enrolment_parts(seed, s, e, background, difficulty)


def gallery_path(size: int, difficulty: str) -> Path:
    """The cached gallery of ``size`` subjects ("easy": the name of the galleries made before
    the difficulty presets)."""
    return OUT / (f"gallery-{size}-s{SEED}" + ("" if difficulty == "easy" else f"-{difficulty}"))


def build(size: int, workers: int, difficulty: str = "fvc") -> Path:
    path = gallery_path(size, difficulty)
    if (path / "index.json").exists():
        return path
    g = Gallery()
    bg = g.background
    step = 200
    jobs = [(SEED, s, min(size, s + step), bg, difficulty) for s in range(0, size, step)]
    t0 = time.perf_counter()
    done = 0
    with mp.get_context("fork").Pool(workers) as pool:
        for parts in pool.imap(_parts, jobs):
            g.add_batch(*parts)
            done += len(parts[0]) // 10
            if done % 5000 < step or done == size:
                el = time.perf_counter() - t0
                print(f"  build {size}: {done}/{size} subjects {el:.0f}s", file=sys.stderr)
    t1 = time.perf_counter()
    g.save(path)
    log(
        f"  built {size} subjects ({difficulty}) in {t1 - t0:.0f}s (+ save "
        f"{time.perf_counter() - t1:.1f}s), load average {os.getloadavg()[0]:.1f}"
    )
    return path


# -- searching in worker processes --------------------------------------------------------------
_G: Gallery | None = None


def load_gallery(path, extra=()) -> Gallery:
    """The cached gallery with the image-level fingers ``extra`` ((subject_id, position, template
    bytes)) enrolled over the template-level ones of the same subjects (in memory only)."""
    g = Gallery.load(path)
    g.add_many((sid, pos, Template.from_bytes(blob)) for sid, pos, blob in extra)
    return g


def _init(path, extra=()):
    global _G
    _G = load_gallery(path, extra)


def _search(job):
    """One tenprint search: a template-level probe (``blobs`` None: impression ``impression``
    of ``ident`` at ``difficulty``) or an image-level one (``blobs``: position -> bytes)."""
    kind, ident, impression, difficulty, blobs, opts = job
    if blobs is None:
        probe = synthetic.tenprint(ident, impression, difficulty)
    else:
        probe = {p: Template.from_bytes(b) for p, b in blobs.items()}
    t = time.perf_counter()
    res = _G.search(probe, top=3, **opts)
    dt = time.perf_counter() - t
    return kind, ident, dt, [(c.subject_id, c.score) for c in res]


def run_searches(path, jobs, workers, extra=()):
    out = []
    with mp.get_context("fork").Pool(
        workers, initializer=_init, initargs=(str(path), extra)
    ) as pool:
        for r in pool.imap(_search, jobs, chunksize=4):
            out.append(r)
    return out


def pct(x, q):
    return float(np.percentile(np.asarray(x), q)) if len(x) else float("nan")


# -- image-level fingers: rendered by gateway.synth and extracted --------------------------------
def _render_tenprint(job):
    from gateway import synth
    from gateway.matcher import extract

    ident, impressions, difficulty = job
    out = {}
    for p in range(1, 11):  # the impressions of one finger together: its master is cached
        for imp in impressions:
            img = synth.finger(int(ident), p, imp, difficulty=difficulty)
            out[p, imp] = extract(img, synth.PPI).to_bytes()
    return ident, out


def image_fingers(mated_idx, nonmated: int, difficulty: str, workers: int) -> dict:
    """``{identity: {(position, impression): template bytes}}``: impressions 0 (enrolled) and 1
    (probe) of the mated subjects ``mated_idx`` (identity ``synthetic.identity(SEED, i)``) and
    impression 1 of ``nonmated`` non-mated subjects (``synthetic.identity(NONMATED_SEED, i)``),
    rendered with ``difficulty`` and extracted.  Cached in ``benchmarks/out`` per identity."""
    import pickle

    cache = OUT / f"image-fingers-{difficulty}.pickle"
    have = pickle.loads(cache.read_bytes()) if cache.exists() else {}
    jobs = [(synthetic.identity(SEED, int(i)), (0, 1), difficulty) for i in mated_idx]
    jobs += [(synthetic.identity(NONMATED_SEED, i), (1,), difficulty) for i in range(nonmated)]
    todo = [
        j for j in jobs if not all((p, k) in have.get(j[0], {}) for p in range(1, 11) for k in j[1])
    ]
    if todo:
        t0 = time.perf_counter()
        with mp.get_context("fork").Pool(workers) as pool:
            for n, (ident, fingers) in enumerate(pool.imap_unordered(_render_tenprint, todo), 1):
                have.setdefault(ident, {}).update(fingers)
                if n % 10 == 0 or n == len(todo):  # an interrupted run keeps what it made
                    print(f"  rendered {n}/{len(todo)} tenprints", file=sys.stderr, flush=True)
                    tmp = cache.with_suffix(".tmp")
                    tmp.write_bytes(pickle.dumps(have))
                    tmp.replace(cache)
        images = sum(10 * len(j[1]) for j in todo)
        log(
            f"  rendered and extracted {images} images ({difficulty}) in "
            f"{time.perf_counter() - t0:.0f} s wall, {workers} workers, load average "
            f"{os.getloadavg()[0]:.1f}"
        )
    return {j[0]: have[j[0]] for j in jobs}


def evaluate(size, path, args, workers, images=None):
    """Calibrate on template-level non-mated searches (plus ``--image-calibration`` image-level
    ones), then measure rank-1 / FNIR on mated searches and FPIR on fresh non-mated ones, both
    template-level and image-level (``images``: see :func:`image_fingers`)."""
    images = images or {"mated": [], "nonmated": [], "fingers": {}}
    fingers = images["fingers"]
    extra = [
        (synthetic.subject_id(SEED, int(i)), p, fingers[synthetic.identity(SEED, int(i))][p, 0])
        for i in images["mated"]
        for p in range(1, 11)
    ]
    g_t0 = time.perf_counter()
    g = Gallery.load(path)
    load = time.perf_counter() - g_t0
    bpf = g.nbytes_per_finger()
    n = len(g)
    log(f"  load {load:.3f}s; {n} subjects; {bpf:.0f} bytes per finger")
    if extra:
        log(
            f"  image-level: {len(images['mated'])} enrolled subjects' ten fingers replaced by "
            f"rendered + extracted impressions 0 ({args.difficulty}); their probes are "
            f"impressions 1; {len(images['nonmated'])} non-mated image-level probes"
        )
    rng = np.random.default_rng(size)
    mated_idx = rng.choice(n, size=min(args.mated, n), replace=False)
    # --rescore R: every search (calibration too) on the compare scale (Gallery.search rescore)
    opts = {"rescore": args.rescore}  # explicit: 0 is "off" whatever the default becomes
    d = args.difficulty
    mated = [
        ("mated", synthetic.identity(SEED, int(i)), 1 + k % 3, d, None, opts)
        for k, i in enumerate(mated_idx)
        if int(i) not in set(int(j) for j in images["mated"])
    ]
    calib = [
        ("calib", synthetic.identity(CALIBRATION_SEED, i), 1, d, None, opts)
        for i in range(args.calibration)
    ]
    nonm = [
        ("nonmated", synthetic.identity(NONMATED_SEED, i), 1, d, None, opts)
        for i in range(args.nonmated)
    ]
    probe = lambda ident: {p: fingers[ident][p, 1] for p in range(1, 11)}  # noqa: E731
    img_mated = [
        (
            "img-mated",
            synthetic.identity(SEED, int(i)),
            1,
            d,
            probe(synthetic.identity(SEED, int(i))),
            opts,
        )
        for i in images["mated"]
    ]
    img_ids = [synthetic.identity(NONMATED_SEED, i) for i in images["nonmated"]]
    ncal = min(args.image_calibration, len(img_ids) // 2)
    img_calib = [("img-calib", x, 1, d, probe(x), opts) for x in img_ids[:ncal]]
    img_nonm = [("img-nonmated", x, 1, d, probe(x), opts) for x in img_ids[ncal:]]
    t0 = time.perf_counter()
    res = run_searches(
        path, calib + img_calib + mated + img_mated + nonm + img_nonm, workers, extra
    )
    wall = time.perf_counter() - t0
    by = {k: [] for k in ("mated", "calib", "nonmated", "img-mated", "img-calib", "img-nonmated")}
    for r in res:
        by[r[0]].append(r)

    def top(rows):
        return [r[3][0][1] if r[3] else 0.0 for r in rows]

    top_calib = top(by["calib"])
    top_img_calib = top(by["img-calib"])
    thr = g.calibrate(top_calib, fpir=FPIR, image_level=top_img_calib)
    g.save_threshold(path)
    log(
        f"  threshold {thr:.4f} (FPIR {FPIR} on {len(top_calib)} template-level calibration "
        f"searches, highest {max(top_calib):.3f}"
        + (
            f", and {len(top_img_calib)} image-level ones, highest {max(top_img_calib):.3f}"
            if top_img_calib
            else ""
        )
        + ")"
    )
    out = {"size": n, "load": load, "bpf": bpf, "thr": thr}
    for label, mk, nk in (
        ("template-level", "mated", "nonmated"),
        ("image-level", "img-mated", "img-nonmated"),
    ):
        rank1 = fn = 0
        mated_scores = []
        for _kind, ident, _dt, cands in by[mk]:
            sid = synthetic.subject_id(SEED, ident - synthetic.identity(SEED, 0))
            hit = bool(cands) and cands[0][0] == sid
            rank1 += hit
            fn += not (hit and cands[0][1] >= thr)
            mated_scores.append(next((s for c, s in cands if c == sid), 0.0))
        top_non = top(by[nk])
        fp = sum(s >= thr for s in top_non)
        nm = len(by[mk])
        if not nm and not top_non:
            continue
        log(
            f"  {label}: rank-1 {rank1}/{nm} = {100 * rank1 / max(nm, 1):.2f} %; FNIR {fn}/{nm} = "
            f"{100 * fn / max(nm, 1):.2f} %; FPIR {fp}/{len(top_non)} = "
            f"{100 * fp / max(len(top_non), 1):.2f} %"
        )
        if mated_scores and top_non:
            log(
                f"    scores: mated median {np.median(mated_scores):.3f} (min "
                f"{min(mated_scores):.3f}); non-mated best median {np.median(top_non):.3f} (max "
                f"{max(top_non):.3f})"
            )
        key = "" if mk == "mated" else "img_"
        out[key + "rank1"] = rank1 / max(nm, 1)
        out[key + "fnir"] = fn / max(nm, 1)
        out[key + "fpir"] = fp / max(len(top_non), 1)
        out[key + "n"] = (nm, len(top_non))
    lat = [r[2] for r in res]
    p50, p99 = pct(lat, 50), pct(lat, 99)
    log(
        f"  latency p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms ({len(lat)} searches, "
        f"{workers} workers, {len(lat) / wall:.2f} searches/s, load average "
        f"{os.getloadavg()[0]:.1f}); effective {n * 10 / p50 / 1e6:.2f} M finger comparisons/s "
        "per search"
    )
    out.update(p50=p50, p99=p99, load_avg=os.getloadavg()[0])
    return out


def brute(size, path, probes, workers, ref=None, difficulty="fvc"):
    if probes == 0:
        if ref is None:
            return None
        p50 = ref["brute_p50"] * size / ref["size"]
        log(
            f"  first stage OFF: EXTRAPOLATED from {ref['size']} subjects: p50 {p50:.1f} s "
            f"({size * 10 / p50 / 1e6:.3f} M finger comparisons/s)"
        )
        return {"brute_p50": p50, "size": size, "extrapolated": True}
    g = Gallery.load(path)
    jobs = [
        ("mated", synthetic.identity(SEED, int(i)), 1, difficulty, None, {"first_stage": False})
        for i in np.linspace(0, len(g) - 1, probes).astype(int)
    ]
    res = run_searches(path, jobs, workers)
    ok = 0
    for _k, ident, _dt, cands in res:
        sid = synthetic.subject_id(SEED, ident - synthetic.identity(SEED, 0))
        ok += bool(cands) and cands[0][0] == sid
    lat = [r[2] for r in res]
    p50 = pct(lat, 50)
    log(
        f"  first stage OFF ({probes} mated probes): rank-1 {ok}/{probes}; latency p50 "
        f"{p50:.2f} s, p99 {pct(lat, 99):.2f} s; {size * 10 / p50 / 1e6:.3f} M finger "
        "comparisons/s"
    )
    return {"brute_p50": p50, "size": size, "extrapolated": False}


def precise(path, probes=2, shortlist=3, difficulty="fvc"):
    """Second stage with gateway.matcher.compare on a short list (throughput only)."""
    g = Gallery.load(path)
    times = []
    ok = 0
    for i in range(probes):
        probe = synthetic.tenprint(synthetic.identity(SEED, i), 1, difficulty)
        t = time.perf_counter()
        res = g.search(probe, top=1, shortlist=shortlist, second_stage="compare")
        times.append(time.perf_counter() - t)
        ok += res[0].subject_id == synthetic.subject_id(SEED, i)
    per = np.median(times) / (shortlist * 10)
    log(
        f"  second stage = gateway.matcher.compare, shortlist {shortlist}: "
        f"{np.median(times):.2f} s per search, {1 / per:.0f} finger comparisons/s "
        f"(template decode + prepare + compare); rank-1 {ok}/{probes}"
    )


# -- template-level vs image-level ---------------------------------------------------------------
def _stats(templates):
    counts = [len(t) for t in templates]
    ends = sum(int((t.minutiae[:, 3] == 1).sum()) for t in templates) / max(sum(counts), 1)
    qual = np.mean([t.minutiae[:, 4].mean() for t in templates if len(t)])
    nn = []
    for t in templates:
        m = t.minutiae
        if len(m) > 1:
            d = np.hypot(m[:, None, 0] - m[None, :, 0], m[:, None, 1] - m[None, :, 1])
            np.fill_diagonal(d, np.inf)
            nn.append(np.median(d.min(1)))
    return np.mean(counts), np.std(counts), ends, qual, np.mean(nn)


def _pair_stats(gen_pairs, imp_pairs):
    from gateway.matcher import compare, vector
    from gateway.matcher.gallery import _slot, pair_scores

    def s2(a, b):
        sa, na = _slot(a.minutiae)
        sb, nb = _slot(b.minutiae)
        return float(pair_scores(sa[:na], sb[None], np.array([nb]))[0])

    def s1(a, b):
        ca, cb = vector.code(a), vector.code(b)
        return float(vector.similarity(vector.hamming(ca[None], cb))[0])

    out = {}
    for name, f in (("stage-1 cosine", s1), ("stage-2 score", s2), ("compare", compare)):
        g = [f(a, b) for a, b in gen_pairs]
        i = [f(a, b) for a, b in imp_pairs]
        out[name] = (np.mean(g), np.std(g), np.mean(i), np.std(i))
    return out


def validate(k, gallery_path, difficulty="fvc"):
    """Image-level synthetic subjects (rendered + extracted) against template-level ones."""
    log(f"\n== template-level vs image-level synthetic fingers ({k} image-level identities)")
    t0 = time.perf_counter()
    img = {}
    for ident in range(k):
        for imp in (0, 1):
            for p, t in synthetic.image_tenprint(ident + 500, imp, difficulty=difficulty).items():
                img[(ident, p, imp)] = t
    log(f"  rendered and extracted {len(img)} images in {time.perf_counter() - t0:.0f}s")
    n_tl = 100
    tl = {}
    for ident in range(n_tl):
        for imp in (0, 1):
            for p, t in synthetic.tenprint(10_000 + ident, imp, difficulty).items():
                tl[(ident, p, imp)] = t
    for name, d, n in (("image-level", img, k), ("template-level", tl, n_tl)):
        c, cs, e, q, nn = _stats(list(d.values()))
        log(
            f"  {name:15s} minutiae {c:5.1f} +- {cs:4.1f}; endings {100 * e:4.1f} %; quality "
            f"{q:.2f}; median nearest-neighbour distance {nn:5.1f} px"
        )
        ps = range(1, 11)
        gen = [(d[(i, p, 0)], d[(i, p, 1)]) for i in range(n) for p in ps]
        imp = [(d[(i, p, 0)], d[((i + 1) % n, p, 1)]) for i in range(n) for p in ps]
        if len(gen) > 60:
            gen, imp = gen[:60], imp[:60]
        for sname, (gm, gs, im, isd) in _pair_stats(gen, imp).items():
            log(
                f"    {sname:15s} genuine {gm:.3f} +- {gs:.3f}   impostor {im:.3f} +- {isd:.3f}"
                f"   d' {(gm - im) / max(np.sqrt((gs**2 + isd**2) / 2), 1e-9):.2f}"
                f"   ({len(gen)} + {len(imp)} pairs)"
            )
    # the image-level subjects enrolled among the template-level distractors, then searched
    g = Gallery.load(gallery_path)
    for ident in range(k):
        for p in range(1, 11):
            g.add(f"IMG-{ident}", p, img[(ident, p, 0)])
    top_ok = 0
    for ident in range(k):
        probe = {p: img[(ident, p, 1)] for p in range(1, 11)}
        res = g.search(probe, top=2)
        ok = res[0].subject_id == f"IMG-{ident}"
        top_ok += ok
        log(
            f"  image-level mated search {ident}: rank-1 {'yes' if ok else 'NO'}, score "
            f"{res[0].score:.3f} (decision {res[0].decision}), next {res[1].score:.3f}"
        )
    log(
        f"  image-level mated searches in a {len(g) - k}-subject template-level gallery: "
        f"rank-1 {top_ok}/{k}"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--mated", type=int, default=300)
    ap.add_argument("--nonmated", type=int, default=1000)
    ap.add_argument("--calibration", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2, choices=(1, 2))
    ap.add_argument(
        "--brute", default="20,4,0", help="first-stage-off probes per size (0: extrapolate)"
    )
    ap.add_argument("--validate", type=int, default=4, help="image-level identities (0: skip)")
    ap.add_argument("--build-only", action="store_true")
    ap.add_argument("--images-only", action="store_true", help="render the image-level fingers")
    ap.add_argument(
        "--difficulty",
        default="fvc",
        choices=synthetic.DIFFICULTIES,
        help="preset of every synthetic finger (gallery, probes, image-level): fvc (as hard as "
        "FVC2000 DB1) or easy (the generator before issue 17; the galleries of earlier sessions)",
    )
    ap.add_argument(
        "--image-mated",
        type=int,
        default=100,
        help="gallery subjects whose ten fingers are image-level (rendered + extracted), searched "
        "with image-level probes (chosen among the first 10,000 subjects)",
    )
    ap.add_argument("--image-nonmated", type=int, default=300, help="image-level non-mated probes")
    ap.add_argument(
        "--image-calibration",
        type=int,
        default=100,
        help="of the image-level non-mated probes, how many join the calibration (the others "
        "measure FPIR)",
    )
    ap.add_argument(
        "--rescore",
        type=int,
        default=0,
        help="score the best R candidates again with compare (one score scale; 0: off)",
    )
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    brutes = [int(s) for s in args.brute.split(",")] + [0] * len(sizes)
    OUT.mkdir(parents=True, exist_ok=True)
    log(f"search benchmark: {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}")
    summary = []
    images = None
    if (args.image_mated or args.image_nonmated) and not args.build_only:
        # the mated subjects are among the first of the smallest gallery: in every gallery
        pick = np.random.default_rng(IMAGE_MATED_SEED)
        # a prefix of one permutation of the first IMAGE_POOL subjects: the same subjects in
        # every gallery of at least IMAGE_POOL, and a smaller --image-mated reuses the renders
        img_mated = pick.permutation(min(IMAGE_POOL, *sizes))[: args.image_mated]
        fingers = image_fingers(img_mated, args.image_nonmated, args.difficulty, args.workers)
        images = {
            "mated": [int(i) for i in img_mated],
            "nonmated": list(range(args.image_nonmated)),
            "fingers": fingers,
        }
        if args.images_only:
            return 0
    ref = None
    for i, size in enumerate(sizes):
        log(f"\n== gallery of {size} subjects x 10 fingers")
        path = build(size, args.workers, args.difficulty)
        if args.build_only:
            continue
        r = evaluate(size, path, args, args.workers, images)
        b = brute(size, path, brutes[i], args.workers, ref, args.difficulty)
        if b is not None and not b.get("extrapolated"):
            ref = b
        if b is not None:
            r["brute_p50"] = b["brute_p50"]
            r["brute_extrapolated"] = b.get("extrapolated", False)
            log(f"  speed-up of the first stage: {b['brute_p50'] / r['p50']:.0f} x")
        if i == 0:
            precise(path, difficulty=args.difficulty)
        summary.append(r)
    if args.validate and not args.build_only:
        validate(args.validate, gallery_path(sizes[0], args.difficulty), args.difficulty)
    if summary:
        log("\n== summary (targets at 100k: p50 <= 1 s, rank-1 >= 99.5 %, FPIR <= 0.1 %, ")
        log("   <= 2048 bytes per finger, load <= 2 s)")
        log(
            f"difficulty {args.difficulty}, rescore {args.rescore}; rates in %, tl = "
            "template-level probes, img = image-level probes (mated: image-level gallery entries)"
        )
        log(
            "subjects  load_s  bytes/finger  threshold  tl_rank1  tl_FNIR  tl_FPIR  img_rank1  "
            "img_FNIR  img_FPIR  p50_ms  p99_ms  load  brute_p50_s"
        )
        nan = float("nan")
        for r in summary:
            bp = r.get("brute_p50", nan)
            mark = "*" if r.get("brute_extrapolated") else " "
            rates = "".join(
                f"{100 * r.get(k, nan):{w}.2f}"
                for k, w in (
                    ("rank1", 10),
                    ("fnir", 9),
                    ("fpir", 9),
                    ("img_rank1", 11),
                    ("img_fnir", 10),
                    ("img_fpir", 10),
                )
            )
            log(
                f"{r['size']:8d}  {r['load']:6.3f}  {r['bpf']:12.0f}  {r['thr']:9.4f}{rates}  "
                f"{1000 * r['p50']:6.0f}  {1000 * r['p99']:6.0f}  {r['load_avg']:4.1f}  "
                f"{bp:10.1f}{mark}"
            )
        log("(* extrapolated linearly from the largest measured size)")
    log(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
