"""The ``soap`` listener: a thin twisted.web adapter of the NGI intake services.

::

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
``G2026329000000000042``, and are recorded with the message id
(:class:`gateway.store.controls.ControlNumbers`).

The contract (schemas, faults) is :mod:`.contract`; the envelopes are :mod:`.envelope`.
"""

from __future__ import annotations

import base64
import binascii
import copy
import logging
from typing import Any
from urllib.parse import parse_qsl

from lxml import etree
from twisted.internet import defer
from twisted.web import resource, server

from gateway.routing.authz import Refused, is_ansinist
from gateway.store.controls import ControlNumbers
from gateway.store.errors import STORE_ERRORS
from gateway.transports.tls import peer_fingerprint

from ..limits import in_parser_thread, one_large_message_at_a_time
from ..spool import Spool
from .contract import (
    INTAKE_SERVICES,
    INTERNAL_PROCESSING_ERROR,
    INVALID_REQUEST,
    SERVICE_NOT_AVAILABLE,
    SERVICES,
    Fault,
    ServiceSpec,
    contract,
    fault_envelope,
)
from .envelope import (
    MAX_MESSAGE_BYTES,
    NATIVE_MESSAGE,
    NGI_CORE,
    SOAP11,
    SOAP12,
    SoapError,
    SoapVersionMismatch,
    answer_envelope,
    body_children,
    not_understood,
    parse_envelope,
)

log = logging.getLogger("gateway.soap")


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
    tag = not_understood(header, version)
    if tag is not None:
        raise Fault(
            INVALID_REQUEST,
            f"header block {tag} is marked mustUnderstand and is not understood",
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
        except STORE_ERRORS + (OSError,) as exc:
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
            if failure.check(*STORE_ERRORS, OSError):
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
