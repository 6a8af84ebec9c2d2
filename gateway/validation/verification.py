"""Parser of the OpenEBTS "verification file" format (EBTS rules as data).

The format (see ``data/EBTS9.1_ENUS.txt``) has two parts:

``TRANSACTIONS "<title>"`` blocks list TOTs, each with a quoted description; a run of TOTs is
closed by a record-count rule shared by all of them, e.g.
``1:1 2:1 414:1-14 10:0-4 713:0-2 15:0-8;`` -- one Type-1, one Type-2, 1-14 Type-4 *or*
Type-14, 0-4 Type-10, 0-2 Type-7 or Type-13, 0-8 Type-15.

``FIELDS`` is a run of rule blocks.  A block starts with a header in brackets, ``[M]`` or ``[O]``
(mandatory / optional for every TOT) or ``[O, CAR, LFS M, ...]`` (applies only to the TOTs listed;
a TOT followed by ``M`` or ``O`` overrides the default).  Then come field definitions, each ended by
``;``::

    2.018   T2_NAM  AS  3-30  1  desc="Name" sca="-, " long_desc="...";
    2.047:  T2_ASL  ...                 (the colon: the field has information items)
    2.047..1 T2_ASL_DOO N 8 1 desc=...  (item 1 of the field above)
    4.03...5 T4_IMP B1  1   1  mmap=... (binary field 4.003 at byte offset 5)

Columns: tag, mnemonic, character type (A, N, AN, ANS, AS, NS, B1/B2/B4), size (``3-30``, ``8``,
``2-x``), occurrences (``1-11``).  Attributes: ``mmap`` (the value must be one of the keys of
``KEY:description|...``, or of the code table ``file://T2_POB.txt``), ``omap`` (suggested
values, not enforced), ``sca`` (special characters allowed; ``PRINT`` = any printable),
``date`` (``CCYYMMDD``, ``ZCCYYMMDD`` = zeros allowed, ``YYYYMMDDhhmmssZ``), ``regex`` /
``nregex`` (must / must not match), ``empty`` (filler of unused binary bytes), ``desc``,
``long_desc``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).with_name("data")

_TOKEN = re.compile(
    r"""
      (?P<ws>\s+)
    | (?P<comment>\#[^\n]*)
    | (?P<header>\[[^\]]*\])
    | (?P<semi>;)
    | (?P<attr>[A-Za-z_]+=(?:"[^"]*"|[^\s;"]*))
    | (?P<quoted>"[^"]*")
    | (?P<word>[^\s;"\[]+)
    """,
    re.VERBOSE,
)
_CONTINUATION = re.compile(r"\\\s*\n\s*")
_FIELD_TAG = re.compile(r"^(\d+)\.(\d+)(:?)(?:\.\.(\d+)|\.\.\.(\d+))?$")


@dataclass(frozen=True, slots=True)
class CountRule:
    """How many records of the given types a TOT carries (``414:1-14``)."""

    key: str
    types: tuple[int, ...]
    low: int
    high: int | None


@dataclass(frozen=True, slots=True)
class Tot:
    code: str
    title: str
    counts: tuple[CountRule, ...]


@dataclass(slots=True)
class Rule:
    """One field (or information item) rule of the verification file."""

    tag: str  # canonical "T.NNN"
    mnemonic: str
    ctype: str
    size: tuple[int, int | None]
    occ: tuple[int, int | None]
    attrs: dict[str, str]
    mandatory: bool = False
    tots: dict[str, bool] | None = None  # None: every TOT; else TOT -> mandatory
    item: int | None = None  # 1-based item number for item rules
    offset: int | None = None  # byte offset for binary fields
    items: list[Rule] = field(default_factory=list)
    values: frozenset[str] | None = None
    line: int = 0
    source: str = ""  # the verification file the rule was read from

    name: str = ""  # the mnemonic without its record prefix: ``T2_NAM`` -> ``NAM``

    def __post_init__(self) -> None:
        self.name = self.mnemonic.split("_", 1)[-1]

    @property
    def desc(self) -> str:
        return self.attrs.get("desc", "")

    def applies(self, tot: str | None) -> bool:
        return self.tots is None or (tot is not None and tot in self.tots)

    def is_mandatory(self, tot: str | None) -> bool:
        if self.tots is None or tot not in self.tots:
            return self.mandatory
        return self.tots[tot]

    def cite(self) -> str:
        """How a message names this rule: ``2.018 NAM AS 3-30 x1``."""
        lo, hi = self.size
        size = str(lo) if hi == lo else f"{lo}-{'x' if hi is None else hi}"
        olo, ohi = self.occ
        occ = str(olo) if ohi == olo else f"{olo}-{'x' if ohi is None else ohi}"
        return f"{self.tag} {self.name} {self.ctype} {size} occ {occ}"


@dataclass(slots=True)
class RuleSet:
    """The TOT table and the field rules of one verification file."""

    source: str
    tots: dict[str, Tot] = field(default_factory=dict)
    rules: dict[str, list[Rule]] = field(default_factory=dict)  # tag -> rules, file order

    def rules_for(self, tag: str) -> list[Rule]:
        return self.rules.get(tag, [])


def _range(text: str, line: int) -> tuple[int, int | None]:
    text = text.strip()
    if text in ("x", "*"):
        return (0, None)
    low, dash, high = text.partition("-")
    try:
        lo = int(low)
        if not dash:
            return (lo, lo)
        return (lo, None if high in ("x", "*", "") else int(high))
    except ValueError:
        raise ValueError(f"line {line}: bad range {text!r}") from None


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return _CONTINUATION.sub("", value)


def _map_keys(text: str, base: Path) -> frozenset[str]:
    if text.startswith("file://"):
        table = base / text[len("file://") :]
        keys = set()
        for raw in table.read_text(encoding="utf-8-sig").splitlines():
            code = raw.split("\t", 1)[0].strip()
            if code and not code.startswith("#"):
                keys.add(code)
        return frozenset(keys)
    keys = set()
    for entry in text.split("|"):
        key = entry.split(":", 1)[0].strip()
        if key:
            keys.add(key)
    return frozenset(keys)


def _split_count_key(key: str) -> tuple[int, ...]:
    """``"2"`` -> (2,); ``"414"`` -> (4, 14); ``"713"`` -> (7, 13): a one-digit type, another."""
    number = int(key)
    if number <= 99 and not (len(key) == 3 and key[0] != "1"):
        return (number,)
    return (int(key[0]), int(key[1:]))


def _parse_header(text: str) -> tuple[bool, dict[str, bool] | None]:
    words = re.findall(r"[A-Za-z0-9]+", text)
    if not words or words[0] not in ("M", "O"):
        raise ValueError(f"bad rule header {text!r}")
    default = words[0] == "M"
    if len(words) == 1:
        return default, None
    tots: dict[str, bool] = {}
    last = None
    for word in words[1:]:
        if word in ("M", "O") and last is not None:
            tots[last] = word == "M"  # "LFS M": an override for the TOT just named
        else:
            last = word
            tots[word] = default
    return default, tots


def parse(text: str, *, source: str = "<string>", base: Path = DATA) -> RuleSet:
    """Parse a verification file's text into a :class:`RuleSet`."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n")
    ruleset = RuleSet(source=source)
    section = None
    pending_tots: list[tuple[str, str | None]] = []
    counts: list[CountRule] = []
    header: tuple[bool, dict[str, bool] | None] | None = None
    words: list[str] = []
    attrs: dict[str, str] = {}
    current: Rule | None = None
    line = 1
    start_line = 1

    def finish_field() -> None:
        nonlocal current
        if not words:
            return
        m = _FIELD_TAG.match(words[0])
        if m is None or len(words) < 5 or header is None:
            raise ValueError(f"{source} line {start_line}: bad field definition {words[:5]}")
        rtype, num, _, item, offset = m.groups()
        tag = f"{int(rtype)}.{int(num):03d}"
        rule = Rule(
            tag=tag,
            mnemonic=words[1],
            ctype=words[2],
            size=_range(words[3], start_line),
            occ=_range(words[4], start_line),
            attrs=dict(attrs),
            mandatory=header[0],
            tots=header[1],
            item=int(item) if item else None,
            offset=int(offset) if offset else None,
            line=start_line,
            source=source,
        )
        if "mmap" in attrs:
            rule.values = _map_keys(attrs["mmap"], base)
        if rule.item is not None:
            if current is None:
                raise ValueError(f"{source} line {start_line}: item {words[0]} without its field")
            # An item belongs to the field defined just before it: EBTS9.1_ENUS.txt writes
            # "14.014..2 T14_AMP_AMPCD" (a typo) for the second item of 14.018 AMP.
            rule.tag = current.tag
            current.items.append(rule)
        else:
            ruleset.rules.setdefault(tag, []).append(rule)
            current = rule

    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        value = m.group()
        if kind in ("ws", "comment"):
            line += value.count("\n")
            continue
        if kind == "word" and value in ("TRANSACTIONS", "FIELDS") and not words:
            section = value
        elif section == "TRANSACTIONS":
            if kind == "quoted":
                if pending_tots and pending_tots[-1][1] is None:
                    pending_tots[-1] = (pending_tots[-1][0], _unquote(value))
            elif kind == "word" and ":" in value:
                key, _, rng = value.partition(":")
                low, high = _range(rng, line)
                counts.append(CountRule(key, _split_count_key(key), low, high))
            elif kind == "word":
                pending_tots.append((value, None))
            elif kind == "semi":
                for code, title in pending_tots:
                    ruleset.tots[code] = Tot(code, title or "", tuple(counts))
                pending_tots, counts = [], []
        elif section == "FIELDS":
            if kind == "header":
                finish_field()
                words, attrs = [], {}
                header = _parse_header(value[1:-1])
            elif kind == "attr":
                key, _, val = value.partition("=")
                attrs[key] = _unquote(val)
            elif kind == "semi":
                finish_field()
                words, attrs = [], {}
            elif kind == "word":
                if not words:
                    start_line = line
                words.append(value)
        line += value.count("\n")
    finish_field()
    return ruleset


@lru_cache(maxsize=8)
def load(name: str) -> RuleSet:
    """Parse a verification file shipped in ``data/`` (cached)."""
    path = DATA / name
    return parse(path.read_text(encoding="utf-8-sig"), source=name, base=path.parent)
