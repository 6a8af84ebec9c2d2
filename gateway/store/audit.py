"""The audit trail: an append-only, keyed hash chain in the journal's database.

CJIS Security Policy 5.4 (auditing and accountability) asks for a record of who did what,
when, from where and with what outcome.  Each record here carries the HMAC-SHA256 of the
previous record's MAC and its own content, under a secret kept in ``audit.key`` (0600) in the
data directory: a forger with write access to the database can neither alter, insert nor
remove a record in the chain without :meth:`Audit.verify` naming the first broken record,
since the MAC cannot be recomputed without the key.  Removing records at either end is made
visible by the purge records (count and last id) and by exported copies (docs/security.md).

Records never hold images or personal fields: :meth:`Audit.record` accepts only the field
names of :data:`FIELDS`, each a short scalar.  The journal's own events (deliveries, IARs
received) reach the trail through :meth:`Audit.on_journal_event`, subscribed to the journal, so
they commit in the same transaction as the change they record.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .crypto import KeyFileError, write_private

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    event TEXT NOT NULL,
    actor TEXT,
    fields TEXT NOT NULL,
    prev TEXT NOT NULL,
    mac TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_at ON audit(at);
"""
# The trail is append-only in the database itself: no UPDATE, and a DELETE only of records
# older than what a purge announced (meta audit_purge_before), per dialect.
TRIGGERS_SQLITE = """
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
WHEN OLD.at >= COALESCE((SELECT value FROM meta WHERE name = 'audit_purge_before'), 0)
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"""
TRIGGERS_POSTGRES = (
    """CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'UPDATE' OR OLD.at >= COALESCE((SELECT CAST(value AS DOUBLE PRECISION) FROM meta
       WHERE name = 'audit_purge_before'), 0) THEN
    RAISE EXCEPTION 'the audit trail is append-only';
  END IF;
  RETURN OLD;
END $$ LANGUAGE plpgsql""",
    "DROP TRIGGER IF EXISTS audit_append_only ON audit",
    "CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit "
    "FOR EACH ROW EXECUTE FUNCTION audit_append_only()",
)

GENESIS = "0" * 64
MAX_VALUE = 300  # characters of one field value

# The only field names a record may carry: identifiers, addresses, outcomes; never a subject's
# name, SSN, DOB or image (CJIS 5.4.1.1 lists the events; the content is ours to bound).
FIELDS = frozenset(
    {
        "channel",  # smtp | soap | http | admin | cli
        "peer",  # network address of the remote side
        "identity",  # authenticated identity (certificate subject, admin user)
        "ori",
        "tcn",
        "tot",
        "response_tot",
        "message_id",
        "reason",
        "destination",
        "kind",
        "state",
        "error",
        "attempts",
        "user",
        "role",
        "remote",
        "count",
        "before",
        "key_id",
        "config_hash",
        "version",
        "detail",
        "what",
        "last_id",
    }
)


class AuditError(ValueError):
    """A record that would break the trail's rules (unknown field, bad value)."""


@dataclass(frozen=True)
class Verdict:
    ok: bool
    checked: int
    broken_id: int | None = None
    reason: str | None = None

    def __str__(self) -> str:
        if self.ok:
            return f"audit trail whole: {self.checked} records"
        return f"audit trail broken at record {self.broken_id}: {self.reason}"


