"""Enrolments made by the pipeline, journalled beside the messages.

A new subject enrolled from a submission (2.005 RET=Y and no hit) is written to the journal in
the same commit as the response; worker processes read the rows they have not applied yet
(read-only, WAL lets them read while the daemon writes) and add them to their in-memory gallery.

Templates are sealed like every other blob of the journal (:mod:`gateway.store.crypto`); a
worker finds the key file through the journal's ``meta`` row ``key_file``.
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


def template_aad(message_id: str, gallery: str, position: int) -> bytes:
    return f"enrolment:{message_id}:{gallery}:{int(position)}".encode()


def add_enrolment(
    db,
    message_id: str,
    gallery: str,
    subject_id: str,
    templates: dict[int, bytes],
    *,
    seal=None,
) -> None:
    """Insert (inside the caller's transaction); idempotent per message.

    ``seal(data, aad)`` encrypts each template (the journal's cipher)."""
    for position, data in sorted(templates.items()):
        if seal is not None:
            data = seal(data, template_aad(message_id, gallery, position))
        db.execute(
            "INSERT INTO enrolments (message_id, gallery, subject_id, position, "
            "template) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (message_id, gallery, position) DO NOTHING",
            (message_id, gallery, subject_id, int(position), data),
        )


_RINGS: dict[str, tuple[float, object]] = {}  # key file -> (mtime, Keyring)


def _keyring(db: sqlite3.Connection):
    """The key ring named by the journal's meta row (None for a journal without one)."""
    try:
        row = db.execute("SELECT value FROM meta WHERE name = 'key_file'").fetchone()
    except sqlite3.OperationalError:
        return None
    return None if row is None else _ring(str(row[0]))


def read_enrolments(
    journal_path: str | Path, gallery: str, after: int = 0, key_file: str | None = None
):
    """Rows (id, subject_id, position, template bytes) with id > ``after``, in order.

    ``journal_path``: the SQLite file, or a ``postgresql://`` URL (then ``key_file`` names the
    data key: each node's workers open templates with their own node's key file)."""
    from . import db as database

    if database.is_postgres(str(journal_path)):
        return _read_postgres(str(journal_path), gallery, after, key_file)
    uri = f"file:{Path(journal_path)}?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True)
    except sqlite3.OperationalError:
        return []
    try:
        rows = list(
            db.execute(
                "SELECT id, message_id, subject_id, position, template FROM enrolments "
                "WHERE gallery = ? AND id > ? ORDER BY id",
                (gallery, after),
            )
        )
        ring = (_ring(key_file) if key_file else _keyring(db)) if rows else None
    except sqlite3.OperationalError:  # table not created yet
        return []
    finally:
        db.close()
    return _opened(rows, ring, gallery)


_PG: dict[str, object] = {}  # URL -> this worker process's connection


def _read_postgres(url: str, gallery: str, after: int, key_file: str | None):
    from . import db as database

    conn = _PG.get(url)
    if conn is None:
        conn = _PG[url] = database.connect_postgres(url)
    rows = list(
        conn.execute(  # type: ignore[attr-defined]
            "SELECT id, message_id, subject_id, position, template FROM enrolments "
            "WHERE gallery = ? AND id > ? ORDER BY id",
            (gallery, after),
        )
    )
    ring = _ring(key_file) if rows and key_file else None
    return _opened(rows, ring, gallery)


def _ring(path: str):
    """The key ring of the key file ``path``, loaded again when the file changes."""
    from .crypto import Keyring

    mtime = Path(path).stat().st_mtime
    cached = _RINGS.get(path)
    if cached is None or cached[0] != mtime:
        cached = _RINGS[path] = (mtime, Keyring.load(path))
    return cached[1]


def _opened(rows, ring, gallery: str):
    out = []
    for rowid, message_id, subject, position, data in rows:
        data = bytes(data)
        if ring is not None:
            data = ring.open(data, template_aad(message_id, gallery, position))
        out.append((rowid, subject, position, data))
    return out
