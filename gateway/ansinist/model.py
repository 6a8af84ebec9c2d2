"""The transaction model: Transaction -> Record -> Field -> subfields -> items.

A :class:`Field` holds the exact bytes it was read from and decodes them lazily into subfields
(RS-separated) of items (US-separated).  A :class:`Record` remembers the bytes it was read from, so
a transaction that is read and not modified writes back byte-exactly; anything built or changed in
code is written canonically (see :mod:`gateway.ansinist.traditional`).

Text is decoded as UTF-8 with ``surrogateescape``: 7-bit ASCII files, UTF-8 files (1.015 DCS) and
stray 8-bit bytes all round-trip without loss.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .errors import CodecWarning
from .layouts import BINARY_LAYOUTS, BINARY_TYPES, FGP

FS, GS, RS, US = b"\x1c", b"\x1d", b"\x1e", b"\x1f"
_TEXT_ENCODING = "utf-8"
_ERRORS = "surrogateescape"

Subfields = tuple[tuple[str, ...], ...]
RawBytes = bytes | bytearray | memoryview
FieldValue = str | bytes | bytearray | memoryview | int | Sequence[Any]


def normalize_tag(tag: str | float) -> str:
    """Return the canonical form ``"T.NNN"`` of a field tag (``"1.01"`` -> ``"1.001"``)."""
    if isinstance(tag, str):
        rtype, sep, num = tag.partition(".")
        if sep and rtype.isdigit() and num.isdigit():
            return f"{int(rtype)}.{int(num):03d}"
    raise KeyError(f"not a field tag: {tag!r}")


def split_tag(tag: str) -> tuple[int, int]:
    """``"14.011"`` -> ``(14, 11)``."""
    rtype, _, num = tag.partition(".")
    return int(rtype), int(num)


def _decode(raw: RawBytes) -> str:
    return bytes(raw).decode(_TEXT_ENCODING, _ERRORS)


def _encode(text: str) -> bytes:
    return text.encode(_TEXT_ENCODING, _ERRORS)


def _as_subfields(value: object) -> Subfields:
    """Coerce a user value to a tuple of subfields of items (all str)."""
    if isinstance(value, str):
        return ((value,),)
    if isinstance(value, int):
        return ((str(value),),)
    if isinstance(value, Iterable):
        out: list[tuple[str, ...]] = []
        for sub in value:
            if isinstance(sub, str | int):
                out.append((str(sub),))
            else:
                out.append(tuple(str(item) for item in sub))
        return tuple(out)
    raise TypeError(f"cannot use {type(value).__name__} as a field value")


class Field:
    """One field of a record.

    ``raw`` is the value's bytes (after ``tag:``, without the trailing separator); for image
    data fields (``x.999`` and the data of binary records) it is a zero-copy memoryview.
    ``subfields`` is a tuple of subfields, each a tuple of information items (str).
    """

    __slots__ = ("tag", "_raw", "_subfields", "binary", "dirty")

    def __init__(
        self,
        tag: str,
        raw: RawBytes | None = None,
        subfields: Subfields | None = None,
        binary: bool = False,
    ):
        self.tag = tag
        self._raw: RawBytes | None = raw
        self._subfields = subfields
        self.binary = binary
        # A field built in code is "dirty": its record is written canonically.
        self.dirty = raw is None

    @classmethod
    def from_value(cls, tag: str, value: FieldValue) -> Field:
        if isinstance(value, bytes | bytearray | memoryview):
            field = cls(tag, raw=value, binary=True)
            field.dirty = True
            return field
        return cls(tag, subfields=_as_subfields(value))

    @property
    def raw(self) -> RawBytes:
        """The value's bytes as they stand in the file (computed for built fields)."""
        if self._raw is None:
            subs = self._subfields or ()
            self._raw = RS.join(US.join(_encode(i) for i in sub) for sub in subs)
        return self._raw

    @property
    def subfields(self) -> Subfields:
        if self._subfields is None:
            if self.binary:
                return ()
            raw = bytes(self.raw)
            self._subfields = tuple(
                tuple(_decode(item) for item in sub.split(US)) for sub in raw.split(RS)
            )
        return self._subfields

    @subfields.setter
    def subfields(self, value: object) -> None:
        self._subfields = _as_subfields(value)
        self._raw = None
        self.dirty = True

    @property
    def value(self) -> str:
        """The first item of the first subfield: the whole value of a single-valued field."""
        subs = self.subfields
        return subs[0][0] if subs else ""

    @property
    def text(self) -> str:
        """The whole value decoded as text, separators included."""
        return "" if self.binary else _decode(self.raw)

    @property
    def items(self) -> tuple[str, ...]:
        """The items of the first subfield."""
        subs = self.subfields
        return subs[0] if subs else ()

    @property
    def data(self) -> RawBytes:
        """The bytes of a binary (image) field."""
        return self.raw

    def __len__(self) -> int:
        return len(self.raw)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Field):
            if self.binary or other.binary:
                return self.tag == other.tag and bytes(self.raw) == bytes(other.raw)
            return self.tag == other.tag and self.subfields == other.subfields
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        if self.binary:
            return f"Field({self.tag!r}, <{len(self.raw)} bytes>)"
        return f"Field({self.tag!r}, {self.text!r})"


