"""Reader and writer of the ANSI/NIST-ITL XML encoding (NIEM), as FBI EBTS 10.0 constrains it.

Generations, told apart by the namespace of the root element
``itl:NISTBiometricInformationExchangePackage``:

* ANSI/NIST-ITL 1-2011 as constrained by EBTS 10.0 (itl ``http://biometrics.nist.gov/standard/2011``,
  ansi-nist ``http://niem.gov/niem/biometrics/1.0``): read and written.
* ANSI/NIST-ITL 2-2008 (itl ``http://biometrics.nist.gov/standard/2-2008``, ansi-nist
  ``http://niem.gov/niem/ansi-nist/2.0``): read as NIST NBIS an2kconvert reads it, every record
  type it defines (1-10, 13-17, 99; table ``itl2008`` of ``xml_map.json``, see
  :mod:`._xml2008`), and written the same way by :func:`write_xml_2008` (``write(txn,
  "xml-2008")``).  :func:`write_xml` produces the EBTS 10.0 generation, which has no element for
  Types 3, 5 and 6 (FBI EBTS 10.0 dropped them): writing those there raises :class:`FormatError`.

The mapping between element paths and field tags is data: ``xml_map.json`` (see its ``_about``).
Conversion is lossless by construction; each direction checks itself field by field:

* XML -> model: an element the table cannot express exactly (unknown element, repeated leaf,
  attribute, value that does not convert back) is kept verbatim as an XML fragment in the
  record's field ``T.899`` (a user-defined field number; one subfield per fragment: parent
  path, element text) and a ``XML_UNMAPPED`` :class:`CodecWarning` names it.  The writer puts
  the fragment back in place.  Binary records (Types 3-8) have no room for it: a warning says so.
* model -> XML: a field without a mapping, or whose value does not survive the conversion
  (e.g. a 2.018 NAM without ``", "``), is carried as a processing instruction
  ``<?ansinist-field tag="2.064" base64="..."?>`` inside its record element (schema validation
  ignores processing instructions) and an ``XML_UNMAPPED_FIELD`` warning is added to
  ``txn.warnings``.

There is no LEN in XML (x.001 is dropped and recomputed by the traditional writer); the record
type travels in ``ansi-nist:RecordCategoryCode`` (written as two digits).

Parsing is hardened: no DTD (a DOCTYPE is refused, which also stops entity expansion and XXE), no
network, no huge-tree mode, at most one element per 32 bytes of the size limit and 10,000 elements
kept verbatim per package.  Any problem raises :class:`FormatError`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator
from copy import deepcopy
from pathlib import Path
from typing import Any

from lxml import etree  # type: ignore[import-untyped]

from ._xml2008 import Reader2008, Writer2008
from .errors import CodecWarning, FormatError, Location
from .layouts import BINARY_LAYOUTS, BINARY_TYPES
from .model import Field, Record, Transaction
from .traditional import DEFAULT_MAX_RECORDS, DEFAULT_MAX_SIZE, _ascii_digits

# lxml ships no type information: its elements are typed as Any.
_El = Any

_MAP = json.loads(Path(__file__).with_name("xml_map.json").read_text(encoding="utf-8"))

NS: dict[str, str] = dict(_MAP["namespaces"])
XSI = "http://www.w3.org/2001/XMLSchema-instance"
ITL_2011 = NS["itl"]
ITL_2008 = "http://biometrics.nist.gov/standard/2-2008"
ANSI_NIST_2008 = "http://niem.gov/niem/ansi-nist/2.0"
ROOT_NAME = "NISTBiometricInformationExchangePackage"

# Namespace URI -> prefix used by the table; 2-2008 URIs read as their 2011 counterparts.
_PREFIX: dict[str, str] = {uri: p for p, uri in NS.items()}
_PREFIX[ITL_2008] = "itl"
_PREFIX[ANSI_NIST_2008] = "ansi-nist"
RECORDS: dict[str, int] = dict(_MAP["records"])
RECORD_ELEMENT: dict[int, str] = {t: name for name, t in RECORDS.items()}
IMAGES: dict[int, list[str]] = {int(t): names for t, names in _MAP["images"].items()}
ORDER: dict[str, dict[str, int]] = {
    parent: {child: i for i, child in enumerate(children)}
    for parent, children in _MAP["order"].items()
}

FRAGMENT_NUM = 899  # user-defined field number carrying unmapped XML (1-2011: 200-900 UDF)
# Bounds of the work a package may ask for (tools/fuzz_xml.py): each element kept verbatim
# costs about 11 us and a field subfield, so 16 million "<a/>" (64 MB) took minutes.  The densest
# package of the corpus has one element per 82 bytes; unknown elements are a few per record.
BYTES_PER_ELEMENT = 32  # at most one element per 32 bytes of the size limit
MIN_ELEMENTS = 100_000
MAX_UNMAPPED = 10_000  # elements kept verbatim (T.899) in the whole package
PI_TARGET = "ansinist-field"
_CATEGORY = "ansi-nist:RecordCategoryCode"
_IDC_PATH = "ansi-nist:ImageReferenceIdentification"


class _Entry:
    """One row of the mapping table: a field tag and where its subfields live."""

    __slots__ = ("tag", "steps", "items", "conv", "depth")

    def __init__(self, tag: str, path: str, items: list[str], conv: str | None = None):
        self.tag = tag
        self.steps = tuple(path.split("/"))
        self.items = tuple(tuple(i.split("/")) if i else () for i in items)
        self.conv = conv
        self.depth = len(self.steps)


def _entries() -> dict[int, list[_Entry]]:
    out: dict[int, list[_Entry]] = {}
    for rtype, rows in _MAP["fields"].items():
        t = int(rtype)
        rows = list(rows)
        if t != 1:
            rows.insert(0, [f"{t}.002", _IDC_PATH, ["nc:IdentificationID"]])
        out[t] = [_Entry(*row) for row in rows]
    return out


ENTRIES = _entries()
# Writer: the first row of a tag is the one used.
_BY_TAG: dict[int, dict[str, _Entry]] = {}
for _t, _rows in ENTRIES.items():
    _BY_TAG[_t] = {}
    for _row in _rows:
        _BY_TAG[_t].setdefault(_row.tag, _row)
# Reader: deepest rows first, so that a field nested in another field's element is claimed first.
_READ_ORDER = {t: sorted(rows, key=lambda e: -e.depth) for t, rows in ENTRIES.items()}


# -- names --------------------------------------------------------------------------------------
def _pname(el: _El) -> str:
    """Prefixed table name of an element (``ansi-nist:Foo``); 2-2008 URIs fold onto 2011's."""
    tag = el.tag
    if tag[0] != "{":
        return str(tag)
    uri, _, local = tag[1:].partition("}")
    return f"{_PREFIX.get(uri, uri)}:{local}"


