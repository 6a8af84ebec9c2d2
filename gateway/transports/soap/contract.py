"""The NGI services' contract: their WSDLs and schemas as served and compiled, and the faults.

The WSDLs' ``NGIControlNumberType`` pattern cannot match any control number as written
(``^``/``$`` are literal characters in XML Schema regular expressions and ``\\\\d`` is a
backslash followed by ``d``); both the served documents and the compiled schemas carry the
evident intent instead (:data:`CONTROL_NUMBER_PATTERN`), marked by a comment.

Faults carry ``ngi-core:NGIServicesFault`` as detail (faultErrorCode INVALID_REQUEST,
SERVICE_NOT_AVAILABLE or INTERNAL_PROCESSING_ERROR; faultType NGI_SERVICE_ERROR: raised by
the NGI side), in the SOAP version of the request (the WSDL binding is SOAP 1.1; SOAP 1.2
requests are answered in 1.2).
"""

from __future__ import annotations

import re
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from gateway.validation.schema import schema_path

from .envelope import (
    CONTENT_TYPE_11,
    CONTENT_TYPE_12,
    CONTROL_NUMBER,
    DELIVERY_FAULT,
    NATIVE_MESSAGE,
    NGI_CORE,
    SERVICES_FAULT,
    SOAP11,
    SOAP12,
    VOID,
    XML_PACKAGE,
)

XS = "http://www.w3.org/2001/XMLSchema"
WSDL = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP11 = "http://schemas.xmlsoap.org/wsdl/soap/"
WSDL_SOAP12 = "http://schemas.xmlsoap.org/wsdl/soap12/"

BUNDLE = "fbi-ebts-10.0-ngi-inc4"
INVALID_REQUEST = "INVALID_REQUEST"
SERVICE_NOT_AVAILABLE = "SERVICE_NOT_AVAILABLE"
INTERNAL_PROCESSING_ERROR = "INTERNAL_PROCESSING_ERROR"

# Letter, year, day of the year (001-366), 12 digits: what the WSDL's pattern evidently means.
CONTROL_NUMBER_PATTERN = (
    "[A-Z][0-9]{4}(00[1-9]|0[1-9][0-9]|[12][0-9]{2}|3[0-5][0-9]|36[0-6])[0-9]{12}"
)
_CONTROL_NUMBER_RE = re.compile(CONTROL_NUMBER_PATTERN + r"\Z")

# Stands for the service URL in the prepared documents; replaced per request.
_PLACEHOLDER = "http://ebts-gateway.invalid/__service__"


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
    """Like :func:`.envelope.safe_parser`, but keeping comments (for the served documents)."""
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, collect_ids=False
    )


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
    bundle = wsdl_path.parents[3]
    xsd_root = (bundle / "xsd").resolve()
    wsdl_tree = _parse_file(wsdl_path)
    root = wsdl_tree.getroot()

    # The compiled schema: the WSDL's types, imports resolved in the bundle.
    schemas = root.findall(f"{{{WSDL}}}types/{{{XS}}}schema")
    if len(schemas) != 1:
        raise ValueError(f"{spec.wsdl}: expected one xsd:schema in wsdl:types")
    inline = etree.fromstring(etree.tostring(schemas[0]))
    _correct_control_number_pattern(inline)

    # The served documents: every schemaLocation becomes SERVICE?xsd=PATH.  Each XSD is also
    # kept as corrected, with its own relative schemaLocations, for the compile below.
    xsds: dict[str, bytes] = {}
    corrected: dict[str, bytes] = {}
    pending: list[tuple[etree._Element, Path, str | None]] = [(root, wsdl_path, None)]
    seen: set[str] = set()
    while pending:
        doc_root, doc_path, key = pending.pop()
        _correct_control_number_pattern(doc_root)
        if key is not None:
            corrected[key] = etree.tostring(doc_root)
        for ref in doc_root.iter(f"{{{XS}}}import", f"{{{XS}}}include", f"{{{XS}}}redefine"):
            location = ref.get("schemaLocation")
            if not location:
                continue
            target = (doc_path.parent / location).resolve()
            if not target.is_relative_to(xsd_root) or not target.is_file():
                raise ValueError(f"{doc_path}: import outside the bundle: {location}")
            rel = target.relative_to(xsd_root).as_posix()
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
    return Contract(spec, _compile(inline, wsdl_path.relative_to(bundle), corrected), wsdl, xsds)


def _compile(
    inline: etree._Element, wsdl_rel: Path, corrected: dict[str, bytes]
) -> etree.XMLSchema:
    """The schema of the WSDL's types, compiled from the corrected documents written to a
    temporary copy of the bundle's layout (the inline schema where the WSDL is, every XSD under
    ``xsd/``), so that its relative imports resolve to the corrected copies.

    Not through an lxml Resolver that corrects the documents as they are loaded (as before):
    lxml sets libxml2's process-wide entity loader to its own around every parse and restores
    the one it found, so a parse ending in another thread during the compile could put
    libxml2's default loader back, which reads the bundle's original files: the broken
    control-number pattern (tests/integration/soap_helpers.py had that race over HTTP).  Local
    files load alike with either loader."""
    with tempfile.TemporaryDirectory(prefix="ebts-gateway-contract-") as folder:
        base = Path(folder)
        for rel, data in corrected.items():
            path = base / "xsd" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        entry = base / wsdl_rel.with_suffix(".types.xsd")
        entry.parent.mkdir(parents=True, exist_ok=True)
        entry.write_bytes(etree.tostring(inline))
        return etree.XMLSchema(etree.parse(str(entry), safe_parser_keep_comments()))


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
