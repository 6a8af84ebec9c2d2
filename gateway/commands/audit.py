"""``ebts-gateway audit verify|export``: check the audit trail's chain, export it as JSON lines.

``verify`` exits 0 when the chain is whole, 1 naming the first broken record, 2 when the journal
or its audit key cannot be opened.  ``export --since DATE`` prints one JSON object per record
(oldest first), for an auditor's own copy.
"""

from __future__ import annotations

import datetime as dt
import json
import sys

from ._store import add_config_arguments, open_journal

NAME = "audit"
HELP = "verify or export the audit trail"


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = sub.add_parser(
        "verify",
        help="check the hash chain (exit 1 naming a broken record)",
        description="Check the hash chain (exit 1 naming a broken record).",
    )
    add_config_arguments(verify)
    export = sub.add_parser(
        "export", help="the records as JSON lines", description="The records as JSON lines."
    )
    add_config_arguments(export)
    export.add_argument(
        "--since", type=_date, help="first day (YYYY-MM-DD or an ISO time, UTC); default: all"
    )


def _date(text: str) -> float:
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(text) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


_date.__name__ = "date"  # argparse's error message: "invalid date value"


def open_audit(args):
    """(journal, audit) or None after printing why."""
    from gateway.store.audit import Audit
    from gateway.store.crypto import KeyFileError

    opened = open_journal(args)
    if opened is None:
        return None
    journal, _config = opened
    try:
        return journal, Audit(journal)
    except KeyFileError as exc:
        journal.close()
        print(f"ebts-gateway: {exc}", file=sys.stderr)
        return None


def run(args) -> int:
    opened = open_audit(args)
    if opened is None:
        return 2
    journal, audit = opened
    try:
        if args.audit_command == "verify":
            verdict = audit.verify()
            print(str(verdict), file=sys.stdout if verdict.ok else sys.stderr)
            return 0 if verdict.ok else 1
        for record in audit.records(since=args.since):
            sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
        return 0
    finally:
        journal.close()
