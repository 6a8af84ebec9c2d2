"""The two databases under the store: SQLite (embedded, one node) and PostgreSQL (several nodes).

The store's modules write one SQL text for both: ``?`` placeholders, ``INSERT ... ON CONFLICT``
upserts, no SQLite-only functions.  :func:`connect` opens either; the PostgreSQL connection is
wrapped by :class:`PgConnection`, which turns ``?`` into psycopg's ``%s`` and the DDL types into
PostgreSQL's, and offers what the store uses of :class:`sqlite3.Connection` (``execute``,
``executescript``, ``in_transaction``).  Dialect-specific statements (locks, claims, triggers,
LISTEN/NOTIFY) are chosen by :func:`dialect`.

Write transactions: SQLite's ``BEGIN IMMEDIATE`` takes the database's write lock; on PostgreSQL
:func:`begin` takes a transaction-level advisory lock, so the journal's transactions (a few
milliseconds each: the hash chain of the audit trail, the durable counters, the duplicate check on
(ORI, TCN)) are serialised across nodes exactly as they are on one.  Work is still shared by
claims (``FOR UPDATE SKIP LOCKED`` and a lease) and readers never wait.
"""

from __future__ import annotations

import re
import sqlite3
from functools import lru_cache
from pathlib import Path
from typing import Any

PG_PREFIXES = ("postgresql://", "postgres://")
WRITE_LOCK = 0x45425453  # "EBTS": the advisory lock of the journal's write transactions
CHANNEL = "ebts_gateway"  # LISTEN/NOTIFY channel: new work, deliveries due


class StoreUnavailable(OSError):
    """The database cannot be reached or opened (the message names the store, not a password)."""


def is_postgres(location: str | Path | None) -> bool:
    return isinstance(location, str) and location.startswith(PG_PREFIXES)


def dialect(db) -> str:
    """``sqlite`` or ``postgresql``."""
    return getattr(db, "dialect", "sqlite")


def safe_url(url: str) -> str:
    """The URL without its password, for logs and errors."""
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", url)


def connect_postgres(url: str, *, autocommit: bool = True) -> PgConnection:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - the extra is not installed
        raise StoreUnavailable(
            "[store] url names PostgreSQL but psycopg is not installed "
            "(pip install 'ebts-gateway[postgres]')"
        ) from None
    try:
        conn = psycopg.connect(url, autocommit=autocommit, connect_timeout=10)
    except psycopg.Error as exc:
        raise StoreUnavailable(
            f"cannot connect to {safe_url(url)}: {str(exc).strip()[:200]}"
        ) from None
    _numbers_as_python(conn)
    return PgConnection(conn)


def _numbers_as_python(conn) -> None:
    """NUMERIC (what SUM of BIGINT gives) as int or float, as SQLite answers, not Decimal."""
    from psycopg.adapt import Loader

    class NumericLoader(Loader):
        def load(self, data):
            text = bytes(data).decode()
            try:
                return int(text)
            except ValueError:
                return float(text)

    conn.adapters.register_loader("numeric", NumericLoader)


class PgConnection:
    """A psycopg 3 connection that speaks the store's SQL (see the module's docstring)."""

    dialect = "postgresql"

    def __init__(self, conn):
        self.conn = conn

    def execute(self, sql: str, params: Any = ()):
        cur = self.conn.cursor()
        cur.execute(_pg_sql(sql), tuple(params))
        return cur

    def executemany(self, sql: str, rows):
        cur = self.conn.cursor()
        cur.executemany(_pg_sql(sql), [tuple(r) for r in rows])
        return cur

    def executescript(self, script: str) -> None:
        for statement in _statements(script):
            self.conn.execute(_pg_ddl(statement))

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self.conn.info.transaction_status != TransactionStatus.IDLE

    def notify(self, payload: str = "") -> None:
        """NOTIFY the gateway's channel (delivered at commit when inside a transaction)."""
        self.conn.execute(f"NOTIFY {CHANNEL}, '{payload.replace(chr(39), '')[:100]}'")

    def close(self) -> None:
        self.conn.close()


def listen(url: str, stopping, notified, lost) -> None:
    """LISTEN on :data:`CHANNEL` until ``stopping`` (a threading.Event) is set, calling
    ``notified()`` per notification and ``lost(exc)`` when the connection drops (then again
    after 2 s).  Runs in a thread of its own, on a connection of its own."""
    import psycopg

    while not stopping.is_set():
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
                conn.execute(f"LISTEN {CHANNEL}")
                while not stopping.is_set():
                    for _ in conn.notifies(timeout=1.0, stop_after=1):
                        notified()
        except Exception as exc:  # noqa: BLE001 - reconnect; the claim loop's timer still polls
            if stopping.is_set():
                return
            lost(exc)
            stopping.wait(2.0)


def begin(db) -> None:
    """Start a write transaction (see the module's docstring)."""
    if dialect(db) == "postgresql":
        db.execute("BEGIN")
        db.execute("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK,))
    else:
        db.execute("BEGIN IMMEDIATE")


def columns(db, table: str) -> set[str]:
    """The column names of ``table`` (empty when it does not exist)."""
    if dialect(db) == "postgresql":
        rows = db.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ?",
            (table,),
        )
        return {r[0] for r in rows}
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


@lru_cache(maxsize=2048)
def _pg_sql(sql: str) -> str:
    """``?`` -> ``%s`` outside quoted literals; a literal ``%`` -> ``%%``; DDL types."""
    sql = _pg_ddl(sql)
    out = []
    quote = None
    for ch in sql:
        if quote:
            out.append("%%" if ch == "%" else ch)
            if ch == quote:
                quote = None
            continue
        if ch in ("'", '"'):
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


_DDL = [
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b", re.I), "BIGSERIAL PRIMARY KEY"),
    (re.compile(r"\bBLOB\b", re.I), "BYTEA"),
    (re.compile(r"\bREAL\b", re.I), "DOUBLE PRECISION"),
    (re.compile(r"\bINTEGER\b", re.I), "BIGINT"),
]


def _pg_ddl(statement: str) -> str:
    # meta values are text on PostgreSQL (bytes in base64: gateway.store.journal._meta_in)
    statement = statement.replace(
        "meta (name TEXT PRIMARY KEY, value BLOB)", "meta (name TEXT PRIMARY KEY, value TEXT)"
    )
    # a message's search summary is sealed (bytes) in a column SQLite declared TEXT
    statement = statement.replace("    summary TEXT,", "    summary BYTEA,")
    if re.match(r"\s*(CREATE\s+TABLE|ALTER\s+TABLE)", statement, re.I):
        for pattern, replacement in _DDL:
            statement = pattern.sub(replacement, statement)
    return statement


def _statements(script: str):
    """The statements of a script without triggers (those are written per dialect)."""
    for part in script.split(";"):
        if part.strip():
            yield part.strip()


def connect_sqlite(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)


def connect_sqlite_readonly(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)


def database_errors() -> tuple[type[BaseException], ...]:
    """Errors of either database (a transport maps them to a temporary failure)."""
    errors: list[type[BaseException]] = [sqlite3.Error]
    try:
        import psycopg

        errors.append(psycopg.Error)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)
