"""Validation levels 1-3, strictness, the verification-file parser, ERRT shape, the CLI, and the
outcome over every traditional corpus file (table below, checked against MANIFEST.txt)."""

from __future__ import annotations

import json
from datetime import date

import pytest

from gateway.ansinist import Location, Transaction, read, write
from gateway.cli import main
from gateway.routing.answers.errt import build_errt, errt_messages, header_of
from gateway.validation import Finding, Strictness, validate, validate_bytes
from gateway.validation.findings import ERROR
from gateway.validation.verification import load, parse
from tests.conftest import FULL_CORPUS, OUTSIDE_SUBSET, TRADITIONAL, TRADITIONAL_COUNT, corpus_files

TODAY = date(2026, 1, 15)


def car(**t1) -> Transaction:
    txn = Transaction.new(
        tot=t1.get("tot", "CAR"),
        dai="WVIAFIS0Z",
        ori="WV0340000",
        tcn="WV20260110000001",
        dat=t1.get("dat", "20260110"),
        ver=t1.get("ver", "0400"),
        nsr="19.69",
        ntr="19.69",
    )
    t2 = txn.add_record(2, idc=0)
    for tag, value in {
        "2.005": "N",
        "2.018": "SAMPLE, PAT Q",
        "2.020": "WV",
        "2.022": "19800229",
        "2.024": "X",
        "2.025": "U",
        "2.027": "510",
        "2.029": "150",
        "2.031": "BRO",
        "2.032": "BLK",
        "2.045": "20260110",
        "2.047": [("20260110", "SYNTHETIC TEST OFFENSE")],
        "2.073": "WV0340000",
    }.items():
        t2[tag] = value
    r = txn.add_record(14, idc=1)
    for tag, value in {
        "14.003": "1",
        "14.004": "WV0340000",
        "14.005": "20260110",
        "14.006": "100",
        "14.007": "100",
        "14.008": "1",
        "14.009": "500",
        "14.010": "500",
        "14.011": "WSQ20",
        "14.012": "8",
        "14.013": "1",
    }.items():
        r[tag] = value
    r["14.999"] = b"\xff\xa0\xff\xa1"
    return txn


def codes(report, severity=None):
    return [f.code for f in report.findings if severity is None or f.severity == severity]


def roundtrip(txn, **kw):
    data = write(txn)
    return validate_bytes(data, today=TODAY, **kw)


# -- the base and the profiles -----------------------------------------------------------------
def test_synthetic_car_is_valid_at_every_profile():
    for profile in ("none", "ebts-9.1", "ebts-10"):
        report = roundtrip(car(), profile=profile)
        assert report.findings == [], [f.to_dict() for f in report.findings]


def test_built_transaction_validates_without_encoding():
    txn = car()
    txn.records[0]["1.003"] = [("1", "2"), ("2", "00"), ("14", "01")]
    assert validate(txn, today=TODAY).findings == []


def test_unknown_profile_is_refused():
    with pytest.raises(ValueError):
        validate(car(), profile="ebts-7")


# -- level 1 ---------------------------------------------------------------------------------------
def test_level1_cnt_mismatch_on_a_built_transaction():
    txn = car()
    txn.records[0]["1.003"] = [("1", "5"), ("2", "00"), ("14", "01")]
    assert codes(validate(txn, today=TODAY)) == ["L1_CNT_MISMATCH"]
    txn.records[0]["1.003"] = [("1", "2"), ("2", "00"), ("10", "01")]
    assert "L1_CNT_MISMATCH" in codes(validate(txn, today=TODAY))


def test_level1_order_and_duplicate_idc():
    txn = car()
    txn.records[1], txn.records[2] = txn.records[2], txn.records[1]
    assert "L1_RECORD_ORDER" in codes(roundtrip(txn))
    txn = car()
    txn.records.append(txn.records[2])
    assert "L1_IDC_DUPLICATE" in codes(roundtrip(txn))


def test_unreadable_data_is_one_level1_finding():
    data = write(car())
    report = validate_bytes(data[:-10])
    assert [f.code for f in report.findings] == ["L1_LEN_PAST_END"]
    assert str(report.findings[0].location).startswith("record 3 (Type-14) field 14.001")
    assert validate_bytes(b"garbage").findings[0].code.startswith("L1_")