class Record:
    """A logical record: its type, its fields by tag, and (when read) the bytes it came from.

    Field access by tag string: ``record["2.018"]`` (a :class:`Field`), ``record.get("2.018")``,
    ``record.fields`` (a dict in file order).  Assigning ``record["2.018"] = "DOE, JOHN"`` builds
    the field; for binary records (Types 3-8) the header fields and the data are fields too, with
    the tags of the declarative layouts (``"4.003"`` IMP ... ``"4.009"`` DATA).
    """

    __slots__ = ("type", "_fields", "_raw", "_orig", "_header", "offset")

    def __init__(self, rtype: int, fields: dict[str, Field] | None = None):
        self.type = int(rtype)
        self._fields: dict[str, Field] | None = fields if fields is not None else {}
        self._raw: RawBytes | None = None
        self._orig: tuple[Field, ...] = ()
        # binary header values, fields built on first use
        self._header: tuple[Any, ...] | None = None
        self.offset: int | None = None

    @classmethod
    def _from_binary(cls, rtype: int, header: tuple[Any, ...], raw: RawBytes) -> Record:
        record = cls.__new__(cls)
        record.type = rtype
        record._fields = None
        record._raw = raw
        record._orig = ()
        record._header = header
        record.offset = None
        return record

    @property
    def fields(self) -> dict[str, Field]:
        """The fields by canonical tag, in file order."""
        if self._fields is None:
            assert self._header is not None and self._raw is not None
            self._fields = _binary_fields(self.type, self._header, self._raw)
            self._orig = tuple(self._fields.values())
        return self._fields

    # -- field access -------------------------------------------------------------------------
    def _key(self, tag: str | int) -> str:
        if isinstance(tag, int):
            return f"{self.type}.{tag:03d}"
        if tag in self.fields:
            return tag
        return normalize_tag(tag)

    def __getitem__(self, tag: str | int) -> Field:
        return self.fields[self._key(tag)]

    def __contains__(self, tag: object) -> bool:
        if not isinstance(tag, str | int):
            return False
        try:
            return self._key(tag) in self.fields
        except KeyError:
            return False

    def get(self, tag: str | int, default: Field | None = None) -> Field | None:
        try:
            return self[tag]
        except KeyError:
            return default

    def value(self, tag: str | int, default: str | None = None) -> str | None:
        """The value (first item) of a field, or ``default`` when the field is absent."""
        field = self.get(tag)
        return default if field is None else field.value

    def __setitem__(self, tag: str | int, value: FieldValue | Field) -> None:
        key = self._key(tag)
        field = value if isinstance(value, Field) else Field.from_value(key, value)
        field.tag = key
        field.dirty = True
        self.fields[key] = field

    def __delitem__(self, tag: str | int) -> None:
        del self.fields[self._key(tag)]

    def __iter__(self) -> Iterator[Field]:
        return iter(self.fields.values())

    def __len__(self) -> int:
        return len(self.fields)

    # -- identity --------------------------------------------------------------------------------
    @property
    def is_binary(self) -> bool:
        return self.type in BINARY_TYPES

    @property
    def idc(self) -> int | None:
        """Information designation character (x.002) as a number; ``None`` for Type-1."""
        if self.type == 1:
            return None
        if self._fields is None and self._header is not None:
            return int(self._header[1])
        field = self.fields.get(f"{self.type}.002")
        if field is None:
            return None
        try:
            return int(field.value)
        except ValueError:
            return None

    @idc.setter
    def idc(self, value: int) -> None:
        if self.type == 1:
            raise ValueError("Type-1 has no IDC")
        self[f"{self.type}.002"] = str(value) if self.is_binary else f"{int(value):02d}"

    @property
    def data(self) -> RawBytes | None:
        """Image or data bytes: x.999 of tagged records, the data field of binary records."""
        if self.is_binary:
            layout = BINARY_LAYOUTS[self.type]
            if self._fields is None and self._raw is not None:
                return self._raw[layout.header_size :]
            field = self.fields.get(layout.data_tag)
        else:
            field = self.fields.get(f"{self.type}.999")
        return None if field is None else field.raw

    @property
    def modified(self) -> bool:
        """True when the record must be re-encoded rather than copied from its source bytes."""
        if self._raw is None:
            return True
        if self._fields is None:
            return False
        fields = self._fields
        orig = self._orig
        if len(fields) != len(orig):
            return True
        return any(a is not b or a.dirty for a, b in zip(fields.values(), orig, strict=True))

    def __repr__(self) -> str:
        idc = "" if self.type == 1 else f" IDC {self.idc}"
        return f"<Record Type-{self.type}{idc}, {len(self.fields)} fields>"


