"""NGI-style SOAP transport: a thin twisted.web adapter around the journal and the pipeline.

Intake (the ``soap`` listener, :func:`soap_root`)::

    /ngi/NativeEBTSService    submitRequest(ngi-core:NativeEBTSMessage: base64 traditional EBTS)
    /ngi/NGIUserService       submitRequest(itl:NISTBiometricInformationExchangePackage)
    ...?wsdl                  the service's WSDL, soap:address = [soap] public_url + path, else
                              the listener's own address (never the request's Host header)
    ...?xsd=PATH              the XSDs the WSDL imports (PATH relative to the bundle's xsd/)

With TLS on (the default) the listener speaks HTTPS and the client's certificate names the
agency (:mod:`gateway.routing.authz`): a request without one, or for an ORI that agency may not
submit for, or whose payload is not an ANSI/NIST-ITL transaction, gets an INVALID_REQUEST fault
and no control number.  A request is parsed with a hardened parser (size limit, no DTD, no
entities, no network), its body is validated against the schema of the service's WSDL (compiled
once per process), the payload goes to ``gateway.intake.accept`` (committed with fsync), and only
then the answer ``ngi-core:NGIControlNumber`` is sent.  Control numbers are ``G`` + year + day
of year + a 12-digit durable counter (``journal.next_number("ngi_control")``), e.g.
``G2026329000000000042``, and are recorded with the message id (:class:`ControlNumbers`).

Faults carry ``ngi-core:NGIServicesFault`` as detail (faultErrorCode INVALID_REQUEST,
SERVICE_NOT_AVAILABLE or INTERNAL_PROCESSING_ERROR; faultType NGI_SERVICE_ERROR: raised by
the NGI side), in the SOAP version of the request (the WSDL binding is SOAP 1.1; SOAP 1.2
requests are answered in 1.2).  No traceback ever reaches the client.

The WSDLs' ``NGIControlNumberType`` pattern cannot match any control number as written
(``^``/``$`` are literal characters in XML Schema regular expressions and ``\\\\d`` is a
backslash followed by ``d``); both the served documents and the compiled schemas carry the
evident intent instead (:data:`CONTROL_NUMBER_PATTERN`), marked by a comment.

Delivery (:func:`soap_sender`): a response is pushed to the agency's registered ``response_soap``
URL (never a ``ReplyTo`` the request names; HTTPS checks the agency's certificate) by
``receiveResponse`` of NativeEBTSResponseService (traditional payload, base64) or
NGIResponseService (XML payload); success is HTTP 200 without a SOAP fault, anything else
fails the Deferred and the dispatcher retries with backoff.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime as dt
import logging
import re
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from lxml import etree
from twisted.internet import defer, protocol, reactor
from twisted.web import resource, server
from twisted.web.client import Agent, FileBodyProducer, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers

from gateway.routing.authz import Refused, is_ansinist
from gateway.transports.tls import OutboundPolicy, peer_fingerprint
from gateway.validation.schema import schema_path

from .limits import in_parser_thread, one_large_message_at_a_time
from .soap_client import (
    CONTENT_TYPE_11,
    CONTENT_TYPE_12,
    CONTROL_NUMBER,
    DELIVERY_FAULT,
    MAX_MESSAGE_BYTES,
    NATIVE_MESSAGE,
    NGI_CORE,
    SERVICES_FAULT,
    SOAP11,
    SOAP12,
    VOID,
    XML_PACKAGE,
    SoapError,
    SoapVersionMismatch,
    body_children,
    fault_of,
    is_xml_payload,
    parse_envelope,
    request_envelope,
)
from .spool import Spool

log = logging.getLogger("gateway.soap")

XS = "http://www.w3.org/2001/XMLSchema"
WSDL = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP11 = "http://schemas.xmlsoap.org/wsdl/soap/"
WSDL_SOAP12 = "http://schemas.xmlsoap.org/wsdl/soap12/"
WSA = ("http://www.w3.org/2005/08/addressing", "http://schemas.xmlsoap.org/ws/2004/08/addressing")

BUNDLE = "fbi-ebts-10.0-ngi-inc4"
INVALID_REQUEST = "INVALID_REQUEST"
SERVICE_NOT_AVAILABLE = "SERVICE_NOT_AVAILABLE"
INTERNAL_PROCESSING_ERROR = "INTERNAL_PROCESSING_ERROR"

# Letter, year, day of the year (001-366), 12 digits: what the WSDL's pattern evidently means.
CONTROL_NUMBER_PATTERN = (
    "[A-Z][0-9]{4}(00[1-9]|0[1-9][0-9]|[12][0-9]{2}|3[0-5][0-9]|36[0-6])[0-9]{12}"
)
CONTROL_NUMBER_PREFIX = "G"
_CONTROL_NUMBER_RE = re.compile(CONTROL_NUMBER_PATTERN + r"\Z")

# Stands for the service URL in the prepared documents; replaced per request.
_PLACEHOLDER = "http://ebts-gateway.invalid/__service__"

SEND_TIMEOUT = 120.0  # seconds for one receiveResponse call, connection included
MAX_REPLY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ServiceSpec:
    """One service of the NGI bundle: its WSDL and the body elements of its operation."""

    name: str
    wsdl: str  # relative to the schema folder
    operation: str
    request: etree.QName
    response: etree.QName
    fault: etree.QName


SERVICES = {
    spec.name: spec
    for spec in (
        ServiceSpec(
            "NativeEBTSService",
            f"{BUNDLE}/wsdl/ngi/native-ebts-service/NativeEBTSService.wsdl",
            "submitRequest",
            NATIVE_MESSAGE,
            CONTROL_NUMBER,
            SERVICES_FAULT,
        ),
        ServiceSpec(
            "NGIUserService",
            f"{BUNDLE}/wsdl/ngi/user-services/NGIUserService.wsdl",
            "submitRequest",
            XML_PACKAGE,
            CONTROL_NUMBER,
            SERVICES_FAULT,
        ),
        ServiceSpec(
            "NativeEBTSResponseService",
            f"{BUNDLE}/wsdl/ngi/native-ebts-service/NativeEBTSResponseService.wsdl",
            "receiveResponse",
            NATIVE_MESSAGE,
            VOID,
            DELIVERY_FAULT,
        ),
        ServiceSpec(
            "NGIResponseService",
            f"{BUNDLE}/wsdl/ngi/user-services/NGIResponseService.wsdl",
            "receiveResponse",
            XML_PACKAGE,
            VOID,
            DELIVERY_FAULT,
        ),
    )
}
INTAKE_SERVICES = ("NativeEBTSService", "NGIUserService")


# -- the contract documents -------------------------------------------------------------------


def _correct_control_number_pattern(root: etree._Element) -> None:
    for simple in root.iter(f"{{{XS}}}simpleType"):
        if simple.get("name") != "NGIControlNumberType":
            continue
        for pattern in simple.iter(f"{{{XS}}}pattern"):
            if pattern.get("value") == CONTROL_NUMBER_PATTERN:
                continue
            pattern.addprevious(
                etree.Comment(
                    " ebts-gateway: the original pattern "
                    + pattern.get("value", "").replace("--", "- -")
                    + " matches no control number (^, $ and \\\\d are literal in XML Schema);"
                    " corrected to its evident intent "
                )
            )
            pattern.set("value", CONTROL_NUMBER_PATTERN)


def _parse_file(path: Path) -> etree._ElementTree:
    return etree.parse(str(path), safe_parser_keep_comments())


def safe_parser_keep_comments() -> etree.XMLParser:
    """Like :func:`safe_parser`, but keeping comments (for the served contract documents)."""
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, collect_ids=False
    )


class _BundleResolver(etree.Resolver):
    """Serves the bundle's XSDs to the schema compiler, control-number pattern corrected."""

    def __init__(self, xsd_root: Path):
        super().__init__()
        self.xsd_root = xsd_root.resolve()

    def resolve(self, url, pubid, context):
        path = Path(url.removeprefix("file://")).resolve()
        if not path.is_relative_to(self.xsd_root) or not path.is_file():
            return None
        root = _parse_file(path).getroot()
        _correct_control_number_pattern(root)
        return self.resolve_string(etree.tostring(root), context, base_url=str(path))


