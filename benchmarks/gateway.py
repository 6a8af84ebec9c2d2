#!/usr/bin/env python3
"""Gateway throughput and latency: N concurrent SMTP clients, CARs against a 10k-subject gallery.

Runs ``ebts-gateway run`` as a child process on loopback ports with its outbound relay pointing
at a mailbox in this process.  Each of ``--clients`` clients is a booking station: it submits a
CAR by SMTP, waits for its SRE, then submits the next (closed loop: at most ``--clients`` CARs
are in the gateway at any time).  Latency is the time from the SMTP 250 (durably accepted) to
the SRE arriving at the mailbox; CAR/s is answered CARs over the time from the first submission
to the last answer.

The CARs are synthetic (ten rolled WSQ fingers each, :mod:`gateway.synth`, every one with its
own TCN).  Before the timed phase ``--prebooked`` identities are booked once (impression 1) so
that the gallery holds them; in the timed phase a ``--repeat`` fraction of the CARs are second
bookings of those identities (impression 2: other images of the same fingers, so the search must
find them: SRF=I, nothing enrolled) and the rest are new identities (SRF=N; RET=Y, so the ten
fingers are enrolled).  The hits counted are printed to show the mix happened.  Configurations:

- ``fbi-10``: search with all ten fingers against the FBI gallery;
- ``fbi-4``: search with fingers 1, 2, 6, 7 (``[matcher] search_positions``);
- ``no-gallery`` (the reference peer in the same run): the same path without any search -
  SMTP intake, journal, decoding, validation, SRE, delivery - the floor the gateway itself costs.

Encryption at rest (docs/security.md) is on in every configuration; ``--plain CONFIG`` (by
default ``no-gallery``, where its share of the cost is largest) runs that configuration a second
time with it off (``CONFIG/plain``), so the cost of encryption is printed from the same run.
Off exists only here: the child daemon is started with ``gateway.service.ENCRYPT_AT_REST``
set to False, not through a configuration setting.

The first run builds the gallery (``gallery build --synthetic``) and calibrates it for each
probe finger count with 24 image-level identities (``gallery calibrate --image-identities 24``;
a few minutes), and renders the CARs (cached under ``benchmarks/out``).

    python benchmarks/gateway.py --clients 10 --cars 120 --subjects 10000
"""

from __future__ import annotations

import argparse
import email.policy
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
from gateway.replay_io import Receiver, client_context, demo_identity  # noqa: E402

# The daemon with encryption at rest off (the benchmark's switch; no configuration setting).
PLAIN_RUN = (
    "import sys; import gateway.service as s; s.ENCRYPT_AT_REST = False; "
    "from gateway.cli import main; sys.exit(main(['run'] + sys.argv[1:]))"
)

PROBE = """
import ssl, sys, time, urllib.request
context = None
if len(sys.argv) > 2:  # TLS: the demo identity (client certificate) of the data directory
    cert, key, ca = sys.argv[2:5]
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(cert, key)
url = f"{'https://localhost' if context else 'http://127.0.0.1'}:{sys.argv[1]}/health"
while True:
    t0 = time.perf_counter()
    try:
        urllib.request.urlopen(url, timeout=5, context=context).read()
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
    """The template-level synthetic gallery, calibrated for each probe finger count with
    image-level non-mated searches too (rendered prints score higher than template-level
    ones; identities far from the CARs' own)."""
    import json

    path = OUT / f"gallery-{subjects}"
    if not (path / "index.json").exists():
        subprocess.run(
            [sys.executable, "-m", "gateway", "gallery", "build", "--synthetic", str(subjects)]
            + ["--seed", "1", "--force", str(path)],
            check=True,
        )
    index = json.loads((path / "index.json").read_text())
    if not index.get("thresholds") or "image_level" not in (index.get("calibration") or {}):
        subprocess.run(
            [sys.executable, "-m", "gateway", "gallery", "calibrate", str(path)]
            + ["--image-identities", "24"],
            check=True,
        )
    return path


def car(identity: int, impression: int) -> bytes:
    """One synthetic CAR (cached under benchmarks/out/cars)."""
    folder = OUT / "cars"
    folder.mkdir(parents=True, exist_ok=True)
    suffix = "" if impression == 1 else f"-{impression}"
    path = folder / f"car-{identity:05d}{suffix}.eft"
    if not path.exists():
        from gateway import synth

        path.write_bytes(write(synth.car_transaction(identity, impression=impression)))
    return path.read_bytes()


def _make(key: tuple[int, int]) -> None:
    car(*key)


def workload(args) -> tuple[list[bytes], list[tuple[bytes, bool]]]:
    """The pre-bookings and the timed CARs as (bytes, expected hit), built in 2 processes."""
    import random
    from concurrent.futures import ProcessPoolExecutor

    rng = random.Random(args.seed)
    prebooked = list(range(1, args.prebooked + 1))
    plan, new = [], args.prebooked
    for _ in range(args.cars):
        if prebooked and rng.random() < args.repeat:
            plan.append((rng.choice(prebooked), 2))
        else:
            new += 1
            plan.append((new, 1))
    keys = sorted({(i, 1) for i in prebooked} | set(plan))
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_make, keys))
    return [car(i, 1) for i in prebooked], [(car(i, n), n == 2) for i, n in plan]


