"""Reader of ANSI/NIST-ITL 2-2008 XML packages, the way NIST NBIS an2kconvert reads them.

The mapping is data: ``xml_map.json`` section ``itl2008`` holds one tree per record variant,
transcribed from NBIS 5.0.0 ``an2kconvert`` (``RecordConverter.cxx``, public domain).  A tree lists
the child elements of every element in schema order; each element is matched by name, wherever it
stands among its siblings, and its leaves say which field, subfield and item they fill:

* ``node``: a container;
* ``sub``: each occurrence is the next subfield of every field below it (a repeating field);
* ``item``: each occurrence moves the items below it on by their ``step`` (repeating items);
* ``leaf``: one value at (``tag``, ``sub``, ``item``); ``substr`` orders the parts of a composite
  item (9.012 MRC ``XXXXYYYYTTT``, 1.002 VER major + minor);
* ``list_sub`` / ``list_item``: each occurrence is the next subfield / item.

Counters follow NBIS: a new subfield resets the item counter of the leaves below to their start.
Which variant of a record type applies (e.g. Type-9 standard minutiae on fingers or on palms, a
Type-10 face or SMT image) is the variant whose tree claims most of the record's elements; NBIS
picks the one that validates, which on valid files is the same one.

Whatever no tree claims is reported (``XML_UNMAPPED`` warning) and kept verbatim in field
``T.899`` of tagged records, as the 1-2011 reader does; binary records (Types 3-8) have no room for
it (``XML_UNMAPPED_LOST``).  A value that the declared conversion cannot read (a date that is not
``YYYY-MM-DD``, base64 that does not decode) is kept as written with an ``XML_VALUE`` warning.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from typing import Any

from lxml import etree  # type: ignore[import-untyped]

from .errors import CodecWarning, Location
from .layouts import BINARY_LAYOUTS, BINARY_TYPES
from .model import Record
from .traditional import _ascii_digits

_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})\Z")
_DATETIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z\Z")
_BOOL = {"fmt": ("S", "U"), "rci": ("1", "0")}


class _Node:
    """Run-time copy of one tree node with NBIS's subfield and item counters."""

    __slots__ = ("spec", "name", "kind", "children", "sub", "item")

    def __init__(self, spec: dict[str, Any]):
        self.spec = spec
        self.name: str = spec["el"]
        self.kind: str = spec["kind"]
        self.children = [_Node(c) for c in spec.get("children", ())]
        self.sub: int = spec.get("sub", 0)
        self.item: int = spec.get("item", 0)

    def next_subfield(self) -> None:
        if "tag" in self.spec:
            self.sub += 1
            self.item = self.spec.get("item", 0)
        for child in self.children:
            child.next_subfield()

    def next_item(self) -> None:
        if "tag" in self.spec:
            self.item += self.spec.get("step", 0)
        for child in self.children:
            child.next_item()


def _children(el: Any) -> list[Any]:
    return [c for c in el if isinstance(c.tag, str)]


_MAX_NAMES = 4096


