"""A read-only connection of its own to the journal's database, for work done in a thread.

The reactor's connection stays the reactor's: a long read (verifying the audit chain, the
console's figures) opens its own connection, read-only, and closes it when done.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def read_only(path: str | Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to the SQLite database at ``path``, closed on leaving."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        yield db
    finally:
        db.close()
