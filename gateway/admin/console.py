"""The admin console: Overview, Message browser, Message view (pages served by the gateway).

Every page is hand-written HTML with its CSS inline and a little vanilla JavaScript; nothing is
fetched from anywhere but this listener (``Content-Security-Policy: default-src 'self'``, with
the inline style and script the pages carry).  :class:`gateway.admin.auth.Guard` hands a
request here only with a session, so the roles of issue 13 apply:

- ``/``: Overview: counts per agency, TOT and outcome over the last day; queues with their
  oldest waiting age; worker and listener status; throughput, p50/p99 latency and error rate
  over the last hour and day as server-side SVG charts (refreshed every 5 s, ``/?part=main``).
- ``/messages``: the Message browser: a form over the admin API ``/api/messages`` (its filters
  and JSON shape), paging with the total, sortable columns; ERRT, refused, undeliverable and
  failed rows stand out (their outcome comes from ``/api/console/outcomes``).
- ``/message/<id>``: the Message view: timeline of states with durations and destinations,
  deliveries and their attempts, findings (rule and field; an operator also reads the text),
  FBI and DHS search results (an operator sees candidate and score against the threshold), the
  IAQ/IAR exchange and, for a hit, the match picture ``/match/<id>.png`` (operators only).
  Operators download the submission and the response and reprocess through the audited
  endpoints of :mod:`gateway.admin.auth`; their view of a message is an audit record.
- ``/api/console/overview``, ``/api/console/outcomes?id=...``, ``/api/console/messages/<id>``:
  the same data as JSON.

Viewers and auditors get every message through :func:`gateway.admin.redact.redact` (its
allow-list): no finding text, candidate, score, priority, IAQ or IAR text, no picture.
"""

from __future__ import annotations

import html
import json
import re
import time
import urllib.parse

from twisted.internet import defer, threads
from twisted.web import resource, server

from gateway.store import metrics
from gateway.store.journal import STATES, TERMINAL  # STATES: the browser's display order
from gateway.store.metrics import iso_utc

from .redact import redact
from .svg import line_chart

OPERATOR = "operator"
MAX_IDS = 1000  # ids per outcomes request
MAX_PICTURES = 16  # match pictures kept in memory (a few hundred KB each)
OVERVIEW_TTL = 2.0  # seconds an Overview is served again to every viewer (pages poll every 5)
OVERVIEW_STALE = 30.0  # an older one is still served at once while a fresh one is computed
MESSAGE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CSP = (
    b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    b"script-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'"
)
OUTCOME_LABELS = {
    "sre_hit": "SRE hit",
    "sre_no_hit": "SRE no hit",
    "errt": "ERRT",
    "duplicate": "duplicate",
    "refused": "refused",
    "undeliverable": "undeliverable",
    "failed": "failed",
    "pending": "in progress",
    "other": "other answer",
}
BAD = ("errt", "refused", "undeliverable", "failed")

CSS = """
*{box-sizing:border-box} body{font-family:system-ui,sans-serif;margin:0;color:#1d2330;
background:#f4f6f9;font-size:14px} header{background:#1d2b45;color:#fff;padding:.5em 1.2em;
display:flex;gap:1.4em;align-items:center} header a{color:#cfe0ff;text-decoration:none}
header a.on{color:#fff;font-weight:600;border-bottom:2px solid #fff} header .me{margin-left:auto}
header button{font-size:.85em} main{padding:1em 1.2em} h1{font-size:1.25em;margin:.2em 0 .6em}
h2{font-size:1.05em;margin:1.2em 0 .4em} .cards{display:flex;flex-wrap:wrap;gap:.8em}
.card{background:#fff;border:1px solid #d9dee7;border-radius:6px;padding:.6em .9em}
.card b{display:block;font-size:1.4em} table{border-collapse:collapse;background:#fff;
font-size:.92em} td,th{border-bottom:1px solid #e3e7ee;padding:.28em .6em;text-align:left;
vertical-align:top} th{background:#eef1f6} th.sort{cursor:pointer} th.sort:after{content:' \\2195';
color:#99a} td.n{text-align:right} tr.bad td{background:#fde8e8} tr.bad td.o{color:#a00;
font-weight:600} tr.row{cursor:pointer} tr.row:hover td{background:#e8f0ff} .ok{color:#17702a}
.warn{color:#a15c00} .err{color:#b00;font-weight:600} code{font-size:.9em} .muted{color:#667}
.charts{display:flex;flex-wrap:wrap;gap:.8em} .charts svg{background:#fff;border:1px solid
#d9dee7;border-radius:6px} form.filters{display:flex;flex-wrap:wrap;gap:.5em;align-items:end;
margin-bottom:.6em} form.filters label{display:flex;flex-direction:column;font-size:.85em}
.pager{margin:.5em 0;display:flex;gap:.6em;align-items:center} .hit{color:#a00;font-weight:600}
img.match{max-width:100%;border:1px solid #d9dee7;background:#fff} pre{background:#fff;
border:1px solid #d9dee7;padding:.6em;white-space:pre-wrap}
"""


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def _q(value) -> str:
    """A value for a URL's query, then for an HTML attribute."""
    return html.escape(urllib.parse.quote(str(value), safe=""))


