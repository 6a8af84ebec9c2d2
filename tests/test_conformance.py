"""Conformance of the validator: no false alarms on the reference files of NIST and the FBI.

Data from ``../shared/conformance``, or the committed subset without it (tests/conftest.py).
"""

from __future__ import annotations

from collections import Counter
from datetime import date

import pytest

from gateway import ansinist
from gateway.validation import validate, validate_bytes
from tests.conftest import CONFORMANCE

TODAY = date(2026, 12, 6)


def _templates():
    return sorted((CONFORMANCE / "xml" / "fbi-ebts10-ngi-templates").rglob("*.xml"))


def test_nbis_2008_test_file_gives_its_seven_real_errors():
    """3 schema errors (the file says it "may be missing elements required for XML schema
    validation") and 4 IDCs shared by records of one type; nothing else."""
    path = CONFORMANCE / "xml" / "nbis-itl-2-2008" / "All-Supported-Records-test-comp.xml"
    report = validate_bytes(path.read_bytes(), profile="none", today=TODAY)
    codes = Counter(f.code for f in report.errors)
    assert codes == {"L4_SCHEMA": 3, "L1_IDC_DUPLICATE": 4}
    assert [f.location.line for f in report.errors if f.code == "L4_SCHEMA"] == [193, 296, 1206]
    dup = [
        (f.location.record_type, f.location.record) for f in report.errors if f.code != "L4_SCHEMA"
    ]
    assert dup == [(8, 9), (9, 11), (10, 13), (13, 15)]
    # Its two Type-9 records point at IDC 7, which no image record has (a warning).
    assert Counter(f.code for f in report.warnings) == {"L1_IDC_REFERENCE": 2}


def test_fbi_templates_under_ebts10_only_their_real_count_contradictions():
    templates = _templates()
    assert len(templates) == 100
    errors = Counter()
    for path in templates:
        report = validate_bytes(path.read_bytes(), profile="ebts-10", today=TODAY)
        for f in report.errors:
            errors[(path.name.split(")")[0] + ")", f.code)] += 1
    codes = Counter(code for (_, code), n in errors.items() for _ in range(n))
    # 5 Type-13 records whose IDC differs from the one 1.003 CNT gives them, and the SRE template
    # whose CNT count says 1 record follows Type-1 where 2 do.  Everything else is valid.
    assert codes == {"L1_IDC_MISMATCH": 5, "L1_CNT_MISMATCH": 1}
    assert ("Template(SRE)", "L1_CNT_MISMATCH") in errors


def test_ebts10_knows_every_template_tot():
    for path in _templates():
        report = validate_bytes(path.read_bytes(), profile="ebts-10", today=TODAY)
        assert not [f for f in report.findings if f.code == "L3_TOT_UNKNOWN"], path.name


def _car():
    path = CONFORMANCE / "traditional" / "misc" / "openebts-NISTFile.ebts"
    return ansinist.read(path.read_bytes())


def test_messages_name_the_profile_and_the_rule_applied():
    txn = _car()
    txn.records[0]["1.009"] = "SHORT"  # TCN: EBTS 9.1 wants 10-40 characters
    under10 = [
        f for f in validate(txn, profile="ebts-10", today=TODAY).findings if f.code == "L3_SIZE"
    ]
    assert under10
    for f in under10:
        assert "EBTS 9.1 allows" not in f.message
        assert "EBTS 10 (EBTS 9.1 rule) allows" in f.message
        assert "EBTS9.1_ENUS.txt line" in f.errt_text  # the rule cites the file and line
    under91 = [
        f for f in validate(txn, profile="ebts-9.1", today=TODAY).findings if f.code == "L3_SIZE"
    ]
    assert under91 and all("EBTS 9.1 allows" in f.message for f in under91)


def test_every_finding_cites_its_rule():
    paths = sorted((CONFORMANCE / "traditional").glob("*/*"))
    paths += sorted((CONFORMANCE / "xml").rglob("*.xml"))[:20]
    seen = 0
    for path in paths:
        report = validate_bytes(path.read_bytes(), profile="ebts-10", today=TODAY)
        for f in report.findings:
            seen += 1
            assert "[rule: " in f.errt_text, (path.name, f.code, f.errt_text)
    assert seen > 100


def _type9_standard():
    path = CONFORMANCE / "traditional" / "nbis-an2kconvert" / "valid1.14.an2"
    return ansinist.read(path.read_bytes())


def test_ebts91_mrc_ridge_counts_repeat():
    """EBTS9.1_ENUS.txt line "9.012..5 T9_MRC_RID N x x": item 5 repeats, one per neighbour."""
    txn = _type9_standard()
    t9 = next(r for r in txn.records if r.type == 9)
    subs = list(t9["9.012"].subfields)
    subs[0] = (*subs[0][:4], "1,0", "2,3", "7,1")
    t9["9.012"] = subs
    report = validate(txn, profile="ebts-9.1", today=TODAY)
    assert not [f for f in report.findings if f.location.tag == "9.012"]