class Reader2008:
    """Map the record elements of one 2-2008 package; ``namespaces`` maps prefix -> URI."""

    def __init__(self, table: dict[str, Any]):
        self.table = table
        self.prefix = {uri: p for p, uri in table["namespaces"].items()}
        self._names: dict[str, str] = {}  # element tag -> name (a QName costs microseconds)
        self._tree_names: dict[str, list[tuple[frozenset[str], frozenset[str]]]] = {}
        self.records: dict[str, int] = {}
        for rtype, variants in table["records"].items():
            for variant in variants:
                self.records[variant["record"]] = int(rtype)

    def name(self, el: Any) -> str:
        """``prefix:Local`` of an element; the bare local name when its namespace is unknown."""
        tag = el.tag
        found = self._names.get(tag)
        if found is None:
            q = etree.QName(el)
            prefix = self.prefix.get(q.namespace or "")
            found = f"{prefix}:{q.localname}" if prefix else q.localname
            if len(self._names) < _MAX_NAMES:  # (a package may hold any number of names)
                self._names[tag] = found
        return found

    def record_type(self, el: Any) -> int | None:
        return self.records.get(self.name(el))

    def read(
        self, rec_el: Any, rtype: int, recno: int, warnings: list[CodecWarning]
    ) -> tuple[Record, set[Any]]:
        """The record read by the variant that claims most elements (the first of those that
        claim as many), and the claimed elements.

        A variant can claim only elements whose names its tree has: that count bounds what it
        can claim, and a variant whose bound is below what a variant read so far claimed (or
        equal, and listed after it) is not run; the same choice as running them all (on a
        Type-9 of standard minutiae, 1 run of 4)."""
        variants = self.table["records"].get(str(rtype), ())
        bounds = self._bounds(rec_el, str(rtype)) if len(variants) > 1 else [0] * len(variants)
        best, best_index = None, -1
        for index in sorted(range(len(variants)), key=lambda i: (-bounds[i], i)):
            if best is not None:
                most = len(best.claimed)
                if bounds[index] < most or (bounds[index] == most and index > best_index):
                    continue
            run = _Run(self, rtype, recno)
            run.convert_children(
                _Node({"el": "", "kind": "node", "children": variants[index]["children"]}), rec_el
            )
            claimed = len(run.claimed)
            if (
                best is None
                or claimed > len(best.claimed)
                or (claimed == len(best.claimed) and index < best_index)
            ):
                best, best_index = run, index
        if best is None:
            best = _Run(self, rtype, recno)
        for child in _children(rec_el):
            if self.name(child) == "ansi-nist:RecordCategoryCode":
                best.claimed.add(child)
                break
        warnings.extend(best.warnings)
        return best.record(), best.claimed

    def _bounds(self, rec_el: Any, rtype: str) -> list[int]:
        """Per variant of ``rtype``: how many elements below ``rec_el`` have a name of its tree
        (a name ``_Run.matches``: equal, or an unprefixed name equal to its local part)."""
        counts: dict[str, int] = {}
        for el in rec_el.iter():
            if el is not rec_el and isinstance(el.tag, str):
                name = self.name(el)
                counts[name] = counts.get(name, 0) + 1
        out = []
        for names, local in self._variant_names(rtype):
            out.append(
                sum(
                    n
                    for name, n in counts.items()
                    if name in names or (":" not in name and name in local)
                )
            )
        return out

    def _variant_names(self, rtype: str) -> list[tuple[frozenset[str], frozenset[str]]]:
        found = self._tree_names.get(rtype)
        if found is None:
            found = []
            for variant in self.table["records"].get(rtype, ()):
                names: set[str] = set()
                pending = list(variant["children"])
                while pending:
                    spec = pending.pop()
                    names.add(spec["el"])
                    pending.extend(spec.get("children", ()))
                local = frozenset(n.partition(":")[2] for n in names if ":" in n)
                found.append((frozenset(names), local))
            self._tree_names[rtype] = found
        return found


