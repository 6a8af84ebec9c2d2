"""Access control of the admin listener: Host check, login sessions, roles, CSRF, auditing.

:class:`Guard` is the root resource of the admin site; it wraps the dashboard and JSON API of
:mod:`gateway.admin.web` (which know nothing of users) and decides, per request:

1. ``Host`` not in ``[admin] hosts`` (default: the listener's own address as IP and as
   ``localhost``, with the port) -> 421, before anything else (DNS rebinding, RFC 9110 15.5.20).
2. ``/login`` (GET form, POST ``username`` + ``password``) and ``/health`` (up/down and counts
   only, for probes) are open; every other URL needs a session: without one, ``/api/*``
   answers 401 and HTML pages redirect to ``/login``.
3. Every request other than GET/HEAD carries the session's CSRF token (header
   ``X-CSRF-Token`` or form field ``csrf_token``) and, when the browser sends one, an
   ``Origin`` of this host; ``/login`` is exempt from the token (it has no session yet) but
   not from the Origin check.
4. Roles (:mod:`gateway.store.users`): viewers and auditors get the message API redacted
   (:mod:`gateway.admin.redact`); an operator's message view, downloads and reprocessing are
   audit records; only auditors read the audit trail (``/audit``, ``/api/audit``).

Sessions live in memory (a restart logs everyone out): a random 256-bit token in a cookie
(HttpOnly, SameSite=Strict, Secure on TLS), ended by logout, by ``[admin]
session_idle_minutes`` without activity (the pages' own polling of the lists does not count),
or when the user is disabled, changes role or changes password.
``[admin] lockout_attempts`` failed logins in a row lock the account for ``lockout_minutes``.
Password checks (scrypt) run in threads, two at a time.
"""

from __future__ import annotations

import html
import json
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from twisted.internet import defer, threads
from twisted.web import resource, server

from gateway.store.readonly import read_only
from gateway.store.users import MAX_PASSWORD, check_password

from .console import AuditView, Console
from .redact import redact

COOKIE = b"ebts_session"
MAX_SESSIONS = 1000
MAX_FORM = 8192  # bytes of a login form
API_ROLES = {"operator", "viewer", "auditor"}


@dataclass
class Session:
    token: str
    user: str
    role: str
    csrf: str
    created: float
    last_seen: float
    remote: str | None = None
    meta: dict = field(default_factory=dict)


class Sessions:
    """Live sessions by token; idle ones are dropped when looked up or when the table is full."""

    def __init__(self, idle_seconds: float, clock=time.time):
        self.idle = idle_seconds
        self.clock = clock
        self._by_token: dict[str, Session] = {}

    def new(self, user: str, role: str, remote: str | None) -> Session:
        now = self.clock()
        if len(self._by_token) >= MAX_SESSIONS:
            self.sweep()
            while len(self._by_token) >= MAX_SESSIONS:  # still full: the least recently used
                oldest = min(self._by_token.values(), key=lambda s: s.last_seen)
                self._by_token.pop(oldest.token)
        session = Session(
            secrets.token_urlsafe(32), user, role, secrets.token_urlsafe(32), now, now, remote
        )
        self._by_token[session.token] = session
        return session

    def sweep(self) -> list[Session]:
        now = self.clock()
        gone = [s for s in self._by_token.values() if now - s.last_seen > self.idle]
        for s in gone:
            self._by_token.pop(s.token, None)
        return gone

    def get(self, token: str | None, *, touch: bool = True) -> Session | None:
        """The live session of ``token``; ``touch``: the request is user activity (a page's
        periodic poll is not, so an unattended dashboard still times out)."""
        if not token:
            return None
        session = self._by_token.get(token)
        if session is None:
            return None
        now = self.clock()
        if now - session.last_seen > self.idle:
            self._by_token.pop(token, None)
            session.meta["expired"] = True
            return session
        if touch:
            session.last_seen = now
        return session

    def end(self, token: str) -> None:
        self._by_token.pop(token, None)

    def end_user(self, user: str) -> None:
        for s in [s for s in self._by_token.values() if s.user == user]:
            self._by_token.pop(s.token, None)

    def __len__(self) -> int:
        return len(self._by_token)