def _clark(pname: str) -> str:
    prefix, _, local = pname.partition(":")
    return f"{{{NS[prefix]}}}{local}"


def _children(el: _El) -> list[_El]:
    return [c for c in el if isinstance(c.tag, str)]


# -- value conversions (traditional <-> XML text) ------------------------------------------------
_DATE_T = re.compile(r"\d{8}\Z")
_DATE_X = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
_DT_T = re.compile(r"\d{14}Z\Z")
_DT_X = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z\Z")


class _NoFit(Exception):
    """A value the table cannot express exactly."""


def _leaf_kind(steps: tuple[str, ...]) -> str | None:
    local = steps[-1].partition(":")[2] if steps else ""
    if local == "Date":
        return "date"
    if local == "DateTime":
        return "datetime"
    if local.endswith("Indicator"):
        return "bool"
    return None


def _to_xml_value(kind: str | None, value: str) -> str:
    if kind == "date":  # CCYYMMDD -> xsd:date (1-2011 clause 7.7.2.3)
        if not _DATE_T.match(value):
            raise _NoFit
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    if kind == "datetime":  # GMT CCYYMMDDhhmmssZ -> xsd:dateTime
        if not _DT_T.match(value):
            raise _NoFit
        v = value
        return f"{v[:4]}-{v[4:6]}-{v[6:8]}T{v[8:10]}:{v[10:12]}:{v[12:14]}Z"
    if kind == "bool":
        if value not in ("Y", "N"):
            raise _NoFit
        return "true" if value == "Y" else "false"
    if kind == "fmt":  # 9.004 FMT: S = standard
        if value not in ("S", "U"):
            raise _NoFit
        return "true" if value == "S" else "false"
    return value


def _from_xml_value(kind: str | None, text: str) -> str:
    if kind == "date":
        if not _DATE_X.match(text):
            raise _NoFit
        return text.replace("-", "")
    if kind == "datetime":
        if not _DT_X.match(text):
            raise _NoFit
        return text.replace("-", "").replace("T", "").replace(":", "")
    if kind in ("bool", "fmt"):
        if text not in ("true", "false"):
            raise _NoFit
        yes, no = ("Y", "N") if kind == "bool" else ("S", "U")
        return yes if text == "true" else no
    return text


def _name_join(sur: str, given: str, middle: str) -> str:
    """2.018 NAM: ``SURNAME, GIVEN MIDDLE`` (EBTS Appendix: Type-2 NAM)."""
    if not sur or not given:
        raise _NoFit
    return f"{sur}, {given} {middle}" if middle else f"{sur}, {given}"


def _name_split(value: str) -> list[str]:
    sur, sep, rest = value.partition(", ")
    if not sep:
        raise _NoFit
    given, _, middle = rest.partition(" ")
    parts = [sur, given, middle]
    if _name_join(*parts) != value:
        raise _NoFit
    return parts


# -- reading ------------------------------------------------------------------------------------
# the hardened parser's options (no DTD, no entities, no network, no huge-tree mode)
_PARSER_OPTIONS: dict[str, bool] = {
    "resolve_entities": False,
    "no_network": True,
    "huge_tree": False,
    "load_dtd": False,
    "dtd_validation": False,
    "remove_blank_text": False,
}


def _parser() -> Any:
    return etree.XMLParser(**_PARSER_OPTIONS)


