"""The message journal: transactions, their states, payloads, responses and outbound queue.

SQLite in WAL mode with ``synchronous=FULL``: when :meth:`Journal.accept` returns, the raw bytes
and the STORED state are on disk, so a transport may acknowledge (DESIGN.md section 1).  Every
state transition is written here and to the routing log (JSON lines, no personal fields).
Payloads are stored once, named by a keyed digest (HMAC-SHA256).

Encryption at rest (:mod:`gateway.store.crypto`): payloads, responses, notices, search
summaries and enrolled templates are sealed with AES-256-GCM under the data key of the key file
(``data.key`` beside the journal unless ``key_file`` says otherwise).  The journal remembers a
check value per key, so a wrong or missing key file stops the start with :class:`KeyFileError`
instead of writing blobs nobody can open.  Every file it creates is 0600.

Events, two kinds of subscriber:
- :meth:`Journal.subscribe`: ``fn(event, fields)`` called inside the transaction that makes the
  change, so the subscriber's own writes commit with it (the audit trail): ``responded``,
  ``delivered``, ``delivery_failed``.
- :meth:`Journal.after_commit`: ``fn(event, fields)`` called once the transaction has committed
  (never for one rolled back), for effects outside the database: ``state`` (every transition;
  the routing log is such a subscriber), ``delivery_queued`` (the dispatcher wakes up),
  ``delivered``, ``delivery_failed``, ``dhs_match``, ``responded`` and ``work`` (a message
  left for any node to claim).  Tests subscribe too. :class:`gateway.store.counters.Counters`
  subscribes inside the transaction (the console's counters, and the audit trail's
  ``submission_refused``).

The journal is synchronous and thread-confined; the Twisted side calls it from the reactor
thread (commits are small) and never from worker processes, except the per-byte work on large
payloads, which one store thread does on a second connection (see :meth:`Journal.store_payload`).
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from . import db as database
from .counters import Counters
from .crypto import (
    KeyFileError,
    Keyring,
    Plain,
    SealedBlobError,
    ensure_private_dir,
    make_private,
)
from .enrolments import SCHEMA as ENROLMENT_SCHEMA
from .enrolments import add_enrolment
from .states import TERMINAL, Delivery, IllegalTransition, State, check, check_delivery

__all__ = ["IllegalTransition", "Journal", "State", "TERMINAL"]

KEY_CHECK = b"ebts-gateway key check"

# States (DESIGN.md section 1): the enum and its transition table are in gateway.store.states.
RECEIVED, STORED, DECODED, VALIDATED, REJECTED = (
    State.RECEIVED,
    State.STORED,
    State.DECODED,
    State.VALIDATED,
    State.REJECTED,
)
SEARCHED, ROUTED, RESPONDED, DUPLICATE = (
    State.SEARCHED,
    State.ROUTED,
    State.RESPONDED,
    State.DUPLICATE,
)
UNREADABLE = State.UNREADABLE  # bytes that are no transaction at all: answered by ERRT
# Outbound states, per destination.
QUEUED, SENT, RETRYING, FAILED = (
    Delivery.QUEUED,
    Delivery.SENT,
    Delivery.RETRYING,
    Delivery.FAILED,
)
LEASE_SECONDS = 30.0  # a node's claim on a message or a delivery; renewed while it works

SCHEMA = """
CREATE TABLE IF NOT EXISTS payloads (
    sha256 TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    received_at REAL NOT NULL,
    transport TEXT NOT NULL,
    peer TEXT,
    reply_to TEXT,
    payload TEXT NOT NULL REFERENCES payloads(sha256),
    encoding TEXT,
    ori TEXT, tcn TEXT, tot TEXT, dai TEXT,
    state TEXT NOT NULL,
    updated_at REAL NOT NULL,
    response_tot TEXT,
    response TEXT REFERENCES payloads(sha256),
    response_tcn TEXT,
    duplicate_of TEXT,
    summary TEXT,
    agency TEXT,
    identity TEXT,
    mail_message_id TEXT
);
CREATE INDEX IF NOT EXISTS messages_state ON messages(state);
CREATE INDEX IF NOT EXISTS messages_ori_tcn ON messages(ori, tcn);
CREATE TABLE IF NOT EXISTS transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL,
    at REAL NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    destination TEXT,
    outcome TEXT,
    duration_ms REAL
);
CREATE INDEX IF NOT EXISTS transitions_message ON transitions(message_id);
CREATE TABLE IF NOT EXISTS outbound (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    destination TEXT NOT NULL,
    payload TEXT NOT NULL REFERENCES payloads(sha256),
    meta TEXT,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_error TEXT,
    created_at REAL NOT NULL,
    sent_at REAL,
    UNIQUE (message_id, kind, destination)
);
CREATE INDEX IF NOT EXISTS outbound_due ON outbound(state, next_attempt);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS links (control TEXT PRIMARY KEY, message_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB);
CREATE INDEX IF NOT EXISTS messages_payload ON messages(payload);
CREATE INDEX IF NOT EXISTS messages_response ON messages(response);
CREATE INDEX IF NOT EXISTS outbound_payload ON outbound(payload);
"""
# Ordered migrations after the first schema, for both databases: (version, statement).  The
# version reached is kept in meta ``schema_version``; an ADD COLUMN whose column exists already
# (a journal made before versions were kept) is skipped.  Columns are only ever appended: the
# dataclasses above read rows by position.
MIGRATIONS = (
    # retention: a purged payload keeps its row (messages and the outbound queue refer to it)
    # with empty data and the time it was purged
    (1, "ALTER TABLE payloads ADD COLUMN purged_at REAL"),
    (2, "ALTER TABLE messages ADD COLUMN agency TEXT"),
    (3, "ALTER TABLE messages ADD COLUMN identity TEXT"),
    (4, "ALTER TABLE messages ADD COLUMN mail_message_id TEXT"),
    # several nodes on one database: claims with a lease (gateway.store.db)
    (5, "ALTER TABLE messages ADD COLUMN node TEXT"),
    (6, "ALTER TABLE messages ADD COLUMN lease_until REAL"),
    (7, "ALTER TABLE outbound ADD COLUMN node TEXT"),
    (8, "ALTER TABLE outbound ADD COLUMN lease_until REAL"),
    # the first submission of each (ORI, TCN): its primary key decides, across nodes, which of
    # two twins is the original and which the resubmission (1.009, ANSI/NIST-ITL 1-2011 8.1.9)
    (
        9,
        "CREATE TABLE IF NOT EXISTS first_submissions (ori TEXT NOT NULL, tcn TEXT NOT NULL, "
        "message_id TEXT NOT NULL, PRIMARY KEY (ori, tcn))",
    ),
    # the nodes sharing the database: a name is used by one live node at a time
    (
        10,
        "CREATE TABLE IF NOT EXISTS nodes (name TEXT PRIMARY KEY, host TEXT NOT NULL, "
        "pid INTEGER NOT NULL, started_at REAL NOT NULL, seen_at REAL NOT NULL)",
    ),
    # NGI SOAP control numbers (gateway.store.controls); older journals made it on first use
    (
        11,
        "CREATE TABLE IF NOT EXISTS ngi_control_numbers (control_number TEXT PRIMARY KEY, "
        "message_id TEXT NOT NULL UNIQUE, service TEXT NOT NULL, created_at REAL NOT NULL)",
    ),
    # the message browser's case-insensitive ORI / TCN prefixes, by index (per dialect: a
    # BINARY range on SQLite, a pattern index for LIKE on PostgreSQL)
    (
        12,
        {
            "sqlite": "CREATE INDEX IF NOT EXISTS messages_ori_upper ON messages(UPPER(ori))",
            "postgresql": "CREATE INDEX IF NOT EXISTS messages_ori_upper "
            "ON messages(UPPER(ori) text_pattern_ops)",
        },
    ),
    (
        13,
        {
            "sqlite": "CREATE INDEX IF NOT EXISTS messages_tcn_upper ON messages(UPPER(tcn))",
            "postgresql": "CREATE INDEX IF NOT EXISTS messages_tcn_upper "
            "ON messages(UPPER(tcn) text_pattern_ops)",
        },
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


class NodeNameInUse(OSError):
    """Another live node of the shared database runs under this node's name."""