def _load_key(path: Path, *, create: bool) -> bytes:
    try:
        raw = path.read_bytes()[:200]
    except FileNotFoundError:
        if not create:
            raise KeyFileError(path, "missing: the audit trail cannot be verified") from None
        key = secrets.token_bytes(32)
        write_private(path, key.hex().encode() + b"\n")
        return key
    except OSError as exc:
        raise KeyFileError(path, f"cannot read: {exc.strerror or exc}") from None
    try:
        key = bytes.fromhex(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise KeyFileError(path, "not an audit key (hexadecimal)") from None
    if len(key) != 32:
        raise KeyFileError(path, "not a 256-bit audit key")
    return key


class Audit:
    """The trail of one journal.  ``record`` writes inside the caller's journal transaction
    when there is one, else in its own commit."""

    def __init__(self, journal, key_file: str | Path | None = None, *, clock=time.time):
        self.journal = journal
        self.db = journal.db
        self.clock = clock
        # beside the journal; on a database shared by several nodes beside the data key, which
        # every node shares ([store] key_file)
        home = journal.key_file.parent if journal.url else journal.path.parent
        self.key_file = Path(key_file) if key_file else home / "audit.key"
        self.db.executescript(SCHEMA)
        if getattr(self.db, "dialect", "sqlite") == "postgresql":
            with journal.transaction():  # serialised: nodes starting together
                for statement in TRIGGERS_POSTGRES:
                    self.db.conn.execute(statement)
        else:
            self.db.executescript(TRIGGERS_SQLITE)
        has_records = self.db.execute("SELECT 1 FROM audit LIMIT 1").fetchone() is not None
        check = journal.meta("audit_key_check")
        self.key = _load_key(self.key_file, create=not has_records and check is None)
        mine = hmac.new(self.key, b"audit key check", hashlib.sha256).hexdigest()
        if check is None:
            journal.set_meta("audit_key_check", mine)
        elif not hmac.compare_digest(str(check), mine):
            raise KeyFileError(self.key_file, "is not the key of this journal's audit trail")
        journal.subscribe(self.on_journal_event)

    # -- writing --------------------------------------------------------------------------------
    def _mac(self, prev: str, rid: int, at: float, event: str, actor, fields: str) -> str:
        body = json.dumps([rid, repr(at), event, actor, fields], separators=(",", ":"))
        return hmac.new(self.key, f"{prev}\n{body}".encode(), hashlib.sha256).hexdigest()

    def record(self, event: str, *, actor: str | None = None, **fields) -> int:
        """Append one record; returns its id.  ``fields`` only from :data:`FIELDS`."""
        clean: dict[str, bool | int | float | str] = {}
        for name, value in sorted(fields.items()):
            if name not in FIELDS:
                raise AuditError(f"audit field {name!r} is not allowed")
            if value is None:
                continue
            if isinstance(value, bool | int | float):
                clean[name] = value
            else:
                text = str(value).replace("\n", " ").replace("\r", " ")
                clean[name] = text[:MAX_VALUE]
        body = json.dumps(clean, separators=(",", ":"), sort_keys=True)
        actor = None if actor is None else str(actor)[:MAX_VALUE]
        at = float(self.clock())
        with self.journal.transaction():
            row = (
                self.db.execute("SELECT id, mac FROM audit ORDER BY id DESC LIMIT 1").fetchone()
                or self._anchor()
            )
            rid = row[0] + 1
            prev = row[1]
            mac = self._mac(prev, rid, at, event, actor, body)
            self.db.execute(
                "INSERT INTO audit (id, at, event, actor, fields, prev, mac) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (rid, at, event, actor, body, prev, mac),
            )
        return rid

    def _anchor(self, db=None) -> tuple[int, str]:
        """(id, mac) of the last record removed by a purge, or the genesis."""
        row = (
            (db or self.db).execute("SELECT value FROM meta WHERE name = 'audit_anchor'").fetchone()
        )
        if row is None:
            return 0, GENESIS
        doc = json.loads(row[0])
        return int(doc["id"]), str(doc["mac"])

    # -- what the gateway calls ------------------------------------------------------------------
    def submission_accepted(
        self, *, channel: str, peer, identity, ori, tcn, message_id: str
    ) -> int:
        """A transport acknowledged a submission (stored durably)."""
        return self.record(
            "submission.accepted",
            actor=identity,
            channel=channel,
            peer=peer,
            identity=identity,
            ori=ori,
            tcn=tcn,
            message_id=message_id,
        )

    def submission_refused(
        self, *, channel: str, peer, identity, ori, tcn, reason: str, message_id=None
    ) -> int:
        """A transport refused a submission (nothing stored): ``reason`` names the rule, never a
        personal field's value.  The journal's ``submission_refused`` event (the console's
        counters) carries the record's time and fields, in the same commit."""
        with self.journal.transaction():
            rid = self.record(
                "submission.refused",
                actor=identity,
                channel=channel,
                peer=peer,
                identity=identity,
                ori=ori,
                tcn=tcn,
                reason=reason,
                message_id=message_id,
            )
            at, body = self.db.execute(
                "SELECT at, fields FROM audit WHERE id = ?", (rid,)
            ).fetchone()
            self.journal._emit("submission_refused", at=at, **json.loads(body))
        return rid

    def on_journal_event(self, event: str, fields: dict) -> None:
        """Journal events (inside their transaction) -> audit records."""
        if event == "delivered" or event == "delivery_failed":
            item = fields["item"]
            try:
                meta = json.loads(item.meta or "{}")
            except ValueError:
                meta = {}
            tot = meta.get("tot")
            common = {
                "message_id": item.message_id,
                "destination": item.destination,
                "kind": item.kind,
                "tot": tot,
                "ori": fields.get("ori"),
                "tcn": fields.get("tcn"),
                "attempts": item.attempts + 1,
            }
            if event == "delivered":
                self.record("iaq.sent" if tot == "IAQ" else "delivery.sent", **common)
            else:
                self.record(
                    "delivery.failed",
                    state=fields.get("state"),
                    error=str(fields.get("error") or "")[:200],
                    **common,
                )
        elif event == "responded" and fields.get("response_tot") == "IAR":
            self.record(
                "iar.received",
                message_id=fields["message_id"],
                ori=fields.get("ori"),
                tot="IAR",
            )

    # -- reading --------------------------------------------------------------------------------
    def verify(self, db=None) -> Verdict:
        """Walk the chain from its anchor; the first record whose link or MAC is wrong.

        ``db``: another connection to the same database (a thread's own, read-only)."""
        db = db or self.db
        expected_prev = self._anchor(db)[1]
        checked = 0
        for rid, at, event, actor, body, prev, mac in db.execute(
            "SELECT id, at, event, actor, fields, prev, mac FROM audit ORDER BY id"
        ):
            if not hmac.compare_digest(str(prev), expected_prev):
                return Verdict(False, checked, rid, "its link to the previous record is wrong")
            if not hmac.compare_digest(str(mac), self._mac(prev, rid, at, event, actor, body)):
                return Verdict(False, checked, rid, "its content does not match its MAC")
            expected_prev = mac
            checked += 1
        return Verdict(True, checked)

    def records(
        self,
        *,
        since: float | None = None,
        after_id: int = 0,
        limit: int | None = None,
        event: str | None = None,
        newest_first: bool = False,
        before_id: int | None = None,
    ) -> Iterator[dict]:
        sql = "SELECT id, at, event, actor, fields FROM audit WHERE id > ?"
        args: list = [after_id]
        if before_id is not None:
            sql += " AND id < ?"
            args.append(before_id)
        if since is not None:
            sql += " AND at >= ?"
            args.append(since)
        if event:
            sql += " AND event = ?"
            args.append(event)
        sql += " ORDER BY id DESC" if newest_first else " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        for rid, at, ev, actor, body in self.db.execute(sql, args).fetchall():
            yield {
                "id": rid,
                "time": _iso(at),
                "event": ev,
                "actor": actor,
                **json.loads(body),
            }

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM audit").fetchone()[0]

    def purge(self, older_than_days: float) -> int:
        """Remove records older than ``older_than_days`` (``[retention] audit_days``), keeping
        the chain verifiable from the last removed record (the anchor); writes a record."""
        before = self.clock() - older_than_days * 86400
        with self.journal.transaction():
            last = self.db.execute(
                "SELECT id, mac FROM audit WHERE at < ? ORDER BY id DESC LIMIT 1", (before,)
            ).fetchone()
            if last is None:
                return 0
            self.journal.set_meta("audit_purge_before", before)
            (count,) = self.db.execute(
                "SELECT COUNT(*) FROM audit WHERE id <= ?", (last[0],)
            ).fetchone()
            self.db.execute("DELETE FROM audit WHERE id <= ?", (last[0],))
            self.journal.set_meta("audit_purge_before", None)
            self.journal.set_meta("audit_anchor", json.dumps({"id": last[0], "mac": last[1]}))
            self.record("audit.purged", count=count, before=_iso(before), last_id=last[0])
        return count


def config_hash(raw: dict) -> str:
    """SHA-256 of the configuration as parsed (canonical JSON), recorded at start."""
    text = json.dumps(raw, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}Z"


__all__ = ["Audit", "AuditError", "Verdict", "config_hash"]
