"""Scale benchmark, store part: CAR/s of one gateway node vs two nodes on one PostgreSQL database,
beside the embedded single node on SQLite (the reference peer), in the same run.

    .venv/bin/python benchmarks/nodes.py [--cars 200] [--clients 4] [--fingers 4] [--workers 1]

(also ``benchmarks/scale.py --nodes``).  Each setting starts its nodes as ``ebts-gateway run``
child processes (loopback, TLS off, no gallery: the decode, validation, quality floor and answer
of each CAR, so the store's share of the work shows), a throwaway PostgreSQL cluster
(tests/pg.py; a new database per setting), and a local mailbox for the answers.  ``--clients``
SMTP clients submit ``--cars`` distinct CARs spread over the nodes; the figure is CARs answered
per second from the first submission to the last answer, with the mean submission latency.

On this machine's 2 cores, two nodes share the same CPUs, so their sum is bounded by what the
workers can decode; the figure shows what the shared store costs, not what a second machine
adds.  The load average is printed beside the figures.
"""

from __future__ import annotations

import argparse
import collections
import os
import smtplib
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.replay_io import Receiver  # noqa: E402
from tests.integration.cars import make_car  # noqa: E402
from tests.integration.nodes import Node, car_mail  # noqa: E402
from tests.pg import Cluster  # noqa: E402


def run_setting(label: str, url: str | None, count: int, args, workdir: Path) -> dict:
    receiver = Receiver("127.0.0.1", 0)
    receiver.start()
    key_file = workdir / "keys" / "data.key"
    key_file.parent.mkdir(mode=0o700, exist_ok=True)
    nodes = [
        Node(workdir, f"{label}-{i}", url, key_file, receiver.port, workers=args.workers)
        for i in range(count)
    ]
    for node in nodes:
        node.start()
    template = make_car("BENCH-0000000000", fingers=args.fingers)
    todo = collections.deque(f"{label[:3].upper()}-{i:010d}" for i in range(args.cars))
    latencies: list[float] = []
    errors: collections.Counter = collections.Counter()
    lock = threading.Lock()

    def client(n: int) -> None:
        node = nodes[n % len(nodes)]
        while True:
            with lock:
                if not todo:
                    return
                tcn = todo.popleft()
            message = car_mail(template, tcn, "benchmark")
            t0 = time.perf_counter()
            try:
                with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=60) as smtp:
                    smtp.send_message(message)
            except (OSError, smtplib.SMTPException) as exc:
                with lock:
                    errors[str(exc)[:120]] += 1
                    todo.append(tcn)  # a temporary refusal: sent again
                time.sleep(0.2)
                continue
            with lock:
                latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        deadline = time.time() + 900
        while time.time() < deadline and len({t for t, _ in receiver.deliveries}) < args.cars:
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        answered = len({t for t, _ in receiver.deliveries})
        for text, n in errors.items():
            print(f"  {label}: {n} x {text}", file=sys.stderr)
        if errors:
            for node in nodes:
                lines = (workdir / f"{node.name}.log").read_text(errors="replace").splitlines()
                for line in [x for x in lines if "ERROR" in x or "cannot" in x][:5]:
                    print(f"  {node.name}: {line[:300]}", file=sys.stderr)
    finally:
        for node in nodes:
            node.stop()
        receiver.stop()
    return {
        "setting": label,
        "nodes": count,
        "answered": answered,
        "seconds": round(elapsed, 2),
        "cars_per_s": round(answered / elapsed, 2),
        "submit_ms": round(1000 * sum(latencies) / max(1, len(latencies)), 1),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cars", type=int, default=200)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--fingers", type=int, default=4, help="fingers per CAR (1-10)")
    ap.add_argument("--workers", type=int, default=1, help="worker processes per node")
    args = ap.parse_args(argv)
    rows = []
    # fsync on, as SQLite's synchronous=FULL: the comparison is between durable stores
    with tempfile.TemporaryDirectory(prefix="ebts-nodes-") as tmp, Cluster(durable=True) as pg:
        root = Path(tmp)
        settings = [("sqlite", None, 1), ("pg-1node", "pg1", 1), ("pg-2nodes", "pg2", 2)]
        for label, db, count in settings:
            url = pg.create_database(db) if db else None
            workdir = root / label
            workdir.mkdir()
            print(f"# {label}: {count} node(s)...", file=sys.stderr, flush=True)
            rows.append(run_setting(label, url, count, args, workdir))
            print(rows[-1], flush=True)
    load = os.getloadavg()
    print(
        f"\n{args.cars} CARs of {args.fingers} fingers, {args.clients} clients, "
        f"{args.workers} worker(s) per node; load average {load[0]:.1f}"
    )
    print(f"{'setting':<12}{'nodes':>6}{'CAR/s':>8}{'submit ms':>11}{'answered':>10}")
    for r in rows:
        print(
            f"{r['setting']:<12}{r['nodes']:>6}{r['cars_per_s']:>8}{r['submit_ms']:>11}"
            f"{r['answered']:>10}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
