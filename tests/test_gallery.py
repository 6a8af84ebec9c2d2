"""The 1:N gallery: contents, persistence, search, calibration and the enroll/search/gallery CLI."""

from __future__ import annotations

import io
import json
import os
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest

from gateway.cli import main
from gateway.matcher import synthetic
from gateway.matcher.gallery import BYTES_PER_FINGER, Candidate, Gallery

SEED = 3


def _cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def _mated(i, impression=1):
    return synthetic.tenprint(synthetic.identity(SEED, i), impression)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A saved synthetic gallery of 150 subjects, calibrated on 40 non-mated searches."""
    g = Gallery()
    synthetic.populate(g, 150, seed=SEED)
    scores = [
        g.search(synthetic.tenprint(synthetic.identity(50, i), 1))[0].score for i in range(40)
    ]
    g.calibrate(scores, fpir=0.001)
    path = tmp_path_factory.mktemp("g") / "gallery"
    g.save(path)
    return path


def test_add_replace_remove():
    g = Gallery()
    a, b = _mated(0, 0), _mated(1, 0)
    for p, t in a.items():
        g.add("A", p, t)
    g.add("B", 3, b[3])
    assert len(g) == 2 and g.subjects == ["A", "B"]
    assert g.positions("A") == list(range(1, 11)) and g.positions("B") == [3]
    assert g.template("B", 3) == b[3] and g.template("B", 4) is None
    g.add("B", 3, b[4])  # replace
    assert g.template("B", 3) == b[4] and len(g) == 2
    g.remove("A", 2)
    assert g.positions("A") == [1] + list(range(3, 11))
    g.remove("B", 3)  # last finger: the subject goes
    assert "B" not in g and len(g) == 1
    g.remove("A")
    assert len(g) == 0 and g.subjects == []
    with pytest.raises(KeyError):
        g.remove("A")
    for bad in (0, 11, "3", 2.0, True):
        with pytest.raises(ValueError):
            g.add("C", bad, a[1])
    with pytest.raises(ValueError):
        g.add("", 1, a[1])
    assert g.search(a) == []


def test_save_load_round_trip(built, tmp_path):
    g = Gallery.load(built)
    assert isinstance(g._base.codes, np.memmap) and isinstance(g._base.minutiae, np.memmap)
    assert len(g) == 150 and g.subjects[0] == synthetic.subject_id(SEED, 0)
    assert g.threshold is not None and g.calibration["searches"] == 40
    sid = synthetic.subject_id(SEED, 7)
    assert g.template(sid, 5) == synthetic.tenprint(synthetic.identity(SEED, 7), 0)[5]
    probe = _mated(7)
    before = [(c.subject_id, c.score) for c in g.search(probe)]
    g.save(tmp_path / "copy")
    again = Gallery.load(tmp_path / "copy")
    assert [(c.subject_id, c.score) for c in again.search(probe)] == before
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temporaries left
    with pytest.raises(ValueError):
        Gallery.load(tmp_path / "missing")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "index.json").write_text("{not json")
    with pytest.raises(ValueError):
        Gallery.load(tmp_path / "junk")


def test_mated_rank1_and_decisions(built):
    g = Gallery.load(built)
    for i, imp in ((3, 1), (60, 2), (149, 3), (88, 1)):
        res = g.search(_mated(i, imp), top=5)
        assert isinstance(res[0], Candidate)
        assert res[0].subject_id == synthetic.subject_id(SEED, i)
        assert res[0].decision and res[0].score >= g.threshold
        assert [c.score for c in res] == sorted((c.score for c in res), reverse=True)
        assert set(res[0].finger_scores) == set(range(1, 11))
        assert abs(sum(res[0].finger_scores.values()) - res[0].score) < 1e-9
    # fewer fingers still work
    four = {p: t for p, t in _mated(20, 2).items() if p in (1, 2, 6, 7)}
    res = g.search(four, top=3)
    assert res[0].subject_id == synthetic.subject_id(SEED, 20) and set(res[0].finger_scores) == {
        1,
        2,
        6,
        7,
    }


def test_nonmated_below_threshold(built):
    g = Gallery.load(built)
    for i in range(100, 110):  # other non-mated probes than the calibration ones
        res = g.search(synthetic.tenprint(synthetic.identity(51, i), 1), top=3)
        assert not any(c.decision for c in res)
        assert res[0].score < g.threshold


def test_calibrate():
    g = Gallery()
    rng = np.random.default_rng(1)
    scores = rng.gumbel(0.5, 0.05, 5000)
    t = g.calibrate(scores, fpir=0.001)
    assert np.mean(scores >= t) <= 0.001
    assert t == g.threshold and g.calibration["searches"] == 5000
    few = g.calibrate(scores[:50], fpir=0.001)
    assert few > scores[:50].max()  # the fitted tail goes beyond the sample
    with pytest.raises(ValueError):
        g.calibrate([], fpir=0.001)
    with pytest.raises(ValueError):
        g.calibrate([0.1, 0.2], fpir=1.5)


def test_bytes_per_finger(built):
    g = Gallery.load(built)
    assert BYTES_PER_FINGER < 800
    assert g.nbytes_per_finger() <= 2048
    sizes = sum(f.stat().st_size for f in built.iterdir())
    assert sizes / (150 * 10) <= 2048 + 64


def test_incremental_enrolment_and_removal(built, tmp_path):
    g = Gallery.load(built)
    synthetic.populate(g, 10, seed=SEED, start=150)  # new subjects
    assert len(g) == 160 and g.modified
    new = synthetic.subject_id(SEED, 155)
    assert g.search(_mated(155))[0].subject_id == new
    old = synthetic.subject_id(SEED, 4)
    assert g.search(_mated(4))[0].subject_id == old
    g.remove(old)
    assert old not in g and all(c.subject_id != old for c in g.search(_mated(4)))
    # replacing one finger of a mapped subject keeps its other fingers
    moved = synthetic.subject_id(SEED, 9)
    g.add(moved, 1, _mated(9, 0)[1])
    assert g.positions(moved) == list(range(1, 11))
    assert g.search(_mated(9))[0].subject_id == moved
    g.save(tmp_path / "g2")
    h = Gallery.load(tmp_path / "g2")
    assert len(h) == 159 and old not in h and new in h
    assert h.subjects.count(moved) == 1
    assert h.search(_mated(155))[0].subject_id == new
    assert h.threshold == g.threshold


def test_first_stage_off_agrees(built):
    g = Gallery.load(built)
    probe = _mated(33, 2)
    fast = g.search(probe, top=1)[0]
    slow = g.search(probe, top=1, first_stage=False)[0]
    assert fast.subject_id == slow.subject_id and fast.score == pytest.approx(slow.score)


# -- command line -------------------------------------------------------------------------------
def _transaction(identity, impression, tcn, positions=(2, 7), corrupt=()):
    """A small traditional transaction with Type-14 WSQ fingers of gateway.synth."""
    synth = pytest.importorskip("gateway.synth")
    from gateway.ansinist import Transaction, write
    from gateway.synth.transactions import wsq_bytes

    txn = Transaction.new(
        tot="CAR", dai="WVFBI0000", ori="WV0000000", tcn=tcn, dat="20260101", ntr="19.69"
    )
    t2 = txn.add_record(2)
    t2["2.018"] = "SYNTHETIC, SUBJECT"
    for p in positions:
        pixels = synth.finger(identity, p, impression)
        t14 = txn.add_record(14)
        for tag, value in (
            ("14.003", "1"),
            ("14.004", "WV0000000"),
            ("14.005", "20260101"),
            ("14.006", str(pixels.shape[1])),
            ("14.007", str(pixels.shape[0])),
            ("14.008", "1"),
            ("14.009", "500"),
            ("14.010", "500"),
            ("14.011", "WSQ20"),
            ("14.012", "8"),
            ("14.013", str(p)),
        ):
            t14[tag] = value
        t14["14.999"] = b"\xff\xa0 not WSQ data" if p in corrupt else wsq_bytes(pixels)
    return write(txn)


def test_cli_happy_path(tmp_path, built):
    gal = tmp_path / "cli"
    rc, out, err = _cli("gallery", "build", "--synthetic", 40, "--seed", 5, gal)
    assert rc == 0 and "40 subjects" in out and "build [" in err
    rc, out, _ = _cli("gallery", "info", gal, "--json")
    info = json.loads(out)
    assert rc == 0 and info["subjects"] == 40 and info["bytes_per_finger"] <= 2048
    rc, out, _ = _cli("gallery", "calibrate", gal, "--searches", 5)
    assert rc == 0 and "threshold" in out and "by probe fingers" in out
    loaded = Gallery.load(gal)
    assert loaded.threshold is not None and sorted(loaded.thresholds) == list(range(1, 10))
    # a sum over two fingers is on a smaller scale than a sum over ten
    assert loaded.threshold_for(2) < loaded.threshold_for(10) == loaded.threshold
    a = tmp_path / "a.an2"
    a.write_bytes(_transaction(11, 0, "TCN-A"))
    b = tmp_path / "b.an2"
    b.write_bytes(_transaction(12, 0, "TCN-B"))
    rc, out, _ = _cli("enroll", gal, a, b)
    assert rc == 0 and "2 fingers enrolled as TCN-A" in out
    rc, out, _ = _cli("enroll", gal, a, "--subject", "PERSON-1")
    assert rc == 0
    g = Gallery.load(gal)
    assert len(g) == 43 and g.positions("TCN-B") == [2, 7]
    probe = tmp_path / "p.an2"
    probe.write_bytes(_transaction(12, 1, "TCN-P"))
    rc, out, _ = _cli("search", gal, probe, "--json", "--top", 3)
    res = json.loads(out)
    assert rc == 0 and res["fingers"] == [2, 7] and len(res["candidates"]) == 3
    assert res["candidates"][0]["subject_id"] == "TCN-B"
    rc, out, _ = _cli("search", gal, probe)
    assert rc == 0 and "TCN-B" in out.splitlines()[1]


def test_cli_bad_input(tmp_path, built):
    junk = tmp_path / "junk.an2"
    junk.write_bytes(b"not a transaction")
    rc, _, err = _cli("search", tmp_path / "nothing", junk)
    assert rc == 2 and "not a gallery" in err
    rc, _, err = _cli("search", built, junk)
    assert rc == 2 and "junk.an2" in err and "Traceback" not in err
    rc, _, err = _cli("search", built, tmp_path / "missing.an2")
    assert rc == 2 and "cannot read" in err
    rc, _, err = _cli("enroll", tmp_path / "new", junk)
    assert rc == 2 and not (tmp_path / "new").exists()
    rc, _, err = _cli("gallery", "build", "--synthetic", 5, built)
    assert rc == 2 and "exists" in err
    rc, _, err = _cli("gallery", "info", junk)
    assert rc == 2 and "not a gallery" in err
    rc, _, err = _cli("gallery", "calibrate", built, "--fpir", 2)
    assert rc == 2
    rc, _, _ = _cli("gallery")
    assert rc == 2
    half = tmp_path / "half.an2"
    half.write_bytes(_transaction(13, 0, "TCN-H", positions=(1, 3), corrupt=(3,)))
    rc, out, err = _cli("enroll", tmp_path / "g3", half)
    assert rc == 2 and "record 4 (Type-14)" in err and "Traceback" not in err
    assert Gallery.load(tmp_path / "g3").positions("TCN-H") == [1]
    with pytest.raises(SystemExit) as exc:
        _cli("gallery", "build", "--synthetic", "-4", tmp_path / "x")
    assert exc.value.code == 2


def test_threshold_per_probe_finger_count(built, tmp_path):
    """Decisions use the threshold calibrated for the probe's finger count, saved and loaded."""
    import shutil

    shutil.copytree(built, tmp_path / "g")
    built = tmp_path / "g"
    g = Gallery.load(built)
    full = g.threshold
    probe = {p: t for p, t in _mated(3).items() if p in (1, 2, 6, 7)}
    mate = g.search(probe, top=1)[0]
    assert mate.subject_id == "SYN-3-0000003"
    assert mate.decision == (mate.score >= full)  # nothing calibrated for four fingers yet
    # non-mated four-finger scores above the mate's: the four-finger threshold refuses it
    high = g.calibrate([mate.score + 0.2, mate.score + 0.1], fpir=0.01, fingers=4)
    assert g.threshold == full and g.thresholds == {4: high}
    assert not g.search(probe, top=1)[0].decision
    assert g.search(_mated(3), top=1)[0].decision == (g.search(_mated(3))[0].score >= full)
    low = g.calibrate([0.01, 0.02, 0.03], fpir=0.01, fingers=4)
    assert low < mate.score and g.search(probe, top=1)[0].decision
    g.save_threshold(built)
    h = Gallery.load(built)
    assert h.thresholds == {4: low} and h.threshold_for(4) == low and h.threshold_for(3) == full
    assert h.calibration["per_fingers"]["4"]["threshold"] == low
    h.calibrate([0.1, 0.2, 0.3], fpir=0.01)  # a new ten-finger calibration keeps the others
    assert h.thresholds == {4: low} and "per_fingers" in h.calibration


