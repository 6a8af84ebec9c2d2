"""Galleries in shards: the split, the owner of a subject, and the sharded search (in process
and on a Dask LocalCluster of 2 workers) against the in-process search of the unsharded
gallery; a lost worker; a search past its deadline."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout

import distributed  # the test extra: CI runs these on a LocalCluster
import pytest

from gateway.cli import main
from gateway.matcher import shards, synthetic
from gateway.matcher.gallery import Gallery
from gateway.matcher.shards import SearchUnavailable, ShardedGallery, shard_of

SEED = 5
SUBJECTS = 60


def _cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def _probe(i, impression=1, seed=SEED):
    return synthetic.tenprint(synthetic.identity(seed, i), impression)


#: mated probes of enrolled subjects, and non-mated ones (another seed)
PROBES = [(SEED, 7, 2), (SEED, 33, 1), (SEED, 58, 3), (61, 0, 1)]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A calibrated synthetic gallery, saved, and its 3-shard split (by the CLI)."""
    g = Gallery()
    synthetic.populate(g, SUBJECTS, seed=SEED)
    g.calibrate([g.search(_probe(i, 1, 60))[0].score for i in range(12)], fpir=0.01)
    root = tmp_path_factory.mktemp("shards")
    g.save(root / "gallery")
    rc, out, err = _cli("gallery", "shard", root / "gallery", "--shards", 3)
    assert rc == 0, err
    assert f"{SUBJECTS} subjects in 3 shards" in out
    return root / "gallery", root / "gallery.shards"


def _exact(cands):
    # the stage-1 score (a tie-break) is left out: a float32 sum over the rows a shard or the
    # whole gallery refines, whose last bit may follow the batch's shape
    return [(c.subject_id, c.score, c.finger_scores, c.decision) for c in cands]


def _same(sharded, plain, probe, **kw):
    """The sharded search returns the unsharded one's candidates, bit for bit."""
    a, b = sharded.search(probe, **kw), plain.search(probe, **kw)
    assert _exact(a) == _exact(b)
    return [c.to_dict() for c in a]


def test_shard_of_is_stable_and_spread():
    # SHA-256("SYN-1") first 8 bytes, big-endian, mod 7: fixed for every process and machine
    assert (
        shard_of("SYN-1", 7)
        == int.from_bytes(
            bytes.fromhex(__import__("hashlib").sha256(b"SYN-1").hexdigest())[:8], "big"
        )
        % 7
    )
    assert shard_of("0000001GW", 1) == 0
    counts = [0] * 4
    for i in range(4000):
        counts[shard_of(f"{i:07d}GW", 4)] += 1
    assert min(counts) > 900  # about 1000 each
    for bad in ("", None):
        with pytest.raises(ValueError):
            shard_of(bad, 3)
    for n in (0, -1, True, shards.MAX_SHARDS + 1):
        with pytest.raises(ValueError):
            shard_of("A", n)


def test_split_puts_each_subject_in_its_owner(source):
    path, root = source
    manifest = json.loads((root / shards.MANIFEST).read_text())
    assert manifest["shards"] == 3 and sum(manifest["subjects"]) == SUBJECTS
    whole = Gallery.load(path)
    seen = []
    for i in range(3):
        part = Gallery.load(shards.shard_dir(root, i))
        assert all(shard_of(s, 3) == i for s in part.subjects)
        assert part.threshold == whole.threshold
        seen.extend(part.subjects)
        sid = part.subjects[0]
        assert part.template(sid, 4) == whole.template(sid, 4)
    assert sorted(seen) == sorted(whole.subjects)


def test_split_refusals(source, tmp_path):
    path, root = source
    rc, _, err = _cli("gallery", "shard", path, "--shards", 3, "--out", root)
    assert rc == 2 and "exists" in err
    rc, _, err = _cli("gallery", "shard", tmp_path / "nothing", "--shards", 2)
    assert rc == 2 and "not a gallery" in err
    with pytest.raises(SystemExit):
        _cli("gallery", "shard", path, "--shards", 0)
    with pytest.raises(ValueError):
        shards.split(path, tmp_path / "many", shards.MAX_SHARDS + 1)
    with pytest.raises(ValueError, match="not a shard set"):
        ShardedGallery(path)


def test_in_process_shards_equal_the_unsharded_search(source):
    path, root = source
    plain, sharded = Gallery.load(path), ShardedGallery(root)
    hits = 0
    for seed, i, imp in PROBES:
        probe = _probe(i, imp, seed)
        res = _same(sharded, plain, probe)
        hits += res[0]["decision"]
        # tight cuts: the prefix cut (refine) and the short list both fall inside the gallery
        _same(sharded, plain, probe, refine=30, shortlist=8, top=5)
        _same(sharded, plain, {p: probe[p] for p in (2, 3, 7)}, refine=20, shortlist=5)
    assert hits == 3  # the three mated probes are identified, the other not


