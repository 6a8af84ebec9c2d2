"""FBI/DHS interoperability rules: offense levels, priority, subjects, IAQ/IAR, DHS routing.

DESIGN.md "The interoperability rules"; all people here are synthetic.
"""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ansinist import Transaction
from gateway.config import Jurisdiction
from gateway.routing.interop.iaq import (
    ENFORCEMENT_TERMS,
    GENERIC_IAQ_OFFENSE,
    build_iaq,
    build_iar,
    check_informative,
    dhs_messages,
    iaq_control,
    iar_refers_to,
    parse_iaq,
    parse_iar,
)
from gateway.routing.interop.offenses import (
    NO_CONVICTION_REASON,
    OffenseConfigError,
    OffenseTable,
    describe,
    ncic_offense_codes,
    offense_table_from_config,
    priority,
)
from gateway.routing.interop.subjects import (
    SYNTHETIC_PROFILES,
    ArrestEvent,
    DhsSubject,
    Disposition,
    FbiSubject,
    Offense,
    SubjectStore,
    synthetic_dhs_subject,
    synthetic_fbi_subject,
)
from gateway.routing.rules import dhs_search_required

# -- offense table --------------------------------------------------------------------------------

LEVEL_1_CATEGORIES = ("01", "09", "10", "11", "12")
LEVEL_2_CATEGORIES = ("20", "22", "23", "24", "25", "26", "63")


def test_default_levels_per_category():
    table = OffenseTable.default()
    for code in ncic_offense_codes():
        category = code[:2]
        if category in LEVEL_1_CATEGORIES:
            expected = 1
        elif category in LEVEL_2_CATEGORIES:
            expected = 2
        elif category == "35":
            continue  # below
        else:
            expected = 3
        assert table.level(code) == expected, (code, describe(code))
    # generic codes of the categories
    assert [table.level(c) for c in ("0199", "0999", "1099", "1199", "1299")] == [1] * 5
    assert [table.level(c) for c in ("2099", "2299", "2399", "2499", "2599", "2699")] == [2] * 6
    assert table.level("6300") == 2
    assert [table.level(c) for c in ("1399", "2199", "2799", "2999", "5299", "5404")] == [3] * 6
    # a state's code inside a known category takes the category's level
    assert table.level("0950") == 1 and table.level("2250") == 2 and table.level("1350") == 3


def test_drug_sell_smuggle_manufacture_is_level_1_possession_is_level_3():
    table = OffenseTable.default()
    drugs = {code: text for code, text in ncic_offense_codes().items() if code.startswith("35")}
    assert len(drugs) == 36
    for code, text in drugs.items():
        serious = any(w in text for w in ("SELL", "SMUGGL", "MFR", "DISTRIB", "PRODUCING"))
        assert table.level(code) == (1 if serious else 3), (code, text)
    assert table.level("3530") == 1  # COCAINE - SELL
    assert table.level("3532") == 3  # COCAINE - POSSESS
    assert table.level("3550") == 3  # NARCOTIC EQUIP - POSSESS
    assert table.level("3599") == 3  # DANGEROUS DRUGS (generic)


@pytest.mark.parametrize("code", ["", "123", "12345", "09A1", "0412", "0000", None, 911, " "])
def test_invalid_codes_have_no_level(code):
    assert OffenseTable.default().level(code) is None


def test_custom_table_from_config_rows():
    table = OffenseTable.from_config(
        [
            {"codes": "1300-1399", "level": 2, "note": "assault raised"},
            {"code": "3562", "level": 1},
            {"codes": "2300-2399", "level": 3},
        ]
    )
    assert table.level("1313") == 2
    assert table.level("3562") == 1 and table.level("3532") == 3  # only the one code changed
    assert table.level("2399") == 3
    assert table.level("0911") == 1  # defaults kept
    alone = OffenseTable.from_config([{"codes": "0900-0999", "level": 2}], defaults=False)
    assert alone.level("0911") == 2 and alone.level("1204") == 3  # not covered: level 3
    # narrower wins whatever the order; same width: the later row wins
    table = OffenseTable.from_config(
        [{"code": "1204", "level": 3}, {"codes": "1200-1299", "level": 2}], defaults=False
    )
    assert table.level("1204") == 3 and table.level("1201") == 2
    table = OffenseTable.from_config(
        [{"codes": "1200-1299", "level": 2}, {"codes": "1200-1299", "level": 3}], defaults=False
    )
    assert table.level("1201") == 3