@dataclass
class Contract:
    """A service's prepared WSDL and XSDs (URL placeholders) and its compiled schema."""

    spec: ServiceSpec
    schema: etree.XMLSchema
    wsdl: bytes
    xsds: dict[str, bytes] = field(default_factory=dict)

    def document(self, xsd: str | None, service_url: str) -> bytes | None:
        """The WSDL (xsd None) or one XSD, with URLs pointing at ``service_url``."""
        data = self.wsdl if xsd is None else self.xsds.get(xsd)
        if data is None:
            return None
        return data.replace(_PLACEHOLDER.encode(), service_url.encode("ascii"))

    def validate(self, element: etree._Element) -> list[str]:
        """Schema errors of ``element`` (empty: valid)."""
        if self.schema.validate(element):
            return []
        return [f"line {e.line}: {e.message}" for e in self.schema.error_log][:5]


def _prepare(spec: ServiceSpec) -> Contract:
    wsdl_path = schema_path(spec.wsdl)
    xsd_root = wsdl_path.parents[3] / "xsd"
    wsdl_tree = _parse_file(wsdl_path)
    root = wsdl_tree.getroot()

    # The compiled schema: the WSDL's types, imports resolved in the bundle.
    schemas = root.findall(f"{{{WSDL}}}types/{{{XS}}}schema")
    if len(schemas) != 1:
        raise ValueError(f"{spec.wsdl}: expected one xsd:schema in wsdl:types")
    inline = etree.fromstring(etree.tostring(schemas[0]))
    _correct_control_number_pattern(inline)
    parser = safe_parser_keep_comments()
    parser.resolvers.add(_BundleResolver(xsd_root))
    schema_doc = etree.fromstring(etree.tostring(inline), parser, base_url=str(wsdl_path))
    schema = etree.XMLSchema(schema_doc)

    # The served documents: every schemaLocation becomes SERVICE?xsd=PATH.
    xsds: dict[str, bytes] = {}
    pending: list[tuple[etree._Element, Path, str | None]] = [(root, wsdl_path, None)]
    seen: set[str] = set()
    while pending:
        doc_root, doc_path, key = pending.pop()
        _correct_control_number_pattern(doc_root)
        for ref in doc_root.iter(f"{{{XS}}}import", f"{{{XS}}}include", f"{{{XS}}}redefine"):
            location = ref.get("schemaLocation")
            if not location:
                continue
            target = (doc_path.parent / location).resolve()
            if not target.is_relative_to(xsd_root.resolve()) or not target.is_file():
                raise ValueError(f"{doc_path}: import outside the bundle: {location}")
            rel = target.relative_to(xsd_root.resolve()).as_posix()
            ref.set("schemaLocation", f"{_PLACEHOLDER}?xsd={rel}")
            if rel not in seen:
                seen.add(rel)
                pending.append((_parse_file(target).getroot(), target, rel))
        for address in doc_root.iter(f"{{{WSDL_SOAP11}}}address", f"{{{WSDL_SOAP12}}}address"):
            address.set("location", _PLACEHOLDER)
        # The root alone: any DOCTYPE (niem-core declares an unused external entity) is dropped.
        data = etree.tostring(doc_root, xml_declaration=True, encoding="UTF-8")
        if key is None:
            wsdl = data
        else:
            xsds[key] = data
    return Contract(spec, schema, wsdl, xsds)


