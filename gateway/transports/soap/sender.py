"""Delivery by SOAP: a response pushed to the agency's ``receiveResponse`` service (Twisted).

A response goes to the agency's registered ``response_soap`` URL (never a ``ReplyTo`` the
request names; HTTPS checks the agency's certificate) by ``receiveResponse`` of
NativeEBTSResponseService (traditional payload, base64) or NGIResponseService (XML payload);
success is HTTP 200 without a SOAP fault, anything else fails the Deferred and the dispatcher
retries with backoff.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any
from urllib.parse import urlsplit

from twisted.internet import defer, protocol, reactor
from twisted.web.client import Agent, FileBodyProducer, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers

from gateway.transports.tls import OutboundPolicy

from .envelope import (
    CONTENT_TYPE_11,
    SoapError,
    fault_of,
    is_xml_payload,
    parse_envelope,
    request_envelope,
)

SEND_TIMEOUT = 120.0  # seconds for one receiveResponse call, connection included
MAX_REPLY_BYTES = 1024 * 1024


class _Collect(protocol.Protocol):
    """Reads a response body up to ``limit`` bytes."""

    def __init__(self, finished: defer.Deferred, limit: int):
        self.finished = finished
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0

    def dataReceived(self, data):  # noqa: N802 - Twisted API
        self.size += len(data)
        if self.size > self.limit:
            if not self.finished.called:
                self.finished.errback(SoapError(f"reply larger than {self.limit} bytes"))
            transport: Any = self.transport  # set: data came through it
            transport.stopProducing()
            return
        self.parts.append(data)

    def connectionLost(self, reason):  # type: ignore[override]  # noqa: N802 - Twisted API
        if self.finished.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.finished.callback(b"".join(self.parts))
        else:
            self.finished.errback(reason)


def _check_reply(status: int, data: bytes) -> None:
    """Raise unless the reply of a receiveResponse call is a success."""
    fault = None
    if data.strip():
        try:
            version, _, body = parse_envelope(data)
        except SoapError as exc:
            raise SoapError(f"HTTP {status}, reply is no SOAP envelope ({exc})") from None
        fault = fault_of(body, version, status)
    if fault is not None:
        raise SoapError(
            f"HTTP {status}, SOAP fault {fault.error_code or fault.code}: "
            f"{(fault.detail_message or fault.message)[:200]}"
        )
    if status != 200:
        raise SoapError(f"HTTP {status}")


def soap_sender(config, *, agent=None, clock=None):
    """The outbound sender of ``soap`` deliveries: receiveResponse at the delivery's URL."""
    clock = clock or reactor
    # HTTPS pushes check the agency's server certificate and present ours.
    agent = agent or Agent(clock, contextFactory=OutboundPolicy(config), connectTimeout=30)

    def send(item, payload: bytes) -> defer.Deferred:
        url = item.destination
        if urlsplit(url).scheme not in ("http", "https"):
            return defer.fail(SoapError(f"not an http(s) URL: {url!r}"))
        xml = is_xml_payload(payload)
        try:
            data = request_envelope(payload, xml=xml)
        except ValueError as exc:
            return defer.fail(SoapError(f"cannot build receiveResponse: {exc}"))
        headers = Headers(
            {
                b"Content-Type": [CONTENT_TYPE_11.encode()],
                b"SOAPAction": [b'"receiveResponse"'],
                b"User-Agent": [b"ebts-gateway"],
            }
        )
        d = agent.request(b"POST", url.encode("ascii"), headers, FileBodyProducer(BytesIO(data)))

        def got(response):
            finished: defer.Deferred[bytes] = defer.Deferred()
            response.deliverBody(_Collect(finished, MAX_REPLY_BYTES))
            finished.addCallback(lambda body: _check_reply(response.code, body))
            return finished

        d.addCallback(got)
        d.addTimeout(SEND_TIMEOUT, clock)
        return d

    return send