# -- small responses --------------------------------------------------------------------------
def _security_headers(request) -> None:
    request.setHeader(b"cache-control", b"no-store")
    request.setHeader(b"x-frame-options", b"DENY")
    request.setHeader(b"x-content-type-options", b"nosniff")
    # same-origin, not no-referrer: under no-referrer a browser sends "Origin: null" with a
    # form POST (Fetch standard, "serializing a request origin"), which the Origin check
    # refuses, so nobody could sign in from a browser; other sites still get no referrer.
    request.setHeader(b"referrer-policy", b"same-origin")


def _json(request, body, code: int = 200) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(body, indent=1, default=str).encode()


class _Fixed(resource.Resource):
    """A leaf answering every method with one status and a short JSON or text body."""

    isLeaf = True

    def __init__(self, code: int, message: str, *, location: bytes | None = None):
        super().__init__()
        self.code, self.message, self.location = code, message, location

    def render(self, request):
        if self.location is not None:
            request.setHeader(b"location", self.location)
        return _json(request, {"error": self.message}, self.code)


def _misdirected():
    return _Fixed(421, "misdirected request: this Host is not served here")


def _unauthorized():
    return _Fixed(401, "login required")


def _forbidden(why: str = "your role does not allow this"):
    return _Fixed(403, why)


def _to_login():
    return _Fixed(303, "login required", location=b"/login")


def _arg(request, name: str, limit: int) -> str | None:
    values = request.args.get(name.encode())
    if not values:
        return None
    value = values[0]
    if len(value) > limit:
        return None
    return value.decode("utf-8", "replace")


def _wants_json(request) -> bool:
    accept = (_header(request, "accept") or "").lower()
    return "application/json" in accept and "text/html" not in accept


def _header(request, name: str) -> str | None:
    value = request.getHeader(name.encode())
    return None if value is None else value.decode("latin-1")


# What the dashboard and the audit page fetch every few seconds by themselves: these keep a
# session alive only as long as the user does something else (CJIS 5.5.5 session lock).
POLLS = frozenset({(b"api", b"stats"), (b"api", b"messages"), (b"api", b"audit")})


def _is_poll(request) -> bool:
    if request.method != b"GET":
        return False
    parts = tuple(request.prepath[-1:] + request.postpath)
    return parts in POLLS


def _remote(request) -> str | None:
    addr = request.getClientAddress()
    return getattr(addr, "host", None)


