"""`edgekit build --selftest --board B -o DIR`: build the harness firmware for a board."""

from __future__ import annotations

import argparse

from edgekit.boards.linker import DEFAULT_STACK_BYTES
from edgekit.cli.output import emit
from edgekit.errors import UsageError

NAME = "build"
HELP = "build a firmware (today: the self-test harness) for a board with arm-none-eabi-gcc"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--selftest", action="store_true",
                        help="build the self-test payload (an int8 convolution with a known answer)")
    parser.add_argument("--board", required=True, help="board id (see `edgekit boards`)")
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="build directory (sources, Makefile, ELF, edgekit-build.json)")
    parser.add_argument("--hardware", action="store_true",
                        help="for a real board: build for the hardware itself, not its emulated stand-in")
    parser.add_argument("--stack-bytes", type=int, default=DEFAULT_STACK_BYTES,
                        help=f"stack reservation in bytes (default {DEFAULT_STACK_BYTES})")


def _render(payload: dict) -> str:
    host = "" if payload["host_board"] == payload["board"] else f" (runs on stand-in {payload['host_board']})"
    return "\n".join([
        f"built {payload['payload']} for {payload['board']}{host}",
        f"  elf:         {payload['elf_path']}",
        f"  flash:       {payload['flash_bytes']} bytes",
        f"  static RAM:  {payload['static_ram_bytes']} bytes (arena {payload['arena_bytes']}, "
        f"stack reserved {payload['stack_size_bytes']})",
        f"  manifest:    {payload['manifest_path']}",
        f"  rebuild:     make -C {payload['directory']}",
    ])


def run(args: argparse.Namespace) -> int:
    from edgekit.firmware.build import build_selftest

    if not args.selftest:
        raise UsageError("only --selftest builds exist so far; model builds come with the code generator")
    result = build_selftest(args.board, args.output, emulated=not args.hardware,
                            stack_bytes=args.stack_bytes)
    payload = {**result.manifest, "directory": result.directory, "elf_path": result.elf_path,
               "manifest_path": result.manifest_path}
    emit(args, NAME, payload, _render)
    return 0