class _Run:
    """One attempt at reading a record element with one variant tree."""

    def __init__(self, reader: Reader2008, rtype: int, recno: int):
        self.reader = reader
        self.rtype = rtype
        self.recno = recno
        self.claimed: set[Any] = set()
        self.values: dict[str, dict[int, dict[int, list[tuple[int, str]]]]] = {}
        self.blobs: dict[str, bytes] = {}
        self.warnings: list[CodecWarning] = []

    def matches(self, want: str, have: str) -> bool:
        return want == have or (":" not in have and want.partition(":")[2] == have)

    def convert_children(self, node: _Node, el: Any) -> None:
        kids = _children(el)
        names = [self.reader.name(k) for k in kids]
        taken: set[int] = set()
        for i, child in enumerate(node.children):
            idx = [j for j, n in enumerate(names) if j not in taken and self.matches(child.name, n)]
            # Two converters of one name (9.007 FPC: the first pattern, then the reference list):
            # the earlier ones take one element each, the last takes the rest.
            if any(c.name == child.name for c in node.children[i + 1 :]):
                idx = idx[:1]
            taken.update(idx)
            self.convert(child, [kids[j] for j in idx])

    def convert(self, node: _Node, elements: list[Any]) -> None:
        kind = node.kind
        if kind in ("node", "sub", "item"):
            for el in elements:
                if el.text and el.text.strip() and not _children(el):
                    continue  # text where the schema wants elements: left unmapped
                self.claimed.add(el)
                self.convert_children(node, el)
                if kind == "sub":
                    node.next_subfield()
                elif kind == "item":
                    node.next_item()
            return
        if kind == "leaf":
            elements = elements[:1]  # a second occurrence of a single value is left unmapped
        for el in elements:
            if _children(el):
                continue
            if not self.assign(node, el):
                continue
            self.claimed.add(el)
            if kind == "list_sub":
                node.sub += 1
                node.item = node.spec.get("item", 0)
            elif kind == "list_item":
                node.item += node.spec.get("step", 1)

    def assign(self, node: _Node, el: Any) -> bool:
        spec = node.spec
        tag: str = spec["tag"]
        fmt = spec.get("fmt")
        text = el.text or ""
        if fmt == "base64":
            try:
                self.blobs[tag] = base64.b64decode("".join(text.split()), validate=True)
            except (binascii.Error, ValueError):
                self._bad(tag, "is not base64")
                return False
            return True
        # Surrounding XML white space is layout, not value (NBIS trims it too: an empty
        # DomainVersionNumberIdentification written on two lines is an empty 1.013 item).
        value = self._format(tag, fmt, text.strip(" \t\r\n"))
        order = spec.get("substr", 1 if fmt == "split1" else 0)
        sub = self.values.setdefault(tag, {}).setdefault(node.sub, {})
        sub.setdefault(node.item, []).append((order, value))
        return True

    def _format(self, tag: str, fmt: str | None, text: str) -> str:
        if fmt == "date":
            m = _DATE.match(text)
            if m:
                return "".join(m.groups())
            self._bad(tag, "is not a date YYYY-MM-DD")
        elif fmt == "datetime":
            m = _DATETIME.match(text)
            if m:
                return "".join(m.groups()) + "Z"
            self._bad(tag, "is not a UTC date-time YYYY-MM-DDThh:mm:ssZ")
        elif fmt == "idc":
            if self.rtype in BINARY_TYPES and _ascii_digits(text):
                return str(int(text))  # binary IDC is a number (1-2011 Table 16)
            return text.rjust(2, "0")
        elif fmt in _BOOL:
            yes, no = _BOOL[fmt]
            if text in ("true", "false"):
                return yes if text == "true" else no
            self._bad(tag, "is not true or false")
        elif fmt == "split1":
            return "," + text  # 9.012 ridge count "reference,count" (NBIS ItemSplitFormatter)
        return text

    def _bad(self, tag: str, what: str) -> None:
        # The value is not quoted: it may belong to a personal field.
        self.warnings.append(
            CodecWarning(
                "XML_VALUE",
                f"the XML value of {tag} {what}; kept as written",
                Location(self.recno, self.rtype, tag),
            )
        )

    def record(self) -> Record:
        record = Record(self.rtype)
        layout = BINARY_LAYOUTS.get(self.rtype)
        tags = sorted(
            set(self.values) | set(self.blobs),
            key=lambda t: (t.endswith(".999"), int(t.split(".")[1])),
        )
        for tag in tags:
            if tag in self.blobs:
                record[tag] = self.blobs[tag]
                continue
            subs = []
            by_sub = self.values[tag]
            for s in range(max(by_sub) + 1):
                by_item = by_sub.get(s, {})
                items = [
                    "".join(v for _, v in sorted(by_item.get(i, ()), key=lambda p: p[0]))
                    for i in range(max(by_item) + 1 if by_item else 1)
                ]
                subs.append(tuple(items))
            if layout is not None and tag == layout.data_tag and self.rtype == 8:
                record[tag] = _vector_signature(subs)  # 8B: vectors as subfields X, Y, pressure
                continue
            if layout is not None and tag == f"{self.rtype}.004" and self.rtype != 8:
                # FGP: six bytes, 255 = unused position (1-2011 Table 15); the model lists the used.
                subs = [s for s in subs if s != ("255",)]
            record[tag] = subs
        return record