@pytest.mark.parametrize(
    "rows, key, words",
    [
        ([{"codes": "2200-2299"}], "offense[1]", "level is required"),
        ([{"code": "3530", "level": 4}], "offense[1].level", "1, 2 or 3"),
        ([{"code": "3530", "level": True}], "offense[1].level", "1, 2 or 3"),
        ([{"code": 911, "level": 1}], "offense[1].code", "leading zeros"),
        ([{"code": "91", "level": 1}], "offense[1].code", "4-digit"),
        ([{"codes": "2299-2200", "level": 2}], "offense[1].codes", "backwards"),
        ([{"codes": "22xx", "level": 2}], "offense[1].codes", "range"),
        ([{"code": "0911", "codes": "0900-0999", "level": 1}], "offense[1]", "exactly one"),
        ([{"level": 1}], "offense[1]", "exactly one"),
        ([{"code": "0911", "level": 1, "lvl": 2}], "offense[1].lvl", "unknown setting"),
        ([{"code": "0911", "level": 1}, "2200-2299"], "offense[2]", "must be a table"),
        ({"code": "0911", "level": 1}, "offense", "array of tables"),
    ],
)
def test_bad_config_rows(rows, key, words):
    with pytest.raises(ValueError) as info:
        OffenseTable.from_config(rows)
    assert isinstance(info.value, OffenseConfigError)
    assert info.value.key == key
    assert str(info.value).startswith(key + ":") and words in str(info.value)


def test_offense_table_from_config_hook():
    assert offense_table_from_config({}).level("3562") == 3
    assert offense_table_from_config(None).level("0911") == 1
    raw = {"data_dir": "x", "offense": [{"code": "3562", "level": 2}]}
    assert offense_table_from_config(raw).level("3562") == 2
    with pytest.raises(ValueError, match=r"offense\[1\]\.level"):
        offense_table_from_config({"offense": [{"code": "3562", "level": 0}]})


# -- priority of a criminal history ---------------------------------------------------------------


def event(*charges, date="2010-05-01", ori="NY0303000"):
    """An arrest with (code, disposition) charges."""
    return ArrestEvent(
        date,
        ori,
        [Offense(code, describe(code) or "") for code, _ in charges],
        [Disposition(code, disp, "2010-09-01") for code, disp in charges],
    )


def test_charged_only_is_not_a_criminal_alien():
    history = [
        event(("1204", "DISMISSED")),
        event(("0911", "ACQUITTED")),
        event(("1101", "PENDING")),
        event(("3530", "DEFERRED")),
        event(("2204", "NOT GUILTY")),
    ]
    result = priority(history)
    assert result.level is None and not result.criminal_alien
    assert result.reason == NO_CONVICTION_REASON == "not a criminal alien: no convictions"
    assert result.convictions == ()
    assert result.label == "NO LEVEL: NOT A CRIMINAL ALIEN (NO CONVICTIONS)"
    assert priority([]).level is None and priority(None).reason == NO_CONVICTION_REASON


def test_most_severe_conviction_wins():
    history = [
        event(("5404", "CONVICTED")),
        event(("2204", "CONVICTED"), ("1204", "DISMISSED")),
        event(("3532", "GUILTY")),
    ]
    result = priority(history)
    assert result.level == 2
    assert [c.code for c in result.convictions] == ["2204", "5404", "3532"]
    history.append(event(("0911", "PLEADED GUILTY")))
    result = priority(history)
    assert result.level == 1 and result.convictions[0].code == "0911"
    assert result.reason == "level 1: most severe of 4 convictions"
    assert "0911" not in result.reason  # the routing log gets no criminal history


