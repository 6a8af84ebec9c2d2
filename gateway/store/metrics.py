"""Read-only figures over the journal for the admin console and the alert checker.

Everything here is a query of the journal's own database (``journal.db``) that changes nothing
but two indexes it creates once (:func:`ensure_indexes`): counts per agency, TOT and outcome,
the queues and their oldest waiting item, time series of throughput, latency and error rate,
and the facts alerts watch (failed deliveries, refusals per agency).  No personal field is read:
only the clear metadata columns (ORI, TCN, TOT, states, times, destinations) and the audit
trail's refusal records; sealed blobs (payloads, summaries) are never opened here.

Outcomes of a message (the console's words, those of the admin API's ``outcome`` filter):
``sre_hit`` (an SRE after an FBI search that hit: the SEARCHED transition to FBI says "hit"),
``sre_no_hit``, ``errt``, ``duplicate``, ``refused`` (refused at intake: only an audit record
exists, so these are counted from the trail), ``undeliverable`` (a destination FAILED),
``failed`` (a worker died twice on it: WORKER_CRASH), ``pending`` (not answered yet),
``other`` (answered without SRE or ERRT: a CNA, an IAR).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

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
# The same outcomes without a subquery per row: hits and crashes are counted apart (one join
# over their partial index each) and moved out of sre_no_hit and errt.
_COARSE_SQL = f"""CASE
 WHEN NOT {_ANSWERED} THEN 'pending'
 WHEN m.duplicate_of IS NOT NULL THEN 'duplicate'
 WHEN m.response_tot LIKE 'ERR%' THEN 'errt'
 WHEN m.response_tot = 'SRE' THEN 'sre_no_hit'
 ELSE 'other' END"""


def ensure_indexes(db) -> None:
    """The indexes the console's queries need (idempotent; a few seconds once on 10^5 rows)."""
    for sql in INDEXES:
        db.execute(sql)


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
            # "+": driven by the partial index of transitions, not the state index
            f"AND m.duplicate_of IS NULL AND +{_ANSWERED}{also.replace('m.', '+m.')} "
            "GROUP BY 1, 2",
            args,
        ):
            moves.append((agency, tot, was, outcome, n))
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
    for agency, _tot, was, outcome, n in moves:
        row = by_agency[agency]
        row[was] -= n
        row[outcome] += n
        by_outcome[was] -= n
        by_outcome[outcome] += n
    failed_args = [FAILED, *args]
    for agency, n in db.execute(
        "SELECT COALESCE(m.ori, m.agency, '-'), COUNT(DISTINCT m.id) FROM outbound o "
        "JOIN messages m ON m.id = o.message_id WHERE o.state = ?"
        + (" AND m.received_at >= ?" if since is not None else "")
        + " GROUP BY 1",
        failed_args,
    ):
        by_agency.setdefault(agency, dict.fromkeys(OUTCOMES, 0) | {"total": 0})["undeliverable"] = n
        by_outcome["undeliverable"] += n
    for agency, n in refusals(db, since=since).items():
        by_agency.setdefault(agency, dict.fromkeys(OUTCOMES, 0) | {"total": 0})["refused"] = n
        by_outcome["refused"] += n
    agencies = sorted(by_agency.items(), key=lambda kv: (-kv[1]["total"], kv[0]))
    tots = sorted(by_tot.items(), key=lambda kv: (-kv[1], kv[0]))
    return {
        "total": total,
        "by_outcome": by_outcome,
        "by_agency": dict(_capped(agencies, lambda rows: _sum_rows(rows))),
        "by_tot": dict(_capped(tots, lambda rows: sum(n for _, n in rows))),
    }


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
    sql = (
        "SELECT COALESCE(json_extract(fields, '$.ori'), json_extract(fields, '$.identity'), '-'), "
        "COUNT(*) FROM audit WHERE event = 'submission.refused'"
    )
    args: list = []
    if since is not None:
        sql += " AND at >= ?"
        args.append(since)
    try:
        return dict(db.execute(sql + " GROUP BY 1", args).fetchall())
    except Exception as exc:  # noqa: BLE001 - a journal without an audit table counts none
        if "no such table" in str(exc):
            return {}
        raise


def queues(db, now: float | None = None) -> dict:
    """The work waiting: messages not answered yet (per state) and deliveries queued or
    retrying (per kind), each with its count and the age of its oldest item in seconds."""
    now = time.time() if now is None else now
    states = {
        state: {"count": n, "oldest_s": round(now - oldest, 1)}
        for state, n, oldest in db.execute(
            "SELECT state, COUNT(*), MIN(received_at) FROM messages WHERE state NOT IN (?, ?) "
            "GROUP BY state",
            _TERMINAL,
        )
    }
    outbound = {
        kind: {"count": n, "oldest_s": round(now - oldest, 1), "retrying": retrying}
        for kind, n, oldest, retrying in db.execute(
            "SELECT kind, COUNT(*), MIN(created_at), SUM(state = ?) FROM outbound "
            "WHERE state IN (?, ?) GROUP BY kind",
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
    # through the received_at index ("+m.state" keeps the planner off the state index, which
    # would walk every answered message); answers within the window of messages received up to
    # one window before it
    rows = db.execute(
        "SELECT m.id, m.received_at, m.updated_at, m.response_tot LIKE 'ERR%' FROM messages m "
        "WHERE m.received_at >= ? AND m.updated_at >= ? AND +m.state IN (?, ?)",
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
        "SELECT MIN(received_at) FROM messages WHERE state NOT IN (?, ?)", _TERMINAL
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
