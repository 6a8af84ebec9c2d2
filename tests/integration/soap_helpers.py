"""Helpers of the SOAP integration tests: a receiveResponse server and schemas fetched by URL."""

from __future__ import annotations

import base64
import tempfile
import urllib.request
from pathlib import Path
from urllib.parse import urljoin

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


_SCHEMA_REFS = (f"{{{XS}}}import", f"{{{XS}}}include", f"{{{XS}}}redefine")
MAX_SCHEMA_DOCUMENTS = 200  # a WSDL importing more than this is a bug of the server


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def schema_from_wsdl_url(wsdl_url: str) -> etree.XMLSchema:
    """Compile the schema of a served WSDL (blocking): the WSDL and every XSD it imports are
    fetched from the server first, then compiled from local copies of exactly those documents.

    Not with an lxml Resolver fetching the imports during the compile (as before): lxml sets
    libxml2's process-wide external entity loader to its own around every parse and then
    restores the one it found, so a parse ending in another thread of this process (the
    gateway's, the receiver's) can put libxml2's default loader back in the middle of the
    compile.  That loader cannot fetch http://: the import was skipped and the compile failed
    (4 of 83 runs of test_soap_gateway.py) ("... ComplexObjectType does not resolve to
    a(n) simple type definition").  Local files load the same with either loader.
    """
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    wsdl = etree.fromstring(_fetch(wsdl_url), parser)
    (inline,) = wsdl.findall(f"{{{WSDL_NS}}}types/{{{XS}}}schema")
    # the schema element alone, with the namespace declarations it inherits from the WSDL
    inline = etree.fromstring(etree.tostring(inline), parser)
    names: dict[str, str] = {}  # URL of a document -> its file name
    pending: list[str] = []

    def localize(root: etree._Element, base: str) -> bytes:
        for ref in root.iter(*_SCHEMA_REFS):
            location = ref.get("schemaLocation")
            if not location:
                continue
            url = urljoin(base, location)
            if url not in names:
                if len(names) >= MAX_SCHEMA_DOCUMENTS:
                    raise ValueError(f"{wsdl_url} imports more than {MAX_SCHEMA_DOCUMENTS} XSDs")
                names[url] = f"{len(names)}.xsd"
                pending.append(url)
            ref.set("schemaLocation", names[url])
        return etree.tostring(root)

    with tempfile.TemporaryDirectory(prefix="wsdl-schema-") as folder:
        entry = Path(folder, "types.xsd")
        entry.write_bytes(localize(inline, wsdl_url))
        while pending:
            url = pending.pop()
            document = etree.fromstring(_fetch(url), parser)
            Path(folder, names[url]).write_bytes(localize(document, url))
        return etree.XMLSchema(etree.parse(str(entry), parser))


def body_element(raw: bytes) -> etree._Element:
    """The one element of a SOAP message's Body (fault or not)."""
    _, _, body = parse_envelope(raw)
    (element,) = body_children(body)
    return element