_contracts: dict[str, Contract] = {}
_lock = threading.Lock()


def contract(name: str) -> Contract:
    """The prepared :class:`Contract` of service ``name`` (once per process)."""
    found = _contracts.get(name)
    if found is None:
        with _lock:
            found = _contracts.get(name)
            if found is None:
                found = _contracts[name] = _prepare(SERVICES[name])
    return found


# -- control numbers --------------------------------------------------------------------------


class ControlNumbers:
    """NGI control numbers and the message ids they stand for, in the journal's database."""

    def __init__(self, journal):
        self.journal = journal
        journal.db.execute(
            "CREATE TABLE IF NOT EXISTS ngi_control_numbers ("
            " control_number TEXT PRIMARY KEY,"
            " message_id TEXT NOT NULL UNIQUE,"
            " service TEXT NOT NULL,"
            " created_at REAL NOT NULL)"
        )

    def allocate(self, today: dt.date | None = None) -> str:
        """A new control number from the durable counter ``ngi_control``."""
        number = self.journal.next_number("ngi_control")
        if number >= 10**12:
            raise RuntimeError("the ngi_control counter is exhausted")
        day = today or dt.datetime.now(dt.UTC).date()
        return f"{CONTROL_NUMBER_PREFIX}{day:%Y%j}{number:012d}"

    def record(self, control_number: str, message_id: str, service: str) -> None:
        # One statement in autocommit mode: committed (and fsync'd) when it returns.
        self.journal.db.execute(
            "INSERT INTO ngi_control_numbers (control_number, message_id, service, created_at)"
            " VALUES (?, ?, ?, ?)",
            (control_number, message_id, service, time.time()),
        )

    def message_id(self, control_number: str) -> str | None:
        row = self.journal.db.execute(
            "SELECT message_id FROM ngi_control_numbers WHERE control_number = ?",
            (control_number,),
        ).fetchone()
        return row[0] if row else None

    def control_number(self, message_id: str) -> str | None:
        row = self.journal.db.execute(
            "SELECT control_number FROM ngi_control_numbers WHERE message_id = ?",
            (message_id,),
        ).fetchone()
        return row[0] if row else None


