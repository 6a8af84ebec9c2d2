"""Enrolments made by the pipeline, journalled beside the messages.

A new subject enrolled from a submission (2.005 RET=Y and no hit) is written to the journal in
the same commit as the response; worker processes read the rows they have not applied yet
(read-only, WAL lets them read while the daemon writes) and add them to their in-memory gallery.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS enrolments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL,
    gallery TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    template BLOB NOT NULL,
    UNIQUE (message_id, gallery, position)
);
"""


def add_enrolment(
    db: sqlite3.Connection,
    message_id: str,
    gallery: str,
    subject_id: str,
    templates: dict[int, bytes],
) -> None:
    """Insert (inside the caller's transaction); idempotent per message."""
    for position, data in sorted(templates.items()):
        db.execute(
            "INSERT OR IGNORE INTO enrolments (message_id, gallery, subject_id, position, "
            "template) VALUES (?, ?, ?, ?, ?)",
            (message_id, gallery, subject_id, int(position), data),
        )


def read_enrolments(journal_path: str | Path, gallery: str, after: int = 0):
    """Rows (id, subject_id, position, template bytes) with id > ``after``, in order."""
    uri = f"file:{Path(journal_path)}?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True)
    except sqlite3.OperationalError:
        return []
    try:
        return [
            (rowid, subject, position, bytes(data))
            for rowid, subject, position, data in db.execute(
                "SELECT id, subject_id, position, template FROM enrolments "
                "WHERE gallery = ? AND id > ? ORDER BY id",
                (gallery, after),
            )
        ]
    except sqlite3.OperationalError:  # table not created yet
        return []
    finally:
        db.close()
