"""Unicorn runner: the ELF on a bare Cortex-M core, with exact instruction counts and its own
stack/arena high-water marks.

How it measures (see docs/report-protocol.md for the symbols):

* Instructions are counted per translated block, not per instruction: a block hook fires once
  per executed block, and the block's instruction count is decoded once with capstone and
  cached. That keeps the Python work per block, not per instruction, which is what makes
  ~100M-instruction models feasible. A block is counted whole, which is exact because nothing
  leaves a block early while the window is open: exceptions end their block (``bkpt`` is the
  last instruction of its block), peripheral accesses do not, and any fault ends the run. The
  window opens at the entry of ``edgekit_measure_begin`` (its block counts) and closes at the
  entry of ``edgekit_measure_end`` (its block does not); both are reached by calls, so they
  always start a block -- a block that would run into one of them mid-way is refused, not
  guessed at. ``verify_counts=True`` adds a per-instruction hook and checks the two counts agree
  (slow; the tests use it).
* Stack and arena high-water marks are the runner's own, independent of the firmware's paint:
  at ``edgekit_stack_paint_done`` (the painting is not a use) it overwrites the free stack below
  the stack pointer and the arena with a pattern of its own (each word a hash of its address),
  and at ``edgekit_report_begin`` (the same window the firmware's painted figure describes) it
  finds the lowest stack word and the arena bytes the run changed, then puts the firmware's
  paint back wherever its own pattern is untouched, so the firmware's scan sees what it would
  have. Not memory-write hooks: with a write hook installed, Unicorn 2.1 keeps a stale IT-block
  state across a translated block that ends right after a conditional store (unicorn-engine
  issue 2309), and the next block runs as if still inside the IT block (a conditional branch
  there faults as an invalid instruction, other instructions run conditionally: wrong outputs
  where QEMU gives the right ones).
* The console is a modelled UART (`uart_models`) or semihosting (`semihosting`); the run ends at
  the semihosting exit, at a ``wfi`` (Unicorn models no interrupts to wake it), or shortly after
  a complete report for a firmware that spins instead.

Unicorn does not take exceptions into the guest's vector table, so a fault ends the run with a
`DeviceFaultError` built from the core's registers instead of the firmware's fault report.
"""

from __future__ import annotations

import gc
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import capstone
import numpy as np
import unicorn
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection
from unicorn import arm_const

from edgekit.boards.runners.base import ConsoleBuffer, RunResult, Runner
from edgekit.boards.runners.elf_check import PARSE_ERRORS, validate_elf
from edgekit.boards.runners.semihosting import Semihosting
from edgekit.boards.runners.uart_models import WINDOW_BYTES, uart_model
from edgekit.errors import DeviceFaultError, FirmwareFormatError, RunnerError, RunnerTimeoutError

#: board `emulation.unicorn` value -> Unicorn CPU model (unicorn 2.1 has no M0+/M55 model: an
#: M0+ board runs on the M0 model, which executes the same ARMv6-M instruction set)
CPU_MODELS = {
    "cortex-m0": arm_const.UC_CPU_ARM_CORTEX_M0,
    "cortex-m3": arm_const.UC_CPU_ARM_CORTEX_M3,
    "cortex-m4": arm_const.UC_CPU_ARM_CORTEX_M4,
    "cortex-m7": arm_const.UC_CPU_ARM_CORTEX_M7,
    "cortex-m33": arm_const.UC_CPU_ARM_CORTEX_M33,
}
#: a board's core -> the Unicorn model that runs its hardware build
HARDWARE_CPU_MODELS = {"cortex-m0plus": "cortex-m0", "cortex-m3": "cortex-m3",
                       "cortex-m4": "cortex-m4", "cortex-m7": "cortex-m7", "cortex-m33": "cortex-m33"}
