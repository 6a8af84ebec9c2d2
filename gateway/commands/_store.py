"""Helpers of the commands that work on the journal (``keys``, ``audit``, ``user``)."""

from __future__ import annotations

import sys
from pathlib import Path


def add_config_arguments(parser) -> None:
    parser.add_argument("--config", help="TOML configuration (default: embedded defaults)")
    parser.add_argument("--data-dir", help="override data_dir of the configuration")


def load(args):
    """The configuration, or None after printing the error."""
    import dataclasses

    from gateway.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"ebts-gateway: configuration error: {exc}", file=sys.stderr)
        return None
    if args.data_dir:
        config = dataclasses.replace(config, data_dir=Path(args.data_dir).resolve())
    return config


def open_journal(args, *, lock: str = "shared", create: bool = False):
    """(journal, config) of the configured data directory, or None after printing why.

    ``create``: make the journal (and its keys) when there is none yet (users may be added
    before the first start)."""
    from gateway.store.crypto import KeyFileError
    from gateway.store.journal import Journal, JournalLocked

    config = load(args)
    if config is None:
        return None
    path = Path(config.data_dir) / "journal.sqlite3"
    if not path.exists() and not create and not config.store.url:
        print(f"ebts-gateway: no journal at {path}", file=sys.stderr)
        return None
    try:
        journal = Journal(
            path,
            key_file=config.store.key_file,
            lock=lock,
            url=config.store.url,
            node=config.store.node,
        )
    except (KeyFileError, JournalLocked, OSError) as exc:
        print(f"ebts-gateway: {exc}", file=sys.stderr)
        return None
    return journal, config