def test_sharded_search_rescores_like_the_unsharded_one(source):
    """The default search scores the merged best max(top, RESCORE) again with compare, as the
    unsharded one does; rescore=0 (the fast scale) and a larger R agree too."""
    from gateway.matcher import compare

    path, root = source
    plain, sharded = Gallery.load(path), ShardedGallery(root)
    probe = _probe(33, 1)
    res = _same(sharded, plain, probe, top=2)
    assert res[0]["subject_id"] == synthetic.subject_id(SEED, 33)
    for c in sharded.search(probe, top=2):  # every finger score is compare's
        for p, s in c.finger_scores.items():
            assert s == pytest.approx(compare(probe[p], plain.template(c.subject_id, p)), abs=1e-5)
    fast = _same(sharded, plain, probe, top=2, rescore=0)
    assert fast[0]["subject_id"] == res[0]["subject_id"] and fast[0]["score"] != res[0]["score"]
    assert not fast[0]["decision"]  # the thresholds are on the compare scale only
    _same(sharded, plain, probe, top=2, rescore=8, shortlist=12)
    _same(sharded, plain, {p: probe[p] for p in (1, 6)}, top=1)


def test_enrolments_go_to_the_owning_shard(source):
    path, root = source
    plain, sharded = Gallery.load(path), ShardedGallery(root)
    rows = []
    for k, ident in enumerate((900, 901, 902)):
        for pos, tpl in synthetic.tenprint(synthetic.identity(70, ident), 0).items():
            rows.append((len(rows) + 1, f"NEW{k}", pos, tpl.to_bytes()))
    sharded.enrol(rows)
    plain.add_many((sid, pos, tpl) for _, sid, pos, tpl in _templates(rows))
    for k in range(3):
        owner = shard_of(f"NEW{k}", 3)
        holders = [e.index for e in sharded.backend.engines if f"NEW{k}" in e.gallery]
        assert holders == [owner]
    probe = synthetic.tenprint(synthetic.identity(70, 901), 2)
    res = _same(sharded, plain, probe)
    assert res[0]["subject_id"] == "NEW1" and res[0]["decision"]


def _templates(rows):
    from gateway.matcher import Template

    return [(seq, sid, pos, Template.from_bytes(data)) for seq, sid, pos, data in rows]


# -- on Dask -------------------------------------------------------------------------------------


def _local_cluster(workers: int):
    """Workers of 1 thread in this process (processes=False, for speed) but talking TCP on
    127.0.0.1 with the scheduler and the client: tasks, results and the worker plugin are
    serialised and cross real sockets as with remote workers."""
    return distributed.LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=False,
        protocol="tcp://",
        host="127.0.0.1",
        scheduler_port=0,
        dashboard_address="127.0.0.1:0",
    )


@pytest.fixture(scope="module")
def cluster():
    with _local_cluster(2) as c, distributed.Client(c, set_as_default=False) as client:
        yield c, client


def _loaded(cluster):
    """{worker address: sorted shard indices loaded there}."""
    c, _ = cluster
    out = {}
    for w in c.workers.values():
        plugin = w.plugins.get(shards.PLUGIN)
        out[w.address] = sorted(i for _, i in plugin.engines) if plugin else []
    return out


def test_dask_shards_equal_the_unsharded_search(source, cluster):
    path, root = source
    plain = Gallery.load(path)
    # as the gateway does: [matcher] scheduler = "tcp://127.0.0.1:PORT"
    sharded = ShardedGallery(root, scheduler=cluster[0].scheduler_address)
    for seed, i, imp in PROBES:
        probe = _probe(i, imp, seed)
        _same(sharded, plain, probe)
        _same(sharded, plain, probe, refine=30, shortlist=8, top=5)
    # each shard loaded once, on one worker, both workers used
    loaded = _loaded(cluster)
    assert sorted(i for v in loaded.values() for i in v) == [0, 1, 2]
    assert all(loaded.values())
    # a second gateway process (another client) finds the shards where they are
    again = ShardedGallery(root, scheduler=cluster[1])
    _same(again, plain, _probe(7, 2))
    _same(again, plain, _probe(7, 2), rescore=0)  # the fast scale, for measurements
    assert _loaded(cluster) == loaded
    sharded.close()


def test_dask_enrolments_and_a_lost_worker(source, tmp_path):
    path, root = source
    plain = Gallery.load(path)
    rows = [
        (seq, "LATE", pos, tpl.to_bytes())
        for seq, (pos, tpl) in enumerate(
            synthetic.tenprint(synthetic.identity(71, 5), 0).items(), start=10
        )
    ]
    plain.add_many((sid, pos, t) for _, sid, pos, t in _templates(rows))
    probe = synthetic.tenprint(synthetic.identity(71, 5), 1)
    with _local_cluster(2) as c, distributed.Client(c, set_as_default=False) as client:
        sharded = ShardedGallery(root, scheduler=client)
        sharded.enrol(rows)
        first = _same(sharded, plain, probe)
        assert first[0]["subject_id"] == "LATE" and first[0]["decision"]
        owner = sharded.backend.placement[shard_of("LATE", 3)]
        client.sync(c.workers[[k for k, w in c.workers.items() if w.address == owner][0]].close)
        # its shards are loaded on the survivor, the enrolment replayed, the answer the same
        assert _same(sharded, plain, probe) == first
        assert sharded.backend.moved >= 1
        alive = [w.address for w in c.workers.values() if w.status.name == "running"]
        assert set(sharded.backend.placement.values()) == set(alive)