def test_add_many_equals_add_one_by_one():
    a, b = Gallery(), Gallery()
    items = [(f"S{i}", p, t) for i in range(4) for p, t in _mated(i, 0).items() if p in (1, 2, 7)]
    for sid, p, t in items:
        a.add(sid, p, t)
    b.add_many(items)
    probe = {p: t for p, t in _mated(2).items() if p in (1, 2, 7)}
    ra, rb = a.search(probe, top=4), b.search(probe, top=4)
    assert [(c.subject_id, c.score) for c in ra] == [(c.subject_id, c.score) for c in rb]
    assert ra[0].subject_id == "S2" and b.positions("S2") == [1, 2, 7]


def test_decision_by_fingers_compared():
    """A ten-finger probe against a subject enrolled with four fingers: a four-finger decision."""
    g = Gallery()
    synthetic.populate(g, 30, seed=SEED)  # SYN-3-0000000 ... with ten fingers each
    four = {p: t for p, t in _mated(40, 0).items() if p in (1, 2, 6, 7)}
    g.add_many(("FOUR", p, t) for p, t in four.items())
    probe = _mated(40)  # ten fingers of the same identity
    best = g.search(probe, top=1)[0]
    assert best.subject_id == "FOUR"
    ten = g.search(_mated(5), top=1)[0]
    assert ten.subject_id == "SYN-3-0000005"
    g.threshold = max(best.score, ten.score) + 1.0  # out of reach for both
    assert not g.search(probe, top=1)[0].decision
    g.thresholds = {4: best.score - 0.01}
    assert g.search(probe, top=1)[0].decision
    assert not g.search(_mated(5), top=1)[0].decision  # ten fingers compared: ten-finger rule