# -- the guard --------------------------------------------------------------------------------
class Guard(resource.Resource):
    """The admin site's root: every request passes here first (see the module docstring)."""

    def __init__(self, app, inner: resource.Resource):
        super().__init__()
        self.app = app
        self.inner = inner
        self.settings = app.config.admin
        self.sessions = Sessions(self.settings.session_idle_minutes * 60)
        self.hashing = defer.DeferredSemaphore(2)
        self.chain: dict = {"verified": None}
        self._verifying = False
        self.console = Console(app)  # the console's pages and /api/console (issue 19)

    # Twisted calls this with the first path segment; request.postpath holds the rest.
    def getChildWithDefault(self, path, request):  # noqa: N802 - Twisted API
        _security_headers(request)
        if not self.host_allowed(request):
            return _misdirected()
        if request.method not in (b"GET", b"HEAD") and not self._origin_ok(request):
            return _forbidden("cross-origin request refused")
        if path == b"login":
            return Login(self)
        if path == b"health":
            return self.inner.getChildWithDefault(path, request)
        session = self.session(request)
        if session is None:
            return _unauthorized() if path == b"api" else _to_login()
        if request.method not in (b"GET", b"HEAD"):
            token = _header(request, "x-csrf-token") or _arg(request, "csrf_token", 200)
            if not token or not secrets.compare_digest(str(token), session.csrf):
                return _forbidden("missing or wrong CSRF token")
        if path == b"logout":
            return Logout(self, session)
        if path == b"audit":
            return AuditView(session) if session.role == "auditor" else _forbidden()
        if path == b"api":
            return self._api(request, session)
        page = self.console.page(path, request, session)
        if page is not None:
            return page
        if path == b"":
            return _WithBar(self.inner.getChildWithDefault(path, request), session)
        return _Fixed(404, "no such page")

    # -- checks --------------------------------------------------------------------------------
    def host_allowed(self, request) -> bool:
        host = (_header(request, "host") or "").strip().lower()
        if not host:
            return False
        if self.settings.hosts is not None:
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            return host in self.settings.hosts or name in self.settings.hosts
        local = request.getHost()
        port = local.port
        ip = local.host.lower()
        ip = f"[{ip}]" if ":" in ip else ip
        allowed = {f"{ip}:{port}", f"localhost:{port}"}
        default_port = 443 if request.isSecure() else 80
        if port == default_port:
            allowed |= {ip, "localhost"}
        return host in allowed

    def _origin_ok(self, request) -> bool:
        origin = _header(request, "origin") or _header(request, "referer")
        if not origin or origin == "null":
            return origin is None  # a "null" Origin (sandboxed frame, file:) is refused
        return urlsplit(origin).netloc.lower() == (_header(request, "host") or "").lower()

    def session(self, request) -> Session | None:
        token = request.getCookie(COOKIE)
        session = self.sessions.get(
            token.decode("ascii", "replace") if token else None, touch=not _is_poll(request)
        )
        if session is None:
            return None
        if session.meta.get("expired"):
            self.app.audit.record(
                "admin.session_expired", channel="admin", user=session.user, remote=_remote(request)
            )
            return None
        user = self.app.users.get(session.user)
        if (
            user is None
            or user.disabled
            or user.role != session.role
            or user.changed_at > session.created
        ):
            self.sessions.end(session.token)
            return None
        return session

    # -- /api ----------------------------------------------------------------------------------
    def _api(self, request, session: Session):
        parts = [p.decode("utf-8", "replace") for p in request.postpath]
        head = parts[0] if parts else ""
        if head == "session":
            return _Info(session, self.settings.session_idle_minutes)
        if head == "stats":
            return _Delegate(self.inner.children[b"api"].children[b"stats"])
        if head == "console":
            return self.console.api(parts[1:], session) or _Fixed(404, "no such resource")
        if head == "audit":
            if session.role != "auditor":
                return _forbidden()
            return AuditApi(self, verify=parts[1:2] == ["verify"])
        if head == "messages":
            messages = self.inner.children[b"api"].children[b"messages"]
            if len(parts) >= 3 and parts[1] and parts[2]:
                if session.role != "operator":
                    return _forbidden()
                if parts[2] in ("payload", "response") and len(parts) == 3:
                    return Download(self, session, parts[1], parts[2])
                if parts[2] == "reprocess" and len(parts) == 3:
                    return Reprocess(self, session, parts[1])
                return _Fixed(404, "no such resource")
            detail = len(parts) >= 2 and bool(parts[1])
            if session.role == "operator":
                if detail:
                    return _Delegate(messages, audit=(self, session, parts[1]))
                return _Delegate(messages)
            return _Delegate(messages, post=redact)
        return _Fixed(404, "no such resource")

    # -- audit chain state (verified in a thread with its own read-only connection) ------------
    def verify_chain(self) -> defer.Deferred:
        journal = self.app.journal
        audit = self.app.audit

        def work():
            with read_only(journal) as db:
                return audit.verify(db)

        def done(verdict):
            self.chain = {
                "verified": time.time(),
                "whole": verdict.ok,
                "records": verdict.checked,
                "broken_record": verdict.broken_id,
                "reason": verdict.reason,
            }
            return self.chain

        return threads.deferToThread(work).addCallback(done)


class _Delegate(resource.Resource):
    """Hand the request to a leaf of the inner API (one path segment consumed), optionally
    redacting its JSON answer or auditing an operator's view of a message."""

    isLeaf = True

    def __init__(self, leaf, *, post=None, audit=None):
        super().__init__()
        self.leaf, self.post, self.audit = leaf, post, audit

    def render(self, request):
        request.prepath.append(request.postpath.pop(0))
        body = self.leaf.render(request)
        if not isinstance(body, bytes):
            return body
        if self.post is not None:
            try:
                body = json.dumps(self.post(json.loads(body)), indent=1, default=str).encode()
            except ValueError:
                return _json(request, {"error": "answer withheld"}, 500)
        if self.audit is not None and request.code == 200:
            guard, session, msg_id = self.audit
            guard.app.audit.record(
                "message.view",
                actor=session.user,
                channel="admin",
                user=session.user,
                role=session.role,
                remote=_remote(request),
                message_id=msg_id[:64],
                what="personal fields",
            )
        return body


