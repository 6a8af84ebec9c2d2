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
        match_threshold=0.3,  # four-finger sums of compare scores: mates about 0.9, non-mates 0.07
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
    # a known subject: the four searched fingers, then two more for the floor (6 of 10)
    assert sorted(second.summary["quality"]) == ["1", "2", "3", "4", "6", "7"]
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


def _with_fingers(identity: int, images: dict):
    """A synthetic CAR whose finger images at the given positions are replaced."""
    from gateway.synth.transactions import wsq_bytes

    txn = synth.car_transaction(identity, impression=1)
    for record in txn.records:
        if record.type == 14 and int(record.value("14.013")) in images:
            pixels = images[int(record.value("14.013"))]
            record["14.006"], record["14.007"] = str(pixels.shape[1]), str(pixels.shape[0])
            record["14.999"] = wsq_bytes(pixels)
    return txn


def _errt_lines(result) -> list[str]:
    from gateway.validation import validate

    assert result.response_tot == "ERRT" and result.enroll is None
    errt = read(result.response)
    assert validate(errt, profile="ebts-10").valid  # the ERRT itself validates
    t2 = next(r for r in errt.records if r.type == 2)
    return [" ".join(sub) for sub in t2.get("2.060").subfields]


def test_an_all_zero_tenprint_gets_an_errt_and_enrols_nothing(setting):
    import numpy as np

    base, _ = setting
    zero = np.zeros((416, 416), np.uint8)
    txn = _with_fingers(33, {p: zero for p in range(1, 11)})
    result = process(_job(base, write(txn), "0000034GW"))
    lines = _errt_lines(result)
    assert result.summary["unusable"] == list(range(1, 11))
    assert not [s for s in result.steps if s[0] == "SEARCHED"]
    # each unusable finger position is named (an all-zero WSQ from the encoder does not even
    # decode here: unusable all the same)
    for position in range(1, 11):
        assert any(f"FGP {position}: FINGERPRINT UNUSABLE" in line for line in lines)
    assert any("0 USABLE FINGERPRINTS OF 10, 6 REQUIRED" in line for line in lines)


def test_flat_and_noise_fingers_are_unusable_and_never_enrolled(setting):
    import numpy as np

    base, _ = setting
    rng = np.random.default_rng(3)
    # a smooth ramp (a constant image does not survive the WSQ encoder), no ridges
    flat = np.tile(np.linspace(150, 190, 416), (416, 1)).astype(np.uint8)
    noise = rng.integers(0, 256, (416, 416)).astype(np.uint8)
    # three bad fingers of ten: 7 usable >= 6, so the card is searched, the bad ones not used
    txn = _with_fingers(35, {3: flat, 4: noise, 8: noise})
    result = process(_job(base, write(txn), "0000035GW"))
    assert result.response_tot == "SRE", result.steps
    quality = result.summary["quality"]
    assert quality["3"] == quality["4"] == quality["8"] == 0
    assert all(quality[str(p)] > 0 for p in (1, 2, 5, 6, 7, 9, 10))
    assert sorted(result.enroll["templates"]) == [1, 2, 5, 6, 7, 9, 10]
    # five bad fingers: 5 usable < 6, an ERRT naming exactly the five
    txn = _with_fingers(36, {3: flat, 4: noise, 8: noise, 9: flat, 10: noise})
    result = process(_job(base, write(txn), "0000036GW"))
    lines = _errt_lines(result)
    assert result.summary["unusable"] == [3, 4, 8, 9, 10]
    named = {p for p in range(1, 11) if any(f"FGP {p}:" in line for line in lines)}
    assert named == {3, 4, 8, 9, 10}


def test_the_floor_extracts_the_searched_fingers_then_only_what_it_needs(setting):
    """Fingers 1, 2, 6, 7 are searched; the floor (6 of 10) takes the others in FGP order until
    six are usable: 3 and 4 are not, so 5 and 8 are extracted, 9 and 10 never are (no
    enrolment here); with 9 and 10 bad too it must look at every finger before its ERRT."""
    import numpy as np

    base, _ = setting
    rng = np.random.default_rng(5)
    flat = np.tile(np.linspace(150, 190, 416), (416, 1)).astype(np.uint8)
    noise = rng.integers(0, 256, (416, 416)).astype(np.uint8)
    job = _job(base, write(_with_fingers(38, {3: flat, 4: noise})), "0000038GW")
    job.new_subject_id = None
    result = process(job)
    assert result.response_tot == "SRE", result.steps
    assert sorted(result.summary["quality"], key=int) == ["1", "2", "3", "4", "5", "6", "7", "8"]
    assert result.summary["fingers"] == [1, 2, 6, 7]
    bad = {3: flat, 4: noise, 5: flat, 9: flat, 10: noise}
    job = _job(base, write(_with_fingers(39, bad)), "0000039GW")
    result = process(job)
    assert result.summary["unusable"] == [3, 4, 5, 9, 10]
    assert len(result.summary["quality"]) == 10
    assert any("5 USABLE FINGERPRINTS OF 10, 6 REQUIRED" in line for line in _errt_lines(result))


def test_a_raised_floor_and_the_proportional_finger_count(setting):
    from gateway.routing.processing import required_fingers

    assert [required_fingers(6, n) for n in (0, 1, 2, 4, 10)] == [0, 1, 2, 3, 6]
    assert required_fingers(10, 4) == 4 and required_fingers(1, 10) == 1
    base, _ = setting
    data = write(synth.car_transaction(37, impression=1))
    job = _job(base, data, "0000037GW")
    job.min_quality = 101  # nothing reaches it
    result = process(job)
    assert result.summary["unusable"] == list(range(1, 11))
    assert any("QUALITY" in line and "BELOW 101" in line for line in _errt_lines(result))


@pytest.mark.parametrize("cut", ["after_type1", "inside_type1", "garbage"])
def test_an_unreadable_xml_package_gets_an_xml_errt_addressed_from_its_type1(cut):
    """XML in, XML out, also for a package that does not read: its ERRT was traditional and
    named no TCN, since the stand-in submission was made out of traditional Type-1 bytes only;
    now from the package's first record when it reads (a package cut after its Type-1)."""
    from gateway.ansinist import read as read_any
    from gateway.validation import validate
    from tests.integration.cars import make_car

    full = write(read_any(make_car("NY-0000126")), "xml")
    end = full.index(b"</itl:PackageInformationRecord>")
    payload = {
        "after_type1": full[: end + 200],
        "inside_type1": full[: end - 100],
        "garbage": b"<garbage/>",
    }[cut]
    result = process(
        Job(message_id="M1", payload=payload, response_tcn="GW-1", gateway_ori="WVIAFIS0Z")
    )
    assert result.response_tot == "ERRT" and result.encoding == "xml"
    assert result.response.startswith(b"<?xml")
    errt = read(result.response)
    assert validate(errt, profile="ebts-10", source=result.response).valid
    named = cut == "after_type1"
    assert errt.records[0].value("1.010") == ("NY-0000126" if named else None)
    assert result.identity["tcn"] == ("NY-0000126" if named else None)
    assert result.identity["encoding"] == "xml"
