"""`edgekit flash --board B FIRMWARE`: put a firmware on a board.

A real board is programmed through its probe (pyOCD's Python API or command, OpenOCD, or
PlatformIO's upload target); `edgekit.boards.runners.flashers.flasher_for` picks the tool and
names what to install when none is. An emulated board has nothing
to program: the command checks that the ELF fits the board and loads into the emulator's memory
map, and that the emulator is installed, and says so, so `edgekit measure` will not fail later.
"""

from __future__ import annotations

import argparse

from edgekit.cli.output import emit
from edgekit.errors import MemoryOverflowError

NAME = "flash"
HELP = "program a firmware into a real board, or check it is ready to run on an emulated one"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("firmware", metavar="FIRMWARE",
                        help="the ELF, or the build directory (with edgekit-build.json)")
    parser.add_argument("--board", help="board id (default: the one in the build manifest)")
    parser.add_argument("--flasher", choices=("pyocd", "openocd", "pio"),
                        help="tool for a real board (default: the first installed of pyOCD's Python "
                             "API or command, OpenOCD, PlatformIO's `pio run -t upload`)")
    parser.add_argument("--probe", metavar="UID", help="pyOCD probe unique id when several are attached")


def _render(payload: dict) -> str:
    lines = [f"{payload['board']}: {payload['action']}",
             f"  elf:        {payload['elf']}",
             f"  flash:      {payload['flash_bytes']} of {payload['board_flash_bytes']} B",
             f"  static RAM: {payload['static_ram_bytes']} B + {payload['stack_reserved_bytes']} B "
             f"stack reserved, of {payload['board_sram_bytes']} B"]
    if payload.get("command"):
        lines.append(f"  command:    {' '.join(payload['command'])}")
    for check in payload.get("checks", []):
        lines.append(f"  ok:         {check}")
    if payload.get("next"):
        lines.append(f"  next:       {payload['next']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from edgekit.boards.runners.base import check_elf
    from edgekit.boards.runners.flashers import PyOcdFlasher, flasher_for
    from edgekit.boards.runners.measure import resolve_firmware
    from edgekit.boards.runners.unicorn_runner import read_elf
    from edgekit.firmware.elf import sizes

    firmware = resolve_firmware(args.firmware, args.board)
    check_elf(firmware.elf)  # a corrupt ELF is named here, not by a parser's exception
    target, board = firmware.target, firmware.target.board
    elf_sizes = sizes(firmware.elf)
    payload = {"board": board.id, "host_board": target.host.id, "elf": str(firmware.elf),
               "emulated": target.emulated, "flash_bytes": elf_sizes.flash_bytes,
               "static_ram_bytes": elf_sizes.static_ram_bytes,
               "stack_reserved_bytes": elf_sizes.stack_reserved_bytes,
               "board_flash_bytes": board.flash_bytes, "board_sram_bytes": board.sram_bytes}
    if elf_sizes.flash_bytes > board.flash_bytes:
        raise MemoryOverflowError(f"{firmware.elf}: {elf_sizes.flash_bytes} B of flash image does not "
                                  f"fit {board.id}'s {board.flash_bytes} B flash", "flash",
                                  elf_sizes.flash_bytes - board.flash_bytes)
    ram = elf_sizes.static_ram_bytes + elf_sizes.stack_reserved_bytes
    if ram > board.sram_bytes:
        raise MemoryOverflowError(f"{firmware.elf}: static RAM + reserved stack = {ram} B does not "
                                  f"fit {board.id}'s {board.sram_bytes} B SRAM", "sram",
                                  ram - board.sram_bytes)
    if target.emulated:
        checks = [f"fits {board.id}'s flash and SRAM"]
        host = target.host
        image = read_elf(firmware.elf)
        regions = [host.flash, *host.sram]
        for address, data in image.segments:
            size = len(data)
            if not any(r.origin <= address and address + size <= r.end for r in regions):
                raise MemoryOverflowError(f"{firmware.elf}: segment at {address:#010x} ({size} B) lies "
                                          f"outside {host.id}'s memory map", "map", size)
        checks.append(f"every loadable segment lies in {host.id}'s memory map")
        from edgekit.boards.runners import make_runner
        from edgekit.errors import RunnerUnavailableError

        ready = []
        for name in ("qemu", "unicorn"):
            if (name == "qemu" and host.emulation.qemu_machine) or (name == "unicorn" and host.emulation.unicorn):
                try:
                    make_runner(target, name).check_available()
                    ready.append(name)
                except RunnerUnavailableError as err:
                    checks.append(f"{name} not available: {err}")
        checks.append(f"runners ready: {', '.join(ready) or 'none'}")
        payload.update(action=f"emulated board (runs on {host.id}): nothing to program; firmware checked",
                       checks=checks, runners_ready=ready, command=None,
                       next=f"edgekit measure --board {board.id} {args.firmware}")
    else:
        kwargs = {"probe_uid": args.probe} if args.probe and args.flasher != "openocd" else {}
        flasher = flasher_for(board, prefer=args.flasher, project_dir=firmware.elf.parent)
        if kwargs and isinstance(flasher, PyOcdFlasher):
            flasher.probe_uid = args.probe
        done = flasher.flash(firmware.elf)
        payload.update(action=f"programmed with {flasher.name}", command=done.command,
                       flasher_output=done.output, checks=[],
                       next=f"edgekit measure --runner serial --flasher none --board {board.id} {args.firmware}")
    emit(args, NAME, payload, _render)
    return 0