# -- faults -----------------------------------------------------------------------------------


class Fault(Exception):
    """A fault to answer: ``error_code`` of the WSDL, the SOAP code, a message for the client."""

    def __init__(self, error_code: str, message: str, soap_code: str | None = None):
        super().__init__(message)
        self.version: str | None = None  # SOAP version of the request, once known
        self.error_code = error_code
        self.message = message[:1000]
        self.soap_code = soap_code or ("Client" if error_code == INVALID_REQUEST else "Server")


_CODES_12 = {
    "Client": "Sender",
    "Server": "Receiver",
    "VersionMismatch": "VersionMismatch",
    "MustUnderstand": "MustUnderstand",
}


def fault_envelope(
    fault: Fault, version: str = "1.1", detail: etree.QName = SERVICES_FAULT
) -> tuple[int, str, bytes]:
    """(HTTP status, content type, body) of a SOAP fault with the WSDL's detail element."""
    ns = SOAP11 if version == "1.1" else SOAP12
    env = etree.Element(etree.QName(ns, "Envelope"), nsmap={"soapenv": ns, "ngi-core": NGI_CORE})
    body = etree.SubElement(env, etree.QName(ns, "Body"))
    element = etree.SubElement(body, etree.QName(ns, "Fault"))
    info = etree.Element(detail)
    etree.SubElement(info, "faultMessage").text = fault.message
    etree.SubElement(info, "faultErrorCode").text = fault.error_code
    etree.SubElement(info, "faultType").text = (
        "CSA_ERROR" if detail == DELIVERY_FAULT else "NGI_SERVICE_ERROR"
    )
    if version == "1.1":
        etree.SubElement(element, "faultcode").text = f"soapenv:{fault.soap_code}"
        etree.SubElement(element, "faultstring").text = f"{fault.error_code}: {fault.message}"
        etree.SubElement(element, "detail").append(info)
        status, content_type = 500, CONTENT_TYPE_11
    else:
        code = _CODES_12[fault.soap_code]
        value = etree.SubElement(
            etree.SubElement(element, etree.QName(ns, "Code")), f"{{{ns}}}Value"
        )
        value.text = f"soapenv:{code}"
        reason = etree.SubElement(element, etree.QName(ns, "Reason"))
        text = etree.SubElement(reason, etree.QName(ns, "Text"))
        text.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
        text.text = f"{fault.error_code}: {fault.message}"
        etree.SubElement(element, etree.QName(ns, "Detail")).append(info)
        status = 400 if code == "Sender" else 500
        content_type = CONTENT_TYPE_12
    return status, content_type, etree.tostring(env, xml_declaration=True, encoding="UTF-8")


