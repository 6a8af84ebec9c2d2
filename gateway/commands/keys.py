"""``ebts-gateway keys rotate``: a new data key; every sealed blob re-sealed; old keys retired.

Run it with the gateway stopped (the journal is locked while the daemon runs).  Interrupted,
it resumes where it stopped when run again.
"""

from __future__ import annotations

import sys

from ._store import add_config_arguments, open_journal

NAME = "keys"
HELP = "manage the data key of encryption at rest (rotate)"


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    rotate = sub.add_parser(
        "rotate",
        help="create a new key and re-encrypt everything under it",
        description="Create a new key and re-encrypt everything under it.",
    )
    add_config_arguments(rotate)


def run(args) -> int:
    from gateway.store.keys import rotate

    opened = open_journal(args, lock="exclusive")
    if opened is None:
        return 2
    journal, _config = opened
    from gateway.store.audit import Audit
    from gateway.store.crypto import KeyFileError

    try:
        audit = Audit(journal)
    except KeyFileError as exc:
        journal.close()
        print(f"ebts-gateway: {exc}", file=sys.stderr)
        return 2
    try:
        result = rotate(journal)
        audit.record(
            "keys.rotated",
            channel="cli",
            key_id=result.key_id,
            count=sum(result.resealed.values()),
            reason="resumed" if result.resumed else "new key",
            detail="retired " + (",".join(result.retired) or "none"),
        )
    finally:
        journal.close()
    verb = "resumed and finished" if result.resumed else "done"
    counts = ", ".join(f"{n} {name}" for name, n in result.resealed.items())
    retired = ", ".join(result.retired) or "none"
    print(
        f"key rotation {verb}: current key {result.key_id}; re-sealed {counts}; retired {retired}"
    )
    print(f"key file: {journal.key_file}", file=sys.stderr)
    return 0
