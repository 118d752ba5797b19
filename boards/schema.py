"""The board schema: one JSON file per board, checked field by field on load.

A board file is plain data (as PlatformIO's ``boards/*.json``). This module turns the parsed JSON
into frozen dataclasses and rejects anything that does not match, with a `BoardError` naming the
file and the dotted field path (``memory.sram[1].origin``). The validator is hand-written on
purpose: the schema is small, and hand-written checks give better messages than a generic
JSON-Schema engine would.

Addresses and sizes may be written as integers or as ``"0x..."`` hex strings (JSON has no hex).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from edgekit.errors import BoardError

CPUS = ("cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55")
FPUS = ("none", "fpv4-sp-d16", "fpv5-sp-d16", "fpv5-d16")
KINDS = ("emulated", "real")
#: console drivers the BSP implements (boards/bsp/console_*.c)
CONSOLE_KINDS = ("cmsdk_uart", "stm32_usart", "stm32_usart_v2", "stm32_lpuart", "stellaris_uart", "pl011",
                 "nrf_uarte", "semihosting")
#: what a RAM region can hold; each role lives in exactly one region
SRAM_ROLES = ("data", "arena", "stack")
#: Unicorn CPU models (unicorn.arm_const.UC_CPU_ARM_<MODEL>) a board may name
UNICORN_MODELS = ("cortex-m0", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33")
#: the cores each FPU can sit on (a Cortex-M4 has no FPv5, a Cortex-M3 none at all)
FPU_CORES = {
    "fpv4-sp-d16": ("cortex-m4",),
    "fpv5-sp-d16": ("cortex-m7", "cortex-m33"),
    "fpv5-d16": ("cortex-m7", "cortex-m55"),
}

_REGION_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class MemoryRegion:
    """A contiguous memory range; `holds` lists the roles (data, arena, stack) placed in it."""

    name: str
    origin: int
    size: int
    holds: tuple[str, ...] = ()

    @property
    def end(self) -> int:
        """One past the last byte."""
        return self.origin + self.size


@dataclass(frozen=True)
class Console:
    """Where the firmware prints its report: a UART kind and its register base, or semihosting."""

    kind: str
    base: int | None = None


@dataclass(frozen=True)
class Flasher:
    """How a real board is programmed: pyOCD target, OpenOCD config files, PlatformIO ids."""

    pyocd_target: str | None = None
    openocd_config: tuple[str, ...] = ()
    platformio_board: str | None = None
    platformio_platform: str | None = None


@dataclass(frozen=True)
class Emulation:
    """How the board (or its stand-in) is emulated."""

    qemu_machine: str | None = None
    qemu_cpu: str | None = None
    renode_platform: str | None = None
    unicorn: str | None = None
    stand_in: str | None = None


@dataclass(frozen=True)
class Board:
    """One board, exactly as its JSON file describes it (see `resolve_target` for a build target)."""

    id: str
    name: str
    vendor: str
    kind: str
    cpu: str
    fpu: str
    clock_hz: int
    flash: MemoryRegion
    sram: tuple[MemoryRegion, ...]
    console: Console
    emulation: Emulation
    flasher: Flasher | None = None
    notes: str = ""
    #: the board support source of hardware builds, boards/bsp/board_<bsp>.c (clocks, pins)
    bsp: str | None = None
    source: str = field(default="", compare=False)

    @property
    def sram_bytes(self) -> int:
        """SRAM the firmware may use: the regions that hold data, arena or stack."""
        return sum(r.size for r in self.sram if r.holds)

    @property
    def flash_bytes(self) -> int:
        return self.flash.size

    @property
    def runners(self) -> tuple[str, ...]:
        """Runner names that can run this board's firmware (on itself or on its stand-in)."""
        found = []
        if self.emulation.qemu_machine:
            found.append("qemu")
        if self.emulation.unicorn:
            found.append("unicorn")
        if self.emulation.renode_platform:
            found.append("renode")
        if self.kind == "real":
            found.append("serial")
        return tuple(found)

    def region_for(self, role: str) -> MemoryRegion:
        """The SRAM region that holds `role` (data, arena or stack)."""
        for region in self.sram:
            if role in region.holds:
                return region
        raise BoardError(f"{self.source}: no memory.sram region holds {role!r}")