def test_possession_conviction_is_level_3_sale_is_level_1():
    assert priority([event(("3562", "CONVICTED"))]).level == 3
    assert priority([event(("3562", "DISMISSED")), event(("3560", "CONVICTED"))]).level == 1


def test_later_disposition_replaces_earlier_and_lesser_offense_counts():
    vacated = ArrestEvent(
        "2001-01-01",
        "NY0303000",
        [Offense("1204", "ROBBERY")],
        [
            Disposition("1204", "CONVICTED", "2001-06-01"),
            Disposition("1204", "VACATED", "2003-01-01"),
        ],
    )
    assert priority([vacated]).level is None
    # charged with robbery, convicted of a larceny (a disposition naming another code)
    lesser = ArrestEvent(
        "2001-01-01",
        "NY0303000",
        [Offense("1204", "ROBBERY")],
        [Disposition("1204", "DISMISSED", "2001-06-01"), Disposition("2399", "CONVICTED", None)],
    )
    result = priority([lesser])
    assert result.level == 2 and result.convictions[0].literal == "LARCENY"
    # a disposition without an offense code applies to every offense of the arrest
    offenses = [Offense("2204"), Offense("1313")]
    whole = ArrestEvent("2001-01-01", None, offenses, [Disposition(None, "CONVICTED")])
    assert priority([whole]).level == 2
    # dicts work as well as records; an unreadable code still is a conviction: level 3
    assert priority([event(("12X4", "CONVICTED")).to_dict()]).level == 3


def test_custom_table_changes_priority():
    table = OffenseTable.from_config([{"code": "3562", "level": 1}])
    assert priority([event(("3562", "CONVICTED"))], table=table).level == 1
    assert table.priority([event(("3562", "CONVICTED"))]).level == 1


# -- subjects -------------------------------------------------------------------------------------


def test_synthetic_profiles_cover_every_level():
    levels = set()
    for name, profile in SYNTHETIC_PROFILES.items():
        subject = synthetic_fbi_subject("900000001", 3, profile=name)
        assert subject.synthetic
        assert priority(subject.history).level == profile.level, name
        levels.add(profile.level)
    assert levels == {1, 2, 3, None}


def test_synthetic_subjects_are_deterministic_and_invented():
    a = synthetic_fbi_subject("900000001", 7)
    assert a == synthetic_fbi_subject("900000001", 7)
    assert a != synthetic_fbi_subject("900000001", 8) or a != synthetic_fbi_subject("900000002", 7)
    assert re.fullmatch(r"[A-Z]+,[A-Z]+ X", a.name)  # the X middle initial marks invented people
    d = synthetic_dhs_subject("IDENT-0001", 7)
    assert d == synthetic_dhs_subject("IDENT-0001", 7) and d.synthetic
    dt.date.fromisoformat(d.dob)
    with pytest.raises(ValueError, match="unknown synthetic profile"):
        synthetic_fbi_subject("1", profile="nope")


def test_subject_dict_round_trip_and_bad_dicts():
    fbi = synthetic_fbi_subject("900000001", 1, profile="burglary_convicted")
    assert FbiSubject.from_dict(json.loads(json.dumps(fbi.to_dict()))) == fbi
    dhs = synthetic_dhs_subject("IDENT-0002", 1)
    assert DhsSubject.from_dict(dhs.to_dict()) == dhs
    with pytest.raises(ValueError, match=r"fbi_subject\.ucn"):
        FbiSubject.from_dict({"name": "DOE,JOHN X"})
    with pytest.raises(ValueError, match=r"history\[0\]\.date"):
        FbiSubject.from_dict({"ucn": "1", "name": "DOE,J X", "history": [{"date": "2001/01/01"}]})
    with pytest.raises(ValueError, match="kind"):
        DhsSubject.from_dict(fbi.to_dict())


