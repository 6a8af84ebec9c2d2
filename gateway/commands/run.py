"""``ebts-gateway run [--config FILE]``: the daemon (embedded defaults without a config)."""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any

NAME = "run"
SWITCH_INTERVAL = 0.0005  # seconds: see sys.setswitchinterval in run()
HELP = "run the gateway daemon (SMTP intake, pipeline, delivery, admin dashboard)"
DESCRIPTION = """\
Run the gateway daemon: SMTP intake (default 127.0.0.1:2525), SOAP/HTTP (127.0.0.1:8080), the
admin dashboard and JSON API (127.0.0.1:8081), the processing pipeline and outbound delivery
(relay 127.0.0.1:2526). Addresses, TLS and everything else come from --config (TOML, every key
in examples/gateway.toml); without it, the embedded defaults, data in ./ebts-data. The log names
each listener with its address. On a fresh data directory the demo galleries are built in the
background; submissions are accepted meanwhile and answered when they are ready.

SIGINT (Ctrl-C) and SIGTERM stop it cleanly: listeners close, accepted messages not yet
answered are taken up at the next start.

exit status: 0 stopped by a signal; 1 a listener could not open its port (the message names the
listener and address) or the demo galleries could not be built; 2 configuration error (the
message names the key) or the data directory cannot be used (another daemon runs on it, its
journal is damaged...)."""


def add_arguments(parser) -> None:
    parser.add_argument("--config", help="TOML configuration (default: embedded defaults)")
    parser.add_argument("--data-dir", help="override data_dir of the configuration")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def run(args) -> int:
    from gateway.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"ebts-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.data_dir:
        import dataclasses
        from pathlib import Path

        config = dataclasses.replace(config, data_dir=Path(args.data_dir).resolve())
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    _bridge_twisted_log(verbose=args.verbose)
    try:
        held = _hold_data_dir(config.data_dir)
    except OSError as exc:
        print(f"ebts-gateway: cannot start: {exc}", file=sys.stderr)
        return 2
    try:
        return _serve(config)
    finally:
        os.close(held)


def _hold_data_dir(data_dir) -> int:
    """Lock ``DATA_DIR/daemon.lock`` for this daemon's life (the kernel drops it with the
    process, kill -9 included); the descriptor is not inherited by worker processes.

    A second daemon on the same data directory would take up the first one's unanswered
    messages as a restart does (processed and answered twice), send its deliveries again and
    clear its spool of messages still arriving: it stops at once instead (exit 2)."""
    import fcntl
    from pathlib import Path

    from gateway.store.crypto import ensure_private_dir

    ensure_private_dir(Path(data_dir))
    path = Path(data_dir) / "daemon.lock"
    fd = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise OSError(
            f"data directory {data_dir} is in use by another ebts-gateway run (pid {holder}, "
            f"{path}): stop it first, or give this one its own data_dir"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode("ascii"))
    return fd


def _serve(config) -> int:
    from gateway.service import (
        ListenError,
        build_gateway,
        reactor,  # typed Any: the reactor's interfaces are zope ones
    )

    try:
        gateway = build_gateway(config)
    except (OSError, ValueError) as exc:
        print(f"ebts-gateway: cannot start: {exc}", file=sys.stderr)
        return 2
    failures: list[str] = []

    def started():
        try:
            gateway.startService()
        except ListenError as exc:
            failures.append(str(exc))
            reactor.stop()

    def stopping():
        # A second Ctrl-C while stopping: the stop is under way (Twisted's handler would log
        # ReactorNotRunning with a traceback).
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: logging.getLogger("gateway").info("still stopping"))

    # The parser and store threads give the GIL back after at most this long (Python's
    # default: 5 ms).  The reactor needs it again after each socket or file call, and each
    # such wait was up to 5 ms while a large message was parsed or stored (issue 14).
    sys.setswitchinterval(SWITCH_INTERVAL)
    reactor.callWhenRunning(started)
    reactor.addSystemEventTrigger("before", "shutdown", stopping)
    reactor.addSystemEventTrigger("before", "shutdown", gateway.stopService)
    reactor.run()  # SIGINT / SIGTERM stop the reactor; stopService runs before it ends
    for failure in failures:
        print(f"ebts-gateway: {failure}", file=sys.stderr)
    return 1 if failures else gateway.exit_code


def _bridge_twisted_log(*, verbose: bool) -> None:
    """Twisted's own log events go to Python logging (logger ``twisted``).

    Its routine chatter ("Starting factory", "Site starting on") is below WARNING: shown with
    ``--verbose``; the gateway logs its own listener lines.
    """
    from twisted.logger import STDLibLogObserver, globalLogBeginner

    logging.getLogger("twisted").setLevel(logging.DEBUG if verbose else logging.WARNING)
    observer: Any = STDLibLogObserver(name="twisted")  # an ILogObserver (zope interface)
    globalLogBeginner.beginLoggingTo([observer], discardBuffer=True, redirectStandardIO=False)
