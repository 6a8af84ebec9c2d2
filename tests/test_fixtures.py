"""Conformance over ``fixtures/validation``: every fixture yields exactly the findings its
``NAME.expect.json`` lists, and every ERRT built for an invalid fixture validates clean."""

from __future__ import annotations

import json
import sys

import pytest

from gateway.ansinist import FormatError, read, write
from gateway.routing import rules
from gateway.routing.answers.errt import build_errt, header_of
from gateway.validation import validate_bytes
from tests.conftest import FIXTURES, REPO, fixture_data_file, fixture_today

EXPECTS = sorted(FIXTURES.glob("*.expect.json"))


def test_there_are_fixtures_for_every_level():
    names = [e.name for e in EXPECTS]
    assert len(names) >= 35
    for prefix in ("l1-", "l2-", "l3-", "l4-", "car-valid", "errt-"):
        assert any(n.startswith(prefix) for n in names), prefix


@pytest.mark.parametrize("expect_path", EXPECTS, ids=lambda p: p.name.split(".")[0])
def test_fixture_findings(expect_path):
    expect = json.loads(expect_path.read_text())
    data = fixture_data_file(expect_path).read_bytes()
    report = validate_bytes(data, profile=expect["profile"], today=fixture_today(expect))
    got = [
        {"severity": f.severity, "code": f.code, "location": str(f.location)}
        for f in report.findings
    ]
    assert got == expect["findings"]
    assert report.valid == expect["valid"]
    if expect["valid"]:
        assert expect["response_tot"] == rules.gateway_answer(read(data).tot)
    else:
        assert expect["response_tot"] in ("ERRT", None)


@pytest.mark.parametrize(
    "expect_path",
    [e for e in EXPECTS if json.loads(e.read_text())["response_tot"] == "ERRT"],
    ids=lambda p: p.name.split(".")[0],
)
def test_errt_for_invalid_fixture_validates_clean(expect_path):
    expect = json.loads(expect_path.read_text())
    data = fixture_data_file(expect_path).read_bytes()
    report = validate_bytes(data, profile=expect["profile"], today=fixture_today(expect))
    try:
        submission = read(data)
    except FormatError:
        submission = header_of(data)
    assert submission is not None
    errt = build_errt(submission, report.findings, tcn="GW20260110999999", dat="20260110")
    assert errt.tot == "ERRT" and errt.encoding == submission.encoding
    encoded = write(errt)
    back = validate_bytes(encoded, profile=expect["profile"], today=fixture_today(expect))
    assert back.findings == [], [f.to_dict() for f in back.findings]
    msgs = read(encoded).records[1]["2.060"].subfields
    assert 1 <= len(msgs) <= 11
    assert all(len(m[0]) <= 300 for m in msgs)


def test_generator_reproduces_the_committed_fixtures():
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import make_fixtures
    finally:
        sys.path.remove(str(REPO / "tools"))
    for name, data in make_fixtures.fixtures().items():
        assert (FIXTURES / name).read_bytes() == data, name
