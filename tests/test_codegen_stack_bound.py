"""The static stack bound on small hand-made Cortex-M4 programs: frames add up along the deepest
call path, tail calls and branches are followed, and what cannot be bounded (recursion, calls
through a pointer) is refused instead of under-counted."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from edgekit.firmware.stack_bound import StackAnalysisError, analyse, stack_bound

pytestmark = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                                reason="arm-none-eabi-gcc is not installed")

COMMON = r"""
#include <stdint.h>
#define NOINLINE __attribute__((noinline))
extern volatile uint8_t sink;
volatile uint8_t sink;
NOINLINE void leaf256(void) { volatile uint8_t b[256]; b[0] = 1; b[255] = 2; sink = b[0] + b[255]; }
NOINLINE void leaf16(void) { volatile uint8_t b[16]; b[0] = 1; sink = b[0]; }
NOINLINE void middle(int deep) { volatile uint8_t b[64]; b[0] = 3; if (deep) leaf256(); else leaf16(); sink = b[0]; }
"""


def _elf(tmp_path, body: str, libs: tuple[str, ...] = ()):
    source = tmp_path / "prog.c"
    source.write_text(COMMON + body)
    elf = tmp_path / "prog.elf"
    subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-O2", "-nostdlib",
                    "-nostartfiles", "-Wl,-e,Reset_Handler", "-Wl,-Ttext=0x0", str(source),
                    *libs, "-o", str(elf)], check=True, capture_output=True)
    return elf


def test_deepest_path_adds_the_frames(tmp_path):
    elf = _elf(tmp_path, "void Reset_Handler(void) { middle(sink); for (;;) {} }")
    bound = stack_bound(elf)
    frames = {f.name: f.frame_bytes for f in analyse(elf).values()}
    assert bound.path == ("Reset_Handler", "middle", "leaf256")
    assert frames["leaf256"] >= 256 and frames["middle"] >= 64
    assert bound.bytes == frames["Reset_Handler"] + frames["middle"] + frames["leaf256"]
    # the shallow branch is not the bound: it is only 16 bytes deep
    assert frames["leaf16"] < frames["leaf256"]


def test_recursion_is_refused(tmp_path):
    # two recursive calls: gcc cannot turn both into a loop
    elf = _elf(tmp_path, "NOINLINE int fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }\n"
                         "void Reset_Handler(void) { sink = (uint8_t)fib(sink); for (;;) {} }")
    with pytest.raises(StackAnalysisError, match="recursion|indirect"):
        stack_bound(elf)


def test_call_through_a_pointer_is_refused(tmp_path):
    elf = _elf(tmp_path, "void (*volatile hook)(int) = middle;\n"
                         "void Reset_Handler(void) { hook(1); for (;;) {} }")
    with pytest.raises(StackAnalysisError, match="indirect call"):
        stack_bound(elf)


def test_missing_entry_is_refused(tmp_path):
    elf = _elf(tmp_path, "void Reset_Handler(void) { for (;;) {} }")
    with pytest.raises(StackAnalysisError, match="no function 'nope'"):
        stack_bound(elf, entry="nope")


def test_libgcc_helpers_without_a_size_are_followed(tmp_path):
    # 64-bit division calls libgcc's __aeabi_uldivmod, an assembly symbol of size 0 that
    # pushes a frame and calls __udivmoddi4 (the LAYER_NORM kernel divides 64-bit values)
    elf = _elf(tmp_path, "volatile uint64_t num = 1ull << 61; volatile uint32_t den = 3;\n"
                         "void Reset_Handler(void) { sink = (uint8_t)(num / den); for (;;) {} }",
               libs=("-lgcc",))
    bound = stack_bound(elf)
    frames = {f.name: f.frame_bytes for f in analyse(elf).values()}
    assert bound.path[:3] == ("Reset_Handler", "__aeabi_uldivmod", "__udivmoddi4")
    assert frames["__aeabi_uldivmod"] > 0
    assert bound.bytes == sum(frames[name] for name in bound.path)


# libgcc's 64-bit division (LAYER_NORM's reciprocal square root calls it) is assembly: its symbol
# has no size, and it makes its frame with a pre-indexed store, not a push
SIZELESS = r"""
__asm__(".text\n.balign 4\n.global wb_push\n.type wb_push, %function\n.thumb_func\nwb_push:\n"
        "  strd ip, lr, [sp, #-16]!\n  bl leaf256\n  ldr lr, [sp, #4]\n  add sp, #16\n  bx lr\n"
        ".global wb_one\n.type wb_one, %function\n.thumb_func\nwb_one:\n"
        "  str lr, [sp, #-8]!\n  bl wb_push\n  ldr pc, [sp], #8\n");
