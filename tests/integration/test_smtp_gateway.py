"""The gateway on real sockets: SMTP in, SRE/ERRT out through the relay, idempotency, restart."""

from __future__ import annotations

import json
import smtplib

import pytest
import pytest_twisted
from twisted.internet import reactor, task, threads

from gateway.ansinist import read
from gateway.service import Gateway
from gateway.store.journal import Journal
from tests.integration.cars import make_car
from tests.integration.helpers import Sink, admin_login, gateway_config, send_smtp, started


async def _start(tmp_path, sink: Sink, **extra) -> Gateway:
    config = gateway_config(tmp_path, sink.port.getHost().port, **extra)
    return await started(config)


def _attachment(sink: Sink, index: int):
    return read(sink.messages[index]["attachments"][0])


@pytest_twisted.ensureDeferred
async def test_car_by_email_gets_an_sre(tmp_path, sink):
    gateway = await _start(tmp_path, sink)
    try:
        await send_smtp(gateway.port("smtp"), [make_car("NY-INT-000001")])
        await sink.wait_for(1)
        message = sink.messages[0]
        assert message["to"] == "bureau@ny.example"  # the agency's registered address
        sre = _attachment(sink, 0)
        assert sre.tot == "SRE"
        assert sre.tcr == "NY-INT-000001"
        assert (sre.ori, sre.dai) == ("WVIAFIS0Z", "NY0303000")
        assert sre.records[1].value("2.059") == "N"  # no gallery: no identification
        # The routing log names states, never personal fields.
        log = (tmp_path / "data" / "routing.log").read_text()
        states = [json.loads(line)["to_state"] for line in log.splitlines()]
        for state in ("RECEIVED", "STORED", "DECODED", "VALIDATED", "ROUTED", "RESPONDED"):
            assert state in states
        assert "TESTPERSON" not in log and "19800229" not in log
        # Admin API answers and shows the message with its deliveries.
        admin = await admin_login(gateway, "viewer")
        rows = (await admin.get_json("/api/messages"))["messages"]
        assert rows[0]["tcn"] == "NY-INT-000001" and rows[0]["response_tot"] == "SRE"
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_broken_file_gets_an_errt_naming_the_field(tmp_path, sink):
    gateway = await _start(tmp_path, sink)
    try:
        bad = make_car(
            "NY-INT-000002",
            type2={"2.005": "Y", "2.018": "TESTPERSON, SYNTH", "2.022": "19801341", "2.024": "M"},
        )
        await send_smtp(gateway.port("smtp"), [bad])
        await sink.wait_for(1)
        errt = _attachment(sink, 0)
        assert errt.tot == "ERRT" and errt.tcr == "NY-INT-000002"
        lines = [s[0] for s in errt.records[1]["2.060"].subfields]
        assert any("2.022" in line for line in lines)
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_truncated_file_gets_an_errt(tmp_path, sink):
    gateway = await _start(tmp_path, sink)
    try:
        await send_smtp(gateway.port("smtp"), [make_car("NY-INT-000003")[:5000]])
        await sink.wait_for(1)
        errt = _attachment(sink, 0)
        assert errt.tot == "ERRT" and errt.tcr == "NY-INT-000003"
        assert "LEN" in " ".join(s[0] for s in errt.records[1]["2.060"].subfields)
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_duplicate_tcn_gets_the_same_response(tmp_path, sink):
    gateway = await _start(tmp_path, sink)
    try:
        car = make_car("NY-INT-000004")
        await send_smtp(gateway.port("smtp"), [car])
        await sink.wait_for(1)
        await send_smtp(gateway.port("smtp"), [car])
        await sink.wait_for(2)
        assert sink.messages[0]["attachments"][0] == sink.messages[1]["attachments"][0]
        rows = gateway.journal.messages(tcn="NY-INT-000004")
        assert sorted(m.state for m in rows) == ["DUPLICATE", "RESPONDED"]
        # only one search ran: the duplicate never reached SEARCHED/VALIDATED
        dup = next(m for m in rows if m.state == "DUPLICATE")
        assert "VALIDATED" not in [t["to_state"] for t in gateway.journal.transitions(dup.id)]
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_several_attachments_give_several_transactions(tmp_path, sink):
    gateway = await _start(tmp_path, sink)
    try:
        cars = [make_car(f"NY-INT-00001{i}", fingers=2) for i in range(3)]
        await send_smtp(gateway.port("smtp"), cars)
        await sink.wait_for(3)
        assert sorted(_attachment(sink, i).tcr for i in range(3)) == [
            "NY-INT-000010",
            "NY-INT-000011",
            "NY-INT-000012",
        ]
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_not_mime_and_no_attachment_get_5xx(tmp_path, sink):
    gateway = await _start(tmp_path, sink)
    try:
        port = gateway.port("smtp")
        for body in (
            b"Subject: x\r\n\r\nplain text\r\n",
            b"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nhello\r\n",
        ):
            with pytest.raises(smtplib.SMTPDataError) as info:
                await send_smtp(port, [], mime=False, body_only=body)
            assert info.value.smtp_code == 554
        assert gateway.journal.messages() == []
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_size_limit_is_announced_and_enforced(tmp_path, sink):
    gateway = await _start(tmp_path, sink, smtp={"max_message_size": 100_000})
    try:
        port = gateway.port("smtp")

        def ehlo():
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
                client.ehlo()
                return client.esmtp_features.get("size")

        assert await threads.deferToThread(ehlo) == "100000"
        with pytest.raises(smtplib.SMTPException):
            await send_smtp(port, [make_car("NY-INT-000020")])
        assert gateway.journal.messages() == []
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_restart_answers_accepted_messages_exactly_once(tmp_path, sink):
    # A message accepted (250 given) and then the daemon dies before processing it.
    config = gateway_config(tmp_path, sink.port.getHost().port)
    config.data_dir.mkdir(parents=True)
    journal = Journal(config.data_dir / "journal.sqlite3")
    msg_id = journal.accept(
        make_car("NY-INT-000030"), transport="smtp", reply_to="livescan@ny.example"
    )
    journal.advance(msg_id, "DECODED", outcome="interrupted")
    journal.close()
    gateway = await _start(tmp_path, sink)
    try:
        await sink.wait_for(1)
        await task.deferLater(reactor, 1.0, lambda: None)
        gateway.pipeline.resume()  # a second resume must not answer again
        await task.deferLater(reactor, 1.5, lambda: None)
        assert len(sink.messages) == 1
        assert _attachment(sink, 0).tcr == "NY-INT-000030"
        assert gateway.journal.message(msg_id).state == "RESPONDED"
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_delivery_is_retried_until_the_relay_accepts(tmp_path, sink):
    sink.refuse = True
    gateway = await _start(tmp_path, sink)
    try:
        await send_smtp(gateway.port("smtp"), [make_car("NY-INT-000040", fingers=1)])
        for _ in range(100):
            rows = gateway.journal.messages(tcn="NY-INT-000040")
            if rows and gateway.journal.outbound_for(rows[0].id):
                out = gateway.journal.outbound_for(rows[0].id)[0]
                if out.attempts >= 2:
                    break
            await task.deferLater(reactor, 0.2, lambda: None)
        assert out.state == "RETRYING" and out.attempts >= 2
        sink.refuse = False
        await sink.wait_for(1)
        await task.deferLater(reactor, 0.3, lambda: None)
        assert gateway.journal.outbound_for(rows[0].id)[0].state == "SENT"
    finally:
        await gateway.stopService()


def test_bad_config_names_the_key(tmp_path, capsys):
    from gateway.cli import main

    bad = tmp_path / "bad.toml"
    bad.write_text('[listen]\nsmtp = "bogus"\n')
    assert main(["run", "--config", str(bad)]) == 2
    assert "listen.smtp" in capsys.readouterr().err
    bad.write_text('[[agency]]\nresponse_email = "x@y.example"\n')
    assert main(["run", "--config", str(bad)]) == 2
    assert "agency[1].ori" in capsys.readouterr().err
    bad.write_text("[outbound\n")
    assert main(["run", "--config", str(bad)]) == 2
    assert "not valid TOML" in capsys.readouterr().err
