"""Read-only figures over the journal for the admin console and the alert checker.

Everything here is a query of the journal's own database (``journal.db``) that changes nothing
but the indexes it creates once (:func:`ensure_indexes`): counts per agency, TOT and outcome,
the queues and their oldest waiting item, time series of throughput, latency and error rate,
and the facts alerts watch (failed deliveries, refusals per agency).  No personal field is read:
only the clear metadata columns (ORI, TCN, TOT, states, times, destinations) and the audit
trail's refusal records; sealed blobs (payloads, summaries) are never opened here.

The Overview reads the per-write counters of :mod:`gateway.store.counters`
(:func:`overview`: :func:`last_day`, :func:`counted_series`); :func:`counts` and
:func:`series` compute the same figures from a scan of the journal and are the reference the
tests hold the counters to.

Outcomes of a message (the console's words): ``sre_hit`` (an SRE after an FBI search that hit:
the SEARCHED transition to FBI says "hit"), ``sre_no_hit``, ``errt``, ``duplicate``,
``refused`` (refused at intake: nothing is stored but an audit record, so these are counted
from the trail, per ORI; they are not messages), ``undeliverable`` (a destination FAILED),
``failed`` (a worker died twice on it: WORKER_CRASH), ``pending`` (not answered yet),
``other`` (answered without SRE or ERRT: a CNA, an IAR).  The admin API's ``outcome`` filter
uses the same words for the messages it can list, and ``rejected_no_answer`` for a message
rejected with nothing sent back (an IAR that does not parse): that one is not "refused".
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from . import counters
from .journal import FAILED, QUEUED, RETRYING, TERMINAL

OUTCOMES = (
    "sre_hit",
    "sre_no_hit",
    "errt",
    "duplicate",
    "refused",
    "undeliverable",
    "failed",
    "pending",
    "other",
)
INDEXES = (
    "CREATE INDEX IF NOT EXISTS messages_received ON messages(received_at)",
    # the FBI verdict of a message (hit / no hit) is found through this partial index
    "CREATE INDEX IF NOT EXISTS transitions_searched ON transitions(message_id, outcome) "
    "WHERE to_state = 'SEARCHED' AND destination = 'FBI'",
    # and the (rare) worker crashes through this one
    "CREATE INDEX IF NOT EXISTS transitions_crash ON transitions(message_id) "
    "WHERE outcome = 'WORKER_CRASH'",
)
MAX_GROUPS = 200  # agencies or TOTs listed (the rest summed as "(others)")
_TERMINAL = tuple(sorted(TERMINAL))
_HIT = (
    "EXISTS (SELECT 1 FROM transitions t WHERE t.message_id = m.id AND t.to_state = 'SEARCHED' "
    "AND t.destination = 'FBI' AND t.outcome LIKE 'hit%')"
)
_CRASH = (
    "EXISTS (SELECT 1 FROM transitions t WHERE t.message_id = m.id AND t.to_state = 'REJECTED' "
    "AND t.outcome = 'WORKER_CRASH')"
)
# One outcome per message (the first that applies); "undeliverable" is counted apart since
# an ERRT or an SRE may also be undeliverable.
OUTCOME_SQL = f"""CASE
 WHEN m.state NOT IN ('{_TERMINAL[0]}', '{_TERMINAL[1]}') THEN 'pending'
 WHEN m.duplicate_of IS NOT NULL THEN 'duplicate'
 WHEN m.response_tot LIKE 'ERR%' AND {_CRASH} THEN 'failed'
 WHEN m.response_tot LIKE 'ERR%' THEN 'errt'
 WHEN m.response_tot = 'SRE' AND {_HIT} THEN 'sre_hit'
 WHEN m.response_tot = 'SRE' THEN 'sre_no_hit'
 ELSE 'other' END"""


_ANSWERED = f"m.state IN ('{_TERMINAL[0]}', '{_TERMINAL[1]}')"
_WAITING = ", ".join("?" for _ in counters.NOT_ANSWERED)  # marks for the unanswered states
_ANSWERED_NO_INDEX = _ANSWERED.replace("m.state", "(m.state || '')")  # not by the state index
# The same outcomes without a subquery per row: hits and crashes are counted apart (one join
# over their partial index each) and moved out of sre_no_hit and errt.
_COARSE_SQL = f"""CASE
 WHEN NOT {_ANSWERED} THEN 'pending'
 WHEN m.duplicate_of IS NOT NULL THEN 'duplicate'
 WHEN m.response_tot LIKE 'ERR%' THEN 'errt'
 WHEN m.response_tot = 'SRE' THEN 'sre_no_hit'
 ELSE 'other' END"""


def ensure_indexes(journal) -> None:
    """The indexes the console's queries need (idempotent; a few seconds once on 10^5 rows)."""
    for sql in INDEXES:
        journal.db.execute(sql)


