"""Helpers of the SOAP integration tests: a receiveResponse server and schemas fetched by URL."""

from __future__ import annotations

import base64
import urllib.request

from lxml import etree
from twisted.internet import defer, reactor
from twisted.web import resource, server

from gateway.transports.soap.envelope import (
    NATIVE_MESSAGE,
    NGI_CORE,
    SOAP11,
    VOID,
    XML_PACKAGE,
    body_children,
    parse_envelope,
)

WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
XS = "http://www.w3.org/2001/XMLSchema"


class _Receive(resource.Resource):
    isLeaf = True

    def __init__(self, receiver: ResponseReceiver):
        super().__init__()
        self.receiver = receiver

    def render_POST(self, request):  # noqa: N802 - Twisted API
        raw = request.content.read()
        self.receiver.attempts += 1
        if self.receiver.failures > 0:
            self.receiver.failures -= 1
            request.setResponseCode(500)
            return b"temporarily out of order"
        _, _, body = parse_envelope(raw)
        (element,) = body_children(body)
        if etree.QName(element) == NATIVE_MESSAGE:
            payload = base64.b64decode(element.text)
        else:
            assert etree.QName(element) == XML_PACKAGE
            payload = etree.tostring(element, xml_declaration=True, encoding="UTF-8")
        self.receiver.received(
            {
                "soapaction": request.getHeader("soapaction"),
                "content_type": request.getHeader("content-type"),
                "raw": raw,
                "element": element,
                "payload": payload,
            }
        )
        request.setHeader(b"content-type", b"text/xml; charset=utf-8")
        return (
            f'<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="{SOAP11}"><s:Body>'
            f'<ngi-core:{VOID.localname} xmlns:ngi-core="{NGI_CORE}"/></s:Body></s:Envelope>'
        ).encode()


class ResponseReceiver:
    """The agency's receiveResponse service; ``failures`` first calls get HTTP 500."""

    def __init__(self, failures: int = 0):
        self.failures = failures
        self.attempts = 0
        self.calls: list[dict] = []
        self.waiters: list[tuple[int, defer.Deferred]] = []
        self.port = None

    def start(self) -> str:
        self.port = reactor.listenTCP(0, server.Site(_Receive(self)), interface="127.0.0.1")
        return self.url

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port.getHost().port}/csa/receiveResponse"

    def stop(self):
        return self.port.stopListening()

    def received(self, call: dict) -> None:
        self.calls.append(call)
        for count, d in list(self.waiters):
            if len(self.calls) >= count and not d.called:
                self.waiters.remove((count, d))
                d.callback(self.calls)

    def wait_for(self, count: int, timeout: float = 40.0) -> defer.Deferred:
        if len(self.calls) >= count:
            return defer.succeed(self.calls)
        d = defer.Deferred()
        self.waiters.append((count, d))
        return d.addTimeout(timeout, reactor)


class _UrlResolver(etree.Resolver):
    """Fetches http:// schema documents with urllib (libxml2 itself has no HTTP client)."""

    def resolve(self, url, pubid, context):
        if url.startswith("http://"):
            with urllib.request.urlopen(url, timeout=30) as response:
                return self.resolve_string(response.read(), context, base_url=url)
        return None


def schema_from_wsdl_url(wsdl_url: str) -> etree.XMLSchema:
    """Compile the schema of a served WSDL, imports fetched from the server (blocking)."""
    with urllib.request.urlopen(wsdl_url, timeout=30) as response:
        wsdl = etree.fromstring(response.read())
    (inline,) = wsdl.findall(f"{{{WSDL_NS}}}types/{{{XS}}}schema")
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    parser.resolvers.add(_UrlResolver())
    doc = etree.fromstring(etree.tostring(inline), parser, base_url=wsdl_url)
    return etree.XMLSchema(doc)


def body_element(raw: bytes) -> etree._Element:
    """The one element of a SOAP message's Body (fault or not)."""
    _, _, body = parse_envelope(raw)
    (element,) = body_children(body)
    return element
