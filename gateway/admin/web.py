"""Admin HTTP: ``/health``, a JSON API over the journal and a small dashboard page.

- ``GET /health``: liveness and queue figures (answers from the reactor thread, no I/O beyond
  two indexed SQLite counts).
- ``GET /api/stats``: counts per state, per outbound state, per response TOT.
- ``GET /api/messages?state=&tcn=&ori=&limit=&offset=``: the message browser.
- ``GET /api/messages/<id>``: one message with its transitions and deliveries.
- ``GET /``: the dashboard (HTML + a little JavaScript polling the API).

Payload bytes and personal fields are never served here.
"""

from __future__ import annotations

import json
import time

from twisted.web import resource

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
    `<tr><td>${new Date(x.received_at*1000).toISOString()}</td>
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
    if value is None or not value.isdigit():
        return default
    return min(int(value), maximum)


class Health(resource.Resource):
    isLeaf = True

    def __init__(self, app):
        super().__init__()
        self.app = app
        self.started = time.time()

    def render_GET(self, request):  # noqa: N802 - Twisted API
        return _json(
            request,
            {
                "status": "ok",
                "uptime_s": round(time.time() - self.started, 1),
                "in_flight": self.app.pipeline.busy,
                "workers_running": self.app.pool.running,
                "worker_crashes": self.app.pool.crashes,
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
            body = msg.to_dict()
            body.pop("payload", None)
            body["transitions"] = journal.transitions(msg_id)
            body["deliveries"] = [
                {
                    "kind": o.kind,
                    "destination": o.destination,
                    "state": o.state,
                    "attempts": o.attempts,
                    "last_error": o.last_error,
                    "sent_at": o.sent_at,
                }
                for o in journal.outbound_for(msg_id)
            ]
            return _json(request, body)
        rows = journal.messages(
            limit=_int_arg(request, "limit", 100, 1000),
            offset=_int_arg(request, "offset", 0, 10**9),
            state=_arg(request, "state") or None,
            tcn=_arg(request, "tcn") or None,
            ori=_arg(request, "ori") or None,
        )
        out = []
        for m in rows:
            item = m.to_dict()
            item.pop("payload", None)
            item.pop("summary", None)
            out.append(item)
        return _json(request, {"messages": out})


class Dashboard(resource.Resource):
    isLeaf = True

    def render_GET(self, request):  # noqa: N802
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return DASHBOARD.encode()


def admin_root(app) -> resource.Resource:
    root = resource.Resource()
    root.putChild(b"", Dashboard())
    root.putChild(b"health", Health(app))
    api = resource.Resource()
    api.putChild(b"stats", Stats(app))
    api.putChild(b"messages", Messages(app))
    root.putChild(b"api", api)
    return root
