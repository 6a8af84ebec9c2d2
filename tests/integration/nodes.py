"""Gateway nodes as child processes (``ebts-gateway run``) for the multi-node test and
benchmarks/scale.py --nodes: loopback listeners, TLS off, answers relayed to a local mailbox,
the journal on one PostgreSQL database (``url``) or, without it, each node's own SQLite file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

from gateway.ansinist import read, write

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    def __init__(
        self,
        workdir: Path,
        name: str,
        url: str | None,
        key_file: Path,
        relay: int,
        *,
        lease: float = 30.0,
        workers: int = 1,
    ):
        self.name = name
        self.smtp_port = _free_port()
        self.config = workdir / f"{name}.toml"
        store = (
            f'[store]\nurl = "{url}"\nnode = "{name}"\nkey_file = "{key_file}"\n'
            f"lease_seconds = {lease}\n"
            if url
            else ""
        )
        self.config.write_text(
            f'data_dir = "{workdir / name}"\nworkers = {workers}\n'
            f'[listen]\nsmtp = "tcp:{self.smtp_port}:interface=127.0.0.1"\n'
            f'admin = "tcp:{_free_port()}:interface=127.0.0.1"\n'
            f'soap = "tcp:{_free_port()}:interface=127.0.0.1"\n'
            f"{store}"
            f'[outbound]\nsmtp_relay = "127.0.0.1:{relay}"\nretry_initial = 0.5\n'
            'retry_max = 2.0\n[gallery]\ndemo = false\n[tls]\nmode = "off"\n'
            '[[agency]]\nori = "NY0303000"\nresponse_email = "bureau@ny.example"\n'
        )
        self.log = open(workdir / f"{name}.log", "ab")  # noqa: SIM115
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "--config", str(self.config)],
            stdout=self.log,
            stderr=self.log,
            cwd=str(REPO),
            start_new_session=True,
        )
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node {self.name} exited {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.smtp_port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"node {self.name} did not start")

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)  # the daemon and its worker processes
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def car_mail(template: bytes, tcn: str, subject: str) -> EmailMessage:
    """A submission e-mail carrying ``template`` (a CAR) under TCN ``tcn`` (1.009)."""
    txn = read(template)
    txn.records[0]["1.009"] = tcn
    message = EmailMessage()
    message["From"], message["To"] = "livescan@ny.example", "ident@gateway.example"
    message["Subject"] = subject
    message.set_content("EBTS attached")
    message.add_attachment(
        write(txn), maintype="application", subtype="octet-stream", filename="c.eft"
    )
    return message
