"""Reader and writer of the ANSI/NIST-ITL traditional (tagged and binary) encoding.

The reader walks records by LEN in 1.003 CNT order and never scans image data for separators
(ANSI/NIST-ITL 1-2011 clause 7.2: the ``x.999`` field runs to the FS that ends its record).  It is
lenient where real files are sloppy (2-digit field numbers such as ``1.01:``, unpadded IDCs,
unknown VER, NSR ``19.68``, legacy CGA ``WSQ``) and records each such quirk as a
:class:`~gateway.ansinist.errors.CodecWarning`; it is strict where bytes would otherwise be
misread (LEN past the end, a record that does not end with FS, CNT disagreeing with the data),
raising :class:`~gateway.ansinist.errors.FormatError` with a location.

The writer copies unmodified records byte for byte and encodes everything else canonically:
3-digit tags, fields in numeric order with ``x.999`` last, LEN and CNT computed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import CodecWarning, FormatError, Location
from .layouts import BINARY_LAYOUTS, BINARY_TYPES, FGP
from .model import FS, GS, RS, US, Field, RawBytes, Record, Transaction

DEFAULT_MAX_SIZE = 64 * 1024 * 1024
DEFAULT_MAX_RECORDS = 10_000

# 1.002 VER values of the published editions (BRIEF 1.1).
KNOWN_VERSIONS = frozenset({"0200", "0201", "0300", "0400", "0500", "0501", "0502"})
_FSB = FS[0]
_GSB = GS[0]
_COLON = ord(":")

# Tag text -> (record type, field number); real files use few distinct tags.
_TAG_CACHE: dict[bytes, tuple[int, int, str]] = {}


def _parse_tag(tag: bytes) -> tuple[int, int, str] | None:
    hit = _TAG_CACHE.get(tag)
    if hit is not None:
        return hit
    rtype, dot, num = tag.partition(b".")
    if not dot or not rtype.isdigit() or not num.isdigit() or len(num) > 6 or len(rtype) > 3:
        return None
    r, n = int(rtype), int(num)
    hit = (r, n, f"{r}.{n:03d}")
    if len(_TAG_CACHE) < 4096:
        _TAG_CACHE[tag] = hit
    return hit


class _Reader:
    __slots__ = ("data", "mv", "size", "warnings", "max_records")

    def __init__(self, data: bytes, max_records: int):
        self.data = data
        self.mv = memoryview(data)
        self.size = len(data)
        self.warnings: list[CodecWarning] = []
        self.max_records = max_records

    def warn(self, code: str, message: str, **loc: Any) -> None:
        self.warnings.append(CodecWarning(code, message, Location(**loc)))

    # -- tagged records --------------------------------------------------------------------------
    def tagged_length(self, start: int, rtype: int, recno: int) -> int:
        """Read the x.001 LEN of the tagged record that starts at ``start``."""
        data = self.data
        loc: dict[str, Any] = {"record": recno, "record_type": rtype, "offset": start}
        colon = data.find(b":", start, min(start + 16, self.size))
        if colon < 0:
            raise FormatError(
                "RECORD_START",
                f"expected a Type-{rtype} record starting with field {rtype}.001",
                Location(**loc),
            )
        parsed = _parse_tag(data[start:colon])
        if parsed is None or parsed[1] != 1:
            raise FormatError(
                "RECORD_START",
                f"expected field {rtype}.001 LEN, found {data[start:colon][:12]!r}",
                Location(**loc),
            )
        if parsed[0] != rtype:
            raise FormatError(
                "RECORD_TYPE_MISMATCH",
                f"1.003 CNT announces a Type-{rtype} record here but it is Type-{parsed[0]}",
                Location(**loc),
            )
        end = colon + 1
        limit = min(end + 12, self.size)
        while end < limit and data[end] not in (_GSB, _FSB):
            end += 1
        digits = data[colon + 1 : end]
        if not digits.isdigit() or len(digits) > 10:
            raise FormatError(
                "LEN_SYNTAX",
                f"LEN is not a number: {digits[:12]!r}",
                Location(**loc, tag=f"{rtype}.001"),
            )
        length = int(digits)
        if length < end - start + 1:
            raise FormatError(
                "LEN_TOO_SMALL",
                f"LEN {length} is shorter than the LEN field itself",
                Location(**loc, tag=f"{rtype}.001"),
            )
        if start + length > self.size:
            raise FormatError(
                "LEN_PAST_END",
                f"LEN {length} runs past the end of the data ({self.size - start} bytes left)",
                Location(**loc, tag=f"{rtype}.001"),
                hint=f"Type-{rtype} record {recno}: field {rtype}.001 LEN {length} exceeds the "
                "data received (file truncated?)",
            )
        if data[start + length - 1] != _FSB:
            raise FormatError(
                "NO_FS",
                f"the record does not end with FS at LEN {length}",
                Location(**loc, tag=f"{rtype}.001"),
            )
        return length

    def tagged_record(self, start: int, length: int, rtype: int, recno: int) -> Record:
        data = self.data
        end = start + length - 1  # index of the record's FS
        record = Record(rtype)
        fields = record.fields
        short_tags = False
        pos = start
        while pos < end:
            colon = data.find(b":", pos, min(end, pos + 16))
            if colon < 0:
                raise FormatError(
                    "FIELD_SYNTAX",
                    "field without a 'T.NNN:' tag",
                    Location(recno, rtype, None, pos),
                )
            tag_bytes = data[pos:colon]
            parsed = _parse_tag(tag_bytes)
            if parsed is None:
                raise FormatError(
                    "FIELD_SYNTAX",
                    f"malformed field tag {tag_bytes[:16]!r}",
                    Location(recno, rtype, None, pos),
                )
            ftype, num, tag = parsed
            if ftype != rtype:
                # Real files carry such slips (libbiomeval type9-13: 13.005 in a Type-9).
                self.warn(
                    "TAG_TYPE_MISMATCH",
                    f"field {tag} inside a Type-{rtype} record",
                    record=recno,
                    record_type=rtype,
                    tag=tag,
                    offset=pos,
                )
            if len(tag_bytes) - tag_bytes.index(b".") - 1 < 3:
                short_tags = True
            if num == 999:
                # The data field runs to the FS that ends the record: never scanned.
                field = Field(tag, self.mv[colon + 1 : end], binary=True)
                nxt = end
            else:
                gs = data.find(GS, colon + 1, end)
                if gs < 0:
                    gs = end
                field = Field(tag, data[colon + 1 : gs])
                nxt = gs + 1
            field.dirty = False
            if tag in fields:
                self.warn(
                    "DUPLICATE_FIELD",
                    f"field {tag} occurs more than once; the first is used",
                    record=recno,
                    record_type=rtype,
                    tag=tag,
                    offset=pos,
                )
                # keep it reachable for round-trip under a distinct key
                tag = f"{tag}#{pos}"
                field.tag = tag
            fields[tag] = field
            pos = nxt
        if short_tags:
            self.warn(
                "SHORT_TAG",
                "field numbers written with fewer than 3 digits (e.g. '1.01:')",
                record=recno,
                record_type=rtype,
                offset=start,
            )
        return record

    # -- binary records ----------------------------------------------------------------------------
    def binary_record(self, start: int, rtype: int, recno: int) -> Record:
        layout = BINARY_LAYOUTS[rtype]
        if start + layout.header_size > self.size:
            raise FormatError(
                "LEN_PAST_END",
                f"Type-{rtype} header needs {layout.header_size} bytes, {self.size - start} left",
                Location(recno, rtype, f"{rtype}.001", start),
            )
        header = layout.struct.unpack_from(self.data, start)
        length = header[0]
        if length < layout.header_size:
            raise FormatError(
                "LEN_TOO_SMALL",
                f"binary LEN {length} is smaller than the {layout.header_size}-byte header",
                Location(recno, rtype, f"{rtype}.001", start),
            )
        if start + length > self.size:
            raise FormatError(
                "LEN_PAST_END",
                f"binary LEN {length} runs past the end of the data "
                f"({self.size - start} bytes left)",
                Location(recno, rtype, f"{rtype}.001", start),
                hint=f"Type-{rtype} record {recno}: LEN {length} exceeds the data received",
            )
        # Fields are built on first access; the header is already checked here.
        return Record._from_binary(rtype, header, self.mv[start : start + length])


def _ascii_digits(text: str) -> bool:
    # str.isdigit() is true for "²" or "٣", which int() rejects or misreads.
    return text.isascii() and text.isdigit() and len(text) <= 9


def _parse_cnt(t1: Record, warn: Callable[..., None]) -> list[tuple[int, int]]:
    field = t1.fields.get("1.003")
    if field is None:
        raise FormatError(
            "CNT_MISSING",
            "field 1.003 CNT is missing",
            Location(1, 1, "1.003"),
        )
    subs = field.subfields
    entries: list[tuple[int, int]] = []
    unpadded = False
    for i, sub in enumerate(subs):
        if len(sub) != 2 or not _ascii_digits(sub[0]) or not _ascii_digits(sub[1]):
            raise FormatError(
                "CNT_SYNTAX",
                f"1.003 CNT subfield {i + 1} is not 'type US number': {'^'.join(sub)[:40]!r}",
                Location(1, 1, "1.003"),
            )
        if i and len(sub[1]) < 2:
            unpadded = True
        entries.append((int(sub[0]), int(sub[1])))
    if not entries or entries[0][0] != 1:
        raise FormatError(
            "CNT_SYNTAX",
            "1.003 CNT must start with '1 US <count of other records>'",
            Location(1, 1, "1.003"),
        )
    if unpadded:
        warn(
            "UNPADDED_IDC",
            "IDC written with one digit in 1.003 CNT",
            record=1,
            record_type=1,
            tag="1.003",
        )
    declared = entries[0][1]
    if declared != len(entries) - 1:
        warn(
            "CNT_COUNT",
            f"1.003 CNT declares {declared} other records but lists {len(entries) - 1}",
            record=1,
            record_type=1,
            tag="1.003",
        )
    return entries[1:]


def read_traditional(
    data: bytes, *, max_size: int = DEFAULT_MAX_SIZE, max_records: int = DEFAULT_MAX_RECORDS
) -> Transaction:
    """Decode a traditional-encoding transaction.  Raises only :class:`FormatError`."""
    if isinstance(data, bytearray | memoryview):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise TypeError("read_traditional() needs bytes")
    size = len(data)
    if size > max_size:
        raise FormatError(
            "TOO_LARGE", f"{size} bytes exceeds the limit of {max_size}", Location(offset=0)
        )
    if size == 0:
        raise FormatError("EMPTY", "no data", Location(offset=0))
    reader = _Reader(data, max_records)
    length = reader.tagged_length(0, 1, 1)
    t1 = reader.tagged_record(0, length, 1, 1)
    t1.offset = 0
    t1._raw = reader.mv[0:length]
    t1._orig = tuple(t1.fields.values())
    entries = _parse_cnt(t1, reader.warn)
    if len(entries) > max_records:
        raise FormatError(
            "TOO_MANY_RECORDS",
            f"1.003 CNT lists {len(entries)} records, more than the limit of {max_records}",
            Location(1, 1, "1.003"),
        )
    records = [t1]
    pos = length
    for i, (rtype, idc) in enumerate(entries):
        recno = i + 2
        if pos >= size:
            raise FormatError(
                "CNT_RECORDS",
                f"1.003 CNT lists {len(entries)} records after Type-1 but the data ends after {i}",
                Location(recno, rtype, "1.003", pos),
            )
        if rtype in BINARY_TYPES:
            record = reader.binary_record(pos, rtype, recno)
            length = len(record._raw or b"")
        elif rtype == 1 or rtype > 99 or rtype == 0:
            raise FormatError(
                "CNT_SYNTAX",
                f"1.003 CNT lists an invalid record type {rtype}",
                Location(1, 1, "1.003"),
            )
        else:
            length = reader.tagged_length(pos, rtype, recno)
            record = reader.tagged_record(pos, length, rtype, recno)
            record._raw = reader.mv[pos : pos + length]
        record.offset = pos
        if record._fields is not None:
            record._orig = tuple(record._fields.values())
        found = record.idc
        if found is None:
            reader.warn(
                "IDC_MISSING",
                f"record has no IDC {rtype}.002",
                record=recno,
                record_type=rtype,
                offset=pos,
            )
        elif found != idc:
            reader.warn(
                "IDC_MISMATCH",
                f"IDC {found} differs from {idc} announced in 1.003 CNT",
                record=recno,
                record_type=rtype,
                tag=f"{rtype}.002",
                offset=pos,
            )
        records.append(record)
        pos += length
    if pos < size:
        trailing = data[pos:]
        if trailing.strip(b"\r\n\x00 ") == b"":
            reader.warn(
                "TRAILING_BYTES", f"{size - pos} padding bytes after the last record", offset=pos
            )
        else:
            raise FormatError(
                "CNT_RECORDS",
                f"{size - pos} bytes follow the last record listed in 1.003 CNT",
                Location(len(records), records[-1].type, "1.003", pos),
            )
    txn = Transaction(records)
    txn.warnings = reader.warnings
    txn._raw = data
    txn._orig_records = tuple(records)
    txn.source_version = t1.value("1.002")
    _content_quirks(txn)
    return txn


def _content_quirks(txn: Transaction) -> None:
    """Record the tolerated quirks of Type-1 and image fields that real files carry."""
    warn = txn.warnings.append
    t1 = txn.records[0]
    ver = t1.value("1.002")
    if ver not in KNOWN_VERSIONS:
        warn(
            CodecWarning(
                "UNKNOWN_VERSION",
                f"1.002 VER {ver!r} is not a published version",
                Location(1, 1, "1.002"),
            )
        )
    for tag in ("1.011", "1.012"):
        if t1.value(tag) == "19.68":
            # 500 ppi is 19.685 ppmm; the standard spells it 19.69 (1-2011 Table 8).
            warn(
                CodecWarning(
                    "NSR_19_68", f"{tag} '19.68' read as 19.69 (500 ppi)", Location(1, 1, tag)
                )
            )
    for recno, record in enumerate(txn.records[1:], start=2):
        if record.type in (10, 13, 14, 15, 16, 17):
            cga = record.fields.get(f"{record.type}.011")
            if cga is not None and cga.value == "WSQ":
                warn(
                    CodecWarning(
                        "LEGACY_CGA",
                        "compression 'WSQ' read as WSQ20",
                        Location(recno, record.type, f"{record.type}.011"),
                    )
                )


# -- writer ---------------------------------------------------------------------------------
def _tagged_bytes(record: Record) -> bytes:
    rtype = record.type
    body_fields = []
    for key, field in record.fields.items():
        # A duplicate is kept as "T.NNN#offset" and a mis-typed tag ("13.005" in a Type-9) as
        # read: canonical re-encoding keeps both, so it loses nothing the reader accepted.
        ftype, _, num = key.partition("#")[0].partition(".")
        num_i = int(num)
        if num_i == 1 and int(ftype) == rtype:
            continue
        body_fields.append((num_i == 999, num_i, f"{int(ftype)}.{num_i:03d}:".encode(), field))
    # Fields in ascending numeric order, x.999 last; in Type-1, VER and CNT stay right after LEN
    # (1-2011 clause 8.1); in other tagged records IDC comes second.  Stable for duplicates.
    first = (2, 3) if rtype == 1 else (2,)
    body_fields.sort(key=lambda f: (f[1] not in first, f[0], f[1]))
    parts = [tag + bytes(field.raw) for _, _, tag, field in body_fields]
    body = GS + GS.join(parts) + FS if parts else FS
    prefix = f"{rtype}.001:".encode()
    length = len(prefix) + len(body) + 1
    while True:
        total = len(prefix) + len(str(length)) + len(body)
        if total == length:
            break
        length = total
    return prefix + str(length).encode() + body


def _binary_bytes(record: Record) -> bytes:
    if record._fields is None and record._raw is not None:
        # Untouched binary record: its header already is canonical (LEN checked on reading).
        return bytes(record._raw)
    layout = BINARY_LAYOUTS[record.type]
    fields = record.fields
    data_field = fields.get(layout.data_tag)
    data = data_field.raw if data_field is not None else b""
    values: list[int | bytes] = []
    for slot, tag in zip(layout.slots, layout.tags, strict=True):
        if slot.num == 1:
            values.append(layout.header_size + len(data))
            continue
        field = fields.get(tag)
        if slot.codec == FGP:
            positions = [int(s[0]) for s in field.subfields if s and s[0]] if field else []
            if len(positions) > 6 or not all(0 <= p < 256 for p in positions):
                raise ValueError(f"{tag} FGP holds at most 6 positions of 0-255")
            values.append(bytes(positions + [255] * (6 - len(positions))))
            continue
        value = int(field.value) if field is not None and field.value else 0
        if not 0 <= value < 256**slot.size:
            raise ValueError(f"{tag} value {value} does not fit {slot.size} bytes")
        values.append(value)
    return layout.struct.pack(*values) + data


def _encode(record: Record, canonical: bool) -> RawBytes:
    """The record's bytes, possibly as a memoryview of its source (no copy)."""
    if not canonical and not record.modified and record._raw is not None:
        return record._raw
    if record.type in BINARY_TYPES:
        return _binary_bytes(record)
    return _tagged_bytes(record)