#: peripheral windows mapped as plain zeroed RAM (clock, GPIO and system-control writes land
#: there harmlessly); the console page is carved out and modelled
PERIPHERAL_WINDOWS = ((0x4000_0000, 0x6000_0000), (0xE000_0000, 0xE010_0000))
#: Unicorn's ARM page is 1 KiB; 4 KiB alignment is a multiple of it
PAGE = 0x1000
#: translated blocks a firmware may run after its complete report to reach its semihosting exit
#: (a firmware ending in `wfi` stops Unicorn by itself; one spinning in `b .` is cut off here)
AFTER_REPORT_BLOCKS = 100_000
WFI = 0xBF30
#: instructions between two looks at the wall clock (a tight loop runs ~1 M per second here)
CHECK_EVERY = 100_000
#: QEMU exception numbers Unicorn hands to the interrupt hook
EXCP_BKPT = 7
SEMIHOSTING_BKPT = 0xBEAB  # `bkpt 0xab` in Thumb
#: code of the measurement and paint symbols (see docs/report-protocol.md)
MARK_SYMBOLS = {
    "edgekit_measure_begin": "begin",
    "edgekit_measure_end": "end",
    "edgekit_stack_paint_done": "paint_done",
    "edgekit_report_begin": "report_begin",
}
REGION_SYMBOLS = ("__stack_bottom", "__stack_top", "__arena_start", "__arena_end")
#: the generated model's per-op functions (``op012_depthwise_conv_2d``): the profile's marks
OP_FUNCTION = re.compile(r"^op\d{3,}_\w+$")
#: where the profile puts what runs in the window before the first op function is entered
BEFORE_OPS = "(before the first op)"
_FAULT_REGISTERS = {"r0": arm_const.UC_ARM_REG_R0, "r1": arm_const.UC_ARM_REG_R1,
                    "r2": arm_const.UC_ARM_REG_R2, "r3": arm_const.UC_ARM_REG_R3,
                    "r12": arm_const.UC_ARM_REG_R12, "sp": arm_const.UC_ARM_REG_SP,
                    "lr": arm_const.UC_ARM_REG_LR, "pc": arm_const.UC_ARM_REG_PC,
                    "xpsr": arm_const.UC_ARM_REG_XPSR}


@dataclass(frozen=True)
class Region:
    """An address range the runner maps as RAM (flash is RAM to Unicorn; nothing writes it)."""

    name: str
    origin: int
    size: int

    @property
    def end(self) -> int:
        return self.origin + self.size


@dataclass(frozen=True)
class ElfImage:
    """What the runner needs from the ELF: loadable bytes and the edgekit symbols."""

    segments: tuple[tuple[int, bytes], ...]  # (load address, file bytes)
    symbols: dict[str, int]
    #: entry address (even) -> name of every generated per-op function (`OP_FUNCTION`)
    op_functions: dict[int, str] = field(default_factory=dict)


def read_elf(path: Path) -> ElfImage:
    """Load segments (their file bytes at their load address, as QEMU's -kernel does) and the
    edgekit symbols. A segment's zero-filled tail (.bss, .stack: no file bytes) is not loaded:
    it lives at its run address, which the startup code clears, and its load address is only
    where the linker's location counter stood (past the end of a full flash, maybe)."""
    validate_elf(path)
    try:
        return _read_checked_elf(Path(path))
    except PARSE_ERRORS as err:
        raise FirmwareFormatError(f"firmware file {path}: corrupt ELF: {err}") from None


def _read_checked_elf(path: Path) -> ElfImage:
    wanted = set(MARK_SYMBOLS) | set(REGION_SYMBOLS)
    with path.open("rb") as handle:
        elf = ELFFile(handle)
        if elf["e_machine"] != "EM_ARM":
            raise RunnerError(f"{path} is a {elf['e_machine']} ELF, not an Arm one")
        segments = tuple((seg["p_paddr"], seg.data()) for seg in elf.iter_segments()
                         if seg["p_type"] == "PT_LOAD" and seg["p_filesz"] > 0)
        symbols: dict[str, int] = {}
        op_functions: dict[int, str] = {}
        for section in elf.iter_sections():
            if isinstance(section, SymbolTableSection):
                for symbol in section.iter_symbols():
                    if symbol["st_info"]["type"] == "STT_FUNC" and OP_FUNCTION.match(symbol.name):
                        op_functions[symbol["st_value"] & ~1] = symbol.name
                    if symbol.name in wanted:
                        value = symbol["st_value"]
                        # Thumb function symbols carry bit 0; the code starts at the even address
                        symbols[symbol.name] = value & ~1 if symbol.name in MARK_SYMBOLS else value
    if not segments:
        raise RunnerError(f"{path} has no loadable segments")
    return ElfImage(segments=segments, symbols=symbols, op_functions=op_functions)


