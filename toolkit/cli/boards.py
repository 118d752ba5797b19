"""`edgekit boards`: list the boards edgekit knows, with their memory, core and runners."""

from __future__ import annotations

import argparse

from edgekit.boards import list_boards, runners_for
from edgekit.cli.output import emit

NAME = "boards"
HELP = "list the supported boards (memory, core, console, emulated stand-in, runners)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", choices=("emulated", "real"), help="only boards of this kind")


def _board_row(board) -> dict:
    return {
        "id": board.id,
        "name": board.name,
        "vendor": board.vendor,
        "kind": board.kind,
        "cpu": board.cpu,
        "fpu": board.fpu,
        "clock_hz": board.clock_hz,
        "sram_bytes": board.sram_bytes,
        "flash_bytes": board.flash_bytes,
        "sram_regions": [{"name": r.name, "origin": r.origin, "size": r.size, "holds": list(r.holds)}
                         for r in board.sram],
        "flash": {"origin": board.flash.origin, "size": board.flash.size},
        "console": {"kind": board.console.kind, "base": board.console.base},
        "qemu_machine": board.emulation.qemu_machine,
        "unicorn": board.emulation.unicorn,
        "renode_platform": board.emulation.renode_platform,
        "stand_in": board.emulation.stand_in,
        "runners": list(runners_for(board)),
        "flasher": None if board.flasher is None else {
            "pyocd_target": board.flasher.pyocd_target,
            "openocd_config": list(board.flasher.openocd_config),
            "platformio_board": board.flasher.platformio_board,
            "platformio_platform": board.flasher.platformio_platform,
        },
    }


def _kib(n: int) -> str:
    return f"{n // 1024} KB" if n % 1024 == 0 else f"{n} B"


def _render(payload: dict) -> str:
    header = f"{'id':<15} {'kind':<9} {'cpu':<14} {'fpu':<12} {'MHz':>4} {'SRAM':>8} {'flash':>8}  {'console':<15} {'stand-in':<12} runners"
    lines = [header, "-" * len(header)]
    for b in payload["boards"]:
        lines.append(
            f"{b['id']:<15} {b['kind']:<9} {b['cpu']:<14} {b['fpu']:<12} {b['clock_hz'] // 1_000_000:>4} "
            f"{_kib(b['sram_bytes']):>8} {_kib(b['flash_bytes']):>8}  {b['console']['kind']:<15} "
            f"{b['stand_in'] or '-':<12} {', '.join(b['runners'])}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    boards = [b for b in list_boards() if args.kind in (None, b.kind)]
    emit(args, NAME, {"boards": [_board_row(b) for b in boards]}, _render)
    return 0
