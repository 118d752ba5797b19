"""Worst-case stack depth of a Cortex-M (Thumb) ELF by static call-graph analysis, without
running it.

Every function symbol is disassembled (capstone), skipping the literal pools that the ``$d``
mapping symbols mark; an assembly function without ``.size`` (libgcc's ``__aeabi_uldivmod``)
extends to the next function. Walking a function linearly, pushes, ``vpush``, ``sub sp, #n``
and pre-indexed stores (``str rX, [sp, #-n]!``) deepen the frame, pops, ``add sp, #n`` and
post-indexed loads release it; after a return (``pop {.., pc}``, ``bx lr``) or an unconditional
tail branch the walk goes back to the depth the body had, since code after an epilogue is
reached from the body. A direct call (``bl``) or tail call (a branch, conditional or not, out of
the function; into another function's middle counts that whole function) adds the callee's
depth at the current frame depth.

A function's depth is the largest of its own written frame and its calls'. The own frame counts
down to the deepest word an instruction writes, which is what the firmware's painted stack
high-water mark measures (design.md): words reserved but never written (the padding that keeps
the stack 8-byte aligned) are left out, unless the stack pointer is copied to a register,
through which any word may be written.

What the analysis cannot bound -- an indirect call (``blx rN``), a stack pointer set from a
register, recursion -- raises `StackAnalysisError` naming the function, rather than giving a
number that might be low.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection

from capstone import CS_ARCH_ARM, CS_MODE_MCLASS, CS_MODE_THUMB, Cs
from capstone import arm as cs_arm
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from edgekit.errors import BuildError


class StackAnalysisError(BuildError):
    """The ELF's stack depth cannot be bounded statically (indirect call, recursion, ...)."""


@dataclass
class FunctionFrame:
    """What the walk of one function found."""

    name: str
    frame_bytes: int = 0  # deepest own frame
    calls: list[tuple[int, int]] = field(default_factory=list)  # (frame depth at call, target)
    unbounded: str | None = None  # why its depth cannot be bounded
    size: int = 0  # bytes of code from its start
    #: deepest own stack word written (what painting sees): frame_bytes less the reserved words
    #: no instruction writes (alignment padding); frame_bytes where sp escapes to a register
    written_bytes: int = 0


@dataclass(frozen=True)
class StackBound:
    """The deepest path from ``entry``: its bytes and the functions on it, outermost first."""

    entry: str
    bytes: int
    path: tuple[str, ...]


def _mapping_ranges(symbols, section_start: int, section_end: int) -> list[tuple[int, str]]:
    marks = sorted((s["st_value"] & ~1, s.name[:2]) for s in symbols
                   if s.name[:2] in ("$t", "$d", "$a") and section_start <= s["st_value"] < section_end)
    return marks


def _reg_count(insn) -> int:
    return sum(1 for op in insn.operands if op.type == cs_arm.ARM_OP_REG)


def _imm(insn) -> int | None:
    for op in reversed(insn.operands):
        if op.type == cs_arm.ARM_OP_IMM:
            return op.imm
    return None


def _writes_sp_register(insn) -> bool:
    ops = insn.operands
    return bool(ops) and ops[0].type == cs_arm.ARM_OP_REG and ops[0].reg == cs_arm.ARM_REG_SP


#: direct branches, conditional ones included (``bne.w`` out of the function is a tail call too)
_BRANCHES = frozenset({"b", "cbz", "cbnz"} | {f"b{cc}" for cc in (
    "eq", "ne", "cs", "hs", "cc", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt", "gt",
    "le", "al")})
_ALWAYS = (cs_arm.ARM_CC_AL, cs_arm.ARM_CC_INVALID)


def _sp_memory(insn):
    """The memory operand of ``insn`` when its base register is the stack pointer."""
    for op in insn.operands:
        if op.type == cs_arm.ARM_OP_MEM and op.mem.base == cs_arm.ARM_REG_SP:
            return op.mem
    return None


def _loop_branch_at(blob: bytes, at: int) -> bool:
    """Whether the 32-bit Thumb instruction at ``at`` is one of ARMv8.1-M's low-overhead-loop
    branches (DLS, WLS, LE and their tail-predicated forms: first halfword 0xF000-0xF07F,
    second 11xx...1), which capstone 5 does not decode."""
    if at + 4 > len(blob):
        return False
    first = int.from_bytes(blob[at:at + 2], "little")
    second = int.from_bytes(blob[at + 2:at + 4], "little")
    return (first & 0xFF80) == 0xF000 and (second & 0xC001) == 0xC001


def _instructions(cs: Cs, blob: bytes, address: int):
    """The instructions of a code piece in order. capstone stops at the first encoding it cannot
    decode; a low-overhead-loop branch (gcc's loops on the Cortex-M55) neither moves the stack
    pointer nor calls, so the walk steps over it instead of ending the piece there (ending it
    left the calls after such a loop out of the bound: an estimate below the painted stack)."""
    offset = 0
    while offset < len(blob):
        end = offset
        for insn in cs.disasm(blob[offset:], address + offset):
            yield insn
            end = insn.address - address + insn.size
        if end >= len(blob) or not _loop_branch_at(blob, end):
            return
        offset = end + 4


