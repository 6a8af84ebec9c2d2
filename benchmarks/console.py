#!/usr/bin/env python3
"""The admin console on a journal of 100,000 messages: API and page times (target: under 1 s).

Builds the journal through the store API (:class:`gateway.store.journal.Journal`: accept,
identify, advance, respond, delivered / delivery_failed, in batches of one commit each), with
the journal's clock moved back so the messages spread over the last ``--hours`` (default 24):
40 ORIs, CAR / CNA / FANC, SRE hits and no-hits, ERRTs, duplicates, failed deliveries and a
few unanswered.  The journal is cached under ``benchmarks/out/console-N`` (built once).

Then it starts ``ebts-gateway run`` on that data directory (loopback, ``[tls] mode = "off"``),
signs in as an operator and times each URL ``--repeat`` times (median and largest, in ms):
the admin API (the message browser's first page with its total, filtered pages, the console's
overview and outcome JSON, a message view) and the pages (Overview with its six SVG charts,
the browser, a message).  The reference peer of the same run is the pre-console admin API,
``/api/stats`` (counts per state; the old dashboard's query) and ``/health``.

With ``--browser`` (Debian ``chromium`` and ``chromium-driver``, pip ``selenium``), headless
Chromium with no network beyond the gateway also loads the Overview and the browser page and
reports the time until the page is complete (Navigation Timing) and until the browser's rows
are rendered.

    python benchmarks/console.py --messages 100000 --repeat 7 --browser
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from unittest import mock

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
OUT = REPO / "benchmarks" / "out"

from gateway.store import journal as journal_module  # noqa: E402
from gateway.store.journal import Journal  # noqa: E402

PASSWORD = "a long benchmark passphrase"
ORIS = [f"{state}{n:07d}" for state in ("NY", "WV", "TX", "CA") for n in range(10)]


class Clock:
    """The journal's ``time.time()`` during the build (the rest of ``time`` untouched)."""

    def __init__(self, now: float):
        self.now = now

    def time(self) -> float:
        return self.now

    def __getattr__(self, name):
        return getattr(time, name)


def build(data: Path, count: int, hours: float, seed: int = 1) -> None:
    """A journal of ``count`` answered (mostly) messages over the last ``hours``."""
    rng = random.Random(seed)
    data.mkdir(parents=True, exist_ok=True)
    end = time.time()
    start = end - hours * 3600
    clock = Clock(start)
    started = time.perf_counter()
    with mock.patch.object(journal_module, "time", clock):
        journal = Journal(data / "journal.sqlite3", data / "routing.log")
        batch = 500
        first_by_tcn: dict[tuple, str] = {}
        for base in range(0, count, batch):
            with journal.transaction():
                for n in range(base, min(count, base + batch)):
                    clock.now = start + (end - start) * n / count
                    _one(journal, rng, clock, n, first_by_tcn)
            if base % 10000 == 0:
                print(f"  {base:>7} messages ({time.perf_counter() - started:.0f} s)", flush=True)
        journal.close()
    print(f"built {count} messages in {time.perf_counter() - started:.0f} s")


def _one(journal: Journal, rng: random.Random, clock: Clock, n: int, first: dict) -> None:
    ori = rng.choice(ORIS)
    tot = rng.choices(["CAR", "CNA", "FANC"], [80, 10, 10])[0]
    duplicate = n > 100 and rng.random() < 0.03
    tcn = f"{ori[:2]}-BENCH-{n:08d}"
    if duplicate:
        (ori, tcn), previous = rng.choice(list(first.items())[-100:])
    payload = f"benchmark submission {n} {rng.random()}".encode()
    msg_id = journal.accept(payload, transport="smtp", peer="127.0.0.1", agency=ori)
    journal.identify(msg_id, ori=ori, tcn=tcn, tot=tot, dai="WVIAFIS0Z", encoding="traditional")
    if n >= 0 and rng.random() < 0.005:  # still being processed
        journal.advance(msg_id, "DECODED", outcome="12 records", duration_ms=3.0)
        return
    clock.now += rng.uniform(0.05, 0.4)
    if duplicate:
        journal.respond(
            msg_id,
            response=b"SRE again",
            response_tot="SRE",
            response_tcn=f"GW{n:08d}",
            deliveries=[("smtp", f"bureau@{ori.lower()}.example", {"tot": "SRE"})],
            duplicate_of=previous,
        )
        return
    first[(ori, tcn)] = msg_id
    journal.advance(msg_id, "DECODED", outcome="12 records", duration_ms=3.0)
    if rng.random() < 0.12:
        journal.advance(
            msg_id,
            "REJECTED",
            outcome="2 errors",
            duration_ms=8.0,
            summary={"findings": [{"severity": "error", "code": "L2", "location": "2.022"}]},
        )
        response, response_tot = b"ERRT", "ERRT"
    else:
        journal.advance(msg_id, "VALIDATED", outcome="0 warnings", duration_ms=8.0)
        hit = rng.random() < 0.25
        clock.now += rng.uniform(0.2, 1.5)
        journal.advance(
            msg_id,
            "SEARCHED",
            outcome="hit" if hit else "no hit",
            duration_ms=300.0,
            destination="FBI",
            summary={"fbi": {"hit": hit, "candidate": "S1", "score": 0.5}, "fingers": [1, 2]},
        )
        journal.advance(msg_id, "ROUTED", outcome="SRE", duration_ms=5.0)
        response, response_tot = (b"SRE", "SRE") if tot != "CNA" else (None, None)
    journal.respond(
        msg_id,
        response=response,
        response_tot=response_tot,
        response_tcn=f"GW{n:08d}" if response else None,
        deliveries=[("smtp", f"bureau@{ori.lower()}.example", {"tot": response_tot})],
        duration_ms=500.0,
    )
    if response is None:
        return
    (item,) = journal.outbound_for(msg_id)
    clock.now += rng.uniform(0.05, 0.3)
    if rng.random() < 0.01:
        journal.delivery_failed(item, "550 mailbox unavailable", retry_at=None)
    else:
        journal.delivered(item, duration_ms=20.0)


