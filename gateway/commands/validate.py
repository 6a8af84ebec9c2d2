"""``ebts-gateway validate FILE... [--profile P] [--strict|--lenient] [--json]``.

All findings of all levels, one line each (or JSON, DESIGN.md section 3: one object per file,
a list when several files).  Exit status: 0 valid, 1 findings with severity error, 2 unreadable
(the file cannot be opened or the codec cannot decode it); for several files the highest.
"""

from __future__ import annotations

import json
import sys
from datetime import date, datetime
from pathlib import Path

from gateway.ansinist import FormatError, Location, detect_encoding, read
from gateway.validation import (
    DEFAULT_PROFILE,
    ERROR,
    PROFILES,
    Finding,
    Report,
    format_error_finding,
    schema_findings,
    validate,
)

NAME = "validate"
HELP = "validate transactions at all levels (structure, field syntax, EBTS profile, XML Schema)"


def add_arguments(parser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="transaction files")
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default=DEFAULT_PROFILE,
        help=f"EBTS profile for level 3 ('none': levels 1-2 only; default {DEFAULT_PROFILE})",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--strict", action="store_true", help="every tolerated quirk of the reader is an error"
    )
    mode.add_argument(
        "--lenient", action="store_true", help="every tolerated quirk of the reader is a warning"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--today",
        metavar="CCYYMMDD",
        help="the date 1.005 DAT is compared with (default: today)",
    )


def check_file(path: str, *, profile: str, strictness: str, today: date | None):
    """(report, status) of one file; status 0 valid, 1 errors, 2 unreadable."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        finding = Finding(ERROR, "FILE_UNREADABLE", Location(), exc.strerror or str(exc))
        return Report([finding]), 2
    try:
        txn = read(data)
    except FormatError as exc:
        report = Report([format_error_finding(exc)])
        if detect_encoding(data) == "xml":
            report.extend(schema_findings(data))
        return report, 2
    report = validate(txn, profile=profile, strictness=strictness, source=data, today=today)
    return report, 0 if report.valid else 1


def run(args) -> int:
    strictness = "strict" if args.strict else "lenient" if args.lenient else "default"
    today = None
    if args.today:
        try:
            today = datetime.strptime(args.today, "%Y%m%d").date()
        except ValueError:
            print(f"--today {args.today!r} is not CCYYMMDD", file=sys.stderr)
            return 2
    status = 0
    results = []
    for path in args.files:
        report, code = check_file(path, profile=args.profile, strictness=strictness, today=today)
        status = max(status, code)
        if args.json:
            results.append(report.to_dict(file=path))
            continue
        for f in report.findings:
            print(f"{path}: {f.severity}: {f.code}: {f.location}: {f.message}")
        errors, warnings = len(report.errors), len(report.warnings)
        verdict = "unreadable" if code == 2 else "valid" if report.valid else "invalid"
        print(f"{path}: {verdict} ({errors} errors, {warnings} warnings)")
    if args.json:
        out = results[0] if len(results) == 1 else results
        print(json.dumps(out, indent=1, ensure_ascii=False))
    return status
