#!/usr/bin/env python3
"""The hostile clients of issue 14, against a gateway this script starts on loopback.

    python tools/attack.py [--cases all|name,name] [--workers 2] [scale flags, see --help]

Starts ``ebts-gateway run`` as a child process (its own data directory, loopback ports, a demo
gallery as the embedded defaults have, default ``[limits]``) with its outbound relay pointing at
a mailbox in this process, then runs each case in turn.  Per case it prints what came back to
the attacker, the daemon's RSS peak, the CPU seconds its worker processes spent, the p99 of
``/health`` probed every 50 ms from a separate process (source 127.0.0.3), and the latency of
an honest CAR sent one second into the flood by another agency from another address
(127.0.0.2): from the start of its SMTP session to its SRE in the mailbox.

Cases (defaults as in the issue; every count and size can be scaled down with flags):

- ``data-no-dot``: 8 SMTP sessions each send 60 MB of DATA and never the final dot;
- ``idle-sessions``: 300 SMTP sessions that say nothing;
- ``slow-data``: DATA at 1 byte/s;
- ``slowloris-soap``, ``slowloris-admin``: 300 HTTP connections each trickling request headers;
- ``j2k-car``: 6 CARs of ten 3999 x 3999 JPEG 2000 fingers (a few KB each);
- ``png-car``: a CAR of ten 3999 x 3999 16-bit RGBA PNG fingers;
- ``attachments``: one e-mail with 1,000 attachments;
- ``soap-200mb``: a SOAP request announcing and sending a 200 MB body;
- ``mime-nested``: MIME nested 5,000 deep;
- ``data-finish`` (only when named): the 8 sessions of ``data-no-dot`` end their DATA, each a
  complete e-mail with one 45 MB attachment (the issue's "when they finish").

Every socket is on 127.0.0.0/8; every case stops by itself (``--case-seconds``), the whole run
too (``--max-seconds``); the daemon is stopped at the end.  Targets of the issue on 2 cores:
RSS under 400 MB in every case, the honest CAR answered within 10 s, /health p99 under 100 ms.
"""

from __future__ import annotations

import argparse
import collections
import email.policy
import io
import os
import selectors
import shutil
import signal
import smtplib
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from email.message import EmailMessage
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.ansinist import read, write  # noqa: E402
from gateway.replay_io import Receiver  # noqa: E402

ATTACKER = "127.0.0.1"
HONEST = "127.0.0.2"
PROBER = "127.0.0.3"
ATTACK_ORI = "NY0303000"
HONEST_ORI = "PA0000000"

PROBE = """
import http.client, sys, time
port, source = int(sys.argv[1]), sys.argv[2]
sys.stdout = open(sys.argv[3], "w")
while True:
    t0 = time.perf_counter()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(source, 0))
        c.request("GET", "/health")
        c.getresponse().read()
        c.close()
        print(time.time(), time.perf_counter() - t0, flush=True)
    except OSError:
        print(time.time(), 5.0, flush=True)
    time.sleep(0.05)
"""

