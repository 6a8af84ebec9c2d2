"""The admin API over a real socket: every filter of the message browser, paging, bad
parameters, ISO 8601 times and /health.

The journal is filled through its own API (one of each outcome, at known times), the gateway
serves it; nothing here goes through the pipeline, so the outcomes are exactly the ones built.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import urllib.error
import urllib.parse
import urllib.request

import pytest
import pytest_twisted
from twisted.internet import reactor, task

from tests.integration.helpers import admin_login, gateway_config, started

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
DELIVERY = [("smtp", "bureau@ny.example", {"tot": "SRE"})]


def _at(day: int, hour: int = 10) -> float:
    return dt.datetime(2026, 12, day, hour, tzinfo=dt.UTC).timestamp()


def _message(journal, *, tcn, ori="NY0303000", tot="CAR", day=1, steps=(), **respond):
    """One message taken through ``steps`` (state, summary) and answered with ``respond``."""
    msg_id = journal.accept(f"{tcn}".encode(), transport="smtp")
    journal.db.execute("UPDATE messages SET received_at = ? WHERE id = ?", (_at(day), msg_id))
    if tcn is not None:
        journal.identify(msg_id, ori=ori, tcn=tcn, tot=tot, dai="WVIAFIS0Z", encoding="traditional")
    for state, summary in steps:
        fbi = (summary or {}).get("fbi") if state == "SEARCHED" else None
        if fbi is not None:  # as the pipeline writes it (the summary itself is sealed at rest)
            outcome = "hit" if fbi["hit"] else "no hit"
            journal.advance(msg_id, state, summary=summary, destination="FBI", outcome=outcome)
        else:
            journal.advance(msg_id, state, summary=summary)
    if respond:
        respond.setdefault("response_tcn", "GW1")
        respond.setdefault("deliveries", DELIVERY if respond.get("response") else [])
        journal.respond(msg_id, **respond)
    return msg_id


def _populate(journal) -> dict[str, str]:
    ids = {}
    checked = [("DECODED", None), ("VALIDATED", None)]
    ids["hit"] = _message(
        journal,
        tcn="NY-ADMIN-0001",
        day=1,
        steps=[*checked, ("SEARCHED", {"fbi": {"hit": True}})],
        response=b"SRE hit",
        response_tot="SRE",
    )
    ids["no_hit"] = _message(
        journal,
        tcn="ny-admin-0002",
        tot="car",
        day=2,
        steps=[*checked, ("SEARCHED", {"fbi": {"hit": False}})],
        response=b"SRE no hit",
        response_tot="SRE",
    )
    ids["errt"] = _message(
        journal,
        tcn="WV-ADMIN-0003",
        ori="WV0000000",
        day=3,
        steps=[("DECODED", None), ("REJECTED", {"findings": []})],
        response=b"ERRT",
        response_tot="ERRT",
    )
    ids["duplicate"] = _message(
        journal,
        tcn="NY-ADMIN-0001",
        day=4,
        response=b"SRE hit",
        response_tot="SRE",
        duplicate_of=ids["hit"],
    )
    ids["rejected_no_answer"] = _message(
        journal,
        tcn=None,
        day=5,
        steps=[("REJECTED", None)],
        response=None,
        response_tot=None,
        response_tcn=None,
    )
    ids["undeliverable"] = _message(
        journal,
        tcn="NY-ADMIN-0006",
        day=6,
        steps=[*checked, ("SEARCHED", {"fbi": {"hit": False}})],
        response=b"SRE undeliverable",
        response_tot="SRE",
    )
    (item,) = journal.outbound_for(ids["undeliverable"])
    journal.delivery_failed(item, "550 no such user", retry_at=None)
    ids["waiting"] = _message(journal, tcn="NY-ADMIN-0007", day=7)
    return ids


@pytest_twisted.async_yield_fixture
async def api(tmp_path, sink):
    """(gateway, ids, get) with ``await get(path_and_query) -> (status, json)`` over HTTP."""
    config = gateway_config(tmp_path, sink.port.getHost().port)
    gateway = await started(config)
    await task.deferLater(reactor, 0.05, lambda: None)  # start-up's resume() has run: the
    # messages below are written straight into the journal and never processed
    ids = _populate(gateway.journal)
    admin = await admin_login(gateway, "operator")  # the API needs a session (issue 13)

    async def get(path: str):
        status, _headers, body = await admin.get(path)
        return status, json.loads(body)

    yield gateway, ids, get
    await gateway.stopService()


async def _ids(get, query: str) -> set[str]:
    status, body = await get("/api/messages?" + query)
    assert status == 200, body
    assert body["total"] == len(body["messages"])
    return {m["id"] for m in body["messages"]}


@pytest_twisted.ensureDeferred
async def test_filters(api):
    gateway, ids, get = api
    everything = set(ids.values())
    assert await _ids(get, "") == everything
    # TCN and ORI: case-insensitive prefixes; TOT any case
    assert await _ids(get, "tcn=ny-admin-000") == everything - {
        ids["errt"],
        ids["rejected_no_answer"],
    }
    assert await _ids(get, "tcn=NY-ADMIN-0001") == {ids["hit"], ids["duplicate"]}
    assert await _ids(get, "tcn=NY-ADMIN-0002") == {ids["no_hit"]}
    assert await _ids(get, "ori=wv") == {ids["errt"]}
    assert await _ids(get, "tcn=NY_ADMIN") == set()  # _ is a character, not a wildcard
    assert await _ids(get, "tot=Car") == everything - {ids["rejected_no_answer"]}
    # state: the current state; REJECTED / VALIDATED: the verdict, though answered since
    assert await _ids(get, "state=responded") == {
        ids["hit"],
        ids["no_hit"],
        ids["errt"],
        ids["rejected_no_answer"],
        ids["undeliverable"],
    }
    assert await _ids(get, "state=REJECTED") == {ids["errt"], ids["rejected_no_answer"]}
    assert await _ids(get, "state=validated") == {ids["hit"], ids["no_hit"], ids["undeliverable"]}
    assert await _ids(get, "state=stored") == {ids["waiting"]}
    assert await _ids(get, "state=Duplicate") == {ids["duplicate"]}
    # outcome
    for outcome, expected in {
        "sre_hit": {ids["hit"]},
        "sre_no_hit": {ids["no_hit"], ids["undeliverable"]},
        "errt": {ids["errt"]},
        "duplicate": {ids["duplicate"]},
        "rejected_no_answer": {ids["rejected_no_answer"]},
        "undeliverable": {ids["undeliverable"]},
    }.items():
        assert await _ids(get, f"outcome={outcome}") == expected, outcome
    assert await _ids(get, "outcome=SRE_HIT") == {ids["hit"]}
    # date range: since inclusive, until exclusive, UTC unless an offset is given
    assert await _ids(get, "since=2026-12-02&until=2026-12-04") == {ids["no_hit"], ids["errt"]}
    assert await _ids(get, "since=2026-12-06T10:00:00Z") == {ids["undeliverable"], ids["waiting"]}
    assert await _ids(get, "until=" + urllib.parse.quote("2026-12-01T11:00:00+00:30")) == {
        ids["hit"]
    }
    # combined
    assert await _ids(get, "ori=ny&outcome=sre_no_hit&since=2026-12-03") == {ids["undeliverable"]}


@pytest_twisted.ensureDeferred
async def test_paging_has_a_total_and_newest_comes_first(api):
    gateway, ids, get = api
    status, first = await get("/api/messages?limit=3")
    assert status == 200 and first["total"] == 7 and first["limit"] == 3
    assert [m["id"] for m in first["messages"]] == [
        ids["waiting"],
        ids["undeliverable"],
        ids["rejected_no_answer"],
    ]
    _, rest = await get("/api/messages?limit=3&offset=6")
    assert rest["total"] == 7 and [m["id"] for m in rest["messages"]] == [ids["hit"]]
    _, beyond = await get("/api/messages?offset=50")
    assert beyond["total"] == 7 and beyond["messages"] == []


@pytest.mark.parametrize(
    "query, parameter",
    [
        ("colour=red", "colour"),
        ("state=LOST", "state"),
        ("outcome=maybe", "outcome"),
        ("outcome=refused", "outcome"),  # refusals are not stored: not a message's outcome
        ("since=yesterday", "since"),
        ("until=2026-13-01", "until"),
        ("limit=-1", "limit"),
        ("limit=0", "limit"),
        ("limit=5000", "limit"),
        ("offset=x", "offset"),
        ("tcn=" + "A" * 41, "tcn"),
        ("tcn=a&tcn=b", "tcn"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_a_bad_parameter_is_a_400_naming_it(api, query, parameter):
    _, _, get = api
    status, body = await get("/api/messages?" + query)
    assert status == 400
    assert body["parameter"] == parameter and body["error"].startswith(parameter + ":")


@pytest_twisted.ensureDeferred
async def test_times_are_iso_8601_utc(api):
    gateway, ids, get = api
    _, listing = await get("/api/messages")
    assert all(
        ISO.match(m["received_at"]) and ISO.match(m["updated_at"]) for m in listing["messages"]
    )
    hit = next(m for m in listing["messages"] if m["id"] == ids["hit"])
    assert hit["received_at"] == "2026-12-01T10:00:00.000Z"
    _, detail = await get(f"/api/messages/{ids['undeliverable']}")
    assert all(ISO.match(t["at"]) for t in detail["transitions"])
    assert detail["deliveries"][0]["state"] == "FAILED"
    # the routing log writes the same form
    log = (gateway.config.data_dir / "routing.log").read_text().splitlines()
    assert ISO.match(json.loads(log[0])["time"])


@pytest_twisted.ensureDeferred
async def test_health_reports_processes_queue_and_oldest_wait(api):
    gateway, ids, get = api
    status, health = await get("/health")
    assert status == 200
    assert health["worker_processes"] == gateway.config.workers == 1
    assert health["worker_processes_alive"] == 0  # the pool starts its processes on demand
    assert health["jobs_running"] == 0
    assert health["worker_retired"] == 0
    assert health["queue_depth"] == 1  # the waiting message
    oldest = gateway.journal.message(ids["waiting"]).received_at
    assert health["oldest_waiting_s"] >= round(dt.datetime.now(dt.UTC).timestamp() - oldest) - 1
    assert ISO.match(health["started_at"]) and health["galleries"] == "ready"