def _vector_signature(subs: list[tuple[str, ...]]) -> bytes:
    """Type-8 vector data: 5 bytes per vector, X and Y big-endian 16-bit, pressure (8.8.8)."""
    out = bytearray()
    for sub in subs:
        try:
            x, y, p = (int(v) for v in (list(sub) + ["0", "0", "0"])[:3])
            out += struct.pack(">HHB", x, y, p)
        except (ValueError, struct.error):
            return bytes(out)
    return bytes(out)


__all__ = ["Reader2008"]


# -- writing ------------------------------------------------------------------------------------
class _Out:
    """Run-time copy of a tree node for writing, with NBIS's counters (``Converter::convert``)."""

    __slots__ = ("spec", "name", "kind", "children", "sub", "item")

    def __init__(self, spec: dict[str, Any]):
        self.spec = spec
        self.name: str = spec["el"]
        self.kind: str = spec["kind"]
        self.children = [_Out(c) for c in spec.get("children", ())]
        self.sub: int = spec.get("sub", 0)
        self.item: int = spec.get("item", 0)

    def next_subfield(self) -> None:
        if "tag" in self.spec:
            self.sub += 1
            self.item = self.spec.get("item", 0)
        for child in self.children:
            child.next_subfield()

    def next_item(self) -> None:
        if "tag" in self.spec:
            self.item += self.spec.get("step", 0)
        for child in self.children:
            child.next_item()


class _NoValue(Exception):
    """A value the declared conversion cannot write (a DAT that is not CCYYMMDD ...)."""


_BOOL_OUT = {"fmt": {"S": "true", "U": "false"}, "rci": {"1": "true", "0": "false"}}
_DATE_T = re.compile(r"(\d{4})(\d{2})(\d{2})\Z")
_DATETIME_T = re.compile(r"(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z\Z")


def _format_out(fmt: str | None, text: str) -> str:
    if fmt == "date":
        m = _DATE_T.match(text)
        if m is None:
            raise _NoValue
        return "-".join(m.groups())
    if fmt == "datetime":
        m = _DATETIME_T.match(text)
        if m is None:
            raise _NoValue
        d = m.groups()
        return f"{d[0]}-{d[1]}-{d[2]}T{d[3]}:{d[4]}:{d[5]}Z"
    if fmt == "idc":
        return text.rjust(2, "0")
    if fmt in _BOOL_OUT:
        if text not in _BOOL_OUT[fmt]:
            raise _NoValue
        return _BOOL_OUT[fmt][text]
    if fmt == "ll8":
        return "00" if text == "0" else text  # NBIS Type8LLFormatter
    if fmt in ("split0", "split1"):
        parts = text.split(",")
        if len(parts) != 2:
            raise _NoValue
        return parts[0] if fmt == "split0" else parts[1]
    return text


