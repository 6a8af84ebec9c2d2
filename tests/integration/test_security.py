"""Admin access, audit trail and encryption at rest over real sockets (issue 13's must-shows)."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import time

import pytest_twisted
from twisted.internet import reactor, task

from gateway.cli import main
from tests.integration.cars import SYNTHETIC_TYPE2, make_car
from tests.integration.helpers import (
    PASSWORD,
    Admin,
    admin_login,
    gateway_config,
    http_request,
    send_smtp,
    started,
)

NAME = "QUAILMARKER, ZEBEDIAH"
SSN = "987654325"  # 987-65-4320..4329: reserved for examples, never issued
BAD_DOB = "19801341"  # not a date: validation rejects it with a finding about 2.022


def _car(tcn: str, **type2) -> bytes:
    fields = {**SYNTHETIC_TYPE2, "2.018": NAME, "2.016": SSN, **type2}
    return make_car(tcn, fingers=1, type2=fields)


async def _gateway(tmp_path, sink, **extra):
    return await started(gateway_config(tmp_path, sink.port.getHost().port, **extra))


async def _answered(gateway, sink, tcn: str, count: int):
    await sink.wait_for(count)
    (msg,) = gateway.journal.messages(tcn=tcn)
    return msg


def _records(gateway, event: str) -> list[dict]:
    return list(gateway.audit.records(event=event))


@pytest_twisted.ensureDeferred
async def test_every_admin_url_needs_a_session_and_the_right_host(tmp_path, sink):
    gateway = await _gateway(tmp_path, sink)
    port = gateway.port("admin")
    try:
        for path in (
            "/api/stats",
            "/api/messages",
            "/api/messages/M1",
            "/api/audit",
            "/api/messages/M1/payload",
            "/api/session",
            "/api/nothing",
        ):
            status, _h, body = await http_request(port, "GET", path)
            assert status == 401, path
            assert b"login required" in body
        status, _h, _b = await http_request(port, "POST", "/api/messages/M1/reprocess")
        assert status == 401
        for path in ("/", "/audit", "/logout", "/elsewhere"):
            status, headers, _b = await http_request(port, "GET", path)
            assert (status, headers.get("location")) == (303, "/login"), path
        status, _h, body = await http_request(port, "GET", "/login")
        assert status == 200 and b'name="password"' in body
        # /health stays open for probes and tells only up/down and counts
        status, _h, body = await http_request(port, "GET", "/health")
        health = json.loads(body)
        assert status == 200 and health["status"] == "ok"
        # up/down words, times and counts only: no message, no identity, no personal field
        words = {"status": {"ok"}, "galleries": {"ready", "building"}}
        for key, value in health.items():
            if key in words:
                assert value in words[key], (key, value)
            elif key == "started_at":
                assert isinstance(value, str) and value.endswith("Z")
            else:
                assert value is None or isinstance(value, int | float), (key, value)
        # a Host that is not this listener (DNS rebinding): 421 on every URL, even /login
        for path in ("/health", "/login", "/api/stats", "/"):
            status, _h, _b = await http_request(
                port, "GET", path, headers={"Host": f"attacker.example:{port}"}
            )
            assert status == 421, path
        status, _h, _b = await http_request(
            port, "GET", "/health", headers={"Host": f"localhost:{port}"}
        )
        assert status == 200
        # a login posted from another origin is refused before any password check
        gateway.users.add("olga", "operator", PASSWORD)
        status, _h, _b = await http_request(
            port,
            "POST",
            "/login",
            body=f"username=olga&password={PASSWORD}",
            headers={
                "Origin": "http://attacker.example",
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        assert status == 403
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_configured_hosts_replace_the_default(tmp_path, sink):
    gateway = await _gateway(tmp_path, sink, admin={"hosts": ["console.example"]})
    port = gateway.port("admin")
    try:
        status, _h, _b = await http_request(port, "GET", "/health")
        assert status == 421  # 127.0.0.1:port is no longer listed
        status, _h, _b = await http_request(
            port, "GET", "/health", headers={"Host": f"console.example:{port}"}
        )
        assert status == 200
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_login_session_cookie_csrf_idle_timeout_and_logout(tmp_path, sink):
    gateway = await _gateway(tmp_path, sink)
    try:
        gateway.users.add("olga", "operator", PASSWORD)
        admin = Admin(gateway.port("admin"))
        form = f"username=olga&password={PASSWORD}"
        status, headers, _b = await http_request(
            admin.port,
            "POST",
            "/login",
            body=form,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert status == 303 and headers["location"] == "/"  # a browser's form
        cookie = headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        assert "Secure" not in cookie  # plain HTTP on loopback; Secure once the listener is TLS
        assert await admin.login("olga", PASSWORD) == 200
        assert (await admin.get_json("/api/session"))["role"] == "operator"
        status, _h, body = await admin.get("/")
        assert status == 200 and b"olga (operator)" in body and b"csrf_token" in body
        # a state-changing request without the CSRF token is refused
        status, _h, _b = await admin.post("/logout", csrf=False)
        assert status == 403
        # idle for longer than [admin] session_idle_minutes: the session is over
        # (the dashboard's own polling of the lists is no activity)
        real = gateway.admin.sessions.clock
        gateway.admin.sessions.clock = lambda: real() + 20 * 60
        assert (await admin.get("/api/stats"))[0] == 200
        assert (await admin.get("/api/messages?limit=50"))[0] == 200
        gateway.admin.sessions.clock = lambda: real() + 31 * 60
        status, _h, _b = await admin.get("/api/stats")
        assert status == 401
        gateway.admin.sessions.clock = real
        assert _records(gateway, "admin.session_expired")
        assert await admin.login("olga", PASSWORD) == 200
        status, _h, _b = await admin.post("/logout")
        assert status == 200
        status, _h, _b = await admin.get("/api/stats")
        assert status == 401
        assert [r["user"] for r in _records(gateway, "admin.logout")] == ["olga"]
        assert len(_records(gateway, "admin.login")) == 3
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_five_failures_lock_the_account(tmp_path, sink):
    gateway = await _gateway(tmp_path, sink)
    try:
        gateway.users.add("olga", "operator", PASSWORD)
        admin = Admin(gateway.port("admin"))
        for _ in range(5):
            assert await admin.login("olga", "wrong password!!") == 401
        # locked: even the right password is refused, with the same answer
        assert await admin.login("olga", PASSWORD) == 401
        assert admin.last[1] == b'{\n "error": "login failed"\n}'
        assert gateway.users.get("olga").locked(time.time())
        (lockout,) = _records(gateway, "admin.lockout")
        assert lockout["user"] == "olga" and lockout["remote"] == "127.0.0.1"
        reasons = [r["reason"] for r in _records(gateway, "admin.login_failed")]
        assert reasons == ["wrong password"] * 5 + ["account locked"]
        assert await admin.login("nobody", PASSWORD) == 401  # unknown: same answer
        # the lock ends after [admin] lockout_minutes (here: as if the time had passed)
        gateway.journal.db.execute("UPDATE users SET locked_until = ?", (time.time() - 1,))
        assert await admin.login("olga", PASSWORD) == 200
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_roles_redaction_audited_views_and_encryption_at_rest(tmp_path, sink):
    old_umask = os.umask(0o022)
    try:
        gateway = await _gateway(tmp_path, sink)
    finally:
        os.umask(old_umask)
    try:
        car = _car("NY-SEC-000001", **{"2.022": BAD_DOB})
        await send_smtp(gateway.port("smtp"), [car])
        msg = await _answered(gateway, sink, "NY-SEC-000001", 1)
        assert msg.state == "RESPONDED" and msg.response_tot == "ERRT"
        accepted = _records(gateway, "submission.accepted")
        assert accepted[0]["tcn"] == "NY-SEC-000001" and accepted[0]["channel"] == "smtp"
        assert accepted[0]["message_id"] == msg.id and "peer" in accepted[0]
        for _ in range(50):  # the delivery record follows the SMTP answer of the sink
            if _records(gateway, "delivery.sent"):
                break
            await task.deferLater(reactor, 0.1, lambda: None)

        viewer = await admin_login(gateway, "viewer")
        outputs = [
            (await viewer.get("/api/messages"))[2],
            (await viewer.get(f"/api/messages/{msg.id}"))[2],
            (await viewer.get("/api/messages?tcn=NY-SEC-000001"))[2],
        ]
        detail = json.loads(outputs[1])
        assert detail["state"] == "RESPONDED" and detail["summary"]["findings"]
        assert all("message" not in f for f in detail["summary"]["findings"])
        for body in outputs:
            for personal in (NAME, "QUAILMARKER", SSN, BAD_DOB):
                assert personal.encode() not in body
        assert (await viewer.get(f"/api/messages/{msg.id}/payload"))[0] == 403
        assert (await viewer.get("/api/audit"))[0] == 403
        assert not _records(gateway, "message.view")  # a viewer's look is no personal view

        operator = await admin_login(gateway, "operator")
        view = await operator.get_json(f"/api/messages/{msg.id}")
        assert "message" in view["summary"]["findings"][0]
        (record,) = _records(gateway, "message.view")
        assert (record["user"], record["message_id"], record["role"]) == (
            "test-operator",
            msg.id,
            "operator",
        )
        status, headers, payload = await operator.get(f"/api/messages/{msg.id}/payload")
        assert status == 200 and payload == car and "attachment" in headers["content-disposition"]
        assert _records(gateway, "message.download")[0]["what"] == "payload"
        status, _h, _b = await operator.post(f"/api/messages/{msg.id}/reprocess")
        assert status == 409  # already answered
        assert (await operator.get("/api/audit"))[0] == 403

        auditor = await admin_login(gateway, "auditor")
        trail = await auditor.get_json("/api/audit?limit=500")
        events = {r["event"] for r in trail["records"]}
        assert {
            "gateway.start",
            "submission.accepted",
            "delivery.sent",
            "admin.login",
            "message.view",
            "message.download",
        } <= events
        assert (await auditor.get_json("/api/audit/verify"))["chain"]["whole"] is True
        assert (await auditor.get("/audit"))[0] == 200
        for body in [json.dumps(trail).encode()]:
            assert NAME.encode() not in body and SSN.encode() not in body

        # at rest: the journal and its WAL hold neither the name nor the SSN; files are 0600
        data = tmp_path / "data"
        for name in ("journal.sqlite3", "journal.sqlite3-wal", "routing.log"):
            blob = (data / name).read_bytes()
            assert NAME.encode() not in blob and SSN.encode() not in blob, name
        for path in data.iterdir():
            expected = 0o700 if path.is_dir() else 0o600
            assert stat.S_IMODE(path.stat().st_mode) == expected, path.name
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_audit_verify_names_the_altered_record(tmp_path, sink, capsys):
    gateway = await _gateway(tmp_path, sink)
    try:
        await send_smtp(gateway.port("smtp"), [_car("NY-SEC-000002")])
        await _answered(gateway, sink, "NY-SEC-000002", 1)
        await admin_login(gateway, "operator")
    finally:
        await gateway.stopService()
    data = str(tmp_path / "data")
    assert main(["audit", "verify", "--data-dir", data]) == 0
    db = sqlite3.connect(tmp_path / "data" / "journal.sqlite3")
    (target,) = db.execute("SELECT id FROM audit WHERE event = 'admin.login'").fetchone()
    db.execute("DROP TRIGGER audit_no_update")
    db.execute("UPDATE audit SET actor = 'someone-else' WHERE id = ?", (target,))
    db.commit()
    db.close()
    capsys.readouterr()
    assert main(["audit", "verify", "--data-dir", data]) == 1
    assert f"broken at record {target}" in capsys.readouterr().err


@pytest_twisted.ensureDeferred
async def test_purge_removes_old_payloads_and_leaves_the_audit_trail_whole(tmp_path, sink):
    gateway = await _gateway(tmp_path, sink, retention={"payload_days": 1, "audit_days": 30})
    try:
        assert gateway.retention.running and gateway.retention.loop.running
        await send_smtp(gateway.port("smtp"), [_car("NY-SEC-000003")])
        msg = await _answered(gateway, sink, "NY-SEC-000003", 1)
        for _ in range(50):  # until the delivery is recorded SENT
            if all(o.state == "SENT" for o in gateway.journal.outbound_for(msg.id)):
                break
            await task.deferLater(reactor, 0.1, lambda: None)
        operator = await admin_login(gateway, "operator")
        assert (await operator.get(f"/api/messages/{msg.id}/payload"))[0] == 200
        before = gateway.audit.count()

        # today nothing is a day old; two days later the payload and the SRE go
        assert (await gateway.retention.run_once())["payloads"] == 0
        result = await gateway.retention.run_once(now=time.time() + 2 * 86400)
        assert result["payloads"] == 2 and result["audit_records"] == 0
        status, _h, _b = await operator.get(f"/api/messages/{msg.id}/payload")
        assert status == 410
        view = await operator.get_json(f"/api/messages/{msg.id}")
        assert view["state"] == "RESPONDED" and view["tcn"] == "NY-SEC-000003"
        assert [t["to_state"] for t in view["transitions"]][:2] == ["RECEIVED", "STORED"]
        (purge,) = _records(gateway, "retention.purged")
        assert purge["count"] == 2 and purge["channel"] == "retention"
        assert gateway.audit.count() > before  # the purge removed no audit record
        assert gateway.audit.verify().ok
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_operator_reprocesses_an_unanswered_message(tmp_path, sink):
    gateway = await _gateway(tmp_path, sink)
    try:
        # stored but never handed to the pipeline (as after a processing error gave up)
        msg_id = gateway.journal.accept(_car("NY-SEC-000004"), transport="smtp")
        operator = await admin_login(gateway, "operator")
        status, _h, body = await operator.post(f"/api/messages/{msg_id}/reprocess")
        assert status == 202 and json.loads(body)["state"] == "STORED"
        await sink.wait_for(1)
        assert gateway.journal.message(msg_id).state == "RESPONDED"
        (record,) = _records(gateway, "message.reprocess")
        assert (record["user"], record["message_id"]) == ("test-operator", msg_id)
        viewer = await admin_login(gateway, "viewer")
        viewer_status, _h, _b = await viewer.post(f"/api/messages/{msg_id}/reprocess")
        assert viewer_status == 403
    finally:
        await gateway.stopService()
