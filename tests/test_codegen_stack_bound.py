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
