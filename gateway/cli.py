"""The ``ebts-gateway`` command line (also ``python -m gateway``).

Each sub-command lives in a module of :mod:`gateway.commands` exposing ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

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
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ebts-gateway",
        description="ANSI/NIST-ITL / FBI EBTS interchange gateway",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
