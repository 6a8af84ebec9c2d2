#!/usr/bin/env python3
"""Gateway throughput and latency: N concurrent SMTP clients, CARs against a 10k-subject gallery.

Runs ``ebts-gateway run`` as a child process on loopback ports with its outbound relay pointing
at a mailbox in this process, submits ``--cars`` synthetic CARs (ten rolled WSQ fingers each,
made by :mod:`gateway.synth`, every one with its own TCN) from ``--clients`` threads, and
measures, per CAR, the time from the SMTP 250 (durably accepted) to the SRE arriving at the
mailbox.  Prints CAR/s and latency p50/p99 for each configuration:

- ``fbi-10``: search with all ten fingers against the FBI gallery;
- ``fbi-4``: search with fingers 1, 2, 6, 7 (``[matcher] search_positions``);
- ``no-gallery`` (the reference peer in the same run): the same path without any search -
  SMTP intake, journal, decoding, validation, SRE, delivery - the floor the gateway itself costs.

    python benchmarks/gateway.py --clients 10 --cars 60 --subjects 10000
"""

from __future__ import annotations

import argparse
import os
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from email.message import EmailMessage
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
OUT = REPO / "benchmarks" / "out"

from gateway.ansinist import read, write  # noqa: E402
from gateway.replay_io import Receiver  # noqa: E402

PROBE = """
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/health"
while True:
    t0 = time.perf_counter()
    try:
        urllib.request.urlopen(url, timeout=5).read()
        print(time.perf_counter() - t0, flush=True)
    except OSError:
        print(5.0, flush=True)
    time.sleep(0.1)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gallery(subjects: int) -> Path:
    path = OUT / f"gallery-{subjects}"
    if not (path / "threshold.json").exists() and not any(path.glob("*.npy")):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway",
                "gallery",
                "build",
                "--synthetic",
                str(subjects),
                "--seed",
                "1",
                str(path),
            ],
            check=True,
        )
        subprocess.run(
            [sys.executable, "-m", "gateway", "gallery", "calibrate", str(path)], check=True
        )
    return path


def cars(count: int) -> list[bytes]:
    """Distinct synthetic CARs (cached): identity i, impression 1."""
    folder = OUT / "cars"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for identity in range(1, count + 1):
        path = folder / f"car-{identity:05d}.eft"
        if not path.exists():
            from gateway import synth

            path.write_bytes(write(synth.car_transaction(identity, impression=1)))
        out.append(path.read_bytes())
    return out


def run_config(name: str, templates: list[bytes], args, extra: str) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"ebts-bench-{name}-"))
    relay, smtp_port, admin_port = free_port(), free_port(), free_port()
    receiver = Receiver("127.0.0.1", relay)
    receiver.start()
    config = work / "gateway.toml"
    config.write_text(
        f'data_dir = "{work / "data"}"\nworkers = {args.workers}\n'
        f'[listen]\nsmtp = "tcp:{smtp_port}:interface=127.0.0.1"\n'
        f'admin = "tcp:{admin_port}:interface=127.0.0.1"\n'
        f'soap = "tcp:{free_port()}:interface=127.0.0.1"\n'
        f'[outbound]\nsmtp_relay = "127.0.0.1:{relay}"\n' + extra
    )
    log = open(work / "daemon.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "--config", str(config)],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", smtp_port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        # warm-up: the worker processes import numpy/scipy on their first job
        _submit(smtp_port, _with_tcn(templates[0], f"WARMUP-{name}"))
        _wait(receiver, {f"WARMUP-{name}"}, 300)
        accepted: dict[str, float] = {}
        lock = threading.Lock()
        queue = [
            (
                _with_tcn(templates[i % len(templates)], f"BENCH-{name}-{i:06d}"),
                f"BENCH-{name}-{i:06d}",
            )
            for i in range(args.cars)
        ]

        def client():
            while True:
                with lock:
                    if not queue:
                        return
                    data, tcn = queue.pop()
                _submit(smtp_port, data)
                with lock:
                    accepted[tcn] = time.perf_counter()

        # /health is probed from a separate process (10 client threads here hold the GIL).
        prober = subprocess.Popen(
            [sys.executable, "-c", PROBE, str(admin_port)], stdout=subprocess.PIPE, text=True
        )
        started = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        answered = _wait(receiver, set(accepted), args.timeout)
        prober.terminate()
        health = sorted(float(x) for x in prober.communicate()[0].split())
        elapsed = max(answered.values(), default=started) - started
        latencies = sorted(answered[t] - accepted[t] for t in answered)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        receiver.stop()
    return {
        "config": name,
        "cars": len(answered),
        "missing": len(accepted) - len(answered),
        "car_per_s": len(answered) / elapsed if elapsed else 0.0,
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p99": _p99(latencies),
        "health_p99_ms": 1000 * _p99(health),
        "load": os.getloadavg()[0],
    }


def _p99(values: list[float]) -> float:
    return values[min(len(values) - 1, int(0.99 * len(values)))] if values else float("nan")


def _with_tcn(data: bytes, tcn: str) -> bytes:
    txn = read(data)
    txn.records[0]["1.009"] = tcn
    return write(txn)


def _submit(port: int, data: bytes) -> None:
    message = EmailMessage()
    message["From"], message["To"] = "bench@localhost", "ebts@gateway"
    message["Subject"] = "benchmark"
    message.set_content("EBTS attached")
    message.add_attachment(data, maintype="application", subtype="octet-stream")
    with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
        client.send_message(message)


def _wait(receiver: Receiver, tcns: set[str], timeout: float) -> dict[str, float]:
    got: dict[str, float] = {}
    deadline = time.time() + timeout
    while time.time() < deadline and len(got) < len(tcns):
        now = time.perf_counter()
        for tcr, _tot, _payload in receiver.take():
            if tcr in tcns and tcr not in got:
                got[tcr] = now
        time.sleep(0.02)
    return got


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--cars", type=int, default=60)
    parser.add_argument("--distinct", type=int, default=12, help="distinct synthetic CARs")
    parser.add_argument("--subjects", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--only", choices=["fbi-10", "fbi-4", "no-gallery"], action="append")
    args = parser.parse_args(argv)

    path = gallery(args.subjects)
    templates = cars(args.distinct)
    configs = {
        "fbi-10": f'[gallery]\nfbi = "{path}"\n',
        "fbi-4": f'[gallery]\nfbi = "{path}"\n[matcher]\nsearch_positions = [1, 2, 6, 7]\n',
        "no-gallery": "[gallery]\ndemo = false\n",
    }
    rows = [
        run_config(name, templates, args, extra)
        for name, extra in configs.items()
        if not args.only or name in args.only
    ]
    print(
        f"\n{args.clients} clients, {args.cars} CARs (10 rolled WSQ fingers each), "
        f"{args.subjects} gallery subjects, {args.workers} workers, {os.cpu_count()} cores"
    )
    print(
        f"{'configuration':<14}{'CAR/s':>8}{'p50 s':>9}{'p99 s':>9}{'missing':>9}"
        f"{'/health p99 ms':>16}{'load':>7}"
    )
    for r in rows:
        print(
            f"{r['config']:<14}{r['car_per_s']:>8.2f}{r['p50']:>9.2f}{r['p99']:>9.2f}"
            f"{r['missing']:>9}{r['health_p99_ms']:>16.1f}{r['load']:>7.1f}"
        )
    print(
        "targets (issue 6): p99 <= 3 s with 10 clients, >= 5 CAR/s on 2 cores, "
        "/health within 50 ms under load"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