def _remote(request) -> str | None:
    return getattr(request.getClientAddress(), "host", None)


def _send_html(request, body: str) -> bytes:
    request.setHeader(b"content-type", b"text/html; charset=utf-8")
    request.setHeader(b"content-security-policy", CSP)
    return body.encode()


def _send_json(request, body, code: int = 200) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(body, indent=1, default=str).encode()


def header(session, active: str) -> str:
    """The console's bar: its pages, the user and role, a logout button with the CSRF token."""
    links = [("/", "Overview"), ("/messages", "Messages")]
    if session.role == "auditor":
        links.append(("/audit", "Audit trail"))
    nav = "".join(
        f'<a href="{href}"{" class=on" if name == active else ""}>{name}</a>'
        for href, name in links
    )
    return f"""<header><strong>EBTS gateway</strong>{nav}
<span class="me">{_e(session.user)} ({_e(session.role)})</span>
<form method="post" action="/logout" style="display:inline">
<input type="hidden" name="csrf_token" value="{_e(session.csrf)}"><button>log out</button></form>
</header>"""


def layout(session, active: str, title: str, main: str, script: str = "") -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)} · EBTS gateway</title>
<style>{CSS}</style></head><body>
{header(session, active)}<main id="main">{main}</main>
<script>const CSRF = {json.dumps(session.csrf)};
function esc(s){{return String(s ?? '').replace(/[&<>"']/g, c => ({{'&':'&amp;','<':'&lt;',
'>':'&gt;','"':'&quot;',"'":'&#39;'}}[c]));}}
{script}</script></body></html>"""


# -- Overview ---------------------------------------------------------------------------------
def status(app) -> dict:
    """Workers and listeners, read in the reactor thread (no I/O)."""
    pool = app.pool
    listeners = {}
    for name in app.ports:
        port = app.port(name)
        listeners[name] = {
            "listening": port is not None,
            "port": port,
            "tls": "on" if getattr(app, "tls_options", None) is not None else "off",
        }
    return {
        "workers": {
            "processes": getattr(pool, "processes", None),
            "alive": getattr(pool, "alive", None),
            "jobs_running": pool.running,
            "crashes": pool.crashes,
            "retired": getattr(pool, "retired", 0),
            "in_flight": app.pipeline.busy,
        },
        "listeners": listeners,
    }


def _age(seconds) -> str:
    if seconds is None:
        return "-"
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _ms(value) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"


def overview_main(data: dict) -> str:
    day = data["last_day"]
    out = day["by_outcome"]
    since = time.strftime("%d %b %H:%M", time.gmtime(day["since"]))
    cards = [(f"received (24 h, since {since} UTC)", day["total"])]
    cards += [(OUTCOME_LABELS[k], out[k]) for k in metrics.OUTCOMES]
    card_html = "".join(
        f'<div class="card{" err" if k in [OUTCOME_LABELS[b] for b in BAD] and v else ""}">'
        f"{_e(k)}<b>{v}</b></div>"
        for k, v in cards
    )
    heads = "".join(f"<th>{_e(OUTCOME_LABELS[k])}</th>" for k in metrics.OUTCOMES)
    agency_rows = (
        "".join(
            f'<tr><td><a href="/messages?ori={_q(a)}">{_e(a)}</a></td>'
            f'<td class="n">{r["total"]}</td>'
            + "".join(
                f'<td class="n{" err" if k in BAD and r[k] else ""}">'
                + (
                    f'<a href="/messages?ori={_q(a)}&amp;outcome={k}">{r[k]}</a>'
                    if r[k] and k not in ("refused", "failed", "pending", "other")
                    else str(r[k])
                )
                + "</td>"
                for k in metrics.OUTCOMES
            )
            + "</tr>"
            for a, r in day["by_agency"].items()
        )
        or f'<tr><td colspan="{len(metrics.OUTCOMES) + 2}" class="muted">nothing yet</td></tr>'
    )
    tot_rows = "".join(
        f'<tr><td><a href="/messages?tot={_q(t)}">{_e(t)}</a></td><td class="n">{n}</td></tr>'
        for t, n in day["by_tot"].items()
    )
    q = data["queues"]
    queue_rows = "".join(
        f"<tr><td>processing: {_e(s)}</td><td class='n'>{v['count']}</td>"
        f"<td class='n'>{_age(v['oldest_s'])}</td></tr>"
        for s, v in q["processing"]["by_state"].items()
    ) + "".join(
        f"<tr><td>outbound: {_e(k)}</td><td class='n'>{v['count']} ({v['retrying']} retrying)"
        f"</td><td class='n'>{_age(v['oldest_s'])}</td></tr>"
        for k, v in q["outbound"]["by_kind"].items()
    )
    if not queue_rows:
        queue_rows = '<tr><td colspan="3" class="muted">empty: nothing waits</td></tr>'
    failed = q["outbound"]["failed"]
    w = data["workers"]
    alive = w["alive"] if w["alive"] is not None else "-"
    listener_rows = "".join(
        f"<tr><td>{_e(n)}</td><td class='{'ok' if v['listening'] else 'err'}'>"
        f"{'listening' if v['listening'] else 'DOWN'}</td><td>{_e(v['port'])}</td>"
        f"<td>TLS {_e(v['tls'])}</td></tr>"
        for n, v in data["listeners"].items()
    )
    charts = []
    for name in ("hour", "day"):
        s = data["series"][name]
        label = "last hour (per minute)" if name == "hour" else "last day (per 15 min)"
        charts.append(
            line_chart(
                f"Throughput, {label}",
                s,
                [("per_minute", "answers/min", "#2b6cd6")],
                unit="/min",
                chart_id=f"throughput-{name}",
            )
        )
        charts.append(
            line_chart(
                f"Latency p50 / p99, {label}",
                s,
                [("p50_s", "p50", "#2b9d4a"), ("p99_s", "p99", "#d9822b")],
                unit="s",
                chart_id=f"latency-{name}",
            )
        )
        charts.append(
            line_chart(
                f"Error rate, {label}",
                s,
                [("error_rate", "errors", "#c62828")],
                unit="%",
                scale=100,
                chart_id=f"errors-{name}",
            )
        )
    hour, whole = data["series"]["hour"], data["series"]["day"]

    def summary(s):
        rate = "-" if s["error_rate"] is None else f"{s['error_rate'] * 100:.1f} %"
        return (
            f"{s['answered']} answered, p50 {_ms(s['p50_s'])}, p99 {_ms(s['p99_s'])}, "
            f"error rate {rate}"
        )

    return f"""<h1>Overview <small class="muted">{_e(data["at"])}</small></h1>
