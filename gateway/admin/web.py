"""Admin HTTP: ``/health``, a JSON API over the journal and a small dashboard page.

- ``GET /health``: liveness, worker processes, queue depth and the oldest waiting message's age
  (answers from the reactor thread, no I/O beyond two indexed SQLite counts).
- ``GET /api/stats``: counts per state, per outbound state, per response TOT.
- ``GET /api/messages?tcn=&ori=&tot=&state=&outcome=&since=&until=&limit=&offset=``: the message
  browser, newest first, with the ``total`` the filters select. ``tcn`` and ``ori`` are
  case-insensitive prefixes, ``tot`` and ``state`` any case (``state=REJECTED`` finds the
  messages that failed validation, although their final state is RESPONDED), ``outcome`` one of
  sre_hit, sre_no_hit, errt, duplicate, rejected_no_answer (rejected, nothing sent back),
  undeliverable (a refused submission is no message: see the audit trail), ``since``/``until``
  ISO 8601 (UTC unless an offset is given; ``since`` inclusive, ``until`` exclusive). An
  unknown or bad parameter is a 400 that names it.
- ``GET /api/messages/<id>``: one message with its transitions and deliveries.
- ``GET /``: the dashboard (HTML + a little JavaScript polling the API).

Every time is ISO 8601 UTC (``2026-12-06T09:57:20.123Z``), as in the routing log.
Payload bytes and personal fields are never served here.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

from twisted.web import resource

from gateway.store.journal import OUTCOMES, STATES, MessageQuery, iso_utc

DASHBOARD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>EBTS gateway</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em} table{border-collapse:collapse;font-size:.9em}
td,th{border-bottom:1px solid #ddd;padding:.25em .6em;text-align:left}
.k{display:inline-block;margin-right:1.5em} .REJECTED,.FAILED{color:#b00}
.RESPONDED{color:#070} code{font-size:.85em}
</style></head><body>
<h1>EBTS gateway</h1>
<div id="stats">loading...</div>
<h2>Recent transactions</h2>
<form id="f">state <input name="state" size="10"> TCN <input name="tcn" size="16">
ORI <input name="ori" size="10"> <button>filter</button></form>
<table id="msgs"><thead><tr><th>received</th><th>message</th><th>TOT</th><th>ORI</th>
<th>TCN</th><th>state</th><th>response</th></tr></thead><tbody></tbody></table>
<pre id="detail"></pre>
<script>
const q = () => new URLSearchParams(new FormData(document.getElementById('f'))).toString();
function esc(s){return String(s ?? '').replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;',
 '>':'&gt;','"':'&quot;'}[c]));}
async function refresh(){
  const s = await (await fetch('/api/stats')).json();
  document.getElementById('stats').innerHTML =
    Object.entries(s.messages).map(([k,v]) => `<span class="k ${esc(k)}">${esc(k)}: ${v}</span>`)
    .join('') + '<br>' + Object.entries(s.outbound).map(([k,v]) =>
    `<span class="k ${esc(k)}">outbound ${esc(k)}: ${v}</span>`).join('');
  const m = await (await fetch('/api/messages?limit=50&' + q())).json();
  document.querySelector('#msgs tbody').innerHTML = m.messages.map(x =>
    `<tr><td>${esc(x.received_at)}</td>
     <td><a href="#" onclick="show('${esc(x.id)}');return false">
     <code>${esc(x.id)}</code></a></td>
     <td>${esc(x.tot)}</td><td>${esc(x.ori)}</td><td>${esc(x.tcn)}</td>
     <td class="${esc(x.state)}">${esc(x.state)}</td>
     <td>${esc(x.response_tot)}</td></tr>`).join('');
}
async function show(id){
  const d = await (await fetch('/api/messages/' + encodeURIComponent(id))).json();
  document.getElementById('detail').textContent = JSON.stringify(d, null, 1);
}
document.getElementById('f').onsubmit = e => { e.preventDefault(); refresh(); };
refresh(); setInterval(refresh, 3000);
</script></body></html>
"""


def _json(request, body, code: int = 200) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(body, indent=1, default=str).encode()


def _arg(request, name: str) -> str | None:
    values = request.args.get(name.encode())
    return values[0].decode("utf-8", "replace") if values else None


def _int_arg(request, name: str, default: int, maximum: int) -> int:
    value = _arg(request, name)
    # ASCII digits only: str.isdigit() admits "²", which int() refuses (a 500)
    if value is None or not (value.isascii() and value.isdigit()):
        return default
    return min(int(value), maximum)


class BadParameter(ValueError):
    """A query parameter the API does not know or cannot use: a 400 naming it."""

    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name = name


MESSAGE_FILTERS = ("tcn", "ori", "tot", "state", "outcome", "since", "until")
MESSAGE_PARAMETERS = (*MESSAGE_FILTERS, "limit", "offset")
MAX_LIMIT = 1000
MAX_TEXT = 40  # TCN is at most 40 characters (EBTS 1.009); ORI 9, TOT 4


def _single(request, allowed) -> dict[str, str]:
    """The query parameters, each at most once and each known (BadParameter otherwise)."""
    out = {}
    for raw_name, values in request.args.items():
        name = raw_name.decode("utf-8", "replace")[:40]
        if name not in allowed:
            raise BadParameter(name, f"unknown parameter (known: {', '.join(allowed)})")
        if len(values) != 1:
            raise BadParameter(name, "given more than once")
        out[name] = values[0].decode("utf-8", "replace")
    return out


def _time_param(name: str, value: str) -> float:
    try:
        at = dt.datetime.fromisoformat(value)
    except ValueError:
        raise BadParameter(
            name, "not an ISO 8601 date or time, e.g. 2026-12-06T09:00:00Z"
        ) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    return at.timestamp()


