"""The traditional codec over the real corpus, golden listings, the builder and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway import ansinist
from gateway.ansinist import FormatError, Transaction, read, write
from gateway.commands.dump import to_dict
from tests.conftest import TRADITIONAL, TRADITIONAL_COUNT, corpus_files

CORPUS = corpus_files()
GOLDEN = Path(__file__).parent / "golden"
GOLDEN_FILES = {
    "nist-reference/type-4-tpcard.an2": "Type-4 tenprint card",
    "nist-reference/type-14-tpcard-nqm.an2": "Type-14 with NQM",
    "misc/libbiomeval-type9-efs.an2k": "Type-9 EFS",
    "misc/node-nist-sre_with_face.tdf": "Type-10 SRE",
    "nist-reference/type-8-sig.an2": "Type-8 signature",
    "nbis-an2kconvert/valid1.13.an2": "VER 0200",
}


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def test_corpus_is_complete():
    assert len(CORPUS) == TRADITIONAL_COUNT  # 49, or the committed subset's 44


@pytest.mark.parametrize("path", CORPUS, ids=_id)
def test_corpus_reads_and_reencodes_byte_exactly(path):
    data = path.read_bytes()
    txn = read(data)
    assert txn.records[0].type == 1
    assert len(txn.records) == 1 + len(txn.cnt())
    assert write(txn) == data


@pytest.mark.parametrize("path", CORPUS, ids=_id)
def test_canonical_reencoding_keeps_every_field_value(path):
    txn = read(path.read_bytes())
    canonical = write(txn, canonical=True)
    again = read(canonical)
    assert [r.type for r in again.records] == [r.type for r in txn.records]
    for before, after in zip(txn.records, again.records, strict=True):
        strip = {k: v for k, v in before.fields.items() if not k.endswith(".001")}
        assert strip == {k: v for k, v in after.fields.items() if not k.endswith(".001")}
    assert not any(w.code == "SHORT_TAG" for w in again.warnings)
    # canonical output is a fixed point
    assert write(read(canonical)) == canonical


@pytest.mark.parametrize("name", sorted(GOLDEN_FILES), ids=lambda n: GOLDEN_FILES[n])
def test_golden_listing(name):
    txn = read((TRADITIONAL / name).read_bytes())
    golden = json.loads((GOLDEN / (Path(name).name + ".json")).read_text())
    assert to_dict(txn) == golden


def test_tenprint_card_headers_match_the_inventory():
    # MANIFEST.txt inventory of type-4-tpcard.an2 (independent of this codec): rolled prints
    # (IMP 3) of fingers 1-10, plain slaps (IMP 2) 11-14 with their sizes.
    txn = read((TRADITIONAL / "nist-reference/type-4-tpcard.an2").read_bytes())
    t4 = txn.records_of_type(4)
    assert len(t4) == 14
    heads = {r.value("4.004"): (r.value("4.003"), r.value("4.006"), r.value("4.007")) for r in t4}
    assert sorted(heads, key=int) == [str(i) for i in range(1, 15)]
    assert heads["11"] == ("2", "392", "1000")
    assert heads["12"] == ("2", "412", "1000")
    assert heads["13"] == ("2", "1572", "1000")
    assert heads["14"] == ("2", "1608", "1000")
    assert heads["1"] == ("3", "804", "752")
    assert heads["10"] == ("3", "796", "748")
    assert [r.idc for r in t4] == list(range(1, 15))
    assert all(r.value("4.008") == "1" for r in t4)
    assert all(bytes(r.data[:2]) == b"\xff\xa0" for r in t4)  # WSQ SOI


def test_raw_type4_and_type9_values():
    txn = read((TRADITIONAL / "nist-reference/type-9-4-iafis.an2").read_bytes())
    t4 = txn.records_of_type(4)[0]
    assert (t4.value("4.006"), t4.value("4.007"), t4.value("4.008")) == ("800", "768", "0")
    assert len(t4.data) == 800 * 768
    assert txn.records_of_type(9)[0].value("9.004") == "U"  # FBI/IAFIS user-defined block


def test_two_digit_tags_and_unpadded_idc_are_warnings():
    txn = read((TRADITIONAL / "misc/node-nist-latent_with_minutiae.lffs").read_bytes())
    codes = {w.code for w in txn.warnings}
    assert {"SHORT_TAG", "UNPADDED_IDC"} <= codes
    assert txn.records[0]["1.04"].value == "LFFS"
    assert txn.records[0]["1.004"] is txn.records[0]["1.04"]


def test_version_and_resolution_quirks_are_warnings():
    txn = read((TRADITIONAL / "nist-reference/rec01_rec02_rec16.nst.an2").read_bytes())
    codes = [w.code for w in txn.warnings]
    assert "UNKNOWN_VERSION" in codes
    assert codes.count("NSR_19_68") == 2
    legacy = read((TRADITIONAL / "nbis-an2kconvert/valid1.11.an2").read_bytes())
    assert any(w.code == "LEGACY_CGA" for w in legacy.warnings)


def test_duplicate_and_mistyped_fields_are_kept_and_reported():
    path = TRADITIONAL / "misc/libbiomeval-type9-13.an2k"
    txn = read(path.read_bytes())
    codes = {w.code for w in txn.warnings}
    assert {"DUPLICATE_FIELD", "TAG_TYPE_MISMATCH"} <= codes
    t2 = txn.records[1]
    assert t2["2.034"].value == "00"
    assert [k for k in t2.fields if k.startswith("2.034")][1].startswith("2.034#")


def test_utf8_text_round_trips():
    txn = read((TRADITIONAL / "nist-reference/type-14-amp-nqm-utf8.an2").read_bytes())
    texts = [f.text for r in txn.records for f in r.fields.values() if not f.binary]
    assert any(any(ord(c) > 127 for c in t) for t in texts)


def test_image_data_is_not_copied():
    data = (TRADITIONAL / "nist-reference/type-14-tpcard-nqm.an2").read_bytes()
    txn = read(data)
    image = txn.records[2].data
    assert isinstance(image, memoryview)
    assert image.obj is data


# -- builder ---------------------------------------------------------------------------
def _built() -> Transaction:
    txn = Transaction.new(
        tot="SRE", dai="NY0303000", ori="WVIAFIS0Z", tcn="GW-000001", dat="20261125", ver="0400"
    )
    t2 = txn.add_record(2)
    t2["2.018"] = "DOE, JOHN"
    t2["2.059"] = "N"
    t2["2.060"] = ["FIRST LINE", "SECOND LINE"]
    t4 = txn.add_record(4)
    t4["4.003"] = "1"
    t4["4.004"] = ["2"]
    t4["4.005"] = "0"
    t4["4.006"] = "3"
    t4["4.007"] = "2"
    t4["4.008"] = "0"
    t4["4.009"] = bytes(range(6))
    t14 = txn.add_record(14)
    t14["14.011"] = "NONE"
    t14["14.999"] = b"\x1c\x1d\x1e\x1f"  # separators inside image data are fine
    return txn


def test_builder_writes_canonical_len_and_cnt():
    data = write(_built())
    assert data.startswith(b"1.001:")
    txn = read(data)
    assert [r.type for r in txn.records] == [1, 2, 4, 14]
    assert txn.records[0]["1.003"].subfields == (("1", "3"), ("2", "00"), ("4", "01"), ("14", "02"))
    assert txn.records[1]["2.060"].subfields == (("FIRST LINE",), ("SECOND LINE",))
    t4 = txn.records[2]
    assert (t4.idc, t4.value("4.004"), bytes(t4.data)) == (1, "2", bytes(range(6)))
    assert bytes(txn.records[3].data) == b"\x1c\x1d\x1e\x1f"
    assert txn.warnings == []
    for record in txn.records:
        if record.type != 4:
            assert int(record.value(f"{record.type}.001")) == len(
                ansinist.traditional.encode_record(record)
            )


def test_len_digit_boundary():
    # A record whose LEN crosses from 2 to 3 digits must still count itself right.
    for pad in range(70, 110):
        txn = Transaction.new(tot="X", dai="A", ori="B", tcn="C" * 10, dat="20260101")
        txn.add_record(2)["2.018"] = "Y" * pad
        data = write(txn)
        again = read(data)
        assert again.records[1].value("2.018") == "Y" * pad
        assert write(again) == data


def test_modified_transaction_rebuilds_cnt():
    data = (TRADITIONAL / "nbis-an2kconvert/valid1.7.an2").read_bytes()
    txn = read(data)
    del txn.records[2]
    txn.records[1]["2.018"] = "ROE, RICHARD"
    out = read(write(txn))
    assert [r.type for r in out.records] == [1, 2]
    assert out.records[0]["1.003"].subfields == (("1", "1"), ("2", "00"))
    assert out.records[1].value("2.018") == "ROE, RICHARD"


# -- bad input -------------------------------------------------------------------------
TPCARD = TRADITIONAL / "nist-reference/type-4-tpcard.an2"


def _error(data: bytes, **kw) -> FormatError:
    with pytest.raises(FormatError) as info:
        read(data, **kw)
    return info.value


def test_empty_and_garbage():
    assert _error(b"").code == "EMPTY"
    assert _error(b"hello world").code == "RECORD_START"
    assert _error(b"1.001:abc\x1d").code == "LEN_SYNTAX"


def test_truncated_file_names_the_record():
    data = TPCARD.read_bytes()
    err = _error(data[:-100])
    assert err.code == "LEN_PAST_END"
    assert err.location.record == 16 and err.location.record_type == 4
    assert "Type-4" in err.hint


def test_len_past_end_of_type1():
    err = _error(b"1.001:999\x1d1.002:0400\x1c")
    assert err.code == "LEN_PAST_END" and err.location.tag == "1.001"


def test_record_without_fs():
    data = bytearray(read_bytes := (TRADITIONAL / "misc/mdedonno-type-1.an2").read_bytes())
    data[len(read_bytes) - 1] = ord("X")
    assert _error(bytes(data)).code == "NO_FS"


def test_cnt_listing_more_records_than_data():
    txn = _built()
    data = write(txn)
    first = read(data).records[0]
    end = int(first.value("1.001"))
    err = _error(data[:end])
    assert err.code == "CNT_RECORDS"


def test_bytes_after_last_record():
    data = write(_built())
    assert _error(data + b"garbage").code == "CNT_RECORDS"
    txn = read(data + b"\r\n")
    assert [w.code for w in txn.warnings] == ["TRAILING_BYTES"]


def test_limits():
    data = TPCARD.read_bytes()
    assert _error(data, max_size=1000).code == "TOO_LARGE"
    assert _error(data, max_records=3).code == "TOO_MANY_RECORDS"


def test_cnt_type_mismatch():
    data = write(_built()).replace(b"\x1e2\x1f00", b"\x1e9\x1f00", 1)
    # LEN of Type-1 unchanged (same length), CNT now says Type-9 where a Type-2 stands.
    assert _error(data).code == "RECORD_TYPE_MISMATCH"


def test_dump_cli_exit_codes(tmp_path, capsys):
    from gateway.cli import main

    good = tmp_path / "good.eft"
    good.write_bytes(write(_built()))
    assert main(["dump", str(good)]) == 0
    assert "TOT SRE" in capsys.readouterr().out
    assert main(["dump", "--json", str(good)]) == 0
    assert json.loads(capsys.readouterr().out)["records"][1]["fields"]["2.018"] == [["DOE, JOHN"]]
    bad = tmp_path / "bad.eft"
    bad.write_bytes(write(_built())[:-10])
    assert main(["dump", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "record 4 (Type-14)" in err and "LEN_PAST_END" in err
    assert main(["dump", str(tmp_path / "missing.eft")]) == 2


def test_convert_cli_canonicalises(tmp_path):
    from gateway.cli import main

    out = tmp_path / "out.an2"
    src = TRADITIONAL / "nbis-an2kconvert/valid1.1.an2"
    assert main(["convert", str(src), str(out), "--to", "traditional"]) == 0
    assert out.read_bytes() == src.read_bytes()  # unmodified: byte-exact
    canon = tmp_path / "canon.an2"
    assert main(["convert", str(src), str(canon), "--to", "traditional", "--canonical"]) == 0
    data = canon.read_bytes()
    assert data.startswith(b"1.001:") and b"\x1d1.02:" not in data
    assert read(data).warnings == []


def test_cnt_with_non_ascii_digits_is_a_format_error():
    txn = _built()
    data = write(txn)
    bad = data.replace(b"\x1e2\x1f00", "\x1e2\x1f\u00b2\u00b2".encode()[:6], 1)
    err = _error(bad)
    assert isinstance(err, FormatError)