@dataclass(frozen=True)
class Window:
    """A time series window: ``seconds`` long in ``buckets`` equal steps, ending now."""

    name: str
    seconds: int
    buckets: int

    @property
    def step(self) -> float:
        return self.seconds / self.buckets


WINDOWS = {"hour": Window("hour", 3600, 60), "day": Window("day", 86400, 96)}


def _group_key(column: str) -> str:
    return f"COALESCE(m.{column}, '-')"


def counts(db, *, since: float | None = None) -> dict:
    """Messages received since ``since`` (all when None) per agency, per TOT and per outcome,
    with the undeliverable and refused counts per agency.  An agency is its ORI (1.008, the
    Originating Agency Identifier); a message not decoded yet counts under the registered
    agency it came from."""
    where, args = "", []
    if since is not None:
        where, args = " WHERE m.received_at >= ?", [since]
    group = f"COALESCE(m.ori, m.agency, '-'), {_group_key('tot')}"
    rows = db.execute(
        f"SELECT {group}, {_COARSE_SQL}, COUNT(*) FROM messages m{where} GROUP BY 1, 2, 3", args
    ).fetchall()
    also = " AND m.received_at >= ?" if since is not None else ""
    moves = []  # (agency, TOT, from, to, count): hits out of sre_no_hit, crashes out of errt
    for outcome, was, condition in (
        (
            "sre_hit",
            "sre_no_hit",
            "t.to_state = 'SEARCHED' AND t.destination = 'FBI' AND t.outcome LIKE 'hit%' "
            "AND m.response_tot = 'SRE'",
        ),
        (
            "failed",
            "errt",
            "t.outcome = 'WORKER_CRASH' AND t.to_state = 'REJECTED' AND m.response_tot LIKE 'ERR%'",
        ),
    ):
        for agency, tot, n in db.execute(
            f"SELECT {group}, COUNT(DISTINCT m.id) FROM transitions t "
            f"JOIN messages m ON m.id = t.message_id WHERE {condition} "
            # driven by the partial index of transitions, not the state or time index: the
            # "|| ''" and "+ 0" keep the planner off those (portable, unlike a unary "+")
            f"AND m.duplicate_of IS NULL AND {_ANSWERED_NO_INDEX}"
            f"{also.replace('m.received_at', 'm.received_at + 0')} "
            "GROUP BY 1, 2",
            args,
        ):
            moves.append((agency, tot, was, outcome, n))
    signed = [*rows]
    for agency, tot, was, outcome, n in moves:
        signed += [(agency, tot, was, -n), (agency, tot, outcome, n)]
    undeliverable = dict(
        db.execute(
            "SELECT COALESCE(m.ori, m.agency, '-'), COUNT(DISTINCT m.id) FROM outbound o "
            "JOIN messages m ON m.id = o.message_id WHERE o.state = ?"
            + (" AND m.received_at >= ?" if since is not None else "")
            + " GROUP BY 1",
            [FAILED, *args],
        ).fetchall()
    )
    return _assemble(signed, undeliverable, refusals(db, since=since))


def _assemble(rows, undeliverable: dict[str, int], refused: dict[str, int]) -> dict:
    """The Overview's counts from (agency, TOT, outcome, n) rows (an outcome's n may come in
    several rows, some negative) and the undeliverable and refused counts per agency."""
    by_agency: dict[str, dict[str, int]] = {}
    by_tot: dict[str, int] = {}
    by_outcome = dict.fromkeys(OUTCOMES, 0)
    total = 0
    for agency, tot, outcome, n in rows:
        row = by_agency.setdefault(agency, dict.fromkeys(OUTCOMES, 0) | {"total": 0})
        row[outcome] += n
        row["total"] += n
        by_tot[tot] = by_tot.get(tot, 0) + n
        by_outcome[outcome] += n
        total += n
    for outcome, per_agency in (("undeliverable", undeliverable), ("refused", refused)):
        for agency, n in per_agency.items():
            by_agency.setdefault(agency, dict.fromkeys(OUTCOMES, 0) | {"total": 0})[outcome] = n
            by_outcome[outcome] += n
    by_tot = {tot: n for tot, n in by_tot.items() if n}
    agencies = sorted(by_agency.items(), key=lambda kv: (-kv[1]["total"], kv[0]))
    tots = sorted(by_tot.items(), key=lambda kv: (-kv[1], kv[0]))
    return {
        "total": total,
        "by_outcome": by_outcome,
        "by_agency": dict(_capped(agencies, lambda rows: _sum_rows(rows))),
        "by_tot": dict(_capped(tots, lambda rows: sum(n for _, n in rows))),
    }