def test_subject_store_round_trip(tmp_path):
    path = tmp_path / "subjects.jsonl"
    store = SubjectStore(path)
    subjects = [synthetic_fbi_subject(f"90000000{i}", i) for i in range(3)]
    subjects.append(synthetic_dhs_subject("IDENT-0001", 0))
    for subject in subjects:
        store.put(subject)
    changed = synthetic_fbi_subject("900000000", 99, profile="homicide_convicted")
    store.put(changed)
    assert store.remove("900000001") and not store.remove("nope")
    again = SubjectStore(path)
    assert len(again) == 3 and "900000001" not in again
    assert again["900000000"] == changed and again.get("IDENT-0001") == subjects[3]
    lines_before = path.read_text().count("\n")
    again.compact()
    assert path.read_text().count("\n") == 3 < lines_before
    assert {s.id for s in SubjectStore(path)} == {"900000000", "900000002", "IDENT-0001"}
    # a torn last line is ignored; a bad line in the middle is an error naming the line
    with path.open("a") as f:
        f.write('{"kind": "fbi", "ucn": "9')
    assert len(SubjectStore(path)) == 3
    path.write_text(path.read_text() + "\nnot json\n")
    with pytest.raises(ValueError, match=r"subjects\.jsonl:\d+: not a JSON line"):
        SubjectStore(path)


# -- IAQ ------------------------------------------------------------------------------------------


def synthetic_car(**t2_fields) -> Transaction:
    txn = Transaction.new(
        tot="CAR", dai="WVIAFIS0Z", ori="NY0303000", tcn="NY0303000-20240102-0001", dat="20240102"
    )
    t2 = txn.add_record(2)
    fields = {
        "2.018": "DOE, JOHN Q",
        "2.022": "19800101",
        "2.024": "M",
        "2.020": "MM",
        "2.014": "123456AB1",
        "2.015": "NY12345678",
        "2.045": "20240102",
        "2.047": [("20240101", "2399 LARCENY"), ("20240101", "1204 ROBBERY - STREET-GUN")],
    }
    fields.update(t2_fields)
    for tag, value in fields.items():
        if value is not None:
            t2[tag] = value
    return txn


DHS = DhsSubject(
    "IDENT-0001", "LAWFUL PERMANENT RESIDENT", "DOE,JOHN X", "1980-01-01", arn="A012345678"
)
FBI = synthetic_fbi_subject("123456AB1", 1, profile="homicide_convicted")


def make_iaq(txn=None, *, fbi=FBI, dhs=DHS, result=None, **kwargs) -> str:
    result = result or priority(fbi.history if fbi else [])
    return build_iaq(
        txn or synthetic_car(),
        dhs_subject=dhs,
        fbi_subject=fbi,
        priority=result,
        sender_ori="NY0303000",
        lesc_ori="VTICE0900",
        message_id="msg-000042",
        **kwargs,
    )


def test_iaq_layout_and_values():
    text = make_iaq()
    lines = text.splitlines()
    control = iaq_control("msg-000042")
    assert lines[0] == f"IAQ.NY0303000.AX.*{control}.TXT"
    assert lines[1:] == [
        "PUR/C.",
        "ATN/IDENT IAFIS INTEROPERABILITY.",
        "NAM/DOE,JOHN Q.",
        "DOB/19800101.",
        "SEX/M.",
        "POB/MM.",
        "CUS/Y.",
        "OFF/1204.",  # the most serious charge of 2.047 ASL
        "ARN/012345678.",
        "FBI/123456AB1.",
        "SID/NY12345678.",
        "REM/AUTOMATED IDENT MATCH, DHS ID IDENT-0001, PRIORITY LEVEL 1 (CONVICTION NCIC 0911).",
    ]
    assert text.endswith("\n") and all(" " <= c <= "~" for c in text.replace("\n", ""))
    assert text == text.upper()
    assert re.fullmatch(r"G[A-Z2-7]{9}", control) and iaq_control("ABC123") == "ABC123"


