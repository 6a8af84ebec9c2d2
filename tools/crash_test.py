#!/usr/bin/env python3
"""Crash test (on demand, not in CI): CARs under load while the daemon is killed with -9.

Starts ``ebts-gateway run`` as a child on loopback ports with its relay pointing at a mailbox in
this process, submits ``--count`` CARs from ``--clients`` SMTP clients, and kills the daemon
(SIGKILL) at random moments, restarting it each time.  A client that gets no 250 for DATA
resends later (the transaction was not acknowledged); every 250 counts as one accepted
submission.  At the end it waits for the answers and reports:

- lost: accepted submissions (by TCN) without any answer;
- duplicated: answers beyond the accepted submissions of a TCN (a resubmission after a lost
  250 is a second accepted submission and is answered again, by design);
- redelivered: identical Message-IDs received twice (a crash between the relay's 250 and the
  journal's SENT mark: the receiver can drop these by Message-ID);
- audit: ``ebts-gateway audit verify`` on the killed-and-restarted journal, and one
  ``submission.accepted`` audit record per accepted message (they commit together).

    python tools/crash_test.py --count 1000 --clients 8 --kill-every 4
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from email.message import EmailMessage
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.ansinist import read, write  # noqa: E402
from gateway.replay_io import Receiver, client_context, demo_identity  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def car_template() -> bytes:
    from tests.integration.cars import make_car

    return make_car("CRASH-0000000000", fingers=1)


class Daemon:
    def __init__(
        self, workdir: Path, smtp_port: int, admin_port: int, relay_port: int, threshold=None
    ):
        self.config = workdir / "gateway.toml"
        limits = "" if threshold is None else f"[limits]\nspool_threshold = {threshold}\n"
        self.config.write_text(
            f'data_dir = "{workdir / "data"}"\nworkers = 2\n'
            f'[listen]\nsmtp = "tcp:{smtp_port}:interface=127.0.0.1"\n'
            f'admin = "tcp:{admin_port}:interface=127.0.0.1"\n'
            f'soap = "tcp:{free_port()}:interface=127.0.0.1"\n'
            f'[outbound]\nsmtp_relay = "127.0.0.1:{relay_port}"\nretry_initial = 0.5\n'
            "retry_max = 5.0\n[gallery]\ndemo = false\n"
            # TLS on (the gateway's default): the client presents the identity the gateway
            # issues for this agency on its first start
            '[[agency]]\nori = "NY0303000"\nresponse_email = "crash@localhost"\n' + limits
        )
        self.data_dir = workdir / "data"
        self.smtp_port = smtp_port
        self.log = open(workdir / "daemon.log", "ab")  # noqa: SIM115
        self.proc: subprocess.Popen | None = None
        self.kills = 0

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "--config", str(self.config)],
            stdout=self.log,
            stderr=self.log,
            cwd=str(REPO),
            start_new_session=True,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.smtp_port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the daemon did not start; see daemon.log")

    def kill(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the daemon and its workers
            self.proc.wait()
            self.kills += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--kill-every", type=float, default=4.0, help="mean seconds between kills")
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="seconds to wait for answers after the last submission",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--store-threshold",
        type=int,
        default=None,
        help="[limits] spool_threshold: payloads above it are stored by the store thread "
        "(0: every CAR; default: the gateway's)",
    )
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="ebts-crash-"))
    relay = free_port()
    receiver = Receiver("127.0.0.1", relay)
    receiver.start()
    daemon = Daemon(workdir, free_port(), free_port(), relay, args.store_threshold)
    daemon.start()
    cert, key, ca = demo_identity(daemon.data_dir, "NY0303000")
    context = client_context(cert, key, ca)

    template = read(car_template())
    todo = collections.deque(f"CRASH-{i:010d}" for i in range(args.count))
    acks: collections.Counter = collections.Counter()
    lock = threading.Lock()
    done = threading.Event()

    def payload(tcn: str) -> bytes:
        txn = read(write(template))
        txn.records[0]["1.009"] = tcn
        return write(txn)

    def client() -> None:
        while True:
            with lock:
                if not todo:
                    return
                tcn = todo.popleft()
            message = EmailMessage()
            message["From"], message["To"] = "crash@localhost", "ebts@gateway"
            message["Subject"] = "crash test"
            message.set_content("EBTS attached")
            message.add_attachment(
                payload(tcn), maintype="application", subtype="octet-stream", filename=f"{tcn}.eft"
            )
            try:
                with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as smtp:
                    smtp.starttls(context=context)
                    smtp.send_message(message)
                with lock:
                    acks[tcn] += 1
            except (OSError, smtplib.SMTPException):
                with lock:
                    todo.append(tcn)  # not acknowledged: send again later
                time.sleep(0.2)

    def killer() -> None:
        while not done.wait(rng.expovariate(1 / args.kill_every)):
            daemon.kill()
            daemon.start()

    started = time.time()
    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for t in threads:
        t.start()
    chaos = threading.Thread(target=killer)
    chaos.start()
    for t in threads:
        t.join()
    done.set()
    chaos.join()
    submitted = time.time() - started
    print(
        f"{sum(acks.values())} accepted submissions of {len(acks)} TCNs in {submitted:.0f} s, "
        f"{daemon.kills} kills (-9)"
    )

    answers: collections.Counter = collections.Counter()
    deadline = time.time() + args.timeout
    while time.time() < deadline:
        for tcr, _tot, _payload in receiver.take():
            answers[tcr] += 1
        if all(answers[t] >= n for t, n in acks.items()):
            break
        time.sleep(0.5)
    time.sleep(5)
    for tcr, _tot, _payload in receiver.take():
        answers[tcr] += 1
    daemon.stop()
    receiver.stop()

    # The journal is the truth of what was accepted (a 250 can be lost with the connection).
    import sqlite3

    db = sqlite3.connect(str(workdir / "data" / "journal.sqlite3"))
    accepted = collections.Counter(
        dict(db.execute("SELECT tcn, COUNT(*) FROM messages GROUP BY tcn"))
    )
    states = dict(db.execute("SELECT state, COUNT(*) FROM messages GROUP BY state"))
    (audited,) = db.execute(
        "SELECT COUNT(*) FROM audit WHERE event = 'submission.accepted'"
    ).fetchone()
    db.close()
    verify = subprocess.run(
        [sys.executable, "-m", "gateway", "audit", "verify", "--config", str(daemon.config)],
        capture_output=True,
        text=True,
        cwd=str(REPO),
    )
    lost = sorted(t for t in acks if answers[t] == 0)
    unanswered = sorted(t for t, n in accepted.items() if answers[t] < n)
    distinct: dict[str, set] = collections.defaultdict(set)
    for tcr, message_id in receiver.deliveries:
        distinct[tcr].add(message_id)
    redelivered = sum(answers.values()) - sum(len(ids) for ids in distinct.values())
    duplicated = sum(max(0, len(distinct[t]) - accepted[t]) for t in distinct)
    print(f"journal: {sum(accepted.values())} accepted messages, states {states}")
    print(f"answers received: {sum(answers.values())}")
    print(f"lost (acknowledged to the client, never answered): {len(lost)} {lost[:10]}")
    print(f"accepted submissions without their answer: {len(unanswered)} {unanswered[:10]}")
    print(f"redelivered (same Message-ID again; a receiver drops these): {redelivered}")
    print(f"duplicated (distinct answers beyond accepted submissions): {duplicated}")
    audit_ok = verify.returncode == 0 and audited == sum(accepted.values())
    chain = (verify.stdout + verify.stderr).strip()
    print(f"audit: {chain}; {audited} submission.accepted records")
    print(f"work dir (journal, routing log, daemon log): {workdir}")
    return 0 if not lost and not unanswered and not duplicated and audit_ok else 1


if __name__ == "__main__":
    sys.exit(main())
