"""Helpers of the integration tests: a gateway on ephemeral ports and an SMTP sink."""

from __future__ import annotations

import email
import email.policy
import http.client
import json
import smtplib
import urllib.parse
from email.message import EmailMessage
from pathlib import Path

from twisted.internet import defer, reactor, threads
from twisted.mail import smtp
from zope.interface import implementer

from gateway.config import parse_config


def gateway_config(tmp_path: Path, sink_port: int, **extra) -> object:
    raw = {
        "data_dir": str(tmp_path / "data"),
        "listen": {
            "smtp": "tcp:0:interface=127.0.0.1",
            "admin": "tcp:0:interface=127.0.0.1",
            "soap": "tcp:0:interface=127.0.0.1",
        },
        "outbound": {
            "smtp_relay": f"127.0.0.1:{sink_port}",
            "retry_initial": 0.2,
            "retry_max": 1.0,
        },
        "workers": 1,
        "gallery": {"demo": False},
        "agency": [
            {
                "ori": "NY0303000",
                "response_email": "bureau@ny.example",
                # the ORIs of the shipped fixtures (WV...) and demo files (NY..., ZZ...)
                "submits_for": ["NY", "WV", "ZZ"],
            }
        ],
        # Tests that are not about TLS run without it (allowed: every listener is on loopback);
        # tests/integration/test_tls_gateway.py covers certificates and refusals.
        "tls": {"mode": "off"},
    }
    for key, value in extra.items():
        raw[key] = value
    return parse_config(raw)


@implementer(smtp.IMessage)
class _Message:
    def __init__(self, sink, sender, recipient):
        self.sink, self.sender, self.recipient, self.lines = sink, sender, recipient, []

    def lineReceived(self, line):  # noqa: N802
        self.lines.append(line)

    def eomReceived(self):  # noqa: N802
        raw = b"\r\n".join(self.lines) + b"\r\n"
        self.sink.received(self.sender, self.recipient, raw)
        return defer.succeed(None)

    def connectionLost(self):  # noqa: N802
        pass


@implementer(smtp.IMessageDelivery)
class _Delivery:
    def __init__(self, sink):
        self.sink = sink
        self.sender = None

    def receivedHeader(self, helo, origin, recipients):  # noqa: N802
        return None

    def validateFrom(self, helo, origin):  # noqa: N802
        self.sender = str(origin)
        return origin

    def validateTo(self, user):  # noqa: N802
        if self.sink.refuse:
            raise smtp.SMTPBadRcpt(user)
        return lambda: _Message(self.sink, self.sender, str(user.dest))


class Sink:
    """A local SMTP server collecting what the gateway sends (the 'state system')."""

    def __init__(self):
        self.messages: list[dict] = []
        self.waiters: list[tuple[int, defer.Deferred]] = []
        self.refuse = False
        self.port = None

    def start(self) -> int:
        factory = smtp.SMTPFactory()
        sink = self

        def build(addr):
            proto = smtp.ESMTP()
            proto.factory = factory
            proto.delivery = _Delivery(sink)
            return proto

        factory.buildProtocol = build
        self.port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        return self.port.getHost().port

    def stop(self):
        return self.port.stopListening()

    def received(self, sender, recipient, raw):
        self.raw = raw
        message = email.message_from_bytes(raw, policy=email.policy.default)
        attachments = [p.get_payload(decode=True) for p in message.iter_attachments()]
        self.messages.append(
            {"from": sender, "to": recipient, "message": message, "attachments": attachments}
        )
        for count, d in list(self.waiters):
            if len(self.messages) >= count and not d.called:
                self.waiters.remove((count, d))
                d.callback(self.messages)

    def wait_for(self, count: int, timeout: float = 60.0) -> defer.Deferred:
        if len(self.messages) >= count:
            return defer.succeed(self.messages)
        d = defer.Deferred()
        self.waiters.append((count, d))
        return d.addTimeout(timeout, reactor)


def send_smtp(
    port: int,
    attachments: list[bytes],
    *,
    sender="livescan@ny.example",
    mime=True,
    body_only: bytes | None = None,
):
    """Submit by smtplib in a thread; returns (code, message) of the DATA reply (or raises)."""

    def blocking():
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            if not mime:
                data = body_only or b"Subject: plain\r\n\r\nno attachment here\r\n"
                return client.sendmail(sender, ["ident@gateway.example"], data)
            message = EmailMessage()
            message["From"] = sender
            message["To"] = "ident@gateway.example"
            message["Subject"] = "EBTS submission"
            message.set_content("EBTS file attached")
            for i, data in enumerate(attachments):
                message.add_attachment(
                    data, maintype="application", subtype="octet-stream", filename=f"sub{i}.eft"
                )
            return client.send_message(message)

    return threads.deferToThread(blocking)


async def started(config, galleries=None):
    """A Gateway built from ``config``, started, once all its listeners are bound."""
    from gateway.service import Gateway

    gateway = Gateway(config, galleries=galleries)
    gateway.startService()
    for svc in gateway.ports.values():
        await svc._waitingForPort
    return gateway


PASSWORD = "correct horse battery staple"


def http_request(port: int, method: str, path: str, *, body=None, headers=None):
    """One HTTP request to 127.0.0.1 in a thread: (status, lower-cased headers, body)."""

    def blocking():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return (
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read(),
            )
        finally:
            conn.close()

    return threads.deferToThread(blocking)


class Admin:
    """An admin console client keeping its session cookie and CSRF token."""

    def __init__(self, port: int):
        self.port = port
        self.cookie: str | None = None
        self.csrf: str | None = None

    def _headers(self, extra=None) -> dict:
        headers = {"Accept": "application/json"}
        if self.cookie:
            headers["Cookie"] = self.cookie
        headers.update(extra or {})
        return headers

    async def login(self, name: str, password: str) -> int:
        form = urllib.parse.urlencode({"username": name, "password": password})
        status, headers, body = await http_request(
            self.port,
            "POST",
            "/login",
            body=form,
            headers=self._headers({"Content-Type": "application/x-www-form-urlencoded"}),
        )
        self.last = (status, body)
        if status == 200:
            self.cookie = headers["set-cookie"].split(";", 1)[0]
            self.csrf = json.loads(body)["csrf_token"]
        return status

    async def get(self, path: str, headers=None):
        return await http_request(self.port, "GET", path, headers=self._headers(headers))

    async def get_json(self, path: str):
        status, _headers, body = await self.get(path)
        assert status == 200, (path, status, body[:200])
        return json.loads(body)

    async def post(self, path: str, fields: dict | None = None, *, csrf: bool = True):
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if csrf and self.csrf:
            headers["X-CSRF-Token"] = self.csrf
        body = urllib.parse.urlencode(fields or {})
        return await http_request(
            self.port, "POST", path, body=body, headers=self._headers(headers)
        )


async def admin_login(gateway, role: str = "operator", name: str | None = None) -> Admin:
    """A user of ``role`` (created in the gateway's journal) logged in to its admin console."""
    name = name or f"test-{role}"
    if gateway.users.get(name) is None:
        gateway.users.add(name, role, PASSWORD)
    admin = Admin(gateway.port("admin"))
    assert await admin.login(name, PASSWORD) == 200, admin.last
    return admin
