"""``ebts-gateway convert IN OUT --to xml|xml-2008|traditional``: lossless re-encoding."""

from __future__ import annotations

import sys
from pathlib import Path

from gateway.ansinist import FormatError, write

from ._io import load

NAME = "convert"
HELP = "re-encode a transaction in the traditional or the XML encoding"


DESCRIPTION = """\
Re-encode a transaction (traditional or XML in) in the traditional or the XML encoding. Every
field is kept: XML -> traditional -> XML gives the same element content.

exit status: 0 written; 2 the input cannot be read or decoded, or cannot be encoded as asked, or
the output cannot be written (one line naming the file)."""


def add_arguments(parser) -> None:
    parser.add_argument("input", metavar="IN", help="transaction file (traditional or XML)")
    parser.add_argument("output", metavar="OUT", help="file to write (replaced if it exists)")
    parser.add_argument(
        "--to",
        choices=["traditional", "xml", "xml-2008"],
        required=True,
        help="the encoding of OUT (xml: EBTS 10 / ANSI/NIST-ITL 1-2011; xml-2008: ITL 2-2008)",
    )
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
    try:
        Path(args.output).write_bytes(data)
    except OSError as exc:
        print(f"{args.output}: cannot write: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0
