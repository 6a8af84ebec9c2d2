"""Level 4: XML Schema validation of XML-encoded transactions.

EBTS 10.0 packages (itl namespace ``http://biometrics.nist.gov/standard/2011``) are validated
against ``fbi_ebts.xsd`` of the FBI NGI Inc4 bundle; ANSI/NIST-ITL 2-2008 packages against
``ITL-2008-Package-Annex-B.xsd`` (NBIS).  Each schema is compiled once (lxml/libxml2, the faster
of the two engines tried: see ``benchmarks``/report) and cached for the process.

Schemas are looked up in ``schemas/`` beside the checkout (editable install) and in
``gateway/_schemas`` (wheel, via the hatch ``force-include`` in pyproject.toml).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

from lxml import etree  # type: ignore[import-untyped]

from gateway.ansinist import FormatError
from gateway.ansinist.xml import ITL_2008, ITL_2011, ROOT_NAME, parse_document

from .findings import ERROR, Finding, XmlLocation

EBTS10_XSD = "fbi-ebts-10.0-ngi-inc4/xsd/ebts/10.0/fbi_ebts/10.0/fbi_ebts.xsd"
ITL2008_XSD = "ansi-nist-itl-2-2008-nbis/ITL-2008-Package-Annex-B.xsd"
_BY_NAMESPACE = {ITL_2011: EBTS10_XSD, ITL_2008: ITL2008_XSD}

_cache: dict[str, etree.XMLSchema] = {}
_lock = threading.Lock()


def schema_dirs() -> list[Path]:
    """Where the schema tree may be: the repository checkout, then the installed wheel."""
    here = Path(__file__).resolve()
    return [here.parents[2] / "schemas", here.parents[1] / "_schemas"]


def schema_path(relative: str) -> Path:
    for base in schema_dirs():
        path = base / relative
        if path.is_file():
            return path
    raise FileNotFoundError(f"schema {relative} not found in {[str(d) for d in schema_dirs()]}")


def get_schema(relative: str) -> etree.XMLSchema:
    """The compiled schema ``relative`` (to the schema folder); compiled once per process."""
    schema = _cache.get(relative)
    if schema is None:
        with _lock:
            schema = _cache.get(relative)
            if schema is None:
                # Schemas import each other by relative path; no network (no_network=True).
                parser = etree.XMLParser(no_network=True, resolve_entities=False)
                doc = etree.parse(str(schema_path(relative)), parser)
                schema = etree.XMLSchema(doc)
                _cache[relative] = schema
    return schema


def _by_line(root: Any) -> dict[int, list[Any]]:
    """The elements of the document by source line, in document order: made once per document
    (one walk of the tree per schema error was quadratic: 1,205 errors in an 18 MB package took
    31 s, found by tools/fuzz_process.py)."""
    index: dict[int, list[Any]] = {}
    for el in root.iter():
        if isinstance(el.tag, str):
            index.setdefault(el.sourceline, []).append(el)
    return index


def _path_of(
    by_line: dict[int, list[Any]], line: int | None, element_name: str | None
) -> str | None:
    """Prefixed element path (``itl:Package.../ansi-nist:Foo``) of the element the error names."""
    if line is None:
        return None
    best = None
    for el in by_line.get(line, ()):
        if element_name is None or etree.QName(el).localname == element_name:
            best = el
            break
    if best is None:
        return None
    parts = []
    node = best
    while node is not None:
        q = etree.QName(node)
        parts.append(f"{node.prefix}:{q.localname}" if node.prefix else q.localname)
        node = node.getparent()
    return "/" + "/".join(reversed(parts))


def validate_xml_schema(data: bytes) -> list[Finding]:
    """Level-4 findings of an XML transaction (empty list: valid against its schema).

    A document that cannot be parsed, or whose root is not an ANSI/NIST-ITL package, yields one
    ``L4_SCHEMA`` finding as well (level 1 reports the parse error in detail).
    """
    try:
        root = parse_document(bytes(data))
    except FormatError as exc:
        return [_finding(None, None, exc.message, "well-formed XML (XML 1.0)")]
    q = etree.QName(root)
    relative = _BY_NAMESPACE.get(q.namespace) if q.localname == ROOT_NAME else None
    if relative is None:
        return [
            _finding(
                root.sourceline,
                None,
                f"root element {root.tag} is not a known package",
                "itl:NISTBiometricInformationExchangePackage of 2-2008 or 1-2011",
            )
        ]
    schema = get_schema(relative)
    if schema.validate(root):
        return []
    findings = []
    by_line = _by_line(root)
    for err in schema.error_log:
        name = None
        message = err.message
        if message.startswith("Element '"):
            name = message[len("Element '") :].split("'", 1)[0]
            name = name.rsplit("}", 1)[-1]
        findings.append(_finding(err.line, _path_of(by_line, err.line, name), message, relative))
    return findings


# libxml2 quotes the offending value ("The value 'X' is not ...", "... 'X' has a length ...",
# "... 'X' is greater than ...", "Element 'e': 'X' is not a valid value of ..."); a value may be a
# name, an SSN or a date of birth, so it is left out.  It is quoted as is: O'BRIEN holds a quote,
# so the value runs to the last quote before " is ", " has " or " must " (greedy), not the first.
_QUOTED_VALUE = re.compile(r"(?:The value |(?<=: ))'.*'(?= (?:is|has|must) )", re.DOTALL)


def _scrub(message: str) -> str:
    return _QUOTED_VALUE.sub("The value", message)


def _finding(line: int | None, path: str | None, message: str, rule: str) -> Finding:
    loc = XmlLocation(line, path)
    where = f"line {line}" if line is not None else "XML"
    message = _scrub(message)
    short = message if len(message) <= 200 else message[:197] + "..."
    return Finding(
        ERROR,
        "L4_SCHEMA",
        loc,
        message,
        hint=f"XML schema violation at {where}: {short} [rule: XML Schema {rule}]",
    )


__all__ = ["validate_xml_schema", "get_schema", "schema_path", "schema_dirs"]