class JournalLocked(OSError):
    """Another process holds the journal in a way that excludes this use (key rotation while
    the daemon runs, or the daemon while a rotation runs)."""


class JournalUnreadable(OSError):
    """The journal's SQLite file cannot be opened as this gateway's database (truncated,
    overwritten, not a file): the message names the file and what to do; ``ebts-gateway run``
    and the journal commands print it and exit 2 instead of a traceback."""


@dataclass(frozen=True)
class Message:
    id: str
    received_at: float
    transport: str
    peer: str | None
    reply_to: str | None
    payload: str
    encoding: str | None
    ori: str | None
    tcn: str | None
    tot: str | None
    dai: str | None
    state: str
    updated_at: float
    response_tot: str | None
    response: str | None
    response_tcn: str | None
    duplicate_of: str | None
    summary: str | None
    agency: str | None = None  # the ORI of the [[agency]] the submission belongs to
    identity: str | None = None  # the authenticated peer that submitted it
    mail_message_id: str | None = None  # the submission e-mail's Message-ID (answers refer to it)
    node: str | None = None  # the gateway node that holds the claim on it (while unanswered)
    lease_until: float | None = None  # until when that claim holds unless renewed

    def to_dict(self) -> dict:
        out = dict(self.__dict__)
        out["summary"] = json.loads(self.summary) if self.summary else None
        return out


@dataclass(frozen=True)
class Outbound:
    id: int
    message_id: str
    kind: str
    destination: str
    payload: str
    meta: str | None
    state: str
    attempts: int
    next_attempt: float
    last_error: str | None
    created_at: float
    sent_at: float | None
    node: str | None = None  # the node sending it (claim), and until when
    lease_until: float | None = None


@dataclass(frozen=True)
class StoredPayload:
    """A payload already committed by :meth:`Journal.store_payload`: given to
    :meth:`Journal.accept_many` in place of its bytes."""

    digest: str
    size: int


