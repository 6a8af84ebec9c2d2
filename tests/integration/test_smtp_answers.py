"""SMTP over real sockets: NOOP, VRFY and HELP with smtplib; the headers of answer mails."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

import pytest_twisted
from twisted.internet import threads

from gateway import ansinist
from gateway.transports.smtp import answer_names, submission_message_id
from tests.integration.cars import make_car
from tests.integration.helpers import gateway_config, started


def _send(port: int, data: bytes, message_id: str | None, filename: str = "sub.eft"):
    def blocking():
        message = EmailMessage()
        message["From"] = "livescan@ny.example"
        message["To"] = "ident@gateway.example"
        message["Subject"] = "EBTS submission"
        if message_id:
            message["Message-ID"] = message_id
        message.set_content("EBTS file attached")
        message.add_attachment(
            data, maintype="application", subtype="octet-stream", filename=filename
        )
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            return client.send_message(message)

    return threads.deferToThread(blocking)


@pytest_twisted.ensureDeferred
async def test_noop_vrfy_help_are_answered(tmp_path, sink):
    gateway = await started(gateway_config(tmp_path, sink.port.getHost().port))
    try:

        def talk():
            with smtplib.SMTP("127.0.0.1", gateway.port("smtp"), timeout=30) as client:
                return (
                    client.noop(),
                    client.verify("bureau@ny.example"),
                    client.docmd("VRFY"),
                    client.help(),
                    client.noop(),  # the session goes on after all of them
                )

        noop, vrfy, vrfy_empty, help_text, again = await threads.deferToThread(talk)
        assert noop[0] == 250 and again[0] == 250
        assert vrfy[0] == 252
        assert vrfy_empty[0] == 501
        assert b"NOOP" in help_text and b"VRFY" in help_text and b"attachment" in help_text
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_answer_mails_name_tot_tcn_and_refer_to_the_submission(tmp_path, sink):
    gateway = await started(gateway_config(tmp_path, sink.port.getHost().port))
    try:
        port = gateway.port("smtp")
        car = make_car("NY-0000123")
        await _send(port, car, "<car-0001@livescan.ny.example>")
        xml = ansinist.write(ansinist.read(make_car("NY-0000124")), "xml")
        await _send(port, xml, "<car-0002@livescan.ny.example>", filename="sub.xml")
        broken = make_car("NY-0000125")[:5000]
        await _send(port, broken, None)  # an ERRT, and no Message-ID to refer to
        # An XML package cut after its Type-1: the peek reads the Type-1 (it parses no
        # further), so its ERRT names the TCN as the traditional file's does.
        cut = ansinist.write(ansinist.read(make_car("NY-0000126")), "xml")
        cut = cut[: cut.index(b"</itl:PackageInformationRecord>") + 200]
        await _send(port, cut, "<car-0004@livescan.ny.example>", filename="cut.xml")
        await sink.wait_for(4)
        by_reference = {m["message"]["In-Reply-To"]: m["message"] for m in sink.messages}
        sre = by_reference["<car-0001@livescan.ny.example>"]
        assert sre["Subject"] == "EBTS SRE for TCN NY-0000123"
        assert sre["References"] == "<car-0001@livescan.ny.example>"
        assert [p.get_filename() for p in sre.iter_attachments()] == ["NY-0000123.sre.eft"]
        # XML in, XML out: the same names with .xml
        answer = by_reference["<car-0002@livescan.ny.example>"]
        tot = ansinist.read(next(answer.iter_attachments()).get_payload(decode=True)).tot
        assert answer["Subject"] == f"EBTS {tot} for TCN NY-0000124"
        names = [p.get_filename() for p in answer.iter_attachments()]
        assert names == [f"NY-0000124.{tot.lower()}.xml"]
        errt = by_reference[None]
        assert errt["Subject"] == "EBTS ERRT for TCN NY-0000125" and errt["References"] is None
        assert [p.get_filename() for p in errt.iter_attachments()] == ["NY-0000125.errt.eft"]
        cut_errt = by_reference["<car-0004@livescan.ny.example>"]
        assert cut_errt["Subject"] == "EBTS ERRT for TCN NY-0000126"
        assert [p.get_filename() for p in cut_errt.iter_attachments()] == ["NY-0000126.errt.xml"]
        # An ERRT for a TCN that breaks a rule has no TCR: the journal's TCN names it.
        subject, name = answer_names(b"not EBTS", tcn="NY-1", fallback="M1")
        assert (subject, name) == ("EBTS response for TCN NY-1", "NY-1.response.eft")
        # Stored with the submission, as received.
        ids = {m.mail_message_id for m in gateway.journal.messages(limit=10)}
        assert ids == {
            "<car-0001@livescan.ny.example>",
            "<car-0002@livescan.ny.example>",
            "<car-0004@livescan.ny.example>",
            None,
        }
    finally:
        await gateway.stopService()


def test_submission_message_id_keeps_only_a_well_formed_one():
    def mail(value: bytes) -> bytes:
        return b"From: a@b\r\nMessage-ID: " + value + b"\r\n\r\nbody\r\n"

    assert submission_message_id(mail(b"<x.1@host.example>")) == "<x.1@host.example>"
    assert submission_message_id(mail(b"<two words@host>")) is None
    assert submission_message_id(mail(b"<" + b"a" * 300 + b"@h>")) is None
    assert submission_message_id(mail(b"no-brackets@host")) is None
    assert submission_message_id(b"From: a@b\r\n\r\nno id\r\n") is None


def test_answer_names_fall_back_to_the_message_id_without_a_tcr():
    subject, name = answer_names(b"not an EBTS file", fallback="M123")
    assert subject == "EBTS response for submission M123"
    assert name == "M123.response.eft"
    subject, name = answer_names(
        ansinist.write(
            ansinist.Transaction.new(
                tot="SRE", dai="NY0303000", ori="WVIAFIS0Z", tcn="GW1", dat="20261125", ver="0400"
            )
        ),
        fallback="M1",
    )
    assert subject == "EBTS SRE for submission M1" and name == "M1.sre.eft"
