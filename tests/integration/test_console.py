"""The admin console over real sockets (issue 19): pages behind the login, roles, the message
view's timeline, searches and match picture, redaction for viewers, the JSON behind them.

The traffic goes through the real pipeline: a CAR enrolled (RET=Y, no hit), the same prints
under another TCN (an FBI hit), and a CAR with a bad date (ERRT) from another ORI.
"""

from __future__ import annotations

import json
import re

import pytest_twisted

from gateway.matcher import synthetic
from gateway.matcher.gallery import Gallery
from gateway.store import counters
from tests.integration.cars import SYNTHETIC_TYPE2, make_car
from tests.integration.helpers import admin_login, gateway_config, http_request, send_smtp, started

NAME = "QUAILMARKER, ZEBEDIAH"
SSN = "078051120"
PERSONAL = (NAME.encode(), SSN.encode(), b"QUAILMARKER")


def car(tcn: str, *, ori: str = "NY0303000", **type2) -> bytes:
    fields = {**SYNTHETIC_TYPE2, "2.018": NAME, "2.016": SSN, **type2}
    return make_car(tcn, ori=ori, fingers=1, type2=fields)


async def traffic(tmp_path, sink, **extra):
    """A gateway with an FBI gallery that has answered a no-hit, a hit and an ERRT."""
    gallery = Gallery()
    synthetic.populate(gallery, 3, seed=5)
    gallery.save(tmp_path / "fbi")
    config = gateway_config(tmp_path, sink.port.getHost().port, matcher={"threshold": 0.3}, **extra)
    gateway = await started(config, galleries={"fbi": str(tmp_path / "fbi")})
    smtp = gateway.port("smtp")
    await send_smtp(smtp, [car("NY-CONSOLE-0001")])
    await sink.wait_for(1)
    await send_smtp(smtp, [car("NY-CONSOLE-0002")])
    await sink.wait_for(2)
    await send_smtp(smtp, [car("WV-CONSOLE-0003", ori="WV0000000", **{"2.022": "19801341"})])
    await sink.wait_for(3)
    ids = {m.tcn: m.id for m in gateway.journal.messages(limit=10)}
    return gateway, ids