def test_dask_search_past_its_deadline_is_unavailable(source):
    _, root = source
    with _local_cluster(0) as c, distributed.Client(c, set_as_default=False) as client:
        sharded = ShardedGallery(root, scheduler=client, deadline=0.5)
        with pytest.raises(SearchUnavailable):
            sharded.search(_probe(0))


# -- configuration and the gateway's worker ------------------------------------------------------
def test_scheduler_key_is_checked():
    from gateway.config import ConfigError, parse_config

    assert parse_config({}).scheduler is None
    cfg = parse_config({"matcher": {"scheduler": "tcp://127.0.0.1:8786"}})
    assert cfg.scheduler == "tcp://127.0.0.1:8786"  # tcp:// on loopback only (test_shards_tls)
    for bad in ("10.1.2.3:8786", "tcp://h:0", "tcp://h:70000", "udp://h:1", "tcp://:1", 8786, ""):
        with pytest.raises(ConfigError) as info:
            parse_config({"matcher": {"scheduler": bad}})
        assert info.value.key == "matcher.scheduler"


def _car_job(root, journal, identity, impression, ucn, scheduler):
    from gateway import synth
    from gateway.ansinist import write
    from gateway.routing.processing import Job

    return Job(
        message_id=f"M-{ucn}",
        payload=write(synth.car_transaction(identity, impression=impression)),
        response_tcn=f"GWTCN{ucn}",
        gateway_ori="WVIAFIS0Z",
        today="2026-11-25",
        fbi_gallery=str(root),
        journal_path=str(journal),
        new_subject_id=ucn,
        search_positions=(1, 2, 6, 7),
        match_threshold=0.3,  # four-finger sums of compare scores: the mate 0.94, non-mates 0.07
        scheduler=scheduler,
    )


@pytest.mark.slow  # two CARs rendered and extracted
def test_gateway_worker_searches_and_enrols_on_dask(source, cluster, tmp_path, monkeypatch):
    import sqlite3

    from gateway.routing import processing
    from gateway.store.enrolments import SCHEMA, add_enrolment

    _, root = source
    monkeypatch.setattr(processing, "_GALLERIES", {})
    journal = tmp_path / "journal.sqlite3"
    db = sqlite3.connect(journal)
    db.executescript(SCHEMA)
    db.commit()
    address = cluster[0].scheduler_address
    first = processing.process(_car_job(root, journal, 31, 1, "0000031GW", address))
    assert first.response_tot == "SRE" and not first.summary["fbi"]["hit"]
    add_enrolment(db, "M-0000031GW", "fbi", "0000031GW", first.enroll["templates"])
    db.commit()
    second = processing.process(_car_job(root, journal, 31, 2, "0000032GW", address))
    assert second.summary["fbi"]["hit"] and second.summary["fbi"]["candidate"] == "0000031GW"
    # the enrolment went to the shard owning the UCN, on its worker only
    owner = shard_of("0000031GW", 3)
    holders = [
        (w.address, i)
        for w in cluster[0].workers.values()
        for (_, i), e in w.plugins[shards.PLUGIN].engines.items()
        if "0000031GW" in e.gallery
    ]
    assert [i for _, i in holders] == [owner]
    processing._GALLERIES[str(root)][0].close()


@pytest.mark.slow  # a CAR rendered and extracted
def test_gateway_worker_gives_back_a_search_past_its_deadline(source, tmp_path, monkeypatch):
    """No worker to search on: process() raises SearchUnavailable (the pipeline keeps the
    message unanswered and takes it up again) instead of answering "no hit" or an ERRT."""
    from gateway.routing import processing

    _, root = source
    monkeypatch.setattr(processing, "_GALLERIES", {})
    monkeypatch.setattr(shards, "DEFAULT_DEADLINE", 0.5)
    with _local_cluster(0) as c:
        job = _car_job(root, tmp_path / "none.sqlite3", 31, 1, "0000040GW", c.scheduler_address)
        with pytest.raises(SearchUnavailable):
            processing.process(job)
        for gallery, _ in processing._GALLERIES.values():
            gallery.close()


@pytest.mark.slow  # two worker processes start and one is restarted
def test_dask_worker_process_killed(source):
    """kill -9 of the worker process holding a shard, between two searches: the shard is
    loaded again on a live worker and the answer is the same."""
    import os
    import signal

    path, root = source
    plain = Gallery.load(path)
    probe = _probe(33, 2)
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            protocol="tcp://",
            host="127.0.0.1",
            scheduler_port=0,
            dashboard_address="127.0.0.1:0",
        ) as c,
        distributed.Client(c, set_as_default=False) as client,
    ):
        sharded = ShardedGallery(root, scheduler=client)
        first = _same(sharded, plain, probe)
        victim = sharded.backend.placement[0]
        pids = client.run(os.getpid)
        os.kill(pids[victim], signal.SIGKILL)
        assert _same(sharded, plain, probe) == first
        assert sharded.backend.moved >= 1 and sharded.backend.placement[0] != victim