def run_config(
    name: str,
    prebook: list[bytes],
    timed: list[tuple[bytes, bool]],
    args,
    extra,
    tls: bool = True,
    plain: bool = False,
):
    work = Path(tempfile.mkdtemp(prefix=f"ebts-bench-{name.replace('/', '-')}-"))
    relay, smtp_port, admin_port = free_port(), free_port(), free_port()
    receiver = Receiver("127.0.0.1", relay)
    receiver.start()
    config = work / "gateway.toml"
    config.write_text(
        f'data_dir = "{work / "data"}"\nworkers = {args.workers}\n'
        f'[listen]\nsmtp = "tcp:{smtp_port}:interface=127.0.0.1"\n'
        f'admin = "tcp:{admin_port}:interface=127.0.0.1"\n'
        f'soap = "tcp:{free_port()}:interface=127.0.0.1"\n'
        f'[outbound]\nsmtp_relay = "127.0.0.1:{relay}"\n'
        # the synthetic CARs' ORI; with TLS the gateway issues this agency's identity
        '[[agency]]\nori = "NY0303000"\nresponse_email = "bench@localhost"\n'
        f'[tls]\nmode = "{"on" if tls else "off"}"\n' + extra
    )
    log = open(work / "daemon.log", "wb")  # noqa: SIM115
    command = ["-c", PLAIN_RUN] if plain else ["-m", "gateway", "run"]
    proc = subprocess.Popen(
        [sys.executable, *command, "--config", str(config)],
        cwd=str(REPO),
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    mailbox = Mailbox(receiver)
    context = None
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", smtp_port), timeout=1).close()
                context = demo_context(work / "data") if tls else None
                break
            except OSError:
                time.sleep(0.2)
        # warm-up and pre-bookings (the worker processes import numpy/scipy on their first
        # job; the pre-booked identities are enrolled so that their second bookings hit)
        for i, data in enumerate(prebook or [timed[0][0]]):
            tcn = f"PRE-{name}-{i:05d}"
            _submit(smtp_port, _mime(_with_tcn(data, tcn)), context)
            mailbox.wait(tcn, 300)
        # the e-mails are built before the clock starts: a state system's own CPU is not the
        # gateway's (this machine runs both)
        mails = [
            (f"BENCH-{name}-{i:06d}", _mime(_with_tcn(data, f"BENCH-{name}-{i:06d}")))
            for i, (data, _) in enumerate(timed)
        ]
        accepted: dict[str, float] = {}
        answered: dict[str, float] = {}
        hits: dict[str, bool] = {}
        lock = threading.Lock()
        queue = list(reversed(mails))

        def client():
            while True:
                with lock:
                    if not queue:
                        return
                    tcn, mail = queue.pop()
                _submit(smtp_port, mail, context)
                accepted[tcn] = time.perf_counter()
                got = mailbox.wait(tcn, args.timeout)
                if got is None:
                    return
                answered[tcn], hits[tcn] = got

        # /health is probed from a separate process (the client threads here hold the GIL).
        identity = list(demo_identity(work / "data", "NY0303000") or ()) if tls else []
        prober = subprocess.Popen(
            [sys.executable, "-c", PROBE, str(admin_port), *identity],
            stdout=subprocess.PIPE,
            text=True,
        )
        cpu_before = _cpu(proc.pid)
        started = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        cpu_after = _cpu(proc.pid)
        prober.terminate()
        health = sorted(float(x) for x in prober.communicate()[0].split())
        elapsed = max(answered.values(), default=started) - started
        latencies = sorted(answered[t] - accepted[t] for t in answered)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        mailbox.stop()
        receiver.stop()
    return {
        "config": name,
        "tls": tls,
        "cars": len(answered),
        "missing": len(timed) - len(answered),
        "hits": sum(hits.values()),
        "expected_hits": sum(hit for _, hit in timed),
        "car_per_s": len(answered) / elapsed if elapsed else 0.0,
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p99": _p99(latencies),
        "health_p99_ms": 1000 * _p99(health),
        "health_max_ms": 1000 * max(health, default=float("nan")),
        "health_n": len(health),
        "load": os.getloadavg()[0],
        # CPU seconds per answered CAR: the daemon's reactor, its workers, this process (the
        # clients and the mailbox: the state systems' side, sharing the same cores)
        "cpu_ms": {
            k: 1000 * (cpu_after[k] - cpu_before[k]) / max(1, len(answered)) for k in cpu_after
        },
    }


def _cpu(daemon: int) -> dict[str, float]:
    """CPU seconds (user + system) of the daemon, of its worker children and of this process."""
    tick = os.sysconf("SC_CLK_TCK")

    def stat(pid: int) -> tuple[int, float]:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[1]), (int(fields[11]) + int(fields[12])) / tick

    workers = 0.0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid, cpu = stat(int(entry))
            except OSError:
                continue
            if ppid == daemon:
                workers += cpu
    mine = os.times()
    return {"reactor": stat(daemon)[1], "workers": workers, "clients": mine.user + mine.system}