def encode_record(record: Record, canonical: bool = False) -> bytes:
    """The bytes of one record: its source bytes when unmodified, canonical otherwise."""
    return bytes(_encode(record, canonical))


def write_traditional(txn: Transaction, canonical: bool = False) -> bytes:
    """Encode ``txn``; byte-exact for a transaction read and not modified.

    With ``canonical=True`` every record is re-encoded (3-digit tags, numeric field order,
    LEN and CNT computed) even when unmodified.
    """
    records = txn.records
    if not records or records[0].type != 1:
        raise ValueError("a transaction starts with its Type-1 record")
    if (
        not canonical
        and txn._raw is not None
        and len(records) == len(txn._orig_records)
        and all(a is b for a, b in zip(records, txn._orig_records, strict=True))
        and not any(r.modified for r in records)
    ):
        return _source_bytes(txn)
    refresh_cnt(txn)
    return b"".join([_encode(r, canonical) for r in records])


def refresh_cnt(txn: Transaction) -> None:
    """Rewrite 1.003 CNT when it no longer lists the records as they stand (2-digit IDCs)."""
    t1 = txn.records[0]
    wanted = txn.cnt()
    if _current_cnt(t1) != wanted:
        t1["1.003"] = [("1", str(len(wanted)))] + [(str(t), f"{i:02d}") for t, i in wanted]