def test_iaq_fallbacks_and_no_level():
    txn = synthetic_car(**{"2.047": None, "2.014": None, "2.015": None, "2.022": None})
    charged = synthetic_fbi_subject("900000009", 1, profile="robbery_charged_only")
    text = make_iaq(txn, fbi=charged, attention="Desk Sgt. Example", phone="802-555-0100")
    fields = parse_iaq(text)["fields"]
    assert fields["OFF"] == GENERIC_IAQ_OFFENSE == "0399"
    assert fields["DOB"] == "19800101"  # from the DHS subject
    assert fields["FBI"] == "900000009" and fields["SID"] == charged.sid
    assert fields["ATN"] == "DESK SGT EXAMPLE" and fields["PHN"] == "802-555-0100"
    assert fields["REM"].endswith("NO LEVEL: NOT A CRIMINAL ALIEN (NO CONVICTIONS)")
    assert "PHN" not in parse_iaq(make_iaq())["fields"]
    assert parse_iaq(make_iaq(booking_offense="0911"))["fields"]["OFF"] == "0911"
    with pytest.raises(ValueError, match="sender ORI"):
        build_iaq(
            txn, dhs_subject=DHS, fbi_subject=None, priority=priority([]), sender_ori="NY",
            message_id="1",
        )  # fmt: skip
    with pytest.raises(ValueError, match="DHS subject"):
        make_iaq(dhs=None)


@pytest.mark.parametrize("profile", sorted(SYNTHETIC_PROFILES))
def test_iaq_and_sre_lines_carry_no_enforcement_instruction(profile):
    fbi = synthetic_fbi_subject("900000001", 5, profile=profile)
    dhs = synthetic_dhs_subject("IDENT-0005", 5)
    result = priority(fbi.history)
    text = make_iaq(fbi=fbi, dhs=dhs, result=result)
    lines = dhs_messages(dhs, result)
    for chunk in (text, *lines):
        check_informative(chunk)
        for term in ENFORCEMENT_TERMS:
            assert term not in chunk.upper(), (term, chunk)
    assert re.search(r"\b(DETAIN|ARREST|HOLD|REMOV|DEPORT|APPREHEND|WARRANT)", text) is None
    with pytest.raises(ValueError, match="inform only"):
        check_informative("PLEASE PLACE A DETAINER")


def test_dhs_messages():
    lines = dhs_messages(DHS, priority(FBI.history))
    assert lines == [
        "DHS IDENT MATCH: SUBJECT ID IDENT-0001",
        "IMMIGRATION STATUS: LAWFUL PERMANENT RESIDENT",
        "ICE LESC NOTIFIED, PRIORITY LEVEL 1",
    ]
    none = dhs_messages(DhsSubject("X" * 400, None, "DOE,J X"), priority([]))
    assert none[1] == "IMMIGRATION STATUS: NOT RECORDED"
    assert none[2] == "ICE LESC NOTIFIED, NO LEVEL: NOT A CRIMINAL ALIEN (NO CONVICTIONS)"
    assert all(len(line) <= 300 and line.isprintable() for line in none)


# -- IAR ------------------------------------------------------------------------------------------


def test_iar_round_trip_links_to_the_iaq():
    iaq = make_iaq()
    iar_text = build_iar(iaq, text=["SUBJECT RECORD LOCATED.", "NAM/DOE,JOHN Q.", "ARN/012345678."])
    iar = parse_iar(iar_text)
    assert iar["type"] == "IAR" and iar["sender_ori"] == "VTICE0900"
    assert iar["destination"] == "NY0303000"
    assert iar["control"] == iaq_control("msg-000042")
    assert iar_refers_to(iar, "msg-000042") and not iar_refers_to(iar, "msg-000043")
    assert iar["fields"] == {"NAM": "DOE,JOHN Q", "ARN": "012345678"}
    assert iar["text"].startswith("SUBJECT RECORD LOCATED.")
    # Nlets output header form, CR LF line ends, bytes
    raw = (
        "IAR.VTICE0900\r\n08:00 01/02/2024 01239\r\n08:01 01/02/2024 01233 NY0303000\r\n"
        f"*{iaq_control('msg-000042')}\r\nTXT\r\nNAM/DOE,JOHN Q. SEE REMARKS\r\n"
    ).encode("ascii")
    iar = parse_iar(raw)
    assert iar["destination"] == "NY0303000" and iar_refers_to(iar, "msg-000042")
    assert iar["fields"]["NAM"] == "DOE,JOHN Q"
    assert parse_iar("IAR.VTICE0900.NY0303000.TXT\nNO RECORD\n")["control"] is None