void wb_one(void);
void Reset_Handler(void) { wb_one(); for (;;) {} }
"""


def test_sizeless_assembly_and_writeback_stores_are_counted(tmp_path):
    elf = _elf(tmp_path, SIZELESS)
    frames = {f.name: f for f in analyse(elf).values()}
    assert frames["wb_push"].frame_bytes == 16 and frames["wb_one"].frame_bytes == 8
    bound = stack_bound(elf)
    assert bound.path == ("Reset_Handler", "wb_one", "wb_push", "leaf256")
    assert bound.bytes == (frames["Reset_Handler"].frame_bytes + 8 + 16
                           + frames["leaf256"].frame_bytes)


# gcc restores the callee-saved registers and then branches to a tail call (`ldm sp!, {.., lr};
# b.w f`) in the middle of a function whose body goes on at the full depth; libgcc branches
# conditionally into the middle of another function (__aeabi_idivmod into __divsi3)
BRANCHES = r"""
__asm__(".text\n.syntax unified\n.balign 4\n"
        ".global tail_after_epilogue\n.type tail_after_epilogue, %function\n.thumb_func\n"
        "tail_after_epilogue:\n  push {r4, lr}\n  cmp r0, #0\n  beq 1f\n  pop {r4, lr}\n"
        "  b.w leaf16\n1:\n  bl leaf256\n  pop {r4, pc}\n"
        ".size tail_after_epilogue, .-tail_after_epilogue\n"
        ".global shared\n.type shared, %function\n.thumb_func\n"
        "shared:\n  movs r0, #0\n.Lshared_tail:\n  push {r0, lr}\n  bl leaf256\n  pop {r0, pc}\n"
        ".size shared, .-shared\n"
        ".global into_middle\n.type into_middle, %function\n.thumb_func\n"
        "into_middle:\n  cmp r0, #0\n  beq.w .Lshared_tail\n  bx lr\n"
        ".size into_middle, .-into_middle\n");
void tail_after_epilogue(int), into_middle(int);
void Reset_Handler(void) { tail_after_epilogue(sink); into_middle(sink); for (;;) {} }
"""


def test_tail_calls_after_an_epilogue_and_branches_into_a_function(tmp_path):
    elf = _elf(tmp_path, BRANCHES)
    leaf = {f.name: f for f in analyse(elf).values()}["leaf256"].frame_bytes
    tail = stack_bound(elf, entry="tail_after_epilogue")
    assert tail.bytes == 8 + leaf and tail.path == ("tail_after_epilogue", "leaf256")
    middle = stack_bound(elf, entry="into_middle")
    assert middle.bytes == 8 + leaf and middle.path == ("into_middle", "shared", "leaf256")


# a frame's alignment padding is reserved but never written: painting cannot see it, so the bound
# (compared with the painted high-water mark) leaves it out; a stack address in a register may
# be written through, so it keeps the whole frame
PADDING = r"""
__asm__(".text\n.syntax unified\n.balign 4\n"
        ".global padded\n.type padded, %function\n.thumb_func\n"
        "padded:\n  sub sp, #16\n  str r0, [sp, #8]\n  ldr r0, [sp, #8]\n  add sp, #16\n  bx lr\n"
        ".size padded, .-padded\n"
        ".global escaping\n.type escaping, %function\n.thumb_func\n"
        "escaping:\n  sub sp, #16\n  str r0, [sp, #8]\n  add r1, sp, #4\n  add sp, #16\n  bx lr\n"
        ".size escaping, .-escaping\n");
void padded(int), escaping(int);
void Reset_Handler(void) { padded(sink); escaping(sink); for (;;) {} }
"""


def test_never_written_padding_is_left_out_unless_sp_escapes(tmp_path):
    elf = _elf(tmp_path, PADDING)
    frames = {f.name: f for f in analyse(elf).values()}
    assert frames["padded"].frame_bytes == frames["escaping"].frame_bytes == 16
    assert frames["padded"].written_bytes == 8 and frames["escaping"].written_bytes == 16
    assert stack_bound(elf, entry="padded").bytes == 8
    assert stack_bound(elf, entry="escaping").bytes == 16