# -- one score scale: the calibration records it --------------------------------------------------
def _forget_scale(path):
    """The index as a gallery calibrated before scales were recorded left it."""
    index = json.loads((path / "index.json").read_text())
    del index["score_scale"]
    (path / "index.json").write_text(json.dumps(index))


def test_calibration_records_its_scale(built, tmp_path):
    from gateway.matcher.gallery import FAST_SCALE, SCORE_SCALE

    g = Gallery.load(built)
    assert g.score_scale == SCORE_SCALE and g.decision_problem() is None
    assert json.loads((built / "index.json").read_text())["score_scale"] == SCORE_SCALE
    mate = g.search(_mated(12, 2), top=1)[0]
    assert mate.decision
    # the fast scale's scores are not decided with the compare scale's thresholds
    assert not g.search(_mated(12, 2), top=1, rescore=0)[0].decision
    # a calibration on another scale replaces every threshold: one gallery, one scale
    g.calibrate([0.5, 0.6], fpir=0.01, fingers=4)
    g.calibrate([0.5, 0.6, 0.7], fpir=0.01, scale=FAST_SCALE)
    assert g.score_scale == FAST_SCALE and g.thresholds == {} and g.threshold_for(4) is None
    assert g.search(_mated(12, 2), top=1, rescore=0)[0].decision
    assert not g.search(_mated(12, 2), top=1)[0].decision
    with pytest.raises(ValueError):
        g.calibrate([0.1, 0.2], scale="furlongs")
    # an index without the key: its thresholds decide nothing until calibrated again
    old = tmp_path / "old"
    Gallery.load(built).save(old)
    _forget_scale(old)
    h = Gallery.load(old)
    assert h.score_scale is None and h.threshold is not None
    assert not h.search(_mated(12, 2), top=1)[0].decision
    assert f"run `ebts-gateway gallery calibrate {old}`" in h.decision_problem()
    rc, out, _ = _cli("gallery", "info", old)
    assert rc == 0 and "NOT USED" in out and "gallery calibrate" in out
    rc, out, _ = _cli("gallery", "calibrate", old, "--searches", 4)
    assert rc == 0
    h = Gallery.load(old)
    assert h.score_scale == SCORE_SCALE and h.decision_problem() is None and 1 in h.thresholds
    assert h.search(_mated(12, 2), top=1)[0].decision


