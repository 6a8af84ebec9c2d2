"""The console's per-write counters (gateway.store.counters) against a full recount.

Random traffic (accepts, transitions, answers, duplicates, refusals, deliveries that succeed,
retry or give up, transactions that roll back) in this process, then in two processes writing
one journal at once, one of them killed with SIGKILL at a random moment: the counters must equal
:func:`gateway.store.counters.recount` (the reference scan), and the Overview's figures read
from them must equal :func:`gateway.store.metrics.counts` / :func:`~.metrics.series`.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.store import counters, metrics
from gateway.store.audit import Audit
from gateway.store.journal import FAILED, RETRYING, STATES, TERMINAL, Journal

AGENCIES = ("NY0303000", "WV0000000", "TX0000000")
TOTS = ("CAR", "CNA", "FANC", None)


class Boom(Exception):
    pass


def _pending(journal) -> list[str]:
    return [m.id for m in journal.unfinished()]


def _answered(journal) -> list[str]:
    return [
        r[0]
        for r in journal.db.execute("SELECT id FROM messages WHERE state = 'RESPONDED' LIMIT 50")
    ]


def _respond(journal, rng, msg_id) -> None:
    kind = rng.choice(("SRE", "SRE", "ERRT", "CNA", "duplicate"))
    deliveries = [
        ("smtp", f"bureau{i}@example.test", {"tot": kind}) for i in range(rng.choice((0, 1, 2)))
    ]
    duplicate_of = None
    if kind == "duplicate":
        earlier = _answered(journal)
        duplicate_of = rng.choice(earlier) if earlier else None
        kind = "SRE"
    journal.respond(
        msg_id,
        response=None if kind == "CNA" else f"{kind} {msg_id}".encode(),
        response_tot=None if kind == "CNA" else kind,
        response_tcn="GW1",
        deliveries=deliveries if kind != "CNA" else [],
        duplicate_of=duplicate_of,
    )


def _advance(journal, msg_id, state, **fields):
    """Take the message to ``state`` by the legal path of the state table (a search needs
    decoding and validation first); a state it cannot reach any more is left out."""
    from gateway.store.states import allowed

    with journal.transaction():  # read and write together: another writer may be at it too
        current = journal.message(msg_id).state
        for step in ("DECODED", "VALIDATED") if state == "SEARCHED" else ():
            if not allowed(current, state) and allowed(current, step):
                journal.advance(msg_id, step)
                current = step
        if allowed(current, state):
            journal.advance(msg_id, state, **fields)


def random_traffic(journal, audit, rng, operations: int, progress=None) -> None:
    """``operations`` random journal changes, as the gateway makes them."""
    for n in range(operations):
        op = rng.random()
        pending = _pending(journal)
        if op < 0.25 or not pending:
            msg_id = journal.accept(
                os.urandom(8), transport="smtp", agency=rng.choice((*AGENCIES, None))
            )
            if rng.random() < 0.8:
                journal.identify(
                    msg_id,
                    ori=rng.choice((*AGENCIES, None)),
                    tcn=f"T{n}",
                    tot=rng.choice(TOTS),
                    dai="WVIAFIS0Z",
                    encoding="traditional",
                )
        elif op < 0.40:
            outcome, state, destination = rng.choice(
                (
                    ("hit", "SEARCHED", "FBI"),
                    ("no hit", "SEARCHED", "FBI"),
                    ("hit", "SEARCHED", "DHS"),
                    ("WORKER_CRASH", "REJECTED", None),
                    ("2 errors", "REJECTED", None),
                    ("1 record", "DECODED", None),
                )
            )
            _advance(journal, rng.choice(pending), state, outcome=outcome, destination=destination)
        elif op < 0.65:
            _respond(journal, rng, rng.choice(pending))
        elif op < 0.85:
            due = journal.due(time.time() + 10**6, limit=20)
            if due:
                item = rng.choice(due)
                choice = rng.random()
                if choice < 0.4:
                    journal.delivered(item)
                else:
                    retry = time.time() + 1 if choice < 0.6 else None
                    journal.delivery_failed(item, "550 no such mailbox", retry_at=retry)
        elif op < 0.95:
            audit.submission_refused(
                channel="smtp",
                peer="127.0.0.1",
                identity=rng.choice(("CN=a", None)),
                ori=rng.choice((*AGENCIES, None)),
                tcn=None,
                reason="no registered destination",
            )
        else:  # a change that rolls back: its counters with it
            try:
                with journal.transaction():
                    _respond(journal, rng, rng.choice(pending))
                    raise Boom
            except Boom:
                pass
        if progress is not None:
            progress(n)


def assert_exact(journal) -> None:
    db = journal.db
    assert counters.stored(db) == counters.recount(db)
    now = time.time()
    assert metrics.last_day(db, now) == metrics.counts(db, since=metrics.day_start(now)) | {
        "since": metrics.day_start(now)
    }
    for window in metrics.WINDOWS.values():
        got = metrics.counted_series(db, window, now)
        # the reference over the same buckets: it ends where the current bucket ends
        end = (now // window.step + 1) * window.step
        ref = metrics.series(db, window, end)
        assert [b["start"] for b in got["buckets"]] == [b["start"] for b in ref["buckets"]]
        assert [b["answered"] for b in got["buckets"]] == [b["answered"] for b in ref["buckets"]]
        assert [b["error_rate"] for b in got["buckets"]] == [
            b["error_rate"] for b in ref["buckets"]
        ]
        for g, r in zip(got["buckets"], ref["buckets"], strict=True):
            for key in ("p50_s", "p99_s"):
                assert (g[key] is None) == (r[key] is None)
                if r[key] is not None and r[key] >= counters.FLOOR_S:
                    assert abs(g[key] - r[key]) <= 0.045 * r[key] + 1e-4, (key, g, r)


@pytest.fixture(params=["sqlite", "postgresql"])
def journal(tmp_path, request):
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    j = Journal(tmp_path / "journal.sqlite3", url=url)
    metrics.ensure_indexes(j)
    yield j
    j.close()


def test_random_traffic_keeps_the_counters_exact(journal):
    audit = Audit(journal)
    rng = random.Random(19)
    random_traffic(journal, audit, rng, 400)
    db = journal.db
    counts, series = counters.stored(db)
    outcomes = {key[3] for key in counts}
    # the mix reached every kind of count
    assert {"sre_hit", "sre_no_hit", "errt", "failed", "duplicate", "other"} <= outcomes
    assert {"undeliverable", "refused"} <= outcomes
    assert any(key[2] == counters.ERRORS for key in series)
    assert_exact(journal)


def test_a_journal_without_counters_gets_them_rebuilt_at_open(tmp_path):
    j = Journal(tmp_path / "journal.sqlite3")
    random_traffic(j, Audit(j), random.Random(5), 120)
    expected = counters.stored(j.db)
    j.db.execute("DELETE FROM console_counts")
    j.db.execute("DELETE FROM console_series")
    j.set_meta("console_counters", None)  # as a journal made before the counters
    j.close()
    j = Journal(tmp_path / "journal.sqlite3")
    try:
        assert counters.stored(j.db) == expected == counters.recount(j.db)
    finally:
        j.close()


def test_the_unanswered_states_are_the_journals():
    # repeated in counters (the journal imports it); the queue reads would miss a new state
    assert set(counters.NOT_ANSWERED) == set(STATES) - TERMINAL
    assert set(counters._TERMINAL) == TERMINAL and counters._FAILED == FAILED


def test_histogram_bins_are_narrow():
    for seconds in (0.0015, 0.02, 0.35, 1.0, 7.5, 90.0, 4000.0):
        k = counters.latency_bin(seconds)
        assert abs(counters.bin_value(k) - seconds) <= 0.045 * seconds
        assert counters.latency_bin(counters.bin_value(k)) == k
    assert counters.latency_bin(0.0) == counters.latency_bin(-1.0) == 0


def test_refusal_rows_prune_and_windows(journal):
    audit = Audit(journal)
    audit.submission_refused(
        channel="smtp", peer="127.0.0.1", identity="CN=x", ori=None, tcn=None, reason="r"
    )
    last = metrics.last_day(journal.db)
    assert last["by_outcome"]["refused"] == 1 and last["by_agency"]["CN=x"]["refused"] == 1
    assert last["total"] == 0  # a refusal is no message
    # an old row is dropped by the pruning; nothing recent is
    with journal.transaction():
        journal.db.execute(
            "INSERT INTO console_counts (hour, agency, tot, outcome, n) VALUES (0, 'A', '-', "
            "'errt', 1)"
        )
        counters.prune(journal.db, time.time())
    assert counters.stored(journal.db) == counters.recount(journal.db)


WRITER = Path(__file__).resolve()


def _writer(path: str, seed: int, operations: int) -> None:
    j = Journal(path, node=f"writer-{seed}")  # two nodes: each claims its own deliveries
    audit = Audit(j)
    random_traffic(
        j, audit, random.Random(seed), operations, progress=lambda n: print(n, flush=True)
    )
    j.close()


@pytest.mark.slow
def test_two_writers_one_killed_keep_the_counters_exact(tmp_path):
    """Two processes (two gateway nodes) write one journal; one is killed with SIGKILL in the
    middle of its traffic; after a restart and more traffic, the counters are still exact."""
    path = tmp_path / "journal.sqlite3"
    first = Journal(path)  # the keys and tables exist before the writers race for them
    Audit(first)
    first.close()
    env = dict(os.environ, PYTHONPATH=str(WRITER.parent.parent))

    def start(seed, operations):
        return subprocess.Popen(
            [sys.executable, str(WRITER), str(path), str(seed), str(operations)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    survivor = start(1, 120)
    victim = start(2, 10**6)
    rng = random.Random(7)
    # killed after a random number of its operations, wherever it is then
    for _ in range(rng.randrange(20, 60)):
        assert victim.stdout.readline(), "the writer stopped early"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    victim.stdout.close()
    survivor.communicate(timeout=600)
    assert survivor.returncode == 0
    j = Journal(path)  # the restart
    try:
        assert_exact(j)
        random_traffic(j, Audit(j), random.Random(3), 40)
        assert_exact(j)
        (answered,) = j.db.execute(
            "SELECT COUNT(*) FROM messages WHERE state IN ('RESPONDED', 'DUPLICATE')"
        ).fetchone()
        assert answered > 20
        states = {r[0] for r in j.db.execute("SELECT DISTINCT state FROM outbound")}
        assert FAILED in states and (RETRYING in states or "SENT" in states)
    finally:
        j.close()


if __name__ == "__main__":  # a writer process of the test above
    _writer(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