def _align_down(value: int) -> int:
    return value & ~(PAGE - 1)


def _align_up(value: int) -> int:
    return (value + PAGE - 1) & ~(PAGE - 1)


def _subtract(window: tuple[int, int], holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Parts of `window` not covered by `holes` (all page aligned)."""
    pieces = [window]
    for hole_start, hole_end in holes:
        next_pieces = []
        for start, end in pieces:
            if hole_end <= start or hole_start >= end:
                next_pieces.append((start, end))
                continue
            if start < hole_start:
                next_pieces.append((start, hole_start))
            if hole_end < end:
                next_pieces.append((hole_end, end))
        pieces = next_pieces
    return pieces


class UnicornRunner(Runner):
    """Run an ELF on Unicorn with the board's memory map and console."""

    name = "unicorn"

    def __init__(self, cpu: str, regions: list[Region], console_kind: str,
                 console_base: int | None = None, *, vector_table: int | None = None,
                 verify_counts: bool = False, instruction_budget: int | None = None,
                 budget_note: str = "", chip_bsp: str | None = None, profile: bool = False):
        if cpu not in CPU_MODELS:
            raise RunnerError(f"Unicorn has no CPU model {cpu!r} (models: {', '.join(CPU_MODELS)})")
        if console_kind != "semihosting" and console_base is None:
            raise RunnerError(f"console kind {console_kind!r} needs a register base address")
        self.cpu = cpu
        self.regions = list(regions)
        self.console_kind = console_kind
        self.console_base = console_base
        self.vector_table = vector_table
        self.verify_counts = verify_counts
        #: instructions the whole run may execute (None: no limit but the wall clock); counted
        #: per block, so the run stops at the same point however busy the host is
        self.instruction_budget = instruction_budget
        #: where the budget came from, for the error message
        self.budget_note = budget_note
        #: a real board's hardware build: its peripherals are strict register models
        #: (`chip_models`) instead of zeroed RAM
        self.chip_bsp = chip_bsp
        #: count the window's instructions per generated op function as well (`RunResult.details`
        #: ``op_instructions``): each op's entry starts its share, which runs to the next entry
        self.profile = profile

    @classmethod
    def from_target(cls, target, *, verify_counts: bool = False,
                    instruction_budget: int | None = None, budget_note: str = "",
                    profile: bool = False) -> UnicornRunner:
        """The runner for a build target (`edgekit.boards.Target`): the host board's memory map
        and Unicorn model, the target's console."""
        host = target.host
        budget = {"verify_counts": verify_counts, "instruction_budget": instruction_budget,
                  "budget_note": budget_note, "profile": profile}
        if not target.emulated and target.board.bsp:
            # a real board's hardware build on its own memory map, its clock, pin and console
            # registers answered by the chip's model (`chip_models`, test fixtures)
            board = target.board
            return cls(HARDWARE_CPU_MODELS[board.cpu], _regions(board), target.console.kind,
                       target.console.base, vector_table=board.flash.origin,
                       chip_bsp=board.bsp, **budget)
        model = host.emulation.unicorn
        if not model:
            raise RunnerError(f"board {host.id} has no Unicorn model (emulation.unicorn)")
        return cls(model, _regions(host), target.console.kind, target.console.base,
                   vector_table=host.flash.origin, **budget)

    def run(self, elf: Path, timeout_s: float) -> RunResult:
        path = Path(elf)
        image = read_elf(path)  # validates the ELF first
        session = _Session(self, image, path)
        try:
            return session.run(timeout_s)
        finally:
            session.close()


def _regions(board) -> list[Region]:
    """A board's flash and SRAM regions, as Unicorn maps them."""
    return [Region(board.flash.name, board.flash.origin, board.flash.size)] + [
        Region(r.name, r.origin, r.size) for r in board.sram]


class _Session:
    """One run: the Unicorn instance, its hooks and what they saw."""

    def __init__(self, runner: UnicornRunner, image: ElfImage, path: Path):
        self.runner = runner
        self.image = image
        self.path = path
        self.console = ConsoleBuffer()
        self.executed = 0
        #: executed count at which `_checkpoint` next looks at the budget and the clock
        self.next_check = 0
        self.deadline = float("inf")
        self.exit_code: int | None = None
        self.stop_reason: str | None = None
        self.report_done = False
        self.blocks_after_report = 0
        self.fault: str | None = None
        # instruction counting
        self.block_sizes: dict[int, int] = {}
        self.measuring = False
        self.instructions = 0
        self.windows = 0
        self.verifier = _CountVerifier(self._read) if runner.verify_counts else None
        # stack / arena high-water marks (the runner's own paint, `_paint` and `_scan`)
        self.tracking = False
        self.tracked_windows = 0
        self.stack_low: int | None = None
        self.arena_low: int | None = None
        self.arena_high: int | None = None
        self.painted: list[tuple[str, int, np.ndarray, np.ndarray]] = []
        self.uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)
        self.uc.ctl_set_cpu_model(CPU_MODELS[runner.cpu])
        self.disassembler = capstone.Cs(capstone.CS_ARCH_ARM,
                                        capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
        self.marks = {image.symbols[s]: kind for s, kind in MARK_SYMBOLS.items() if s in image.symbols}
        # per-op profile: an op function's entry must start a block too (it is always called)
        self.op_entries = image.op_functions if runner.profile else {}
        self.current_op = BEFORE_OPS
        self.op_instructions: dict[str, int] = {}
        self.semihosting = Semihosting(self._read, self._emit)

    def close(self) -> None:
        """Free the emulator now. unicorn's Python binding keeps its hook and MMIO callbacks in
        closures over the instance: a cycle that only the garbage collector breaks, while each
        instance holds about 1.7 GB of address space (its translation buffer). Left to the
        collector, a process running many firmwares (the fuzz suite's workers under a 6 GB
        address-space limit) ran out of it, and Unicorn's C code exited it with status 1."""
        self.uc = None
        gc.collect()

    # --- set-up ----------------------------------------------------------------------------------

    def _map_memory(self) -> None:
        runner = self.runner
        mapped: list[tuple[int, int]] = []
        for region in runner.regions:
            start, end = _align_down(region.origin), _align_up(region.end)
            for piece in _subtract((start, end), mapped):
                self.uc.mem_map(piece[0], piece[1] - piece[0])
                mapped.append(piece)
        if runner.chip_bsp is not None:
            self._map_chip(mapped)
            return
        console_page = None
        if runner.console_kind != "semihosting":
            base = _align_down(runner.console_base)
            console_page = (base, base + WINDOW_BYTES)
            if _subtract(console_page, mapped) != [console_page]:
                raise RunnerError(f"console registers at {runner.console_base:#010x} overlap a memory region")
            self.uart = uart_model(runner.console_kind, self._emit)
            offset = runner.console_base - base
            self.uc.mmio_map(base, WINDOW_BYTES,
                             lambda uc, off, size, _: self.uart.read(self._read, off - offset, size), None,
                             lambda uc, off, size, value, _: self._uart_write(off - offset, size, value), None)
            mapped.append(console_page)
        for window in PERIPHERAL_WINDOWS:
            for start, end in _subtract(window, mapped):
                self.uc.mem_map(start, end - start)
        self.mapped = mapped

    def _map_chip(self, mapped: list[tuple[int, int]]) -> None:
        """Every peripheral and system address through the chip's strict register model."""
        from edgekit.boards.runners.chip_models import chip_model

        runner = self.runner
        self.chip = chip_model(runner.chip_bsp, uart_model(runner.console_kind, self._emit),
                               runner.console_base)
        for window in PERIPHERAL_WINDOWS + self.chip.windows:
            for start, end in _subtract(window, mapped):
                self.uc.mmio_map(start, end - start,
                                 lambda uc, off, size, _, base=start: self.chip.read(self._read, base + off, size),
                                 None,
                                 lambda uc, off, size, value, _, base=start: self.chip.write(self._read, base + off, size, value),
                                 None)
                mapped.append((start, end))
        self.mapped = mapped

    def _load(self) -> tuple[int, int]:
        for address, data in self.image.segments:
            if not any(a <= address and address + len(data) <= b for a, b in self.mapped):
                raise RunnerError(f"{self.path}: segment at {address:#010x} ({len(data)} bytes)"
                                  " lies outside the board's memory map")
            self.uc.mem_write(address, data)
        boot_rom = getattr(self, "chip", None) and self.chip.boot
        if boot_rom:
            # the chip's boot ROM checks and copies its boot stage, then runs it
            sp, pc, copies = boot_rom(self._read)
            for address, data in copies:
                self.uc.mem_write(address, bytes(data))
            return sp, pc
        table = self.runner.vector_table
        if table is None:
            table = min(address for address, _ in self.image.segments)
        sp = int.from_bytes(self._read(table, 4), "little")
        reset = int.from_bytes(self._read(table + 4, 4), "little")
        if not reset & 1:
            raise RunnerError(f"{self.path}: reset vector {reset:#010x} at {table + 4:#010x} is not "
                              "a Thumb address (bit 0 clear): is the vector table at the flash origin?")
        return sp, reset

    def _install_hooks(self) -> None:
        uc = self.uc
        uc.hook_add(unicorn.UC_HOOK_BLOCK, self._on_block)
        uc.hook_add(unicorn.UC_HOOK_INTR, self._on_interrupt)
        if self.runner.verify_counts:
            uc.hook_add(unicorn.UC_HOOK_CODE, self._on_instruction)

    # --- hooks -----------------------------------------------------------------------------------

    def _read(self, address: int, size: int) -> bytes:
        return bytes(self.uc.mem_read(address, size))

    def _emit(self, data: bytes) -> None:
        self.console.append(data)
        # noted here, acted on in the block hook: stopping inside a peripheral write would leave
        # the PC before the store, and the run still wants the exit status that follows
        self.report_done = self.console.finished

    def _uart_write(self, offset: int, size: int, value: int) -> None:
        self.uart.write(self._read, offset, size, value)

    def _block_instructions(self, address: int, size: int) -> int:
        code = self._read(address, size)
        count, decoded = 0, 0
        for insn_address, insn_size, _, _ in self.disassembler.disasm_lite(code, address):
            if insn_address != address and (insn_address in self.marks
                                            or insn_address in self.op_entries):
                what = self.marks.get(insn_address) or self.op_entries[insn_address]
                raise RunnerError(f"a translated block at {address:#010x} runs into "
                                  f"{what} marker code at {insn_address:#010x} "
                                  "without a call: the instruction count would be inexact")
            count += 1
            decoded += insn_size
        if decoded != size:
            raise RunnerError(f"capstone decoded {decoded} of the {size} bytes of the block at "
                              f"{address:#010x}: cannot count its instructions exactly")
        return count

    def _on_block(self, uc, address: int, size: int, _user) -> None:
        key = (address << 16) | size
        count = self.block_sizes.get(key)
        if count is None:
            count = self.block_sizes[key] = self._block_instructions(address, size)
        self.executed += count
        if self.executed >= self.next_check and self._checkpoint(uc):
            return
        mark = self.marks.get(address)
        if mark is not None:
            self._on_mark(mark)
        if self.report_done:
            self.blocks_after_report += 1
            if self.blocks_after_report > AFTER_REPORT_BLOCKS:
                self.stop_reason = "report complete"
                uc.emu_stop()
        if self.measuring:
            self.instructions += count
            if self.op_entries:
                self.current_op = self.op_entries.get(address, self.current_op)
                self.op_instructions[self.current_op] = self.op_instructions.get(self.current_op, 0) + count
        if self.verifier is not None:
            self.verifier.on_block(address, size, self.measuring)

    def _checkpoint(self, uc) -> bool:
        """Every `CHECK_EVERY` instructions (and at the budget): stop the run, returning True,
        once it passed its instruction budget or its deadline. Unicorn's own timeout can be lost
        when a hook moves the PC (every semihosting call does), so the clock is checked here too."""
        budget = self.runner.instruction_budget
        if budget is not None and self.executed > budget and not self.report_done:
            self.stop_reason = "instruction budget"
        elif time.monotonic() > self.deadline:
            self.stop_reason = "timeout"
        else:
            self.next_check = self.executed + CHECK_EVERY
            if budget is not None and self.executed <= budget:
                self.next_check = min(self.next_check, budget + 1)
            return False
        uc.emu_stop()
        return True

    def _on_mark(self, mark: str) -> None:
        if mark == "begin":
            self.measuring = True
            self.windows += 1
        elif mark == "end":
            self.measuring = False
        elif mark == "paint_done":
            self.tracking = True
            self.tracked_windows += 1
            self._paint()
        elif mark == "report_begin":
            if self.tracking:
                self._scan()
            self.tracking = False

    def _on_instruction(self, uc, address: int, size: int, _user) -> None:
        self.verifier.on_instruction(address)

    def _tracked_regions(self) -> list[tuple[str, int, int]]:
        """The regions whose use the runner measures: the free stack below the stack pointer
        (all of it, at the paint marker) and the arena; word aligned, empty ones left out."""
        symbols, regions = self.image.symbols, []
        if "__stack_bottom" in symbols and "__stack_top" in symbols:
            sp = self.uc.reg_read(arm_const.UC_ARM_REG_SP)
            regions.append(("stack", symbols["__stack_bottom"],
                            min(sp, symbols["__stack_top"]) & ~3))
        if "__arena_start" in symbols and "__arena_end" in symbols:
            regions.append(("arena", symbols["__arena_start"], symbols["__arena_end"] & ~3))
        return [(name, start, end) for name, start, end in regions if end > start]

    def _paint(self) -> None:
        """Keep each region's contents and overwrite it with the runner's pattern."""
        self.painted = []
        for name, start, end in self._tracked_regions():
            kept = np.frombuffer(bytes(self.uc.mem_read(start, end - start)), "<u4").copy()
            pattern = _runner_pattern(start, end)
            self.uc.mem_write(start, pattern.tobytes())
            self.painted.append((name, start, kept, pattern))

    def _scan(self) -> None:
        """The lowest stack word and the arena bytes changed since `_paint`; the kept contents
        back wherever the pattern is untouched."""
        for name, start, kept, pattern in self.painted:
            now = np.frombuffer(bytes(self.uc.mem_read(start, 4 * len(pattern))), "<u4")
            changed = np.flatnonzero(now != pattern)
            self.uc.mem_write(start, np.where(now == pattern, kept, now).astype("<u4").tobytes())
            if not len(changed):
                continue
            if name == "stack":
                self.stack_low = start + 4 * int(changed[0])
                continue
            low, high = int(changed[0]), int(changed[-1])
            low_bytes = (int(now[low]) ^ int(pattern[low])).to_bytes(4, "little")
            high_bytes = (int(now[high]) ^ int(pattern[high])).to_bytes(4, "little")
            self.arena_low = start + 4 * low + next(i for i, b in enumerate(low_bytes) if b)
            self.arena_high = start + 4 * high + 1 + max(i for i, b in enumerate(high_bytes) if b)
        self.painted = []

    def _on_interrupt(self, uc, intno: int, _user) -> None:
        pc = uc.reg_read(arm_const.UC_ARM_REG_PC)
        if intno == EXCP_BKPT and int.from_bytes(self._read(pc, 2), "little") == SEMIHOSTING_BKPT:
            op = uc.reg_read(arm_const.UC_ARM_REG_R0)
            arg = uc.reg_read(arm_const.UC_ARM_REG_R1)
            result = self.semihosting.call(op, arg)
            if result.exit_code is not None:
                self.exit_code = result.exit_code
                self.stop_reason = "semihosting exit"
                uc.emu_stop()
                return
            uc.reg_write(arm_const.UC_ARM_REG_R0, result.r0)
            uc.reg_write(arm_const.UC_ARM_REG_PC, (pc + 2) | 1)
            return
        self.fault = f"exception {intno} at pc={pc:#010x}"
        uc.emu_stop()

    # --- run -------------------------------------------------------------------------------------

    def _stopped_in_wfi(self) -> bool:
        pc = self.uc.reg_read(arm_const.UC_ARM_REG_PC)
        try:
            return int.from_bytes(self._read(pc - 2, 2), "little") == WFI
        except unicorn.UcError:
            return False

    def _registers(self) -> dict[str, int]:
        return {name: self.uc.reg_read(reg) for name, reg in _FAULT_REGISTERS.items()}

    def run(self, timeout_s: float) -> RunResult:
        self._map_memory()
        sp, reset = self._load()
        self._install_hooks()
        self.uc.reg_write(arm_const.UC_ARM_REG_SP, sp)
        started = time.monotonic()
        self.deadline = started + timeout_s
        try:
            # `until` is an address no firmware executes; the run ends through a hook
            self.uc.emu_start(reset, 0xFFFF_FFFE, timeout=int(timeout_s * 1_000_000))
        except unicorn.UcError as err:
            if self.fault is None and self.stop_reason is None:
                self.fault = f"{err} at pc={self.uc.reg_read(arm_const.UC_ARM_REG_PC):#010x}"
        except RunnerError as err:  # raised inside a hook (unknown semihosting op, ...)
            raise RunnerError(f"{err}; console so far: {self.console.text()[-500:]!r}") from None
        wall = time.monotonic() - started
        console = self.console.text()
        if self.stop_reason == "instruction budget":
            note = f" ({self.runner.budget_note})" if self.runner.budget_note else ""
            raise RunnerTimeoutError(
                f"Unicorn {self.runner.cpu}: {self.path.name} ran {self.executed} instructions "
                f"without finishing, over its budget of {self.runner.instruction_budget}{note}",
                console)
        if self.fault is not None:
            raise DeviceFaultError(f"Unicorn {self.runner.cpu}: {self.path.name} faulted: {self.fault}",
                                   console, self._registers())
        if self.stop_reason is None and self._stopped_in_wfi():
            self.stop_reason = "wfi"  # nothing will wake it: Unicorn models no interrupts
        if self.stop_reason in (None, "timeout") and self.report_done:
            self.stop_reason = "report complete"
        if self.stop_reason in (None, "timeout"):
            if self.stop_reason == "timeout" or wall >= timeout_s * 0.99:
                raise RunnerTimeoutError(f"Unicorn {self.runner.cpu}: {self.path.name} did not finish "
                                         f"within {timeout_s:g} s", console)
            pc = self.uc.reg_read(arm_const.UC_ARM_REG_PC)
            raise DeviceFaultError(f"Unicorn {self.runner.cpu}: emulation stopped at pc={pc:#010x} "
                                   "without an exit or a complete report", console, self._registers())
        return self._result(console, wall)

    def _result(self, console: str, wall: float) -> RunResult:
        symbols = self.image.symbols
        details: dict = {"stop_reason": self.stop_reason, "measure_windows": self.windows,
                         "executed_instructions": self.executed,
                         "instruction_budget": self.runner.instruction_budget,
                         "translated_blocks": len(self.block_sizes)}
        if self.runner.profile:
            details["op_instructions"] = dict(self.op_instructions)
        instructions = self.instructions if self.windows else None
        if self.verifier is not None:
            self.verifier.on_block(0, 0, False)  # close the last block
            details["instructions_per_insn_hook"] = self.verifier.hooked
            details["condition_failed_instructions"] = self.verifier.skipped
            verified = self.verifier.hooked + self.verifier.skipped
            if instructions is not None and verified != instructions:
                raise RunnerError(f"block-level instruction count {instructions} differs from the "
                                  f"per-instruction count {self.verifier.hooked} + "
                                  f"{self.verifier.skipped} condition-failed instructions")
        stack_peak = arena_used = None
        if self.tracked_windows and "__stack_top" in symbols:
            stack_peak = 0 if self.stack_low is None else symbols["__stack_top"] - self.stack_low
        if self.tracked_windows and "__arena_start" in symbols:
            arena_used = 0 if self.arena_high is None else self.arena_high - symbols["__arena_start"]
            details["arena_low_offset"] = (None if self.arena_low is None
                                           else self.arena_low - symbols["__arena_start"])
        return RunResult(runner="unicorn", console=console, exit_code=self.exit_code,
                         instructions=instructions, stack_peak_hooked_bytes=stack_peak,
                         arena_used_hooked_bytes=arena_used, wall_s=wall, details=details)


def _runner_pattern(start: int, end: int) -> np.ndarray:
    """The runner's paint of the words in [start, end): each a multiplicative hash of its
    address, so no constant a program stores (zeros, a fill, the firmware's 0xA5 paint) matches
    more than by chance."""
    words = np.arange(start, end, 4, dtype=np.uint64)
    return (((words * np.uint64(0x9E3779B1)) >> np.uint64(7)) ^ np.uint64(0x6C8E9CF5)
            ).astype("<u4")


class _CountVerifier:
    """Cross-checks block-level counting with a per-instruction hook (``verify_counts``).

    The per-instruction hook does not fire for an instruction inside an IT block whose condition
    fails, although the core executes it (as a no-op; Arm counts it as architecturally executed,
    and the block count includes it). So the check is: within every measured block, the
    instructions the hook skipped must all be conditional ones; then hooked + skipped must equal
    the block count. A block left early would show unconditional instructions skipped.
    """

    def __init__(self, read):
        self.read = read
        self.disassembler = capstone.Cs(capstone.CS_ARCH_ARM,
                                        capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
        self.disassembler.detail = True
        self.blocks: dict[tuple[int, int], list[tuple[int, bool]]] = {}
        self.current: list[tuple[int, bool]] | None = None
        self.position = 0
        self.hooked = 0
        self.skipped = 0

    def _instructions(self, address: int, size: int) -> list[tuple[int, bool]]:
        key = (address, size)
        if key not in self.blocks:
            self.blocks[key] = [
                (insn.address, insn.cc not in (capstone.arm.ARM_CC_AL, capstone.arm.ARM_CC_INVALID))
                for insn in self.disassembler.disasm(self.read(address, size), address)]
        return self.blocks[key]

    def _skip_to(self, index: int) -> None:
        for address, conditional in self.current[self.position:index]:
            if not conditional:
                raise RunnerError(f"instruction at {address:#010x} did not run although its block "
                                  "did and it is unconditional: the block was left early")
            self.skipped += 1
        self.position = index

    def on_block(self, address: int, size: int, measuring: bool) -> None:
        if self.current is not None:
            self._skip_to(len(self.current))
        self.current = self._instructions(address, size) if measuring else None
        self.position = 0

    def on_instruction(self, address: int) -> None:
        if self.current is None:
            return
        for index in range(self.position, len(self.current)):
            if self.current[index][0] == address:
                self._skip_to(index)
                self.position = index + 1
                self.hooked += 1
                return
        raise RunnerError(f"instruction at {address:#010x} ran outside the block it was counted in")
