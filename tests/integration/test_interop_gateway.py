"""The FBI/DHS interoperability routing end to end: DHS leg, ICE notification, IAR linking.

Synthetic subjects only: fingers rendered by gateway.synth, invented histories and immigration
records.  One finger (right index, FGP 2) per subject keeps the test fast.
"""

from __future__ import annotations

import io
import json
import smtplib

import pytest
import pytest_twisted
from PIL import Image
from twisted.internet import reactor, task, threads

from gateway import synth
from gateway.ansinist import Record, read, write
from gateway.config import parse_config
from gateway.matcher import Template, extract
from gateway.matcher import synthetic as distractors
from gateway.matcher.gallery import Gallery
from gateway.routing.interop.iaq import build_iar, iaq_control
from gateway.routing.interop.subjects import (
    SubjectStore,
    synthetic_dhs_subject,
    synthetic_fbi_subject,
)
from gateway.service import Gateway
from tests.integration.cars import make_car
from tests.integration.helpers import Sink, started

POSITION = 2
LEVEL1, CHARGED_ONLY, UNKNOWN = 3, 5, 8  # synthetic identities


def _finger(identity: int, impression: int) -> bytes:
    import wsq  # noqa: F401 - registers the WSQ codec with Pillow

    buffer = io.BytesIO()
    Image.fromarray(synth.finger(identity, POSITION, impression)).save(buffer, "WSQ")
    return buffer.getvalue()


def _car(identity: int, tcn: str, *, ori: str = "NY0303000", dat: str = "20261124") -> bytes:
    txn = read(make_car(tcn, ori=ori, dat=dat, fingers=1))
    t14 = txn.records[2]
    t14["14.013"] = str(POSITION)
    t14["14.006"], t14["14.007"] = "416", "416"
    t14["14.008"], t14["14.009"], t14["14.010"] = "1", "500", "500"
    t14["14.999"] = _finger(identity, 1)
    assert isinstance(t14, Record)
    return write(txn)


@pytest.fixture(scope="module")
def galleries(tmp_path_factory):
    root = tmp_path_factory.mktemp("galleries")
    enrolled = {i: extract(synth.finger(i, POSITION, 0)) for i in (LEVEL1, CHARGED_ONLY)}
    probes = {i: extract(synth.finger(i, POSITION, 1)) for i in (LEVEL1, CHARGED_ONLY, UNKNOWN)}
    paths = {}
    for kind, sid in (("fbi", lambda i: f"{i:07d}DM"), ("dhs", lambda i: f"IDENT{i:07d}")):
        gallery = Gallery()
        distractors.populate(gallery, 40, seed=5)
        for identity, template in enrolled.items():
            gallery.add(sid(identity), POSITION, Template.from_bytes(template.to_bytes()))
        genuine = min(gallery.search({POSITION: probes[i]}, top=1)[0].score for i in enrolled)
        impostor = gallery.search({POSITION: probes[UNKNOWN]}, top=1)[0].score
        assert genuine > impostor  # the matcher separates these synthetic prints
        gallery.threshold = (genuine + impostor) / 2
        path = root / kind
        gallery.save(path)
        store = SubjectStore(path / "subjects.jsonl")
        if kind == "fbi":
            store.put(synthetic_fbi_subject(sid(LEVEL1), 1, profile="homicide_convicted"))
            store.put(synthetic_fbi_subject(sid(CHARGED_ONLY), 2, profile="robbery_charged_only"))
        else:
            for identity in enrolled:
                store.put(synthetic_dhs_subject(sid(identity), identity))
        paths[kind] = str(path)
    return paths