def _config(tmp_path, gallery, extra=""):
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'data_dir = "{tmp_path / "data"}"\n{extra}[gallery]\nfbi = "{gallery}"\ndemo = false\n'
        '[tls]\nmode = "off"\n'
    )
    return path


def test_the_daemon_refuses_thresholds_of_another_scale(built, tmp_path):
    """`ebts-gateway run` on a gallery calibrated on another scale (or not at all) stops at
    once, exit 2, naming the gallery and the command to run; never a daemon answering every
    search "no hit"."""
    from gateway.config import load_config
    from gateway.service import _check_decisions

    old = tmp_path / "old"
    Gallery.load(built).save(old)
    _forget_scale(old)
    rc, _, err = _cli("run", "--config", _config(tmp_path, old))
    assert rc == 2 and "cannot start: the fbi gallery cannot decide a search" in err
    assert f"run `ebts-gateway gallery calibrate {old}`" in err
    empty = tmp_path / "empty"
    Gallery().save(empty)
    rc, _, err = _cli("run", "--config", _config(tmp_path, empty))
    assert rc == 2 and "not calibrated" in err and f"gallery calibrate {empty}" in err
    # a shard set of an old gallery: calibrate the source, split again
    rc, _, _ = _cli("gallery", "shard", old, "--shards", 2)
    assert rc == 0
    rc, _, err = _cli("run", "--config", _config(tmp_path, f"{old}.shards"))
    assert rc == 2 and f"gallery calibrate {old.resolve()}` then `ebts-gateway gallery shard" in err
    # [matcher] threshold decides instead of the gallery's thresholds: the start goes on
    _check_decisions(
        load_config(_config(tmp_path, old, "[matcher]\nthreshold = 0.5\n")), {"fbi": str(old)}
    )
    # a calibrated gallery passes
    _check_decisions(load_config(_config(tmp_path, built)), {"fbi": str(built)})