class Mailbox:
    """Hands each arriving SRE to the client waiting for its TCN: (arrival time, SRF=I)."""

    def __init__(self, receiver: Receiver):
        self.receiver = receiver
        self.cond = threading.Condition()
        self.arrived: dict[str, tuple[float, bool]] = {}
        self.running = True
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        while self.running:
            items = self.receiver.take()
            now = time.perf_counter()
            if items:
                with self.cond:
                    for tcr, _tot, payload in items:
                        if tcr:
                            self.arrived[tcr] = (now, _srf(payload))
                    self.cond.notify_all()
            time.sleep(0.005)

    def wait(self, tcn: str, timeout: float):
        deadline = time.time() + timeout
        with self.cond:
            while tcn not in self.arrived:
                left = deadline - time.time()
                if left <= 0:
                    return None
                self.cond.wait(left)
            return self.arrived.pop(tcn)

    def stop(self) -> None:
        self.running = False


def _srf(payload: bytes) -> bool:
    """2.059 SRF of an SRE is I (identified)."""
    try:
        txn = read(payload)
        t2 = next(r for r in txn.records if r.type == 2)
        return t2.value("2.059") == "I"
    except Exception:  # noqa: BLE001 - an unreadable answer is not a hit
        return False


def _p99(values: list[float]) -> float:
    return values[min(len(values) - 1, int(0.99 * len(values)))] if values else float("nan")


def _with_tcn(data: bytes, tcn: str) -> bytes:
    txn = read(data)
    txn.records[0]["1.009"] = tcn
    return write(txn)


def _mime(data: bytes) -> bytes:
    """The submission e-mail (the EBTS file as a base64 attachment), as bytes."""
    message = EmailMessage()
    message["From"], message["To"] = "bench@localhost", "ebts@gateway"
    message["Subject"] = "benchmark"
    message.set_content("EBTS attached")
    message.add_attachment(data, maintype="application", subtype="octet-stream")
    return message.as_bytes(policy=email.policy.SMTP)  # CRLF line ends, as sent on the wire


def demo_context(data_dir: Path):
    """The client TLS context of the identity the gateway issued for NY0303000."""
    cert, key, ca = demo_identity(data_dir, "NY0303000")
    return client_context(cert, key, ca)