def _walk(cs: Cs, name: str, start: int, code: bytes, data_ranges: list[tuple[int, int]],
          func_range: tuple[int, int]) -> FunctionFrame:
    frame = FunctionFrame(name)
    depth = 0
    body_depth = 0  # depth before the current run of releases (an epilogue in progress)
    releasing = False
    written, escaped = 0, False
    pieces = _code_pieces(start, len(code), data_ranges)
    for piece_start, piece_end in pieces:
        blob = code[piece_start - start:piece_end - start]
        for insn in _instructions(cs, blob, piece_start):
            mnemonic = insn.mnemonic.split(".")[0]
            regs = {op.reg for op in insn.operands if op.type == cs_arm.ARM_OP_REG}
            before = depth
            if mnemonic in ("push", "vpush") or (mnemonic in ("stmdb", "stmfd") and insn.writeback
                                                 and cs_arm.ARM_REG_SP in regs):
                size = 8 if mnemonic == "vpush" and insn.op_str.startswith("{d") else 4
                count = _reg_count(insn) - (1 if mnemonic in ("stmdb", "stmfd") else 0)
                depth += size * count
                releasing = False
            elif mnemonic in ("sub", "subw") and _writes_sp_register(insn):
                amount = _imm(insn)
                if amount is None:
                    frame.unbounded = f"{name}: stack pointer lowered by a register amount ({insn.mnemonic} {insn.op_str})"
                    break
                depth += amount
                releasing = False
            elif mnemonic in ("pop", "vpop") or (mnemonic in ("ldm", "ldmia", "ldmfd") and insn.writeback
                                                 and insn.operands[0].reg == cs_arm.ARM_REG_SP):
                if not releasing:
                    body_depth, releasing = depth, True
                size = 8 if mnemonic == "vpop" and insn.op_str.startswith("{d") else 4
                count = _reg_count(insn) - (1 if mnemonic.startswith("ldm") else 0)
                depth -= size * count
                if cs_arm.ARM_REG_PC in regs:  # a return: code after it runs at the body's depth
                    depth, releasing = body_depth, False
            elif mnemonic in ("add", "addw") and _writes_sp_register(insn) and len(insn.operands) >= 2 \
                    and insn.operands[1].type in (cs_arm.ARM_OP_REG, cs_arm.ARM_OP_IMM) and _imm(insn) is not None:
                if not releasing:
                    body_depth, releasing = depth, True
                depth -= _imm(insn)
            elif insn.writeback and _sp_memory(insn) is not None:
                # str rX, [sp, #-n]! (a one-register push, as libgcc's and newlib's assembly
                # writes it) deepens; ldr rX, [sp], #n releases
                mem = _sp_memory(insn)
                step = _imm(insn) if insn.post_index else mem.disp
                if mnemonic.startswith("st") and step < 0:
                    depth -= step
                    releasing = False
                elif mnemonic.startswith("ld") and step > 0:
                    if not releasing:
                        body_depth, releasing = depth, True
                    depth -= step
                    if cs_arm.ARM_REG_PC in regs:
                        depth, releasing = body_depth, False
                else:
                    frame.unbounded = f"{name}: stack pointer moved by {insn.mnemonic} {insn.op_str}"
                    break
            elif mnemonic == "mov" and _writes_sp_register(insn):
                if depth == 0 and frame.frame_bytes == 0 and not frame.calls:
                    continue  # the reset handler loading the initial stack pointer
                frame.unbounded = f"{name}: stack pointer set from a register ({insn.mnemonic} {insn.op_str})"
                break
            elif mnemonic == "bx" and cs_arm.ARM_REG_LR in regs:
                depth, releasing = (body_depth if releasing else depth), False
            elif mnemonic == "bl":
                frame.calls.append((depth, _imm(insn)))
            elif mnemonic == "blx":
                target = _imm(insn)
                if target is None:
                    frame.unbounded = f"{name}: indirect call ({insn.mnemonic} {insn.op_str})"
                    break
                frame.calls.append((depth, target))
            elif mnemonic in _BRANCHES and _imm(insn) is not None:
                target = _imm(insn)
                if not func_range[0] <= target < func_range[1]:
                    frame.calls.append((depth, target))  # a tail call (maybe conditional)
                    if mnemonic == "b" and insn.cc in _ALWAYS:
                        # like a return: the code after it is reached from the body, whose
                        # frame the epilogue before this branch released
                        depth, releasing = (body_depth if releasing else depth), False
            frame.frame_bytes = max(frame.frame_bytes, depth)
            reach = _written_depth(insn, mnemonic, regs, before, depth)
            if reach is None:
                escaped = True
            else:
                written = max(written, reach)
        if frame.unbounded:
            break
    frame.written_bytes = frame.frame_bytes if escaped else min(written, frame.frame_bytes)
    return frame