async def _start(tmp_path, sink, galleries, tls="off") -> Gateway:
    config = parse_config(
        {
            "data_dir": str(tmp_path / "data"),
            "listen": {
                "smtp": "tcp:0:interface=127.0.0.1",
                "admin": "tcp:0:interface=127.0.0.1",
                "soap": "tcp:0:interface=127.0.0.1",
            },
            "outbound": {
                "smtp_relay": f"127.0.0.1:{sink.port.getHost().port}",
                "retry_initial": 0.2,
            },
            "workers": 1,
            "gallery": {"fbi": galleries["fbi"], "dhs": galleries["dhs"]},
            "matcher": {"search_positions": [POSITION]},
            "agency": [
                {"ori": "NY0303000", "response_email": "bureau@ny.example"},
                {"ori": "TX0000000", "response_email": "dps@tx.example"},
            ],
            "jurisdiction": [
                {"ori_prefix": "NY", "dhs_activated": "2009-10-27"},
                {"ori_prefix": "TX", "dhs_activated": False},
            ],
            "lesc": {"email": "lesc@ice.example"},
            # identities and refusals: tests/integration/test_tls_gateway.py
            "tls": {"mode": tls},
        }
    )
    return await started(config, galleries)


def _send(port: int, attachments=(), text: str | None = None, context=None):
    from email.message import EmailMessage

    def blocking():
        message = EmailMessage()
        message["From"], message["To"] = "livescan@ny.example", "ident@gateway.example"
        message["Subject"] = "submission"
        if text is not None:
            message.set_content(text)
        else:
            message.set_content("EBTS attached")
            for data in attachments:
                message.add_attachment(data, maintype="application", subtype="octet-stream")
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            if context is not None:
                client.starttls(context=context)
            client.send_message(message)

    return threads.deferToThread(blocking)


def _identity(gateway, name: str):
    """A client TLS context with an identity the gateway issued (``NY0303000``, ``LESC``)."""
    import ssl

    root = gateway.config.data_dir / "pki"
    context = ssl.create_default_context(cafile=str(root / "ca.crt"))
    context.load_cert_chain(root / "agencies" / f"{name}.crt", root / "agencies" / f"{name}.key")
    return context


def _by_recipient(sink: Sink, address: str) -> list:
    return [m for m in sink.messages if m["to"] == address]


def _body(message) -> str:
    return message["message"].get_body(preferencelist=("plain",)).get_content()


async def _settle(gateway, seconds=1.0):
    await task.deferLater(reactor, seconds, lambda: None)


