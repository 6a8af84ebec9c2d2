"""``ebts-gateway run [--config FILE]``: the daemon (embedded defaults without a config)."""

from __future__ import annotations

import logging
import sys

NAME = "run"
HELP = "run the gateway daemon (SMTP intake, pipeline, delivery, admin dashboard)"


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
    from twisted.internet import reactor

    from gateway.service import build_gateway

    try:
        gateway = build_gateway(config)
    except (OSError, ValueError) as exc:
        print(f"ebts-gateway: cannot start: {exc}", file=sys.stderr)
        return 2
    failures = []

    def started():
        gateway.startService()
        for name, svc in gateway.ports.items():
            waiting = getattr(svc, "_waitingForPort", None)
            if waiting is not None:
                waiting.addErrback(lambda f, n=name: (failures.append((n, f)), reactor.stop()))

    reactor.callWhenRunning(started)
    reactor.addSystemEventTrigger("before", "shutdown", gateway.stopService)
    reactor.run()  # SIGINT / SIGTERM stop the reactor cleanly
    for name, failure in failures:
        print(f"ebts-gateway: cannot listen ({name}): {failure.getErrorMessage()}", file=sys.stderr)
    return 1 if failures else 0