class _Checker:
    """Reads typed fields out of the raw JSON, raising BoardError(file, field) on a mismatch."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, path: str, message: str) -> BoardError:
        return BoardError(f"{self.source}: field {path}: {message}")

    def obj(self, raw: Any, path: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
        if not isinstance(raw, dict):
            raise self.fail(path, f"expected an object, got {type(raw).__name__}")
        for key in required:
            if key not in raw:
                raise self.fail(f"{path}.{key}".lstrip("."), "missing required field")
        for key in raw:
            if key not in required and key not in optional and not key.startswith("_"):
                raise self.fail(f"{path}.{key}".lstrip("."), "unknown field")
        return raw

    def string(self, raw: dict, key: str, path: str, *, choices: tuple[str, ...] | None = None,
               optional: bool = False) -> str | None:
        where = f"{path}.{key}".lstrip(".")
        value = raw.get(key)
        if value is None:
            if optional:
                return None
            raise self.fail(where, "missing required field")
        if not isinstance(value, str) or not value:
            raise self.fail(where, f"expected a non-empty string, got {value!r}")
        if choices is not None and value not in choices:
            raise self.fail(where, f"unknown value {value!r}; expected one of {', '.join(choices)}")
        return value

    def integer(self, raw: dict, key: str, path: str, *, minimum: int = 0) -> int:
        where = f"{path}.{key}".lstrip(".")
        if key not in raw:
            raise self.fail(where, "missing required field")
        value = raw[key]
        if isinstance(value, str) and re.fullmatch(r"0[xX][0-9a-fA-F]+", value):
            value = int(value, 16)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, f"expected an integer or a 0x hex string, got {value!r}")
        if value < minimum:
            raise self.fail(where, f"value {value} is below the minimum {minimum}")
        if value > 0xFFFFFFFF:
            raise self.fail(where, f"value {value:#x} does not fit the 32-bit address space")
        return value


def _region(check: _Checker, raw: Any, path: str, *, with_roles: bool) -> MemoryRegion:
    optional = ("name", "holds") if with_roles else ("name",)
    required = ("origin", "size") + (("name",) if with_roles else ())
    raw = check.obj(raw, path, required, optional)
    name = check.string(raw, "name", path, optional=not with_roles) or "flash"
    if not _REGION_NAME.match(name):
        raise check.fail(f"{path}.name", f"{name!r} is not a valid region name ([a-z][a-z0-9_]*)")
    origin = check.integer(raw, "origin", path)
    size = check.integer(raw, "size", path, minimum=1)
    if origin + size > 0x1_0000_0000:
        raise check.fail(f"{path}.size", f"region {origin:#x}+{size:#x} runs past 4 GiB")
    holds: tuple[str, ...] = ()
    if with_roles:
        roles = raw.get("holds", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise check.fail(f"{path}.holds", f"expected a list of strings, got {roles!r}")
        for role in roles:
            if role not in SRAM_ROLES:
                raise check.fail(f"{path}.holds", f"unknown role {role!r}; expected {', '.join(SRAM_ROLES)}")
        holds = tuple(roles)
    return MemoryRegion(name=name, origin=origin, size=size, holds=holds)


def _check_memory(check: _Checker, flash: MemoryRegion, sram: list[MemoryRegion]) -> None:
    names = [r.name for r in sram]
    for i, name in enumerate(names):
        if name in names[:i] or name == "flash":
            raise check.fail(f"memory.sram[{i}].name", f"duplicate region name {name!r}")
    everything = [("memory.flash", flash)] + [(f"memory.sram[{i}]", r) for i, r in enumerate(sram)]
    for i, (path_a, a) in enumerate(everything):
        for path_b, b in everything[i + 1:]:
            if a.origin < b.end and b.origin < a.end:
                raise check.fail(path_b, f"region {b.name!r} [{b.origin:#x}, {b.end:#x}) overlaps "
                                         f"{path_a} {a.name!r} [{a.origin:#x}, {a.end:#x})")
    for role in SRAM_ROLES:
        holders = [i for i, r in enumerate(sram) if role in r.holds]
        if len(holders) != 1:
            raise check.fail("memory.sram", f"role {role!r} must be held by exactly one region, "
                                            f"found {len(holders)}")


def parse_board(board_id: str, raw: Any, source: str) -> Board:
    """Validate one board file's parsed JSON; `source` (the file path) goes into every error."""
    check = _Checker(source)
    raw = check.obj(raw, "", ("name", "vendor", "kind", "cpu", "fpu", "clock_hz", "memory",
                              "console", "emulation"), ("flasher", "notes", "bsp"))
    kind = check.string(raw, "kind", "", choices=KINDS)
    cpu = check.string(raw, "cpu", "", choices=CPUS)
    fpu = check.string(raw, "fpu", "", choices=FPUS)
    if fpu != "none" and cpu not in FPU_CORES[fpu]:
        raise check.fail("fpu", f"{fpu} does not exist on a {cpu}")
    clock_hz = check.integer(raw, "clock_hz", "", minimum=1)

    memory = check.obj(raw["memory"], "memory", ("flash", "sram"))
    flash = _region(check, memory["flash"], "memory.flash", with_roles=False)
    if not isinstance(memory["sram"], list) or not memory["sram"]:
        raise check.fail("memory.sram", "expected a non-empty list of regions")
    sram = [_region(check, r, f"memory.sram[{i}]", with_roles=True) for i, r in enumerate(memory["sram"])]
    _check_memory(check, flash, sram)

    console_raw = check.obj(raw["console"], "console", ("kind",), ("base",))
    console_kind = check.string(console_raw, "kind", "console", choices=CONSOLE_KINDS)
    base = None
    if console_kind != "semihosting":
        base = check.integer(console_raw, "base", "console")

    emu_raw = check.obj(raw["emulation"], "emulation", (),
                        ("qemu_machine", "qemu_cpu", "renode_platform", "unicorn", "stand_in"))
    emulation = Emulation(
        qemu_machine=check.string(emu_raw, "qemu_machine", "emulation", optional=True),
        qemu_cpu=check.string(emu_raw, "qemu_cpu", "emulation", optional=True),
        renode_platform=check.string(emu_raw, "renode_platform", "emulation", optional=True),
        unicorn=check.string(emu_raw, "unicorn", "emulation", choices=UNICORN_MODELS, optional=True),
        stand_in=check.string(emu_raw, "stand_in", "emulation", optional=True),
    )
    flasher = None
    if kind == "emulated":
        if not (emulation.qemu_machine or emulation.unicorn):
            raise check.fail("emulation", "an emulated board needs qemu_machine or unicorn")
        if emulation.stand_in:
            raise check.fail("emulation.stand_in", "only a real board has a stand-in")
        if "flasher" in raw:
            raise check.fail("flasher", "an emulated board has no flasher")
    else:
        if not (emulation.stand_in or emulation.unicorn):
            raise check.fail("emulation.stand_in", "a real board needs a stand-in board id "
                                                   "(or a unicorn model for its own memory map)")
        if "flasher" not in raw:
            raise check.fail("flasher", "missing required field for a real board")
        fl_raw = check.obj(raw["flasher"], "flasher", (),
                           ("pyocd_target", "openocd_config", "platformio_board", "platformio_platform"))
        configs = fl_raw.get("openocd_config", [])
        if isinstance(configs, str):
            configs = [configs]
        if not isinstance(configs, list) or not all(isinstance(c, str) and c for c in configs):
            raise check.fail("flasher.openocd_config", f"expected a string or list of strings, got {configs!r}")
        flasher = Flasher(
            pyocd_target=check.string(fl_raw, "pyocd_target", "flasher", optional=True),
            openocd_config=tuple(configs),
            platformio_board=check.string(fl_raw, "platformio_board", "flasher", optional=True),
            platformio_platform=check.string(fl_raw, "platformio_platform", "flasher", optional=True),
        )
        if not (flasher.pyocd_target or flasher.openocd_config):
            raise check.fail("flasher", "a real board needs pyocd_target or openocd_config")
    notes = raw.get("notes", "")
    if not isinstance(notes, str):
        raise check.fail("notes", f"expected a string, got {notes!r}")
    return Board(
        id=board_id, name=check.string(raw, "name", ""), vendor=check.string(raw, "vendor", ""),
        kind=kind, cpu=cpu, fpu=fpu, clock_hz=clock_hz, flash=flash, sram=tuple(sram),
        console=Console(kind=console_kind, base=base), emulation=emulation, flasher=flasher,
        notes=notes, source=source,
        bsp=check.string(raw, "bsp", "", optional=True) if kind == "real" else None,
    )
