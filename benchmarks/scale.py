"""Scale benchmark, Dask part: tenprint search of sharded galleries on Dask workers (not run in CI).

    .venv/bin/python benchmarks/scale.py [--sizes 100000,1000000] [--workers 1,2]
        [--shards 2] [--searches 40] [--top 10] [--rescore R]

For each gallery size N (template-level synthetic subjects, 10 fingers each; the 100k gallery is
the one ``benchmarks/search.py`` builds and caches under ``benchmarks/out/``):

* the gallery is split into ``--shards`` shards (``gateway.matcher.shards.split``, what
  ``ebts-gateway gallery shard`` runs), cached beside it;
* for each worker count W, a Dask ``LocalCluster`` of W worker processes (1 thread each, TCP on
  127.0.0.1) searches it through :class:`gateway.matcher.shards.ShardedGallery`: the time of
  the first search (the shards load), then ``--searches`` mated tenprint searches one after the
  other, p50 / p99 latency, rank-1, and the resident memory the shards added to the workers
  (RSS after the load minus RSS before) per finger; each search returns ``--top`` candidates
  (10; the gateway asks for 1) and scores the best ``max(top, --rescore)`` of them with
  ``compare`` (the default search; ``--rescore 0``: the fast scale only);
* the reference peer, in the same run on the same probes: the in-process search of the
  unsharded gallery (:meth:`Gallery.search`, memory-mapped), p50 / p99 and the resident memory
  per finger of this process after its searches; every sharded result is checked equal to it.

A 1,000,000-subject gallery built from synthetic subjects would take hours on this machine
(about 40 subjects/s), so ``--sizes 1000000`` tiles the 100k gallery ten times: tile t holds
every subject with its finger positions rotated by t (tile 0 is the original), under the id
``<id>~t``.  Each finger's data is a real synthetic finger, each (subject, position) row is
distinct, so the scan, the cuts and the second stage do the work of 1M subjects; the accuracy
figures of a tiled gallery mean little beyond "the mate is still found".  The search scores
its best candidates again with ``compare`` (``rescore``), which reads their serialised
templates: the tiled gallery and its shards point into the 100k gallery's ``templates.bin``
(a symbolic link; :func:`link_templates` writes the offsets of each row's rolled fingers)
rather than holding ten copies of it.

The machine is shared: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

# One BLAS thread per process, as in the gateway's workers (gateway.matcher.pool); set before
# numpy is imported, inherited by the Dask worker processes.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.matcher import gallery as gallery_mod  # noqa: E402
from gateway.matcher import shards, synthetic, vector  # noqa: E402
from gateway.matcher.gallery import POSITIONS, SLOT, Gallery  # noqa: E402

OUT = REPO / "benchmarks" / "out"
SEED = 1  # the subjects of benchmarks/search.py's galleries
BASE = 100_000


def log(msg: str) -> None:
    print(msg, flush=True)


def pct(x, q) -> float:
    return float(np.percentile(np.asarray(x), q)) if len(x) else float("nan")


def rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


# -- galleries ------------------------------------------------------------------------------------
def base_gallery() -> Path:
    path = OUT / f"gallery-{BASE}-s{SEED}"
    if not (path / "index.json").exists():
        log(f"  building {path.name} with benchmarks/search.py (about 40 subjects/s)")
        sys.path.insert(0, str(REPO / "benchmarks"))
        import search

        search.build(BASE, 2)
    return path


def tiled_gallery(size: int) -> Path:
    """``size`` subjects (a multiple of 100k): the 100k gallery's subjects with their finger
    positions rotated by the tile number (module docstring)."""
    src_path = base_gallery()
    if size == BASE:
        return src_path
    tiles = size // BASE
    path = OUT / f"gallery-{size}-tiled-s{SEED}"
    if (path / "index.json").exists():
        link_templates(path)
        return path
    src = Gallery.load(src_path)
    seg = src._base
    n = len(seg.ids)
    tmp = OUT / f".{path.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    fmt = np.lib.format
    total = n * tiles
    codes = fmt.open_memmap(tmp / "codes.npy", "w+", np.uint8, (total, POSITIONS, vector.BYTES))
    minu = fmt.open_memmap(tmp / "minutiae.npy", "w+", np.int16, (total, POSITIONS, SLOT, 3))
    counts = fmt.open_memmap(tmp / "counts.npy", "w+", np.uint8, (total, POSITIONS))
    ids = []
    t0 = time.perf_counter()
    for t in range(tiles):
        roll = (np.arange(POSITIONS) + t) % POSITIONS
        for s in range(0, n, 20_000):
            e = min(n, s + 20_000)
            codes[t * n + s : t * n + e] = np.asarray(seg.codes[s:e])[:, roll]
            minu[t * n + s : t * n + e] = np.asarray(seg.minutiae[s:e])[:, roll]
            counts[t * n + s : t * n + e] = np.asarray(seg.counts[s:e])[:, roll]
        ids.extend(seg.ids if t == 0 else [f"{sid}~{t}" for sid in seg.ids])
        log(f"  tiling {size}: tile {t + 1}/{tiles} {time.perf_counter() - t0:.0f}s")
    for arr in (codes, minu, counts):
        arr.flush()
    del codes, minu, counts
    np.save(tmp / "offsets.npy", np.zeros((total, POSITIONS, 2), np.int64))
    (tmp / "templates.bin").write_bytes(b"")
    shutil.copy(src_path / "background.npz", tmp / "background.npz")
    index = json.loads((src_path / "index.json").read_text())
    index["subjects"] = ids
    (tmp / "index.json").write_text(json.dumps(index))
    os.rename(tmp, path)
    link_templates(path)
    return path


def shard_set(path: Path, count: int) -> Path:
    out = path.with_name(f"{path.name}.{count}shards")
    if not (out / shards.MANIFEST).exists():
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        shards.split(path, out, count)
        log(f"  split into {count} shards in {time.perf_counter() - t0:.0f}s")
    if path.name != base_gallery().name:  # tiled: the shards' rows point into the 100k's too
        for i in range(count):
            link_templates(shards.shard_dir(out, i))
    return out


def link_templates(path: Path) -> None:
    """Give the rows of a tiled gallery (or of one of its shards) at ``path`` the serialised
    templates of their fingers: ``templates.bin`` becomes a symbolic link to the 100k
    gallery's, ``offsets.npy`` the offsets there of each row's rolled fingers (subject
    ``<id>~t``: tile t, positions rolled by t).  Files are replaced, never written through (a
    cached gallery may be made of links to another checkout's files)."""
    src_path = base_gallery()
    target = (src_path / "templates.bin").resolve()
    link = path / "templates.bin"
    if link.is_symlink() and link.resolve() == target:
        return
    t0 = time.perf_counter()
    src_ids = json.loads((src_path / "index.json").read_text())["subjects"]
    src_row = {sid: i for i, sid in enumerate(src_ids)}
    src_off = np.load(src_path / "offsets.npy")
    ids = json.loads((path / "index.json").read_text())["subjects"]
    rows = np.empty(len(ids), np.int64)
    tiles = np.zeros(len(ids), np.int64)
    for i, sid in enumerate(ids):
        base, _, t = sid.partition("~")
        rows[i] = src_row[base]
        tiles[i] = int(t) if t else 0
    offsets = np.zeros((len(ids), POSITIONS, 2), np.int64)
    for t in np.unique(tiles):
        sel = np.nonzero(tiles == t)[0]
        roll = (np.arange(POSITIONS) + t) % POSITIONS
        offsets[sel] = src_off[rows[sel]][:, roll]
    np.save(path / ".offsets.tmp.npy", offsets)
    os.replace(path / ".offsets.tmp.npy", path / "offsets.npy")
    tmp = path / ".templates.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)
    log(f"  {path.name}: templates linked in {time.perf_counter() - t0:.0f}s")


# -- measurements ---------------------------------------------------------------------------------
def probes(size: int, count: int):
    """Mated tenprints (impression 1) of subjects spread over the original 100k, expected id."""
    idx = np.linspace(0, BASE - 1, count).astype(int)
    return [(synthetic.tenprint(synthetic.identity(SEED, int(i)), 1), int(i)) for i in idx]


#: Search options of every search of the run (set by main: --top, --rescore).
OPTS: dict = {"top": 10}


def peer(path: Path, jobs) -> dict:
    before = rss()
    g = Gallery.load(path)
    fingers = int((np.asarray(g._base.counts) > 0).sum())
    g.search(jobs[0][0], **OPTS)  # warm: pages of the mapped arrays
    times, results = [], []
    for probe, _ in jobs:
        t = time.perf_counter()
        res = g.search(probe, **OPTS)
        times.append(time.perf_counter() - t)
        results.append([c.to_dict() for c in res])
    return {
        "times": times,
        "results": results,
        "fingers": fingers,
        "per_finger": (rss() - before) / fingers,
        "ids": [r[0]["subject_id"] for r in results],
    }


def _worker_rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def dask_run(root: Path, workers: int, jobs, reference) -> dict:
    import dask
    import distributed

    # Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536: every large temporary of
    # the second stage then goes back to the system and faults in again (1.5-2x slower here)
    dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": 1 << 30})

    with (
        distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            protocol="tcp://",
            host="127.0.0.1",
            scheduler_port=0,
            dashboard_address="127.0.0.1:0",
            memory_limit=0,
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        before = client.run(_worker_rss)
        sharded = shards.ShardedGallery(root, scheduler=client, deadline=600)
        t = time.perf_counter()
        sharded.search(jobs[0][0], **OPTS)  # the shards load on their workers
        first = time.perf_counter() - t
        after = client.run(_worker_rss)
        times, same = [], 0
        for k, (probe, _) in enumerate(jobs):
            t = time.perf_counter()
            res = sharded.search(probe, **OPTS)
            times.append(time.perf_counter() - t)
            same += [c.to_dict() for c in res] == reference[k]
        sharded.close()
    added = sum(after[w] - before[w] for w in after)
    return {"first": first, "times": times, "same": same, "added": added}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--nodes",
        action="store_true",
        help="the store part: CAR/s of 1 vs 2 nodes on one PostgreSQL (benchmarks/nodes.py)",
    )
    ap.add_argument("--sizes", default="100000", help="subjects, multiples of 100000")
    ap.add_argument("--workers", default="1,2", help="Dask worker counts")
    ap.add_argument("--shards", type=int, default=2, help="shards per gallery")
    ap.add_argument("--searches", type=int, default=40, help="mated searches per setting")
    ap.add_argument("--top", type=int, default=10, help="candidates each search returns")
    ap.add_argument(
        "--rescore",
        type=int,
        default=gallery_mod.RESCORE,
        help="candidates scored again with compare, at least --top (0: fast scale only)",
    )
    args, rest = ap.parse_known_args(argv)
    OPTS.update(top=args.top, rescore=args.rescore)
    if args.nodes:
        sys.path.insert(0, str(REPO / "benchmarks"))
        import nodes

        return nodes.main(rest)
    if rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        if size % BASE:
            ap.error("--sizes must be multiples of 100000")
        log(f"== {size} subjects ({size * 10} fingers), {args.shards} shards")
        path = tiled_gallery(size)
        root = shard_set(path, args.shards)
        jobs = probes(size, args.searches)
        ref = peer(path, jobs)
        expected = [synthetic.subject_id(SEED, i) for _, i in jobs]
        rank1 = sum(a == b for a, b in zip(ref["ids"], expected, strict=True))
        fingers = ref["fingers"]
        rows.append(
            (
                size,
                "in-process (peer)",
                "-",
                ref["times"],
                rank1,
                ref["per_finger"],
                len(jobs),
                os.getloadavg()[0],
            )
        )
        log(f"  peer done: p50 {pct(ref['times'], 50) * 1000:.0f} ms")
        for w in (int(x) for x in args.workers.split(",")):
            r = dask_run(root, w, jobs, ref["results"])
            log(f"  {w} worker(s): first search {r['first']:.1f}s (loads the shards)")
            rows.append(
                (
                    size,
                    f"Dask, {w} worker(s)",
                    f"{r['first']:.1f}s",
                    r["times"],
                    r["same"],
                    r["added"] / fingers,
                    len(jobs),
                    os.getloadavg()[0],
                )
            )
    log("")
    log(
        f"mated searches one after the other, top {args.top}, rescore {args.rescore} "
        "(compare on the best max(top, rescore)); 2 cores shared with other work"
    )
    log(
        "| subjects | search | first search (load) | p50 | p99 | rank-1 (peer) / same as peer "
        "| resident bytes/finger | load avg |"
    )
    log("|---|---|---|---|---|---|---|---|")
    for size, what, first, times, ok, per_finger, n, load in rows:
        log(
            f"| {size:,} | {what} | {first} | {pct(times, 50) * 1000:.0f} ms "
            f"| {pct(times, 99) * 1000:.0f} ms | {ok}/{n} | {per_finger:.0f} | {load:.1f} |"
        )
    log(f"(stored bytes per finger: {gallery_mod.BYTES_PER_FINGER} + the serialised template)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