def answer_envelope(element: etree._Element, version: str = "1.1") -> tuple[int, str, bytes]:
    ns = SOAP11 if version == "1.1" else SOAP12
    env = etree.Element(etree.QName(ns, "Envelope"), nsmap={"soapenv": ns})
    etree.SubElement(env, etree.QName(ns, "Body")).append(element)
    content_type = CONTENT_TYPE_11 if version == "1.1" else CONTENT_TYPE_12
    return 200, content_type, etree.tostring(env, xml_declaration=True, encoding="UTF-8")


# -- intake -----------------------------------------------------------------------------------


def _service_url(request, path: str, public_url: str | None = None) -> str:
    """The address the WSDL names: ``[soap] public_url``, else the listener's own address.

    Never the request's Host header, which any client sets (a WSDL pointing elsewhere would send
    the next client's submissions there).
    """
    if public_url:
        return f"{public_url}{path}"
    scheme = "https" if request.isSecure() else "http"
    addr = request.getHost()
    host = f"[{addr.host}]" if ":" in addr.host else addr.host
    return f"{scheme}://{host}:{addr.port}{path}"


def _request_version(request) -> str:
    content_type = (request.getHeader("content-type") or "").lower()
    return "1.2" if content_type.startswith("application/soap+xml") else "1.1"


def _check_headers(header: etree._Element | None, version: str) -> None:
    if header is None:
        return
    ns = SOAP11 if version == "1.1" else SOAP12
    for block in header:
        if not isinstance(block.tag, str) or etree.QName(block).namespace in WSA:
            continue
        if block.get(f"{{{ns}}}mustUnderstand", "0").strip() in ("1", "true"):
            raise Fault(
                INVALID_REQUEST,
                f"header block {block.tag} is marked mustUnderstand and is not understood",
                "MustUnderstand",
            )