def _submit(port: int, mail: bytes, context=None) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
        if context is not None:  # STARTTLS with the agency's client certificate
            client.starttls(context=context)
        client.sendmail("bench@localhost", ["ebts@gateway"], mail)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--cars", type=int, default=60, help="CARs in the timed phase")
    parser.add_argument("--prebooked", type=int, default=20, help="identities booked first")
    parser.add_argument("--repeat", type=float, default=0.5, help="fraction of second bookings")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--subjects", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=900.0)
    names = ["fbi-10", "fbi-4", "no-gallery"]
    parser.add_argument("--only", choices=names, action="append")
    parser.add_argument(
        "--tls",
        choices=["both", "on", "off"],
        default="both",
        help="run each configuration with TLS (client certificates, the default of the gateway), "
        "without, or both in the same run (the reference)",
    )
    parser.add_argument(
        "--plain",
        choices=[*names, "none"],
        action="append",
        help="also run this configuration with encryption at rest off (default: no-gallery)",
    )
    args = parser.parse_args(argv)
    plain = set(args.plain or ["no-gallery"]) - {"none"}

    searched = [n for n in ("fbi-10", "fbi-4") if not args.only or n in args.only]
    path = gallery(args.subjects) if searched else None  # no gallery to build for no-gallery only
    prebook, timed = workload(args)
    configs = {
        "fbi-10": f'[gallery]\nfbi = "{path}"\n',
        "fbi-4": f'[gallery]\nfbi = "{path}"\n[matcher]\nsearch_positions = [1, 2, 6, 7]\n',
        "no-gallery": "[gallery]\ndemo = false\n",
    }
    modes = {"both": (True, False), "on": (True,), "off": (False,)}[args.tls]
    rows = []
    for name, extra in configs.items():
        if args.only and name not in args.only:
            continue
        booked = prebook if name != "no-gallery" else []
        for tls in modes:
            rows.append(run_config(name, booked, timed, args, extra, tls))
        if name in plain:
            rows.append(
                run_config(f"{name}/plain", booked, timed, args, extra, modes[0], plain=True)
            )
    print(
        f"\n{args.clients} clients (closed loop), {args.cars} CARs (10 rolled WSQ fingers each; "
        f"{args.repeat:.0%} second bookings of {args.prebooked} pre-booked identities), "
        f"{args.subjects} gallery subjects, {args.workers} workers, {os.cpu_count()} cores"
    )
    print(
        f"{'configuration':<18}{'CAR/s':>8}{'p50 s':>9}{'p99 s':>9}{'hits':>9}{'missing':>9}"
        f"{'/health p99 / max ms (n)':>26}{'load':>7}   CPU ms/CAR: reactor, workers, clients"
    )
    for r in rows:
        hits = f"{r['hits']}/{r['expected_hits']}"
        health = f"{r['health_p99_ms']:.1f} / {r['health_max_ms']:.1f} ({r['health_n']})"
        label = r["config"] + (" tls" if r["tls"] else "")
        print(
            f"{label:<18}{r['car_per_s']:>8.2f}{r['p50']:>9.2f}{r['p99']:>9.2f}{hits:>9}"
            f"{r['missing']:>9}{health:>26}{r['load']:>7.1f}   "
            + ", ".join(f"{v:.0f}" for v in r["cpu_ms"].values())
        )
    by_name = {r["config"]: r for r in rows if r["tls"] == modes[0]}
    if len(modes) == 2:
        for name in configs:
            pair = [r for r in rows if r["config"] == name]
            if len(pair) == 2:
                on, off = pair
                print(
                    f"TLS ({name}): {on['car_per_s']:.2f} CAR/s, p99 {on['p99']:.2f} s with TLS vs "
                    f"{off['car_per_s']:.2f} CAR/s, p99 {off['p99']:.2f} s without"
                )
    for name in sorted(plain):
        if name in by_name and f"{name}/plain" in by_name:
            sealed, clear = by_name[name]["car_per_s"], by_name[f"{name}/plain"]["car_per_s"]
            cost = 100 * (1 - sealed / clear) if clear else float("nan")
            print(
                f"encryption at rest ({name}): {sealed:.2f} CAR/s sealed vs {clear:.2f} plain "
                f"({cost:+.1f} % throughput cost)"
            )
    print(
        "targets (issue 6): p99 <= 3 s with 10 clients, >= 5 CAR/s on 2 cores, "
        "/health within 50 ms under load"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