def test_quirk_strictness_switch():
    data = (TRADITIONAL / "misc" / "openebts-NISTFile.ebts").read_bytes()  # 2-digit tags
    txn = read(data)
    assert codes(validate(txn, profile="none"), "warning") == ["L1_SHORT_TAG"]
    assert codes(validate(txn, profile="none", strictness="strict"), ERROR) == ["L1_SHORT_TAG"]
    quiet = Strictness.default().with_actions(SHORT_TAG="ignore")
    assert validate(txn, profile="none", strictness=quiet).findings == []
    with pytest.raises(ValueError):
        Strictness({"NOPE": "warn"})
    with pytest.raises(ValueError):
        Strictness({"SHORT_TAG": "shout"})


def test_inconsistencies_are_errors_by_default_and_warnings_when_lenient():
    data = (TRADITIONAL / "misc" / "libbiomeval-type9-13.an2k").read_bytes()
    txn = read(data)
    default = validate(txn, profile="none")
    # L2_SIZE: its LQM vendor id has 3 characters, not 4 hex digits (chkan2k VIDX says the same).
    assert set(codes(default, ERROR)) == {"L1_DUPLICATE_FIELD", "L1_TAG_TYPE_MISMATCH", "L2_SIZE"}
    lenient = validate(txn, profile="none", strictness="lenient")
    assert set(codes(lenient, ERROR)) == {"L2_SIZE"}  # a wrong value is no quirk
    quirks = {"L1_DUPLICATE_FIELD", "L1_TAG_TYPE_MISMATCH", "L2_FIELD_NEWER_THAN_VER"}
    assert set(codes(lenient, "warning")) == quirks


# -- level 2 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "record, tag, value, code",
    [
        (0, "1.005", "20260231", "L2_DATE_INVALID"),
        (0, "1.011", "500", "L2_RES_FORMAT"),
        (0, "1.012", "19,69", "L2_RES_FORMAT"),
        (0, "1.006", "0", "L2_CODE_INVALID"),
        (0, "1.014", "20260110256000Z", "L2_GMT_INVALID"),
        (2, "14.003", "30", "L2_CODE_INVALID"),
        (2, "14.008", "3", "L2_CODE_INVALID"),
        (2, "14.011", "GIF", "L2_CODE_INVALID"),
        (2, "14.012", "0", "L2_CODE_INVALID"),
        (2, "14.013", ["1", "2", "3", "4", "5", "6", "7"], "L2_OCCURRENCES"),
        (2, "14.006", "12345678", "L2_SIZE"),
        (2, "14.007", "1x0", "L2_CHARSET"),
        (2, "14.005", "2026011", "L2_DATE_INVALID"),
    ],
)
def test_level2_rules(record, tag, value, code):
    txn = car()
    txn.records[record][tag] = value
    report = roundtrip(txn, profile="none")
    assert codes(report) == [code]
    assert str(report.findings[0].location).endswith(f"field {tag}")


@pytest.mark.parametrize(
    "record, tag, value",
    [
        (0, "1.003", [("1", "9" * 5000), ("2", "00"), ("14", "01")]),
        (0, "1.003", [("1", "\u00b2"), ("2", "00"), ("14", "01")]),
        (0, "1.002", "040\u00b2"),
        (0, "1.014", "20260110\u00b220000Z"),
    ],
)
def test_numbers_int_cannot_read_are_findings_not_exceptions(record, tag, value):
    # fuzz_process: "²" passes str.isdigit() and int() refuses it, as it refuses 5,000 digits;
    # each ValueError escaped validation and the CAR got an INTERNAL_ERROR answer
    txn = car()
    txn.records[record][tag] = value
    report = validate(txn, today=TODAY)
    assert not report.valid and all(f.severity for f in report.findings)


def test_level2_dat_at_most_one_day_ahead():
    assert roundtrip(car(dat="20260116")).valid  # today + 1
    report = roundtrip(car(dat="20260117"))
    assert codes(report) == ["L2_DAT_FUTURE"]


def test_level2_version_and_quirks():
    assert codes(roundtrip(car(ver="0350"), profile="none")) == ["L2_VER_UNKNOWN"]
    assert roundtrip(car(ver="0350"), profile="none", strictness="lenient").valid
    txn = car()
    txn.records[0]["1.011"] = "19.68"
    txn.records[2]["14.011"] = "WSQ"
    report = roundtrip(txn)
    assert report.valid and codes(report, "warning") == ["L2_NSR_19_68", "L2_LEGACY_CGA"]


