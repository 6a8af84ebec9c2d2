"""NCIC offense codes, their DHS notification priority levels, the priority of a criminal history.

DESIGN.md ("The interoperability rules"): each DHS notification carries a priority level computed
from the subject's *convictions* (the FBI record's dispositions); a person charged but not convicted
is not a "criminal alien" and gets no level.  The offense table (NCIC code ranges -> level) is
configuration; its defaults are data in ``data/offense_levels.toml`` (the same row shape as the
operator's ``[[offense]]`` rows):

=====  =========================================================================================
level  NCIC categories (first two digits of the 4-digit code; ``xx99`` is a category's generic code)
=====  =========================================================================================
1      01 sovereignty, 09 homicide, 10 kidnapping, 11 sexual assault, 12 robbery, and the 35
       dangerous-drug codes that sell / smuggle / manufacture / distribute / produce
2      20 arson, 22 burglary, 23 larceny, 24 stolen vehicle, 25 forgery and counterfeiting,
       26 fraud, 63 money laundering
3      every other category, including 35 possession, equipment and unspecified-activity codes
=====  =========================================================================================

The NCIC code list (``data/ncic_off_codes.csv``) is the NIEM ``OFFCodeSimpleType`` enumeration; see
``data/PROVENANCE.md``.  A code is *valid* when it is four ASCII digits whose category is one of the
categories of that list (codes a state adds inside a known category are valid; ``0412`` is not).

Pure: no I/O beyond reading the package's own data files, no Twisted.
"""

from __future__ import annotations

import csv
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

DATA_DIR = Path(__file__).with_name("data")
LEVELS = (1, 2, 3)
FALLBACK_LEVEL = 3  # DESIGN: "Level 3 ... every other category"
NO_CONVICTION_REASON = "not a criminal alien: no convictions"
# Dispositions that are a conviction.  Everything else (DISMISSED, ACQUITTED, NOT GUILTY, PENDING,
# DEFERRED, NOLLE PROSEQUI, VACATED, PARDONED, ...) is not; a later disposition of the same offense
# replaces an earlier one, so CONVICTED followed by VACATED is no conviction.
CONVICTION_DISPOSITIONS = frozenset(
    {
        "CONVICTED",
        "CONVICTION",
        "GUILTY",
        "FOUND GUILTY",
        "GUILTY PLEA",
        "PLEADED GUILTY",
        "PLED GUILTY",
    }
)
_CODE = re.compile(r"[0-9]{4}")
_RANGE = re.compile(r"([0-9]{4})\s*-\s*([0-9]{4})")
_ROW_KEYS = ("code", "codes", "level", "note")


