"""Helpers shared by the sub-commands: reading a transaction file with a clear error."""

from __future__ import annotations

import sys
from pathlib import Path

from gateway.ansinist import FormatError, Transaction, read


def load(path: str) -> Transaction | None:
    """Read a transaction file; on failure print ``FILE: location: message`` and return None."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        print(f"{path}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return None
    try:
        return read(data)
    except FormatError as exc:
        print(f"{path}: {exc.location}: {exc.message} [{exc.code}]", file=sys.stderr)
        return None