class ServiceResource(resource.Resource):
    """One intake service: GET ?wsdl / ?xsd=PATH, POST submitRequest."""

    isLeaf = True

    def __init__(self, gateway, spec: ServiceSpec, control_numbers: ControlNumbers):
        super().__init__()
        self.gateway = gateway
        self.spec = spec
        self.path = f"/ngi/{spec.name}"
        self.contract = contract(spec.name)
        self.control_numbers = control_numbers

    def render_GET(self, request):  # noqa: N802 - Twisted API
        if request.postpath not in ([], [b""]):
            request.setResponseCode(404)
            return b"not found\n"
        # twisted.web's request.args drops a bare "?wsdl" (no "="): read the query here.
        query = request.uri.partition(b"?")[2].decode("utf-8", "replace")
        args = {k.lower(): v for k, v in parse_qsl(query, keep_blank_values=True)}
        if "wsdl" in args or "xsd" in args:
            xsd = args.get("xsd")
            data = self.contract.document(
                xsd, _service_url(request, self.path, self.gateway.config.soap_public_url)
            )
            if data is None:
                request.setResponseCode(404)
                request.setHeader(b"content-type", b"text/plain; charset=utf-8")
                return b"no such schema\n"
            request.setHeader(b"content-type", b"text/xml; charset=utf-8")
            return data
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return (
            f"{self.spec.name}: POST SOAP 1.1 {self.spec.operation} requests here; "
            f"the WSDL is at {self.path}?wsdl\n"
        ).encode()

    def render_POST(self, request):  # noqa: N802 - Twisted API
        # The envelope is parsed and validated in a thread (the reactor never parses a large
        # XML body); only the commit and the answer happen here.
        version = _request_version(request)
        try:
            request.identity = self._identify(request)
        except Fault as fault:
            d = defer.fail(fault)
        else:
            content = request.content
            large = isinstance(content, Spool) and content.on_disk
            d = one_large_message_at_a_time(
                large,
                lambda: in_parser_thread(self._read, request).addCallback(
                    lambda parsed: self._submit(request, *parsed)
                ),
            )

        def failed(failure):
            if failure.check(Fault):
                fault = failure.value
                return fault_envelope(fault, fault.version or version)
            log.error("%s: unexpected error: %s", self.spec.name, failure.getTraceback())
            return fault_envelope(  # never a traceback to the client
                Fault(INTERNAL_PROCESSING_ERROR, "internal error; the request was not accepted"),
                version,
            )

        d.addErrback(failed)
        d.addCallback(self._answer, request)
        return server.NOT_DONE_YET

    def _answer(self, answer: tuple[int, str, bytes], request) -> None:
        if getattr(request, "_disconnected", False) or request.finished:
            return
        status, content_type, body = answer
        request.setResponseCode(status)
        request.setHeader(b"content-type", content_type.encode())
        request.write(body)
        request.finish()

    def _read(self, request) -> tuple[str, etree._Element | None, bytes]:
        """(SOAP version, header, payload) of a request; runs in a thread, raises Fault."""
        if request.postpath not in ([], [b""]):
            raise Fault(INVALID_REQUEST, f"no service at {request.path.decode('ascii', 'replace')}")
        content = request.content
        content.seek(0, 2)
        size = content.tell()
        if size > MAX_MESSAGE_BYTES:
            raise Fault(INVALID_REQUEST, f"message exceeds {MAX_MESSAGE_BYTES} bytes")
        if size == 0:
            raise Fault(INVALID_REQUEST, "empty request")
        content.seek(0)
        try:
            version, header, body = parse_envelope(content.read())
        except SoapVersionMismatch as exc:
            raise Fault(INVALID_REQUEST, str(exc), "VersionMismatch") from None
        except SoapError as exc:
            raise Fault(INVALID_REQUEST, f"malformed SOAP envelope: {exc}") from None
        try:
            return version, header, self._operation(version, header, body)
        except Fault as fault:
            fault.version = version
            raise

    def _operation(self, version, header, body) -> bytes:
        """The payload of a parsed request, checked against the WSDL schema (in a thread)."""
        _check_headers(header, version)
        children = body_children(body)
        if len(children) != 1 or etree.QName(children[0]) != self.spec.request:
            found = ", ".join(c.tag for c in children) or "nothing"
            raise Fault(
                INVALID_REQUEST,
                f"{self.spec.operation} expects one {self.spec.request} in the Body, not {found}",
            )
        element = children[0]
        errors = self.contract.validate(element)
        if errors:
            raise Fault(
                INVALID_REQUEST,
                "request is not valid against the WSDL schema: " + "; ".join(errors),
            )
        return self._payload(element)

    def _identify(self, request):
        """The identity of the client certificate (before any body work), or a Fault."""
        peer = getattr(request.getClientAddress(), "host", None)
        try:
            return self.gateway.intake.identify(
                peer_fingerprint(request.channel.transport) if request.isSecure() else None,
                transport="soap",
                peer=peer,
            )
        except Refused as exc:
            raise Fault(INVALID_REQUEST, f"not accepted: {exc.reason}") from None

    def _submit(self, request, version, header, payload: bytes) -> defer.Deferred:
        """Commit a checked request and build the answer (a Deferred: a large payload is
        stored by the store thread, the message committed in the reactor, then answered)."""
        try:
            if not is_ansinist(payload):
                raise Fault(
                    INVALID_REQUEST,
                    "the payload is not an ANSI/NIST-ITL transaction (1.001: or XML)",
                )
            peer = getattr(request.getClientAddress(), "host", None)
            try:  # before a control number is spent (the intake checks again when it stores)
                self.gateway.intake.authorize(
                    [payload], request.identity, transport="soap", peer=peer
                )
            except Refused as exc:
                raise Fault(INVALID_REQUEST, f"not accepted: {exc.reason}") from None
            # A ReplyTo is never used: answers go to the agency's registered destinations.
            stored = self._store(payload, peer, request.identity)
        except Fault as fault:
            fault.version = version
            raise

        def answer(control_number: str) -> tuple[int, str, bytes]:
            element = etree.Element(self.spec.response, nsmap={"ngi-core": NGI_CORE})
            element.text = control_number
            return answer_envelope(element, version)

        def versioned(failure):
            if failure.check(Fault):
                failure.value.version = version
            return failure

        return stored.addCallbacks(answer, versioned)

    def _payload(self, element: etree._Element) -> bytes:
        if self.spec.request == NATIVE_MESSAGE:
            text = "".join((element.text or "").split())
            try:
                payload = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise Fault(INVALID_REQUEST, "NativeEBTSMessage is not valid base64") from None
        else:
            # The package alone, without the declarations of the SOAP namespaces it inherited.
            package = copy.deepcopy(element)
            keep = [p for p, uri in package.nsmap.items() if p and uri not in (SOAP11, SOAP12)]
            etree.cleanup_namespaces(package, keep_ns_prefixes=keep)
            payload = etree.tostring(package, xml_declaration=True, encoding="UTF-8")
        if not payload:
            raise Fault(INVALID_REQUEST, "the transaction is empty")
        return payload

    def _store(self, payload: bytes, peer: str | None, identity) -> defer.Deferred:
        """The control number of the stored request (a Deferred; see :meth:`_submit`)."""
        if not self.gateway.running:
            raise Fault(SERVICE_NOT_AVAILABLE, "the gateway is shutting down; try again later")
        try:
            control_number = self.control_numbers.allocate()
        except (sqlite3.Error, OSError) as exc:
            return defer.fail(self._storage_fault(peer, exc))
        d = self.gateway.intake.accept_async(
            [payload], transport="soap", peer=peer, identity=identity
        )

        def stored(ids: list[str]) -> str:
            (message_id,) = ids
            self.control_numbers.record(control_number, message_id, self.spec.name)
            log.info(
                "%s: stored %s from %s as %s", self.spec.name, message_id, peer, control_number
            )
            return control_number

        def failed(failure):
            if failure.check(Refused):  # logged by the intake; nothing was stored
                raise Fault(INVALID_REQUEST, f"not accepted: {failure.value.reason}")
            if failure.check(sqlite3.Error, OSError):
                raise self._storage_fault(peer, failure.value)
            return failure

        return d.addCallback(stored).addErrback(failed)

    def _storage_fault(self, peer: str | None, exc: BaseException) -> Fault:
        log.error("%s: cannot store a request from %s: %s", self.spec.name, peer, exc)
        return Fault(SERVICE_NOT_AVAILABLE, "cannot store the request now; try again later")


def soap_root(gateway) -> resource.Resource:
    """The resource tree of the ``soap`` listener: ``/ngi/<service>`` per intake service."""
    control_numbers = ControlNumbers(gateway.journal)
    # Any: putChild wants an IResource, a zope interface mypy does not follow
    root: Any = resource.Resource()
    ngi: Any = resource.Resource()
    root.putChild(b"ngi", ngi)
    for name in INTAKE_SERVICES:
        ngi.putChild(name.encode(), ServiceResource(gateway, SERVICES[name], control_numbers))
    root.control_numbers = control_numbers
    return root


# -- delivery ---------------------------------------------------------------------------------


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


__all__ = [
    "soap_root",
    "soap_sender",
    "contract",
    "Contract",
    "ControlNumbers",
    "SERVICES",
    "CONTROL_NUMBER_PATTERN",
    "fault_envelope",
]