class OffenseConfigError(ValueError):
    """A bad ``[[offense]]`` row; ``key`` names it (``offense[3].codes``), like ``ConfigError``."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}")


# -- the NCIC code list ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def ncic_offense_codes() -> Mapping[str, str]:
    """NCIC offense code -> description (NIEM ``OFFCodeSimpleType``, 458 codes)."""
    with (DATA_DIR / "ncic_off_codes.csv").open(encoding="ascii", newline="") as f:
        return {row["code"]: row["description"] for row in csv.DictReader(f)}


@lru_cache(maxsize=1)
def ncic_categories() -> frozenset[str]:
    """The two-digit categories of the NCIC code list (01, 02, 03, 09, ... 81)."""
    return frozenset(code[:2] for code in ncic_offense_codes())


def is_ncic_code(code) -> bool:
    """True for a string of four ASCII digits in a known NCIC category."""
    return (
        isinstance(code, str)
        and _CODE.fullmatch(code) is not None
        and code[:2] in ncic_categories()
    )


def normalize_code(code) -> str | None:
    """``code`` stripped of surrounding blanks when it is a valid NCIC code, else None."""
    if not isinstance(code, str):
        return None
    code = code.strip()
    return code if is_ncic_code(code) else None


def describe(code) -> str | None:
    """The NCIC description of ``code`` (``"0911"``: ``"HOMICIDE - WILLFUL KILL-GUN"``) or None."""
    code = normalize_code(code)
    return ncic_offense_codes().get(code) if code else None


# -- the table ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OffenseRule:
    """Codes ``low``..``high`` (inclusive, as 4-digit strings) have priority ``level``."""

    low: str
    high: str
    level: int
    note: str = ""

    @property
    def span(self) -> int:
        return int(self.high) - int(self.low) + 1

    def covers(self, code: str) -> bool:
        return self.low <= code <= self.high

    def as_row(self) -> dict:
        row: dict[str, object] = (
            {"code": self.low} if self.low == self.high else {"codes": f"{self.low}-{self.high}"}
        )
        row["level"] = self.level
        if self.note:
            row["note"] = self.note
        return row


def _code_value(value, key: str) -> str:
    if not isinstance(value, str) or _CODE.fullmatch(value.strip()) is None:
        hint = " (quote it: leading zeros matter)" if isinstance(value, int) else ""
        raise OffenseConfigError(
            key, f'must be a 4-digit NCIC code such as "0911"{hint}: {value!r}'
        )
    return value.strip()


def parse_row(row, key: str) -> OffenseRule:
    """One ``[[offense]]`` row as a rule; a bad row raises :class:`OffenseConfigError` naming it."""
    example = '{codes = "2200-2299", level = 2} or {code = "3530", level = 1}'
    if not isinstance(row, Mapping):
        raise OffenseConfigError(key, f"must be a table such as {example}, not {row!r}")
    for name in row:
        if name not in _ROW_KEYS:
            raise OffenseConfigError(
                f"{key}.{name}", "unknown setting (an offense row has code or codes, level, note)"
            )
    if ("code" in row) == ("codes" in row):
        raise OffenseConfigError(key, f"needs exactly one of code or codes: {example}")
    if "code" in row:
        low = high = _code_value(row["code"], f"{key}.code")
    else:
        value = row["codes"]
        match = _RANGE.fullmatch(value.strip()) if isinstance(value, str) else None
        if match is None:
            raise OffenseConfigError(
                f"{key}.codes", f'must be a range of 4-digit codes such as "2200-2299": {value!r}'
            )
        low, high = match.groups()
        if low > high:
            raise OffenseConfigError(f"{key}.codes", f"range runs backwards: {value!r}")
    if "level" not in row:
        raise OffenseConfigError(key, "level is required (1, 2 or 3)")
    level = row["level"]
    if isinstance(level, bool) or not isinstance(level, int) or level not in LEVELS:
        raise OffenseConfigError(f"{key}.level", f"must be 1, 2 or 3, not {level!r}")
    note = row.get("note", "")
    if not isinstance(note, str):
        raise OffenseConfigError(f"{key}.note", f"must be a string, not {note!r}")
    return OffenseRule(low, high, level, note)


class OffenseTable:
    """NCIC offense code -> priority level.

    The most specific rule covering a code wins (the narrowest range; a single code is the
    narrowest); between rules of the same width the later one wins.  A valid code no rule covers
    gets :data:`FALLBACK_LEVEL`; an invalid code gets None.
    """

    def __init__(self, rules: Iterable[OffenseRule] = ()):
        self._rules = tuple(rules)
        # Search order: narrowest first, later rows before earlier rows of the same width.
        order = sorted(range(len(self._rules)), key=lambda i: (self._rules[i].span, -i))
        self._ordered = tuple(self._rules[i] for i in order)

    @property
    def rules(self) -> tuple[OffenseRule, ...]:
        return self._rules

    @classmethod
    def default(cls) -> OffenseTable:
        """The DESIGN.md defaults (``data/offense_levels.toml``)."""
        return _default_table()

    @classmethod
    def from_config(cls, rows, *, defaults: bool = True, key: str = "offense") -> OffenseTable:
        """A table from TOML-shaped rows (``[{"codes": "2200-2299", "level": 2}, ...]``).

        With ``defaults`` (the usual case) the rows are laid over the default table, so a row only
        says what differs (``{code = "3562", level = 1}``); without, the rows are the whole table.
        Any bad row raises :class:`OffenseConfigError` (a ``ValueError``) naming it: ``offense[2]``.
        """
        if rows is None:
            rows = []
        if isinstance(rows, Mapping) or not isinstance(rows, list | tuple):
            raise OffenseConfigError(key, "must be an array of tables: [[offense]]")
        rules = [parse_row(row, f"{key}[{i + 1}]") for i, row in enumerate(rows)]
        base = _default_table().rules if defaults else ()
        return cls((*base, *rules))

    def rule_for(self, code) -> OffenseRule | None:
        """The rule deciding ``code``'s level, or None (invalid code, or no rule covers it)."""
        code = normalize_code(code)
        if code is None:
            return None
        for rule in self._ordered:
            if rule.covers(code):
                return rule
        return None

    def level(self, code) -> int | None:
        """The priority level of ``code``; None when it is not a valid 4-digit NCIC code."""
        code = normalize_code(code)
        if code is None:
            return None
        rule = self.rule_for(code)
        return rule.level if rule is not None else FALLBACK_LEVEL

    def most_serious(self, codes: Iterable) -> str | None:
        """The valid code of the most severe level among ``codes`` (the first on a tie), or None."""
        best, best_level = None, FALLBACK_LEVEL
        for code in codes:
            code = normalize_code(code)
            level = self.level(code) if code is not None else None
            if level is not None and (best is None or level < best_level):
                best, best_level = code, level
        return best

    def priority(self, history) -> PriorityResult:
        return priority(history, table=self)

    def __repr__(self) -> str:
        return f"<OffenseTable {len(self._rules)} rules>"


@lru_cache(maxsize=1)
def _default_table() -> OffenseTable:
    raw = tomllib.loads((DATA_DIR / "offense_levels.toml").read_text(encoding="utf-8"))
    rows = raw.get("offense", [])
    return OffenseTable(
        parse_row(row, f"offense_levels.toml offense[{i + 1}]") for i, row in enumerate(rows)
    )


