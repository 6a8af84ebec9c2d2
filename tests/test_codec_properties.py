"""Property-based tests of the codec: built transactions round-trip, mutated files fail cleanly."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.ansinist import FormatError, Transaction, read, write
from tests.conftest import TRADITIONAL

# Printable text without the four separators (what tagged text fields may hold), plus UTF-8.
TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x1c\x1d\x1e\x1f"),
    max_size=30,
)
SUBFIELDS = st.lists(st.lists(TEXT, min_size=1, max_size=4), min_size=1, max_size=4)
TAGGED_TYPES = st.sampled_from([2, 9, 10, 13, 14, 15, 16, 17, 99])
BINARY_TYPES = st.sampled_from([3, 4, 5, 6, 7, 8])


@st.composite
def transactions(draw):
    txn = Transaction.new(
        tot=draw(st.sampled_from(["CAR", "CNA", "SRE", "ERRT", "TPIS"])),
        dai=draw(TEXT),
        ori=draw(TEXT),
        tcn=draw(TEXT),
        dat="20261125",
        ver=draw(st.sampled_from(["0400", "0500", "0502"])),
    )
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            rtype = draw(TAGGED_TYPES)
            record = txn.add_record(rtype)
            for num in draw(st.sets(st.integers(3, 998), max_size=6)):
                record[f"{rtype}.{num:03d}"] = draw(SUBFIELDS)
            if draw(st.booleans()):
                record[f"{rtype}.999"] = draw(st.binary(max_size=64))
        else:
            rtype = draw(BINARY_TYPES)
            record = txn.add_record(rtype)
            for num in range(3, 8):
                record[f"{rtype}.{num:03d}"] = str(draw(st.integers(0, 255)))
            if rtype != 8:
                record[f"{rtype}.004"] = [
                    str(p) for p in draw(st.lists(st.integers(0, 14), max_size=6))
                ]
                record[f"{rtype}.008"] = "1"
            data_tag = f"{rtype}.008" if rtype == 8 else f"{rtype}.009"
            record[data_tag] = draw(st.binary(max_size=64))
    return txn


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(transactions())
def test_built_transactions_round_trip(txn):
    data = write(txn)
    again = read(data)
    assert [(r.type, r.idc) for r in again.records] == [(r.type, r.idc) for r in txn.records]
    for built, parsed in zip(txn.records, again.records, strict=True):
        for tag, field in built.fields.items():
            if tag.endswith(".001") or (built.is_binary and tag.endswith(".004")):
                continue
            assert parsed[tag] == field, tag
    assert write(again) == data


@pytest.fixture(scope="module")
def originals() -> list[bytes]:
    """A tenprint card and a small file of the corpus, read when a test needs them."""
    return [
        (TRADITIONAL / "nbis-an2kconvert/valid1.14.an2").read_bytes(),
        (TRADITIONAL / "nbis-an2kconvert/valid1.15.an2").read_bytes(),
    ]


@st.composite
def mutated(draw, originals):
    data = bytearray(draw(st.sampled_from(originals)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "separator"]))
        pos = draw(st.integers(0, len(data) - 1)) if data else 0
        if kind == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 8))]
        elif kind == "separator" and data:
            data[pos] = draw(st.sampled_from([0x1C, 0x1D, 0x1E, 0x1F, 0x3A, 0x2E]))
    return bytes(data)


@settings(max_examples=400, deadline=None)
@given(example=st.data())
def test_mutated_files_raise_only_format_error(originals, example):
    data = example.draw(mutated(originals))
    try:
        txn = read(data)
    except FormatError as exc:
        assert exc.code and exc.hint
        return
    write(txn)  # whatever reads must write back
    for record in txn.records:
        for field in record.fields.values():
            field.subfields  # noqa: B018 - lazy decoding must not fail either
