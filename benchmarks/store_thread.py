"""Where the reactor thread spends its time when a large message is stored and read (issue 14).

Run on demand (not in CI)::

    .venv/bin/python benchmarks/store_thread.py            # one 45 MB payload, 3 rounds
    .venv/bin/python benchmarks/store_thread.py --mb 8 --rounds 5

On a fresh journal in a temporary directory (encryption at rest on, as the daemon runs), per
round and step, the wall time of each part of the accept path as the reactor thread ran it
before (the reference, same run): the keyed digest, the AES-GCM seal, the INSERT, the COMMIT
(WAL write and fsync, with the automatic checkpoint), ``Journal.payload`` (SELECT and open) and
the pickling of the worker's job.  Then the same payload through the store thread
(``Journal.store_payload`` in a thread, ``accept_many`` with the ``StoredPayload`` here,
``read_payload`` in the thread): the time the calling (reactor) thread itself spent, and the
longest stall of a 1 ms ticker running in it meanwhile (what ``/health`` would see: the GIL
and the reactor-side commit).  The machine is shared: the median of the rounds is printed.
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.store.journal import Journal, _payload_aad  # noqa: E402


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t0) * 1000


def reference(journal: Journal, data: bytes) -> dict[str, float]:
    """The old path, step by step, all in this thread (ms)."""
    out = {}
    digest, out["digest"] = _timed(lambda: journal.cipher.digest(data))
    sealed, out["seal"] = _timed(lambda: journal.cipher.seal(data, _payload_aad(digest)))
    journal.db.execute("BEGIN IMMEDIATE")
    _, out["insert"] = _timed(
        lambda: journal.db.execute(
            "INSERT INTO payloads (sha256, size, data) VALUES (?, ?, ?)",
            (digest, len(data), sealed),
        )
    )
    _, out["commit+fsync+checkpoint"] = _timed(lambda: journal.db.execute("COMMIT"))
    _, out["payload() read+open"] = _timed(lambda: journal.payload(digest))
    _, out["pickle job payload"] = _timed(lambda: pickle.dumps(data, protocol=5))
    out["total on the reactor"] = sum(out.values())
    return out


def _while_ticking(work):
    """Run ``work`` in a thread; (its result, longest gap of a 1 ms ticker here in ms)."""
    done = threading.Event()
    result: list = []

    def run():
        try:
            result.append(work())
        finally:
            done.set()

    thread = threading.Thread(target=run)
    longest, last = 0.0, time.perf_counter()
    thread.start()
    while not done.is_set():
        time.sleep(0.001)
        now = time.perf_counter()
        longest, last = max(longest, now - last), now
    thread.join()
    return result[0], longest * 1000


def store_thread(journal: Journal, data: bytes) -> dict[str, float]:
    """The new path: the per-byte work in a thread, the small commit here (ms)."""
    out: dict[str, float] = {}
    holder: dict = {}

    def in_thread(fn, *args):
        # one thread owns the store connection: keep it for every call of this round
        thread = holder.get("thread")
        if thread is None:
            holder["queue"], holder["answers"] = [], []
            cond = holder["cond"] = threading.Condition()

            def loop():
                while True:
                    with cond:
                        while not holder["queue"]:
                            cond.wait()
                        job = holder["queue"].pop(0)
                    if job is None:
                        journal.close_store_connection()
                        return
                    value = job[0](*job[1])
                    with cond:
                        holder["answers"].append(value)
                        cond.notify_all()

            thread = holder["thread"] = threading.Thread(target=loop)
            thread.start()
        cond = holder["cond"]
        with cond:
            holder["queue"].append((fn, args))
            cond.notify_all()
            while not holder["answers"]:
                cond.wait()
            return holder["answers"].pop()

    journal.offload_checkpoints()
    stored, out["stall: store_payload"] = _while_ticking(
        lambda: in_thread(journal.store_payload, data)
    )
    _, out["accept_many (reactor)"] = _timed(lambda: journal.accept_many([stored], transport="x"))
    _, out["stall: checkpoint"] = _while_ticking(lambda: in_thread(journal.checkpoint))
    _, out["stall: read_payload"] = _while_ticking(
        lambda: in_thread(journal.read_payload, stored.digest)
    )
    with holder["cond"]:
        holder["queue"].append(None)
        holder["cond"].notify_all()
    holder["thread"].join()
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=45.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    size = int(args.mb * 1024 * 1024)
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="ebts-bench-") as tmp:
        for n in range(args.rounds):
            for name, fn in (("reference", reference), ("store thread", store_thread)):
                folder = Path(tmp) / f"{name.replace(' ', '-')}-{n}"
                journal = Journal(folder / "journal.sqlite3", key_file=folder / "data.key")
                try:
                    for step, ms in fn(journal, os.urandom(size)).items():
                        rows.setdefault(f"{name:13s} {step}", []).append(ms)
                finally:
                    journal.close()
    print(f"{args.mb:g} MB payload, median of {args.rounds} rounds (ms on the reactor thread)")
    for label, values in rows.items():
        print(f"  {label:48s} {statistics.median(values):8.1f}")
    print(f"load average: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
