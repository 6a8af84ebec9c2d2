"""Galleries split into shards by subject, searched in process or on Dask distributed workers.

A *shard set* is a directory made by :func:`split` (``ebts-gateway gallery shard``)::

    shards.json          manifest: format, shard count, subjects per shard, thresholds
    background.npz       the vector centring every shard shares (probes are coded once)
    shard-000/ ...       one ordinary gallery directory per shard (gateway.matcher.gallery)

The owner of a subject is :func:`shard_of` (the first 8 bytes of SHA-256 of the UTF-8 subject
id, modulo the shard count): stable across processes, machines and Python versions, unlike
``hash()``.  Enrolments go to the owning shard only.

:class:`ShardedGallery` answers the same ``search`` as :class:`Gallery`, with the same result
as an in-process search of the unsharded gallery (same candidates, scores, ranking and
decision).  The merge is exact because it reproduces each cut of the two-stage search
globally instead of per shard:

1. every shard scans its subjects with the code prefix and returns its best ``refine``
   (row, prefix score, full-code score): the global best ``refine`` by prefix score are among
   them, so the node picks exactly those, then the best ``shortlist`` of them by full score;
2. each shard runs the second stage on its members of that short list and sends, with its
   candidates, the serialised templates of its best ``max(top, rescore)`` of them (the global
   best ``max(top, rescore)`` are among those: the order is total, ties broken by subject id);
   the node sorts the candidates as ``Gallery.search`` does;
3. the node scores its best ``max(top, rescore)`` again with ``compare`` (the same
   :func:`gateway.matcher.gallery_search.rescored` as the unsharded search, on the same
   candidates in the same order: the same bits) and keeps ``top``; the decision is the
   threshold of the unsharded gallery (copied with its score scale into every shard and the
   manifest, checked at load).  With ``rescore=0`` step 3 is skipped and the shards' fast
   scores are returned.

Only when two subjects tie exactly on a cut score does the choice differ, and there the
unsharded search's own choice is arbitrary (``np.argpartition``); the sharded one breaks the
tie by shard and row.

Where the shards live: without a scheduler, in this process (:class:`LocalShards`); with
``[matcher] scheduler = "tls://HOST:PORT"``, each on one Dask worker (:class:`DaskShards`),
loaded there once by a worker plugin and kept in memory.  Probes and candidates are biometric
data: the connection to the scheduler is mutual TLS (the cluster's CA, this gateway's
certificate and key; :func:`security`), and a ``tcp://`` scheduler (clear text, no
authentication) is refused unless it is on this host's loopback.  A worker that dies: its shards
are placed on the surviving workers, loaded there, the enrolments replayed, the round
retried.  A search that cannot finish within its deadline raises :class:`SearchUnavailable`,
which the gateway turns into "back to the queue" (never a "no hit").

Pure: no Twisted, and Dask is imported only when a scheduler is used.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from .gallery import RESCORE, SCORE_SCALE, SECOND_STAGES, Candidate, Gallery, _check_position
from .gallery_calibration import decision_problem
from .gallery_search import rescored, scale_of
from .gallery_store import read_index

MANIFEST = "shards.json"
FORMAT = 1
MAX_SHARDS = 1024
#: Seconds a search may take on Dask, worker failures and reloads included, before it gives
#: up with :class:`SearchUnavailable` (a 1M-subject shard loads in a few seconds).
DEFAULT_DEADLINE = 60.0
PLUGIN = "ebts-gallery-shards"


class SearchUnavailable(RuntimeError):
    """A sharded search could not be completed within its deadline (workers lost, shards not
    loadable, scheduler unreachable).  Never a "no hit": the transaction goes back to the
    queue and is processed again later."""

    hint = "RETRY LATER"


def shard_of(subject_id: str, n: int) -> int:
    """The shard (0 to ``n - 1``) owning ``subject_id``: the first 8 bytes of its SHA-256
    (UTF-8), big-endian, modulo ``n``."""
    if not isinstance(subject_id, str) or not subject_id:
        raise ValueError("subject id must be a non-empty string")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_SHARDS:
        raise ValueError(f"shard count must be 1-{MAX_SHARDS}")
    digest = hashlib.sha256(subject_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n


def loopback_host(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 in brackets or not) is this machine's
    loopback: ``localhost`` or a loopback address, never a name that would need resolving."""
    import ipaddress

    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def security(scheduler: str, tls=None):
    """The ``distributed.Security`` of a connection to ``scheduler``: for ``tls://``, mutual
    TLS with ``tls`` = (CA file, certificate file, key file), encryption required; for
    ``tcp://``, None, and only when the scheduler is on loopback.  ValueError otherwise."""
    scheme, sep, rest = scheduler.partition("://")
    host = rest.rpartition(":")[0]
    if not sep or not host:
        raise ValueError(f"not a Dask scheduler address: {scheduler!r}")
    if scheme == "tcp":
        if not loopback_host(host):
            raise ValueError("a tcp:// Dask scheduler is allowed only on loopback: use tls://")
        return None
    if scheme != "tls":
        raise ValueError(f"Dask scheduler address must be tls:// or tcp://, not {scheme}://")
    if tls is None or len(tls) != 3 or not all(tls):
        raise ValueError("a tls:// Dask scheduler needs the CA, certificate and key files")
    from distributed.security import Security

    ca, cert, key = (str(p) for p in tls)
    return Security(
        tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key, require_encryption=True
    )


