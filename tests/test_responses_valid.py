"""Every kind of response the gateway builds validates under the profile in force.

SRE with and without an identification (with the DHS result lines and ESI), ERRT from findings, and
the ERRT of a file that does not read and names no usable ORI/DAI; each in the traditional and the
XML encoding, under ebts-10 (the gateway's profile) and, for traditional, ebts-9.1.
"""

from __future__ import annotations

from datetime import date

import pytest

from gateway.ansinist import Location, read, write
from gateway.routing.answers.errt import build_errt
from gateway.routing.answers.sre import build_sre
from gateway.routing.processing import _placeholder_submission
from gateway.validation import ERROR, Finding, validate, validate_bytes
from tests.conftest import FIXTURES

TODAY = date(2026, 1, 15)
GATEWAY_ORI = "WVIAFIS0Z"
SUBMISSIONS = {"traditional": "car-valid.eft", "xml": "car-valid-xml.xml"}


def _submission(encoding: str):
    txn = read((FIXTURES / SUBMISSIONS[encoding]).read_bytes())
    assert txn.encoding == encoding
    return txn


def _sre(submission, identified: bool):
    return build_sre(
        submission,
        tcn="GW20260115000001",
        identified=identified,
        ucn="123456AB7" if identified else None,
        messages=["DHS IDENT: MATCH", "SUBJECT ID DHS123457"] if identified else [],
        esi="DHS123457" if identified else None,
        dat="20260115",
        gateway_ori=GATEWAY_ORI,
    )


def _errt(submission):
    finding = Finding(
        ERROR,
        "L3_MANDATORY_MISSING",
        Location(2, 2, "2.018"),
        "mandatory field 2.018 NAM (Name) is missing for TOT CAR",
        hint="Type-2 record 2 field 2.018 NAM: mandatory field missing [rule: EBTS 9.1 2.018]",
    )
    return build_errt(
        submission, [finding], tcn="GW20260115000002", ori=GATEWAY_ORI, dat="20260115"
    )


KINDS = {
    "sre-hit": lambda s: _sre(s, True),
    "sre-no-hit": lambda s: _sre(s, False),
    "errt": _errt,
}


def _profiles(encoding: str, kind: str):
    # The gateway answers under ebts-10 (its default profile).  A traditional answer without the
    # EBTS 10 additions (2.060 MSG on SRE since EBTS 9.4, 2.2037 ESI) also passes EBTS 9.1.
    if encoding == "traditional" and kind != "sre-hit":
        return ["ebts-10", "ebts-9.1"]
    return ["ebts-10"]


@pytest.mark.parametrize("encoding", ["traditional", "xml"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_response_validates(kind, encoding):
    response = KINDS[kind](_submission(encoding))
    assert response.encoding == encoding
    data = write(response)
    for profile in _profiles(encoding, kind):
        report = validate_bytes(data, profile=profile, today=TODAY)
        assert report.findings == [], (profile, [f.to_dict() for f in report.findings])
    back = read(data)
    assert back.tot == kind.split("-")[0].upper()
    assert back.records[0].value("1.010") == _submission(encoding).tcn  # TCR = submission TCN


def test_errt_for_a_file_with_no_usable_dai():
    """A file that does not read and carries no 1.007 DAI / 1.008 ORI: the ERRT is addressed by
    the agency's registration, and its own 1.007 stays a valid AN 9 value."""
    payload = b"1.001:40\x1d1.002:0400\x1d1.004:CAR\x1d1.009:XX\x1cgarbage"
    submission = _placeholder_submission(payload)
    assert submission.dai == "UNKNOWN" and submission.ori == "UNKNOWN"
    errt = _errt(submission)
    for profile in ("ebts-10", "ebts-9.1"):
        report = validate(read(write(errt)), profile=profile, today=TODAY)
        assert report.findings == [], (profile, [f.to_dict() for f in report.findings])
    t1 = errt.records[0]
    assert t1.value("1.007") == GATEWAY_ORI and t1.value("1.008") == GATEWAY_ORI


def test_demo_sample_is_valid():
    """README's showcase, fixtures/samples/demo-car.eft (tools/make_demo_sample.py)."""
    data = (FIXTURES.parent / "samples" / "demo-car.eft").read_bytes()
    for profile in ("ebts-10", "ebts-9.1"):
        report = validate_bytes(data, profile=profile, today=date(2026, 11, 25))
        assert report.findings == [], (profile, [f.to_dict() for f in report.findings])
