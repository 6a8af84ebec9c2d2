"""Level 3: the EBTS application profile, driven by the verification-file data.

Profiles: ``ebts-9.1`` (``data/EBTS9.1_ENUS.txt``), ``ebts-10`` (the same plus
``data/EBTS10_additions.txt``, whose rules win for the fields and TOTs they name), ``none`` (no
level 3).

Codes: ``L3_TOT_UNKNOWN`` (1.004 TOT not in the profile's TOT table), ``L3_RECORD_COUNT`` (the TOT's
record-count rule, e.g. CAR ``414:1-14``), ``L3_RECORD_NOT_ALLOWED`` (a record type the TOT does not
list), ``L3_MANDATORY_MISSING`` ([M] for this TOT), ``L3_FIELD_NOT_ALLOWED`` (a Type-2 field
the profile defines, but not for this TOT), ``L3_FIELD_UNKNOWN`` (a Type-2 field the profile does
not define),
``L3_OCCURRENCES``, ``L3_ITEMS``, ``L3_SIZE``, ``L3_CHARSET``, ``L3_VALUE_NOT_IN_LIST`` (``mmap``),
``L3_DATE_INVALID`` (``date=``), ``L3_FORMAT`` (``regex`` / ``nregex``).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

from gateway.ansinist import Field, Location, Record, Transaction

from ._common import (
    charset_ok,
    describe_ctype,
    error,
    gmt_ok,
    len_expected,
    location,
    parse_date,
)
from .findings import Finding
from .verification import Rule, RuleSet, Tot, load

PROFILES = ("ebts-9.1", "ebts-10", "none")
_TYPE2 = 2


@dataclass(frozen=True, eq=False)  # hashed by identity: profiles are cached singletons
class Profile:
    """A base rule set plus optional additions; the additions win."""

    name: str
    label: str
    layers: tuple[tuple[str, RuleSet], ...]  # (label, rules), highest precedence first
    _memo: dict = field(default_factory=dict, repr=False)  # (tag, TOT) -> rule_for() result

    def tot(self, code: str | None) -> Tot | None:
        for _, rs in self.layers:
            if code in rs.tots:
                return rs.tots[code]
        return None

    def rule_for(self, tag: str, tot: str | None) -> tuple[str, Rule] | None:
        key = (tag, tot)
        try:
            return self._memo[key]
        except KeyError:
            pass
        hit = None
        for label, rs in self.layers:
            hit = next(((label, r) for r in rs.rules_for(tag) if r.applies(tot)), None)
            if hit is not None:
                break
        self._memo[key] = hit
        return hit

    def defines(self, tag: str) -> bool:
        return any(rs.rules_for(tag) for _, rs in self.layers)

    @property
    def record_types(self) -> frozenset[int]:
        return frozenset(int(tag.split(".")[0]) for _, rs in self.layers for tag in rs.rules)

    def tags(self, rtype: int) -> tuple[str, ...]:
        return _tags(self, rtype)


@lru_cache(maxsize=64)
def _tags(profile: Profile, rtype: int) -> tuple[str, ...]:
    prefix = f"{rtype}."
    found = {tag for _, rs in profile.layers for tag in rs.rules if tag.startswith(prefix)}
    return tuple(sorted(found, key=lambda t: int(t.split(".")[1])))


@lru_cache(maxsize=4)
def get_profile(name: str) -> Profile | None:
    """The named profile (``None`` for ``"none"``)."""
    if name == "none":
        return None
    base = ("EBTS 9.1", load("EBTS9.1_ENUS.txt"))
    if name == "ebts-9.1":
        return Profile(name, "EBTS 9.1", (base,))
    if name == "ebts-10":
        return Profile(name, "EBTS 10", (("EBTS 10", load("EBTS10_additions.txt")), base))
    raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")


def check(txn: Transaction, profile: Profile) -> list[Finding]:
    out: list[Finding] = []
    records = txn.records
    if not records or records[0].type != 1:
        return out
    tot_code = txn.tot
    tot = profile.tot(tot_code)
    if tot is None:
        out.append(
            error(
                "L3_TOT_UNKNOWN",
                Location(1, 1, "1.004"),
                f"TOT {tot_code!r} is not a transaction type of {profile.label}",
                rule=f"{profile.label} 1.004 TOT table",
                name="TOT",
            )
        )
    else:
        _record_counts(out, txn, tot, profile)
    covered = profile.record_types
    for recno, record in enumerate(records, start=1):
        if record.type not in covered:
            continue
        if record.type == _TYPE2 and tot is None:
            continue  # Type-2 content depends on the TOT
        _check_record(out, recno, record, tot_code, profile, len_expected(txn, record))
    return out


def _record_counts(out, txn: Transaction, tot: Tot, profile: Profile) -> None:
    counts = Counter(r.type for r in txn.records)
    allowed: set[int] = set()
    for rule in tot.counts:
        allowed.update(rule.types)
        n = sum(counts[t] for t in rule.types)
        if n < rule.low or (rule.high is not None and n > rule.high):
            kinds = "/".join(f"Type-{t}" for t in rule.types)
            rng = f"{rule.low}-{rule.high}" if rule.high != rule.low else str(rule.low)
            out.append(
                error(
                    "L3_RECORD_COUNT",
                    Location(1, 1, "1.003"),
                    f"TOT {tot.code} needs {rng} {kinds} record(s), the transaction has {n}",
                    rule=f"{profile.label} {tot.code} {rule.key}:{rng}",
                    name="CNT",
                )
            )
    for recno, record in enumerate(txn.records, start=1):
        if record.type not in allowed:
            out.append(
                error(
                    "L3_RECORD_NOT_ALLOWED",
                    location(recno, record),
                    f"TOT {tot.code} carries no Type-{record.type} records",
                    rule=f"{profile.label} {tot.code} record types "
                    + " ".join(r.key for r in tot.counts),
                )
            )


def _check_record(
    out, recno: int, record: Record, tot: str | None, profile: Profile, with_len: bool
) -> None:
    fields = record.fields
    for tag in profile.tags(record.type):
        if tag == "1.004":
            continue  # TOT: judged as a whole by L3_TOT_UNKNOWN
        if tag.endswith(".001") and not with_len and tag not in fields:
            continue
        hit = profile.rule_for(tag, tot)
        if hit is None:
            continue
        label, rule = hit
        field = fields.get(tag)
        if field is None:
            if rule.is_mandatory(tot):
                out.append(
                    error(
                        "L3_MANDATORY_MISSING",
                        location(recno, record, tag),
                        f"mandatory field {tag} {rule.name} ({rule.desc}) is missing"
                        + (f" for TOT {tot}" if rule.tots is not None else ""),
                        rule=f"{label} [M] {rule.cite()}",
                        name=rule.name,
                    )
                )
            continue
        _check_field(out, location(recno, record, tag), field, rule, label, tot)
    if record.type != _TYPE2:
        return
    for tag in fields:
        base = tag.partition("#")[0]
        if base != tag or profile.rule_for(base, tot) is not None:
            continue
        if profile.defines(base):
            code, text = "L3_FIELD_NOT_ALLOWED", f"field {base} is not defined for TOT {tot}"
        else:
            code, text = "L3_FIELD_UNKNOWN", f"field {base} is not defined by {profile.label}"
        out.append(
            error(code, location(recno, record, base), text, rule=f"{profile.label} Type-2 fields")
        )


def _check_field(out, loc: Location, field: Field, rule: Rule, label: str, tot) -> None:
    name = rule.name
    cite = _Cite(label, rule)
    subs = field.subfields
    if field.binary:
        return
    n = len(subs)
    lo, hi = rule.occ
    if n < lo or (hi is not None and n > hi):
        out.append(
            error(
                "L3_OCCURRENCES",
                loc,
                f"{name} has {n} occurrences, {label} allows {lo}-{hi if hi is not None else 'x'}",
                rule=cite,
                name=name,
            )
        )
    items = rule.items
    for sub in subs:
        if items:
            if len(sub) > len(items):
                out.append(
                    error(
                        "L3_ITEMS",
                        loc,
                        f"{name} subfield has {len(sub)} items, {label} defines {len(items)}",
                        rule=cite,
                        name=name,
                    )
                )
                return
            pairs = zip(items, sub, strict=False)
        else:
            pairs = ((rule, value) for value in sub)
        for index, (item_rule, value) in enumerate(pairs):
            if index and not value:
                continue  # a trailing item left empty (1.013 DOM "NORAM" US "") is optional
            f = _check_value(loc, item_rule, value, label, name, tot)
            if f is not None:
                out.append(f)
                return  # one finding per field is enough for the submitter


def _check_value(loc, rule: Rule, value: str, label: str, name: str, tot):
    cite = _Cite(label, rule)
    attrs = rule.attrs
    binary = rule.ctype.startswith("B")
    lo, hi = rule.size
    if not binary and (len(value) < lo or (hi is not None and len(value) > hi)):
        return error(
            "L3_SIZE",
            loc,
            f"{name} {value[:20]!r} has {len(value)} characters, {label} allows "
            f"{lo}-{hi if hi is not None else 'x'}",
            rule=cite,
            name=name,
        )
    sca = attrs.get("sca")
    if not binary and not charset_ok(value, rule.ctype, sca):
        return error(
            "L3_CHARSET",
            loc,
            f"{name} {value[:20]!r} is not {describe_ctype(rule.ctype, sca)}",
            rule=cite,
            name=name,
        )
    if rule.values is not None and not _in_map(value, rule.values):
        shown = "|".join(sorted(rule.values)[:12])
        more = "|..." if len(rule.values) > 12 else ""
        return error(
            "L3_VALUE_NOT_IN_LIST",
            loc,
            f"{name} {value[:20]!r} is not an allowed value",
            rule=f"{cite} values {shown}{more}",
            name=name,
        )
    date_format = attrs.get("date")
    if date_format:
        ok = True
        if date_format == "ZCCYYMMDD":
            ok = value == "00000000" or parse_date(value) is not None
        elif date_format == "CCYYMMDD":
            ok = parse_date(value) is not None
        elif date_format.endswith("Z"):
            ok = gmt_ok(value)
        if not ok:
            return error(
                "L3_DATE_INVALID",
                loc,
                f"{name} {value[:20]!r} is not a valid date {date_format}",
                rule=cite,
                name=name,
            )
    regex = attrs.get("regex")
    if regex and _regex(regex).fullmatch(value) is None:
        return error(
            "L3_FORMAT", loc, f"{name} {value[:20]!r} does not match {regex}", rule=cite, name=name
        )
    nregex = attrs.get("nregex")
    if nregex and _regex(nregex).fullmatch(value) is not None:
        return error(
            "L3_FORMAT",
            loc,
            f"{name} {value[:20]!r} has a form that is not allowed ({nregex})",
            rule=cite,
            name=name,
        )
    return None


class _Cite:
    """The rule citation of a message, formatted only when a finding is made."""

    __slots__ = ("label", "rule")

    def __init__(self, label: str, rule: Rule):
        self.label, self.rule = label, rule

    def __str__(self) -> str:
        return f"{self.label} {self.rule.cite()}"

    def __add__(self, other: str) -> str:
        return str(self) + other


def _in_map(value: str, values: frozenset) -> bool:
    if value in values:
        return True
    return value.isdigit() and _numeric_keys(values).__contains__(int(value))


@lru_cache(maxsize=512)
def _numeric_keys(values: frozenset) -> frozenset:
    return frozenset(int(v) for v in values if v.isdigit())


@lru_cache(maxsize=64)
def _regex(text: str) -> re.Pattern:
    return re.compile(text)


# Public: responses check a field they copy against the same rule (see gateway.routing.responses).
check_field = _check_field
