"""The gateway on a PostgreSQL store, end to end over real sockets: SMTP in, SRE out, a duplicate,
the admin API and console pages, users and the audit trail all in the shared database."""

from __future__ import annotations

import pytest_twisted

from gateway.ansinist import read
from tests.integration.cars import make_car
from tests.integration.helpers import admin_login, gateway_config, send_smtp, started


def _config(tmp_path, sink, url, key_file):
    return gateway_config(
        tmp_path,
        sink.port.getHost().port,
        store={"url": url, "node": "pg-node", "key_file": str(key_file)},
    )


@pytest_twisted.ensureDeferred
async def test_gateway_on_postgres(tmp_path, sink, pg_url):
    (tmp_path / "keys").mkdir(mode=0o700)
    key_file = tmp_path / "keys" / "data.key"  # every node's: the same data key
    gateway = await started(_config(tmp_path, sink, pg_url, key_file))
    try:
        assert gateway.journal.dialect == "postgresql"
        car = make_car("NY-PG-0000001")
        await send_smtp(gateway.port("smtp"), [car])
        await sink.wait_for(1)
        sre = read(sink.messages[0]["attachments"][0])
        assert sre.tot == "SRE" and sre.tcr == "NY-PG-0000001"
        await send_smtp(gateway.port("smtp"), [car])  # the same bytes again: a duplicate
        await sink.wait_for(2)
        assert read(sink.messages[1]["attachments"][0]).tcr == "NY-PG-0000001"

        operator = await admin_login(gateway, "operator")
        found = await operator.get_json("/api/messages?tcn=ny-pg&limit=10")
        assert found["total"] == 2
        assert sorted(m["state"] for m in found["messages"]) == ["DUPLICATE", "RESPONDED"]
        stats = await operator.get_json("/api/stats")
        assert stats  # counts from the shared database
        status, _h, page = await operator.get("/", {"Accept": "text/html"})
        assert status == 200 and b"<svg" in page
        overview = await operator.get_json("/api/console/overview")
        assert overview["last_day"]["total"] == 2
        first = min(found["messages"], key=lambda m: m["received_at"])
        status, _h, page = await operator.get(f"/message/{first['id']}", {"Accept": "text/html"})
        assert status == 200 and b"RESPONDED" in page
        auditor = await admin_login(gateway, "auditor")
        status, _h, page = await auditor.get("/audit", {"Accept": "text/html"})
        assert status == 200
        assert gateway.audit.verify().ok
        accepted = list(gateway.audit.records(event="submission.accepted"))
        assert len(accepted) == 2
    finally:
        await gateway.stopService()

    # another node (or this one restarted) sees everything in the database
    again = await started(_config(tmp_path / "second", sink, pg_url, key_file))
    try:
        assert len(again.journal.messages(limit=10)) == 2
        assert again.users.get("test-operator") is not None
    finally:
        await again.stopService()
