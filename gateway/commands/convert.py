"""``ebts-gateway convert IN OUT --to xml|xml-2008|traditional``: lossless re-encoding."""

from __future__ import annotations

import sys
from pathlib import Path

from gateway.ansinist import FormatError, write

from ._io import load

NAME = "convert"
HELP = "re-encode a transaction in the traditional or the XML encoding"


def add_arguments(parser) -> None:
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--to", choices=["traditional", "xml", "xml-2008"], required=True)
    parser.add_argument(
        "--canonical",
        action="store_true",
        help="re-encode every record (3-digit tags, LEN and CNT recomputed) even when the "
        "input is already traditional; without it an unmodified file is copied byte-exactly",
    )


def run(args) -> int:
    txn = load(args.input)
    if txn is None:
        return 2
    try:
        data = write(txn, args.to, canonical=args.canonical)
    except (FormatError, ValueError) as exc:
        print(f"{args.input}: cannot encode as {args.to}: {exc}", file=sys.stderr)
        return 2
    Path(args.output).write_bytes(data)
    return 0
