"""Key rotation: a new data key, every sealed blob re-sealed under it, the old keys retired.

Resumable: the target key is remembered in the journal's ``meta`` table (``rotation_target``),
each batch of re-sealed blobs is one commit, and a blob already under the target key is left as
it is; an interrupted ``ebts-gateway keys rotate`` run again finishes the same rotation.  The
journal is opened with an exclusive lock, so the daemon is not writing blobs under the old key
meanwhile.  Plaintext blobs (written before encryption at rest) are sealed on the way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .crypto import key_id
from .enrolments import template_aad
from .journal import KEY_CHECK, Journal, _blob, _payload_aad, _summary_aad


@dataclass
class Rotation:
    key_id: str
    resumed: bool
    resealed: dict = field(default_factory=lambda: {"payloads": 0, "summaries": 0, "templates": 0})
    retired: list = field(default_factory=list)


# (name, SELECT of key/aad parts/blob after a key, UPDATE by key, aad from the row, first key);
# the keys are the tables' primary keys, so the same SQL runs on SQLite and PostgreSQL.
_TABLES = (
    (
        "payloads",
        "SELECT sha256, sha256, data FROM payloads WHERE sha256 > ? ORDER BY sha256 LIMIT ?",
        "UPDATE payloads SET data = ? WHERE sha256 = ?",
        lambda row: _payload_aad(row[1]),
        "",
    ),
    (
        "summaries",
        "SELECT id, id, summary FROM messages WHERE id > ? AND summary IS NOT NULL "
        "ORDER BY id LIMIT ?",
        "UPDATE messages SET summary = ? WHERE id = ?",
        lambda row: _summary_aad(row[1]),
        "",
    ),
    (
        "templates",
        "SELECT id, message_id, template, gallery, position "
        "FROM enrolments WHERE id > ? ORDER BY id LIMIT ?",
        "UPDATE enrolments SET template = ? WHERE id = ?",
        lambda row: template_aad(row[1], row[3], int(row[4])),
        0,
    ),
)


def rotate(journal: Journal, *, batch: int = 200, progress=None) -> Rotation:
    """Rotate the data key of ``journal`` (opened with ``lock="exclusive"``)."""
    ring = journal.keyring
    assert ring is not None  # Journal(encrypt=True), the default, loads or creates the key file
    target = journal.meta("rotation_target")
    if target is not None and target == ring.current:
        result = Rotation(ring.current, resumed=True)
    else:
        kid = ring.add_key()  # the key file first: a blob is never sealed with an unsaved key
        with journal.transaction():
            journal.set_meta(f"key_check:{kid}", ring.seal(KEY_CHECK, b"key-check"))
            journal.set_meta("rotation_target", kid)
        result = Rotation(kid, resumed=False)
    for name, select, update, aad_of, first in _TABLES:
        after = first
        while True:
            rows = journal.db.execute(select, (after, batch)).fetchall()
            if not rows:
                break
            with journal.transaction():
                for row in rows:
                    blob = _blob(row[2])
                    if key_id(blob) == ring.current:
                        continue
                    aad = aad_of(row)
                    journal.db.execute(update, (ring.seal(ring.open(blob, aad), aad), row[0]))
                    result.resealed[name] += 1
            after = rows[-1][0]
            if progress is not None:
                progress(name, result.resealed[name])
    for old in sorted(set(ring.keys) - {ring.current}):
        # every blob is under the current key now: forget the old ones
        ring.retire(old)
        journal.set_meta(f"key_check:{old}", None)
        result.retired.append(old)
    journal.set_meta("rotation_target", None)
    return result
