"""Blocking network helpers of ``ebts-gateway replay``: a response sink and the senders.

:class:`Receiver` is a small SMTP server (a thread per connection) that plays the state
system's mailbox: it accepts whatever the gateway's outbound relay delivers and keeps, for
each attachment that reads as a transaction, (TCR, TOT, bytes).  It listens on loopback by
default and accepts messages up to 64 MiB.
"""

from __future__ import annotations

import collections
import email
import email.policy
import smtplib
import socketserver
import threading
from email.message import EmailMessage
from pathlib import Path
from typing import Any

MAX_MESSAGE = 64 * 1024 * 1024


class _SMTPHandler(socketserver.StreamRequestHandler):
    timeout = 60

    def reply(self, text: str) -> None:
        self.wfile.write(text.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        try:
            self._dialogue()
        except OSError:
            pass  # the sender went away (killed, timed out): nothing was accepted

    def _dialogue(self) -> None:
        self.reply("220 ebts-gateway-replay ESMTP")
        while True:
            line = self.rfile.readline(4096)
            if not line:
                return
            verb = line.strip().split(b" ", 1)[0].upper()
            if verb in (b"EHLO", b"HELO"):
                self.reply(f"250-replay\r\n250 SIZE {MAX_MESSAGE}" if verb == b"EHLO" else "250 ok")
            elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                self.reply("250 ok")
            elif verb == b"DATA":
                self.reply("354 end with <CRLF>.<CRLF>")
                lines, size = [], 0
                while True:
                    data = self.rfile.readline(1 << 20)
                    if not data or data in (b".\r\n", b".\n"):
                        break
                    if data.startswith(b".."):
                        data = data[1:]
                    size += len(data)
                    if size <= MAX_MESSAGE:
                        lines.append(data)
                self.server.receiver.collect(b"".join(lines))  # type: ignore[attr-defined]
                self.reply("250 ok")
            elif verb == b"QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 command not implemented")


class _Server(socketserver.ThreadingTCPServer):
    receiver: Receiver
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class Receiver:
    def __init__(self, host: str = "127.0.0.1", port: int = 2526):
        self.address = (host, port)
        self._lock = threading.Lock()
        self._items: list[tuple[str | None, str | None, bytes]] = []
        self._server: _Server | None = None
        self.message_ids: collections.Counter = collections.Counter()
        self.deliveries: list[tuple[str | None, str | None]] = []  # (TCR, Message-ID)

    def start(self) -> None:
        self._server = _Server(self.address, _SMTPHandler)
        self._server.receiver = self
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return self._server.server_address[1]

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def collect(self, raw: bytes) -> None:

        try:
            message = email.message_from_bytes(raw, policy=email.policy.default)
            parts = list(message.iter_attachments()) if message.is_multipart() else []
            with self._lock:
                self.message_ids[message.get("Message-ID")] += 1
        except Exception:  # noqa: BLE001 - a mailbox keeps what it cannot parse out of the way
            parts = []
        for part in parts:
            payload = part.get_payload(decode=True) or b""
            item = self.collect_payload(payload)  # type: ignore[arg-type]
            with self._lock:
                self.deliveries.append((item[0], message.get("Message-ID")))

    def collect_payload(self, payload: bytes) -> tuple:
        """Keep one received transaction as (TCR, TOT, bytes)."""
        from gateway.ansinist import FormatError, read

        try:
            txn = read(payload)
            item = (txn.tcr, txn.tot, payload)
        except FormatError:
            item = (None, None, payload)
        with self._lock:
            self._items.append(item)
        return item

    def take(self) -> list[tuple[str | None, str | None, bytes]]:
        with self._lock:
            items, self._items = self._items, []
        return items


def client_context(cert: str | None, key: str | None, ca: str | None):
    """An SSLContext presenting ``cert``/``key`` and trusting ``ca`` (TLS 1.2+), or None.

    The gateway's listeners require a client certificate when TLS is on (the default).
    """
    import ssl

    if not (cert or ca):
        return None
    context = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        context.load_cert_chain(cert, key)
    return context


def demo_identity(data_dir: str | Path, name: str) -> tuple[str, str, str] | None:
    """(cert, key, ca) of an identity the gateway issued under ``DATA/pki``, when present."""
    root = Path(data_dir) / "pki"
    cert, key, ca = (
        root / "agencies" / f"{name}.crt",
        root / "agencies" / f"{name}.key",
        root / "ca.crt",
    )
    if cert.is_file() and key.is_file() and ca.is_file():
        return str(cert), str(key), str(ca)
    return None


def send_smtp(host: str, port: int, data: bytes, sender: str, filename: str, context=None) -> None:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = f"ebts@{host}"
    message["Subject"] = f"EBTS replay {filename}"
    message.set_content("EBTS transaction attached.")
    message.add_attachment(data, maintype="application", subtype="octet-stream", filename=filename)
    with smtplib.SMTP(host, port, timeout=60) as client:
        client.ehlo()
        if context is not None and client.has_extn("starttls"):
            client.starttls(context=context)
            client.ehlo()
        client.send_message(message)


def send_soap(base_url: str, data: bytes, context=None) -> str:
    from gateway.transports.soap.client import submit_soap

    xml = data.lstrip()[:1] == b"<"
    service = "NGIUserService" if xml else "NativeEBTSService"
    return submit_soap(f"{base_url}/ngi/{service}", data, xml=xml, context=context)


class SoapReceiver:
    """The agency's receiveResponse service (NativeEBTSResponseService / NGIResponseService):
    accepts what the gateway pushes and keeps (TCR, TOT, bytes) like :class:`Receiver`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 2527, sink: Receiver | None = None):
        self.address = (host, port)
        self.sink = sink or Receiver(host, 0)
        self._server: Any = None  # a ThreadingHTTPServer once started

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/receiveResponse"

    def start(self) -> None:
        import base64
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from lxml import etree

        from gateway.transports.soap.envelope import (
            NATIVE_MESSAGE,
            NGI_CORE,
            SOAP11,
            VOID,
            body_children,
            parse_envelope,
        )

        sink = self.sink
        answer = (
            f'<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="{SOAP11}"><s:Body>'
            f'<ngi-core:{VOID.localname} xmlns:ngi-core="{NGI_CORE}"/></s:Body></s:Envelope>'
        ).encode()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):  # noqa: N802 - http.server API
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(min(length, MAX_MESSAGE))
                try:
                    _, _, body = parse_envelope(raw)
                    (element,) = body_children(body)
                    if etree.QName(element) == NATIVE_MESSAGE:
                        payload = base64.b64decode(element.text or "")
                    else:
                        payload = etree.tostring(element, xml_declaration=True, encoding="UTF-8")
                except Exception:  # noqa: BLE001 - a bad request gets a 500
                    self.send_response(500)
                    self.end_headers()
                    return
                sink.collect_payload(payload)
                self.send_response(200)
                self.send_header("content-type", "text/xml; charset=utf-8")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self._server = ThreadingHTTPServer(self.address, Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def take(self):
        return self.sink.take()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
