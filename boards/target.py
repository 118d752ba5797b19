"""What a firmware is built for: a board's core and memory sizes, placed where it will run.

An emulated board runs as itself. A real board either runs on the hardware (its own memory map
and console) or, in CI, on its emulated *stand-in*: a board with the same core whose emulator
we have. Built for the stand-in, the firmware takes the stand-in's memory ORIGINS and console
(so it boots there) and the real board's SIZES (so the generated linker script fails the build
exactly when the firmware would not fit the real board). That is how CI proves a model fits a
board nobody plugged in.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekit.boards.schema import Board, Console, MemoryRegion
from edgekit.errors import BoardError

#: FPUs a host FPU can stand in for (a double-precision FPv5 runs single-precision code)
_FPU_COVERS = {
    "none": ("none",),
    "fpv4-sp-d16": ("none", "fpv4-sp-d16"),
    "fpv5-sp-d16": ("none", "fpv5-sp-d16"),
    "fpv5-d16": ("none", "fpv5-sp-d16", "fpv5-d16"),
}


@dataclass(frozen=True)
class Target:
    """The build target: `board` sets core and sizes, `host` is the machine the firmware runs on."""

    board: Board
    host: Board
    emulated: bool
    flash: MemoryRegion
    sram: tuple[MemoryRegion, ...]
    console: Console

    @property
    def cpu(self) -> str:
        return self.board.cpu

    @property
    def fpu(self) -> str:
        return self.board.fpu

    @property
    def has_cycle_counter(self) -> bool:
        """A real board counts cycles: DWT CYCCNT on v7-M/v8-M mainline, SysTick (with its
        wraps counted) on the Cortex-M0+; emulators do not time them, so only real runs."""
        return not self.emulated

    def region_for(self, role: str) -> MemoryRegion:
        """The target SRAM region that holds `role` (data, arena or stack)."""
        for region in self.sram:
            if role in region.holds:
                return region
        raise BoardError(f"{self.board.source}: no SRAM region holds {role!r}")


def _fit_onto_host(board: Board, host: Board) -> tuple[MemoryRegion, tuple[MemoryRegion, ...]]:
    """Real SIZES at the host's ORIGINS; each real region goes into the host region of its roles."""
    if board.flash.size > host.flash.size:
        raise BoardError(f"board {board.id}: flash of {board.flash.size} bytes does not fit the "
                         f"stand-in {host.id}'s {host.flash.size}-byte code region")
    flash = MemoryRegion("flash", host.flash.origin, board.flash.size)
    used: dict[str, int] = {}
    regions = []
    for region in board.sram:
        if not region.holds:
            continue
        home = host.region_for(region.holds[0])
        for role in region.holds[1:]:
            if role not in home.holds:
                raise BoardError(f"board {board.id}: region {region.name!r} holds {role!r} and "
                                 f"{region.holds[0]!r}, but stand-in {host.id} keeps them apart")
        offset = used.get(home.name, 0)
        if offset + region.size > home.size:
            raise BoardError(f"board {board.id}: region {region.name!r} ({region.size} bytes) does "
                             f"not fit stand-in {host.id}'s region {home.name!r} ({home.size} bytes)")
        used[home.name] = offset + region.size
        regions.append(MemoryRegion(region.name, home.origin + offset, region.size, region.holds))
    return flash, tuple(regions)


def resolve_target(board: Board, host: Board | None = None, *, emulated: bool = True) -> Target:
    """The target a firmware for `board` is built for.

    `host` is the board's stand-in (loaded by the caller) when `board` is real and `emulated`;
    it is ignored otherwise. An emulated board, or a real board whose own memory map the Unicorn
    runner emulates (no stand-in), runs as itself.
    """
    if board.kind == "emulated":
        return Target(board, board, True, board.flash, tuple(r for r in board.sram if r.holds), board.console)
    if not emulated or not board.emulation.stand_in:
        # on the hardware itself, or on Unicorn with the board's own memory map (rpi-pico)
        return Target(board, board, emulated, board.flash, tuple(r for r in board.sram if r.holds),
                      board.console)
    if host is None or host.id != board.emulation.stand_in:
        raise BoardError(f"board {board.id}: resolve_target needs its stand-in "
                         f"{board.emulation.stand_in!r} as host")
    if host.cpu != board.cpu:
        raise BoardError(f"board {board.id} ({board.cpu}): stand-in {host.id} has a different "
                         f"core ({host.cpu})")
    if board.fpu not in _FPU_COVERS[host.fpu]:
        raise BoardError(f"board {board.id} ({board.fpu}): stand-in {host.id}'s FPU {host.fpu} "
                         f"cannot run its code")
    flash, sram = _fit_onto_host(board, host)
    return Target(board, host, True, flash, sram, host.console)
