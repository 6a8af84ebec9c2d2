"""Validation of transactions: structure, field syntax, EBTS profile rules, XML Schema.

Pure library (no I/O beyond reading its own rule tables, no Twisted).  Every level collects all its
findings; nothing stops at the first problem.

    report = validate(txn, profile="ebts-10")          # levels 1-3 (+4 for XML with source bytes)
    report = validate_bytes(data)                      # also turns a FormatError into a finding
    report.valid, [f.to_dict() for f in report.findings]

Levels: :mod:`.structure` (1), :mod:`.syntax` (2), :mod:`.profile` (3), ``.schema`` (4, XML only,
loaded lazily).  Quirks the codec tolerates get the severity a :class:`Strictness` gives them.
"""

from __future__ import annotations

from datetime import date

from gateway.ansinist import FormatError, Transaction, detect_encoding, read

from . import profile as _profile
from . import structure, syntax
from ._common import printable
from .findings import ERROR, WARNING, Finding, Report, XmlLocation
from .profile import PROFILES, get_profile
from .strictness import IGNORE, QUIRKS, REJECT, WARN, Strictness

DEFAULT_PROFILE = "ebts-10"

__all__ = [
    "DEFAULT_PROFILE",
    "ERROR",
    "IGNORE",
    "PROFILES",
    "QUIRKS",
    "REJECT",
    "WARN",
    "WARNING",
    "Finding",
    "Report",
    "Strictness",
    "XmlLocation",
    "format_error_finding",
    "schema_findings",
    "validate",
    "validate_bytes",
]


def validate(
    txn: Transaction,
    *,
    profile: str = DEFAULT_PROFILE,
    strictness: Strictness | str | None = None,
    source: bytes | None = None,
    today: date | None = None,
) -> Report:
    """All findings of levels 1-3 for ``txn`` (and level 4 when it is XML and ``source`` is given).

    ``profile`` is ``"ebts-9.1"``, ``"ebts-10"`` or ``"none"`` (levels 1-2 only); ``strictness`` a
    :class:`Strictness` or one of ``"default"``, ``"strict"``, ``"lenient"``; ``today`` the date the
    1.005 DAT rule compares with (default: the local date).
    """
    rules = get_profile(profile)  # raises ValueError for an unknown profile name
    if strictness is None:
        strictness = Strictness.default()
    elif isinstance(strictness, str):
        strictness = Strictness.named(strictness)
    report = Report()
    report.extend(structure.check(txn, strictness))
    report.extend(syntax.check(txn, strictness, today))
    if rules is not None:
        # A field levels 1-2 already judged (an error, or a quirk accepted as a warning, such as
        # CGA "WSQ") gets no second finding from the profile.
        flagged = {
            (f.location.record, f.location.tag)
            for f in report.findings
            if not isinstance(f.location, XmlLocation)
        }
        for f in _profile.check(txn, rules):
            loc = f.location
            if isinstance(loc, XmlLocation):
                report.add(f)
                continue
            if loc.tag is not None and (loc.record, loc.tag) in flagged:
                continue
            report.add(f)
    if source is not None and txn.encoding == "xml":
        report.extend(schema_findings(source))
    return report


def validate_bytes(
    data: bytes,
    *,
    profile: str = DEFAULT_PROFILE,
    strictness: Strictness | str | None = None,
    today: date | None = None,
) -> Report:
    """Read and validate ``data``; a :class:`FormatError` becomes one ``L1_<code>`` error finding
    (with the XML Schema findings too when the data is XML)."""
    get_profile(profile)
    try:
        txn = read(data)
    except FormatError as exc:
        report = Report([format_error_finding(exc)])
        if detect_encoding(data) == "xml":
            report.extend(schema_findings(data))
        return report
    return validate(txn, profile=profile, strictness=strictness, source=data, today=today)


def format_error_finding(exc: FormatError) -> Finding:
    """The finding for data the codec cannot read (code ``L1_`` + the codec's code)."""
    return Finding(
        ERROR,
        f"L1_{exc.code}",
        exc.location,
        exc.message,
        printable(exc.hint or f"{exc.location}: {exc.message}"),
    )


def schema_findings(data: bytes) -> list[Finding]:
    """Level 4 (XML Schema) findings of XML ``data``; empty when the schema module is absent."""
    try:
        from .schema import validate_xml_schema
    except ImportError:  # level 4 lives in its own module, absent until XML support lands
        return []
    return list(validate_xml_schema(bytes(data)))
