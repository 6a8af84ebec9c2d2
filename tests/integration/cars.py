"""Submissions for the integration tests: the NIST tenprint card re-addressed as a CAR.

The images are NIST's reference tenprint card (public domain); Type-1 and Type-2 are rewritten
with invented, synthetic subject data (no real person).
"""

from __future__ import annotations

from gateway.ansinist import Record, Transaction, read, write
from tests.conftest import TRADITIONAL

CARD = TRADITIONAL / "nist-reference" / "type-14-tpcard-nqm.an2"

SYNTHETIC_TYPE2 = {
    "2.005": "Y",  # RET: retain
    "2.018": "TESTPERSON, SYNTHETIC A",
    "2.020": "NY",
    "2.022": "19800229",
    "2.024": "M",
    "2.025": "W",
    "2.027": "510",
    "2.029": "170",
    "2.031": "BRO",
    "2.032": "BLK",
    "2.045": "20261120",
    "2.047": [("20261120", "ROBBERY")],
    "2.073": "NY0303000",
}


def make_car(
    tcn: str,
    *,
    ori: str = "NY0303000",
    tot: str = "CAR",
    dat: str = "20261124",
    type2: dict | None = None,
    fingers: int = 10,
) -> bytes:
    card = read(CARD.read_bytes())
    txn = Transaction.new(
        tot=tot,
        dai="WVIAFIS0Z",
        ori=ori,
        tcn=tcn,
        dat=dat,
        ver="0400",
        pry="4",
        nsr="19.69",
        ntr="19.69",
    )
    t2 = txn.add_record(2)
    for tag, value in (type2 if type2 is not None else SYNTHETIC_TYPE2).items():
        t2[tag] = value
    kept = 0
    for record in card.records:
        if record.type != 14 or kept >= fingers:
            continue
        copy = Record(14)
        for tag, field in record.fields.items():
            # NQM (14.022) is legacy-only in EBTS 9.1 and left out here.
            if not tag.endswith((".001", ".002", ".022")):
                copy[tag] = field.raw if field.binary else [list(s) for s in field.subfields]
        copy.idc = len(txn.records) - 1
        copy["14.004"] = ori
        txn.records.append(copy)
        kept += 1
    return write(txn)
