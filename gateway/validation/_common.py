"""Helpers shared by the validation levels: locations, ERRT hints, character and date checks."""

from __future__ import annotations

import re
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

from gateway.ansinist import Location, Record, Transaction

from .findings import ERROR, WARNING, Finding

DATA_DIR = Path(__file__).with_name("data")
MSG_LIMIT = 300  # EBTS 2.060 MSG: ANS 1-300 per occurrence
_NON_PRINTABLE = re.compile(r"[^\x20-\x7e]")


def printable(text: str, limit: int = MSG_LIMIT) -> str:
    """``text`` as printable 7-bit ASCII (2.060 MSG is ``sca="PRINT"``), cut to ``limit``."""
    text = _NON_PRINTABLE.sub("?", " ".join(text.split()))
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return text


def len_expected(txn: Transaction, record: Record) -> bool:
    """Whether a missing x.001 LEN is a finding: only in traditional records read from bytes (the
    writer computes LEN of records built in code; the XML encoding has no LEN)."""
    return txn.encoding == "traditional" and getattr(record, "_raw", None) is not None


def location(
    recno: int, record: Record | None, tag: str | None = None, offset: int | None = None
) -> Location:
    return Location(recno, record.type if record is not None else None, tag, offset)


def shown(loc: Location, value: str) -> str:
    """`` 'value'`` to quote in a message, or nothing for a Type-2 field: Type-2 holds the
    subject's name, SSN, dates and places of birth, addresses and the like, which never go into a
    finding (findings reach logs, the admin pages and ERRT answers)."""
    if loc.record_type == 2 or (loc.tag or "").startswith("2."):
        return ""
    return f" {value[:20]!r}"


def where(loc: Location, name: str | None = None) -> str:
    """Submitter-facing place: ``Type-14 record 3 field 14.011 CGA``."""
    parts = []
    if loc.record_type is not None:
        parts.append(f"Type-{loc.record_type}")
    if loc.record is not None:
        parts.append(f"record {loc.record}")
    if loc.tag is not None:
        parts.append(f"field {loc.tag}" + (f" {name}" if name else ""))
    return " ".join(parts) or "transaction"


def finding(
    severity: str,
    code: str,
    loc: Location,
    message: str,
    *,
    rule: str | None = None,
    name: str | None = None,
) -> Finding:
    """A finding whose hint (the ERRT MSG line) names the field and the rule broken."""
    hint = f"{where(loc, name)}: {message}"
    if rule:
        hint += f" [rule: {rule}]"
    return Finding(severity, code, loc, message, printable(hint))


def error(code: str, loc: Location, message: str, **kw: Any) -> Finding:
    return finding(ERROR, code, loc, message, **kw)


def warning(code: str, loc: Location, message: str, **kw: Any) -> Finding:
    return finding(WARNING, code, loc, message, **kw)


# -- character classes ----------------------------------------------------------------------------
_BASE = {
    "A": "A-Za-z",
    "N": "0-9",
    "AN": "A-Za-z0-9",
    "AS": "A-Za-z",
    "NS": "0-9",
    "ANS": "A-Za-z0-9",
    "S": "",
    "H": "0-9A-Fa-f",  # hexadecimal (quality vendor id, 1-2011 8.13.24)
}


@lru_cache(maxsize=256)
def _class(ctype: str, sca: str | None) -> re.Pattern[str] | None:
    """The regex a value of character type ``ctype`` must match (``None``: anything goes)."""
    if ctype in ("U", "B") or ctype.startswith("B"):
        return None
    base = _BASE.get(ctype)
    if base is None:
        return None
    if "S" in ctype:
        # An "S" type admits the special characters of ``sca``; without one, any printable one.
        if sca is None or sca == "PRINT":
            return re.compile(r"[\x20-\x7e]*")
        return re.compile(f"[{base}{re.escape(sca)}]*")
    if sca == "PRINT":
        return re.compile(r"[\x20-\x7e]*")
    extra = re.escape(sca) if sca else ""
    return re.compile(f"[{base}{extra}]*")


def charset_ok(value: str, ctype: str, sca: str | None = None) -> bool:
    pattern = _class(ctype, sca)
    return pattern is None or pattern.fullmatch(value) is not None


CTYPE_WORDS = {
    "A": "letters",
    "N": "digits",
    "AN": "letters and digits",
    "AS": "letters and special characters",
    "NS": "digits and special characters",
    "ANS": "printable characters",
    "SN": "a signed number",
    "H": "hexadecimal digits",
}


def describe_ctype(ctype: str, sca: str | None = None) -> str:
    text = CTYPE_WORDS.get(ctype, ctype)
    if sca and sca != "PRINT" and "S" in ctype:
        text = f"{text} ({sca!r})"
    return f"{ctype} ({text})" if ctype in CTYPE_WORDS else text


def digits(value: str, most: int = 18) -> bool:
    """ASCII digits, at most ``most`` of them: ``str.isdigit()`` is also true of "\u00b2" or
    "\u0663", which ``int()`` refuses or misreads, and ``int()`` refuses 4,301 digits or more."""
    return 0 < len(value) <= most and value.isascii() and value.isdigit()


# -- dates ----------------------------------------------------------------------------------------
def parse_date(value: str) -> date | None:
    """A ``CCYYMMDD`` date that exists, else ``None``."""
    if len(value) != 8 or not value.isdigit():
        return None
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        return None


def gmt_ok(value: str) -> bool:
    """``CCYYMMDDhhmmssZ`` with a real date and time."""
    if len(value) != 15 or value[-1] != "Z" or not digits(value[:14]):
        return False
    if parse_date(value[:8]) is None:
        return False
    hh, mm, ss = int(value[8:10]), int(value[10:12]), int(value[12:14])
    return hh < 24 and mm < 60 and ss < 61


Values = tuple[frozenset[str], tuple[tuple[int, int], ...]]


def parse_values(spec: str, tables: dict[str, Values] | None = None) -> Values:
    """``"0-8,10-15,S"`` -> (frozenset of codes, tuple of numeric ranges)."""
    codes: set[str] = set()
    ranges: list[tuple[int, int]] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if part.startswith("@"):
            sub_codes, sub_ranges = (tables or {})[part[1:]]
            codes |= sub_codes
            ranges.extend(sub_ranges)
            continue
        lo, dash, hi = part.partition("-")
        if dash and lo.isdigit() and hi.isdigit():
            ranges.append((int(lo), int(hi)))
        else:
            codes.add(part)
    return frozenset(codes), tuple(ranges)


def value_in(value: str, codes: frozenset[str], ranges: tuple[tuple[int, int], ...]) -> bool:
    if value in codes:
        return True
    if ranges and digits(value):
        number = int(value)
        return any(lo <= number <= hi for lo, hi in ranges)
    return False


def version_number(ver: str | None) -> int:
    """1.002 VER as a comparable number; unknown versions count as the newest."""
    if ver and digits(ver) and len(ver) == 4:
        return int(ver)
    return 9999