# -- the timed part --------------------------------------------------------------------------
def write_cost(count: int = 800) -> None:
    """What the counters add to a write: accept + identify + respond of ``count`` messages on a
    fresh journal, with the counters subscribed and, as the reference, without them."""

    def run(path: Path, counted: bool) -> tuple[float, float]:
        journal = Journal(path)
        if not counted:
            journal._subscribers.remove(journal.counters.on_event)
        cpu, wall = time.process_time(), time.perf_counter()
        for n in range(count):
            msg_id = journal.accept(os.urandom(16), transport="smtp", agency="NY0303000")
            journal.identify(
                msg_id, ori="NY0303000", tcn=f"T{n}", tot="CAR", dai="X", encoding="traditional"
            )
            journal.respond(
                msg_id,
                response=b"SRE",
                response_tot="SRE",
                response_tcn="GW1",
                deliveries=[("smtp", "bureau@ny.example", {"tot": "SRE"})],
            )
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        journal.close()
        return cpu / count * 1000, wall / count * 1000

    with tempfile.TemporaryDirectory() as tmp:
        print(f"\nper message written (accept, identify, respond; {count} messages), ms:")
        for label, counted in (("reference: without the counters", False), ("with them", True)):
            cpu, wall = run(Path(tmp) / f"{label[:4]}.sqlite3", counted)
            print(f"  {label:34} CPU {cpu:6.3f}  wall {wall:6.3f}")


def recount(data: Path) -> None:
    """Time the counters' reference recount (what a journal made before the counters gets,
    once, at its first open) and check the counters kept per write equal it."""
    from gateway.store import counters

    journal = Journal(data / "journal.sqlite3")
    try:
        now = time.time()
        with journal.transaction():
            # both sides without the rows no window reaches any more (the counters drop old
            # minute buckets as they go; a rebuild writes every bucket of the journal's life)
            counters.prune(journal.db, now)
        kept = counters.stored(journal.db)
        with journal.transaction():
            t = time.perf_counter()
            counters.rebuild(journal.db)
            took = time.perf_counter() - t
            counters.prune(journal.db, now)
        same = "equal" if counters.stored(journal.db) == kept else "NOT EQUAL"
        print(f"counters rebuilt from a full recount in {took:.2f} s ({same} to those kept)")
    finally:
        journal.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(
    port: int, path: str, cookie: str | None = None, method="GET", body=None, headers=None
):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        h = {"Accept": "application/json", **(headers or {})}
        if cookie:
            h["Cookie"] = cookie
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def _timed(port: int, cookie: str, path: str, repeat: int) -> tuple[float, float, float, int]:
    """(first, median, largest) in ms and the size: the first request is cold (the console
    keeps the Overview's figures a few seconds), the others come 0.5 s apart."""
    times = []
    size = 0
    for n in range(repeat):
        if n:
            time.sleep(0.5)
        t = time.perf_counter()
        status, _h, body = _request(port, path, cookie, headers={"Accept": "text/html"})
        times.append((time.perf_counter() - t) * 1000)
        assert status == 200, (path, status, body[:200])
        size = len(body)
    return times[0], statistics.median(times), max(times), size