def _source_bytes(txn: Transaction) -> bytes:
    last = txn.records[-1]
    raw = bytes(txn._raw or b"")
    end = (last.offset or 0) + len(last._raw or b"")
    return raw[:end] if end != len(raw) else raw


def _current_cnt(t1: Record) -> list[tuple[int, int]] | None:
    field = t1.fields.get("1.003")
    if field is None:
        return None
    try:
        subs = field.subfields
        if int(subs[0][1]) != len(subs) - 1:
            return None
        return [(int(s[0]), int(s[1])) for s in subs[1:]]
    except (ValueError, IndexError):
        return None


def peek_type1(data: bytes, limit: int = 8192) -> dict[str, str]:
    """Best-effort Type-1 values (tag -> first item) from bytes that may not read at all.

    Used to address an ERRT for a file the reader rejects; never raises.
    """
    head = bytes(data[:limit])
    end = head.find(FS)
    if end >= 0:
        head = head[:end]
    values: dict[str, str] = {}
    for chunk in head.split(GS):
        tag, sep, value = chunk.partition(b":")
        parsed = _parse_tag(tag) if sep else None
        if parsed is None or parsed[0] != 1:
            continue
        text = value.split(RS)[0].split(US)[0].decode("utf-8", "replace")
        values.setdefault(parsed[2], text)
    return values


__all__ = [
    "KNOWN_VERSIONS",
    "encode_record",
    "peek_type1",
    "refresh_cnt",
    "read_traditional",
    "write_traditional",
]