class Transaction:
    """A logical file: an ordered list of records (Type-1 first) and the reader's warnings."""

    __slots__ = ("records", "warnings", "encoding", "_raw", "_orig_records", "source_version")

    def __init__(self, records: list[Record] | None = None, encoding: str = "traditional"):
        self.records: list[Record] = records if records is not None else []
        self.warnings: list[CodecWarning] = []
        self.encoding = encoding
        self._raw: RawBytes | None = None
        self._orig_records: tuple[Record, ...] = ()
        self.source_version: str | None = None

    # -- builder -----------------------------------------------------------------------------------
    @classmethod
    def new(
        cls,
        *,
        tot: str,
        dai: str,
        ori: str,
        tcn: str,
        dat: str,
        ver: str = "0500",
        tcr: str | None = None,
        pry: str | None = None,
        nsr: str = "00.00",
        ntr: str = "00.00",
        dom: tuple[str, ...] | None = None,
        gmt: str | None = None,
        encoding: str = "traditional",
    ) -> Transaction:
        """Build a transaction with its Type-1 record; add the others with :meth:`add_record`."""
        txn = cls(encoding=encoding)
        t1 = Record(1)
        t1["1.002"] = ver
        t1["1.003"] = [("1", "0")]
        t1["1.004"] = tot
        t1["1.005"] = dat
        if pry is not None:
            t1["1.006"] = pry
        t1["1.007"] = dai
        t1["1.008"] = ori
        t1["1.009"] = tcn
        if tcr is not None:
            t1["1.010"] = tcr
        t1["1.011"] = nsr
        t1["1.012"] = ntr
        if dom is not None:
            t1["1.013"] = [dom]
        if gmt is not None:
            t1["1.014"] = gmt
        txn.records.append(t1)
        return txn

    def add_record(
        self, rtype: int, idc: int | None = None, fields: dict[str, FieldValue] | None = None
    ) -> Record:
        """Append a record of type ``rtype``; its IDC defaults to the next free number."""
        if rtype == 1:
            raise ValueError("a transaction has exactly one Type-1 record")
        record = Record(rtype)
        if idc is None:
            used = [r.idc for r in self.records if r.idc is not None]
            idc = 0 if rtype == 2 and 0 not in used else (max(used, default=0) + 1)
        record.idc = idc
        for tag, value in (fields or {}).items():
            record[tag] = value
        self.records.append(record)
        return record

    # -- convenience -----------------------------------------------------------------------------
    @property
    def type1(self) -> Record:
        return self.records[0]

    def _t1(self, num: int) -> str | None:
        if not self.records:
            return None
        return self.records[0].value(f"1.{num:03d}")

    @property
    def ver(self) -> str | None:
        """1.002 VER"""
        return self._t1(2)

    @property
    def tot(self) -> str | None:
        """1.004 TOT"""
        return self._t1(4)

    @property
    def dat(self) -> str | None:
        """1.005 DAT"""
        return self._t1(5)

    @property
    def dai(self) -> str | None:
        """1.007 DAI"""
        return self._t1(7)

    @property
    def ori(self) -> str | None:
        """1.008 ORI"""
        return self._t1(8)

    @property
    def tcn(self) -> str | None:
        """1.009 TCN"""
        return self._t1(9)

    @property
    def tcr(self) -> str | None:
        """1.010 TCR"""
        return self._t1(10)

    def records_of_type(self, rtype: int) -> list[Record]:
        return [r for r in self.records if r.type == rtype]

    def cnt(self) -> list[tuple[int, int]]:
        """The (type, IDC) list 1.003 CNT must carry for the records as they stand now."""
        return [(r.type, r.idc if r.idc is not None else 0) for r in self.records[1:]]

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        types = ",".join(str(r.type) for r in self.records)
        return f"<Transaction TOT {self.tot} TCN {self.tcn} records [{types}]>"


def _binary_fields(rtype: int, header: tuple[Any, ...], raw: RawBytes) -> dict[str, Field]:
    """Fields of a binary record from its unpacked header values (see :mod:`.layouts`)."""
    layout = BINARY_LAYOUTS[rtype]
    fields: dict[str, Field] = {}
    for slot, tag, value in zip(layout.slots, layout.tags, header, strict=True):
        if slot.codec == FGP:
            subs = tuple((str(b),) for b in value if b != 255)
            field = Field(tag, RS.join(sub[0].encode() for sub in subs), subs)
        else:
            text = str(value)
            field = Field(tag, text.encode(), ((text,),))
        field.dirty = False
        fields[tag] = field
    data = Field(layout.data_tag, raw[layout.header_size :], binary=True)
    data.dirty = False
    fields[layout.data_tag] = data
    return fields