def test_level2_binary_header_codes():
    data = (TRADITIONAL / "nist-reference" / "type-4-slaps.an2").read_bytes()
    txn = read(data)
    txn.records[2]["4.008"] = "9"  # GCA
    report = validate(txn, profile="none")
    assert codes(report) == ["L2_CODE_INVALID"]
    assert str(report.findings[0].location) == "record 3 (Type-4) field 4.008"


# -- level 3 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "tag, value, code",
    [
        ("2.018", None, "L3_MANDATORY_MISSING"),
        ("2.024", "Q", "L3_VALUE_NOT_IN_LIST"),
        ("2.020", "QQ", "L3_VALUE_NOT_IN_LIST"),  # POB code table T2_POB.txt
        ("2.022", ["19800229"] * 6, "L3_OCCURRENCES"),
        ("2.022", "19800231", "L3_DATE_INVALID"),
        ("2.029", "75", "L3_SIZE"),
        ("2.018", "SAMPLE, PAT 3", "L3_CHARSET"),
        ("2.006", "DET. SAMPLE", "L3_FORMAT"),
        ("2.047", [("20260110", "A", "B")], "L3_ITEMS"),
        ("2.059", "N", "L3_FIELD_NOT_ALLOWED"),
        ("2.777", "X", "L3_FIELD_UNKNOWN"),
    ],
)
def test_level3_field_rules(tag, value, code):
    txn = car()
    if value is None:
        del txn.records[1][tag]
    else:
        txn.records[1][tag] = value
    report = roundtrip(txn, profile="ebts-9.1")
    assert codes(report) == [code]
    assert report.findings[0].hint.startswith(f"Type-2 record 2 field {tag}")
    assert "rule:" in report.findings[0].hint
    assert roundtrip(txn, profile="none").valid


def test_level3_tot_and_record_counts():
    assert codes(roundtrip(car(tot="XYZ"))) == ["L3_TOT_UNKNOWN"]
    txn = car()
    txn.records.pop()
    assert codes(roundtrip(txn)) == ["L3_RECORD_COUNT"]
    txn = car(tot="ERRT")
    assert "L3_RECORD_NOT_ALLOWED" in codes(roundtrip(txn))


def test_ebts10_additions():
    assert "L3_VALUE_NOT_IN_LIST" in codes(roundtrip(car(ver="0500"), profile="ebts-9.1"))
    assert roundtrip(car(ver="0500"), profile="ebts-10").valid
    sre = Transaction.new(
        tot="SRE", dai="WV0340000", ori="WVIAFIS0Z", tcn="GW20260110000009", dat="20260110"
    )
    t2 = sre.add_record(2, idc=0)
    t2["2.018"] = "SAMPLE, PAT Q"
    t2["2.059"] = "I"
    t2["2.073"] = "WV0340000"
    t2["2.060"] = ["DHS MATCH", "SECOND LINE"]
    t2["2.2037"] = "DHS123457"
    assert roundtrip(sre, profile="ebts-10").findings == []
    assert set(codes(roundtrip(sre, profile="ebts-9.1"))) == {
        "L3_VALUE_NOT_IN_LIST",  # VER 0500
        "L3_FIELD_NOT_ALLOWED",  # 2.060 on SRE
        "L3_FIELD_UNKNOWN",  # 2.2037
    }


def test_verification_parser():
    rules = load("EBTS9.1_ENUS.txt")
    assert len(rules.tots) == 71
    car_counts = {c.key: (c.types, c.low, c.high) for c in rules.tots["CAR"].counts}
    assert car_counts["414"] == ((4, 14), 1, 14) and car_counts["713"] == ((7, 13), 0, 2)
    assert [c.key for c in rules.tots["ERRT"].counts] == ["1", "2"]
    msg = next(r for r in rules.rules_for("2.060") if r.applies("ERRT"))
    assert msg.is_mandatory("ERRT") and msg.occ == (1, 11) and msg.size == (1, 300)
    cri = next(r for r in rules.rules_for("2.073") if r.applies("ERRT"))
    assert not cri.is_mandatory("ERRT") and cri.is_mandatory("CAR")  # "ERRT O" override
    amp = rules.rules_for("14.018")[0]
    assert [i.name for i in amp.items] == ["AMP_FGP", "AMP_AMPCD"]  # the 14.014..2 typo
    assert "WV" in next(r for r in rules.rules_for("2.020") if r.applies("CAR")).values
    small = parse(
        'TRANSACTIONS "t"\n X "x"\n 1:1 2:0-3;\n'
        'FIELDS\n[O, X M]\n 2.005 T2_RET A 1 1 mmap="Y:y|N:n";\n'
    )
    assert small.tots["X"].counts[1].high == 3
    assert small.rules["2.005"][0].is_mandatory("X") and small.rules["2.005"][0].values == {
        "Y",
        "N",
    }