<div class="cards">{card_html}</div>
<h2>Throughput, latency, errors</h2>
<p>Last hour: {_e(summary(hour))}. Last day: {_e(summary(whole))}.</p>
<div class="charts">{"".join(charts)}</div>
<h2>Per agency (last 24 h)</h2>
<table id="agencies"><thead><tr><th>agency</th><th>total</th>{heads}</tr></thead>
<tbody>{agency_rows}</tbody></table>
<div class="cards" style="margin-top:1em"><div>
<h2>Per TOT (last 24 h)</h2><table><thead><tr><th>TOT</th><th>count</th></tr></thead>
<tbody>{tot_rows}</tbody></table></div><div>
<h2>Queues</h2><table id="queues"><thead><tr><th>queue</th><th>waiting</th><th>oldest</th>
</tr></thead><tbody>{queue_rows}</tbody></table>
<p class="{"err" if failed else "muted"}">{failed} deliveries FAILED (gave up)</p></div><div>
<h2>Workers</h2><table><tbody>
<tr><td>processes</td><td class="n">{_e(w["processes"])} ({_e(alive)} alive)</td></tr>
<tr><td>jobs running</td><td class="n">{w["jobs_running"]}</td></tr>
<tr><td>in flight</td><td class="n">{w["in_flight"]}</td></tr>
<tr><td>crashes</td><td class="n {"err" if w["crashes"] else ""}">{w["crashes"]}</td></tr>
<tr><td>retired (past memory)</td><td class="n">{w["retired"]}</td></tr>
</tbody></table></div><div>
<h2>Listeners</h2><table id="listeners"><tbody>{listener_rows}</tbody></table></div></div>"""


OVERVIEW_JS = """
async function refresh(){
  const r = await fetch('/?part=main', {cache: 'no-store'});
  if (r.ok) document.getElementById('main').innerHTML = await r.text();
}
setInterval(refresh, 5000);
"""


class Overview(resource.Resource):
    isLeaf = True

    def __init__(self, console, session):
        super().__init__()
        self.console, self.s = console, session

    def render_GET(self, request):  # noqa: N802
        part = request.args.get(b"part") == [b"main"]

        def page(data):
            main = overview_main(data)
            if part:
                return _send_html(request, main)
            return _send_html(request, layout(self.s, "Overview", "Overview", main, OVERVIEW_JS))

        return _later(request, self.console.overview(), page)


# -- Message browser --------------------------------------------------------------------------
BROWSER_MAIN = """<h1>Messages</h1>
<form class="filters" id="f">
<label>agency (ORI prefix)<input name="ori" size="11" maxlength="40"></label>
<label>TCN prefix<input name="tcn" size="16" maxlength="40"></label>
<label>TOT<input name="tot" size="5" maxlength="40"></label>
<label>outcome<select name="outcome"><option value="">any</option>
<option value="sre_hit">SRE hit</option><option value="sre_no_hit">SRE no hit</option>
<option value="errt">ERRT</option><option value="duplicate">duplicate</option>
<option value="rejected_no_answer">rejected, no answer</option>
<option value="undeliverable">undeliverable</option>
</select></label>
<label>state<select name="state"><option value="">any</option>{states}</select></label>
<label>since (UTC)<input name="since" size="20" placeholder="2026-12-06T09:00:00Z"></label>
<label>until (UTC)<input name="until" size="20" placeholder="2026-12-06T10:00:00Z"></label>
<label>per page<select name="limit"><option>50</option><option>100</option><option>500</option>
</select></label>
<button id="apply">filter</button> <button type="reset" id="clear">clear</button></form>
<p class="err" id="error"></p>
<div class="pager"><button id="prev">&larr; newer</button><span id="range">loading...</span>
<button id="next">older &rarr;</button></div>
<table id="msgs"><thead><tr>
<th class="sort" data-k="received_at">received (UTC)</th><th class="sort" data-k="tot">TOT</th>
<th class="sort" data-k="ori">ORI</th><th class="sort" data-k="tcn">TCN</th>
<th class="sort" data-k="state">state</th><th class="sort" data-k="response_tot">answer</th>
<th class="sort" data-k="outcome">outcome</th><th class="sort" data-k="transport">via</th>
<th class="sort" data-k="id">message</th></tr></thead><tbody></tbody></table>
<p class="muted">Sorting orders the rows of this page; the API pages newest first.</p>"""

BROWSER_JS = """
const form = document.getElementById('f');
const LABEL = %s;
const BAD = new Set(%s);
let offset = 0, rows = [], total = null, sortKey = null, sortDir = 1;
function iso(t){ return typeof t === 'number' ? new Date(t * 1000).toISOString() : (t || ''); }
function params(){
  const p = new URLSearchParams();
  for (const [k, v] of new FormData(form)) if (String(v).trim()) p.set(k, String(v).trim());
  return p;
}
function fill(){
  const p = new URLSearchParams(location.search);
  for (const el of form.elements) if (el.name && p.has(el.name)) el.value = p.get(el.name);
  offset = parseInt(p.get('offset') || '0', 10) || 0;
}
function render(){
  const view = rows.slice();
  if (sortKey) view.sort((a, b) => String(a[sortKey] ?? '').localeCompare(
      String(b[sortKey] ?? ''), undefined, {numeric: true}) * sortDir);
  document.querySelector('#msgs tbody').innerHTML = view.map(x => {
    const bad = BAD.has(x.outcome) || x.undeliverable;
    const o = (LABEL[x.outcome] || x.outcome || '') + (x.undeliverable ? ', undeliverable' : '');
    return `<tr class="row${bad ? ' bad' : ''}" data-id="${esc(x.id)}"
     data-outcome="${esc(x.outcome)}">
     <td>${esc(iso(x.received_at))}</td><td>${esc(x.tot)}</td><td>${esc(x.ori)}</td>
     <td>${esc(x.tcn)}</td><td>${esc(x.state)}</td><td>${esc(x.response_tot)}</td>
     <td class="o">${esc(o)}</td><td>${esc(x.transport)}</td>
     <td><code>${esc(x.id)}</code></td></tr>`;
  }).join('') || '<tr><td colspan="9" class="muted">no message matches</td></tr>';
  const limit = parseInt(params().get('limit') || '50', 10);
  const last = offset + rows.length;
  document.getElementById('range').textContent = rows.length
    ? `${offset + 1}-${last}` + (total !== null ? ` of ${total}` : '')
    : (total ? `none here, ${total} in all` : 'none');
  document.getElementById('prev').disabled = offset === 0;
  document.getElementById('next').disabled = total !== null ? last >= total : rows.length < limit;
}
async function load(){
  const p = params();
  p.set('limit', p.get('limit') || '50');
  if (offset) p.set('offset', offset);
  history.replaceState(null, '', '/messages?' + p.toString());
  const r = await fetch('/api/messages?' + p.toString(), {cache: 'no-store'});
  const body = await r.json();
  const error = document.getElementById('error');
  if (!r.ok) {
    error.textContent = body.error || ('error ' + r.status);
    rows = []; total = null; render(); return;
  }
  error.textContent = '';
  rows = body.messages; total = (typeof body.total === 'number') ? body.total : null;
  if (rows.length) {
    const q = new URLSearchParams(); rows.forEach(x => q.append('id', x.id));
    const o = await fetch('/api/console/outcomes?' + q.toString(), {cache: 'no-store'});
    if (o.ok) { const m = await o.json(); rows.forEach(x => {
      const v = m[x.id] || {}; x.outcome = v.outcome; x.undeliverable = v.undeliverable; }); }
  }
  render();
}
form.onsubmit = e => { e.preventDefault(); offset = 0; load(); };
document.getElementById('clear').onclick = () => { setTimeout(() => { offset = 0; load(); }, 0); };
document.getElementById('prev').onclick = () => {
  offset = Math.max(0, offset - parseInt(params().get('limit') || '50', 10)); load(); };
