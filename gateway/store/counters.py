"""The console's counters, kept per write so that no Overview needs a scan of the journal.

Two tables of the journal's database, added to inside the transaction of the change they
count (a journal event, :meth:`Journal.subscribe`), with an atomic upsert
(``INSERT ... ON CONFLICT (...) DO UPDATE SET n = t.n + excluded.n``):

- ``console_counts (hour, agency, tot, outcome, n)``: answered messages per UTC hour of their
  receipt, agency (the ORI of 1.008, else the registered agency), TOT and outcome; beside them,
  in the same table, ``undeliverable`` (messages whose answer a destination gave up on) and
  ``refused`` (intake refusals, per hour of the refusal, under the ORI or identity refused).
  Messages not answered yet are not counted here: they are the processing queue, read live
  through the state index (:func:`last_day`).
- ``console_series (step, start, bin, n)``: answers per bucket of the time they were answered
  (``step`` 60 s for the hour's chart, 900 s for the day's), as a histogram of their latency
  (receipt to answer) in bins of 1/8 octave (:func:`latency_bin`, about 4 % wide), so p50 and
  p99 come out within 4.5 % without keeping each latency; ``bin`` -1 counts the bucket's errors
  (ERRT, or an answer a destination gave up on).

Why increments in the change's transaction and not a watermark: a crash (kill -9 at any point)
loses the change and its increments together or keeps both, so the counters stay exact without
a recovery step; each gateway node sharing one database adds its own increments atomically
(PostgreSQL locks the conflicting row; SQLite's ``BEGIN IMMEDIATE`` serializes writers), so the
nodes' writes add up.  A watermark over a sequence column would need every earlier id committed
before a later one becomes visible, which concurrent PostgreSQL transactions do not promise.

:func:`recount` is the reference: the same figures from a full scan of the journal.  It builds
the tables once for a journal made before them (at its first open), and the tests compare the
counters with it after random traffic, crashes and concurrent writers.  Rows older than
:data:`KEEP_S` are dropped now and then (no window reaches them).

No personal field is read: ORI, TOT, states and times only.  The SQL is portable (SQLite and
PostgreSQL once ``?`` becomes ``%s``); time buckets are computed in Python.
"""

from __future__ import annotations

import json
import math
import time

from .states import TERMINAL, Delivery, State