@pytest_twisted.ensureDeferred
async def test_console_pages_roles_and_message_view(tmp_path, sink):
    gateway, ids = await traffic(tmp_path, sink)
    port = gateway.port("admin")
    hit, errt = ids["NY-CONSOLE-0002"], ids["WV-CONSOLE-0003"]
    try:
        # no session: pages redirect to the login, the console's API answers 401
        for path in ("/", "/messages", f"/message/{hit}", f"/match/{hit}.png"):
            status, headers, _b = await http_request(port, "GET", path)
            assert (status, headers.get("location")) == (303, "/login"), path
        for path in ("/api/console/overview", f"/api/console/messages/{hit}"):
            status, _h, _b = await http_request(port, "GET", path)
            assert status == 401, path

        operator = await admin_login(gateway, "operator")
        status, headers, page = await operator.get("/", {"Accept": "text/html"})
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in headers["content-security-policy"]
        # not no-referrer: browsers would send "Origin: null" with the login form (refused)
        assert headers["referrer-policy"] == "same-origin"
        assert page.count(b"<svg") == 6 and b"Throughput" in page and b"p50" in page
        assert b"NY0303000" in page and b"WV0000000" in page
        assert not re.search(rb"""(src|href)=["']?(https?:)?//""", page)  # nothing from elsewhere
        status, _h, part = await operator.get("/?part=main")
        assert status == 200 and b"<header>" not in part and b"<svg" in part

        overview = await operator.get_json("/api/console/overview")
        day = overview["last_day"]
        assert day["total"] == 3
        assert {k: v for k, v in day["by_outcome"].items() if v} == {
            "sre_hit": 1,
            "sre_no_hit": 1,
            "errt": 1,
        }
        assert day["by_agency"]["NY0303000"]["sre_hit"] == 1
        assert day["by_agency"]["NY0303000"]["total"] == 2
        assert day["by_tot"] == {"CAR": 3}
        assert overview["series"]["hour"]["answered"] == 3
        assert overview["series"]["hour"]["error_rate"] == round(1 / 3, 4)
        assert overview["queues"]["processing"]["count"] == 0
        assert overview["listeners"]["smtp"]["listening"] is True
        assert overview["workers"]["processes"] == 1
        # read from the counters kept by the real pipeline's writes: equal to a recount
        db = gateway.journal.db
        assert counters.stored(db) == counters.recount(db)

        outcomes = await operator.get_json(f"/api/console/outcomes?id={hit}&id={errt}")
        assert outcomes[hit] == {"outcome": "sre_hit", "undeliverable": False}
        assert outcomes[errt]["outcome"] == "errt"
        status, _h, _b = await operator.get("/api/console/outcomes?id=../etc")
        assert status == 400

        # the browser's query: the admin API's filters and shape (branch newcomer's contract)
        found = await operator.get_json("/api/messages?ori=wv&outcome=errt&limit=50")
        assert found["total"] == 1 and [m["id"] for m in found["messages"]] == [errt]
        found = await operator.get_json("/api/messages?ori=NY&outcome=sre_hit")
        assert [m["id"] for m in found["messages"]] == [hit]
        status, _h, page = await operator.get("/audit", {"Accept": "text/html"})
        assert status == 403  # the trail is the auditors'
        status, _h, page = await operator.get("/messages", {"Accept": "text/html"})
        assert status == 200 and b'id="msgs"' in page and b"/api/messages?" in page

        views = len(list(gateway.audit.records(event="message.view")))
        status, _h, page = await operator.get(f"/message/{hit}", {"Accept": "text/html"})
        assert status == 200
        text = page.decode()
        for state in ("STORED", "DECODED", "VALIDATED", "SEARCHED", "ROUTED", "RESPONDED"):
            assert state in text
        assert "HIT" in text and "threshold 0.3000" in text and "score" in text
        assert f"/match/{hit}.png" in text and f"/api/messages/{hit}/payload" in text
        assert "bureau@ny.example" in text  # the delivery and its attempt
        records = list(gateway.audit.records(event="message.view"))
        assert len(records) == views + 1 and records[-1]["message_id"] == hit

        status, headers, png = await operator.get(f"/match/{hit}.png")
        assert status == 200 and headers["content-type"] == "image/png"
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
        (tmp_path / "match.png").write_bytes(png)
        last = list(gateway.audit.records(event="message.view"))[-1]
        assert last["what"] == "match picture"
        status, _h, again = await operator.get(f"/match/{hit}.png")  # kept: not drawn again
        assert (status, again) == (200, png) and len(gateway.admin.console.pictures) == 1
        views += 1  # the second look is audited too

        detail = await operator.get_json(f"/api/console/messages/{errt}")
        assert detail["response_tot"] == "ERRT"
        assert any("2.022" in f["location"] for f in detail["summary"]["findings"])
        assert all("message" in f for f in detail["summary"]["findings"])

        viewer = await admin_login(gateway, "viewer")
        status, _h, page = await viewer.get(f"/message/{hit}", {"Accept": "text/html"})
        assert status == 200 and b"RESPONDED" in page and b"HIT" in page
        for secret in PERSONAL:
            assert secret not in page
        assert b"/match/" not in page and b"candidate <code>" not in page
        assert b"/payload" not in page
        status, _h, _b = await viewer.get(f"/match/{hit}.png")
        assert status == 403
        for mid in (hit, errt):
            status, _h, body = await viewer.get(f"/api/console/messages/{mid}")
            assert status == 200
            for secret in PERSONAL:
                assert secret not in body
            detail = json.loads(body)
            assert "candidate" not in json.dumps(detail["search"])
            assert all(
                set(f) <= {"severity", "code", "location"}
                for f in (detail.get("summary") or {}).get("findings", [])
            )
        status, _h, page = await viewer.get("/", {"Accept": "text/html"})
        assert status == 200 and b"<svg" in page
        assert len(list(gateway.audit.records(event="message.view"))) == views + 3  # none by viewer
    finally:
        await gateway.stopService()
