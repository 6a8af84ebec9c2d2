"""The ``ebts-gateway`` command line (also ``python -m gateway``).

Each sub-command lives in a module of :mod:`gateway.commands` exposing ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int`` (and optionally ``DESCRIPTION``, the longer
text of ``ebts-gateway NAME --help``).

Exit status of every command: 0 success; 1 the command's own "not as expected" (validation
errors, replay mismatches, a daemon that could not listen); 2 bad input (unreadable or malformed
files, bad arguments, an unwritable output, a configuration error), always with a one-line
message naming the file; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from gateway import __version__

# Sub-command modules, in the order ``--help`` lists them.
COMMANDS = [
    "gateway.commands.run",
    "gateway.commands.dump",
    "gateway.commands.convert",
    "gateway.commands.validate",
    "gateway.commands.replay",
    "gateway.commands.enroll",
    "gateway.commands.search",
    "gateway.commands.match",
    "gateway.commands.gallery",
    "gateway.commands.pki",
    "gateway.commands.keys",
    "gateway.commands.audit",
    "gateway.commands.user",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ebts-gateway",
        description="ANSI/NIST-ITL / FBI EBTS interchange gateway: codec, validation, "
        "fingerprint matching and the SMTP / SOAP daemon. 'ebts-gateway COMMAND --help' "
        "describes each command.",
        epilog="exit status: 0 success, 1 the command's own failure (see its help), 2 bad "
        "input or arguments, 130 interrupted",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name in COMMANDS:
        module = importlib.import_module(name)
        p = sub.add_parser(
            module.NAME,
            help=module.HELP,
            description=getattr(module, "DESCRIPTION", module.HELP),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:
        # A file the command writes (or reads past its own checks): one line, exit 2.
        where = exc.filename if exc.filename is not None else args.command
        print(f"ebts-gateway {args.command}: {where}: {exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