def shard_dir(root, index: int) -> Path:
    return Path(root) / f"shard-{index:03d}"


def is_shard_set(path) -> bool:
    """True when ``path`` is a directory made by :func:`split`."""
    return (Path(path) / MANIFEST).is_file()


# -- splitting ----------------------------------------------------------------------------------
def split(source, out, shards: int, progress=None) -> dict:
    """Split the gallery at ``source`` into ``shards`` galleries under ``out`` (a new
    directory, written beside it then renamed into place); returns the manifest.

    Each shard keeps the source's vector centring, threshold and calibration.  The source is
    read memory-mapped and left untouched.
    """
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
        raise ValueError(f"shard count must be 1-{MAX_SHARDS}")
    out = Path(out)
    if out.exists():
        raise ValueError(f"{out} exists")
    g = Gallery.load(source)  # ValueError when not a gallery
    base = g._base
    assert base is not None  # Gallery.load maps the saved rows as its base segment
    ids = base.ids
    owner = np.fromiter((shard_of(sid, shards) for sid in ids), np.int64, len(ids))
    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    try:
        counts = []
        for s in range(shards):
            # the mapped segment with only this shard's rows alive: Gallery.save writes them
            # compacted, in source row order
            base.alive = owner == s
            g._where = {ids[r]: (base, int(r)) for r in np.nonzero(base.alive)[0]}
            g.save(shard_dir(tmp, s))
            counts.append(len(g._where))
            if progress is not None:
                progress(s + 1, shards)
        mean, basis = g.background
        np.savez(tmp / "background.npz", mean=mean, basis=basis)
        manifest = {
            "format": FORMAT,
            "shards": shards,
            "hash": "sha256-64be-mod",
            "subjects": counts,
            "threshold": g.threshold,
            "thresholds": {str(k): v for k, v in sorted(g.thresholds.items())},
            "score_scale": g.score_scale,
            "source": str(Path(source).resolve()),
        }
        with open(tmp / MANIFEST, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def read_manifest(path) -> dict:
    """The validated manifest of a shard set (ValueError naming the problem)."""
    path = Path(path)
    try:
        with open(path / MANIFEST, encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{path}: not a shard set (no {MANIFEST})") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: unreadable {MANIFEST}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: unsupported shard set format")
    n = manifest.get("shards")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_SHARDS:
        raise ValueError(f"{path}: bad shard count in {MANIFEST}")
    return manifest


def _shard_set_problem(path, threshold, score_scale, source, count) -> str | None:
    """:func:`decision_problem` of a shard set: the fix is to calibrate the source gallery and
    split it again (the shards carry copies of its thresholds)."""
    source = source or "SOURCE_GALLERY"
    fix = (
        f"`ebts-gateway gallery calibrate {source}` then `ebts-gateway gallery shard {source} "
        f"--shards {count} --out {path}` (the old shard set moved away first)"
    )
    return decision_problem(threshold, score_scale, str(path), fix)


def decision_problem_at(path) -> str | None:
    """Why the gallery or shard set at ``path`` cannot decide the default search (not
    calibrated, or calibrated on another score scale), with the command that fixes it; None
    when it can.  Reads its JSON index only (the daemon's start checks every gallery)."""
    path = Path(path)
    if is_shard_set(path):
        m = read_manifest(path)
        return _shard_set_problem(
            path, m.get("threshold"), m.get("score_scale"), m.get("source"), m["shards"]
        )
    index = read_index(path)
    return decision_problem(index.get("threshold"), index.get("score_scale"), str(path))


# -- one shard, where it lives -------------------------------------------------------------------
class ShardEngine:
    """One shard's gallery in memory, with the two halves of a sharded search.

    The first-stage arrays (codes, finger counts) are read into memory at load; the second
    stage's minutiae slots and the templates stay memory-mapped (a search touches a few dozen
    subjects of them).  ``applied`` is the last enrolment (journal sequence number) applied.
    """

    def __init__(self, path, index: int, resident: bool = True):
        self.path = str(path)
        self.index = index
        self.gallery = Gallery.load(path)
        if resident and self.gallery._base is not None:
            seg = self.gallery._base
            seg.codes = np.array(seg.codes)
            seg.counts = np.array(seg.counts)
        self.applied = 0

    def enrol(self, rows, known: int) -> int:
        """Apply enrolment ``rows`` ((seq, subject_id, position, template bytes), seq
        ascending) newer than ``applied``.  ``known`` is what the caller believes was applied
        already: when this shard knows less (it was reloaded), returns ``-1 - applied`` so the
        caller sends the missing rows; else returns ``applied``."""
        from .template import Template

        if known > self.applied:
            return -1 - self.applied
        fresh = [
            (sid, pos, Template.from_bytes(data))
            for seq, sid, pos, data in rows
            if seq > self.applied
        ]
        if fresh:
            self.gallery.add_many(fresh)
        if rows:
            self.applied = max(self.applied, rows[-1][0])
        return self.applied

    def first(self, codes: dict, keep: int):
        """The best ``keep`` subjects of this shard by prefix score: arrays (segment, row,
        prefix score, full-code score); empty when the shard is."""
        g = self.gallery
        parts = g.stage1(codes)
        empty = (np.zeros(0, np.int8), np.zeros(0, np.int64), np.zeros(0, np.float32))
        if not parts:
            return empty + (np.zeros(0, np.float32),)
        segs = [seg for seg, _, _ in parts]
        which = np.concatenate([np.full(len(r), k, np.int8) for k, (_, r, _) in enumerate(parts)])
        rows = np.concatenate([r for _, r, _ in parts]).astype(np.int64)
        scores = np.concatenate([s for _, _, s in parts])
        if scores.size == 0:
            return empty + (np.zeros(0, np.float32),)
        k = min(keep, scores.size)
        best = np.argpartition(-scores, k - 1)[:k]
        full = g._refine(segs, which[best], rows[best], codes)
        # the segment numbering of the reply: 0 = mapped base, 1 = in-memory segment
        seg_no = np.array([0 if s is g._base else 1 for s in segs], np.int8)[which[best]]
        return seg_no, rows[best], scores[best], full

    def second(self, probe: dict, picks, how: str, token: int | None = None, rescore: int = 0):
        """Second stage of (segment, row, full score) picks: list of (subject_id, finger
        scores, decision, full score, templates), where templates maps the probe's positions
        to the serialised templates of the candidate for this shard's best ``rescore``
        candidates (the ones the node may score again with ``compare``), else None; None
        when ``token`` (the ``applied`` of the first round) is not ours any more (the shard
        was reloaded in between)."""
        g = self.gallery
        if token is not None and token != self.applied:
            return None
        segs = [g._base, g._new]
        scale = scale_of(how, rescore)
        cands = g._second_stage(probe, [(segs[k], r, s1) for k, r, s1 in picks], how, scale)
        cands.sort(key=lambda c: (-c.score, -c.stage1, c.subject_id))
        blobs = g._templates(probe, cands[:rescore]) if rescore > 0 else []
        return [
            (
                c.subject_id,
                c.finger_scores,
                c.decision,
                c.stage1,
                blobs[i] if i < len(blobs) else None,
            )
            for i, c in enumerate(cands)
        ]


# -- where the shards are ------------------------------------------------------------------------
class LocalShards:
    """Every shard in this process (the embedded case, and the reference of the tests)."""

    def __init__(self, root, count: int):
        self.count = count
        self.engines = [ShardEngine(shard_dir(root, i), i, resident=False) for i in range(count)]

    def enrol(self, per_shard: dict[int, list]) -> None:
        for i, rows in per_shard.items():
            self.engines[i].enrol(rows, 0)

    def first(self, codes, keep, deadline):
        return [(e.applied, e.first(codes, keep)) for e in self.engines]

    def second(self, probe, picks: dict, tokens, how, rescore, deadline):
        return {i: self.engines[i].second(probe, p, how, rescore=rescore) for i, p in picks.items()}

    def close(self) -> None:
        pass


def _worker_engine(root: str, index: int) -> ShardEngine:
    """On a Dask worker: the shard held by this worker's plugin (loaded on first use)."""
    from distributed import get_worker

    plugin: Any = get_worker().plugins[PLUGIN]  # a ShardPlugin, a class made by _plugin()
    return plugin.engine(root, index)


def _task_first(root, index, rows, known, codes, keep):
    engine = _worker_engine(root, index)
    applied = engine.enrol(rows, known)
    if applied < 0:  # reloaded since the caller's last search: it sends the missing rows
        return applied, None
    return applied, engine.first(codes, keep)


def _task_second(root, index, probe, picks, how, token, rescore):
    return _worker_engine(root, index).second(probe, picks, how, token, rescore)


def _plugin():
    from distributed import WorkerPlugin

    class ShardPlugin(WorkerPlugin):
        """Per worker: the shards loaded there, kept for the life of the worker."""

        idempotent = True  # another gateway process registering it keeps the loaded shards
        name = PLUGIN

        def setup(self, worker):
            self.engines: dict = {}

        def engine(self, root: str, index: int) -> ShardEngine:
            key = (root, index)
            engine = self.engines.get(key)
            if engine is None:
                engine = self.engines[key] = ShardEngine(shard_dir(root, index), index)
            return engine

        def teardown(self, worker):
            self.engines.clear()

    return ShardPlugin()


class DaskShards:
    """Each shard on one Dask worker, kept in memory there; every task pinned to its owner.

    Placement is sticky: shard ``i`` goes to the ``i % W``-th of the ``W`` live workers
    sorted by address (every gateway process connected to the cluster computes the same, so
    a shard is loaded once); only the shards of a lost worker move.  This process keeps the
    enrolments it was given per shard and replays the ones a reloaded shard lacks.
    """

    POLL = 0.2  # seconds between checks that the workers running a round are still alive

    def __init__(self, root, count: int, scheduler, connect_timeout: float = 10.0, tls=None):
        from distributed import Client

        self.root = str(Path(root).resolve())
        self.count = count
        if isinstance(scheduler, str):
            sec = security(scheduler, tls)  # ValueError: refused before any connection
            try:
                self.client = Client(
                    scheduler, timeout=connect_timeout, set_as_default=False, security=sec
                )
            except OSError as exc:
                raise SearchUnavailable(f"Dask scheduler unreachable: {exc}") from None
            self._own = True
        else:  # an existing Client (tests, benchmarks)
            self.client = scheduler
            self._own = False
        self.client.register_plugin(_plugin(), name=PLUGIN)
        self.placement: dict[int, str] = {}
        self.rows: dict[int, list] = {i: [] for i in range(count)}  # enrolments given
        self.known: dict[int, int] = dict.fromkeys(range(count), 0)  # applied there, we believe
        self.moved = 0  # shards placed again after their worker was lost

    def _alive(self) -> list[str]:
        return sorted(self.client.scheduler_info()["workers"])

    def _place(self) -> None:
        if len(self.placement) == self.count:
            return  # a lost worker is noticed by _round, which clears its shards' placement
        alive = self._alive()
        if not alive:
            raise SearchUnavailable("no Dask worker alive")
        for i in range(self.count):
            if self.placement.get(i) not in alive:
                if i in self.placement:
                    self.moved += 1
                self.placement[i] = alive[i % len(alive)]

    def _lose(self, worker: str) -> None:
        for i, w in list(self.placement.items()):
            if w == worker:
                del self.placement[i]
                self.moved += 1
                self.known[i] = 0  # a new load knows none of the enrolments

    def enrol(self, per_shard: dict[int, list]) -> None:
        for i, rows in per_shard.items():
            self.rows[i].extend(rows)

    def _since(self, i: int, seq: int) -> list:
        rows = self.rows[i]
        return rows[bisect.bisect_right([r[0] for r in rows], seq) :]

    def _round(self, shards, submit, deadline: float) -> dict:
        """``submit(i, worker)`` for each shard until each has an answer; the shards of a
        worker that is lost (or whose task failed) are placed again and resubmitted."""
        results: dict = {}
        todo = set(shards)
        while todo:
            if time.monotonic() >= deadline:
                raise SearchUnavailable(
                    f"sharded search incomplete at its deadline ({len(todo)} shards missing)"
                )
            self._place()
            futures = {i: submit(i, self.placement[i]) for i in todo}
            event = threading.Event()
            for f in futures.values():
                f.add_done_callback(lambda _f, e=event: e.set())
            lost: set[str] = set()
            while futures and not lost and time.monotonic() < deadline:
                woken = event.wait(min(self.POLL, max(0.0, deadline - time.monotonic())))
                event.clear()
                finished = [i for i, f in futures.items() if f.status == "finished"]
                if finished:  # one gather for all: each result() alone is a round trip
                    got = self.client.gather([futures[i] for i in finished])
                    for i, value in zip(finished, got, strict=True):
                        results[i] = value
                        todo.discard(i)
                        del futures[i]
                for i, f in futures.items():
                    if f.status in ("error", "cancelled", "lost"):
                        lost.add(self.placement[i])
                if futures and not lost and not woken:  # nothing for a while: workers alive?
                    alive = set(self._alive())
                    lost.update(
                        self.placement[i] for i in futures if self.placement[i] not in alive
                    )
            for f in futures.values():
                f.cancel()
            for w in lost:
                self._lose(w)
        return results

    def first(self, codes, keep, deadline):
        out: dict = {}
        todo = set(range(self.count))
        while todo:

            def submit(i, w):
                rows = self._since(i, self.known[i])
                return self.client.submit(
                    _task_first,
                    self.root,
                    i,
                    rows,
                    self.known[i],
                    codes,
                    keep,
                    workers=[w],
                    allow_other_workers=False,
                    pure=False,
                )

            for i, (applied, part) in self._round(todo, submit, deadline).items():
                if applied < 0:  # the shard was reloaded: send it every row after its own
                    self.known[i] = -1 - applied
                else:
                    self.known[i] = applied
                    out[i] = (applied, part)
                    todo.discard(i)
        return [out[i] for i in range(self.count)]

    def second(self, probe, picks: dict, tokens, how, rescore, deadline):
        def submit(i, w):
            return self.client.submit(
                _task_second,
                self.root,
                i,
                probe,
                picks[i],
                how,
                tokens[i],
                rescore,
                workers=[w],
                allow_other_workers=False,
                pure=False,
            )

        return self._round(set(picks), submit, deadline)

    def close(self) -> None:
        if self._own:
            self.client.close()


# -- the sharded gallery -------------------------------------------------------------------------
class ShardedGallery:
    """The search of a shard set, in process (``scheduler=None``) or on Dask (an address
    ``"tls://HOST:PORT"`` with ``tls`` = (CA, certificate, key) files, ``"tcp://HOST:PORT"`` on
    loopback, or a ``distributed.Client``); see the module docstring."""

    def __init__(self, path, scheduler=None, deadline: float | None = None, tls=None):
        path = Path(path)
        manifest = read_manifest(path)
        self.path = path
        self.count = manifest["shards"]
        self.deadline = float(DEFAULT_DEADLINE if deadline is None else deadline)
        self.threshold = manifest.get("threshold")
        self.thresholds = {int(k): float(v) for k, v in (manifest.get("thresholds") or {}).items()}
        scale = manifest.get("score_scale")  # absent: split before scales were recorded
        self.score_scale = scale if isinstance(scale, str) else None
        self.source = manifest.get("source")
        self.subjects_at_split = sum(manifest.get("subjects") or [])
        try:
            with np.load(path / "background.npz") as bg:
                self.background = (bg["mean"], bg["basis"])
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"{path}: damaged shard set: {exc}") from None
        for i in range(self.count):
            if not (shard_dir(path, i) / "index.json").is_file():
                raise ValueError(f"{path}: damaged shard set: {shard_dir(path, i).name} missing")
        if scheduler is None:
            self.backend: LocalShards | DaskShards = LocalShards(path, self.count)
            for e in self.backend.engines:
                g = e.gallery
                if (
                    g.threshold != self.threshold
                    or g.thresholds != self.thresholds
                    or g.score_scale != self.score_scale
                ):
                    raise ValueError(f"{path}: shard {e.index} has another threshold")
        else:
            self.backend = DaskShards(path, self.count, scheduler, tls=tls)

    def enrol(self, rows) -> None:
        """Enrolments from the journal, ``(seq, subject_id, position, template bytes)`` in
        ascending ``seq``: each goes to the shard that owns its subject (:func:`shard_of`)."""
        per_shard: dict[int, list] = {}
        for seq, sid, pos, data in rows:
            per_shard.setdefault(shard_of(sid, self.count), []).append((seq, sid, pos, data))
        if per_shard:
            self.backend.enrol(per_shard)

    def threshold_for(self, fingers: int, scale: str = SCORE_SCALE) -> float | None:
        """As :meth:`Gallery.threshold_for` (None on another scale than the thresholds')."""
        if scale != self.score_scale:
            return None
        return self.thresholds.get(fingers, self.threshold)

    def decision_problem(self) -> str | None:
        """Why the thresholds cannot decide a default search (None: they can)."""
        return _shard_set_problem(
            self.path, self.threshold, self.score_scale, self.source, self.count
        )

    def search(
        self,
        probe: dict,
        top: int = 10,
        shortlist: int = 50,
        refine: int = 4000,
        second_stage: str = "minutiae",
        deadline: float | None = None,
        rescore: int = RESCORE,
    ) -> list[Candidate]:
        """As :meth:`Gallery.search` (first stage on), the same result; raises
        :class:`SearchUnavailable` when the shards do not all answer within ``deadline``
        seconds (default: the gallery's)."""
        from . import vector

        if second_stage not in SECOND_STAGES:
            raise ValueError(f"second_stage must be one of {SECOND_STAGES}")
        if not probe:
            raise ValueError("empty probe: no finger to search with")
        probe = {_check_position(p): t for p, t in probe.items()}
        end = time.monotonic() + (self.deadline if deadline is None else float(deadline))
        order = sorted(probe)
        codes = dict(
            zip(order, vector.code_batch([probe[p] for p in order], self.background), strict=True)
        )
        try:
            return self._search(probe, codes, top, shortlist, refine, second_stage, rescore, end)
        except OSError as exc:  # the scheduler or a worker unreachable (comm errors, timeouts)
            raise SearchUnavailable(f"Dask cluster unreachable: {type(exc).__name__}") from None

    def _search(self, probe, codes, top, shortlist, refine, second_stage, rescore, end):
        keep = max(refine, shortlist)
        # candidates scored again with compare (the same count as Gallery.search)
        again = max(top, rescore) if second_stage == "minutiae" and rescore > 0 else 0
        while True:
            parts = self.backend.first(codes, keep, end)
            tokens = {i: token for i, (token, _) in enumerate(parts)}
            shard = np.concatenate(
                [np.full(len(p[1]), i, np.int32) for i, (_, p) in enumerate(parts)]
            )
            seg = np.concatenate([p[0] for _, p in parts]).astype(np.int64)
            row = np.concatenate([p[1] for _, p in parts])
            prefix = np.concatenate([p[2] for _, p in parts])
            full = np.concatenate([p[3] for _, p in parts])
            if prefix.size == 0:
                return []
            # the global cuts of Gallery.search: best `keep` by prefix, then `shortlist` by full
            k = min(keep, prefix.size)
            best = np.lexsort((row, seg, shard, -prefix))[:k]
            k = min(shortlist, best.size)
            best = best[np.lexsort((row[best], seg[best], shard[best], -full[best]))][:k]
            picks: dict[int, list] = {}
            for j in best:
                picks.setdefault(int(shard[j]), []).append(
                    (int(seg[j]), int(row[j]), float(full[j]))
                )
            answers = self.backend.second(probe, picks, tokens, second_stage, again, end)
            if any(a is None for a in answers.values()):
                if time.monotonic() >= end:
                    raise SearchUnavailable("sharded search incomplete at its deadline")
                continue  # a shard was reloaded between the two rounds: search again
            break
        cands, blobs = [], {}
        for a in answers.values():
            for sid, fs, d, s1, templates in a:
                score = float(sum(fs.values()))
                cands.append(Candidate(sid, score, finger_scores=fs, decision=d, stage1=s1))
                if templates is not None:
                    blobs[sid] = templates
        cands.sort(key=lambda c: (-c.score, -c.stage1, c.subject_id))
        if again:
            cands = cands[:again]  # each among its shard's best `again`: templates sent
            cands = rescored(probe, cands, [blobs[c.subject_id] for c in cands], self.threshold_for)
        return cands[:top]

    def close(self) -> None:
        self.backend.close()
