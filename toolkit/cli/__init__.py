"""The `edgekit` command line.

Each subcommand is one module in this package with ``NAME``, ``HELP``, ``add_arguments(parser)``
and ``run(args) -> int``; list it in `COMMAND_MODULES`. Every subcommand gets ``--json`` and
``-v`` from one parent parser. Errors take one path (`main`): ``edgekit CMD: error: MESSAGE`` on
stderr, exit non-zero, the traceback only with ``-v``, and with ``--json`` one object
``{"schema_version", "command", "error": {"kind", "message", ...}}`` on stdout. An `EdgekitError`
exits with its ``exit_code``; usage errors with 2; an OSError (a file that cannot be read or
written) becomes a `FileAccessError` naming the path; anything else is a bug: kind ``InternalError``, exit 70.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import traceback

from edgekit import __version__
from edgekit.errors import EdgekitError, FileAccessError

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
    parser = _Parser(
        prog="edgekit",
        description="Search, convert, plan, build, flash and measure tiny models on microcontrollers.",
    )
    parser.add_argument("--version", action="version", version=f"edgekit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    common = _common_options()
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(f"edgekit.cli.{module_name}")
        cmd = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP, parents=[common])
        module.add_arguments(cmd)
        cmd.set_defaults(handler=module.run)
    return parser


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors through the one error path (and ``--json``) below."""

    def error(self, message: str):
        raise _UsageExit(self, message)


class _UsageExit(Exception):
    def __init__(self, parser: argparse.ArgumentParser, message: str):
        super().__init__(message)
        self.parser = parser


#: exit status of an unexpected exception: a bug in edgekit (sysexits' EX_SOFTWARE)
INTERNAL_ERROR_EXIT = 70
#: attributes of an exception that go into the JSON error object when it has them
_ERROR_FIELDS = ("region", "overflow_bytes", "findings", "registers", "console")


def error_object(kind: str, message: str, err: BaseException | None = None) -> dict:
    """The JSON ``error`` object: kind (the exception class), message, and the exception's own
    fields (``file``, ``region``, ``overflow_bytes``, ...) where it has them."""
    obj = {"kind": kind, "message": message}
    for name in ("filename", *_ERROR_FIELDS):
        value = getattr(err, name, None)
        if value not in (None, "", [], {}):
            obj["file" if name == "filename" else name] = value
    return obj


def _report(command: str, as_json: bool, verbose: bool, kind: str, message: str,
            err: BaseException | None) -> None:
    if verbose and err is not None:
        traceback.print_exception(err)
    print(f"{' '.join(('edgekit', command)).strip()}: error: {message}", file=sys.stderr)
    if as_json:
        from edgekit.cli.output import SCHEMA_VERSION, _jsonable

        obj = {"schema_version": SCHEMA_VERSION, "command": command,
               "error": error_object(kind, message, err)}
        json.dump(_jsonable(obj), sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        sys.stdout.flush()


def _command_of(argv: list[str]) -> str:
    return next((a for a in argv if a in COMMAND_MODULES), "")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except _UsageExit as usage:
        usage.parser.print_usage(sys.stderr)
        _report(_command_of(argv), "--json" in argv, False, "UsageError", str(usage), None)
        return 2
    command = args.command
    as_json = bool(getattr(args, "json", False))
    verbose = bool(getattr(args, "verbose", False))
    try:
        return int(args.handler(args) or 0)
    except EdgekitError as err:
        _report(command, as_json, verbose, type(err).__name__, str(err), err)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"edgekit {command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader left (`edgekit plan m.tflite | head`): no traceback; stdout goes to devnull
        # so the interpreter's flush at exit does not fail a second time
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a command killed by it
    except OSError as err:
        # a file the user named could not be read or written (missing, permission, disk full)
        where = f"{err.filename}: " if err.filename else ""
        wrapped = FileAccessError(f"{where}{err.strerror or err}", err.filename)
        if verbose:
            traceback.print_exception(err)
        _report(command, as_json, False, "FileAccessError", str(wrapped), wrapped)
        return wrapped.exit_code
    except Exception as err:  # anything else is a bug in edgekit, never the user's fault
        message = (f"internal error (a bug in edgekit; -v for the traceback):"
                   f" {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
        _report(command, as_json, verbose, "InternalError", message, err)
        return INTERNAL_ERROR_EXIT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
