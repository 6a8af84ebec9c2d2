"""SOAP envelopes of the NGI services: hardened parsing, building, faults read back (no Twisted).

The NGI Increment 4 services (``schemas/fbi-ebts-10.0-ngi-inc4/wsdl/ngi``) are SOAP 1.1,
document/literal, with one body element per message:

========================================  ========================================================
request body                              service / operation
========================================  ========================================================
``ngi-core:NativeEBTSMessage`` (base64)   NativeEBTSService ``submitRequest``,
                                          NativeEBTSResponseService ``receiveResponse``
``itl:NISTBiometricInformationExchange``  NGIUserService ``submitRequest``,
``Package`` (the XML transaction itself)  NGIResponseService ``receiveResponse``
========================================  ========================================================

``submitRequest`` answers ``ngi-core:NGIControlNumber``; ``receiveResponse`` answers
``ngi-core:VOID``.  Faults carry ``ngi-core:NGIServicesFault`` (submit) or
``ngi-core:DeliveryServicesFault`` (receive) as their detail.

This module holds what both sides of the wire need: the hardened parser, building and reading
envelopes (SOAP 1.1 and 1.2), the answer envelope, and the WS-Addressing header blocks a request
may carry (understood; any other block marked ``mustUnderstand`` is not).  The services and their
faults are :mod:`.contract`; the blocking client is :mod:`.client`.
"""

from __future__ import annotations

import base64

from lxml import etree

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
NGI_CORE = "http://ws.cjis.gov/2014/08/01/ngi/core/xsd"
ITL = "http://biometrics.nist.gov/standard/2011"

NATIVE_MESSAGE = etree.QName(NGI_CORE, "NativeEBTSMessage")
XML_PACKAGE = etree.QName(ITL, "NISTBiometricInformationExchangePackage")
CONTROL_NUMBER = etree.QName(NGI_CORE, "NGIControlNumber")
VOID = etree.QName(NGI_CORE, "VOID")
SERVICES_FAULT = etree.QName(NGI_CORE, "NGIServicesFault")
DELIVERY_FAULT = etree.QName(NGI_CORE, "DeliveryServicesFault")

CONTENT_TYPE_11 = "text/xml; charset=utf-8"
CONTENT_TYPE_12 = "application/soap+xml; charset=utf-8"

# A SOAP message is at most this big (a 64 MiB EBTS file is about 86 MiB in base64).
MAX_MESSAGE_BYTES = 96 * 1024 * 1024


class SoapError(Exception):
    """The peer's answer is no usable SOAP response (HTTP error without a fault, bad XML...)."""


class SoapVersionMismatch(SoapError):
    """An Envelope of another namespace than SOAP 1.1 or 1.2."""


