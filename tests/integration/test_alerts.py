"""``[alerts]`` over real sockets (issue 19): each alert reaches a local SMTP sink through the
outbound relay, once per period, and names no personal field."""

from __future__ import annotations

import smtplib
import socket
import time

import pytest
import pytest_twisted
from twisted.internet import reactor, task

from gateway.store import counters, metrics
from tests.integration.cars import SYNTHETIC_TYPE2, make_car
from tests.integration.helpers import gateway_config, send_smtp, started

NAME = "QUAILMARKER, ZEBEDIAH"
ONCALL = "oncall@ops.example"


def _car(tcn: str, ori: str = "NY0303000") -> bytes:
    return make_car(tcn, ori=ori, fingers=1, type2={**SYNTHETIC_TYPE2, "2.018": NAME})


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _gateway(tmp_path, sink, *, alerts: dict, outbound: dict, agency: dict | None = None):
    relay = sink.port.getHost().port
    config = gateway_config(
        tmp_path,
        relay,
        outbound={"smtp_relay": f"127.0.0.1:{relay}", **outbound},
        alerts={"email": [ONCALL], "check_seconds": 0.2, **alerts},
        # answers go to a SOAP endpoint nobody listens on; alerts go to the sink
        agency=[
            agency
            or {
                "ori": "NY0303000",
                "response_soap": f"http://127.0.0.1:{_closed_port()}/ebts",
                "submits_for": ["NY"],
            }
        ],
    )
    return await started(config)


def _alerts(sink) -> list:
    return [m for m in sink.messages if m["to"] == ONCALL]


async def _sleep(seconds: float):
    await task.deferLater(reactor, seconds, lambda: None)


@pytest_twisted.ensureDeferred
async def test_a_failed_delivery_alerts_once(tmp_path, sink):
    gateway = await _gateway(
        tmp_path, sink, alerts={"max_wait": 3600}, outbound={"max_attempts": 1}
    )
    try:
        await send_smtp(gateway.port("smtp"), [_car("NY-ALERT-0001")])
        (mail,) = await sink.wait_for(1, timeout=60)
        message = mail["message"]
        assert mail["to"] == ONCALL and "1 deliveries failed" in message["Subject"]
        assert message["Auto-Submitted"] == "auto-generated"
        body = message.get_content()
        (msg,) = gateway.journal.messages(tcn="NY-ALERT-0001")
        assert msg.id in body and "NY-ALERT-0001" in body and "gave up after 1 attempts" in body
        assert "QUAILMARKER" not in str(message)
        # the same failure is not announced again, in this period or the next
        await _sleep(0.6)
        assert len(sink.messages) == 1
        assert await gateway.alerts.check() == []
        assert await gateway.alerts.check(now=time.time() + 3601) == []
        assert len(sink.messages) == 1
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_a_queue_waiting_longer_than_max_wait_alerts_once_per_period(tmp_path, sink):
    gateway = await _gateway(
        tmp_path,
        sink,
        alerts={"max_wait": 1, "period": 3600},
        outbound={"max_attempts": 30, "retry_initial": 60, "retry_max": 60},
    )
    try:
        await send_smtp(gateway.port("smtp"), [_car("NY-ALERT-0002")])
        # the processing queue may alert first (a worker starting takes about a second)
        deadline = time.time() + 60
        while not any("outbound" in m["message"]["Subject"] for m in sink.messages):
            assert time.time() < deadline, [m["message"]["Subject"] for m in sink.messages]
            await _sleep(0.1)
        mail = next(m for m in sink.messages if "outbound" in m["message"]["Subject"])
        subject = mail["message"]["Subject"]
        assert mail["to"] == ONCALL and "the outbound queue's oldest item has waited" in subject
        assert "max_wait = 1" in mail["message"].get_content()
        [item] = gateway.journal.outbound_for(gateway.journal.messages(limit=1)[0].id)
        assert item.state == "RETRYING"
        count = len(sink.messages)
        await _sleep(0.8)  # four more checks: still waiting, no second alert
        assert len(sink.messages) == count
        # the next period: the same condition alerts again
        assert await gateway.alerts.check(now=time.time() + 3601) == ["wait:outbound"]
        await sink.wait_for(count + 1, timeout=30)
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_refusals_of_one_agency_past_the_rate_alert(tmp_path, sink):
    gateway = await _gateway(
        tmp_path,
        sink,
        alerts={"refusal_rate": 2, "max_wait": 3600},
        outbound={},
        agency={"ori": "NY0303000", "response_email": "bureau@ny.example", "submits_for": ["NY"]},
    )
    try:
        port = gateway.port("smtp")
        for n in (1, 2):
            with pytest.raises(smtplib.SMTPDataError) as refused:
                await send_smtp(port, [_car(f"TX-ALERT-000{n}", ori="TX0000000")])
            assert refused.value.smtp_code == 550
            if n == 1:
                await _sleep(0.5)  # one refusal: below the rate, nothing sent
                assert _alerts(sink) == []
        (mail,) = await sink.wait_for(1, timeout=30)
        assert mail["to"] == ONCALL
        assert "2 submissions of TX0000000 refused" in mail["message"]["Subject"]
        assert "refusal_rate = 2" in mail["message"].get_content()
        assert "QUAILMARKER" not in str(mail["message"])
        await _sleep(0.5)
        assert len(sink.messages) == 1
        # the console's counters saw both refusals, as the audit trail holds them
        db = gateway.journal.db
        assert metrics.last_day(db)["by_agency"]["TX0000000"]["refused"] == 2
        assert counters.stored(db) == counters.recount(db)
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_no_recipients_no_checker(tmp_path, sink):
    config = gateway_config(tmp_path, sink.port.getHost().port)
    gateway = await started(config)
    try:
        assert not gateway.alerts.running and gateway.alerts.loop is None
        assert await gateway.alerts.check() == []
    finally:
        await gateway.stopService()