class _Info(resource.Resource):
    isLeaf = True

    def __init__(self, session: Session, idle_minutes: float):
        super().__init__()
        self.s, self.idle = session, idle_minutes

    def render_GET(self, request):  # noqa: N802
        return _json(
            request,
            {
                "user": self.s.user,
                "role": self.s.role,
                "csrf_token": self.s.csrf,
                "idle_timeout_minutes": self.idle,
            },
        )


# -- login / logout ---------------------------------------------------------------------------
LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>EBTS gateway: sign in</title>
<style>body{{font-family:system-ui,sans-serif;margin:3em auto;max-width:22em;color:#222}}
label{{display:block;margin:.6em 0}} input{{width:100%}} .e{{color:#b00}}</style></head><body>
<h1>EBTS gateway</h1><p class="e">{error}</p>
<form method="post" action="/login">
<label>user <input name="username" autocomplete="username" maxlength="64" required></label>
<label>password <input name="password" type="password" autocomplete="current-password"
 maxlength="1024" required></label>
<button>sign in</button></form>
<p><small>Access is recorded (CJIS Security Policy 5.4).</small></p></body></html>
"""


class Login(resource.Resource):
    isLeaf = True

    def __init__(self, guard: Guard):
        super().__init__()
        self.guard = guard

    def render_GET(self, request):  # noqa: N802
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return LOGIN_PAGE.format(error="").encode()

    def _fail(self, request, code=401, message="login failed"):
        if _wants_json(request):
            return _json(request, {"error": message}, code)
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return LOGIN_PAGE.format(error=html.escape(message)).encode()

    def render_POST(self, request):  # noqa: N802
        length = _int(_header(request, "content-length"), 0, 2**62)
        name = _arg(request, "username", 64)
        password = _arg(request, "password", MAX_PASSWORD)
        if length > MAX_FORM or not name or not password:
            return self._fail(request, 400, "username and password are required")
        app = self.guard.app
        user = app.users.get(name)
        remote = _remote(request)
        stored = user.password if user and not user.disabled else None
        d = self.guard.hashing.run(threads.deferToThread, check_password, stored, password)
        finished: list[object] = []
        request.notifyFinish().addBoth(finished.append)

        def decided(ok: bool):
            if finished:
                return  # the client went away; nothing to answer (the attempt still counts)
            settings = self.guard.settings
            current = app.users.get(name)
            now = time.time()
            if current is None:
                app.audit.record(
                    "admin.login_failed", channel="admin", remote=remote, reason="unknown user"
                )
            elif current.disabled:
                app.audit.record(
                    "admin.login_failed",
                    channel="admin",
                    user=name,
                    remote=remote,
                    reason="account disabled",
                )
            elif current.locked(now):
                app.audit.record(
                    "admin.login_failed",
                    channel="admin",
                    user=name,
                    remote=remote,
                    reason="account locked",
                )
            elif not ok:
                app.audit.record(
                    "admin.login_failed",
                    channel="admin",
                    user=name,
                    remote=remote,
                    reason="wrong password",
                )
                if app.users.login_failed(
                    name,
                    attempts=settings.lockout_attempts,
                    lock_seconds=settings.lockout_minutes * 60,
                ):
                    app.audit.record(
                        "admin.lockout",
                        channel="admin",
                        user=name,
                        remote=remote,
                        count=settings.lockout_attempts,
                        detail=f"locked for {settings.lockout_minutes:g} minutes",
                    )
            else:
                app.users.login_succeeded(name)
                session = self.guard.sessions.new(current.name, current.role, remote)
                app.audit.record(
                    "admin.login",
                    actor=current.name,
                    channel="admin",
                    user=current.name,
                    role=current.role,
                    remote=remote,
                )
                request.addCookie(
                    COOKIE,
                    session.token.encode(),
                    path=b"/",
                    httpOnly=True,
                    secure=request.isSecure(),
                    sameSite=b"strict",
                )
                if _wants_json(request):
                    body = _json(
                        request,
                        {"user": current.name, "role": current.role, "csrf_token": session.csrf},
                    )
                else:
                    request.setResponseCode(303)
                    request.setHeader(b"location", b"/audit" if current.role == "auditor" else b"/")
                    body = b""
                request.write(body)
                request.finish()
                return
            # every refusal looks the same to the client (no account enumeration)
            request.write(self._fail(request))
            request.finish()

        def broke(failure):
            if not finished:
                request.write(self._fail(request, 500, "login unavailable"))
                request.finish()

        d.addCallback(decided).addErrback(broke)
        return server.NOT_DONE_YET


class _PostOnly(resource.Resource):
    """A leaf only POST reaches: GET and HEAD get a 405 naming POST (Twisted answers HEAD with
    render_GET, which such a leaf lacks: that was a 500 with a traceback in the log)."""

    isLeaf = True

    def render_GET(self, request):  # noqa: N802 - Twisted API (HEAD too)
        request.setHeader(b"allow", b"POST")
        return _json(request, {"error": "only POST is answered here"}, 405)


class Logout(_PostOnly):
    def __init__(self, guard: Guard, session: Session):
        super().__init__()
        self.guard, self.s = guard, session

    def render_POST(self, request):  # noqa: N802
        self.guard.sessions.end(self.s.token)
        self.guard.app.audit.record(
            "admin.logout",
            actor=self.s.user,
            channel="admin",
            user=self.s.user,
            remote=_remote(request),
        )
        request.addCookie(
            COOKIE,
            b"",
            path=b"/",
            max_age=b"0",
            httpOnly=True,
            secure=request.isSecure(),
            sameSite=b"strict",
        )
        if _wants_json(request):
            return _json(request, {"logged_out": True})
        request.setResponseCode(303)
        request.setHeader(b"location", b"/login")
        return b""


# -- operator actions -------------------------------------------------------------------------
class Download(resource.Resource):
    """``GET /api/messages/<id>/payload|response``: the bytes, for operators; audited."""

    isLeaf = True

    def __init__(self, guard: Guard, session: Session, msg_id: str, what: str):
        super().__init__()
        self.guard, self.s, self.msg_id, self.what = guard, session, msg_id[:64], what

    def render_GET(self, request):  # noqa: N802
        journal = self.guard.app.journal
        try:
            msg = journal.message(self.msg_id)
        except KeyError:
            return _json(request, {"error": "no such message"}, 404)
        digest = msg.payload if self.what == "payload" else msg.response
        if digest is None:
            return _json(request, {"error": f"this message has no {self.what}"}, 404)
        try:
            data = journal.payload(digest)
        except KeyError:
            return _json(request, {"error": f"the {self.what} was purged (retention)"}, 410)
        self.guard.app.audit.record(
            "message.download",
            actor=self.s.user,
            channel="admin",
            user=self.s.user,
            role=self.s.role,
            remote=_remote(request),
            message_id=self.msg_id,
            what=self.what,
        )
        ext = "xml" if msg.encoding == "xml" else "eft"
        request.setHeader(b"content-type", b"application/octet-stream")
        request.setHeader(
            b"content-disposition",
            f'attachment; filename="{self.msg_id}-{self.what}.{ext}"'.encode(),
        )
        return data


class Reprocess(_PostOnly):
    """``POST /api/messages/<id>/reprocess``: take an unanswered message up again; audited."""

    def __init__(self, guard: Guard, session: Session, msg_id: str):
        super().__init__()
        self.guard, self.s, self.msg_id = guard, session, msg_id[:64]

    def render_POST(self, request):  # noqa: N802
        from gateway.store.journal import TERMINAL

        app = self.guard.app
        try:
            msg = app.journal.message(self.msg_id)
        except KeyError:
            return _json(request, {"error": "no such message"}, 404)
        if msg.state in TERMINAL:
            return _json(
                request,
                {"error": f"already {msg.state}: only unanswered messages are reprocessed"},
                409,
            )
        app.audit.record(
            "message.reprocess",
            actor=self.s.user,
            channel="admin",
            user=self.s.user,
            role=self.s.role,
            remote=_remote(request),
            message_id=self.msg_id,
            state=msg.state,
        )
        app.pipeline.submit(self.msg_id)
        return _json(request, {"reprocessing": self.msg_id, "state": msg.state}, 202)


# -- audit trail for auditors -----------------------------------------------------------------
class AuditApi(resource.Resource):
    """``GET /api/audit?limit=&before_id=&event=``: newest records first, with the chain's
    state; ``GET /api/audit/verify``: verify the chain now."""

    isLeaf = True

    def __init__(self, guard: Guard, *, verify: bool):
        super().__init__()
        self.guard, self.verify = guard, verify

    def render_GET(self, request):  # noqa: N802
        guard = self.guard
        if self.verify:
            finished: list[object] = []
            request.notifyFinish().addBoth(finished.append)

            def answer(chain):
                if not finished:
                    request.write(_json(request, {"chain": chain}))
                    request.finish()

            def broke(failure):
                if not finished:
                    request.write(_json(request, {"error": "verification failed to run"}, 500))
                    request.finish()

            guard.verify_chain().addCallbacks(answer, broke)
            return server.NOT_DONE_YET
        limit = _int(_arg(request, "limit", 10), 100, 1000)
        before = _int(_arg(request, "before_id", 20), None, 2**62)
        event = _arg(request, "event", 64)
        audit = guard.app.audit
        records = list(
            audit.records(limit=limit, event=event or None, newest_first=True, before_id=before)
        )
        stale = guard.chain.get("verified") is None or time.time() - guard.chain["verified"] > 60
        if stale and not guard._verifying:
            guard._verifying = True

            def done(result):
                guard._verifying = False
                return None

            guard.verify_chain().addBoth(done)
        return _json(request, {"chain": guard.chain, "records": records, "total": audit.count()})


def _int(text: str | None, default, maximum: int):
    # ASCII digits only: str.isdigit() admits "²", which int() refuses (was a 500)
    if text is None or not (text.isascii() and text.isdigit()):
        return default
    return min(int(text), maximum)


AUDIT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>EBTS gateway: audit trail</title>
<style>body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;font-size:.85em} td,th{border-bottom:1px solid #ddd;
padding:.2em .5em;text-align:left;vertical-align:top} .bad{color:#b00} .ok{color:#070}</style>
</head><body><h1>Audit trail</h1>
<p id="chain">chain: checking...</p>
<form id="f">event <input name="event" size="20"> <button>filter</button>
<button type="button" id="v">verify now</button></form>
<table><thead><tr><th>#</th><th>time (UTC)</th><th>event</th><th>actor</th><th>fields</th>
</tr></thead><tbody id="rows"></tbody></table>
<script>
function esc(s){return String(s ?? '').replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;',
 '>':'&gt;','"':'&quot;'}[c]));}
function chain(c){ const e = document.getElementById('chain');
  if(!c || !c.verified){ e.textContent = 'chain: not verified yet'; return; }
  e.className = c.whole ? 'ok' : 'bad';
  e.textContent = c.whole ? `chain whole (${c.records} records)`
    : `chain BROKEN at record ${c.broken_record}: ${c.reason}`; }
async function load(){
  const q = new URLSearchParams(new FormData(document.getElementById('f'))).toString();
  const r = await (await fetch('/api/audit?limit=200&' + q)).json();
  chain(r.chain);
  document.getElementById('rows').innerHTML = r.records.map(x => {
    const {id, time, event, actor, ...rest} = x;
    return `<tr><td>${id}</td><td>${esc(time)}</td><td>${esc(event)}</td><td>${esc(actor)}</td>
     <td><code>${esc(JSON.stringify(rest))}</code></td></tr>`; }).join('');
}
document.getElementById('f').onsubmit = e => { e.preventDefault(); load(); };
document.getElementById('v').onclick = async () =>
  chain((await (await fetch('/api/audit/verify')).json()).chain);
load(); setInterval(load, 10000);
</script></body></html>
"""


class AuditPage(resource.Resource):
    isLeaf = True

    def render_GET(self, request):  # noqa: N802
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return AUDIT_PAGE.encode()


class _WithBar(resource.Resource):
    """The dashboard of :mod:`gateway.admin.web` with a bar naming the user, a logout button
    (carrying the CSRF token) and, for auditors, a link to the audit trail."""

    isLeaf = True

    def __init__(self, leaf, session: Session):
        super().__init__()
        self.leaf, self.s = leaf, session

    def render_GET(self, request):  # noqa: N802
        body = self.leaf.render(request)
        if not isinstance(body, bytes):
            return body
        link = ' <a href="/audit">audit trail</a> ·' if self.s.role == "auditor" else ""
        bar = (
            '<div style="float:right;font-size:.85em">'
            f"{html.escape(self.s.user)} ({html.escape(self.s.role)}) ·{link} "
            '<form method="post" action="/logout" style="display:inline">'
            f'<input type="hidden" name="csrf_token" value="{html.escape(self.s.csrf)}">'
            "<button>log out</button></form></div>"
        )
        return body.replace(b"<body>", b"<body>" + bar.encode(), 1)