def day_start(now: float) -> int:
    """Where the Overview's "last day" begins: the start of the UTC hour 23 hours before the
    current one (the counters are per hour of receipt), so it spans 23 to 24 hours."""
    return int(now // counters.HOUR) * counters.HOUR - 23 * counters.HOUR


def last_day(db, now: float | None = None) -> dict:
    """:func:`counts` since :func:`day_start` from the counters (gateway.store.counters):
    answered messages, undeliverable ones and refusals summed per hour, the messages not
    answered yet read live (the processing queue, through the state index).  Equal to
    ``counts(db, since=day_start(now))``, the reference, without its scan."""
    now = time.time() if now is None else now
    since = day_start(now)
    rows: list[tuple] = []
    undeliverable: dict[str, int] = {}
    refused: dict[str, int] = {}
    for agency, tot, outcome, n in db.execute(
        "SELECT agency, tot, outcome, SUM(n) FROM console_counts WHERE hour >= ? "
        "GROUP BY agency, tot, outcome",
        (since,),
    ):
        if outcome == "undeliverable":
            undeliverable[agency] = undeliverable.get(agency, 0) + n
        elif outcome == "refused":
            refused[agency] = refused.get(agency, 0) + n
        else:
            rows.append((agency, tot, outcome, n))
    rows += [
        (agency, tot, "pending", n)
        for agency, tot, n in db.execute(
            "SELECT COALESCE(ori, agency, '-'), COALESCE(tot, '-'), COUNT(*) FROM messages "
            f"WHERE state IN ({_WAITING}) AND received_at >= ? GROUP BY 1, 2",
            (*counters.NOT_ANSWERED, since),
        )
    ]
    undeliverable = {a: n for a, n in undeliverable.items() if n}
    refused = {a: n for a, n in refused.items() if n}
    return _assemble(rows, undeliverable, refused) | {"since": since}


def _capped(items, summed):
    if len(items) <= MAX_GROUPS:
        return items
    return [*items[:MAX_GROUPS], ("(others)", summed(items[MAX_GROUPS:]))]


def _sum_rows(rows) -> dict:
    out: dict[str, int] = {}
    for _, row in rows:
        for key, n in row.items():
            out[key] = out.get(key, 0) + n
    return out


def refusals(db, *, since: float | None = None) -> dict[str, int]:
    """Intake refusals per ORI (the audit trail's ``submission.refused`` records; a refusal
    before any ORI was read, e.g. an unknown certificate, counts under its identity or '-')."""
    sql = "SELECT fields FROM audit WHERE event = 'submission.refused'"
    args: list = []
    if since is not None:
        sql += " AND at >= ?"
        args.append(since)
    try:
        rows = db.execute(sql, args).fetchall()
    except Exception as exc:  # noqa: BLE001 - a journal without an audit table counts none
        if "no such table" in str(exc):
            return {}
        raise
    out: dict[str, int] = {}
    for (body,) in rows:  # the fields are JSON: read here, not with an SQL dialect's function
        key = counters.refusal_key(json.loads(body))
        out[key] = out.get(key, 0) + 1
    return out


def queues(db, now: float | None = None) -> dict:
    """The work waiting: messages not answered yet (per state) and deliveries queued or
    retrying (per kind), each with its count and the age of its oldest item in seconds."""
    now = time.time() if now is None else now
    states = {
        state: {"count": n, "oldest_s": round(now - oldest, 1)}
        for state, n, oldest in db.execute(
            # the states listed (not "NOT IN" the answered ones): seeks in the state index
            f"SELECT state, COUNT(*), MIN(received_at) FROM messages WHERE state IN ({_WAITING}) "
            "GROUP BY state",
            counters.NOT_ANSWERED,
        )
    }
    outbound = {
        kind: {"count": n, "oldest_s": round(now - oldest, 1), "retrying": retrying}
        for kind, n, oldest, retrying in db.execute(
            "SELECT kind, COUNT(*), MIN(created_at), SUM(CASE WHEN state = ? THEN 1 ELSE 0 END) "
            "FROM outbound WHERE state IN (?, ?) GROUP BY kind",
            (RETRYING, QUEUED, RETRYING),
        )
    }
    failed = db.execute("SELECT COUNT(*) FROM outbound WHERE state = ?", (FAILED,)).fetchone()[0]

    def total(group):
        return {
            "count": sum(v["count"] for v in group.values()),
            "oldest_s": max((v["oldest_s"] for v in group.values()), default=None),
        }

    return {
        "processing": total(states) | {"by_state": states},
        "outbound": total(outbound) | {"by_kind": outbound, "failed": failed},
    }


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values.sort()
    k = min(len(values) - 1, max(0, int(round(q * (len(values) - 1)))))
    return values[k]


def series(db, window: Window, now: float | None = None) -> dict:
    """Per bucket of ``window``: answers (throughput per minute), p50 and p99 latency (seconds
    from receipt to answer), and the error rate (ERRT, failures and undeliverable answers over
    answers).  Buckets are by the time of the answer; messages received before the window
    (up to one window length before it) are counted when they were answered in it."""
    now = time.time() if now is None else now
    start = now - window.seconds
    step = window.step
    n = window.buckets
    latencies: list[list[float]] = [[] for _ in range(n)]
    errors = [0] * n
    # the few undeliverable messages as a set (index on outbound state), not a probe per row
    failed = {
        r[0]
        for r in db.execute("SELECT DISTINCT message_id FROM outbound WHERE state = ?", (FAILED,))
    }
    # through the received_at index ("|| ''" keeps the planner off the state index, which
    # would walk every answered message); answers within the window of messages received up to
    # one window before it
    rows = db.execute(
        "SELECT m.id, m.received_at, m.updated_at, m.response_tot LIKE 'ERR%' FROM messages m "
        "WHERE m.received_at >= ? AND m.updated_at >= ? AND (m.state || '') IN (?, ?)",
        (start - window.seconds, start, *_TERMINAL),
    )
    for msg_id, received, answered, errt in rows:
        k = int((answered - start) // step)
        if not 0 <= k < n:
            continue
        latencies[k].append(max(0.0, answered - received))
        if errt or msg_id in failed:
            errors[k] += 1
    per_minute = 60.0 / step
    buckets = []
    for k in range(n):
        values = latencies[k]
        count = len(values)
        buckets.append(
            {
                "start": start + k * step,
                "answered": count,
                "per_minute": round(count * per_minute, 3),
                "p50_s": _percentile(values, 0.50),
                "p99_s": _percentile(values, 0.99),
                "error_rate": round(errors[k] / count, 4) if count else None,
            }
        )
    every = [v for values in latencies for v in values]
    answered = len(every)
    return {
        "window": window.name,
        "seconds": window.seconds,
        "step_s": step,
        "start": start,
        "end": now,
        "buckets": buckets,
        "answered": answered,
        "p50_s": _percentile(every, 0.50),
        "p99_s": _percentile(every, 0.99),
        "error_rate": round(sum(errors) / answered, 4) if answered else None,
    }


def _histogram_percentile(histogram: dict[int, int], q: float) -> float | None:
    """The q-quantile of a latency histogram (bin -> count), as its bin's middle value; the
    rank is the one :func:`_percentile` takes from the sorted latencies."""
    count = sum(histogram.values())
    if not count:
        return None
    rank = min(count - 1, max(0, int(round(q * (count - 1)))))
    seen = 0
    for k in sorted(histogram):
        seen += histogram[k]
        if seen > rank:
            return round(counters.bin_value(k), 4)
    return None  # not reached


def counted_series(db, window: Window, now: float | None = None) -> dict:
    """:func:`series` from the counters: the ``window.buckets`` buckets (aligned on their
    step) that end with the current one.  Latencies come from the counters' histogram, so p50
    and p99 are within 4.5 % of the exact ones (the reference, :func:`series`)."""
    now = time.time() if now is None else now
    step = int(window.step)
    n = window.buckets
    first = int(now // step) * step - (n - 1) * step
    histograms: list[dict[int, int]] = [{} for _ in range(n)]
    errors = [0] * n
    for start, k, count in db.execute(
        "SELECT start, bin, n FROM console_series WHERE step = ? AND start >= ?", (step, first)
    ):
        i = (start - first) // step
        if not 0 <= i < n or not count:
            continue
        if k == counters.ERRORS:
            errors[i] += count
        else:
            histograms[i][k] = histograms[i].get(k, 0) + count
    per_minute = 60.0 / step
    buckets = []
    every: dict[int, int] = {}
    for i in range(n):
        histogram = histograms[i]
        count = sum(histogram.values())
        for k, c in histogram.items():
            every[k] = every.get(k, 0) + c
        buckets.append(
            {
                "start": first + i * step,
                "answered": count,
                "per_minute": round(count * per_minute, 3),
                "p50_s": _histogram_percentile(histogram, 0.50),
                "p99_s": _histogram_percentile(histogram, 0.99),
                "error_rate": round(errors[i] / count, 4) if count else None,
            }
        )
    answered = sum(every.values())
    return {
        "window": window.name,
        "seconds": n * step,
        "step_s": float(step),
        "start": first,
        "end": now,
        "buckets": buckets,
        "answered": answered,
        "p50_s": _histogram_percentile(every, 0.50),
        "p99_s": _histogram_percentile(every, 0.99),
        "error_rate": round(sum(errors) / answered, 4) if answered else None,
    }


def overview(journal, now: float | None = None) -> dict:
    """The journal's part of the console's Overview, read on a read-only connection of its
    own (a thread may call this while the reactor writes): the last day's counts, the
    queues, the hour's and the day's series, all from the counters or small indexed reads."""
    now = time.time() if now is None else now
    db = journal.reader()
    try:
        db.execute("BEGIN")  # one snapshot: the counters and the live queue agree
        try:
            return {
                "at": iso_utc(now),
                "last_day": last_day(db, now),
                "queues": queues(db, now),
                "series": {
                    name: counted_series(db, window, now) for name, window in WINDOWS.items()
                },
            }
        finally:
            db.execute("ROLLBACK")
    finally:
        db.close()


def outcomes(journal, ids: list[str]) -> dict:
    """``{id: {"outcome": ..., "undeliverable": bool}}`` of the given messages (the message
    browser's row colours); ids that are not messages are left out."""
    if not ids:
        return {}
    db = journal.db
    marks = ", ".join("?" for _ in ids)
    rows = db.execute(
        f"SELECT m.id, {OUTCOME_SQL} FROM messages m WHERE m.id IN ({marks})", ids
    ).fetchall()
    # by message id (the unique index); the state is tested here, so that no planner walks
    # every FAILED delivery through the state index
    failed = {
        msg_id
        for msg_id, state in db.execute(
            f"SELECT message_id, state FROM outbound WHERE message_id IN ({marks})", ids
        )
        if state == FAILED
    }
    return {i: {"outcome": o, "undeliverable": i in failed} for i, o in rows}


# -- what the alert checker watches ----------------------------------------------------------
def failed_deliveries(db, *, since: float) -> list[dict]:
    """Deliveries that gave up (FAILED) since ``since`` (their last attempt's time)."""
    rows = db.execute(
        "SELECT o.message_id, o.kind, o.destination, o.attempts, o.next_attempt, m.ori, m.tcn "
        "FROM outbound o LEFT JOIN messages m ON m.id = o.message_id "
        "WHERE o.state = ? AND o.next_attempt >= ? ORDER BY o.next_attempt LIMIT 50",
        (FAILED, since),
    )
    keys = ("message_id", "kind", "destination", "attempts", "failed_at", "ori", "tcn")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def oldest_waiting(db, now: float | None = None) -> dict[str, float]:
    """Age in seconds of the oldest waiting item of each queue that holds one:
    ``processing`` (accepted, not answered) and ``outbound`` (queued or retrying)."""
    now = time.time() if now is None else now
    out = {}
    (oldest,) = db.execute(
        f"SELECT MIN(received_at) FROM messages WHERE state IN ({_WAITING})", counters.NOT_ANSWERED
    ).fetchone()
    if oldest is not None:
        out["processing"] = now - oldest
    (oldest,) = db.execute(
        "SELECT MIN(created_at) FROM outbound WHERE state IN (?, ?)", (QUEUED, RETRYING)
    ).fetchone()
    if oldest is not None:
        out["outbound"] = now - oldest
    return out


def iso_utc(at: float | None) -> str | None:
    """An epoch time as ISO 8601 UTC with milliseconds (the routing log's form), or None."""
    if at is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}Z"
