"""Level 3: the EBTS application profile, driven by the verification-file data.

Profiles: ``ebts-9.1`` (``data/EBTS9.1_ENUS.txt``), ``ebts-10`` (the same plus
``data/EBTS10_additions.txt``, whose rules win for the fields and TOTs they name; it knows every
transaction type of the EBTS 10.0 XML schema), ``none`` (no level 3).

Under ``ebts-10`` an XML package is judged by the rules of its own representation: its values,
element occurrences and the record elements a package may hold are the FBI EBTS 10.0 XML schema's
(level 4, ``fbi_ebts.xsd``), not the sizes of the traditional encoding (XML ``HLL`` is ``80``
where traditional EBTS 9.1 wants 3-4 characters); level 3 then checks the TOT and that the
TOT's mandatory fields are there.

Every message names the profile and, when the rule comes from another layer, that layer
(``EBTS 10 (EBTS 9.1 rule) allows 3-4``); every hint cites the rule with its file and line.
Values of Type-2 fields (names, SSN, date and place of birth, addresses ...) are never quoted.

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
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from gateway.ansinist import Field, Location, Record, Transaction

from ._common import (
    charset_ok,
    describe_ctype,
    digits,
    error,
    gmt_ok,
    len_expected,
    location,
    parse_date,
    shown,
)
from .findings import Finding
from .verification import Rule, RuleSet, Tot, load

PROFILES = ("ebts-9.1", "ebts-10", "none")
_TYPE2 = 2
_PER_FINGER = frozenset({"14.022"})
_RIDGE_COUNT = re.compile(r"\d{1,3},\d{1,2}")
_STANDARD_MINUTIAE = frozenset(f"9.{n:03d}" for n in range(5, 13))


@dataclass(frozen=True, eq=False)  # hashed by identity: profiles are cached singletons
class Profile:
    """A base rule set plus optional additions; the additions win."""

    name: str
    label: str
    layers: tuple[tuple[str, RuleSet], ...]  # (label, rules), highest precedence first
    xml_by_schema: bool = False  # XML packages: values judged by the XML schema (level 4)
    _memo: dict[tuple[str, str | None], tuple[str, Rule] | None] = field(
        default_factory=dict, repr=False
    )  # (tag, TOT) -> rule_for() result

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
        layers = (("EBTS 10", load("EBTS10_additions.txt")), base)
        return Profile(name, "EBTS 10", layers, xml_by_schema=True)
    raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")


def check(txn: Transaction, profile: Profile) -> list[Finding]:
    out: list[Finding] = []
    records = txn.records
    if not records or records[0].type != 1:
        return out
    tot_code = txn.tot
    tot = profile.tot(tot_code)
    # An EBTS 10.0 XML package: which record elements it holds, how often an element occurs and
    # what its values look like are the schema's (fbi_ebts.xsd, level 4); the sizes and counts of
    # the traditional encoding do not apply. The profile still requires its mandatory fields.
    xml_values = profile.xml_by_schema and txn.encoding == "xml"
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
    elif not xml_values:
        _record_counts(out, txn, tot, profile)
    covered = profile.record_types
    for recno, record in enumerate(records, start=1):
        if record.type not in covered:
            continue
        if record.type == _TYPE2 and tot is None:
            continue  # Type-2 content depends on the TOT
        _check_record(out, recno, record, tot_code, profile, len_expected(txn, record), xml_values)
    return out


def _record_counts(out: list[Finding], txn: Transaction, tot: Tot, profile: Profile) -> None:
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
    out: list[Finding],
    recno: int,
    record: Record,
    tot: str | None,
    profile: Profile,
    with_len: bool,
    xml_values: bool = False,
) -> None:
    fields = record.fields
    # 9.005-9.012 describe minutiae in the NIST standard format: they are required only when
    # 9.004 FMT is "S" (ANSI/NIST-ITL 1-2011 8.9.4; an EFS or vendor-format Type-9 has FMT "U").
    skip = _STANDARD_MINUTIAE if record.type == 9 and record.value("9.004") == "U" else ()
    for tag in profile.tags(record.type):
        if tag in skip:
            continue
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
                        rule=f"{_Cite(_applied(profile, label), rule)} [M]",
                        name=rule.name,
                    )
                )
            continue
        if xml_values:
            continue
        _check_field(
            out, location(recno, record, tag), field, rule, _applied(profile, label), tot, record
        )
    if record.type != _TYPE2 or xml_values:
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


def _applied(profile: Profile, layer: str) -> str:
    """How a message names the rule applied: ``EBTS 10``, or ``EBTS 10 (EBTS 9.1 rule)``."""
    return profile.label if layer == profile.label else f"{profile.label} ({layer} rule)"


def _expected_fingers(record: Record | None) -> int | None:
    """Fingers in a Type-14 image: one per 14.013 FGP, four for a slap (13, 14), two for both
    thumbs (15) (ANSI/NIST-ITL 1-2011 Table 8; 14.022 NQM has one subfield per finger)."""
    if record is None or record.type != 14:
        return None
    fgp = record.get("14.013")
    if fgp is None:
        return None
    slap = {"13": 4, "14": 4, "15": 2}
    return sum(slap.get(sub[0].lstrip("0") or "0", 1) for sub in fgp.subfields if sub)


def _check_field(
    out: list[Finding],
    loc: Location,
    field: Field,
    rule: Rule,
    label: str,
    tot: str | None,
    record: Record | None = None,
) -> None:
    name = rule.name
    cite = _Cite(label, rule)
    subs = field.subfields
    if field.binary:
        return
    n = len(subs)
    lo, hi = rule.occ
    fingers = _expected_fingers(record) if rule.tag in _PER_FINGER else None
    if fingers is not None:
        # EBTS 9.1 writes 14.022 NQM "2-4" for the slap records it had in mind; the count is one
        # per finger in the image (ANSI/NIST-ITL 1-2011 8.14.22), so a single finger has one.
        lo, hi = min(lo, fingers), fingers if hi is None else max(min(hi, fingers), 1)
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
    # The last item may repeat when the verification file gives it several occurrences
    # (EBTS9.1_ENUS.txt "9.012..5 T9_MRC_RID N x x": ridge counts, one item per neighbour).
    repeats = bool(items) and (items[-1].occ[1] is None or items[-1].occ[1] > 1)
    for sub in subs:
        if items:
            if len(sub) > len(items) and not repeats:
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
            rules = items + [items[-1]] * max(0, len(sub) - len(items))
            pairs: Iterable[tuple[Rule, str]] = zip(rules, sub, strict=False)
        else:
            pairs = ((rule, value) for value in sub)
        for index, (item_rule, value) in enumerate(pairs):
            if index and not value:
                continue  # a trailing item left empty (1.013 DOM "NORAM" US "") is optional
            if item_rule.mnemonic == "T9_MRC_RID" and _RIDGE_COUNT.fullmatch(value):
                # A ridge count item is "neighbour,count" (ANSI/NIST-ITL 1-2011 8.9.12, NBIS
                # an2k2txt "033,04"); the verification file's "N" forgets the comma.
                continue
            f = _check_value(loc, item_rule, value, label, name, tot)
            if f is not None:
                out.append(f)
                return  # one finding per field is enough for the submitter


def _check_value(
    loc: Location, rule: Rule, value: str, label: str, name: str, tot: str | None
) -> Finding | None:
    cite = _Cite(label, rule)
    attrs = rule.attrs
    binary = rule.ctype.startswith("B")
    lo, hi = rule.size
    if not binary and (len(value) < lo or (hi is not None and len(value) > hi)):
        return error(
            "L3_SIZE",
            loc,
            f"{name}{shown(loc, value)} has {len(value)} characters, {label} allows "
            f"{lo}-{hi if hi is not None else 'x'}",
            rule=cite,
            name=name,
        )
    sca = attrs.get("sca")
    if not binary and not charset_ok(value, rule.ctype, sca):
        return error(
            "L3_CHARSET",
            loc,
            f"{name}{shown(loc, value)} is not {describe_ctype(rule.ctype, sca)}",
            rule=cite,
            name=name,
        )
    if rule.values is not None and not _in_map(value, rule.values):
        listed = "|".join(sorted(rule.values)[:12])
        more = "|..." if len(rule.values) > 12 else ""
        return error(
            "L3_VALUE_NOT_IN_LIST",
            loc,
            f"{name}{shown(loc, value)} is not an allowed value",
            rule=f"{cite} values {listed}{more}",
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
                f"{name}{shown(loc, value)} is not a valid date {date_format}",
                rule=cite,
                name=name,
            )
    regex = attrs.get("regex")
    if regex and _regex(regex).fullmatch(value) is None:
        return error(
            "L3_FORMAT",
            loc,
            f"{name}{shown(loc, value)} does not match {regex}",
            rule=cite,
            name=name,
        )
    nregex = attrs.get("nregex")
    if nregex and _regex(nregex).fullmatch(value) is not None:
        return error(
            "L3_FORMAT",
            loc,
            f"{name}{shown(loc, value)} has a form that is not allowed ({nregex})",
            rule=cite,
            name=name,
        )
    return None


class _Cite:
    """The rule citation of a message, formatted only when a finding is made: the profile, the
    rule and where it is written (``EBTS 10 (EBTS 9.1 rule) 10.006 HLL N 3-4 occ 1,
    EBTS9.1_ENUS.txt line 2891``)."""

    __slots__ = ("label", "rule")

    def __init__(self, label: str, rule: Rule):
        self.label, self.rule = label, rule

    def __str__(self) -> str:
        where = f", {self.rule.source} line {self.rule.line}" if self.rule.source else ""
        return f"{self.label} {self.rule.cite()}{where}"

    def __add__(self, other: str) -> str:
        return str(self) + other


def _in_map(value: str, values: frozenset[str]) -> bool:
    if value in values:
        return True
    return digits(value) and _numeric_keys(values).__contains__(int(value))


@lru_cache(maxsize=512)
def _numeric_keys(values: frozenset[str]) -> frozenset[int]:
    return frozenset(int(v) for v in values if v.isdigit())


@lru_cache(maxsize=64)
def _regex(text: str) -> re.Pattern[str]:
    return re.compile(text)


# Public: responses check a field they copy against the same rule (gateway.routing.answers.errt).
check_field = _check_field