class Writer2008:
    """Build 2-2008 record elements from records, the way NBIS an2kconvert writes them."""

    def __init__(self, table: dict[str, Any]):
        self.table = table
        self.uri = dict(table["namespaces"])

    def clark(self, name: str) -> str:
        prefix, _, local = name.partition(":")
        return f"{{{self.uri[prefix]}}}{local}"

    def variant(self, record: Record) -> dict[str, Any] | None:
        """The tree NBIS would use for ``record`` (non-EBTS mode: Types 1 and 2 take their
        ANSI/NIST variant; others by the content that tells them apart)."""
        variants: dict[str, dict[str, Any]] = {
            v["variant"]: v for v in self.table["records"].get(str(record.type), ())
        }
        if not variants:
            return None
        rtype = record.type

        def first_number(tag: str) -> int | None:
            value = record.value(tag) or ""
            return int(value) if _ascii_digits(value) else None

        choice = None
        if rtype == 8:
            # 8.004 SRT 2: vector data (1-2011 Table 36); 0 and 1 are scanned images
            choice = "Type8B" if record.value("8.004") == "2" else "Type8A"
        elif rtype == 9:
            if record.value("9.004") == "U":
                choice = "Type9C"  # 9.005-9.012 belong to the standard format (FMT S, 8.9.4)
            elif (first_number("9.006") or 0) >= 20:
                choice = "Type9B"  # palm positions (1-2011 Table 10)
            elif any(f"9.{n:03d}" in record for n in range(5, 13)):
                choice = "Type9A"
            else:
                choice = "Type9C"  # INCITS 378 minutiae (9D) are written as fields, see doc
        elif rtype == 10:
            choice = "Type10B" if record.value("10.003") == "FACE" else "Type10A"
        elif rtype == 13:
            if (first_number("13.013") or 0) >= 20:
                choice = "Type13C"
            elif "13.014" in record or "13.015" in record:
                choice = "Type13B"
            else:
                choice = "Type13A"
        elif rtype == 14:
            choice = "Type14B" if "14.014" in record or "14.015" in record else "Type14A"
        if choice in variants:
            return variants[choice]
        return next(iter(variants.values()))

    def values(self, record: Record) -> dict[str, Any]:
        """Field values as NBIS's part-1 model holds them: subfields of items, or bytes."""
        out: dict[str, Any] = {}
        layout = BINARY_LAYOUTS.get(record.type)
        for tag, field in record.fields.items():
            if field.binary:
                data = bytes(field.raw)
                if record.type == 8 and record.value("8.004") == "2":
                    # vector signature: 5 bytes per vector, X, Y, pressure (1-2011 8.8.8)
                    out[tag] = [
                        tuple(str(v) for v in struct.unpack(">HHB", data[i : i + 5]))
                        for i in range(0, len(data) - len(data) % 5, 5)
                    ]
                else:
                    out[tag] = data
                continue
            subs = [list(sub) for sub in field.subfields]
            if layout is not None and tag == f"{record.type}.004" and record.type != 8:
                subs += [["255"]] * (6 - len(subs))  # six FGP bytes, 255 = unused
            out[tag] = subs
        return out

    def build(self, record: Record) -> Any:
        """The record element (without the fields it cannot express: see :func:`write`)."""
        variant = self.variant(record)
        name = variant["record"] if variant else None
        if name is None:
            raise KeyError(record.type)
        el = etree.Element(self.clark(name))
        etree.SubElement(el, self.clark("ansi-nist:RecordCategoryCode")).text = f"{record.type:02d}"
        values = self.values(record)
        root = _Out(
            {"el": name, "kind": "node", "children": variant["children"] if variant else []}
        )
        for child in root.children:
            for node in self._emit(child, values):
                el.append(node)
        return el

    def _emit(self, node: _Out, values: dict[str, Any]) -> list[Any]:
        kind = node.kind
        if kind == "node":
            el = etree.Element(self.clark(node.name))
            for child in node.children:
                for sub in self._emit(child, values):
                    el.append(sub)
            return [el] if len(el) else []
        if kind in ("sub", "item"):
            out: list[Any] = []
            for _ in range(100_000):  # bounded by the field's subfields / items
                el = etree.Element(self.clark(node.name))
                for child in node.children:
                    for sub in self._emit(child, values):
                        el.append(sub)
                if not len(el):
                    break
                out.append(el)
                if kind == "sub":
                    node.next_subfield()
                else:
                    node.next_item()
            return out
        if kind == "leaf":
            text = self._value(node, values)
            return [] if text is None else [self._leaf(node, text)]
        out = []
        for _ in range(100_000):
            text = self._value(node, values)
            if text is None:
                break
            out.append(self._leaf(node, text))
            if kind == "list_sub":
                node.sub += 1
                node.item = node.spec.get("item", 0)
            else:
                node.item += node.spec.get("step", 1)
        return out

    def _leaf(self, node: _Out, text: str) -> Any:
        el = etree.Element(self.clark(node.name))
        el.text = text
        return el

    def _value(self, node: _Out, values: dict[str, Any]) -> str | None:
        spec = node.spec
        value = values.get(spec["tag"])
        if value is None:
            return None
        fmt = spec.get("fmt")
        if fmt == "base64":
            if not isinstance(value, bytes) or node.sub or node.item:
                return None
            return base64.b64encode(value).decode("ascii")
        if isinstance(value, bytes):
            return None
        if node.sub >= len(value) or node.item >= len(value[node.sub]):
            return None
        text: str = value[node.sub][node.item]
        start = spec.get("substr")
        if start is not None:
            text = text[start : start + spec.get("len", len(text))]
        try:
            return _format_out(fmt, text)
        except _NoValue:
            return None


__all__ += ["Writer2008"]
