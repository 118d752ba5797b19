"""The `edgekit` command line.

Each subcommand is one module in this package with ``NAME``, ``HELP``, ``add_arguments(parser)``
and ``run(args) -> int``; list it in `COMMAND_MODULES`. Every subcommand gets ``--json`` and
``-v`` from one parent parser. Errors: an `EdgekitError` prints its message and exits with its
``exit_code``; the traceback only with ``-v``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from edgekit import __version__
from edgekit.errors import EdgekitError

#: subcommand modules, in the order `edgekit --help` lists them
COMMAND_MODULES = [
    "inspect",
    "boards",
    "build",
    "plan",
    "run",
    "flash",
    "measure",
    "demo",
    "convert",
    "search",

]


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true",
                        help="print one JSON object (with schema_version) instead of text")
    common.add_argument("-v", "--verbose", action="store_true",
                        help="more detail; tracebacks on errors")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgekit",
        description="Search, convert, plan, build, flash and measure tiny models on microcontrollers.",
    )
    parser.add_argument("--version", action="version", version=f"edgekit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    common = _common_options()
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(f"edgekit.cli.{module_name}")
        cmd = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP, parents=[common])
        module.add_arguments(cmd)
        cmd.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except EdgekitError as err:
        if getattr(args, "verbose", False):
            traceback.print_exc()
        print(f"edgekit {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"edgekit {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader left (`edgekit plan m.tflite | head`): no traceback; stdout goes to devnull
        # so the interpreter's flush at exit does not fail a second time
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a command killed by it


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
