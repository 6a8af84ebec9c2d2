"""The worker side of the pipeline on its own: a new subject is enrolled, its next booking hits."""

from __future__ import annotations

import json
import sqlite3

import pytest

from gateway import synth
from gateway.ansinist import read, write
from gateway.matcher import synthetic
from gateway.matcher.gallery import Gallery
from gateway.routing.processing import Job, process
from gateway.store.enrolments import SCHEMA, add_enrolment
from tests.conftest import FIXTURES, fixture_data_file, fixture_today


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    base = tmp_path_factory.mktemp("proc")
    g = Gallery()
    synthetic.populate(g, 40, seed=17)
    g.save(base / "fbi")
    db = sqlite3.connect(base / "journal.sqlite3")
    db.executescript(SCHEMA)
    db.commit()
    return base, db


def _job(base, payload: bytes, ucn: str) -> Job:
    return Job(
        message_id=f"M-{ucn}",
        payload=payload,
        response_tcn=f"GWTCN{ucn}",
        gateway_ori="WVIAFIS0Z",
        today="2026-11-25",
        fbi_gallery=str(base / "fbi"),
        journal_path=str(base / "journal.sqlite3"),
        new_subject_id=ucn,
        search_positions=(1, 2, 6, 7),
        match_threshold=1.0,  # four-finger fused scores: mates about 2, non-mates under 0.6
    )


def _sre_type2(result):
    assert result.response_tot == "SRE"
    return next(r for r in read(result.response).records if r.type == 2)


def test_new_subject_enrolled_then_identified(setting):
    base, db = setting
    first = process(_job(base, write(synth.car_transaction(31, impression=1)), "0000031GW"))
    searched = [s for s in first.steps if s[0] == "SEARCHED"]
    assert searched and searched[0][1] == "no hit; enrolled 10 fingers" and searched[0][3] == "FBI"
    assert first.enroll["subject_id"] == "0000031GW"
    assert sorted(first.enroll["templates"]) == list(range(1, 11))
    t2 = _sre_type2(first)
    assert t2.value("2.059") == "N"
    # the parent commits the enrolment with the answer; the workers read it from the journal
    add_enrolment(db, "M-0000031GW", "fbi", "0000031GW", first.enroll["templates"])
    db.commit()

    second = process(_job(base, write(synth.car_transaction(31, impression=2)), "0000032GW"))
    assert second.enroll is None and second.summary["fbi"]["hit"]
    assert second.summary["fbi"]["candidate"] == "0000031GW"
    t2 = _sre_type2(second)
    assert t2.value("2.059") == "I" and t2.value("2.014") == "0000031GW"

    other = process(_job(base, write(synth.car_transaction(32, impression=1)), "0000033GW"))
    assert not other.summary["fbi"]["hit"] and other.enroll["subject_id"] == "0000033GW"


def test_decoders_stay_isolated_outside_the_workers(setting, monkeypatch):
    """process() leaves the decoder order alone; only a pool worker decodes in process."""
    from gateway.imaging import codecs
    from gateway.matcher import pool

    base, _ = setting
    process(_job(base, b"not an EBTS file", "0000099GW"))
    assert codecs.find_decoder("JPEGL").isolated
    assert [d for d in codecs.decoders_for("WSQ20") if "NBIS" in d.name][0].isolated
    monkeypatch.setattr(codecs, "_REGISTRY", {k: list(v) for k, v in codecs._REGISTRY.items()})
    monkeypatch.setattr(pool.os, "nice", lambda n: 0)  # not this test process
    pool._worker_init()
    assert not codecs.find_decoder("JPEGL").isolated
    assert codecs.find_decoder("WSQ20").name == "WSQ (numpy)"


def test_validation_fixtures_get_their_answers_with_a_gallery(setting):
    """The conformance fixtures are answered as their expectations say by a gateway that
    searches (their fingers are real images), not only by one without galleries: a placeholder
    image once made every valid CAR an ERRT (NO_FINGERS) once a gallery was configured."""
    base, _ = setting
    checked = 0
    for n, expect_path in enumerate(sorted(FIXTURES.glob("*.expect.json"))):
        expect = json.loads(expect_path.read_text())
        if expect["response_tot"] != "SRE":
            continue
        data = fixture_data_file(expect_path)
        job = _job(base, data.read_bytes(), f"{n:07d}FX")
        job.today = fixture_today(expect).isoformat()
        result = process(job)
        assert result.response_tot == "SRE", (data.name, result.steps)
        assert [s for s in result.steps if s[0] == "SEARCHED"], data.name
        checked += 1
    assert checked >= 5