@pytest.mark.parametrize("damage", ["templates.bin", "background.npz"])
def test_a_damaged_gallery_is_refused_at_load_and_at_the_daemon_start(built, tmp_path, damage):
    """A truncated templates.bin or background.npz: Gallery.load says "damaged gallery" (a
    truncated .npz was a BadZipFile traceback; a short templates.bin loaded, and every
    comparison reading past its end made the transaction an INTERNAL_ERROR), and the daemon
    does not start on it (exit 2, naming the gallery)."""
    broken = tmp_path / "broken"
    Gallery.load(built).save(broken)
    path = broken / damage
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="damaged gallery"):
        Gallery.load(broken)
    rc, _, err = _cli("run", "--config", _config(tmp_path, broken))
    assert rc == 2 and "the fbi gallery cannot be opened" in err and "damaged gallery" in err
    rc, out, err = _cli("gallery", "info", broken)
    assert rc != 0 and "Traceback" not in out + err and "damaged gallery" in out + err


def test_an_old_demo_gallery_is_calibrated_again(tmp_path, monkeypatch):
    """A demo gallery calibrated on another scale is not "built": the builder calibrates it
    again in place (four-finger and one-finger thresholds), without rendering anything."""
    from gateway import demo
    from gateway.matcher.gallery import SCORE_SCALE

    monkeypatch.setattr(demo, "CALIBRATION_SEARCHES", 12)
    g = Gallery()
    synthetic.populate(g, 20, seed=11)
    for i in (1, 2, 3):
        probe = synthetic.tenprint(synthetic.identity(71, i), 0)
        for p in demo.POSITIONS:
            g.add(demo.demo_ucn(i), p, probe[p])
    g.calibrate([0.4, 0.5, 0.6], fpir=0.01)
    path = tmp_path / "fbi-demo"
    g.save(path)
    _forget_scale(path)
    (path / "demo.json").write_text(json.dumps({"kind": "fbi", "identities": [1, 2, 3]}))
    (path / "subjects.jsonl").write_text("")
    assert not demo.is_built(path)
    assert demo.ensure_demo_gallery(path, 3) == path
    assert demo.is_built(path) and (path / "subjects.jsonl").exists()  # in place
    h = Gallery.load(path)
    assert h.score_scale == SCORE_SCALE and sorted(h.thresholds) == [1] and len(h) == 23
    assert json.loads((path / "demo.json").read_text())["threshold"] == h.threshold
    mate = h.search(
        {
            p: t
            for p, t in synthetic.tenprint(synthetic.identity(71, 2), 1).items()
            if p in demo.POSITIONS
        },
        top=1,
    )[0]
    assert mate.subject_id == demo.demo_ucn(2) and mate.decision