def _size_checked(data: bytes, max_size: int) -> int:
    """The node limit of a document of ``len(data)`` bytes; raises FormatError when the size or
    the markup count (an element has one or two tags: before any tree) is past it."""
    if len(data) > max_size:
        raise FormatError(
            "TOO_LARGE", f"{len(data)} bytes exceeds the limit of {max_size}", Location(offset=0)
        )
    most = max(MIN_ELEMENTS, max_size // BYTES_PER_ELEMENT)
    if data.count(b"<") > 2 * most:
        raise _too_many_elements(most)
    return most


def _not_well_formed(exc: Exception) -> FormatError:
    if isinstance(exc, etree.XMLSyntaxError):
        line = getattr(exc, "lineno", None)
        return FormatError(
            "XML_SYNTAX",
            f"not well-formed XML (line {line}): {getattr(exc, 'msg', exc)}",
            Location(offset=0),
            hint=f"XML document is not well-formed at line {line}",
        )
    return FormatError("XML_SYNTAX", f"cannot parse XML: {exc}", Location(offset=0))


def parse_document(data: bytes, max_size: int = DEFAULT_MAX_SIZE) -> _El:
    """Parse ``data`` with the hardened parser; returns the root element or raises FormatError."""
    most = _size_checked(data, max_size)
    try:
        root = etree.fromstring(data, _parser())
    except (ValueError, etree.LxmlError) as exc:
        raise _not_well_formed(exc) from None
    if root is None:
        raise FormatError("XML_SYNTAX", "empty XML document", Location(offset=0))
    for count, _ in enumerate(root.iter(), start=1):
        if count > most:  # the markup count above is an upper bound; this is the exact one
            raise _too_many_elements(most)
    _refuse_dtd(root)
    return root


def _refuse_dtd(root: _El) -> None:
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        # A DTD is never part of the NIEM package; refusing it rules out entity tricks (XXE).
        raise FormatError(
            "XML_DTD", "XML documents with a DOCTYPE/DTD are not accepted", Location(offset=0)
        )


def _too_many_elements(most: int) -> FormatError:
    return FormatError(
        "XML_TOO_MANY_ELEMENTS",
        f"more XML elements than the limit of {most}",
        Location(offset=0),
        hint=f"XML package has more than {most} elements",
    )


def generation(root: _El) -> str:
    """``"2011"`` (EBTS 10.0) or ``"2008"`` (ANSI/NIST-ITL 2-2008) from the root namespace."""
    q = etree.QName(root)
    if q.localname == ROOT_NAME and q.namespace == ITL_2011:
        return "2011"
    if q.localname == ROOT_NAME and q.namespace == ITL_2008:
        return "2008"
    raise FormatError(
        "XML_ROOT",
        f"root element {root.tag!r} is not itl:{ROOT_NAME} of ANSI/NIST-ITL 2-2008 or 1-2011",
        Location(offset=0),
        hint="XML root element is not an ANSI/NIST-ITL package",
    )


class _RecordReader:
    """Map one record element to a Record; whatever does not map stays a verbatim fragment."""

    def __init__(self, rec_el: _El, rtype: int, recno: int, warnings: list[CodecWarning]):
        self.rec_el = rec_el
        self.rtype = rtype
        self.recno = recno
        self.warnings = warnings
        self.claimed: set[_El] = set()
        self.room = MAX_UNMAPPED  # elements it may keep verbatim (what the package has left)
        self.kept = 0
        # element -> {prefixed name: children of that name}: every table row walks the same
        # few containers, and a record of many rows (Type-2) read them all again for each row
        self._kids: dict[_El, dict[str, list[_El]]] = {}
        self.image = None
        for child in _children(rec_el):
            if _pname(child) in IMAGES.get(rtype, ()):
                self.image = child
                break

    def _resolve(self, steps: tuple[str, ...]) -> list[_El]:
        nodes = [self.rec_el]
        last = len(steps) - 1
        for i, step in enumerate(steps):
            if step == "@":
                nodes = [self.image] if self.image is not None else []
                continue
            nodes = [c for n in nodes for c in self._named(n).get(step, ())]
            # The writer shares every container above the repeating element: a container that
            # repeats here cannot be rebuilt from fields, so it stays a verbatim fragment.
            if not nodes or (i < last and len(nodes) > 1):
                return []
        return nodes

    def _named(self, el: _El) -> dict[str, list[_El]]:
        kids = self._kids.get(el)
        if kids is None:
            kids = self._kids[el] = {}
            for child in _children(el):
                kids.setdefault(_pname(child), []).append(child)
        return kids

    def _leaves(
        self, unit: _El, rel: tuple[str, ...] = ()
    ) -> Iterator[tuple[tuple[str, ...], _El]]:
        """(relative path, element) of the leaf elements of ``unit``, skipping claimed subtrees.

        Lazily: the caller stops at the first leaf its row has no item for, so a unit flooded
        with 300,000 elements costs one, not a walk of all of them per table row (fuzz_xml)."""
        has_kids = False
        for kid in unit:
            if not isinstance(kid.tag, str):
                continue
            if not has_kids:
                has_kids = True
                if unit.text and unit.text.strip():
                    raise _NoFit  # mixed content
            if kid not in self.claimed:
                yield from self._leaves(kid, rel + (_pname(kid),))
        if not has_kids:
            yield rel, unit

    def _items(self, entry: _Entry, unit: _El) -> list[str]:
        if unit.attrib:
            raise _NoFit
        values: list[str | None] = [None] * len(entry.items)
        for rel, leaf in self._leaves(unit):
            try:
                idx = entry.items.index(rel)
            except ValueError:
                raise _NoFit from None
            if values[idx] is not None or (leaf is not unit and leaf.attrib):
                raise _NoFit
            text = leaf.text or ""
            if entry.tag.endswith(".999") or (self.rtype in (4, 7) and entry.tag.endswith(".009")):
                values[idx] = text  # base64, decoded by the caller
                continue
            if not text or text != text.strip():
                raise _NoFit
            kind = entry.conv if entry.conv == "fmt" else _leaf_kind(rel or entry.steps[-1:])
            value = _from_xml_value(kind, text)
            if _to_xml_value(kind, value) != text:
                raise _NoFit
            values[idx] = value
        items = ["" if v is None else v for v in values]
        if entry.conv == "name":
            return [_name_join(*items)]
        while items and items[-1] == "":
            items.pop()
        if not items:
            raise _NoFit
        return items

    def _claim(self, el: _El) -> None:
        self.claimed.update(el.iter())

    def read(self) -> Record:
        record = Record(self.rtype)
        fields: dict[str, list[tuple[str, ...]]] = {}
        binary: dict[str, bytes] = {}
        special = {"ver": self._ver, "cnt": self._cnt}
        for entry in _READ_ORDER.get(self.rtype, ()):
            if entry.conv in special:
                value = special[entry.conv](entry)
                if value is not None:
                    fields[entry.tag] = value
                continue
            for unit in self._resolve(entry.steps):
                if unit in self.claimed:
                    continue
                try:
                    items = self._items(entry, unit)
                    if entry.tag.endswith(".999") or (
                        self.rtype in (4, 7) and entry.tag.endswith(".009")
                    ):
                        if entry.tag in binary:
                            raise _NoFit
                        binary[entry.tag] = _b64decode(items[0])
                        self._claim(unit)
                        continue
                except _NoFit:
                    continue
                fields.setdefault(entry.tag, []).append(tuple(items))
                self._claim(unit)
        # Fields in tag order (x.999 last), as the traditional writer expects.
        for tag in sorted(
            list(fields) + list(binary), key=lambda t: (t.endswith(".999"), int(t.split(".")[1]))
        ):
            if tag in binary:
                record[tag] = binary[tag]
            else:
                record[tag] = fields[tag]
        for child in _children(self.rec_el):
            if _pname(child) == _CATEGORY:
                self.claimed.add(child)
                break
        self._pis(record)
        self._fragments(record)
        return record

    def _ver(self, entry: _Entry) -> list[tuple[str, ...]] | None:
        # 1.002 VER = major + minor version values (1-2011 Table 8, XML "05"/"00").
        major = self._resolve(entry.steps)
        minor = self._resolve(entry.steps[:-1] + ("ansi-nist:TransactionMinorVersionValue",))
        if len(major) != 1 or len(minor) != 1:
            return None
        a, b = major[0].text or "", minor[0].text or ""
        if _children(major[0]) or _children(minor[0]) or not (a.isdigit() and b.isdigit()):
            return None
        if len(a) != 2 or len(b) != 2:
            return None
        self._claim(major[0])
        self._claim(minor[0])
        return [(a + b,)]

    def _cnt(self, entry: _Entry) -> list[tuple[str, ...]] | None:
        # 1.003 CNT: first subfield "1 US count", then "type US IDC" per record (1-2011 8.1.3).
        nodes = self._resolve(entry.steps)
        if len(nodes) != 1 or nodes[0].attrib:
            return None
        summary = nodes[0]
        first = count = None
        subs = []
        for child in _children(summary):
            name = _pname(child)
            if child.attrib:
                return None
            if name == "ansi-nist:ContentFirstRecordCategoryCode" and first is None:
                first = child.text or ""
            elif name == "ansi-nist:ContentRecordQuantity" and count is None:
                count = child.text or ""
            elif name == "ansi-nist:ContentRecordSummary":
                idc = rcc = None
                for part in _children(child):
                    pn = _pname(part)
                    if pn == _IDC_PATH and idc is None:
                        ids = _children(part)
                        if len(ids) != 1 or _pname(ids[0]) != "nc:IdentificationID":
                            return None
                        idc = ids[0].text or ""
                    elif pn == _CATEGORY and rcc is None:
                        rcc = part.text or ""
                    else:
                        return None
                if not idc or not rcc:
                    return None
                subs.append((rcc, idc))
            else:
                return None
        if not first or not count:
            return None
        self._claim(summary)
        return [(first, count), *subs]

    def _pis(self, record: Record) -> None:
        _apply_pis(self.rec_el, record, self.recno, self.warnings)

    def _fragments(self, record: Record) -> None:
        self.kept = _keep_unmapped(
            self.rec_el, self.claimed, record, self.recno, self.warnings, self.room
        )


def _apply_pis(rec_el: _El, record: Record, recno: int, warnings: list[CodecWarning]) -> None:
    """Fields a previous model -> XML conversion could not map (see module doc)."""
    rtype = record.type
    for node in rec_el:
        if isinstance(node, etree._ProcessingInstruction) and node.target == PI_TARGET:
            tag, raw = node.get("tag"), node.get("base64")
            try:
                value = base64.b64decode(raw or "", validate=True)
                # "T.NNN", or "T.NNN#offset" for a duplicate field (see traditional.py)
                if not re.fullmatch(r"\d{1,2}\.\d{1,4}(#\d+)?", tag or ""):
                    raise ValueError(tag)
            except (ValueError, binascii.Error):
                warnings.append(
                    CodecWarning(
                        "XML_BAD_PI",
                        "malformed ansinist-field processing instruction ignored",
                        Location(recno, rtype),
                    )
                )
                continue
            if int(tag.partition(".")[0]) != rtype:
                # kept, as the traditional reader keeps it (libbiomeval type9-13: 13.005 in a
                # Type-9), with the same finding
                warnings.append(
                    CodecWarning(
                        "TAG_TYPE_MISMATCH",
                        f"field {tag.partition('#')[0]} inside a Type-{rtype} record",
                        Location(recno, rtype, tag.partition("#")[0]),
                    )
                )
            data_tag = BINARY_LAYOUTS[rtype].data_tag if rtype in BINARY_TYPES else None
            field = Field(tag, raw=value, binary=tag.endswith(".999") or tag == data_tag)
            field.dirty = True
            record.fields[tag] = field


def _keep_unmapped(
    rec_el: _El,
    claimed: set[_El],
    record: Record,
    recno: int,
    warnings: list[CodecWarning],
    room: int = MAX_UNMAPPED,
) -> int:
    """Keep the elements nobody claimed verbatim in ``T.899`` and say so (module doc); at most
    ``room`` elements, counted with their descendants (what the package has left of
    :data:`MAX_UNMAPPED`: serializing one fragment of 300,000 elements took minutes).  Returns
    how many elements were kept."""
    rtype = record.type
    frags: list[tuple[str, str]] = []
    names: list[str] = []
    used = 0

    def walk(el: _El, path: tuple[str, ...]) -> None:
        nonlocal used
        for child in _children(el):
            if child in claimed:
                if len(_children(child)):
                    walk(child, path + (_pname(child),))
                continue
            if any(d in claimed for d in child.iter()):
                walk(child, path + (_pname(child),))
                continue
            for _ in child.iter():
                used += 1
                if used > room:
                    raise FormatError(
                        "XML_UNMAPPED_LIMIT",
                        f"more than {MAX_UNMAPPED} elements of the package have no field",
                        Location(recno, rtype),
                        hint=f"record {recno}: too many XML elements with no ANSI/NIST-ITL field",
                    )
            frags.append(("/".join(path), _fragment_text(child)))
            names.append(_pname(child))

    walk(rec_el, ())
    if not frags:
        return 0
    tag = f"{rtype}.{FRAGMENT_NUM:03d}"
    shown = ", ".join(sorted(set(names)))[:300]
    if rtype in BINARY_TYPES:
        warnings.append(
            CodecWarning(
                "XML_UNMAPPED_LOST",
                f"{len(frags)} element(s) cannot be carried by a binary record: {shown}",
                Location(recno, rtype),
            )
        )
        return used
    record[tag] = frags
    warnings.append(
        CodecWarning(
            "XML_UNMAPPED",
            f"{len(frags)} element(s) kept verbatim in field {tag}: {shown}",
            Location(recno, rtype, tag),
        )
    )
    return used


def _fragment_text(el: _El) -> str:
    """Serialize ``el`` deterministically: only the namespaces it uses, declared sorted."""
    copy = deepcopy(el)
    copy.tail = None
    # Comments and indentation are not content; element-only whitespace is dropped so that the
    # fragment text is the same however the document was laid out.
    for node in list(copy.iter(etree.Comment, etree.ProcessingInstruction)):
        node.getparent().remove(node)  # lxml moves the node's tail onto its neighbour
    for node in copy.iter():
        if len(node) and node.text is not None and not node.text.strip():
            node.text = None
        if node is not copy and node.tail is not None and not node.tail.strip():
            node.tail = None
    etree.cleanup_namespaces(copy)
    nsmap = dict(sorted(copy.nsmap.items(), key=lambda kv: kv[0] or ""))
    root = etree.Element(copy.tag, attrib=dict(copy.attrib), nsmap=nsmap)
    root.text = copy.text
    root.extend(list(copy))
    etree.cleanup_namespaces(root)
    return str(etree.tostring(root, encoding="unicode", with_tail=False))


def _b64decode(text: str) -> bytes:
    compact = "".join(text.split())
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise _NoFit from None


def read_xml(
    data: bytes, *, max_size: int = DEFAULT_MAX_SIZE, max_records: int = DEFAULT_MAX_RECORDS
) -> Transaction:
    """Decode an XML package.  Raises only :class:`FormatError`."""
    if isinstance(data, bytearray | memoryview):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise TypeError("read_xml() needs bytes")
    root = parse_document(data, max_size)
    gen = generation(root)
    warnings: list[CodecWarning] = []
    records: list[Record] = []
    elements = _children(root)
    if len(elements) > max_records:
        raise FormatError(
            "TOO_MANY_RECORDS",
            f"{len(elements)} records, more than the limit of {max_records}",
            Location(),
        )
    reader_2008 = _reader_2008() if gen == "2008" else None
    room = MAX_UNMAPPED
    for recno, rec_el in enumerate(elements, start=1):
        name = _pname(rec_el)
        if reader_2008 is not None:
            rtype = reader_2008.record_type(rec_el)
        else:
            rtype = RECORDS.get(name)
        if rtype is None:
            rtype = _category(rec_el)
        if rtype is None:
            raise FormatError(
                "XML_RECORD",
                f"unknown record element {name}",
                Location(recno),
                hint=f"record {recno}: unknown XML record element {name}",
            )
        if (recno == 1) != (rtype == 1):
            raise FormatError(
                "XML_RECORD_ORDER",
                "the package must start with exactly one Type-1 PackageInformationRecord",
                Location(recno, rtype),
            )
        if reader_2008 is not None:
            record, claimed = reader_2008.read(rec_el, rtype, recno, warnings)
            _apply_pis(rec_el, record, recno, warnings)
            room -= _keep_unmapped(rec_el, claimed, record, recno, warnings, room)
            records.append(record)
        else:
            reader = _RecordReader(rec_el, rtype, recno, warnings)
            reader.room = room
            records.append(reader.read())
            room -= reader.kept
    if not records:
        raise FormatError("XML_EMPTY", "the package holds no records", Location())
    txn = Transaction(records, encoding="xml")
    txn.warnings = warnings
    txn.source_version = records[0].value("1.002")
    if gen == "2008":
        txn.warnings.append(
            CodecWarning(
                "XML_2008",
                "ANSI/NIST-ITL 2-2008 package; it will be written as EBTS 10.0 (1-2011) XML",
                Location(1, 1),
            )
        )
    return txn


def peek_xml(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> dict[str, str]:
    """Type-1 values (tag -> first item) of an XML package, reading its first record only.

    What intake needs to authorize a submission (1.008 ORI, 1.009 TCN) without decoding the
    images of the other records; raises only :class:`FormatError`.  The document is parsed
    only as far as the end of its first record (a pull parser fed :data:`PEEK_CHUNK` bytes at a
    time), so a peek costs what the Type-1 record costs, whatever follows it: intake peeks in
    the reactor thread, and a whole 64 MB package of small elements took seconds to parse.
    The rest of the document is checked by the full read (:func:`read_xml`), in a worker.
    """
    _size_checked(data, max_size)
    # every node counts (a start, a comment, a processing instruction), as in parse_document
    parser = etree.XMLPullParser(events=("start", "end", "comment", "pi"), **_PARSER_OPTIONS)
    root: _El | None = None
    first: _El | None = None
    gen = ""  # the root's generation (read at its start)
    depth = elements = 0
    view = memoryview(data)
    for offset in [*range(0, len(data), PEEK_CHUNK), -1]:
        broken: Exception | None = None
        try:
            if offset < 0:
                parser.close()  # the end of the document: an unclosed one raises here
            else:
                parser.feed(bytes(view[offset : offset + PEEK_CHUNK]))
        except (etree.LxmlError, ValueError) as exc:
            # the events before a fault in what was fed are still read (the first record may
            # end before it); a failed close() reports every open element as ended: none read
            broken = exc
        for event, el in () if broken is not None and offset < 0 else parser.read_events():
            if event == "end":
                depth -= 1
                if depth == 1:
                    first = el
                    break
                continue
            elements += 1  # (a start, a comment or a processing instruction)
            if elements > PEEK_ELEMENTS:
                raise FormatError(
                    "XML_TOO_MANY_ELEMENTS",
                    f"more than {PEEK_ELEMENTS} XML elements before the end of the first record",
                    Location(1, 1),
                )
            if event != "start":
                continue
            tag = el.tag
            if tag[0] != "{" and ":" in tag:
                # an undefined prefix: fromstring refuses it (parse_document), the pull parser
                # leaves it in the name (and QName() of it raises ValueError)
                raise FormatError(
                    "XML_SYNTAX",
                    f"not well-formed XML: namespace prefix {tag.partition(':')[0]!r} not defined",
                    Location(offset=0),
                    hint="XML document uses an undefined namespace prefix",
                )
            depth += 1
            if root is None:
                root = el
                _refuse_dtd(root)  # as parse_document (known at the root's start)
                gen = generation(root)  # not an ANSI/NIST-ITL package: refused at once
        if first is not None or (depth == 0 and root is not None):
            break
        if broken is not None:
            raise _not_well_formed(broken)
    if root is None:
        raise FormatError("XML_SYNTAX", "empty XML document", Location(offset=0))
    if first is None:
        raise FormatError("XML_EMPTY", "the package holds no records", Location())
    warnings: list[CodecWarning] = []
    if gen == "2008":
        reader = _reader_2008()
        if reader.record_type(first) != 1:
            raise FormatError("XML_RECORD_ORDER", "no Type-1 record first", Location(1))
        record, _ = reader.read(first, 1, 1, warnings)
        _apply_pis(first, record, 1, warnings)  # as read_xml: the same Type-1 values
    else:
        if RECORDS.get(_pname(first)) != 1:
            raise FormatError("XML_RECORD_ORDER", "no Type-1 record first", Location(1))
        record = _RecordReader(first, 1, 1, warnings).read()
    return {tag: field.value for tag, field in record.fields.items() if not field.binary}


PEEK_CHUNK = 1 << 16  # bytes fed to the pull parser at a time by peek_xml
# elements peek_xml parses at most: a Type-1 has a few dozen, and 1.003 CNT three or four per
# record (at most DEFAULT_MAX_RECORDS, 10,000)
PEEK_ELEMENTS = MIN_ELEMENTS


def _reader_2008() -> Reader2008:
    global _READER_2008
    if _READER_2008 is None:
        _READER_2008 = Reader2008(_MAP["itl2008"])
    return _READER_2008


_READER_2008: Reader2008 | None = None


def _category(rec_el: _El) -> int | None:
    for child in _children(rec_el):
        if _pname(child) == _CATEGORY:
            text = (child.text or "").strip()
            if _ascii_digits(text) and 1 <= int(text) <= 99:
                return int(text)
    return None


# -- writing ------------------------------------------------------------------------------------
class _Builder:
    """Build one record element from a Record (the inverse of :class:`_RecordReader`)."""

    def __init__(self, record: Record, recno: int):
        self.record = record
        self.rtype = record.type
        self.recno = recno
        self.el = etree.Element(_clark(RECORD_ELEMENT[self.rtype]))
        self.image_name = self._image_name()
        self.image = None
        self.unmapped: list[str] = []

    def _image_name(self) -> str | None:
        names = IMAGES.get(self.rtype)
        if not names:
            return None
        frag = self.record.get(f"{self.rtype}.{FRAGMENT_NUM:03d}")
        if frag is not None:
            for sub in frag.subfields:
                head = sub[0].split("/")[0] if sub and sub[0] else ""
                if head in names:
                    return head
        if self.rtype == 10:
            # 10.003 IMT: FACE -> itl:FaceImage, SMT/other -> PhysicalFeatureImage (itl.xsd).
            imt = self.record.value("10.003")
            return "itl:FaceImage" if imt == "FACE" else "ansi-nist:PhysicalFeatureImage"
        return names[0]

    def _step(self, parent: _El, step: str, create_last: bool) -> _El:
        if step == "@":
            if self.image is None:
                self.image = etree.SubElement(self.el, _clark(self.image_name or ""))
            return self.image
        if not create_last:
            for child in parent:
                if isinstance(child.tag, str) and _pname(child) == step:
                    return child
        return etree.SubElement(parent, _clark(step))

    def _container(self, steps: tuple[str, ...]) -> _El:
        node = self.el
        for step in steps:
            node = self._step(node, step, False)
        return node

    def build(self) -> _El:
        etree.SubElement(self.el, _clark(_CATEGORY)).text = f"{self.rtype:02d}"
        table = _BY_TAG.get(self.rtype, {})
        frag_tag = f"{self.rtype}.{FRAGMENT_NUM:03d}"
        for tag, field in self.record.fields.items():
            if tag == f"{self.rtype}.001" or tag == frag_tag:
                continue
            entry = table.get(tag)
            if entry is None or (entry.steps[0] == "@" and self.image_name is None):
                self._pi(tag, field)
                continue
            if not self._field(entry, field):
                self._pi(tag, field)
        frag = self.record.get(frag_tag)
        if frag is not None:
            self._fragments(frag)
        _sort(self.el)
        return self.el

    def _values(self, entry: _Entry, field: Field) -> list[list[str]]:
        """XML texts of every subfield's items, or raise _NoFit."""
        is_data = entry.tag.endswith(".999") or (
            self.rtype in (4, 7) and entry.tag.endswith(".009")
        )
        if self.rtype in BINARY_TYPES and entry.tag.endswith(".002") and _ascii_digits(field.value):
            # Binary IDC is a number (1-2011 Table 16); XML carries it as two digits.
            return [[f"{int(field.value):02d}"]]
        if is_data:
            if not field.binary:
                raise _NoFit
            return [[base64.b64encode(bytes(field.raw)).decode("ascii")]]
        if field.binary:
            raise _NoFit
        out = []
        for sub in field.subfields:
            items = list(sub)
            if entry.conv == "name":
                if len(items) != 1:
                    raise _NoFit
                items = _name_split(items[0])
            if len(items) > len(entry.items) or not any(items) or not items[-1]:
                raise _NoFit  # the reader cannot tell a trailing empty item from none
            texts = []
            for rel, value in zip(entry.items, items, strict=False):
                kind = entry.conv if entry.conv == "fmt" else _leaf_kind(rel or entry.steps[-1:])
                if not value:
                    texts.append("")
                    continue
                text = _to_xml_value(kind, value)
                if _from_xml_value(kind, text) != value or text != text.strip():
                    raise _NoFit
                if not _xml_text_ok(text):
                    raise _NoFit
                texts.append(text)
            out.append(texts)
        return out

    def _field(self, entry: _Entry, field: Field) -> bool:
        if entry.conv == "ver":
            return self._ver(entry, field)
        if entry.conv == "cnt":
            return self._cnt(entry, field)
        try:
            subs = self._values(entry, field)
        except _NoFit:
            return False
        if entry.conv == "name" and any(len(s) != 3 for s in subs):
            return False
        parent = self._container(entry.steps[:-1])
        for texts in subs:
            unit = self._step(parent, entry.steps[-1], True)
            for rel, text in zip(entry.items, texts, strict=False):
                if not text:
                    continue
                node = unit
                for step in rel:
                    node = self._step(node, step, False)
                node.text = text
        return True

    def _ver(self, entry: _Entry, field: Field) -> bool:
        value = field.value
        if field.binary or len(field.subfields) != 1 or not re.fullmatch(r"\d{4}", value):
            return False
        parent = self._container(entry.steps[:-1])
        etree.SubElement(parent, _clark(entry.steps[-1])).text = value[:2]
        etree.SubElement(parent, _clark("ansi-nist:TransactionMinorVersionValue")).text = value[2:]
        return True

    def _cnt(self, entry: _Entry, field: Field) -> bool:
        subs = field.subfields
        if field.binary or not subs or any(len(s) != 2 or not all(s) for s in subs):
            return False
        if not all(_xml_text_ok(i) for s in subs for i in s):
            return False
        summary = self._container(entry.steps)
        first, count = subs[0]

        def add(parent: _El, name: str, text: str) -> None:
            etree.SubElement(parent, _clark(name)).text = text

        add(summary, "ansi-nist:ContentFirstRecordCategoryCode", first)
        add(summary, "ansi-nist:ContentRecordQuantity", count)
        for rcc, idc in subs[1:]:
            entry_el = etree.SubElement(summary, _clark("ansi-nist:ContentRecordSummary"))
            ref = etree.SubElement(entry_el, _clark(_IDC_PATH))
            add(ref, "nc:IdentificationID", idc)
            add(entry_el, _CATEGORY, rcc)
        return True

    def _pi(self, tag: str, field: Field) -> None:
        raw = base64.b64encode(bytes(field.raw)).decode("ascii")
        self.el.append(etree.ProcessingInstruction(PI_TARGET, f'tag="{tag}" base64="{raw}"'))
        self.unmapped.append(tag)

    def _fragments(self, field: Field) -> None:
        for sub in field.subfields:
            if len(sub) != 2:
                self._pi(field.tag, field)
                return
        nodes = []
        for path, xml in field.subfields:
            try:
                node = etree.fromstring(xml.encode("utf-8"), _parser())
            except etree.XMLSyntaxError:
                self._pi(field.tag, field)
                return
            nodes.append((path, node))
        for path, node in nodes:
            steps = tuple(path.split("/")) if path else ()
            if steps and steps[0] in IMAGES.get(self.rtype, ()):
                steps = ("@",) + steps[1:]
            parent = self._container(steps)
            parent.append(node)


def _xml_text_ok(text: str) -> bool:
    try:
        etree.Element("x").text = text
    except ValueError:
        return False
    return True


def _sort(el: _El) -> None:
    """Order children as the schema's content models do (xml_map.json ``order``)."""
    kids = list(el)
    if not kids:
        return
    order = ORDER.get(_pname(el), {})
    big = len(order) + 1

    def key(pair: tuple[int, _El]) -> tuple[int, int]:
        i, node = pair
        if not isinstance(node.tag, str):
            return (big + 1, i)  # processing instructions and comments last
        return (order.get(_pname(node), big), i)

    ordered = [node for _, node in sorted(enumerate(kids), key=key)]
    if ordered != kids:
        el[:] = ordered
    for node in ordered:
        if isinstance(node.tag, str):
            _sort(node)


def write_xml(txn: Transaction) -> bytes:
    """Encode ``txn`` as an EBTS 10.0 XML package (UTF-8)."""
    records = txn.records
    if not records or records[0].type != 1:
        raise FormatError(
            "XML_RECORD_ORDER",
            "a transaction starts with its Type-1 record",
            Location(1),
            hint="the transaction has no Type-1 record first",
        )
    root = etree.Element(_clark(f"itl:{ROOT_NAME}"), nsmap={**NS, "xsi": XSI})
    known = set(txn.warnings)
    for recno, record in enumerate(records, start=1):
        if record.type not in RECORD_ELEMENT:
            # EBTS 10.0 / ANSI/NIST-ITL 1-2011 XML has no element for Types 3, 5, 6 (deprecated in
            # 1-2011 clause 8.3/8.5/8.6); refuse rather than drop the record.
            raise FormatError(
                "XML_RECORD_TYPE",
                f"Type-{record.type} records have no EBTS 10.0 (1-2011) XML element",
                Location(recno, record.type),
                hint=f"record {recno}: Type-{record.type} cannot be written as EBTS 10.0 XML",
            )
        builder = _Builder(record, recno)
        root.append(builder.build())
        for tag in builder.unmapped:
            warning = CodecWarning(
                "XML_UNMAPPED_FIELD",
                f"field {tag} has no exact XML mapping; carried as a processing instruction",
                Location(recno, record.type, tag),
            )
            if warning not in known:  # a set: one warning per unmapped field, in any number
                known.add(warning)
                txn.warnings.append(warning)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def write_xml_2008(txn: Transaction) -> bytes:
    """Encode ``txn`` as an ANSI/NIST-ITL 2-2008 XML package, as NBIS an2kconvert writes it.

    Every record type of 2-2008 (1-10, 13-17, 99) is written with the tree of ``xml_map.json``
    ``itl2008`` that NBIS would use (Types 1 and 2 without the EBTS beta elements).  Each record
    is read back; a field whose value does not come back exactly (a Type-2 field, INCITS 378
    minutiae, a date that is not CCYYMMDD ...) is carried as an ``ansinist-field`` processing
    instruction and named by an ``XML_UNMAPPED_FIELD`` warning, so the conversion stays lossless.
    """
    records = txn.records
    if not records or records[0].type != 1:
        raise FormatError(
            "XML_RECORD_ORDER",
            "a transaction starts with its Type-1 record",
            Location(1),
            hint="the transaction has no Type-1 record first",
        )
    table = _MAP["itl2008"]
    writer = _writer_2008()
    nsmap = {p: uri for p, uri in table["namespaces"].items() if p in ("itl", "ansi-nist", "nc")}
    nsmap["s"] = NS["s"]
    root = etree.Element(writer.clark(f"itl:{ROOT_NAME}"), nsmap=nsmap)
    reader = _reader_2008()
    known = set(txn.warnings)
    for recno, record in enumerate(records, start=1):
        try:
            el = writer.build(record)
        except KeyError:
            raise FormatError(
                "XML_RECORD_TYPE",
                f"Type-{record.type} records have no ANSI/NIST-ITL 2-2008 XML element",
                Location(recno, record.type),
                hint=f"record {recno}: Type-{record.type} cannot be written as 2-2008 XML",
            ) from None
        back, _ = reader.read(el, record.type, recno, [])
        for tag, field in record.fields.items():
            if tag == f"{record.type}.001" or _same_value(record.type, field, back.get(tag)):
                continue
            raw = base64.b64encode(bytes(field.raw)).decode("ascii")
            el.append(etree.ProcessingInstruction(PI_TARGET, f'tag="{tag}" base64="{raw}"'))
            warning = CodecWarning(
                "XML_UNMAPPED_FIELD",
                f"field {tag} has no exact 2-2008 XML mapping; carried as a processing instruction",
                Location(recno, record.type, tag),
            )
            if warning not in known:  # a set: one warning per unmapped field, in any number
                known.add(warning)
                txn.warnings.append(warning)
        root.append(el)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def _same_value(rtype: int, field: Field, back: Field | None) -> bool:
    if back is None:
        return False
    if field.binary or back.binary:
        return field.binary == back.binary and bytes(field.raw) == bytes(back.raw)
    if rtype in BINARY_TYPES:  # header numbers: "01" and "1" are the same IDC
        mine = [s[0].lstrip("0") or "0" for s in field.subfields if s and s[0] != "255"]
        theirs = [s[0].lstrip("0") or "0" for s in back.subfields if s and s[0] != "255"]
        return mine == theirs
    return field.subfields == back.subfields


def _writer_2008() -> Writer2008:
    global _WRITER_2008
    if _WRITER_2008 is None:
        _WRITER_2008 = Writer2008(_MAP["itl2008"])
    return _WRITER_2008


_WRITER_2008: Writer2008 | None = None


__all__ = [
    "read_xml",
    "write_xml",
    "write_xml_2008",
    "parse_document",
    "generation",
    "FRAGMENT_NUM",
    "PI_TARGET",
]