def _count_param(name: str, value: str, maximum: int, minimum: int = 0) -> int:
    # ASCII digits only: str.isdigit() admits "²" and "①", which int() refuses (was a 500)
    ok = value.isascii() and value.isdigit() and len(value) <= 10
    if not ok or not minimum <= int(value) <= maximum:
        raise BadParameter(name, f"must be a whole number from {minimum} to {maximum}")
    return int(value)


def message_query(request) -> tuple[MessageQuery, int, int]:
    """The message browser's filters and page from a request (BadParameter on a bad one)."""
    params = _single(request, MESSAGE_PARAMETERS)
    for name in ("tcn", "ori", "tot"):
        value = params.get(name)
        if value is not None and (len(value) > MAX_TEXT or not value.isprintable()):
            raise BadParameter(name, f"at most {MAX_TEXT} printable characters")
    state = params.get("state")
    if state is not None and state.upper() not in STATES:
        raise BadParameter("state", f"unknown state (known: {', '.join(STATES)})")
    outcome = params.get("outcome")
    if outcome is not None and outcome.lower() == "refused":
        raise BadParameter(
            "outcome",
            "refused submissions are not stored, so no message has that outcome: they are "
            "the audit trail's submission.refused records (for a message rejected with no "
            "answer sent: rejected_no_answer)",
        )
    if outcome is not None and outcome.lower() not in OUTCOMES:
        raise BadParameter("outcome", f"unknown outcome (known: {', '.join(OUTCOMES)})")
    since = _time_param("since", params["since"]) if "since" in params else None
    until = _time_param("until", params["until"]) if "until" in params else None
    limit = _count_param("limit", params["limit"], MAX_LIMIT, 1) if "limit" in params else 100
    offset = _count_param("offset", params["offset"], 10**9) if "offset" in params else 0
    query = MessageQuery(
        state=state or None,
        tcn=params.get("tcn") or None,
        ori=params.get("ori") or None,
        tot=params.get("tot") or None,
        since=since,
        until=until,
        outcome=outcome or None,
    )
    return query, limit, offset


def message_body(msg) -> dict:
    """A message row as the API serves it: ISO times, no payload reference."""
    body = msg.to_dict()
    body.pop("payload", None)
    body["received_at"] = iso_utc(msg.received_at)
    body["updated_at"] = iso_utc(msg.updated_at)
    return body


class Health(resource.Resource):
    isLeaf = True

    def __init__(self, app):
        super().__init__()
        self.app = app
        self.started = time.time()

    def render_GET(self, request):  # noqa: N802 - Twisted API
        now = time.time()
        waiting, oldest = self.app.journal.queue()
        pending = getattr(self.app, "pending_galleries", None)
        return _json(
            request,
            {
                "status": "ok",
                "started_at": iso_utc(self.started),
                "uptime_s": round(now - self.started, 1),
                # the pool's processes (not jobs): configured, and alive now
                "worker_processes": self.app.pool.processes,
                "worker_processes_alive": self.app.pool.alive,
                "worker_crashes": self.app.pool.crashes,
                # workers replaced after a job past [limits] max_work_memory
                "worker_retired": getattr(self.app.pool, "retired", 0),
                "jobs_running": self.app.pool.running,
                "in_flight": self.app.pipeline.busy,
                "queue_depth": waiting,
                "oldest_waiting_s": round(now - oldest, 1) if oldest is not None else None,
                "galleries": "building" if pending is not None else "ready",
                "outbound_sent": self.app.dispatcher.sent,
            },
        )


class Stats(resource.Resource):
    isLeaf = True

    def __init__(self, app):
        super().__init__()
        self.app = app

    def render_GET(self, request):  # noqa: N802
        return _json(request, self.app.journal.stats())


class Messages(resource.Resource):
    isLeaf = True

    def __init__(self, app):
        super().__init__()
        self.app = app

    def render_GET(self, request):  # noqa: N802
        journal = self.app.journal
        if request.postpath and request.postpath[0]:
            msg_id = request.postpath[0].decode("utf-8", "replace")
            try:
                msg = journal.message(msg_id)
            except KeyError:
                return _json(request, {"error": f"no message {msg_id}"}, 404)
            body = message_body(msg)
            body["transitions"] = [
                dict(t, at=iso_utc(t["at"])) for t in journal.transitions(msg_id)
            ]
            body["deliveries"] = [
                {
                    "kind": o.kind,
                    "destination": o.destination,
                    "state": o.state,
                    "attempts": o.attempts,
                    "last_error": o.last_error,
                    "sent_at": iso_utc(o.sent_at),
                }
                for o in journal.outbound_for(msg_id)
            ]
            return _json(request, body)
        try:
            query, limit, offset = message_query(request)
        except BadParameter as exc:
            return _json(request, {"error": str(exc), "parameter": exc.name}, 400)
        rows, total = journal.find_messages(query, limit=limit, offset=offset)
        out = []
        for m in rows:
            item = message_body(m)
            item.pop("summary", None)
            out.append(item)
        return _json(request, {"total": total, "limit": limit, "offset": offset, "messages": out})


class Dashboard(resource.Resource):
    isLeaf = True

    def render_GET(self, request):  # noqa: N802
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return DASHBOARD.encode()


def admin_root(app) -> resource.Resource:
    # Any: putChild wants an IResource, a zope interface mypy does not follow
    root: Any = resource.Resource()
    root.putChild(b"", Dashboard())
    root.putChild(b"health", Health(app))
    api: Any = resource.Resource()
    api.putChild(b"stats", Stats(app))
    api.putChild(b"messages", Messages(app))
    root.putChild(b"api", api)
    return root