@pytest.mark.parametrize(
    "garbage, words",
    [
        (None, "must be text"),
        (42, "must be text"),
        (b"\xff\xfe", "7-bit"),
        ("IAR.VTICE0900.TXT\n\x00", "outside 7-bit"),
        ("", "empty"),
        ("\n\n", "empty"),
        ("IAQ.NY0303000.AX.TXT\nPUR/C.", "not an IAR"),
        ("HELLO WORLD", "not an IAR"),
        ("IAR.", "sender ORI"),
        ("IAR.VTICE.NY0303000.TXT", "sender ORI"),
        ("IAR.VTICE0900.NY0303000", "no TXT"),
        ("IAR.VTICE0900.NY0303000.*TOO-LONG-CONTROL.TXT", "control field"),
        ("IAR.VTICE0900\nsomething else\nTXT\n", "not understood"),
        ("IAR.VTICE0900.A.B.TXT", "unexpected part"),
        ("IAR.VTICE0900.TXT" + "X" * 70000, "longer than"),
    ],
)
def test_iar_garbage_raises_value_error(garbage, words):
    with pytest.raises(ValueError, match=words):
        parse_iar(garbage)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)), st.sampled_from(["", "IAR."]))
def test_iar_parser_never_raises_anything_but_value_error(data, prefix):
    if isinstance(data, str):
        data = prefix + data
    try:
        result = parse_iar(data)
    except ValueError:
        return
    assert result["type"] == "IAR" and len(result["sender_ori"]) == 9


# -- DHS routing (existing rules.py) ---------------------------------------------------------

JURISDICTIONS = (
    Jurisdiction("NY", dt.date(2009, 10, 27)),
    Jurisdiction("NY03", dt.date(2011, 1, 1)),
    Jurisdiction("NY0303", None),  # carved out: not activated
    Jurisdiction("TX", dt.date(2008, 11, 12)),
)


@pytest.mark.parametrize(
    "tot, ori, dat, expected",
    [
        ("CAR", "NY0400000", "20100101", True),  # activated state
        ("CNA", "NY0400000", "20091027", True),  # on the activation date
        ("CAR", "NY0400000", "20091026", False),  # the day before
        ("CAR", "NY0310000", "20100101", False),  # longer prefix NY03: activated only in 2011
        ("CAR", "NY0310000", "20110101", True),
        ("CAR", "NY0303000", "20200101", False),  # longest prefix NY0303: not activated
        ("CAR", "CA0194200", "20200101", False),  # no jurisdiction
        ("CAR", None, "20200101", False),
        ("FANC", "NY0400000", "20200101", False),  # not a booking TOT
        ("SRE", "NY0400000", "20200101", False),
        (None, "NY0400000", "20200101", False),
        ("CAR", "NY0400000", "2020-01-01", False),  # DAT is not CCYYMMDD
        ("CAR", "NY0400000", "20200231", False),
        ("CAR", "NY0400000", None, False),
        ("CPDR", "TX2270000", "20081112", True),
        ("CPNU", "TX2270000", "20081111", False),
    ],
)
def test_dhs_search_required(tot, ori, dat, expected):
    required, reason = dhs_search_required(tot, ori, dat, JURISDICTIONS)
    assert required is expected, reason
    assert reason


def test_dhs_search_reasons_name_the_rule():
    assert "not a booking" in dhs_search_required("FANC", "NY0400000", "20200101", JURISDICTIONS)[1]
    assert "not activated" in dhs_search_required("CAR", "NY0303000", "20200101", JURISDICTIONS)[1]
    assert "before activation" in dhs_search_required("CAR", "NY04", "20000101", JURISDICTIONS)[1]
    assert "NY03" in dhs_search_required("CAR", "NY0310000", "20120101", JURISDICTIONS)[1]
    assert dhs_search_required("CAR", "NY0400000", "20200101", [])[0] is False