def serve(data: Path, repeat: int, browser: bool) -> None:
    port = _free_port()
    config = Path(tempfile.mkdtemp()) / "gateway.toml"
    config.write_text(
        f'data_dir = "{data}"\nworkers = 1\n[listen]\n'
        f'smtp = "tcp:{_free_port()}:interface=127.0.0.1"\n'
        f'soap = "tcp:{_free_port()}:interface=127.0.0.1"\n'
        f'admin = "tcp:{port}:interface=127.0.0.1"\n'
        '[gallery]\ndemo = false\n[tls]\nmode = "off"\n'
    )
    cli = [sys.executable, "-m", "gateway"]
    subprocess.run(
        [*cli, "user", "add", "bench", "--role", "operator", "--config", str(config)],
        input=PASSWORD.encode(),
        check=False,
        capture_output=True,
    )
    daemon = subprocess.Popen(
        [*cli, "run", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.time() + 120
        while True:
            try:
                if _request(port, "/health")[0] == 200:
                    break
            except OSError:
                pass
            if daemon.poll() is not None or time.time() > deadline:
                raise SystemExit(f"the gateway did not start: {daemon.stderr.read()[-2000:]!r}")
            time.sleep(0.2)
        form = urllib.parse.urlencode({"username": "bench", "password": PASSWORD})
        status, headers, body = _request(
            port,
            "/login",
            method="POST",
            body=form,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert status == 200, body
        cookie = headers["set-cookie"].split(";", 1)[0]
        page = json.loads(_request(port, "/api/messages?limit=50", cookie)[2])
        total = page["total"]
        ids = [m["id"] for m in page["messages"]]
        outcomes = "&".join(f"id={i}" for i in ids)
        one = ids[len(ids) // 2]
        rows = [
            ("reference: /health", "/health"),
            ("reference: /api/stats (counts per state)", "/api/stats"),
            ("API: first page of 50 with the total", "/api/messages?limit=50"),
            ("API: page 100 (offset 4950)", "/api/messages?limit=50&offset=4950"),
            ("API: ORI prefix + outcome=errt", "/api/messages?ori=ny&outcome=errt&limit=50"),
            ("API: since/until one hour", "/api/messages?since=" + _hour_ago() + "&limit=50"),
            ("API: console overview JSON", "/api/console/overview"),
            ("API: outcomes of 50 rows", "/api/console/outcomes?" + outcomes),
            ("API: console message JSON", f"/api/console/messages/{one}"),
            ("page: Overview (6 SVG charts)", "/"),
            ("page: Overview refresh (?part=main)", "/?part=main"),
            ("page: Overview, figures kept (every 0.5 s)", "/?part=main"),
            ("page: Message browser (shell)", "/messages"),
            ("page: Message view", f"/message/{one}"),
        ]
        load = os.getloadavg()[0]
        print(f"\njournal: {total} messages; each URL {repeat} times (ms); load average {load:.1f}")
        print(f"{'what':46} {'first':>8} {'median':>8} {'max':>8} {'bytes':>9}")
        worst = 0.0
        for label, path in rows:
            first, median, largest, size = _timed(port, cookie, path, repeat)
            if not label.startswith("reference"):
                worst = max(worst, largest)
            print(f"{label:46} {first:8.1f} {median:8.1f} {largest:8.1f} {size:9d}")
        verdict = "under" if worst < 1000 else "OVER"
        print(f"largest console time: {worst:.0f} ms ({verdict} the 1 s target)")
        if browser:
            _browser(port, cookie)
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()


def _hour_ago() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))


def _browser(port: int, cookie: str) -> None:
    import shutil

    os.environ.setdefault("SE_OFFLINE", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = Options()
    options.binary_location = shutil.which("chromium")
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    base = f"http://127.0.0.1:{port}"
    try:
        driver.get(base + "/login")
        name, value = cookie.split("=", 1)
        driver.add_cookie({"name": name, "value": value, "path": "/"})
        print("\nheadless Chromium, no network beyond the gateway (ms; 3 loads each):")
        for label, path, ready in (
            ("Overview: load complete", "/", "document.querySelectorAll('svg.chart').length == 6"),
            (
                "Message browser: 50 rows with outcomes shown",
                "/messages",
                "document.querySelectorAll('#msgs tr.row').length == 50 && "
                "document.querySelector('#msgs td.o').textContent.length > 0",
            ),
        ):
            times = []
            for _ in range(3):
                t = time.perf_counter()
                driver.get(base + path)
                WebDriverWait(driver, 30).until(lambda d, r=ready: d.execute_script("return " + r))
                times.append((time.perf_counter() - t) * 1000)
            print(f"{label:46} {statistics.median(times):8.1f} {max(times):8.1f}")
    finally:
        driver.quit()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--browser", action="store_true", help="also time headless Chromium")
    parser.add_argument("--rebuild", action="store_true", help="build the journal again")
    args = parser.parse_args()
    data = OUT / f"console-{args.messages}"
    if args.rebuild and data.exists():
        import shutil

        shutil.rmtree(data)
    if not (data / "journal.sqlite3").exists():
        build(data, args.messages, args.hours)
    recount(data)
    write_cost()
    serve(data, args.repeat, args.browser)
    return 0


if __name__ == "__main__":
    sys.exit(main())