def test_ebts91_nqm_one_per_finger():
    path = CONFORMANCE / "traditional" / "nist-reference" / "type-14-tpcard-nqm.an2"
    txn = ansinist.read(path.read_bytes())
    single = next(r for r in txn.records if r.type == 14 and r.value("14.013") not in ("13", "14"))
    assert len(single["14.022"].subfields) == 1
    report = validate(txn, profile="ebts-9.1", today=TODAY)
    assert not [f for f in report.findings if f.location.tag == "14.022"]
    # Two NQM subfields on a one-finger image is still wrong.
    single["14.022"] = [single["14.022"].subfields[0]] * 2
    report = validate(txn, profile="ebts-9.1", today=TODAY)
    assert [f.code for f in report.findings if f.location.tag == "14.022"] == ["L3_OCCURRENCES"]


@pytest.mark.parametrize("fill", ["255"])
def test_binary_fgp_fill_is_accepted(fill):
    path = CONFORMANCE / "traditional" / "nbis-an2kconvert" / "valid1.1.an2"
    txn = ansinist.read(path.read_bytes())
    t4 = next(r for r in txn.records if r.type == 4)
    t4["4.004"] = [(t4.value("4.004"),)] + [(fill,)] * 5
    report = validate(txn, profile="none", today=TODAY)
    assert not [f for f in report.findings if f.location.tag == "4.004"]


# -- field dictionary and the fields newer than VER ----------------------------------------------
def test_field_dictionary_covers_every_record_type():
    from gateway.ansinist.dictionary import RECORD_SINCE, fields, lookup

    table = fields()
    types = {info.record_type for info in table.values()}
    assert types == set(RECORD_SINCE) == {*range(1, 23), 98, 99}
    for rtype in types:
        assert f"{rtype}.001" in table and f"{rtype}.002" in table, rtype
    assert lookup("18.016").mnemonic == "STR" and lookup("18.016").since == "0500"
    assert lookup("98.900").mnemonic == "ALF"
    assert lookup("22.101").since == "0501"
    assert lookup("10.013").since == "0400" and lookup("14.003").since == "0300"
    assert lookup("2.018") is None  # Type-2 content is the application profile's


def test_field_newer_than_ver_warns_by_default_and_is_an_error_when_strict():
    path = CONFORMANCE / "traditional" / "nbis-an2kconvert" / "valid1.14.an2"
    txn = ansinist.read(path.read_bytes())  # VER 0201 with a 9.003 IMP (1-2000, VER 0300)
    default = validate(txn, profile="none", today=TODAY)
    newer = [f for f in default.findings if f.code == "L2_FIELD_NEWER_THAN_VER"]
    assert newer and all(f.severity == "warning" for f in newer)
    assert {f.location.tag for f in newer} == {"9.003"}
    assert "0300" in newer[0].message and "0201" in newer[0].message
    strict = validate(txn, profile="none", strictness="strict", today=TODAY)
    assert {f.severity for f in strict.findings if f.code == "L2_FIELD_NEWER_THAN_VER"} == {"error"}


def test_record_type_newer_than_ver():
    path = CONFORMANCE / "traditional" / "nbis-an2kconvert" / "valid1.10.an2"
    txn = ansinist.read(path.read_bytes())  # VER 0201 carrying a Type-17 (1-2007)
    report = validate(txn, profile="none", today=TODAY)
    newer = [f for f in report.findings if f.code == "L2_RECORD_NEWER_THAN_VER"]
    assert [(f.location.record_type, f.severity) for f in newer] == [(17, "warning")]


def test_csp_of_type16_checked_as_nbis_does():
    path = CONFORMANCE / "traditional" / "nist-reference" / "type-17-iris.an2"
    txn = ansinist.read(path.read_bytes())
    t16 = txn.add_record(16)
    for tag, value in {
        "16.003": "TEST",
        "16.004": "NIST",
        "16.005": "20260101",
        "16.006": "10",
        "16.007": "10",
        "16.008": "0",
        "16.009": "1",
        "16.010": "1",
        "16.011": "NONE",
        "16.012": "8",
        "16.013": "RGBA",
        "16.999": b"\x00" * 100,
    }.items():
        t16[tag] = value
    report = validate(txn, profile="none", today=TODAY)
    assert [f.code for f in report.errors if f.location.tag == "16.013"] == ["L2_CODE_INVALID"]
    t16["16.013"] = "GRAY"
    report = validate(txn, profile="none", today=TODAY)
    assert not [f for f in report.errors if f.location.tag == "16.013"]


def test_lqm_vendor_id_is_four_hex_digits():
    """chkan2k VIDX: 4 hex digits (libbiomeval-type9-13 writes a 3-digit one)."""
    path = CONFORMANCE / "traditional" / "misc" / "libbiomeval-type9-13.an2k"
    report = validate_bytes(path.read_bytes(), profile="none", today=TODAY)
    lqm = [f for f in report.errors if f.location.tag == "13.024"]
    assert [f.code for f in lqm] == ["L2_SIZE"]
    txn = ansinist.read(path.read_bytes())
    t13 = next(r for r in txn.records if r.type == 13)
    t13["13.024"] = [(s[0], s[1], "0FA1", *s[3:]) for s in t13["13.024"].subfields]
    assert not [f for f in validate(txn, profile="none").errors if f.location.tag == "13.024"]


def test_dump_names_fields_from_the_dictionary(capsys):
    from gateway.cli import main
    from tests.conftest import REPO

    assert main(["dump", str(REPO / "fixtures" / "samples" / "demo-car.eft")]) == 0
    out = capsys.readouterr().out
    assert "  14.011    CGA  WSQ20" in out and "  2.018     " in out