document.getElementById('next').onclick = () => {
  offset += parseInt(params().get('limit') || '50', 10); load(); };
document.querySelectorAll('th.sort').forEach(th => th.onclick = () => {
  const k = th.dataset.k; sortDir = (sortKey === k) ? -sortDir : 1; sortKey = k; render(); });
document.querySelector('#msgs tbody').onclick = e => {
  const tr = e.target.closest('tr.row');
  if (tr) location.href = '/message/' + encodeURIComponent(tr.dataset.id); };
fill(); load();
"""


class Browser(resource.Resource):
    isLeaf = True

    def __init__(self, console, session):
        super().__init__()
        self.s = session

    def render_GET(self, request):  # noqa: N802
        states = "".join(f"<option>{s}</option>" for s in STATES)
        script = BROWSER_JS % (json.dumps(OUTCOME_LABELS), json.dumps(list(BAD)))
        main = BROWSER_MAIN.replace("{states}", states)
        return _send_html(request, layout(self.s, "Messages", "Messages", main, script))


# -- Message view -----------------------------------------------------------------------------
def _threshold(app, leg: str, fingers: int) -> float | None:
    from .picture import gallery_threshold

    if app.config.match_threshold is not None:
        return float(app.config.match_threshold)
    return gallery_threshold(app.galleries.get(leg), fingers)


def message_detail(app, msg_id: str, role: str) -> dict:
    """One message for the Message view; KeyError when there is none.

    The base (message, transitions, deliveries) is what the admin API serves, redacted for
    every role but ``operator``; the rest is derived from it (durations, attempts) or, for
    operators only, read from sealed blobs (IAQ and IAR texts)."""
    journal = app.journal
    msg = journal.message(msg_id)
    outbound = journal.outbound_for(msg_id)
    base = msg.to_dict()
    base.pop("payload", None)
    base.pop("response", None)
    base["has_response"] = msg.response is not None
    base["transitions"] = journal.transitions(msg_id)
    base["deliveries"] = [
        {
            "kind": o.kind,
            "destination": o.destination,
            "state": o.state,
            "attempts": o.attempts,
            "last_error": o.last_error,
            "sent_at": o.sent_at,
        }
        for o in outbound
    ]
    operator = role == OPERATOR
    body = base if operator else redact(base)
    body["has_response"] = base["has_response"]
    transitions = body.get("transitions") or []
    timeline = []
    previous = msg.received_at
    for t in transitions:
        at = t.get("at") or previous
        timeline.append(
            dict(t, at_iso=iso_utc(at), since_previous_ms=round((at - previous) * 1000, 1))
        )
        previous = at
    body["timeline"] = timeline
    body["total_ms"] = round((previous - msg.received_at) * 1000, 1)
    for o, d in zip(outbound, body.get("deliveries") or [], strict=False):
        meta = _meta(o.meta)
        d["tot"] = meta.get("tot")
        d["sent_at_iso"] = iso_utc(o.sent_at)
        d["attempt_log"] = [
            {"at": iso_utc(t["at"]), "outcome": t.get("outcome")}
            for t in transitions
            if t.get("destination") == o.destination
        ]
    summary = body.get("summary") or {}
    fingers = len(summary.get("fingers") or [])
    search = {}
    for leg in ("fbi", "dhs"):
        value = summary.get(leg)
        if not isinstance(value, dict):
            continue
        item = dict(value)
        if operator and "score" in item:
            item["threshold"] = _threshold(app, leg, fingers)
        search[leg] = item
    body["search"] = search
    body["exchange"] = _exchange(app, msg, outbound, transitions, operator)
    body["match_picture"] = operator and any(v.get("hit") for v in search.values())
    body["received_iso"] = iso_utc(msg.received_at)
    body["updated_iso"] = iso_utc(msg.updated_at)
    body["answered"] = msg.state in TERMINAL
    return body


def _meta(text) -> dict:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _exchange(app, msg, outbound, transitions, operator: bool) -> list[dict]:
    """The IAQ sent for this booking and the IAR that answered it (or, for an IAR, the
    booking it answers): direction, time, state, and for operators the text."""
    out = []
    for o in outbound:
        meta = _meta(o.meta)
        if meta.get("tot") not in ("IAQ", "IAR"):
            continue
        item = {
            "direction": "sent",
            "tot": meta["tot"],
            "destination": o.destination,
            "state": o.state,
            "at": iso_utc(o.sent_at or o.created_at),
        }
        if operator:
            item["text"] = _text(app, o.payload)
        out.append(item)
    for t in transitions:
        outcome = t.get("outcome") or ""
        found = re.match(r"IAR (?:received as|linked to) (M[0-9]{13}-[0-9a-f]{10})", outcome)
        if not found:
            continue
        other = found.group(1)
        item = {"direction": "received", "tot": "IAR", "message": other, "at": iso_utc(t["at"])}
        if operator:
            try:
                item["text"] = _text(app, app.journal.message(other).payload)
            except KeyError:
                pass
        out.append(item)
    return out


def _text(app, digest: str) -> str | None:
    try:
        return app.journal.payload(digest).decode("ascii", "replace")[:20000]
    except KeyError:
        return None  # purged (retention)


def _duration(ms) -> str:
    return "" if ms is None else f"{ms:.0f} ms"


def _kv(rows) -> str:
    return "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)


def message_main(body: dict, operator: bool) -> str:
    mid = body["id"]
    head = _kv(
        [
            ("message", f"<code>{_e(mid)}</code>"),
            (
                "TOT / ORI / TCN",
                f"{_e(body.get('tot'))} / {_e(body.get('ori'))} / {_e(body.get('tcn'))}",
            ),
            ("state", f"<strong>{_e(body.get('state'))}</strong>"),
            ("answer", f"{_e(body.get('response_tot') or '-')} {_e(body.get('response_tcn'))}"),
            ("received / last change", f"{_e(body['received_iso'])} / {_e(body['updated_iso'])}"),
            ("via", f"{_e(body.get('transport'))} from {_e(body.get('peer'))}"),
            ("duplicate of", _e(body.get("duplicate_of") or "-")),
        ]
    )
    timeline = "".join(
        f"<tr><td>{_e(t['at_iso'])}</td><td class='n'>+{t['since_previous_ms']:.0f} ms</td>"
        f"<td>{_e(t.get('from_state') or '')} &rarr; <strong>{_e(t.get('to_state'))}</strong></td>"
        f"<td>{_e(t.get('destination') or '')}</td><td>{_e(t.get('outcome') or '')}</td>"
        f"<td class='n'>{_duration(t.get('duration_ms'))}</td></tr>"
        for t in body["timeline"]
    )
    deliveries = (
        "".join(
            f"<tr class='{'bad' if d.get('state') == 'FAILED' else ''}'><td>{_e(d.get('tot'))}</td>"
            f"<td>{_e(d.get('kind'))}</td><td>{_e(d.get('destination'))}</td>"
            f"<td class='{'err' if d.get('state') in ('FAILED', 'RETRYING') else ''}'>"
            f"{_e(d.get('state'))}</td><td class='n'>{_e(d.get('attempts'))}</td>"
            f"<td>{_e(d.get('sent_at_iso') or '')}</td><td>{_e(d.get('last_error') or '')}"
            + "".join(
                f"<div class='muted'>{_e(a['at'])}: {_e(a['outcome'])}</div>"
                for a in d.get("attempt_log", [])
            )
            + "</td></tr>"
            for d in body.get("deliveries") or []
        )
        or "<tr><td colspan='7' class='muted'>no delivery</td></tr>"
    )
    summary = body.get("summary") or {}
    findings = (
        "".join(
            f"<tr><td class='{'err' if f.get('severity') == 'error' else 'warn'}'>"
            f"{_e(f.get('severity'))}</td><td><code>{_e(f.get('code'))}</code></td>"
            f"<td>{_e(f.get('location'))}</td>"
            + (f"<td>{_e(f.get('message'))}</td>" if operator else "")
            + "</tr>"
            for f in summary.get("findings") or []
        )
        or "<tr><td colspan='4' class='muted'>no finding</td></tr>"
    )
    search_rows = ""
    for leg, r in body["search"].items():
        verdict = "<span class='hit'>HIT</span>" if r.get("hit") else "no hit"
        if leg == "dhs" and r.get("searched") is False:
            verdict = "not searched"
        extra = ""
        if operator and "score" in r:
            threshold = r.get("threshold")
            rel = ""
            if threshold is not None:
                rel = " &ge; " if r["score"] >= threshold else " &lt; "
                rel += f"threshold {threshold:.4f}"
            extra = (
                f"candidate <code>{_e(r.get('candidate'))}</code>, score "
                f"<strong>{r['score']:.4f}</strong>{rel}"
            )
            if r.get("priority"):
                extra += f"; priority {_e(r['priority'])}"
            if r.get("why"):
                extra += f"; {_e(r['why'])}"
        search_rows += f"<tr><th>{leg.upper()}</th><td>{verdict}</td><td>{extra}</td></tr>"
    if not search_rows:
        search_rows = "<tr><td colspan='3' class='muted'>no search</td></tr>"
    exchange = (
        "".join(
            f"<tr><td>{_e(x['direction'])}</td><td>{_e(x['tot'])}</td>"
            f"<td>{_e(x.get('destination') or '')}"
            + (
                f"<a href='/message/{_e(x['message'])}'><code>{_e(x['message'])}</code></a>"
                if x.get("message")
                else ""
            )
            + f"</td><td>{_e(x.get('state') or '')}</td><td>{_e(x.get('at'))}</td></tr>"
            + (f"<tr><td colspan='5'><pre>{_e(x['text'])}</pre></td></tr>" if x.get("text") else "")
            for x in body["exchange"]
        )
        or "<tr><td colspan='5' class='muted'>no IAQ or IAR</td></tr>"
    )
    actions = ""
    picture = ""
    if operator:
        actions = (
            "<h2>Actions</h2><p>"
            f"<a id='dl-payload' href='/api/messages/{_e(mid)}/payload'>download the submission</a>"
        )
        if body.get("has_response"):
            actions += (
                f" · <a id='dl-response' href='/api/messages/{_e(mid)}/response'>"
                "download the response</a>"
            )
        if not body["answered"]:
            actions += " · <button id='reprocess'>reprocess</button>"
        actions += " <span id='done' class='muted'></span></p>"
        if body["match_picture"]:
            picture = (
                "<h2>Match picture</h2><p class='muted'>Probe (left) and candidate (right); "
                "paired minutiae in red, joined in green.</p>"
                f"<img class='match' id='match' alt='match picture' src='/match/{_e(mid)}.png'>"
            )
    else:
        actions = (
            "<p class='muted'>Personal fields, finding texts, candidates and scores are shown "
            "to operators only.</p>"
        )
    return f"""<h1>Message <code>{_e(mid)}</code></h1>