def _written_depth(insn, mnemonic: str, regs: set, before: int, after: int) -> int | None:
    """How deep into the frame ``insn`` writes (0: not at all); None when it copies the stack
    pointer into another register, through which any word of the frame may be written."""
    sp = cs_arm.ARM_REG_SP
    ops = insn.operands
    if mnemonic in ("push", "vpush") or (mnemonic.startswith("stm") and insn.writeback
                                         and ops and ops[0].reg == sp):
        return after
    mem = _sp_memory(insn)
    if mem is not None:
        if not mnemonic.startswith(("st", "vst")):
            return 0  # a load
        return max(before, after) if insn.writeback else before - mem.disp
    if sp in regs:
        if mnemonic.startswith(("stm", "st", "vst")) or (ops and ops[0].reg != sp):
            if mnemonic.startswith("stm") and ops[0].reg == sp:
                return before  # stm sp, {..}: from the stack pointer up
            return None
    return 0


def _code_pieces(start: int, size: int, data_ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    pieces, cursor, end = [], start, start + size
    for lo, hi in data_ranges:
        if hi <= cursor or lo >= end:
            continue
        if lo > cursor:
            pieces.append((cursor, lo))
        cursor = max(cursor, hi)
    if cursor < end:
        pieces.append((cursor, end))
    return pieces


def analyse(elf_path: str | Path) -> dict[int, FunctionFrame]:
    """Every function of the ELF by start address (Thumb bit cleared)."""
    cs = Cs(CS_ARCH_ARM, CS_MODE_THUMB | CS_MODE_MCLASS)
    cs.detail = True
    frames: dict[int, FunctionFrame] = {}
    with Path(elf_path).open("rb") as handle:
        elf = ELFFile(handle)
        symtab = elf.get_section_by_name(".symtab")
        if not isinstance(symtab, SymbolTableSection):
            raise StackAnalysisError(f"{elf_path}: no symbol table (built without symbols?)")
        symbols = list(symtab.iter_symbols())
        text_sections = [s for s in elf.iter_sections() if s["sh_flags"] & 0x4 and s["sh_size"]]
        for section in text_sections:
            lo, hi = section["sh_addr"], section["sh_addr"] + section["sh_size"]
            marks = _mapping_ranges(symbols, lo, hi)
            data_ranges = []
            for i, (address, kind) in enumerate(marks):
                if kind == "$d":
                    nxt = marks[i + 1][0] if i + 1 < len(marks) else hi
                    data_ranges.append((address, nxt))
            content = section.data()
            starts = sorted({s["st_value"] & ~1 for s in symbols
                             if s["st_info"]["type"] == "STT_FUNC" and lo <= s["st_value"] < hi})
            for sym in symbols:
                if sym["st_info"]["type"] != "STT_FUNC":
                    continue
                start = sym["st_value"] & ~1
                if not lo <= start < hi or start in frames:
                    continue
                size = sym["st_size"]
                if not size:  # an assembly function without .size (libgcc's __aeabi_uldivmod)
                    later = [a for a in starts if a > start]
                    size = (later[0] if later else hi) - start
                code = content[start - lo:start - lo + size]
                frames[start] = _walk(cs, sym.name, start, code, data_ranges,
                                      (start, start + size))
                frames[start].size = size
    return frames


def stack_bound(elf_path: str | Path, entry: str = "Reset_Handler",
                never_called: Collection[str] = ()) -> StackBound:
    """The worst-case stack depth reached from the function `entry`. Calls to the functions
    named in ``never_called`` are left out: the caller knows from the data that those branches
    are never taken (`edgekit.firmware.estimate`)."""
    frames = analyse(elf_path)
    by_name = {f.name: addr for addr, f in frames.items()}
    if entry not in by_name:
        raise StackAnalysisError(f"{elf_path}: no function {entry!r}")
    memo: dict[int, tuple[int, tuple[str, ...]]] = {}
    starts = sorted(frames)

    def containing(address: int) -> int:
        # a branch into the middle of a function (libgcc's __aeabi_idivmod shares the
        # division-by-zero tail of __divsi3): counted as a call of the whole function, whose
        # depth bounds that of any of its points
        i = bisect.bisect_right(starts, address) - 1
        if i >= 0 and address < starts[i] + frames[starts[i]].size:
            return starts[i]
        return address

    def depth(address: int, active: tuple[int, ...]) -> tuple[int, tuple[str, ...]]:
        address = containing(address)
        if address in memo:
            return memo[address]
        frame = frames.get(address)
        if frame is None:
            raise StackAnalysisError(f"{elf_path}: call to {address:#x}, which is no function"
                                     " symbol")
        if frame.unbounded:
            raise StackAnalysisError(frame.unbounded)
        if address in active:
            raise StackAnalysisError(f"{elf_path}: recursion through {frame.name}")
        best = (frame.written_bytes, (frame.name,))
        for at, target in frame.calls:
            callee = frames.get(containing(target))
            if callee is not None and callee.name in never_called:
                continue
            below, path = depth(target, active + (address,))
            if at + below > best[0]:
                best = (at + below, (frame.name,) + path)
        memo[address] = best
        return best

    total, path = depth(by_name[entry], ())
    return StackBound(entry, total, path)
