"""A read-only connection of its own to the journal's database, for work done in a thread.

The reactor's connection stays the reactor's: a long read (verifying the audit chain, the
console's figures) opens its own connection, read-only, and closes it when done.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def read_only(journal) -> Iterator[Any]:
    """A read-only connection of its own to ``journal``'s database (SQLite or PostgreSQL),
    closed on leaving."""
    db = journal.reader()
    try:
        yield db
    finally:
        db.close()