class SoapFault(SoapError):
    """A SOAP fault; ``error_code`` is the detail's ``faultErrorCode`` (INVALID_REQUEST ...)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        error_code: str | None = None,
        fault_type: str | None = None,
        detail_message: str | None = None,
        http_status: int | None = None,
    ):
        super().__init__(f"{error_code or code}: {detail_message or message}")
        self.code = code
        self.message = message
        self.error_code = error_code
        self.fault_type = fault_type
        self.detail_message = detail_message
        self.http_status = http_status


def safe_parser() -> etree.XMLParser:
    """An lxml parser for untrusted XML: no DTD loading, no entities, no network.

    ``huge_tree`` is on because a base64 payload is one text node larger than libxml2's
    default 10 MB limit; callers bound the input size themselves (see MAX_MESSAGE_BYTES) and
    reject any document with a DTD (:func:`parse_envelope`), so no entity can expand.
    """
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=True,
        collect_ids=False,
        remove_comments=True,
        remove_pis=True,
    )


def is_xml_payload(payload: bytes) -> bool:
    """True for an XML transaction, False for a traditional (binary/tagged) one."""
    return payload.lstrip()[:1] == b"<"


def body_element(payload: bytes, *, xml: bool | None = None) -> etree._Element:
    """The SOAP body element carrying ``payload`` (base64 NativeEBTSMessage or the XML package).

    Raises ValueError for an empty payload or an XML payload that is not an ITL package.
    """
    if not payload:
        raise ValueError("empty payload")
    if xml is None:
        xml = is_xml_payload(payload)
    if not xml:
        element = etree.Element(NATIVE_MESSAGE, nsmap={"ngi-core": NGI_CORE})
        element.text = base64.b64encode(payload).decode("ascii")
        return element
    try:
        root = etree.fromstring(payload, safe_parser())
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"payload is not well-formed XML: {exc}") from None
    if root.getroottree().docinfo.internalDTD is not None:
        raise ValueError("payload carries a DTD")
    if etree.QName(root) != XML_PACKAGE:
        raise ValueError(f"payload root is {root.tag}, not {XML_PACKAGE}")
    return root


def envelope(body: etree._Element, *, version: str = "1.1") -> bytes:
    """A SOAP envelope (1.1 or 1.2) around ``body``, serialised as UTF-8 with declaration."""
    ns = SOAP11 if version == "1.1" else SOAP12
    env = etree.Element(etree.QName(ns, "Envelope"), nsmap={"soapenv": ns})
    etree.SubElement(env, etree.QName(ns, "Body")).append(body)
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8")


def request_envelope(payload: bytes, *, xml: bool | None = None) -> bytes:
    """The SOAP 1.1 request of ``submitRequest`` / ``receiveResponse`` carrying ``payload``."""
    return envelope(body_element(payload, xml=xml))


def parse_envelope(data: bytes) -> tuple[str, etree._Element | None, etree._Element]:
    """(SOAP version "1.1"/"1.2", Header or None, Body) of a SOAP message.

    Raises SoapError when it is not well-formed, has a DTD or is not a SOAP envelope.
    """
    try:
        root = etree.fromstring(data, safe_parser())
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise SoapError(f"not well-formed XML: {exc}") from None
    if root.getroottree().docinfo.internalDTD is not None:
        raise SoapError("a SOAP message must not contain a document type declaration")
    qname = etree.QName(root)
    if qname.localname != "Envelope":
        raise SoapError(f"root element {root.tag} is not a SOAP Envelope")
    if qname.namespace not in (SOAP11, SOAP12):
        raise SoapVersionMismatch(f"{root.tag} is neither a SOAP 1.1 nor a SOAP 1.2 Envelope")
    ns = qname.namespace
    version = "1.1" if ns == SOAP11 else "1.2"
    header = body = None
    for child in root:
        if not isinstance(child.tag, str):
            continue
        if child.tag == f"{{{ns}}}Header" and header is None and body is None:
            header = child
        elif child.tag == f"{{{ns}}}Body" and body is None:
            body = child
        elif version == "1.2" or child.tag.startswith(f"{{{ns}}}"):
            raise SoapError(f"unexpected element {child.tag} in the Envelope")
    if body is None:
        raise SoapError("the Envelope has no Body")
    return version, header, body


def body_children(body: etree._Element) -> list[etree._Element]:
    """The element children of a Body (comments and processing instructions left out)."""
    return [c for c in body if isinstance(c.tag, str)]


def fault_of(body: etree._Element, version: str, http_status: int | None = None):
    """The :class:`SoapFault` in ``body``, or None when the body is no fault."""
    ns = SOAP11 if version == "1.1" else SOAP12
    fault = body.find(f"{{{ns}}}Fault")
    if fault is None:
        return None
    if version == "1.1":
        code = (fault.findtext("faultcode") or "").strip()
        message = (fault.findtext("faultstring") or "").strip()
        detail = fault.find("detail")
    else:
        code = (fault.findtext(f"{{{ns}}}Code/{{{ns}}}Value") or "").strip()
        message = (fault.findtext(f"{{{ns}}}Reason/{{{ns}}}Text") or "").strip()
        detail = fault.find(f"{{{ns}}}Detail")
    error_code = fault_type = detail_message = None
    if detail is not None:
        for item in detail:
            if etree.QName(item) in (SERVICES_FAULT, DELIVERY_FAULT):
                error_code = (item.findtext("faultErrorCode") or "").strip() or None
                fault_type = (item.findtext("faultType") or "").strip() or None
                detail_message = item.findtext("faultMessage")
                break
    return SoapFault(
        code,
        message,
        error_code=error_code,
        fault_type=fault_type,
        detail_message=detail_message,
        http_status=http_status,
    )


def read_response(data: bytes, http_status: int | None = None) -> etree._Element:
    """The body element of a SOAP response; raises :class:`SoapFault` / :class:`SoapError`."""
    version, _, body = parse_envelope(data)
    fault = fault_of(body, version, http_status)
    if fault is not None:
        raise fault
    children = body_children(body)
    if len(children) != 1:
        raise SoapError(f"the response Body has {len(children)} elements, expected 1")
    return children[0]


WSA = ("http://www.w3.org/2005/08/addressing", "http://schemas.xmlsoap.org/ws/2004/08/addressing")


def answer_envelope(element: etree._Element, version: str = "1.1") -> tuple[int, str, bytes]:
    ns = SOAP11 if version == "1.1" else SOAP12
    env = etree.Element(etree.QName(ns, "Envelope"), nsmap={"soapenv": ns})
    etree.SubElement(env, etree.QName(ns, "Body")).append(element)
    content_type = CONTENT_TYPE_11 if version == "1.1" else CONTENT_TYPE_12
    return 200, content_type, etree.tostring(env, xml_declaration=True, encoding="UTF-8")


def not_understood(header: etree._Element | None, version: str) -> str | None:
    """The tag of the first header block marked ``mustUnderstand`` that is not understood (any
    but WS-Addressing's), or None."""
    if header is None:
        return None
    ns = SOAP11 if version == "1.1" else SOAP12
    for block in header:
        if not isinstance(block.tag, str) or etree.QName(block).namespace in WSA:
            continue
        if block.get(f"{{{ns}}}mustUnderstand", "0").strip() in ("1", "true"):
            return block.tag
    return None