# -- ERRT ------------------------------------------------------------------------------------------
def _findings(n):
    return [Finding(ERROR, "L3_X", _loc(i), f"m{i}", f"h{i}") for i in range(n)]


def _loc(i):
    return Location(2, 2, f"2.{i + 100:03d}")


def test_errt_shape():
    sub = read(write(car()))
    sub.records[1]["2.009"] = "CASE 42"  # OCA: echoed
    sub.records[1]["2.006"] = "DET. BAD"  # ATN with a period: not echoed
    errt = build_errt(sub, _findings(3), tcn="GW20260110000001", dat="20260110")
    assert errt.tot == "ERRT" and errt.tcr == sub.tcn and errt.tcn == "GW20260110000001"
    assert errt.dai == sub.ori and errt.ori == sub.dai
    assert errt.encoding == "traditional" and [r.type for r in errt.records] == [1, 2]
    t2 = read(write(errt)).records[1]
    assert [s[0] for s in t2["2.060"].subfields] == ["h0", "h1", "h2"]
    assert t2.value("2.009") == "CASE 42" and "2.006" not in t2
    assert validate_bytes(write(errt), today=TODAY).findings == []


def test_errt_summarises_beyond_eleven_and_cuts_at_300():
    lines = errt_messages(_findings(15))
    assert len(lines) == 11 and lines[-1] == "... and 5 more findings"
    long = [Finding(ERROR, "X", _loc(0), "m", "x" * 500 + "\u00e9")]
    (line,) = errt_messages(long)
    assert len(line) == 300 and line.isascii()
    assert errt_messages([])  # always at least one MSG


def test_errt_xml_keeps_the_encoding():
    sub = read(write(car()))
    sub.encoding = "xml"
    errt = build_errt(sub, _findings(2), tcn="GW20260110000003", dat="20260110")
    data = write(errt)
    assert data.lstrip().startswith(b"<")
    assert validate_bytes(data, today=TODAY).findings == []


def test_header_of_broken_data():
    data = write(car())
    head = header_of(data[:-10])
    assert head.tcn == "WV20260110000001" and head.ori == "WV0340000"
    assert header_of(b"junk") is None


