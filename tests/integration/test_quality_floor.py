"""The quality floor on real sockets (issue 14): an all-zero tenprint sent by SMTP to a gateway
with a gallery gets an ERRT naming every finger position, and nothing is enrolled."""

from __future__ import annotations

import pytest_twisted

from gateway import synth
from gateway.ansinist import read, write
from gateway.matcher import synthetic
from gateway.matcher.gallery import Gallery
from gateway.store.enrolments import read_enrolments
from gateway.validation import validate
from tests.integration.helpers import gateway_config, send_smtp, started


def _all_zero_car(tcn: str) -> bytes:
    """A synthetic CAR whose ten rolled images are uncompressed all-zero pixels."""
    txn = synth.car_transaction(41, impression=1, ori="NY0303000", tcn=tcn)
    for record in txn.records:
        if record.type == 14:
            w, h = int(record.value("14.006")), int(record.value("14.007"))
            record["14.011"] = "NONE"
            record["14.999"] = bytes(w * h)
    return write(txn)


@pytest_twisted.ensureDeferred
async def test_an_all_zero_tenprint_gets_an_errt_and_enrols_nothing(tmp_path, sink):
    gallery = Gallery()
    synthetic.populate(gallery, 5, seed=3)
    gallery.save(tmp_path / "fbi")
    config = gateway_config(tmp_path, sink.port.getHost().port)
    gateway = await started(config, galleries={"fbi": str(tmp_path / "fbi")})
    try:
        await send_smtp(gateway.port("smtp"), [_all_zero_car("NY-QUAL-0000001")])
        await sink.wait_for(1)
        errt = read(sink.messages[0]["attachments"][0])
        assert errt.tot == "ERRT" and errt.tcr == "NY-QUAL-0000001"
        assert validate(errt, profile="ebts-10").valid
        lines = [" ".join(s) for s in errt.records[1].get("2.060").subfields]
        for position in range(1, 11):
            assert any(f"FGP {position}: FINGERPRINT UNUSABLE, QUALITY 0" in x for x in lines)
        assert any("0 USABLE FINGERPRINTS OF 10, 6 REQUIRED" in x for x in lines)
        journal = tmp_path / "data" / "journal.sqlite3"
        assert list(read_enrolments(journal, "fbi")) == []
    finally:
        await gateway.stopService()
