"""Level 2: ANSI/NIST-ITL field syntax, driven by the table ``data/an2k_fields.txt``.

Per field: presence of mandatory fields (``L2_FIELD_MISSING``), occurrences (``L2_OCCURRENCES``),
information items per subfield (``L2_ITEMS``), character type (``L2_CHARSET``), size
(``L2_SIZE``), code tables such as IMP, FGP, CGA/GCA, SLC, BPX, CSP (``L2_CODE_INVALID``), dates
that exist (``L2_DATE_INVALID``), GMT (``L2_GMT_INVALID``), the ``NN.NN`` resolution format of
1.011 NSR and 1.012 NTR (``L2_RES_FORMAT``).

Transaction rules: fields and record types newer than the declared 1.002 VER
(``L2_FIELD_NEWER_THAN_VER``, ``L2_RECORD_NEWER_THAN_VER``: quirk FIELD_NEWER, a warning by default,
an error in strict mode), 1.005 DAT not more than one day after today (``L2_DAT_FUTURE``; EBTS 9.1
1.005: IAFIS accepts the local date up to one day forward), 1.002 VER a published version
(``L2_VER_UNKNOWN``, quirk UNKNOWN_VERSION), NSR/NTR ``19.68`` (``L2_NSR_19_68``), legacy CGA
``WSQ`` (``L2_LEGACY_CGA``), unknown Type-1 fields (``L2_FIELD_UNKNOWN``, warning).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

from gateway.ansinist import Field, Location, Record, Transaction
from gateway.ansinist.dictionary import RECORD_SINCE, lookup
from gateway.ansinist.traditional import KNOWN_VERSIONS

from ._common import (
    DATA_DIR,
    Values,
    charset_ok,
    describe_ctype,
    error,
    gmt_ok,
    len_expected,
    location,
    parse_date,
    parse_values,
    value_in,
    version_number,
    warning,
)
from .findings import Finding
from .strictness import Strictness
from .structure import quirk

_RES = re.compile(r"\d\d\.\d\d")
_KNOWN_TYPE1 = frozenset(f"1.{n:03d}" for n in range(1, 22))  # 1.019-1.021: 1-2011 updates


@dataclass(frozen=True, slots=True)
class ItemSpec:
    ctype: str
    low: int
    high: int | None
    optional: bool
    codes: frozenset[str]
    ranges: tuple[tuple[int, int], ...]
    values_text: str | None


@dataclass(frozen=True, slots=True)
class FieldSpec:
    tag: str
    name: str
    since: int
    low: int
    high: int | None
    items: tuple[ItemSpec, ...]

    def cite(self) -> str:
        occ = str(self.low) if self.low == self.high else f"{self.low}-{self.high or 'x'}"
        return f"ANSI/NIST-ITL {self.tag} {self.name} occ {occ}"


class _SpecCite:
    """The rule citation of a message, formatted only when a finding is made."""

    __slots__ = ("spec",)

    def __init__(self, spec: FieldSpec):
        self.spec = spec

    def __str__(self) -> str:
        return self.spec.cite()

    def __add__(self, other: str) -> str:
        return str(self) + other


def _range(text: str) -> tuple[int, int | None]:
    if text == "*":
        return 0, None
    lo, dash, hi = text.partition("-")
    if not dash:
        return int(lo), int(lo)
    return int(lo), None if hi == "*" else int(hi)


@lru_cache(maxsize=1)
def table() -> dict[int, tuple[FieldSpec, ...]]:
    """The level-2 rules by record type (parsed once)."""
    tables: dict[str, Values] = {}
    specs: dict[int, list[FieldSpec]] = {}
    text = (DATA_DIR / "an2k_fields.txt").read_text(encoding="utf-8")
    for _number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("@"):
            name, _, spec = line[1:].partition("=")
            tables[name.strip()] = parse_values(spec.strip(), tables)
            continue
        parts = line.split()
        tag, name, since, occ, *item_texts = parts
        items = []
        for item in item_texts:
            optional = item.startswith("?")
            ctype, size, *values = item.lstrip("?").split(":", 2)
            low, high = _range(size)
            codes, ranges = parse_values(values[0], tables) if values else (frozenset(), ())
            items.append(
                ItemSpec(ctype, low, high, optional, codes, ranges, values[0] if values else None)
            )
        lo, hi = _range(occ)
        field_spec = FieldSpec(tag, name, int(since), lo, hi, tuple(items))
        specs.setdefault(int(tag.split(".")[0]), []).append(field_spec)
    return {rtype: tuple(v) for rtype, v in specs.items()}


def check(txn: Transaction, strictness: Strictness, today: date | None = None) -> list[Finding]:
    out: list[Finding] = []
    if not txn.records or txn.records[0].type != 1:
        return out
    rules = table()
    ver = txn.records[0].value("1.002")
    vnum = version_number(ver)
    for recno, record in enumerate(txn.records, start=1):
        for spec in rules.get(record.type, ()):
            field = record.fields.get(spec.tag)
            if field is None:
                if spec.tag.endswith(".001") and not len_expected(txn, record):
                    continue
                if spec.low > 0 and vnum >= spec.since:
                    out.append(
                        error(
                            "L2_FIELD_MISSING",
                            location(recno, record, spec.tag),
                            f"mandatory field {spec.tag} {spec.name} is missing",
                            rule=spec.cite(),
                            name=spec.name,
                        )
                    )
                continue
            _check_field(out, recno, record, field, spec, strictness, txn.encoding == "xml")
    _transaction_rules(out, txn, strictness, today or date.today())
    _newer_than_ver(out, txn, ver, strictness)
    return out


def _newer_than_ver(
    out: list[Finding], txn: Transaction, ver: str | None, strictness: Strictness
) -> None:
    """Record types and fields the declared 1.002 VER does not have yet (field dictionary,
    ``gateway.ansinist.dictionary``; NBIS chkan2k reports the same as "requires ANSI/NIST
    version"). Nothing is said when VER itself is not a published version (L2_VER_UNKNOWN)."""
    if ver not in KNOWN_VERSIONS:
        return
    vnum = int(ver)
    for recno, record in enumerate(txn.records, start=1):
        since = RECORD_SINCE.get(record.type)
        if since is not None and int(since) > vnum:
            f = quirk(
                strictness,
                "FIELD_NEWER",
                "L2_RECORD_NEWER_THAN_VER",
                location(recno, record),
                f"Type-{record.type} records exist from VER {since}; the transaction declares "
                f"{ver}",
                rule=f"ANSI/NIST-ITL record types (Type-{record.type} since {since})",
            )
            if f is not None:
                out.append(f)
            continue  # its fields are all newer too: one finding says it
        for tag in record.fields:
            info = lookup(tag.partition("#")[0])
            if info is None or int(info.since) <= vnum:
                continue
            f = quirk(
                strictness,
                "FIELD_NEWER",
                "L2_FIELD_NEWER_THAN_VER",
                location(recno, record, info.tag),
                f"field {info.tag} {info.mnemonic} exists from VER {info.since}; the transaction "
                f"declares {ver}",
                rule=f"ANSI/NIST-ITL field dictionary: {info.tag} {info.mnemonic} ({info.name}) "
                f"since {info.since}",
                name=info.mnemonic,
            )
            if f is not None:
                out.append(f)


def _check_field(
    out: list[Finding],
    recno: int,
    record: Record,
    field: Field,
    spec: FieldSpec,
    strictness: Strictness,
    xml: bool = False,
) -> None:
    loc = location(recno, record, spec.tag)
    subs = field.subfields
    n = len(subs)
    if subs == (("",),) and spec.low > 0:
        out.append(error("L2_SIZE", loc, f"{spec.name} is empty", rule=spec.cite(), name=spec.name))
        return
    if n < spec.low or (spec.high is not None and n > spec.high):
        out.append(
            error(
                "L2_OCCURRENCES",
                loc,
                f"{spec.name} has {n} occurrences, allowed {spec.low}-{spec.high or 'x'}",
                rule=spec.cite(),
                name=spec.name,
            )
        )
    items = spec.items
    required = sum(1 for i in items if not i.optional)
    for sub in subs:
        if len(sub) > len(items) or len(sub) < required:
            out.append(
                error(
                    "L2_ITEMS",
                    loc,
                    f"{spec.name} subfield has {len(sub)} information items, expected "
                    f"{required}-{len(items)}",
                    rule=spec.cite(),
                    name=spec.name,
                )
            )
            continue
        for item_spec, value in zip(items, sub, strict=False):
            f = _check_value(loc, spec, item_spec, value, strictness, xml)
            if f is not None:
                out.append(f)
                break


def _check_value(
    loc: Location,
    spec: FieldSpec,
    item: ItemSpec,
    value: str,
    strictness: Strictness,
    xml: bool = False,
) -> Finding | None:
    name = spec.name
    rule = _SpecCite(spec)
    ctype = item.ctype
    if value == "" and item.optional:
        return None
    if ctype == "DATE":
        if parse_date(value) is None:
            return error(
                "L2_DATE_INVALID",
                loc,
                f"{name} {value[:20]!r} is not a date CCYYMMDD that exists",
                rule=rule,
                name=name,
            )
        return None
    if ctype == "GMT":
        if not gmt_ok(value):
            return error(
                "L2_GMT_INVALID",
                loc,
                f"{name} {value[:20]!r} is not CCYYMMDDhhmmssZ",
                rule=rule,
                name=name,
            )
        return None
    if ctype == "RES":
        if not _RES.fullmatch(value):
            return error(
                "L2_RES_FORMAT",
                loc,
                f"{name} {value[:20]!r} is not a resolution NN.NN (pixels per mm)",
                rule=rule + " format NN.NN",
                name=name,
            )
        if value == "19.68":
            return quirk(
                strictness,
                "NSR_19_68",
                "L2_NSR_19_68",
                loc,
                f"{name} '19.68' written for 500 ppi (19.69)",
                rule=rule,
                name=name,
            )
        return None
    if xml and item.values_text is None:
        # In XML the schema types each value (level 4); sizes and character sets of the
        # traditional encoding do not apply (the FBI templates write a quality vendor id "88").
        return None
    if ctype != "B" and (
        len(value) < item.low or (item.high is not None and len(value) > item.high)
    ):
        return error(
            "L2_SIZE",
            loc,
            f"{name} {value[:20]!r} has {len(value)} characters, allowed "
            f"{item.low}-{item.high if item.high is not None else 'x'}",
            rule=rule,
            name=name,
        )
    if not charset_ok(value, ctype):
        return error(
            "L2_CHARSET",
            loc,
            f"{name} {value[:20]!r} is not {describe_ctype(ctype)}",
            rule=rule,
            name=name,
        )
    if item.values_text is not None and not value_in(value, item.codes, item.ranges):
        if name == "CGA" and value == "WSQ":
            return quirk(
                strictness,
                "LEGACY_CGA",
                "L2_LEGACY_CGA",
                loc,
                "CGA 'WSQ' (pre-2007 spelling of WSQ20)",
                rule=rule,
                name=name,
            )
        return error(
            "L2_CODE_INVALID",
            loc,
            f"{name} {value[:20]!r} is not in the {name} code table ({item.values_text})",
            rule=rule,
            name=name,
        )
    return None


def _transaction_rules(
    out: list[Finding], txn: Transaction, strictness: Strictness, today: date
) -> None:
    t1 = txn.records[0]
    ver = t1.value("1.002")
    if ver is not None and ver not in KNOWN_VERSIONS:
        f = quirk(
            strictness,
            "UNKNOWN_VERSION",
            "L2_VER_UNKNOWN",
            location(1, t1, "1.002"),
            f"VER {ver!r} is not a published version ({', '.join(sorted(KNOWN_VERSIONS))})",
            rule="ANSI/NIST-ITL 1.002 VER",
            name="VER",
        )
        if f is not None:
            out.append(f)
    dat = parse_date(t1.value("1.005") or "")
    if dat is not None and dat > today + timedelta(days=1):
        out.append(
            error(
                "L2_DAT_FUTURE",
                location(1, t1, "1.005"),
                f"DAT {dat:%Y%m%d} is more than one day after today ({today:%Y%m%d})",
                rule="1.005 DAT: local date, at most one day forward (EBTS 9.1 1.005)",
                name="DAT",
            )
        )
    for tag in t1.fields:
        if tag not in _KNOWN_TYPE1 and "#" not in tag:
            out.append(
                warning(
                    "L2_FIELD_UNKNOWN",
                    location(1, t1, tag),
                    f"field {tag} is not defined for Type-1",
                    rule="ANSI/NIST-ITL 1-2011 Table 8 (Type-1 fields)",
                )
            )