# -- command line ------------------------------------------------------------------------------
def test_cli_exit_codes_and_json(tmp_path, capsys):
    good = tmp_path / "good.eft"
    good.write_bytes(write(car()))
    bad = tmp_path / "bad.eft"
    txn = car()
    txn.records[1]["2.024"] = "Q"
    bad.write_bytes(write(txn))
    broken = tmp_path / "broken.eft"
    broken.write_bytes(write(car())[:-5])
    today = ["--today", "20260115"]
    assert main(["validate", str(good), *today]) == 0
    assert main(["validate", str(good), str(bad), *today]) == 1
    assert main(["validate", str(good), str(bad), str(broken), *today]) == 2
    assert main(["validate", str(tmp_path / "missing.eft")]) == 2
    capsys.readouterr()
    assert main(["validate", "--json", str(bad), *today]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out == {
        "file": str(bad),
        "valid": False,
        "findings": [
            {
                "severity": "error",
                "code": "L3_VALUE_NOT_IN_LIST",
                "location": "record 2 (Type-2) field 2.024",
                "message": "SEX is not an allowed value",
            }
        ],
    }
    assert main(["validate", "--json", str(good), str(bad), *today]) == 1
    assert [o["valid"] for o in json.loads(capsys.readouterr().out)] == [True, False]
    assert main(["validate", "--strict", "--profile", "none", str(good), *today]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith("valid (0 errors, 0 warnings)")


# -- the corpus ------------------------------------------------------------------------------------
# Outcome per traditional corpus file: (errors at levels 1-2, warnings at levels 1-2, errors of the
# EBTS 9.1 profile).  MANIFEST.txt: all files parse; nbis "validN.M" and NIST reference files are
# positive cases for ANSI/NIST syntax (levels 1-2 clean, apart from the defects noted), with
# placeholder TOTs (AMN/CAR/FAUF) and no EBTS Type-2 content, so the EBTS profile rejects them; the
# two OpenEBTS CAR files are EBTS 9.1 conformant; rec01_rec02_rec16 (VER "0", TOT ABC, placeholder
# Type-16 text) is the negative case.  Level-2 defects found beyond MANIFEST, each checked by hand:
#   libbiomeval-type9-13: 2.034 written twice and a 13.005 tag inside the Type-9 (codec quirks);
#   node-nist-sre_with_face: VER 0500 Type-10 without the mandatory 10.004 SRC;
#   valid1.11: Type-15 15.013 PLP = 13 (a finger code, not a palm code 20-38).
# L2_FIELD_NEWER_THAN_VER / L2_RECORD_NEWER_THAN_VER (warnings): fields and record types newer
# than the 1.002 VER declared (field dictionary; NBIS chkan2k reports each as "requires ANSI/NIST
# version"). valid1.11/valid1.16 and libbiomeval-type9-13: quality items out of their ranges
# (LQM/SQM/FQM score 120 or 110 > 100, UQS vendor id "OFFF" with a letter O, Type-15 PLP 13, LQM
# vendor id of 3 characters) now checked as chkan2k does (QUAL 0-100/254/255, VIDX 4 hex digits).
CORPUS = {
    "misc/libbiomeval-type9-13.an2k": (
        ["L1_DUPLICATE_FIELD", "L1_TAG_TYPE_MISMATCH", "L2_SIZE"],
        ["L2_FIELD_NEWER_THAN_VER"],
        ["L3_CHARSET", "L3_MANDATORY_MISSING", "L3_SIZE", "L3_VALUE_NOT_IN_LIST"],
    ),
    "misc/libbiomeval-type9-efs.an2k": (
        [],
        [],
        # No L3_MANDATORY_MISSING: its Type-9 records are EFS (9.004 FMT "U"), which need no
        # 9.005-9.012 (1-2011 8.9.4).
        ["L3_SIZE", "L3_TOT_UNKNOWN", "L3_VALUE_NOT_IN_LIST"],
    ),
    "misc/libbiomeval-type9.an2k": (
        [],
        [],
        [
            "L3_CHARSET",
            "L3_MANDATORY_MISSING",
            "L3_RECORD_COUNT",
            "L3_SIZE",
            "L3_VALUE_NOT_IN_LIST",
        ],
    ),
    "misc/mdedonno-type-1.an2": (
        [],
        ["L1_UNPADDED_IDC"],
        ["L3_CHARSET", "L3_SIZE", "L3_TOT_UNKNOWN", "L3_VALUE_NOT_IN_LIST"],
    ),
    "misc/node-nist-latent_with_minutiae.lffs": (
        [],
        ["L1_SHORT_TAG", "L1_UNPADDED_IDC", "L2_FIELD_NEWER_THAN_VER", "L2_RECORD_NEWER_THAN_VER"],
        [
            "L3_FIELD_NOT_ALLOWED",
            "L3_FIELD_UNKNOWN",
            "L3_MANDATORY_MISSING",
            "L3_SIZE",
            "L3_VALUE_NOT_IN_LIST",
        ],
    ),
    "misc/node-nist-sre_with_face.tdf": (
        ["L2_FIELD_MISSING"],
        [],
        [
            "L3_FIELD_NOT_ALLOWED",
            "L3_FIELD_UNKNOWN",
            "L3_MANDATORY_MISSING",
            "L3_SIZE",
            "L3_VALUE_NOT_IN_LIST",
        ],
    ),
    "misc/openebts-NISTFile.ebts": ([], ["L1_SHORT_TAG"], []),
    "misc/openebts-NISTFile2.ebts": ([], [], []),
    "nbis-an2kconvert/face_jpb_DOM_GMT_DCS.an2": (
        [],
        [],
        ["L3_CHARSET", "L3_SIZE", "L3_TOT_UNKNOWN"],
    ),
    "nbis-an2kconvert/sign_raw.an2": (
        [],
        [],
        ["L3_RECORD_COUNT", "L3_RECORD_NOT_ALLOWED", "L3_SIZE"],
    ),
    "nbis-an2kconvert/sign_vec.an2": (
        [],
        [],
        ["L3_RECORD_COUNT", "L3_RECORD_NOT_ALLOWED", "L3_SIZE"],
    ),
    "nbis-an2kconvert/type_5_wvu.an2": (
        [],
        [],
        ["L3_RECORD_COUNT", "L3_RECORD_NOT_ALLOWED", "L3_VALUE_NOT_IN_LIST"],
    ),
    "nbis-an2kconvert/valid1.1.an2": ([], ["L1_SHORT_TAG"], ["L3_VALUE_NOT_IN_LIST"]),
    "nbis-an2kconvert/valid1.10.an2": (
        [],
        ["L1_SHORT_TAG", "L2_RECORD_NEWER_THAN_VER"],
        ["L3_RECORD_COUNT", "L3_RECORD_NOT_ALLOWED", "L3_VALUE_NOT_IN_LIST"],
    ),
    "nbis-an2kconvert/valid1.11.an2": (
        ["L2_CHARSET", "L2_CODE_INVALID"],
        ["L1_SHORT_TAG", "L2_FIELD_NEWER_THAN_VER", "L2_LEGACY_CGA", "L2_RECORD_NEWER_THAN_VER"],
        [
            "L3_FIELD_NOT_ALLOWED",
            "L3_MANDATORY_MISSING",
            "L3_RECORD_NOT_ALLOWED",
            "L3_SIZE",
            "L3_VALUE_NOT_IN_LIST",
        ],
    ),
    "nbis-an2kconvert/valid1.13.an2": (
        [],
        ["L1_SHORT_TAG", "L2_RECORD_NEWER_THAN_VER"],
        ["L3_RECORD_COUNT", "L3_RECORD_NOT_ALLOWED", "L3_VALUE_NOT_IN_LIST"],
    ),
    "nbis-an2kconvert/valid1.14.an2": (
        [],
        ["L1_IDC_REFERENCE", "L1_SHORT_TAG", "L2_FIELD_NEWER_THAN_VER"],
        # No L3_CHARSET: its 9.012 ridge counts "1,0" are the standard "neighbour,count" items
        # (1-2011 8.9.12) that the verification file"s "N" forgot.
        [
            "L3_MANDATORY_MISSING",
            "L3_RECORD_COUNT",
            "L3_RECORD_NOT_ALLOWED",
            "L3_VALUE_NOT_IN_LIST",
        ],
    ),
    "nbis-an2kconvert/valid1.15.an2": (
        [],
        ["L1_SHORT_TAG", "L2_FIELD_NEWER_THAN_VER"],
        [
            "L3_FIELD_NOT_ALLOWED",
            "L3_MANDATORY_MISSING",
            "L3_RECORD_COUNT",
            "L3_RECORD_NOT_ALLOWED",
            "L3_SIZE",
            "L3_VALUE_NOT_IN_LIST",
        ],
    ),
    "nbis-an2kconvert/valid1.16.an2": (
        ["L2_CODE_INVALID"],
        ["L2_FIELD_NEWER_THAN_VER", "L2_RECORD_NEWER_THAN_VER"],
        [
            "L3_FIELD_NOT_ALLOWED",
            "L3_MANDATORY_MISSING",
            "L3_RECORD_NOT_ALLOWED",
            "L3_SIZE",
            "L3_VALUE_NOT_IN_LIST",
        ],
    ),
    "nbis-an2kconvert/valid1.2.an2": (
        [],
        ["L1_SHORT_TAG"],
        ["L3_RECORD_NOT_ALLOWED", "L3_VALUE_NOT_IN_LIST"],
    ),
    "nbis-an2kconvert/valid1.3.an2": (
        [],
        ["L1_SHORT_TAG", "L2_FIELD_NEWER_THAN_VER"],
        ["L3_RECORD_COUNT", "L3_VALUE_NOT_IN_LIST"],
    ),
    "nbis-an2kconvert/valid1.4.an2": (
        [],
        ["L1_SHORT_TAG", "L2_RECORD_NEWER_THAN_VER"],
        ["L3_RECORD_COUNT", "L3_VALUE_NOT_IN_LIST"],
    ),
    "nbis-an2kconvert/valid1.5.an2": (
        [],
        ["L1_SHORT_TAG", "L2_RECORD_NEWER_THAN_VER"],
        ["L3_CHARSET", "L3_RECORD_COUNT", "L3_SIZE", "L3_VALUE_NOT_IN_LIST"],
    ),
    "nbis-an2kconvert/valid1.6.an2": (
        [],
        ["L1_SHORT_TAG", "L2_RECORD_NEWER_THAN_VER"],
        ["L3_RECORD_COUNT", "L3_SIZE", "L3_VALUE_NOT_IN_LIST"],
    ),
    "nbis-an2kconvert/valid1.7.an2": (
        [],
        ["L1_SHORT_TAG", "L2_RECORD_NEWER_THAN_VER"],
        ["L3_CHARSET", "L3_VALUE_NOT_IN_LIST"],
    ),
    "nbis-an2kconvert/valid1.8.an2": (
        [],
        ["L1_SHORT_TAG", "L2_RECORD_NEWER_THAN_VER"],
        ["L3_VALUE_NOT_IN_LIST"],
    ),
    "nbis-an2kconvert/valid1.9.an2": (
        [],
        ["L1_SHORT_TAG", "L2_FIELD_NEWER_THAN_VER", "L2_RECORD_NEWER_THAN_VER"],
        ["L3_CHARSET", "L3_RECORD_NOT_ALLOWED", "L3_SIZE", "L3_VALUE_NOT_IN_LIST"],
    ),
    "nist-reference/rec01_rec02_rec16.nst.an2": (
        ["L2_DATE_INVALID", "L2_ITEMS", "L2_OCCURRENCES", "L2_VER_UNKNOWN"],
        ["L2_NSR_19_68"],
        ["L3_CHARSET", "L3_SIZE", "L3_TOT_UNKNOWN"],
    ),
    "nist-reference/type-10-14-17-piv-index-iris.an2": (
        [],
        [],
        ["L3_FIELD_NOT_ALLOWED", "L3_MANDATORY_MISSING", "L3_RECORD_NOT_ALLOWED"],
    ),
    "nist-reference/type-10-branded-tattoo-mark.an2": (
        [],
        [],
        [
            "L3_CHARSET",
            "L3_FIELD_NOT_ALLOWED",
            "L3_MANDATORY_MISSING",
            "L3_RECORD_COUNT",
            "L3_VALUE_NOT_IN_LIST",
        ],
    ),
    "nist-reference/type-10-sap10.an2": (
        [],
        [],
        ["L3_FIELD_NOT_ALLOWED", "L3_MANDATORY_MISSING", "L3_RECORD_COUNT", "L3_SIZE"],
    ),
    "nist-reference/type-13-tip-eji-wsq.an2": (
        [],
        [],
        ["L3_FIELD_NOT_ALLOWED", "L3_MANDATORY_MISSING", "L3_RECORD_COUNT"],
    ),
    "nist-reference/type-14-amp-nqm-utf8.an2": (
        [],
        [],
        ["L3_CHARSET", "L3_FIELD_NOT_ALLOWED", "L3_MANDATORY_MISSING", "L3_SIZE"],
    ),
    "nist-reference/type-14-tip-eji-wsq.an2": (
        [],
        [],
        ["L3_FIELD_NOT_ALLOWED", "L3_MANDATORY_MISSING", "L3_VALUE_NOT_IN_LIST"],
    ),
    "nist-reference/type-14-tpcard-nqm.an2": (
        [],
        [],
        [
            "L3_FIELD_NOT_ALLOWED",
            "L3_MANDATORY_MISSING",
        ],
    ),
    "nist-reference/type-17-iris.an2": (
        [],
        [],
        [
            "L3_FIELD_NOT_ALLOWED",
            "L3_MANDATORY_MISSING",
            "L3_RECORD_COUNT",
            "L3_RECORD_NOT_ALLOWED",
        ],
    ),
    "nist-reference/type-3.an2": (
        [],
        [],
        [
            "L3_FIELD_NOT_ALLOWED",
            "L3_MANDATORY_MISSING",
            "L3_RECORD_COUNT",
            "L3_RECORD_NOT_ALLOWED",
            "L3_SIZE",
        ],
    ),
    "nist-reference/type-4-14-slaps.an2": (
        [],
        [],
        ["L3_FIELD_NOT_ALLOWED", "L3_MANDATORY_MISSING"],
    ),
    "nist-reference/type-4-slaps.an2": ([], [], ["L3_FIELD_NOT_ALLOWED", "L3_MANDATORY_MISSING"]),
    "nist-reference/type-4-tpcard.an2": ([], [], ["L3_FIELD_NOT_ALLOWED", "L3_MANDATORY_MISSING"]),
    "nist-reference/type-5.an2": (
        [],
        [],
        [
            "L3_FIELD_NOT_ALLOWED",
            "L3_MANDATORY_MISSING",
            "L3_RECORD_COUNT",
            "L3_RECORD_NOT_ALLOWED",
            "L3_SIZE",
        ],
    ),
    "nist-reference/type-6.an2": (
        [],
        [],
        [
            "L3_FIELD_NOT_ALLOWED",
            "L3_MANDATORY_MISSING",
            "L3_RECORD_COUNT",
            "L3_RECORD_NOT_ALLOWED",
            "L3_SIZE",
        ],
    ),
    "nist-reference/type-7-latent.an2": (
        [],
        [],
        ["L3_FIELD_NOT_ALLOWED", "L3_MANDATORY_MISSING", "L3_RECORD_COUNT", "L3_SIZE"],
    ),
    "nist-reference/type-8-sig-fax.an2": (
        [],
        [],
        [
            "L3_FIELD_NOT_ALLOWED",
            "L3_MANDATORY_MISSING",
            "L3_RECORD_COUNT",
            "L3_RECORD_NOT_ALLOWED",
            "L3_VALUE_NOT_IN_LIST",
        ],
    ),
    "nist-reference/type-8-sig-raw.an2": (
        [],
        [],
        [
            "L3_FIELD_NOT_ALLOWED",
            "L3_MANDATORY_MISSING",
            "L3_RECORD_COUNT",
            "L3_RECORD_NOT_ALLOWED",
            "L3_VALUE_NOT_IN_LIST",
        ],
    ),
    "nist-reference/type-8-sig.an2": (
        [],
        [],
        [
            "L3_FIELD_NOT_ALLOWED",
            "L3_MANDATORY_MISSING",
            "L3_RECORD_COUNT",
            "L3_RECORD_NOT_ALLOWED",
        ],
    ),
    "nist-reference/type-9-10-14.an2": (
        [],
        [],
        [
            "L3_CHARSET",
            "L3_FIELD_NOT_ALLOWED",
            "L3_MANDATORY_MISSING",
            "L3_RECORD_NOT_ALLOWED",
            "L3_SIZE",
        ],
    ),
    "nist-reference/type-9-14-std.an2": (
        [],
        [],
        [
            "L3_CHARSET",
            "L3_FIELD_NOT_ALLOWED",
            "L3_MANDATORY_MISSING",
            "L3_RECORD_NOT_ALLOWED",
            "L3_SIZE",
        ],
    ),
    "nist-reference/type-9-4-iafis.an2": (
        [],
        [],
        ["L3_FIELD_NOT_ALLOWED", "L3_MANDATORY_MISSING", "L3_RECORD_NOT_ALLOWED"],
    ),
}


def test_corpus_table_covers_every_file():
    names = {f"{p.parent.name}/{p.name}" for p in corpus_files()}
    expected = set(CORPUS) if FULL_CORPUS else set(CORPUS) - OUTSIDE_SUBSET
    assert names == expected and len(names) == TRADITIONAL_COUNT


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_corpus_outcome(path):
    l12_errors, l12_warnings, l3_errors = CORPUS[f"{path.parent.name}/{path.name}"]
    data = path.read_bytes()
    base = validate_bytes(data, profile="none")
    assert sorted({f.code for f in base.errors}) == l12_errors
    assert sorted({f.code for f in base.warnings}) == l12_warnings
    profiled = validate_bytes(data, profile="ebts-9.1")
    assert sorted({f.code for f in profiled.errors if f.code.startswith("L3_")}) == l3_errors
    assert profiled.valid == (not l12_errors and not l3_errors)
