"""Generate the validation fixtures in ``fixtures/validation/`` (reproducible; commit the output).

    .venv/bin/python tools/make_fixtures.py            # (re)write every fixture
    .venv/bin/python tools/make_fixtures.py --check    # exit 1 if a committed fixture differs
    .venv/bin/python tools/make_fixtures.py --finger   # render the finger image anew, then all

Each fixture is ``NAME.eft`` (or ``NAME.xml``) with ``NAME.expect.json``::

    {"valid": bool, "profile": "ebts-10", "today": "20260115",
     "findings": [{"code": ..., "location": ...}, ...], "response_tot": "ERRT" | null}

Subjects are synthetic (invented names, dates and numbers); every finger is one small real WSQ image
(``fixtures/samples/finger-100x100.wsq``, a crop of a synthetic print).
The valid base is built with the codec; field-level defects are made by editing it with the codec;
defects the codec's writer would repair (LEN, FS, CNT, duplicate fields, 2-digit tags) are made by
re-encoding single records by hand (``_patch``).  The expected findings are those the validator
reports, reviewed when a fixture is added; ``--check`` guards against silent drift.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.ansinist import Transaction, read, write  # noqa: E402
from gateway.routing import rules  # noqa: E402
from gateway.routing.answers.errt import build_errt, header_of  # noqa: E402
from gateway.validation import validate_bytes  # noqa: E402

OUT = ROOT / "fixtures" / "validation"
TODAY = "20260115"
DAT = "20260110"
PROFILE = "ebts-10"
FS, GS = b"\x1c", b"\x1d"
# every finger is the same real 100 x 100 WSQ image (a centre crop of a synthetic finger, about
# 1.7 KB), read from a committed file rather than rendered here: rendering goes through float
# transcendentals whose last bit may differ between machines, and the fixtures must be
# reproducible byte for byte (``--finger`` writes the file anew).  A placeholder of a few bytes
# was enough for validation, but a gateway with a gallery searches the fingers of a CAR, and an
# image that does not decode made every valid CAR an ERRT (NO_FINGERS).
FINGER = ROOT / "fixtures" / "samples" / "finger-100x100.wsq"
FINGER_IDENTITY = 990_001  # synthetic; far from the identities the demos and benchmarks use


def make_finger() -> bytes:
    """The fixtures' finger image: WSQ of the centre 100 x 100 of a synthetic rolled finger."""
    import numpy as np

    from gateway import synth
    from gateway.synth.transactions import wsq_bytes

    pixels = synth.finger(FINGER_IDENTITY, 1, 0)
    h, w = pixels.shape
    crop = pixels[(h - 100) // 2 : (h + 100) // 2, (w - 100) // 2 : (w + 100) // 2]
    return wsq_bytes(np.ascontiguousarray(crop))


# -- the valid base ------------------------------------------------------------------------------
def car(*, tot: str = "CAR", fingers: int = 1) -> Transaction:
    """A small EBTS 9.1 tenprint submission: Type-1, Type-2, ``fingers`` Type-14 records."""
    txn = Transaction.new(
        tot=tot,
        dai="WVIAFIS0Z",
        ori="WV0340000",
        tcn="WV20260110000001",
        dat=DAT,
        ver="0400",
        pry="4",
        nsr="19.69",
        ntr="19.69",
    )
    t2 = txn.add_record(2, idc=0)
    t2["2.005"] = "N"  # RET
    t2["2.018"] = "SAMPLE, PAT Q"  # NAM: invented
    t2["2.020"] = "WV"  # POB
    t2["2.022"] = "19800229"  # DOB
    t2["2.024"] = "X"  # SEX
    t2["2.025"] = "U"  # RAC
    t2["2.027"] = "510"  # HGT
    t2["2.029"] = "150"  # WGT
    t2["2.031"] = "BRO"  # EYE
    t2["2.032"] = "BLK"  # HAI
    t2["2.045"] = DAT  # DOA
    t2["2.047"] = [(DAT, "SYNTHETIC TEST OFFENSE")]  # ASL: DOO, AOL
    t2["2.073"] = "WV0340000"  # CRI
    for idc in range(1, fingers + 1):
        add_finger(txn, idc, fgp=str(idc))
    return txn


def add_finger(txn: Transaction, idc: int, *, fgp: str = "1"):
    r = txn.add_record(14, idc=idc)
    r["14.003"] = "1"  # IMP live-scan rolled
    r["14.004"] = "WV0340000"  # SRC
    r["14.005"] = DAT  # TCD/FCD
    r["14.006"] = "100"  # HLL
    r["14.007"] = "100"  # VLL
    r["14.008"] = "1"  # SLC pixels per inch
    r["14.009"] = "500"
    r["14.010"] = "500"
    r["14.011"] = "WSQ20"
    r["14.012"] = "8"
    r["14.013"] = fgp
    r["14.999"] = FINGER.read_bytes()
    return r


def iris_record(txn: Transaction, idc: int):
    r = txn.add_record(17, idc=idc)
    for tag, value in {
        "17.003": "1",
        "17.004": "WV0340000",
        "17.005": DAT,
        "17.006": "64",
        "17.007": "48",
        "17.008": "0",
        "17.009": "1",
        "17.010": "1",
        "17.011": "PNG",
        "17.012": "8",
        "17.013": "GRAY",
    }.items():
        r[tag] = value
    r["17.999"] = b"\x89PNG\r\n\x1a\n"
    return r


# -- byte-level edits ----------------------------------------------------------------------------
def _encode(fields: list[tuple[bytes, bytes]], rtype: int) -> bytes:
    """A tagged record from (tag, value) pairs after LEN, with LEN computed."""
    body = b"".join(GS + tag + b":" + value for tag, value in fields) + FS
    prefix = f"{rtype}.001:".encode()
    length = len(prefix) + len(body) + 1
    while len(prefix) + len(str(length)) + len(body) != length:
        length = len(prefix) + len(str(length)) + len(body)
    return prefix + str(length).encode() + body


def _patch(data: bytes, recno: int, edit) -> bytes:
    """Re-encode record ``recno`` (1-based) after ``edit(list of (tag, value))``."""
    txn = read(data)
    record = txn.records[recno - 1]
    start = record.offset
    end = start + int(record.value(f"{record.type}.001"))
    raw = data[start : end - 1]
    # the image field (x.999) comes last and is binary: it may hold GS and ':' bytes
    image_tag = f"{record.type}.999".encode()
    cut = raw.find(GS + image_tag + b":")
    text, image = (raw, None) if cut < 0 else (raw[:cut], raw[cut + len(image_tag) + 2 :])
    pairs = [tuple(part.split(b":", 1)) for part in text.split(GS)][1:]  # drop LEN
    if image is not None:
        pairs.append((image_tag, image))
    pairs = edit(pairs)
    return data[:start] + _encode(pairs, record.type) + data[end:]


def _set(tag: bytes, value: bytes):
    def edit(pairs):
        return [(t, value if t == tag else v) for t, v in pairs]

    return edit


# -- the fixtures --------------------------------------------------------------------------------
def fixtures() -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    base = write(car())
    out["car-valid.eft"] = base
    out["car-valid-xml.xml"] = write(as_xml(car()), "xml")
    txn = as_xml(car())
    del txn.records[1]["2.018"]
    out["l3-missing-mandatory-xml.xml"] = write(txn, "xml")

    # Level 4: XML Schema (the EBTS 10 schema requires 1.013 DOM, here taken out)
    valid_xml = out["car-valid-xml.xml"]
    start = valid_xml.index(b"<ansi-nist:TransactionDomain>")
    end = valid_xml.index(b"</ansi-nist:TransactionDomain>") + len(
        b"</ansi-nist:TransactionDomain>"
    )
    out["l4-schema-error.xml"] = valid_xml[:start] + valid_xml[end:]

    # Level 1: structure
    out["l1-bad-len.eft"] = _bad_len(base)
    out["l1-missing-fs.eft"] = _missing_fs(base)
    out["l1-cnt-count.eft"] = _patch(base, 1, _set(b"1.003", b"1\x1f3\x1e2\x1f00\x1e14\x1f01"))
    out["l1-idc-mismatch.eft"] = _patch(base, 3, _set(b"14.002", b"02"))
    txn = car()
    add_finger(txn, 1, fgp="2")
    out["l1-duplicate-idc.eft"] = write(txn)
    txn = car()
    txn.records[1], txn.records[2] = txn.records[2], txn.records[1]
    out["l1-record-order.eft"] = write(txn)
    out["l1-duplicate-field.eft"] = _patch(
        base, 2, lambda pairs: pairs[:3] + [(b"2.018", b"SAMPLE, ALEX")] + pairs[3:]
    )
    out["l1-short-tags.eft"] = _patch(
        base, 1, lambda pairs: [(t.replace(b".0", b".", 1), v) for t, v in pairs]
    )

    # Level 2: ANSI/NIST field syntax
    out["l2-bad-date.eft"] = _edit(lambda t: t.records[2].__setitem__("14.005", "20250230"))
    out["l2-future-dat.eft"] = _edit(lambda t: t.records[0].__setitem__("1.005", "20991231"))
    out["l2-bad-cga.eft"] = _edit(lambda t: t.records[2].__setitem__("14.011", "WSQ2"))
    out["l2-legacy-cga.eft"] = _edit(lambda t: t.records[2].__setitem__("14.011", "WSQ"))
    out["l2-bad-nsr.eft"] = _edit(lambda t: t.records[0].__setitem__("1.011", "19.7"))
    out["l2-nsr-1968.eft"] = _edit(lambda t: t.records[0].__setitem__("1.011", "19.68"))
    out["l2-bad-imp.eft"] = _edit(lambda t: t.records[2].__setitem__("14.003", "9"))
    out["l2-bad-fgp.eft"] = _edit(lambda t: t.records[2].__setitem__("14.013", "25"))
    out["l2-bad-slc.eft"] = _edit(lambda t: t.records[2].__setitem__("14.008", "5"))
    out["l2-bad-charset.eft"] = _edit(lambda t: t.records[2].__setitem__("14.006", "1O0"))
    out["l2-unknown-ver.eft"] = _edit(lambda t: t.records[0].__setitem__("1.002", "0350"))
    out["l2-missing-field.eft"] = _edit(lambda t: t.records[2].__delitem__("14.011"))

    # Level 3: EBTS profile
    out["l3-missing-mandatory.eft"] = _edit(lambda t: t.records[1].__delitem__("2.018"))
    out["l3-value-not-in-list.eft"] = _edit(lambda t: t.records[1].__setitem__("2.024", "Q"))
    out["l3-too-many-occurrences.eft"] = _edit(
        lambda t: t.records[1].__setitem__("2.022", ["19800229"] * 6)
    )
    out["l3-unknown-tot.eft"] = _edit(lambda t: t.records[0].__setitem__("1.004", "XYZ"))
    out["l3-unknown-field.eft"] = _edit(lambda t: t.records[1].__setitem__("2.550", "VENDOR"))
    out["l3-field-not-allowed.eft"] = _edit(lambda t: t.records[1].__setitem__("2.059", "N"))
    out["l3-bad-size.eft"] = _edit(lambda t: t.records[1].__setitem__("2.029", "1500"))
    out["l3-bad-dob.eft"] = _edit(lambda t: t.records[1].__setitem__("2.022", "19801340"))
    out["l3-bad-format.eft"] = _edit(lambda t: t.records[1].__setitem__("2.006", "DET. J Q DOE"))
    out["l3-bad-charset.eft"] = _edit(lambda t: t.records[1].__setitem__("2.018", "SAMPLE2, PAT"))
    txn = car()
    txn.records.pop()
    out["l3-record-count.eft"] = write(txn)
    txn = car()
    iris_record(txn, 2)
    out["l3-record-not-allowed.eft"] = write(txn)
    out["many-findings.eft"] = _edit(_many_defects)

    # A response of ours: the ERRT answering l3-missing-mandatory
    bad = read(out["l3-missing-mandatory.eft"])
    report = validate_bytes(out["l3-missing-mandatory.eft"], today=_today())
    errt = build_errt(bad, report.findings, tcn="GW20260110000001", dat=DAT)
    out["errt-response.eft"] = write(errt)
    bad = read(out["l3-missing-mandatory-xml.xml"])
    report = validate_bytes(out["l3-missing-mandatory-xml.xml"], today=_today())
    errt = build_errt(bad, report.findings, tcn="GW20260110000002", dat=DAT)
    out["errt-response-xml.xml"] = write(errt)
    return _unique_tcns(out)


BASE_TCN = b"WV20260110000001"


def _unique_tcns(out: dict[str, bytes]) -> dict[str, bytes]:
    """Give every fixture its own TCN (same length, so LEN fields stay right): the gateway
    answers a repeated (ORI, TCN) with the first answer, and replay matches answers by TCR."""
    unique = {}
    for n, name in enumerate(sorted(out), start=1):
        tcn = b"WV2026011" + f"{n:07d}".encode()
        assert len(tcn) == len(BASE_TCN)
        unique[name] = out[name].replace(BASE_TCN, tcn)
    return unique


def as_xml(txn: Transaction) -> Transaction:
    """The same submission in the EBTS 10 XML encoding (VER 0500, DOM NORAM / EBTS 10.0, which the
    EBTS 10 schema requires); CNT is set here because only the traditional writer computes it."""
    t1 = txn.records[0]
    t1["1.002"] = "0500"
    t1["1.013"] = [("NORAM", "EBTS 10.0")]
    t1["1.003"] = [("1", str(len(txn.records) - 1))] + [(str(t), f"{i:02d}") for t, i in txn.cnt()]
    txn.encoding = "xml"
    return txn


def _edit(change) -> bytes:
    txn = car()
    change(txn)
    return write(txn)


def _bad_len(base: bytes) -> bytes:
    """The last record's LEN claims 40 bytes more than the file holds."""
    txn = read(base)
    last = txn.records[-1]
    old = last.value("14.001")
    new = str(int(old) + 40)
    start = last.offset
    return base[:start] + base[start:].replace(
        f"14.001:{old}".encode(), f"14.001:{new}".encode(), 1
    )


def _missing_fs(base: bytes) -> bytes:
    """The Type-2 record ends with GS instead of FS (LEN unchanged)."""
    txn = read(base)
    t2 = txn.records[1]
    end = t2.offset + int(t2.value("2.001")) - 1
    assert base[end : end + 1] == FS
    return base[:end] + GS + base[end + 1 :]


def _many_defects(txn: Transaction) -> None:
    t2 = txn.records[1]
    for tag, value in {
        "2.020": "Q1",
        "2.024": "Q",
        "2.025": "Q",
        "2.027": "9999",
        "2.029": "ABC",
        "2.031": "RED",
        "2.032": "CYAN",
        "2.045": "20261340",
        "2.005": "MAYBE",
        "2.550": "VENDOR",
        "2.059": "N",
    }.items():
        t2[tag] = value
    txn.records[2]["14.011"] = "LZW"
    txn.records[2]["14.003"] = "9"


def _today() -> date:
    return date(int(TODAY[:4]), int(TODAY[4:6]), int(TODAY[6:]))


def expectation(data: bytes) -> dict:
    report = validate_bytes(data, profile=PROFILE, today=_today())
    if report.valid:
        # What the gateway answers a valid transaction (gateway.routing.rules).
        response = rules.gateway_answer(read(data).tot)
    else:
        try:
            read(data)
            response = "ERRT"
        except Exception:
            response = "ERRT" if header_of(data) is not None else None
    return {
        "valid": report.valid,
        "profile": PROFILE,
        "today": TODAY,
        "findings": [
            {"severity": f.severity, "code": f.code, "location": str(f.location)}
            for f in report.findings
        ],
        "response_tot": response,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument(
        "--finger", action="store_true", help=f"render {FINGER.name} anew first (then review it)"
    )
    args = parser.parse_args(argv)
    if args.finger:
        FINGER.write_bytes(make_finger())
    OUT.mkdir(parents=True, exist_ok=True)
    differ = []
    for name, data in fixtures().items():
        expect = json.dumps(expectation(data), indent=1) + "\n"
        stem = name.rsplit(".", 1)[0]
        for path, content in ((OUT / name, data), (OUT / f"{stem}.expect.json", expect.encode())):
            if args.check:
                if not path.exists() or path.read_bytes() != content:
                    differ.append(path.name)
            else:
                path.write_bytes(content)
    if args.check and differ:
        print("differ: " + ", ".join(differ))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