<table id="head">{head}</table>{actions}
<h2>Timeline <small class="muted">{body["total_ms"]:.0f} ms from receipt to last step</small></h2>
<table id="timeline"><thead><tr><th>time (UTC)</th><th>after</th><th>state</th>
<th>destination</th><th>outcome</th><th>step took</th></tr></thead><tbody>{timeline}</tbody></table>
<h2>Deliveries</h2><table id="deliveries"><thead><tr><th>what</th><th>via</th><th>to</th>
<th>state</th><th>attempts</th><th>sent</th><th>attempts and errors</th></tr></thead>
<tbody>{deliveries}</tbody></table>
<h2>Findings</h2><table id="findings"><thead><tr><th>severity</th><th>rule</th><th>field</th>
{"<th>message</th>" if operator else ""}</tr></thead><tbody>{findings}</tbody></table>
<h2>Searches</h2><table id="search"><tbody>{search_rows}</tbody></table>
<h2>IAQ / IAR exchange</h2><table id="exchange"><thead><tr><th></th><th>TOT</th><th>with</th>
<th>state</th><th>time (UTC)</th></tr></thead><tbody>{exchange}</tbody></table>
{picture}"""


REPROCESS_JS = """
const b = document.getElementById('reprocess');
if (b) b.onclick = async () => {
  const r = await fetch(location.pathname.replace('/message/', '/api/messages/') + '/reprocess',
    {method: 'POST', headers: {'X-CSRF-Token': CSRF}});
  const body = await r.json();
  document.getElementById('done').textContent = r.ok ? 'reprocessing' : (body.error || r.status);
};
"""


class MessagePage(resource.Resource):
    isLeaf = True

    def __init__(self, console, session, msg_id: str):
        super().__init__()
        self.console, self.s, self.msg_id = console, session, msg_id

    def render_GET(self, request):  # noqa: N802
        app = self.console.app
        try:
            body = message_detail(app, self.msg_id, self.s.role)
        except KeyError:
            request.setResponseCode(404)
            main = f"<h1>No message <code>{_e(self.msg_id)}</code></h1>"
            return _send_html(request, layout(self.s, "Messages", "not found", main))
        operator = self.s.role == OPERATOR
        if operator:
            self.console.audit_view(request, self.s, self.msg_id, "personal fields")
        main = message_main(body, operator)
        return _send_html(
            request, layout(self.s, "Messages", f"message {self.msg_id}", main, REPROCESS_JS)
        )


class MatchPicture(resource.Resource):
    """``GET /match/<id>.png``: the match picture of a hit, drawn in a worker (operators)."""

    isLeaf = True

    def __init__(self, console, session, msg_id: str):
        super().__init__()
        self.console, self.s, self.msg_id = console, session, msg_id

    def render_GET(self, request):  # noqa: N802
        from .picture import match_picture

        app = self.console.app
        try:
            msg = app.journal.message(self.msg_id)
            payload = app.journal.payload(msg.payload)
        except KeyError:
            return _send_json(request, {"error": "no such message, or its payload was purged"}, 404)
        summary = msg.to_dict()["summary"] or {}
        leg = next(
            (
                k
                for k in ("fbi", "dhs")
                if isinstance(summary.get(k), dict) and summary[k].get("hit")
            ),
            None,
        )
        if leg is None or not app.galleries.get(leg):
            return _send_json(request, {"error": "no hit to draw"}, 404)
        positions = tuple(summary.get("fingers") or ())
        threshold = _threshold(app, leg, len(positions))
        self.console.audit_view(request, self.s, self.msg_id, "match picture")
        key = (self.msg_id, summary[leg]["candidate"], threshold)
        pictures = self.console.pictures
        if key in pictures:
            d = defer.succeed(pictures[key])
        else:
            # one picture at a time in the workers: the pipeline keeps its share of them
            d = self.console.drawing.run(
                app.pool.run,
                match_picture,
                payload,
                app.galleries[leg],
                app.journal.location,  # the SQLite file or the PostgreSQL URL, as the workers
                leg,
                summary[leg]["candidate"],
                positions,
                threshold,
                str(app.journal.key_file) if app.journal.url else None,
            )

            def keep(result):
                pictures[key] = result
                while len(pictures) > MAX_PICTURES:
                    pictures.pop(next(iter(pictures)))
                return result

            d.addCallback(keep)

        def render(result) -> bytes:
            if "png" in result:
                request.setHeader(b"content-type", b"image/png")
                return result["png"]
            return _send_json(request, {"error": result["error"]}, 404)

        return _later(request, d, render, failed="the picture could not be drawn")


# -- JSON -------------------------------------------------------------------------------------
class _JsonLeaf(resource.Resource):
    isLeaf = True

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def render_GET(self, request):  # noqa: N802
        code, body = self.fn(request)
        return _send_json(request, body, code)


def _later(
    request, d: defer.Deferred, render, failed: str = "the figures could not be read"
) -> int:
    """Answer ``request`` with ``render(result)`` once ``d`` fires (500 saying ``failed`` if it
    fails); nothing when the client has gone meanwhile."""
    finished: list = []
    request.notifyFinish().addBoth(finished.append)

    def answer(result):
        if not finished:
            request.write(render(result))
            request.finish()

    def broke(failure):
        if not finished:
            request.write(_send_json(request, {"error": failed}, 500))
            request.finish()

    d.addCallbacks(answer, broke)
    return server.NOT_DONE_YET


class _DeferredJson(resource.Resource):
    isLeaf = True

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def render_GET(self, request):  # noqa: N802
        return _later(request, self.fn(), lambda body: _send_json(request, body))


class Console:
    """Routes of the console, called by the Guard once a session is established."""

    def __init__(self, app):
        self.app = app
        self._overview: tuple[float, dict] | None = None
        self.drawing = defer.DeferredSemaphore(1)  # match pictures drawn one at a time
        self.pictures: dict = {}  # the last MAX_PICTURES drawn, oldest first
        self._computing: defer.Deferred | None = None
        self._waiting: list[defer.Deferred] = []
        metrics.ensure_indexes(app.journal)

    def overview(self) -> defer.Deferred:
        """The Overview's data: the journal's figures computed in a thread on a read-only
        connection of its own (the reactor serves on meanwhile), at most once per
        :data:`OVERVIEW_TTL` seconds for everyone (no personal field: every role may share
        it), with the workers' and listeners' status of the moment.  Figures up to
        :data:`OVERVIEW_STALE` seconds old are answered at once while fresh ones are computed
        (the page polls every 5 s, so it shows the fresh ones at its next poll)."""
        now = time.time()
        kept = self._overview
        if kept is not None and now - kept[0] < OVERVIEW_STALE:
            if now - kept[0] >= OVERVIEW_TTL:
                self._refresh(now)  # in the background: this answer is at most STALE old
            return defer.succeed(kept[1] | status(self.app))
        self._refresh(now)
        d: defer.Deferred = defer.Deferred()
        self._waiting.append(d)
        return d.addCallback(lambda data: data | status(self.app))

    def _refresh(self, now: float) -> None:
        """Compute the figures in a thread unless that is already under way."""
        if self._computing is None:
            journal = self.app.journal

            def work():
                return metrics.overview(journal, now)

            def done(data):
                self._overview = (now, data)
                self._computing = None
                waiting, self._waiting = self._waiting, []
                for d in waiting:
                    d.callback(data)

            def failed(failure):
                self._computing = None
                waiting, self._waiting = self._waiting, []
                for d in waiting:
                    d.errback(failure)

            self._computing = threads.deferToThread(work).addCallbacks(done, failed)

    def audit_view(self, request, session, msg_id: str, what: str) -> None:
        self.app.audit.record(
            "message.view",
            actor=session.user,
            channel="admin",
            user=session.user,
            role=session.role,
            remote=_remote(request),
            message_id=msg_id[:64],
            what=what,
        )

    def page(self, path: bytes, request, session):
        """The console resource for a first path segment, or None when it is not ours."""
        rest = [p.decode("utf-8", "replace") for p in request.postpath]
        if path == b"" and not rest:
            return Overview(self, session)
        if path == b"messages" and not any(rest):
            return Browser(self, session)
        if path == b"message" and len(rest) == 1 and MESSAGE_ID.match(rest[0]):
            return MessagePage(self, session, rest[0])
        if path == b"match" and len(rest) == 1 and rest[0].endswith(".png"):
            msg_id = rest[0][: -len(".png")]
            if session.role != OPERATOR:
                return _Forbidden()
            if MESSAGE_ID.match(msg_id):
                return MatchPicture(self, session, msg_id)
        return None

    def api(self, parts: list[str], session):
        """``/api/console/...`` (``parts`` after ``console``), or None."""
        head = parts[0] if parts else ""
        if head == "overview" and len(parts) == 1:
            return _DeferredJson(self.overview)
        if head == "outcomes" and len(parts) == 1:

            def answer(request):
                ids = [v.decode("ascii", "replace") for v in request.args.get(b"id", [])]
                if len(ids) > MAX_IDS or not all(MESSAGE_ID.match(i) for i in ids):
                    return 400, {"error": f"id: at most {MAX_IDS} message ids", "parameter": "id"}
                return 200, metrics.outcomes(self.app.journal, ids)

            return _JsonLeaf(answer)
        if head == "messages" and len(parts) == 2 and MESSAGE_ID.match(parts[1]):
            msg_id = parts[1]

            def detail(request):
                try:
                    body = message_detail(self.app, msg_id, session.role)
                except KeyError:
                    return 404, {"error": "no such message"}
                if session.role == OPERATOR:
                    self.audit_view(request, session, msg_id, "personal fields")
                return 200, body

            return _JsonLeaf(detail)
        return None


class AuditView(resource.Resource):
    """``/audit`` for auditors: the audit trail page of :mod:`gateway.admin.auth` (records,
    event filter, the chain's verification state, "verify now") inside the console's bar."""

    isLeaf = True

    def __init__(self, session):
        super().__init__()
        self.s = session

    def render_GET(self, request):  # noqa: N802
        from .auth import AUDIT_PAGE

        page = AUDIT_PAGE.replace("</head>", f"<style>{CSS} body{{margin:0}}</style></head>", 1)
        page = page.replace("<body>", "<body>" + header(self.s, "Audit trail") + "<main>", 1)
        page = page.replace("</body>", "</main></body>", 1)
        return _send_html(request, page)


class _Forbidden(resource.Resource):
    isLeaf = True

    def render(self, request):
        return _send_json(request, {"error": "your role does not allow this"}, 403)