def offense_table_from_config(raw: Mapping | None) -> OffenseTable:
    """The offense table of a parsed gateway configuration (the dict ``tomllib`` returns).

    Reads the optional ``[[offense]]`` array (rows laid over the defaults); without it the default
    table.  Bad rows raise :class:`OffenseConfigError` (a ``ValueError`` with ``key`` like
    ``ConfigError``).
    """
    if raw is None:
        return OffenseTable.default()
    if not isinstance(raw, Mapping):
        raise OffenseConfigError("offense", "configuration must be a table")
    rows = raw.get("offense")
    if rows is None:
        return OffenseTable.default()
    return OffenseTable.from_config(rows)


# -- priority of a criminal history ---------------------------------------------------------------


@dataclass(frozen=True)
class Conviction:
    """One convicted offense of a criminal history."""

    code: str  # as recorded (may be invalid)
    literal: str
    level: int  # the table's level; FALLBACK_LEVEL for an unrecognised code
    disposition: str
    date: str | None  # disposition date
    arrest_date: str | None
    ori: str | None
    recognised: bool = True  # False: the code is not a valid NCIC code


@dataclass(frozen=True)
class PriorityResult:
    """The priority of a DHS notification: a level 1-3, or None (no convictions)."""

    level: int | None
    reason: str
    convictions: tuple[Conviction, ...] = field(default_factory=tuple)

    @property
    def criminal_alien(self) -> bool:
        """True when there is at least one conviction (DESIGN: charges alone do not count)."""
        return self.level is not None

    @property
    def label(self) -> str:
        """``LEVEL 1`` ... ``LEVEL 3`` or ``NO LEVEL: NOT A CRIMINAL ALIEN (NO CONVICTIONS)``."""
        if self.level is None:
            return "NO LEVEL: NOT A CRIMINAL ALIEN (NO CONVICTIONS)"
        return f"LEVEL {self.level}"


def is_conviction(disposition) -> bool:
    """Whether a disposition text records a conviction (``CONVICTED``, ``PLEADED GUILTY`` ...)."""
    if not isinstance(disposition, str):
        return False
    text = " ".join(disposition.upper().replace("_", " ").split())
    return text in CONVICTION_DISPOSITIONS or text.startswith("CONVICTED ")


def _get(obj, name: str, default=None):
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _text(value) -> str | None:
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def _final_dispositions(event) -> dict[str | None, tuple[str, str | None]]:
    """Offense code -> its final (disposition, date) within one arrest event.

    A disposition naming no offense code applies to every offense of the event.  Dispositions are
    taken in date order when all of an offense's dispositions are dated, else in the order listed
    (an FBI record lists them chronologically); the last one is final.
    """
    offenses = [_text(_get(o, "code")) for o in (_get(event, "offenses") or [])]
    per_code: dict[str | None, list[tuple[int, str, str | None]]] = {}
    for index, disp in enumerate(_get(event, "dispositions") or []):
        text = _text(_get(disp, "disposition")) or ""
        date = _text(_get(disp, "date"))
        code = _text(_get(disp, "offense_code"))
        targets = [code] if code is not None else (offenses or [None])
        for target in targets:
            per_code.setdefault(target, []).append((index, text, date))
    final = {}
    for code, items in per_code.items():
        if all(date is not None for _, _, date in items):
            items = sorted(items, key=lambda item: (item[2], item[0]))
        _, text, date = items[-1]
        final[code] = (text, date)
    return final


def priority(history, *, table: OffenseTable | None = None) -> PriorityResult:
    """The priority level of a criminal history (a list of arrest events).

    Each event has ``offenses`` (``code``, ``literal``) and ``dispositions`` (``offense_code``,
    ``disposition``, ``date``); events may be :class:`~gateway.routing.interop.subjects.ArrestEvent`
    objects or their ``to_dict()`` form.  Only convictions count: the level is the most severe
    (lowest) level among convicted offenses.  A conviction whose code is not a valid NCIC code
    counts as an "other crime" (level 3).  No conviction at all: level None, reason ``not a
    criminal alien: no convictions``.  The reason names no offense (it goes to the routing log);
    the details are in ``convictions``.
    """
    table = table or OffenseTable.default()
    convictions = []
    for event in history or []:
        literals = {
            _text(_get(o, "code")): _text(_get(o, "literal")) or ""
            for o in (_get(event, "offenses") or [])
        }
        for code, (disposition, date) in _final_dispositions(event).items():
            if not is_conviction(disposition):
                continue
            level = table.level(code)
            convictions.append(
                Conviction(
                    code=code or "",
                    literal=literals.get(code) or describe(code) or "",
                    level=level if level is not None else FALLBACK_LEVEL,
                    disposition=disposition,
                    date=date,
                    arrest_date=_text(_get(event, "date")),
                    ori=_text(_get(event, "ori")),
                    recognised=level is not None,
                )
            )
    if not convictions:
        return PriorityResult(None, NO_CONVICTION_REASON, ())
    convictions.sort(key=lambda c: c.level)  # stable: history order within a level
    best = convictions[0]
    count = len(convictions)
    reason = f"level {best.level}: most severe of {count} conviction{'s' if count > 1 else ''}"
    if not best.recognised:
        reason += " (offense code not recognised: counted as another crime)"
    return PriorityResult(best.level, reason, tuple(convictions))