@pytest_twisted.ensureDeferred
async def test_dhs_match_gives_esi_and_an_iaq_with_level_1(tmp_path, sink, galleries):
    gateway = await _start(tmp_path, sink, galleries)
    try:
        await _send(gateway.port("smtp"), [_car(LEVEL1, "NY-INTEROP-000001")])
        await sink.wait_for(2)
        sre = read(_by_recipient(sink, "bureau@ny.example")[0]["attachments"][0])
        t2 = sre.records[1]
        assert sre.tot == "SRE" and t2.value("2.059") == "I"
        assert t2.value("2.014") == f"{LEVEL1:07d}DM"
        assert t2.value("2.2037") == f"IDENT{LEVEL1:07d}"
        lines = [s[0] for s in t2["2.060"].subfields]
        assert any(line.startswith("DHS IDENT MATCH") for line in lines)
        iaq = _body(_by_recipient(sink, "lesc@ice.example")[0])
        assert iaq.startswith("IAQ.")
        assert "PRIORITY LEVEL 1" in iaq and f"FBI/{LEVEL1:07d}DM." in iaq
        for word in ("DETAIN", "ARREST HIM", "HOLD FOR"):
            assert word not in iaq.upper()
        msg = gateway.journal.messages(tcn="NY-INTEROP-000001")[0]
        states = [
            (t["to_state"], t["destination"], t["outcome"])
            for t in gateway.journal.transitions(msg.id)
        ]
        assert ("SEARCHED", "DHS", "hit") in states and ("SEARCHED", "FBI", "hit") in states
        log = (tmp_path / "data" / "routing.log").read_text()
        assert "TESTPERSON" not in log  # no personal fields in the routing log
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_not_activated_or_before_activation_means_no_dhs_search(tmp_path, sink, galleries):
    gateway = await _start(tmp_path, sink, galleries)
    try:
        await _send(
            gateway.port("smtp"),
            [
                _car(LEVEL1, "TX-INTEROP-000002", ori="TX0000000"),
                _car(LEVEL1, "NY-INTEROP-000003", dat="20090101"),
            ],
        )
        await sink.wait_for(2)
        await _settle(gateway)
        assert _by_recipient(sink, "lesc@ice.example") == []
        for tcn, address in (
            ("TX-INTEROP-000002", "dps@tx.example"),
            ("NY-INTEROP-000003", "bureau@ny.example"),
        ):
            sre = read(_by_recipient(sink, address)[0]["attachments"][0])
            assert sre.tcr == tcn and sre.records[1].value("2.059") == "I"  # FBI still searched
            assert "2.2037" not in sre.records[1]
            msg = gateway.journal.messages(tcn=tcn)[0]
            outcomes = [
                t["outcome"]
                for t in gateway.journal.transitions(msg.id)
                if t["destination"] == "DHS"
            ]
            assert len(outcomes) == 1 and outcomes[0].startswith("not sent to DHS")
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_charged_only_history_gives_no_level(tmp_path, sink, galleries):
    gateway = await _start(tmp_path, sink, galleries)
    try:
        await _send(gateway.port("smtp"), [_car(CHARGED_ONLY, "NY-INTEROP-000004")])
        await sink.wait_for(2)
        iaq = _body(_by_recipient(sink, "lesc@ice.example")[0])
        assert "NO LEVEL: NOT A CRIMINAL ALIEN (NO CONVICTIONS)" in iaq
        assert "PRIORITY LEVEL" not in iaq
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_iar_is_linked_and_forwarded(tmp_path, sink, galleries):
    gateway = await _start(tmp_path, sink, galleries)
    try:
        await _send(gateway.port("smtp"), [_car(LEVEL1, "NY-INTEROP-000005")])
        await sink.wait_for(2)
        booking = gateway.journal.messages(tcn="NY-INTEROP-000005")[0]
        iaq = _body(_by_recipient(sink, "lesc@ice.example")[0])
        control = iaq_control(booking.id, gateway.pipeline.control_key)
        assert f"*{control}" in iaq and control != iaq_control(booking.id)  # keyed
        iar = build_iar(
            iaq, text="SUBJECT RECORD LOCATED. INFORMATIONAL RESPONSE.", lesc_ori="VTICE0900"
        )
        await _send(gateway.port("smtp"), text=iar)
        await sink.wait_for(3)
        forwarded = [m for m in _by_recipient(sink, "bureau@ny.example") if not m["attachments"]]
        assert forwarded and "SUBJECT RECORD LOCATED" in _body(forwarded[0])
        outcomes = [t["outcome"] for t in gateway.journal.transitions(booking.id)]
        assert any(o and o.startswith("IAR received") for o in outcomes)
        iar_msg = next(m for m in gateway.journal.messages() if m.response_tot == "IAR")
        assert iar_msg.state == "RESPONDED"
        detail = json.dumps([t["outcome"] for t in gateway.journal.transitions(iar_msg.id)])
        assert booking.id in detail
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_iaq_and_iar_over_tls_with_identities(tmp_path, sink, galleries):
    """The happy path with TLS on: the bureau's CAR, the IAQ to the LESC, the LESC's IAR back."""
    gateway = await _start(tmp_path, sink, galleries, tls="on")
    try:
        port = gateway.port("smtp")
        await _send(
            port, [_car(LEVEL1, "NY-INTEROP-000031")], context=_identity(gateway, "NY0303000")
        )
        await sink.wait_for(2)
        iaq = _body(_by_recipient(sink, "lesc@ice.example")[0])
        iar = build_iar(iaq, text="SUBJECT RECORD LOCATED.", lesc_ori="VTICE0900")
        await _send(port, text=iar, context=_identity(gateway, "LESC"))
        await sink.wait_for(3)
        forwarded = [m for m in _by_recipient(sink, "bureau@ny.example") if not m["attachments"]]
        assert forwarded and "SUBJECT RECORD LOCATED" in _body(forwarded[0])
    finally:
        await gateway.stopService()