# The state table's names as plain text (the SQL parameters and the rows read back)
_TERMINAL = tuple(sorted(str(s) for s in TERMINAL))
_FAILED = str(Delivery.FAILED)
NOT_ANSWERED = tuple(str(s) for s in State if s not in TERMINAL)

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS console_counts (
    hour BIGINT NOT NULL,
    agency TEXT NOT NULL,
    tot TEXT NOT NULL,
    outcome TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (hour, agency, tot, outcome)
)""",
    """CREATE TABLE IF NOT EXISTS console_series (
    step INTEGER NOT NULL,
    start BIGINT NOT NULL,
    bin INTEGER NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (step, start, bin)
)""",
)
VERSION = "1"  # meta 'console_counters': the tables were built (a change rebuilds them)
HOUR = 3600
STEPS = (60, 900)  # the hour chart's buckets and the day chart's
ERRORS = -1  # the bin holding a bucket's errors
FLOOR_S = 0.001  # latencies below 1 ms share bin 0
PER_OCTAVE = 8
MAX_BIN = 1 + PER_OCTAVE * 40  # 2^40 ms: anything slower shares the last bin
KEEP_S = {"counts": 8 * 86400, 60: 3 * 3600, 900: 3 * 86400}
PRUNE_EVERY_S = 600.0

# Outcomes of an answered message (the first that applies), as in gateway.store.metrics.
ANSWERED_OUTCOMES = ("duplicate", "failed", "errt", "sre_hit", "sre_no_hit", "other")
_UPSERT_COUNT = (
    "INSERT INTO console_counts (hour, agency, tot, outcome, n) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (hour, agency, tot, outcome) DO UPDATE SET n = console_counts.n + excluded.n"
)
_UPSERT_SERIES = (
    "INSERT INTO console_series (step, start, bin, n) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (step, start, bin) DO UPDATE SET n = console_series.n + excluded.n"
)
_HIT = (
    "SELECT 1 FROM transitions WHERE message_id = ? AND to_state = 'SEARCHED' "
    "AND destination = 'FBI' AND outcome LIKE 'hit%'"
)
_CRASH = (
    "SELECT 1 FROM transitions WHERE message_id = ? AND to_state = 'REJECTED' "
    "AND outcome = 'WORKER_CRASH'"
)
_ROW = (
    "SELECT received_at, updated_at, COALESCE(ori, agency, '-'), COALESCE(tot, '-'), state, "
    "duplicate_of, response_tot FROM messages WHERE id = ?"
)


def latency_bin(seconds: float) -> int:
    """The histogram bin of a latency: 0 below 1 ms, then 8 per doubling."""
    if not seconds >= FLOOR_S:  # also NaN
        return 0
    return min(MAX_BIN, 1 + int(math.log2(seconds / FLOOR_S) * PER_OCTAVE))


def bin_value(b: int) -> float:
    """The latency a bin stands for: the geometric middle of its bounds (seconds)."""
    if b <= 0:
        return FLOOR_S / 2
    return FLOOR_S * 2 ** ((b - 0.5) / PER_OCTAVE)


def outcome(duplicate_of, response_tot, hit: bool, crash: bool) -> str:
    """The outcome of an answered message (gateway.store.metrics.OUTCOME_SQL's rule)."""
    if duplicate_of is not None:
        return "duplicate"
    if response_tot is not None and response_tot.startswith("ERR"):
        return "failed" if crash else "errt"
    if response_tot == "SRE":
        return "sre_hit" if hit else "sre_no_hit"
    return "other"


def _is_errt(response_tot) -> bool:
    return response_tot is not None and response_tot.startswith("ERR")


def _floor(at: float, step: int) -> int:
    return int(math.floor(at / step)) * step


def _answer_rows(received: float, answered: float, errt: bool, undeliverable: bool):
    """(step, start, bin, 1) rows of one answer in the series."""
    k = latency_bin(max(0.0, answered - received))
    for step in STEPS:
        start = _floor(answered, step)
        yield step, start, k, 1
        if errt or undeliverable:
            yield step, start, ERRORS, 1


def refusal_key(fields: dict) -> str:
    """Whom a refusal is counted under: its ORI, else the identity refused, else '-'."""
    for name in ("ori", "identity"):
        if fields.get(name) is not None:
            return str(fields[name])
    return "-"


class Counters:
    """Keeps the counters of one journal: builds them when missing, then adds each change."""

    def __init__(self, journal, *, clock=time.time):
        self.journal = journal
        self.db = journal.db
        self.clock = clock
        self._pruned = 0.0
        for sql in SCHEMA:
            self.db.execute(sql)
        if journal.meta("console_counters") != VERSION:
            with journal.transaction():
                # checked again inside the write lock: another node may have built them
                if journal.meta("console_counters") != VERSION:
                    rebuild(self.db)
                    journal.set_meta("console_counters", VERSION)
        journal.subscribe(self.on_event)

    def on_event(self, event: str, fields: dict) -> None:
        """A journal event, inside its transaction: add what it changes."""
        if event == "responded":
            self.responded(fields["message_id"])
        elif event == "delivery_failed" and fields.get("state") == _FAILED:
            self.undeliverable(fields["item"].message_id)
        elif event == "submission_refused":
            self.db.execute(
                _UPSERT_COUNT, (_floor(fields["at"], HOUR), refusal_key(fields), "-", "refused", 1)
            )

    def responded(self, msg_id: str) -> None:
        row = self.db.execute(_ROW, (msg_id,)).fetchone()
        if row is None or row[4] not in _TERMINAL:
            return
        received, answered, agency, tot, _state, duplicate_of, response_tot = row
        hit = self.db.execute(_HIT, (msg_id,)).fetchone() is not None
        crash = self.db.execute(_CRASH, (msg_id,)).fetchone() is not None
        failed = self._failed(msg_id)
        key = (_floor(received, HOUR), agency, tot)
        self.db.execute(_UPSERT_COUNT, (*key, outcome(duplicate_of, response_tot, hit, crash), 1))
        if failed:  # not on the gateway's path (deliveries are queued by the answer)
            self.db.execute(_UPSERT_COUNT, (*key, "undeliverable", 1))
        self.db.executemany(
            _UPSERT_SERIES, _answer_rows(received, answered, _is_errt(response_tot), failed > 0)
        )
        self._prune()

    def undeliverable(self, msg_id: str) -> None:
        """A destination gave up: the message is undeliverable, once (its first FAILED)."""
        # Take the message's row lock first (a write that changes nothing): two nodes giving
        # up on two destinations of one message at once then count in turn, the second one
        # seeing the first's FAILED (PostgreSQL; SQLite has one writer anyway).
        self.db.execute("UPDATE messages SET updated_at = updated_at WHERE id = ?", (msg_id,))
        if self._failed(msg_id) != 1:
            return
        row = self.db.execute(_ROW, (msg_id,)).fetchone()
        if row is None:
            return
        received, answered, agency, tot, state, _dup, response_tot = row
        self.db.execute(_UPSERT_COUNT, (_floor(received, HOUR), agency, tot, "undeliverable", 1))
        if state in _TERMINAL and not _is_errt(response_tot):  # an error of its answer's bucket
            for step in STEPS:
                self.db.execute(_UPSERT_SERIES, (step, _floor(answered, step), ERRORS, 1))

    def _failed(self, msg_id: str) -> int:
        (n,) = self.db.execute(
            "SELECT COUNT(*) FROM outbound WHERE message_id = ? AND state = ?", (msg_id, _FAILED)
        ).fetchone()
        return n

    def _prune(self) -> None:
        now = self.clock()
        if now - self._pruned < PRUNE_EVERY_S:
            return
        self._pruned = now
        prune(self.db, now)


def prune(db, now: float) -> None:
    """Drop the rows no window reaches any more (idempotent: any node may do it)."""
    db.execute("DELETE FROM console_counts WHERE hour < ?", (now - KEEP_S["counts"],))
    for step in STEPS:
        db.execute(
            "DELETE FROM console_series WHERE step = ? AND start < ?", (step, now - KEEP_S[step])
        )


# -- the reference: the same figures from a full scan ------------------------------------------
def recount(db) -> tuple[dict, dict]:
    """``({(hour, agency, tot, outcome): n}, {(step, start, bin): n})`` from a full scan of the
    messages, their FBI verdicts, crashes and failed deliveries, and the audit trail's
    refusals: what the counters must hold."""
    hits = {
        r[0]
        for r in db.execute(
            "SELECT message_id FROM transitions WHERE to_state = 'SEARCHED' "
            "AND destination = 'FBI' AND outcome LIKE 'hit%'"
        )
    }
    crashes = {
        r[0]
        for r in db.execute(
            "SELECT message_id FROM transitions WHERE to_state = 'REJECTED' "
            "AND outcome = 'WORKER_CRASH'"
        )
    }
    failed = {
        r[0]
        for r in db.execute("SELECT DISTINCT message_id FROM outbound WHERE state = ?", (_FAILED,))
    }
    counts: dict[tuple, int] = {}
    series: dict[tuple, int] = {}

    def add(table, key, n=1):
        table[key] = table.get(key, 0) + n

    rows = db.execute(
        "SELECT received_at, updated_at, COALESCE(ori, agency, '-'), COALESCE(tot, '-'), state, "
        "duplicate_of, response_tot, id FROM messages"
    )
    for received, answered, agency, tot, state, duplicate_of, response_tot, msg_id in rows:
        key = (_floor(received, HOUR), agency, tot)
        undeliverable = msg_id in failed
        if undeliverable:
            add(counts, (*key, "undeliverable"))
        if state not in _TERMINAL:
            continue
        add(counts, (*key, outcome(duplicate_of, response_tot, msg_id in hits, msg_id in crashes)))
        for step, start, k, n in _answer_rows(
            received, answered, _is_errt(response_tot), undeliverable
        ):
            add(series, (step, start, k), n)
    from .db import columns

    refusals = []
    if columns(db, "audit"):  # else a journal without its audit trail yet
        refusals = db.execute(
            "SELECT at, fields FROM audit WHERE event = 'submission.refused'"
        ).fetchall()
    for at, body in refusals:
        add(counts, (_floor(at, HOUR), refusal_key(json.loads(body)), "-", "refused"))
    return counts, series


def stored(db) -> tuple[dict, dict]:
    """What the counters hold, in :func:`recount`'s shape (rows of 0 left out)."""
    counts = {
        (h, a, t, o): n
        for h, a, t, o, n in db.execute(
            "SELECT hour, agency, tot, outcome, n FROM console_counts WHERE n != 0"
        )
    }
    series = {
        (s, b0, k): n
        for s, b0, k, n in db.execute("SELECT step, start, bin, n FROM console_series WHERE n != 0")
    }
    return counts, series


def rebuild(db) -> None:
    """Replace the counters by a recount (inside the caller's transaction)."""
    counts, series = recount(db)
    db.execute("DELETE FROM console_counts")
    db.execute("DELETE FROM console_series")
    db.executemany(
        "INSERT INTO console_counts (hour, agency, tot, outcome, n) VALUES (?, ?, ?, ?, ?)",
        [(*k, n) for k, n in counts.items()],
    )
    db.executemany(
        "INSERT INTO console_series (step, start, bin, n) VALUES (?, ?, ?, ?)",
        [(*k, n) for k, n in series.items()],
    )