EXTRA_CASES = ("data-finish",)
CASES = (
    "data-no-dot",
    "idle-sessions",
    "slow-data",
    "slowloris-soap",
    "slowloris-admin",
    "j2k-car",
    "png-car",
    "attachments",
    "soap-200mb",
    "mime-nested",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect(port: int, source: str = ATTACKER, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(
        ("127.0.0.1", port), timeout=timeout, source_address=(source, 0)
    )
    return sock


def read_reply(sock: socket.socket) -> bytes:
    """One SMTP reply (its last line), or b"" when the connection closed."""
    data = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            return b"(no reply within the case)"
        except OSError:
            return data.strip().splitlines()[-1] if data.strip() else b""
        if not chunk:
            return data.strip().splitlines()[-1] if data.strip() else b""
        data += chunk
        lines = data.split(b"\r\n")
        for line in lines[:-1]:
            if line[3:4] == b" ":
                return line


def summary(replies) -> str:
    counts = collections.Counter(r.decode("ascii", "replace")[:70] or "(closed)" for r in replies)
    return "; ".join(f"{n} x {text}" for text, n in counts.most_common(3))


# -- the gateway under test -------------------------------------------------------------------
class Daemon:
    def __init__(self, work: Path, workers: int, galleries: Path | None = None):
        self.work = work
        self.galleries = galleries
        self.ports = {name: free_port() for name in ("smtp", "soap", "admin", "relay")}
        self.receiver = Receiver("127.0.0.1", self.ports["relay"])
        self.workers = workers
        self.proc: subprocess.Popen | None = None

    def config(self) -> str:
        from gateway import config

        p = self.ports
        text = (
            f'data_dir = "{self.work / "data"}"\nworkers = {self.workers}\n'
            f'[listen]\nsmtp = "tcp:{p["smtp"]}:interface=127.0.0.1"\n'
            f'soap = "tcp:{p["soap"]}:interface=127.0.0.1"\n'
            f'admin = "tcp:{p["admin"]}:interface=127.0.0.1"\n'
            f'[outbound]\nsmtp_relay = "127.0.0.1:{p["relay"]}"\n'
            f'[lesc]\nemail = "lesc@ice.example"\n'
            f'[[agency]]\nori = "{ATTACK_ORI}"\nresponse_email = "attacker@ny.example"\n'
            f'[[agency]]\nori = "{HONEST_ORI}"\nresponse_email = "bureau@pa.example"\n'
            f'[[jurisdiction]]\nori_prefix = "NY"\ndhs_activated = 2009-10-27\n'
        )
        if self.galleries is not None:  # the demo galleries of an earlier run (--galleries)
            from gateway.demo import POSITIONS

            g = self.galleries
            text += f'[gallery]\nfbi = "{g / "fbi-demo"}"\ndhs = "{g / "dhs-demo"}"\n'
            text += f"[matcher]\nsearch_positions = {list(POSITIONS)}\n"
        if "tls" in getattr(config, "_TOP", ()):  # TLS on by default: plain loopback here
            text += '[tls]\nmode = "off"\n'
        return text

    def start(self) -> None:
        self.receiver.start()
        path = self.work / "gateway.toml"
        path.write_text(self.config())
        log = open(self.work / "daemon.log", "wb")  # noqa: SIM115 - open for the child's life
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "--config", str(path)],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        deadline = time.time() + 300  # the first start builds the demo galleries
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the gateway exited; see {self.work / 'daemon.log'}")
            try:
                connect(self.ports["admin"], PROBER, 1).close()
                return
            except OSError:
                time.sleep(0.3)
        raise SystemExit("the gateway did not start within 300 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.receiver.stop()


class Monitor(threading.Thread):
    """Samples the daemon's RSS and its worker processes' CPU and RSS every 50 ms."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.tick = os.sysconf("SC_CLK_TCK")
        self.lock = threading.Lock()
        self.running = True
        self.reset()

    def reset(self) -> None:
        with getattr(self, "lock", threading.Lock()):
            self.rss_peak = 0
            self.worker_rss_peak = 0
            self.cpu_first: dict[int, float] = {}
            self.cpu_last: dict[int, float] = {}

    def run(self) -> None:
        while self.running:
            try:
                rss = _rss(self.pid)
            except OSError:
                return
            workers = _children(self.pid)
            with self.lock:
                self.rss_peak = max(self.rss_peak, rss)
                for pid in workers:
                    try:
                        cpu, wrss = _cpu(pid) / self.tick, _rss(pid)
                    except OSError:
                        continue
                    self.cpu_first.setdefault(pid, cpu)
                    self.cpu_last[pid] = cpu
                    self.worker_rss_peak = max(self.worker_rss_peak, wrss)
            time.sleep(0.05)

    def worker_cpu(self) -> float:
        with self.lock:
            return sum(self.cpu_last[p] - self.cpu_first[p] for p in self.cpu_last)


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _cpu(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    for child in list(out):
        out.extend(_children(child))
    return out


class Mailbox:
    """The answers the gateway sends, by TCR, with their arrival time."""

    def __init__(self, receiver: Receiver):
        self.receiver = receiver
        self.arrived: dict[str, tuple[float, str, bytes]] = {}
        self.cond = threading.Condition()
        self.running = True
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        while self.running:
            items = self.receiver.take()
            if items:
                now = time.perf_counter()
                with self.cond:
                    for tcr, tot, payload in items:
                        if tcr:
                            self.arrived[tcr] = (now, tot, payload)
                    self.cond.notify_all()
            time.sleep(0.01)

    def wait(self, tcn: str, timeout: float):
        deadline = time.time() + timeout
        with self.cond:
            while tcn not in self.arrived:
                left = deadline - time.time()
                if left <= 0:
                    return None
                self.cond.wait(left)
            return self.arrived[tcn]


# -- payloads ---------------------------------------------------------------------------------
def mime(attachments: list[bytes], sender: str = "station@ny.example") -> bytes:
    message = EmailMessage()
    message["From"], message["To"] = sender, "ebts@gateway.example"
    message["Subject"] = "EBTS submission"
    message.set_content("EBTS attached")
    for data in attachments:
        message.add_attachment(data, maintype="application", subtype="octet-stream")
    return message.as_bytes(policy=email.policy.SMTP)


def with_tcn(data: bytes, tcn: str) -> bytes:
    txn = read(data)
    txn.records[0]["1.009"] = tcn
    return write(txn)


def j2k_stream(side: int) -> bytes:
    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((side, side), 200, np.uint8)).save(
        buffer, "JPEG2000", quality_mode="rates", quality_layers=[2000], irreversible=True,
        no_jp2=True,
    )  # fmt: skip
    return buffer.getvalue()


def png_16bit_rgba(side: int) -> bytes:
    rows = zlib.compress((b"\x00" + b"\x7f\x00" * 4 * side) * side, 9)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", side, side, 16, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def image_car(base: bytes, stream: bytes, side: int, code: str, bits: str, tcn: str) -> bytes:
    txn = read(base)
    txn.records[0]["1.009"] = tcn
    for record in txn.records:
        if record.type == 14:
            record["14.006"], record["14.007"] = str(side), str(side)
            record["14.011"], record["14.012"] = code, bits
            record["14.999"] = stream
    return write(txn)


def smtp_send(port: int, data: bytes, source: str = ATTACKER, timeout: float = 120.0):
    """(code, text) of the DATA reply, or the error."""
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=timeout, source_address=(source, 0)) as c:
            c.ehlo()
            c.mail("station@ny.example")
            c.rcpt("ebts@gateway.example")
            code, text = c.data(data)
            return f"{code} {text.decode('ascii', 'replace')}"
    except smtplib.SMTPResponseException as exc:
        return f"{exc.smtp_code} {exc.smtp_error.decode('ascii', 'replace')}"
    except (OSError, smtplib.SMTPException) as exc:
        return f"error: {type(exc).__name__}"


# -- the cases --------------------------------------------------------------------------------
class Attack:
    def __init__(self, args, daemon: Daemon, mailbox: Mailbox, base_car: bytes):
        self.args = args
        self.daemon = daemon
        self.mailbox = mailbox
        self.base_car = base_car
        self.deadline = 0.0

    def left(self) -> float:
        return max(0.1, self.deadline - time.time())

    def _smtp_session(self, source: str = ATTACKER) -> socket.socket:
        sock = connect(self.daemon.ports["smtp"], source, timeout=self.left())
        read_reply(sock)
        for command in (b"EHLO attacker", b"MAIL FROM:<x@ny.example>", b"RCPT TO:<e@gw>", b"DATA"):
            sock.sendall(command + b"\r\n")
            read_reply(sock)
        return sock

    def data_no_dot(self) -> str:
        replies = []
        size = int(self.args.data_mb * 1024 * 1024)
        line = b"QUJD" * 19 + b"\r\n"
        block = line * (65536 // len(line))

        def session():
            try:
                sock = self._smtp_session()
                sock.sendall(b"Subject: big\r\nContent-Type: application/octet-stream\r\n\r\n")
                sent = 0
                while sent < size and time.time() < self.deadline:
                    sock.sendall(block)
                    sent += len(block)
                # no dot: what does the server do?  (a rate window and some, past the case)
                sock.settimeout(max(self.left(), 20.0))
                replies.append(read_reply(sock))
                sock.close()
            except OSError as exc:
                replies.append(f"error {type(exc).__name__}".encode())

        threads = [threading.Thread(target=session) for _ in range(self.args.sessions)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return summary(replies)

    def data_finish(self) -> str:
        payload = bytes(range(256)) * int(self.args.data_mb * 1024 * 1024 * 3 / 4 / 256)
        mail = mime([payload])
        replies: list[str] = []
        port = self.daemon.ports["smtp"]

        def session():
            replies.append(smtp_send(port, mail, timeout=max(self.left(), 120.0))[:40])

        threads = [threading.Thread(target=session) for _ in range(self.args.sessions)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return summary(r.encode() for r in replies)

    def idle_sessions(self) -> str:
        socks, replies = [], []
        for _ in range(self.args.idle):
            try:
                sock = connect(self.daemon.ports["smtp"], timeout=5)
                socks.append(sock)
            except OSError:
                replies.append(b"connect failed")
        for sock in socks:
            replies.append(read_reply(sock)[:30])
        time.sleep(min(self.args.hold, self.left()))
        for sock in socks:
            sock.close()
        return summary(replies)

    def slow_data(self) -> str:
        sock = self._smtp_session()
        sock.settimeout(0.01)
        reply = b""
        for byte in b"Subject: slow\r\n\r\n" + b"x" * 10_000:
            if time.time() > self.deadline:
                break
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            try:
                data = sock.recv(4096)
            except TimeoutError:
                data = None
            except OSError:
                data = b""
            if data is not None:
                reply = data.strip()
                break
            time.sleep(1.0)
        sock.close()
        return summary([reply])

    def slowloris(self, port: int) -> str:
        sel = selectors.DefaultSelector()
        replies = []
        socks = []
        for _ in range(self.args.slowloris):
            try:
                sock = connect(port, timeout=5)
                sock.sendall(b"POST /ngi/NativeEBTSService HTTP/1.1\r\nHost: x\r\n")
                sock.setblocking(False)
                sel.register(sock, selectors.EVENT_READ)
                socks.append(sock)
            except OSError:
                replies.append(b"connect failed")
        last = time.time()
        while sel.get_map() and time.time() < self.deadline:
            for key, _ in sel.select(timeout=0.5):
                sock = key.fileobj
                try:
                    data = sock.recv(4096)
                except OSError:
                    data = b""
                replies.append(data.split(b"\r\n", 1)[0] or b"(closed)")
                sel.unregister(sock)
                sock.close()
            if time.time() - last > 5:  # one more header line every 5 s
                last = time.time()
                for key in list(sel.get_map().values()):
                    try:
                        key.fileobj.sendall(b"X-Slow: 1\r\n")
                    except OSError:
                        pass
        still = len(sel.get_map())
        for key in list(sel.get_map().values()):
            key.fileobj.close()
        return summary(replies) + (f"; {still} still open at the case's end" if still else "")

    def prepare(self, case: str) -> None:
        """Build the case's payloads before its clock starts (the attacker's CPU is not the
        gateway's: this machine runs both)."""
        self.payloads = {}
        side = self.args.side
        if case in ("j2k-car", "png-car"):
            if case == "j2k-car":
                stream, code, count, tag = j2k_stream(side), "JP2", self.args.j2k_cars, "J2K"
            else:
                stream, code, count, tag = png_16bit_rgba(side), "PNG", 1, "PNG"
            tcns = [f"ATTACK-{tag}-{int(time.time())}-{i:03d}" for i in range(count)]
            cars = [image_car(self.base_car, stream, side, code, "8", tcn) for tcn in tcns]
            self.payloads = {"tcns": tcns, "mails": [mime([car]) for car in cars]}
            self.payloads["size"] = len(cars[0])
        elif case == "attachments":
            files = [b"not an EBTS file %d" % i for i in range(self.args.attachments)]
            self.payloads = {"mail": mime(files)}
        elif case == "mime-nested":
            depth = self.args.mime_depth
            parts = [b"MIME-Version: 1.0\r\nSubject: deep\r\n"]
            for i in range(depth):
                parts.append(
                    b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
                )
            parts.append(b"Content-Type: application/octet-stream\r\n\r\nxx\r\n")
            parts.extend(b"--b%d--\r\n" % i for i in reversed(range(depth)))
            self.payloads = {"mail": b"".join(parts)}

    def image_cars(self) -> str:
        tcns, mails = self.payloads["tcns"], self.payloads["mails"]
        replies = [smtp_send(self.daemon.ports["smtp"], mail) for mail in mails]
        answers = [self.mailbox.wait(tcn, self.left()) for tcn in tcns]
        texts = []
        for answer in answers:
            if answer is None:
                texts.append(b"no answer")
                continue
            _, tot, payload = answer
            msg = ""
            if tot == "ERRT":
                t2 = next(r for r in read(payload).records if r.type == 2)
                value = t2.value("2.060")
                msg = " " + (value if isinstance(value, str) else str(value))[:60]
            texts.append(f"{tot}{msg}".encode())
        size = self.payloads["size"]
        return f"{len(mails)} x {size} B; " + summary(texts) + f" (SMTP {replies[0][:3]})"

    def attachments(self) -> str:
        reply = smtp_send(self.daemon.ports["smtp"], self.payloads["mail"], timeout=self.left())
        return f"{len(reply)} octets: {reply[:90]}"

    def soap_200mb(self) -> str:
        size = int(self.args.soap_mb * 1024 * 1024)
        sock = connect(self.daemon.ports["soap"], timeout=self.left())
        sock.sendall(
            b"POST /ngi/NativeEBTSService HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
            b"Content-Length: %d\r\n\r\n" % size
        )
        sock.settimeout(0.0)
        block, sent, answer = b"A" * 65536, 0, b""
        while sent < size and time.time() < self.deadline:
            try:
                answer = sock.recv(4096)
                break
            except BlockingIOError:
                pass
            except OSError:
                break
            try:
                sock.settimeout(1.0)
                sock.sendall(block)
                sock.settimeout(0.0)
                sent += len(block)
            except OSError:
                break
        if not answer:
            sock.settimeout(self.left())
            try:
                answer = sock.recv(4096)
            except OSError:
                pass
        sock.close()
        status = answer.split(b"\r\n", 1)[0].decode("ascii", "replace") or "(closed)"
        return f"{status} after {sent / 1e6:.1f} MB of the body"

    def mime_nested(self) -> str:
        mail = self.payloads["mail"]
        return smtp_send(self.daemon.ports["smtp"], mail, timeout=self.left())[:90]

    def run(self, case: str) -> str:
        self.deadline = time.time() + self.args.case_seconds
        ports = self.daemon.ports
        return {
            "data-no-dot": self.data_no_dot,
            "data-finish": self.data_finish,
            "idle-sessions": self.idle_sessions,
            "slow-data": self.slow_data,
            "slowloris-soap": lambda: self.slowloris(ports["soap"]),
            "slowloris-admin": lambda: self.slowloris(ports["admin"]),
            "j2k-car": self.image_cars,
            "png-car": self.image_cars,
            "attachments": self.attachments,
            "soap-200mb": self.soap_200mb,
            "mime-nested": self.mime_nested,
        }[case]()


def _into(result: dict, function, *args) -> None:
    try:
        result["out"] = function(*args)
    except Exception as exc:  # noqa: BLE001 - a case that fails is reported, the run goes on
        result["out"] = f"(the case failed: {type(exc).__name__}: {exc})"


def honest_car(port: int, mailbox: Mailbox, car: bytes, tcn: str, timeout: float):
    """Seconds from the start of the SMTP session to the answer in the mailbox (None: none)."""
    started = time.perf_counter()
    reply = smtp_send(port, mime([with_tcn(car, tcn)], "station@pa.example"), HONEST)
    if not reply.startswith("250"):
        return None, reply[:40]
    got = mailbox.wait(tcn, timeout)
    if got is None:
        return None, "no answer"
    return got[0] - started, got[1]


def p99(values: list[float]) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(0.99 * len(values)))] if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cases", default="all", help=f"all, or some of: {', '.join(CASES + EXTRA_CASES)}"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sessions", type=int, default=8, help="data-no-dot sessions")
    parser.add_argument("--data-mb", type=float, default=60.0, help="MB per data-no-dot session")
    parser.add_argument("--idle", type=int, default=300, help="idle SMTP sessions")
    parser.add_argument("--hold", type=float, default=5.0, help="seconds idle sessions are held")
    parser.add_argument("--slowloris", type=int, default=300, help="connections per HTTP port")
    parser.add_argument("--j2k-cars", type=int, default=6)
    parser.add_argument("--side", type=int, default=3999, help="side of the attack fingers")
    parser.add_argument("--attachments", type=int, default=1000)
    parser.add_argument("--soap-mb", type=float, default=200.0)
    parser.add_argument("--mime-depth", type=int, default=5000)
    parser.add_argument("--case-seconds", type=float, default=45.0, help="bound of each case")
    parser.add_argument("--max-seconds", type=float, default=1200.0, help="bound of the run")
    parser.add_argument("--honest-timeout", type=float, default=60.0)
    parser.add_argument(
        "--galleries",
        type=Path,
        help="reuse the demo galleries of a kept run (its data/galleries folder)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args(argv)
    cases: tuple[str, ...] = ()
    for name in (c.strip() for c in args.cases.split(",")):  # "all" may be joined by extras
        cases += CASES if name == "all" else (name,)
    unknown = [c for c in cases if c not in CASES + EXTRA_CASES]
    if unknown:
        parser.error(f"unknown case(s): {', '.join(unknown)}")

    from gateway import synth

    honest = write(synth.car_transaction(7, impression=2, ori=HONEST_ORI))
    attack_base = write(synth.car_transaction(900, ori=ATTACK_ORI))
    work = Path(tempfile.mkdtemp(prefix="ebts-attack-"))
    daemon = Daemon(work, args.workers, args.galleries)
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("--max-seconds")))
    signal.alarm(int(args.max_seconds))
    prober = None
    try:
        daemon.start()
        mailbox = Mailbox(daemon.receiver)
        # warm-up: the workers start and load the galleries (not counted)
        latency, tot = honest_car(daemon.ports["smtp"], mailbox, honest, "HONEST-WARMUP-1", 300)
        print(f"gateway up (pid {daemon.proc.pid}); warm-up CAR: {tot}", flush=True)
        probe_log = work / "health.txt"  # a file: a pipe left unread would stop the prober
        monitor = Monitor(daemon.proc.pid)
        monitor.start()
        prober = subprocess.Popen(
            [sys.executable, "-c", PROBE, str(daemon.ports["admin"]), PROBER, str(probe_log)]
        )
        attack = Attack(args, daemon, mailbox, attack_base)
        rows = []
        for n, case in enumerate(cases, start=1):
            time.sleep(1.0)  # the previous case's connections close
            attack.prepare(case)
            monitor.reset()
            started = time.time()
            result: dict = {}
            flood = threading.Thread(target=_into, args=(result, attack.run, case))
            flood.start()
            time.sleep(1.0)
            latency, tot = honest_car(
                daemon.ports["smtp"], mailbox, honest, f"HONEST-{n:02d}-{int(started)}",
                args.honest_timeout,
            )  # fmt: skip
            flood.join()
            rows.append(
                {
                    "case": case,
                    "started": started,
                    "ended": time.time(),
                    "out": result.get("out", "(the case failed)"),
                    "rss": monitor.rss_peak / 2**20,
                    "wrss": monitor.worker_rss_peak / 2**20,
                    "cpu": monitor.worker_cpu(),
                    "honest": latency,
                    "honest_tot": tot,
                }
            )
            print(f"  {case}: {rows[-1]['out']}", flush=True)
        monitor.running = False
        prober.terminate()
        prober.wait()
        probes = [
            tuple(map(float, line.split()))
            for line in probe_log.read_text().splitlines()
            if len(line.split()) == 2
        ]
        print()
        print(
            f"{'case':<16} {'RSS MB':>7} {'wkr RSS':>7} {'wkr CPU s':>9} {'/health p99 ms':>15} "
            f"{'honest CAR s':>12}  what came back"
        )
        for row in rows:
            window = [lat for at, lat in probes if row["started"] <= at <= row["ended"]]
            honest_text = (
                f"{row['honest']:.2f} {row['honest_tot']}" if row["honest"] is not None
                else str(row["honest_tot"])
            )  # fmt: skip
            print(
                f"{row['case']:<16} {row['rss']:>7.0f} {row['wrss']:>7.0f} {row['cpu']:>9.1f} "
                f"{1000 * p99(window):>9.0f} ({len(window):>3}) {honest_text:>12}  {row['out']}"
            )
        return 0
    finally:
        signal.alarm(0)
        if prober is not None and prober.poll() is None:
            prober.terminate()
        daemon.stop()
        if args.keep:
            print(f"data kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