class RoutingLog:
    """Append-only JSON lines; one line per transition, fsync'd with the batch."""

    FIELDS = (
        "time",
        "message_id",
        "tcn",
        "ori",
        "tot",
        "from_state",
        "to_state",
        "destination",
        "outcome",
        "duration_ms",
    )

    def __init__(self, path: Path | None):
        self.path = path
        self._fh = None
        if path:
            fd = os.open(str(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.fchmod(fd, 0o600)
            self._fh = os.fdopen(fd, "a", encoding="utf-8")

    def on_event(self, event: str, fields: dict) -> None:
        """A subscriber after commit: one line per transition."""
        if event == "state":
            self.write(fields)

    def write(self, entry: dict) -> None:
        if self._fh is None:
            return
        line = {k: entry.get(k) for k in self.FIELDS}
        self._fh.write(json.dumps(line, separators=(",", ":")) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class Journal:
    """The durable store of the gateway (one SQLite file under the data directory)."""

    def __init__(
        self,
        path: str | Path,
        routing_log: str | Path | None = None,
        *,
        key_file: str | Path | None = None,
        encrypt: bool = True,
        lock: str = "shared",
        url: str | None = None,
        node: str | None = None,
        lease: float = LEASE_SECONDS,
    ):
        """Open (or create) the journal.

        ``key_file``: the data key file (default ``data.key`` beside the journal, created on
        first use).  ``encrypt=False`` writes plaintext blobs (the benchmark's switch; not a
        configuration setting).  ``lock``: ``shared`` (the daemon, tools), ``exclusive`` (key
        rotation: no other process may have the journal open), or ``none`` (read-only tools).
        ``url``: a ``postgresql://`` database shared by several nodes instead of the SQLite
        file ``path`` (whose folder still holds the key file); ``node``: this node's name in
        claims (unique per running node; default the host name); ``lease``: seconds a claim
        holds unless renewed.
        """
        self.path = Path(path)
        self.url = url
        self.node = node or socket.gethostname()
        self.lease = float(lease)
        ensure_private_dir(self.path.parent)
        self._notify_after_commit = False
        self._log_pending: list[tuple[str, dict]] = []  # events of the open transaction
        self._subscribers: list = []
        self._after: list = []
        self.db: Any
        if url:
            self._lock_fd = None
            self.db = database.connect_postgres(url)
            with self._tx():  # nodes starting together: one creates, the others see it
                self.db.executescript(SCHEMA)
                self.db.executescript(ENROLMENT_SCHEMA)
        else:
            self._lock_fd = _lock(self.path, lock)
            if not self.path.exists():
                os.close(os.open(str(self.path), os.O_WRONLY | os.O_CREAT, 0o600))
            # SQLite gives the -wal and -shm files the mode of the database file.
            make_private(self.path, *_sidecars(self.path))
            try:
                self.db = database.connect_sqlite(self.path)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")
                self.db.execute("PRAGMA foreign_keys=ON")
                self.db.execute("PRAGMA secure_delete=ON")  # purged payloads are overwritten
                self.db.executescript(SCHEMA)
                self.db.executescript(ENROLMENT_SCHEMA)
                make_private(*_sidecars(self.path))
                self._migrate()
            except sqlite3.DatabaseError as exc:  # truncated, overwritten, a directory...
                if getattr(self, "db", None) is not None:
                    self.db.close()
                if self._lock_fd is not None:
                    os.close(self._lock_fd)
                raise JournalUnreadable(
                    f"journal {self.path}: cannot be opened as the gateway's database ({exc}); "
                    "restore it from a backup, or move it away to start an empty journal"
                ) from None
        if url:
            self._migrate()
        self.key_file = Path(key_file) if key_file else self.path.parent / "data.key"
        self.keyring = self._open_keyring(self.key_file, create=encrypt)
        # encrypt: _open_keyring(create=True) loads or creates a keyring, never None
        self.cipher = cast(Keyring, self.keyring) if encrypt else Plain(self.keyring)
        self.log = RoutingLog(Path(routing_log) if routing_log else None)
        self.after_commit(self.log.on_event)
        self.counters = Counters(self)  # the console's, added to in each change's commit

    @property
    def location(self) -> str:
        """Where worker processes read the journal: the SQLite file or the PostgreSQL URL."""
        return self.url or str(self.path)

    def reader(self):
        """A new read-only connection to this journal, for one thread (the console's figures,
        the audit chain's verification); the caller closes it."""
        if self.url:
            db = database.connect_postgres(self.url)
            db.execute("SET default_transaction_read_only = on")
            return db
        return database.connect_sqlite_readonly(self.path)

    @property
    def dialect(self) -> str:
        return database.dialect(self.db)

    def _migrate(self) -> None:
        """Apply the ordered migrations this database has not had yet (one commit)."""
        row = self.db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
        version = int(_text(row[0])) if row else 0
        if version > SCHEMA_VERSION:
            raise KeyFileError(
                self.path, f"the journal's schema is version {version}, newer than this gateway's"
            )
        if version == SCHEMA_VERSION:
            return
        with self._tx():
            for number, step in MIGRATIONS:
                if number <= version:
                    continue
                statement = step[self.dialect] if isinstance(step, dict) else step
                words = statement.split()
                adds = words[:2] == ["ALTER", "TABLE"] and words[3:5] == ["ADD", "COLUMN"]
                if adds and words[5] in database.columns(self.db, words[2]):
                    continue
                self.db.execute(statement)
            self.db.execute(
                "INSERT INTO meta (name, value) VALUES ('schema_version', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )

    def _open_keyring(self, key_file: Path, *, create: bool) -> Keyring | None:
        """Load the key file and prove it opens this journal's check values."""
        checks = dict(
            (name.removeprefix("key_check:"), _meta_out(value))
            for name, value in self.db.execute(
                "SELECT name, value FROM meta WHERE name LIKE 'key_check:%'"
            )
        )
        if key_file.exists():
            ring = Keyring.load(key_file)
        elif checks:
            raise KeyFileError(
                key_file,
                f"missing, and this journal holds data sealed with key(s) "
                f"{', '.join(sorted(checks))}: restore the key file",
            )
        elif create:
            ring = Keyring.create(key_file)
        else:
            return None
        for kid, value in checks.items():
            if kid not in ring.keys:
                raise KeyFileError(key_file, f"lacks key {kid}, which sealed data of this journal")
            try:
                ring.open(value, b"key-check")
            except SealedBlobError:
                raise KeyFileError(
                    key_file, f"key {kid} does not open this journal's data (a wrong key file?)"
                ) from None
        with self._tx():
            if ring.current not in checks:
                self.set_meta(f"key_check:{ring.current}", ring.seal(KEY_CHECK, b"key-check"))
            # where worker processes find the key to open enrolled templates (on a database
            # shared by several nodes each node's workers are told their own key file)
            if not self.url:
                self.set_meta("key_file", str(key_file.resolve()))
        return ring

    def close(self) -> None:
        self.close_store_connection()
        self.db.close()
        self.log.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def subscribe(self, fn) -> None:
        """Call ``fn(event, fields)`` inside the transaction of each journal event (``work``:
        after the commit that left a message for any node to claim)."""
        self._subscribers.append(fn)

    def _emit(self, event: str, **fields) -> None:
        for fn in self._subscribers:
            fn(event, fields)
        self._log_pending.append((event, fields))

    def after_commit(self, fn) -> None:
        """Call ``fn(event, fields)`` for each event of a transaction once it has committed."""
        self._after.append(fn)

    def meta(self, name: str):
        row = self.db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return _meta_out(row[0]) if row else None

    def set_meta(self, name: str, value) -> None:
        with self._tx():
            if value is None:
                self.db.execute("DELETE FROM meta WHERE name = ?", (name,))
            else:
                self.db.execute(
                    "INSERT INTO meta (name, value) VALUES (?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    (name, _meta_in(value, self.dialect)),
                )

    # -- helpers ----------------------------------------------------------------------
    def _tx(self):
        return _Tx(self)

    def transaction(self):
        """Group several journal calls into one commit: ``with journal.transaction(): ...``."""
        return _Tx(self)

    def _committed(self, ok: bool) -> None:
        pending, self._log_pending = self._log_pending, []
        notify, self._notify_after_commit = self._notify_after_commit, False
        if not ok:
            return
        if notify:
            pending.append(("work", {"node": self.node}))
        for event, fields in pending:
            for fn in self._after:
                try:
                    fn(event, fields)
                except Exception:  # noqa: BLE001 - the commit stands; one subscriber's bug
                    logging.getLogger("gateway.store").exception("subscriber of %s failed", event)

    def _put_payload(self, data: bytes) -> str:
        digest = self.cipher.digest(data)
        row = self.db.execute(
            "SELECT purged_at FROM payloads WHERE sha256 = ?", (digest,)
        ).fetchone()
        if row is not None:
            if row[0] is not None:  # the same bytes again after a purge: store them anew
                self.db.execute(
                    "UPDATE payloads SET data = ?, purged_at = NULL WHERE sha256 = ?",
                    (self.cipher.seal(data, _payload_aad(digest)), digest),
                )
            return digest
        self.db.execute(
            "INSERT INTO payloads (sha256, size, data) VALUES (?, ?, ?)",
            (digest, len(data), self.cipher.seal(data, _payload_aad(digest))),
        )
        return digest

    def payload(self, digest: str) -> bytes:
        """The bytes of a payload; KeyError when there is none (or it was purged)."""
        row = self.db.execute(
            "SELECT data, purged_at FROM payloads WHERE sha256 = ?", (digest,)
        ).fetchone()
        if row is None or row[1] is not None:
            raise KeyError(digest)
        return self.cipher.open(row[0], _payload_aad(digest))

    # -- the store thread: the per-byte work of large payloads, off the reactor -------------
    # Design (issue 14; the PostgreSQL store does the same with its own second connection):
    #
    # A large submission costs the journal time in proportion to its bytes: the keyed digest,
    # the AES-GCM seal, the INSERT of the blob, the commit that writes and fsyncs it, and later
    # the read and unseal of it.  On the reactor thread that was about 1.5 s for 45 MB, during
    # which nothing else (/health, other peers) was served.  So that work is done by ONE
    # dedicated thread (gateway.offload.StoreThread) on a SECOND connection that thread owns
    # (:meth:`store_payload`, :meth:`read_payload`, :meth:`checkpoint`):
    #
    # 1. store thread: digest; if the payload is not there (or purged), seal it chunk by chunk
    #    (the GIL is free between chunks), then INSERT + COMMIT it in a transaction of its own,
    #    with ``synchronous=NORMAL`` (no fsync under the write lock), then fsync the WAL file
    #    with no lock held.  The row is durable; nothing refers to it yet.
    # 2. reactor: :meth:`accept_many` with the :class:`StoredPayload` commits the messages rows
    #    (and the audit records) in one small transaction with ``synchronous=FULL``: only then
    #    is the submission acknowledged (SMTP 250 / SOAP answer), as before.  That commit's
    #    fsync also covers the payload's WAL frames, should step 1's fsync have failed.
    #
    # Crash between 1 and 2: the payload row is an orphan, nothing was acknowledged, the
    # client sends again (same digest: the row is used as it is); retention purges orphans
    # (no message refers to them).  A purge that took the orphan between 1 and 2 makes step 2
    # fail (nothing stored, a temporary error to the client): :meth:`_stored_payload`.
    #
    # SQLite has one writer at a time: a reactor-side write that comes while the store thread
    # holds the write lock waits for it (busy timeout), so that wait is BOUNDED, not avoided:
    # by the INSERT + COMMIT of one payload (no fsync in it; the size is capped by
    # ``smtp_max_size`` / ``max_body_size``).  Readers never wait (WAL).  Checkpoints, which
    # copy the WAL into the database file and fsync it, are taken away from the reactor's
    # connection (:meth:`offload_checkpoints`) and run in the store thread.  On PostgreSQL
    # there is no such lock (row-level locks only) and no checkpoint to move.

    _store_db: Any = None  # the store thread's connection (lazy)
    _store_owner: int | None = None  # the thread that owns it

    def _store_connection(self) -> Any:
        """The store thread's own connection (the first thread to ask owns it)."""
        if self._store_db is None and self.url:
            self._store_db = database.connect_postgres(self.url)
            self._store_owner = threading.get_ident()
        elif self._store_db is None:
            db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA synchronous=NORMAL")  # the WAL is fsync'd without the lock held
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA secure_delete=ON")
            db.execute("PRAGMA wal_autocheckpoint=0")  # checkpoint() does it, when asked
            self._store_db, self._store_owner = db, threading.get_ident()
        elif self._store_owner != threading.get_ident():
            raise RuntimeError("the journal's store connection belongs to another thread")
        return self._store_db

    def store_payload(self, data) -> StoredPayload:
        """Commit a payload's bytes (store thread only); see the design above.

        Returns the :class:`StoredPayload` to give :meth:`accept_many` on the reactor thread.
        """
        db = self._store_connection()
        digest = self.cipher.digest(data)  # hashlib releases the GIL on large inputs
        row = db.execute("SELECT purged_at FROM payloads WHERE sha256 = ?", (digest,)).fetchone()
        if row is None or row[0] is not None:
            sealed = self.cipher.seal_chunked(data, _payload_aad(digest))
            # a row of its own: on PostgreSQL no journal write lock is needed for it
            db.execute("BEGIN" if self.url else "BEGIN IMMEDIATE")
            try:
                row = db.execute(
                    "SELECT purged_at FROM payloads WHERE sha256 = ?", (digest,)
                ).fetchone()
                if row is None:
                    db.execute(
                        "INSERT INTO payloads (sha256, size, data) VALUES (?, ?, ?) "
                        "ON CONFLICT (sha256) DO NOTHING",  # another node's, meanwhile
                        (digest, len(data), sealed),
                    )
                elif row[0] is not None:  # the same bytes again after a purge
                    db.execute(
                        "UPDATE payloads SET data = ?, purged_at = NULL WHERE sha256 = ?",
                        (sealed, digest),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            del sealed
            if not self.url:
                _fsync_wal(self.path)
        return StoredPayload(digest, len(data))

    def read_payload(self, digest: str) -> bytes:
        """:meth:`payload` on the store thread's connection, unsealed chunk by chunk."""
        row = (
            self._store_connection()
            .execute("SELECT data, purged_at FROM payloads WHERE sha256 = ?", (digest,))
            .fetchone()
        )
        if row is None or row[1] is not None:
            raise KeyError(digest)
        return self.cipher.open_chunked(row[0], _payload_aad(digest))

    def checkpoint(self) -> None:
        """Copy the WAL into the database file (store thread; never waits for writers);
        PostgreSQL checkpoints by itself."""
        if not self.url:
            self._store_connection().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def offload_checkpoints(self) -> None:
        """From now on the reactor's connection never checkpoints: the store thread does
        (:meth:`checkpoint`), else a commit after a large payload would copy it on the reactor."""
        if not self.url:
            self.db.execute("PRAGMA wal_autocheckpoint=0")

    def close_store_connection(self) -> None:
        """Close the store thread's connection (from that thread, or once it has stopped)."""
        db, self._store_db, self._store_owner = self._store_db, None, None
        if db is not None:
            db.close()

    def _stored_payload(self, stored: StoredPayload) -> str:
        """The digest of a payload :meth:`store_payload` committed, checked to be still there
        (inside the accepting transaction)."""
        row = self.db.execute(
            "SELECT purged_at FROM payloads WHERE sha256 = ?", (stored.digest,)
        ).fetchone()
        if row is None or row[0] is not None:
            raise KeyError(f"payload {stored.digest[:16]} is gone (purged before its message)")
        return stored.digest

    # -- retention ------------------------------------------------------------------------
    def purge(self, before: float, *, limit: int = 200) -> tuple[int, int]:
        """Remove (one batch of) payloads, responses, notices and search summaries of answered
        messages last changed before ``before``; metadata, transitions and enrolments stay.

        A payload is kept while any message using it is unanswered or recent, or a delivery
        of it is still queued.  Returns (payloads purged, summaries removed) of this batch;
        call again until both are below ``limit``.  ``secure_delete`` overwrites the bytes.
        """
        now = time.time()
        terminal = tuple(TERMINAL)
        with self._tx():
            digests = [
                r[0]
                for r in self.db.execute(
                    "SELECT p.sha256 FROM payloads p WHERE p.purged_at IS NULL "
                    "AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.payload = p.sha256 "
                    "  AND (m.state NOT IN (?, ?) OR m.updated_at >= ?)) "
                    "AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.response = p.sha256 "
                    "  AND (m.state NOT IN (?, ?) OR m.updated_at >= ?)) "
                    "AND NOT EXISTS (SELECT 1 FROM outbound o WHERE o.payload = p.sha256 "
                    "  AND (o.state IN (?, ?) OR o.created_at >= ?)) LIMIT ?",
                    (*terminal, before, *terminal, before, QUEUED, RETRYING, before, limit),
                )
            ]
            for digest in digests:
                self.db.execute(
                    "UPDATE payloads SET data = ?, purged_at = ? WHERE sha256 = ?",
                    (b"", now, digest),
                )
            cur = self.db.execute(
                "UPDATE messages SET summary = NULL WHERE id IN (SELECT id FROM messages "
                "WHERE summary IS NOT NULL AND state IN (?, ?) AND updated_at < ? LIMIT ?)",
                (*terminal, before, limit),
            )
        return len(digests), cur.rowcount

    def _message(self, row) -> Message:
        row = list(row)
        if row[17] is not None:  # summary: sealed JSON
            row[17] = self.cipher.open(_blob(row[17]), _summary_aad(row[0])).decode()
        return Message(*row)

    def next_number(self, name: str) -> int:
        """A durable counter (control numbers, response TCNs)."""
        with self._tx():
            self.db.execute(
                "INSERT INTO counters (name, value) VALUES (?, 1) "
                "ON CONFLICT(name) DO UPDATE SET value = counters.value + 1",
                (name,),
            )
            (value,) = self.db.execute(
                "SELECT value FROM counters WHERE name = ?", (name,)
            ).fetchone()
        return value

    def _transition(
        self, msg: dict, to_state: str, *, destination=None, outcome=None, duration_ms=None, at=None
    ) -> None:
        at = at or time.time()
        check(msg["id"], msg.get("state"), to_state)
        self.db.execute(
            "INSERT INTO transitions (message_id, at, from_state, to_state, destination, "
            "outcome, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (msg["id"], at, msg.get("state"), to_state, destination, outcome, duration_ms),
        )
        self._log_pending.append(
            (
                "state",
                {
                    "time": _iso(at),
                    "message_id": msg["id"],
                    "tcn": msg.get("tcn"),
                    "ori": msg.get("ori"),
                    "tot": msg.get("tot"),
                    "from_state": msg.get("state"),
                    "to_state": to_state,
                    "destination": destination,
                    "outcome": outcome,
                    "duration_ms": None if duration_ms is None else round(duration_ms, 3),
                },
            )
        )
        if to_state == SEARCHED and destination == "DHS" and str(outcome).startswith("hit"):
            self._log_pending.append(("dhs_match", {"message_id": msg["id"]}))
        msg["state"] = to_state

    # -- intake ----------------------------------------------------------------------
    def accept(
        self,
        data: bytes,
        *,
        transport: str,
        peer: str | None = None,
        reply_to: str | None = None,
        agency: str | None = None,
        identity: str | None = None,
        mail_message_id: str | None = None,
    ) -> str:
        """Store the raw bytes durably (RECEIVED -> STORED); returns the message id."""
        return self.accept_many(
            [data],
            transport=transport,
            peer=peer,
            reply_to=reply_to,
            agencies=[agency],
            identity=identity,
            mail_message_id=mail_message_id,
        )[0]

    def accept_many(
        self,
        items: Sequence[bytes | StoredPayload],
        *,
        transport: str,
        peer: str | None = None,
        reply_to: str | None = None,
        agencies: list[str | None] | None = None,
        identity: str | None = None,
        mail_message_id: str | None = None,
        claim: bool = True,
        keys: list[tuple[str, str] | None] | None = None,
    ) -> list[str]:
        """Store several transactions in one commit: all are accepted, or none.

        ``agencies``: per item, the ORI of the agency it belongs to (whose registered
        destinations get its answer); ``identity``: the authenticated peer;
        ``mail_message_id``: the Message-ID of the e-mail that carried them (SMTP), which the
        answer mails name in In-Reply-To and References; ``claim``: this node takes them
        (a lease), else any node's :meth:`claim` may (and they are announced, see
        :meth:`subscribe`); ``keys``: per item its (ORI, TCN) as the intake read them, the
        first message of each key is remembered (:meth:`first_of`).  An item may be a
        :class:`StoredPayload` (its bytes committed by :meth:`store_payload` in the store thread).
        """
        now = time.time()
        ids = []
        agencies = agencies or [None] * len(items)
        keys = keys or [None] * len(items)
        lease = now + self.lease if claim else None
        with self._tx():
            for data, agency, key in zip(items, agencies, keys, strict=True):
                msg_id = f"M{int(now * 1000):013d}-{uuid.uuid4().hex[:10]}"
                msg = {"id": msg_id, "state": None}
                if isinstance(data, StoredPayload):
                    digest, size = self._stored_payload(data), data.size
                else:
                    digest, size = self._put_payload(data), len(data)
                self.db.execute(
                    "INSERT INTO messages (id, received_at, transport, peer, reply_to, payload, "
                    "state, updated_at, agency, identity, mail_message_id, node, lease_until) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        msg_id,
                        now,
                        transport,
                        peer,
                        reply_to,
                        digest,
                        STORED,
                        now,
                        agency,
                        identity,
                        mail_message_id,
                        self.node if claim else None,
                        lease,
                    ),
                )
                self._transition(msg, RECEIVED, outcome=f"{size} bytes via {transport}", at=now)
                self._transition(msg, STORED, outcome=digest[:16], at=now)
                if key is not None and all(key):
                    self.db.execute(
                        "INSERT INTO first_submissions (ori, tcn, message_id) VALUES (?, ?, ?) "
                        "ON CONFLICT (ori, tcn) DO NOTHING",
                        (key[0], key[1], msg_id),
                    )
                ids.append(msg_id)
            if not claim:
                self._announce()
        return ids

    # -- claims (several nodes on one database) ---------------------------------------------
    def _announce(self) -> None:
        """Tell every node, after this transaction commits, that work waits to be claimed."""
        self._notify_after_commit = True
        if self.dialect == "postgresql":
            self.db.notify("work")

    def claim(self, limit: int, *, restart: bool = False) -> list[Message]:
        """Claim up to ``limit`` unanswered messages nobody holds (no node, or a lease that
        expired: a node that died), oldest first, for this node; ``restart``: also those this
        node's name held before (its previous run).  ``FOR UPDATE SKIP LOCKED`` lets nodes
        claim side by side without waiting on each other's rows."""
        if limit <= 0:
            return []
        now = time.time()
        skip = " FOR UPDATE SKIP LOCKED" if self.dialect == "postgresql" else ""
        mine = " OR node = ?" if restart else ""
        args: list = [*TERMINAL, now]
        if restart:
            args.append(self.node)
        with self._tx():
            ids = [
                r[0]
                for r in self.db.execute(
                    "SELECT id FROM messages WHERE state NOT IN (?, ?) AND (node IS NULL "
                    f"OR lease_until IS NULL OR lease_until < ?{mine}) ORDER BY received_at "
                    f"LIMIT ?{skip}",
                    (*args, limit),
                )
            ]
            for msg_id in ids:
                self.db.execute(
                    "UPDATE messages SET node = ?, lease_until = ? WHERE id = ?",
                    (self.node, now + self.lease, msg_id),
                )
        return [self.message(i) for i in ids]

    def register_node(self) -> None:
        """Take this node's name for this process (the daemon, at start): refused while a
        live node (seen within a lease) holds it, since two processes under one name would
        renew and resume each other's claims."""
        now = time.time()
        me = (socket.gethostname(), os.getpid())
        with self._tx():
            row = self.db.execute(
                "SELECT host, pid, seen_at FROM nodes WHERE name = ?", (self.node,)
            ).fetchone()
            if row is not None and (row[0], row[1]) != me and row[2] > now - self.lease:
                raise NodeNameInUse(
                    f"node name {self.node!r} is in use by a live node (host {row[0]}, "
                    f"process {row[1]}, seen {now - row[2]:.0f} s ago): give each node its "
                    "own [store] node"
                )
            self.db.execute(
                "INSERT INTO nodes (name, host, pid, started_at, seen_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET host = excluded.host, pid = excluded.pid, "
                "started_at = excluded.started_at, seen_at = excluded.seen_at",
                (self.node, me[0], me[1], now, now),
            )

    def nodes(self) -> list[dict]:
        """The nodes known to the database, with when each was last seen."""
        cur = self.db.execute(
            "SELECT name, host, pid, started_at, seen_at FROM nodes ORDER BY name"
        )
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur]

    def renew(self) -> int:
        """Extend this node's claims on its unanswered messages and unsent deliveries; the
        number of messages it still holds (a claim taken over by another node is not
        renewed: that node answers it)."""
        now = time.time()
        until = now + self.lease
        with self._tx():
            self.db.execute("UPDATE nodes SET seen_at = ? WHERE name = ?", (now, self.node))
            cur = self.db.execute(
                "UPDATE messages SET lease_until = ? WHERE node = ? AND state NOT IN (?, ?)",
                (until, self.node, *TERMINAL),
            )
            self.db.execute(
                "UPDATE outbound SET lease_until = ? WHERE node = ? AND state IN (?, ?)",
                (until, self.node, QUEUED, RETRYING),
            )
        return cur.rowcount

    def holds(self, msg_id: str) -> bool:
        """Whether this node's claim on ``msg_id`` is still its own."""
        row = self.db.execute("SELECT node FROM messages WHERE id = ?", (msg_id,)).fetchone()
        return row is not None and row[0] == self.node

    def release(self, msg_ids) -> None:
        """Give this node's claims on ``msg_ids`` back and announce them to every node (for
        tools and tests; the daemon lets its claims expire)."""
        with self._tx():
            for msg_id in msg_ids:
                self.db.execute(
                    "UPDATE messages SET node = NULL, lease_until = NULL "
                    "WHERE id = ? AND node = ? AND state NOT IN (?, ?)",
                    (msg_id, self.node, *TERMINAL),
                )
            self._announce()

    def identify(self, msg_id: str, *, ori, tcn, tot, dai, encoding) -> None:
        """Record the Type-1 identity of a decoded message (no state change).

        An answered message keeps the identity it was answered under: the console's counters
        counted it then (``gateway.store.counters``), and a node whose lease ran out may still
        be decoding a message another node has answered meanwhile."""
        with self._tx():
            self.db.execute(
                "UPDATE messages SET ori = ?, tcn = ?, tot = ?, dai = ?, encoding = ? "
                "WHERE id = ? AND state NOT IN (?, ?)",
                (ori, tcn, tot, dai, encoding, msg_id, *sorted(str(s) for s in TERMINAL)),
            )

    def advance(
        self,
        msg_id: str,
        to_state: str,
        *,
        outcome=None,
        duration_ms=None,
        destination=None,
        summary: dict | None = None,
    ) -> None:
        with self._tx():
            msg = self._row(msg_id)
            self._transition(
                msg, to_state, outcome=outcome, duration_ms=duration_ms, destination=destination
            )
            sealed = None
            if summary:
                sealed = self.cipher.seal(json.dumps(summary).encode(), _summary_aad(msg_id))
            self.db.execute(
                "UPDATE messages SET state = ?, updated_at = ?, "
                "summary = COALESCE(?, summary) WHERE id = ?",
                (to_state, time.time(), sealed, msg_id),
            )

    def respond(
        self,
        msg_id: str,
        *,
        response: bytes | None,
        response_tot: str | None,
        response_tcn: str | None,
        deliveries: list[tuple[str, str, dict]],
        outcome: str | None = None,
        duration_ms: float | None = None,
        duplicate_of: str | None = None,
        enrol: dict | None = None,
        links: list[str] | None = None,
    ) -> None:
        """Store the response, its deliveries and any enrolment in one commit (-> RESPONDED).

        ``deliveries``: (kind, destination, meta) per destination, e.g. ("smtp", address, {}).
        ``response`` is None for a TOT that needs no answer (CNA).  Idempotent: a message
        already answered is left as it is.
        """
        now = time.time()
        with self._tx():
            msg = self._row(msg_id)
            if msg["state"] in TERMINAL:
                return
            digest = self._put_payload(response) if response is not None else None
            if enrol:
                add_enrolment(
                    self.db,
                    msg_id,
                    enrol["gallery"],
                    enrol["subject_id"],
                    enrol["templates"],
                    seal=self.cipher.seal,
                )
            for delivery in deliveries:
                # (kind, destination, meta) sends the response; a 4th item is its own payload
                # (an IAQ to the LESC, a forwarded IAR).
                kind, destination, meta = delivery[:3]
                payload = self._put_payload(delivery[3]) if len(delivery) > 3 else digest
                if payload is None:
                    continue
                self.db.execute(
                    "INSERT INTO outbound (message_id, kind, destination, payload, "
                    "meta, state, next_attempt, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (message_id, kind, destination) DO NOTHING",
                    (msg_id, kind, destination, payload, json.dumps(meta), QUEUED, now, now),
                )
                self._transition(
                    msg,
                    msg["state"],
                    destination=destination,
                    outcome=f"{QUEUED} {meta.get('tot', '')}".strip(),
                )
                self._log_pending.append(
                    ("delivery_queued", {"message_id": msg_id, "destination": destination})
                )
            for control in links or ():
                self.db.execute(
                    "INSERT INTO links (control, message_id) VALUES (?, ?) "
                    "ON CONFLICT (control) DO UPDATE SET message_id = excluded.message_id",
                    (control, msg_id),
                )
            final = DUPLICATE if duplicate_of else RESPONDED
            self._transition(
                msg,
                final,
                outcome=outcome or response_tot or "no answer required",
                duration_ms=duration_ms,
            )
            self.db.execute(
                "UPDATE messages SET state = ?, updated_at = ?, response = ?, response_tot = ?, "
                "response_tcn = ?, duplicate_of = ? WHERE id = ?",
                (final, now, digest, response_tot, response_tcn, duplicate_of, msg_id),
            )
            self._emit(
                "responded",
                message_id=msg_id,
                ori=msg.get("ori"),
                tcn=msg.get("tcn"),
                tot=msg.get("tot"),
                response_tot=response_tot,
                state=final,
            )

    def linked(self, control: str | None) -> str | None:
        """The message an IAQ control reference was sent for (to link its IAR)."""
        if not control:
            return None
        row = self.db.execute(
            "SELECT message_id FROM links WHERE control = ?", (control,)
        ).fetchone()
        return row[0] if row else None

    def note(self, msg_id: str, *, outcome: str, destination: str | None = None) -> None:
        """A transition that keeps the state (an IAR linked to an answered message)."""
        with self._tx():
            msg = self._row(msg_id)
            self._transition(msg, msg["state"], destination=destination, outcome=outcome)

    def previous_response(self, ori: str, tcn: str, exclude: str) -> Message | None:
        """The first answered message with this (ORI, TCN), for idempotent resubmissions."""
        row = self.db.execute(
            "SELECT * FROM messages WHERE ori = ? AND tcn = ? AND id != ? AND state = ? "
            "ORDER BY received_at LIMIT 1",
            (ori, tcn, exclude, RESPONDED),
        ).fetchone()
        return self._message(row) if row else None

    def first_of(self, ori: str, tcn: str) -> Message | None:
        """The first message accepted under (ORI, TCN), on any node (None: not recorded)."""
        row = self.db.execute(
            "SELECT m.* FROM first_submissions f JOIN messages m ON m.id = f.message_id "
            "WHERE f.ori = ? AND f.tcn = ?",
            (ori, tcn),
        ).fetchone()
        return self._message(row) if row else None

    # -- queries ----------------------------------------------------------------------
    def _row(self, msg_id: str) -> dict:
        cur = self.db.execute("SELECT * FROM messages WHERE id = ?", (msg_id,))
        row = cur.fetchone()
        if row is None:
            raise KeyError(msg_id)
        return dict(zip([c[0] for c in cur.description], row, strict=True))

    def message(self, msg_id: str) -> Message:
        row = self.db.execute("SELECT * FROM messages WHERE id = ?", (msg_id,)).fetchone()
        if row is None:
            raise KeyError(msg_id)
        return self._message(row)

    def messages(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        state: str | None = None,
        tcn: str | None = None,
        ori: str | None = None,
    ) -> list[Message]:
        where, args = [], []
        for column, value in (("state", state), ("tcn", tcn), ("ori", ori)):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT * FROM messages"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY received_at DESC LIMIT ? OFFSET ?"
        return [self._message(r) for r in self.db.execute(sql, (*args, limit, offset))]

    def find_messages(
        self, query: MessageQuery, *, limit: int = 100, offset: int = 0
    ) -> tuple[list[Message], int]:
        """The messages ``query`` selects, newest first, one page of them and the total."""
        where, args = _message_filter(query, self.dialect)
        sql = "SELECT * FROM messages" + (" WHERE " + " AND ".join(where) if where else "")
        (total,) = self.db.execute(f"SELECT COUNT(*) FROM ({sql}) AS selected", args).fetchone()
        rows = self.db.execute(
            sql + " ORDER BY received_at DESC, id DESC LIMIT ? OFFSET ?", (*args, limit, offset)
        )
        return [self._message(r) for r in rows], total

    def queue(self) -> tuple[int, float | None]:
        """(messages accepted and not answered yet, received_at of the oldest of them)."""
        count, oldest = self.db.execute(
            "SELECT COUNT(*), MIN(received_at) FROM messages WHERE state NOT IN (?, ?)",
            tuple(TERMINAL),
        ).fetchone()
        return count, oldest

    def unfinished(self) -> list[Message]:
        """Accepted messages not yet answered: resumed after a restart."""
        rows = self.db.execute(
            "SELECT * FROM messages WHERE state NOT IN (?, ?) ORDER BY received_at",
            tuple(TERMINAL),
        )
        return [self._message(r) for r in rows]

    def transitions(self, msg_id: str) -> list[dict]:
        cur = self.db.execute(
            "SELECT at, from_state, to_state, destination, outcome, duration_ms "
            "FROM transitions WHERE message_id = ? ORDER BY id",
            (msg_id,),
        )
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur]

    def stats(self) -> dict:
        states = dict(self.db.execute("SELECT state, COUNT(*) FROM messages GROUP BY state"))
        outbound = dict(self.db.execute("SELECT state, COUNT(*) FROM outbound GROUP BY state"))
        tots = dict(
            self.db.execute(
                "SELECT COALESCE(response_tot, '-'), COUNT(*) FROM messages GROUP BY response_tot"
            )
        )
        return {"messages": states, "outbound": outbound, "responses": tots}

    # -- outbound queue ----------------------------------------------------------------------
    def due(self, now: float | None = None, limit: int = 50) -> list[Outbound]:
        """Claim up to ``limit`` deliveries due by ``now`` that no live node is sending."""
        now = time.time() if now is None else now
        clock = time.time()
        skip = " FOR UPDATE SKIP LOCKED" if self.dialect == "postgresql" else ""
        with self._tx():
            rows = [
                Outbound(*r)
                for r in self.db.execute(
                    "SELECT * FROM outbound WHERE state IN (?, ?) AND next_attempt <= ? "
                    "AND (node IS NULL OR node = ? OR lease_until IS NULL OR lease_until < ?) "
                    f"ORDER BY next_attempt LIMIT ?{skip}",
                    (QUEUED, RETRYING, now, self.node, clock, limit),
                )
            ]
            for item in rows:
                self.db.execute(
                    "UPDATE outbound SET node = ?, lease_until = ? WHERE id = ?",
                    (self.node, clock + self.lease, item.id),
                )
        return rows

    def next_due_time(self) -> float | None:
        """When the next delivery this node may claim is due (a claim held by another live
        node counts from the end of its lease)."""
        row = self.db.execute(
            "SELECT MIN(CASE WHEN node IS NULL OR node = ? OR lease_until IS NULL "
            "OR lease_until < next_attempt THEN next_attempt ELSE lease_until END) "
            "FROM outbound WHERE state IN (?, ?)",
            (self.node, QUEUED, RETRYING),
        ).fetchone()
        return row[0]

    def outbound_for(self, msg_id: str) -> list[Outbound]:
        rows = self.db.execute("SELECT * FROM outbound WHERE message_id = ? ORDER BY id", (msg_id,))
        return [Outbound(*r) for r in rows]

    def delivered(self, item: Outbound, duration_ms: float | None = None) -> None:
        now = time.time()
        with self._tx():
            self._delivery_state(item.id, SENT)
            self.db.execute(
                "UPDATE outbound SET state = ?, attempts = attempts + 1, sent_at = ?, "
                "last_error = NULL, lease_until = NULL WHERE id = ?",
                (SENT, now, item.id),
            )
            msg = self._row(item.message_id)
            self._transition(
                msg,
                msg["state"],
                destination=item.destination,
                outcome=SENT,
                duration_ms=duration_ms,
            )
            self._emit("delivered", item=item, ori=msg.get("ori"), tcn=msg.get("tcn"))

    def delivery_failed(self, item: Outbound, error: str, *, retry_at: float | None) -> None:
        with self._tx():
            state = RETRYING if retry_at is not None else FAILED
            self._delivery_state(item.id, state)
            self.db.execute(
                "UPDATE outbound SET state = ?, attempts = attempts + 1, next_attempt = ?, "
                "last_error = ?, lease_until = NULL WHERE id = ?",
                (state, retry_at or time.time(), error[:500], item.id),
            )
            msg = self._row(item.message_id)
            self._transition(
                msg, msg["state"], destination=item.destination, outcome=f"{state}: {error[:200]}"
            )
            self._emit(
                "delivery_failed",
                item=item,
                state=state,
                error=error,
                ori=msg.get("ori"),
                tcn=msg.get("tcn"),
            )

    def _delivery_state(self, item_id: int, to_state: str) -> None:
        row = self.db.execute("SELECT state FROM outbound WHERE id = ?", (item_id,)).fetchone()
        check_delivery(item_id, row[0] if row else None, to_state)


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT (the commit is the fsync point in WAL + synchronous=FULL);
    on PostgreSQL BEGIN with the journal's write lock (:func:`gateway.store.db.begin`).

    Routing-log lines of the transaction are written only once it has committed.
    """

    def __init__(self, journal: Journal):
        self.journal = journal
        self.outer = False

    def __enter__(self):
        db = self.journal.db
        if not db.in_transaction:
            database.begin(db)
            self.outer = True
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.outer:
            self.journal.db.execute("ROLLBACK" if exc_type else "COMMIT")
            self.journal._committed(exc_type is None)
        return False


def _payload_aad(digest: str) -> bytes:
    return f"payload:{digest}".encode()


def _summary_aad(msg_id: str) -> bytes:
    return f"summary:{msg_id}".encode()


def _meta_in(value, dialect: str):
    """A meta value as stored: PostgreSQL keeps meta values as text (bytes in base64)."""
    if dialect != "postgresql":
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return "base64:" + base64.b64encode(bytes(value)).decode()
    return str(value)


def _meta_out(value):
    if isinstance(value, str) and value.startswith("base64:"):
        return base64.b64decode(value[7:])
    return value


def _text(value) -> str:
    return (
        bytes(value).decode() if isinstance(value, bytes | bytearray | memoryview) else str(value)
    )


def _blob(value) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def _sidecars(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def _lock(path: Path, mode: str) -> int | None:
    """flock the journal's lock file: shared for the daemon and tools, exclusive for rotation."""
    if mode == "none":
        return None
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(str(lock_path), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if mode == "exclusive" else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        if mode == "exclusive":
            raise JournalLocked(
                f"{path} is in use (is the gateway running? stop it first)"
            ) from None
        raise JournalLocked(f"{path} is being re-keyed (ebts-gateway keys rotate)") from None
    return fd


# -- the message browser's query (admin API) --------------------------------------------------
STATES = (
    RECEIVED,
    STORED,
    DECODED,
    VALIDATED,
    REJECTED,
    SEARCHED,
    ROUTED,
    RESPONDED,
    DUPLICATE,
    UNREADABLE,
)
# The validation verdict is never a final state: a message "is" VALIDATED or REJECTED when it
# passed through that state (the transitions), whatever state it is in now.
VERDICTS = frozenset({VALIDATED, REJECTED})
# "refused" is no outcome of a message: a refused submission is not stored (audit trail only)
OUTCOMES = ("sre_hit", "sre_no_hit", "errt", "duplicate", "rejected_no_answer", "undeliverable")
_PASSED = "id IN (SELECT message_id FROM transitions WHERE to_state = ?)"
# The search summary is sealed (encryption at rest): the FBI verdict is read from the SEARCHED
# transition to FBI, whose outcome is "hit" or "no hit" (routing.processing).
_FBI_HIT = (
    "id IN (SELECT message_id FROM transitions WHERE to_state = 'SEARCHED' "
    "AND destination = 'FBI' AND outcome LIKE 'hit%')"
)
_OUTCOME_SQL = {
    "sre_hit": f"response_tot = 'SRE' AND duplicate_of IS NULL AND {_FBI_HIT}",
    "sre_no_hit": f"response_tot = 'SRE' AND duplicate_of IS NULL AND NOT ({_FBI_HIT})",
    "errt": "response_tot LIKE 'ERR%' AND duplicate_of IS NULL",
    "duplicate": "duplicate_of IS NOT NULL",
    # rejected and not answered: nothing went back (e.g. an IAR that does not parse)
    "rejected_no_answer": _PASSED.replace("?", "'REJECTED'") + " AND response IS NULL",
    # an answer that could not be delivered: a destination FAILED, or none was registered
    "undeliverable": "response IS NOT NULL AND (id IN (SELECT message_id FROM outbound "
    "WHERE state = 'FAILED') OR id NOT IN (SELECT message_id FROM outbound))",
}


@dataclass(frozen=True)
class MessageQuery:
    """Filters of the message browser; every one optional, all of them combined (AND).

    ``tcn``, ``ori``: case-insensitive prefixes; ``tot``: the submission's TOT (any case);
    ``state``: the current state, or for VALIDATED / REJECTED the validation verdict;
    ``since`` (inclusive), ``until`` (exclusive): received_at bounds (epoch seconds);
    ``outcome``: one of :data:`OUTCOMES`.
    """

    state: str | None = None
    tcn: str | None = None
    ori: str | None = None
    tot: str | None = None
    since: float | None = None
    until: float | None = None
    outcome: str | None = None


def _like_prefix(value: str) -> str:
    escaped = value.upper().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _message_filter(query: MessageQuery, dialect: str = "sqlite") -> tuple[list[str], list]:
    where: list[str] = []
    args: list = []
    if query.state:
        state = query.state.upper()
        if state not in STATES:
            raise ValueError(f"unknown state {query.state!r}")
        if state in VERDICTS:
            where.append(_PASSED)
        else:
            where.append("state = ?")
        args.append(state)
    for column in ("tcn", "ori"):
        value = getattr(query, column)
        if value:
            prefix = value.upper()
            if dialect == "sqlite" and prefix and ord(prefix[-1]) < 0x10FFFF:
                # the same prefix as a range of the index on UPPER(column) (BINARY order);
                # the LIKE below keeps the answer exact
                where.append(f"UPPER({column}) >= ? AND UPPER({column}) < ?")
                args.extend([prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)])
            where.append(f"UPPER({column}) LIKE ? ESCAPE '\\'")
            args.append(_like_prefix(value))
    if query.tot:
        where.append("UPPER(tot) = ?")
        args.append(query.tot.upper())
    if query.since is not None:
        where.append("received_at >= ?")
        args.append(query.since)
    if query.until is not None:
        where.append("received_at < ?")
        args.append(query.until)
    if query.outcome:
        outcome = query.outcome.lower()
        if outcome not in _OUTCOME_SQL:
            raise ValueError(f"unknown outcome {query.outcome!r}")
        where.append(f"({_OUTCOME_SQL[outcome]})")
    return where, args


def iso_utc(at: float | None) -> str | None:
    """An epoch time as ISO 8601 UTC with milliseconds (the routing log's form), or None."""
    return None if at is None else _iso(at)


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}Z"


def _fsync_wal(path: Path) -> None:
    """fsync the journal's WAL file (what a ``synchronous=FULL`` commit would, minus the lock)."""
    try:
        fd = os.open(str(path.with_name(path.name + "-wal")), os.O_RDONLY)
    except FileNotFoundError:  # no WAL: everything is in the database file already
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """fsync a directory so a newly created file's entry is durable."""
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
