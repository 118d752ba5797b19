"""Hand-written Cortex-M4 test programs for the runner tests, assembled with arm-none-eabi-gcc.

They do not depend on the firmware generator, and their instruction counts and stack use are
known by hand, which is what makes them oracles for the Unicorn runner's counting:

* ``exit``: prints "hello\\n" on the CMSDK UART, then between the markers runs
  ``edgekit_measure_begin`` (1: ``bx lr``), ``movs`` (1), a 100-iteration ``subs/bne`` loop
  (200), ``sub sp/str/add sp`` (3) and the ``bl edgekit_measure_end`` (1): 206 instructions;
  the ``str`` at ``sp - 256`` from the stack top is the only stack write: peak 256 bytes. Then
  semihosting SYS_EXIT (status 0).
* ``forever``: the same, but loops forever instead of exiting.
* ``fault``: prints, then executes ``udf`` (an undefined instruction).
* ``semihost``: prints "semi\\n" through semihosting SYS_WRITE0 and exits with status 3 through
  SYS_EXIT_EXTENDED.
* ``flood``: prints "hello\\n", then writes 'x' to the UART forever (a console flood).
* ``silent``: prints nothing and spins forever.
* ``semiflood``: prints "semi\\n" through semihosting SYS_WRITE0 forever.
* ``itpage``: with `LINKER_IT_PAGE`, after the paint marker an IT block of two conditional
  stores into the stack region ends exactly at the 4 KiB page boundary 0x1000, where a
  conditional branch (legal only outside an IT block) follows, then exits with status 0; the
  stores are its only stack writes below the top: peak 4096 - 0 (the stack's lowest bytes).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

GCC = "arm-none-eabi-gcc"
EXPECTED_INSTRUCTIONS = 206
EXPECTED_STACK_PEAK = 256

_PRELUDE = """
    .syntax unified
    .cpu cortex-m4
    .thumb
    .section .vectors, "a"
    .word __stack_top
    .word reset + 1
    .rept 14
    .word hang + 1
    .endr
    .text
    .thumb_func
hang: b hang
    .thumb_func
    .global edgekit_measure_begin
edgekit_measure_begin: bx lr
    .thumb_func
    .global edgekit_measure_end
edgekit_measure_end: bx lr
    .thumb_func
    .global edgekit_stack_paint_done
edgekit_stack_paint_done: bx lr
    .thumb_func
    .global edgekit_report_begin
edgekit_report_begin: bx lr
    .thumb_func
print_hello:
    ldr r1, =0x40004000
    movs r0, #16
    str r0, [r1, #0x10]
    movs r0, #1
    str r0, [r1, #8]
    ldr r2, =hello
1:  ldrb r0, [r2], #1
    cbz r0, 2f
    str r0, [r1]
    b 1b
2:  bx lr
    .thumb_func
measured:
    push {lr}
    bl edgekit_stack_paint_done
    pop {lr}
    mov r4, lr
    bl edgekit_measure_begin
    movs r0, #100
3:  subs r0, #1
    bne 3b
    sub sp, #256
    str r0, [sp]
    add sp, #256
    bl edgekit_measure_end
    bl edgekit_report_begin
    bx r4
"""

_BODIES = {
    "exit": """
    .thumb_func
reset:
    bl print_hello
    bl measured
    ldr r1, =0x20026
    movs r0, #0x18
    bkpt 0xab
    b hang
""",
    "forever": """
    .thumb_func
reset:
    bl print_hello
    bl measured
9:  b 9b
""",
    "fault": """
    .thumb_func
reset:
    bl print_hello
    udf #0
""",
    "flood": """
    .thumb_func
reset:
    bl print_hello
    movs r0, #120
8:  str r0, [r1]
    b 8b
""",
    "silent": """
    .thumb_func
reset:
    b reset
""",
    "semiflood": """
    .thumb_func
reset:
    ldr r1, =semi
    movs r0, #0x04
    bkpt 0xab
    b reset
""",
    "itpage": """
    .thumb_func
reset:
    bl edgekit_stack_paint_done
    ldr r0, =__stack_bottom
    movs r2, #1
    movs r3, #7
    bl it_page_end
    bl edgekit_report_begin
    ldr r1, =0x20026
    movs r0, #0x18
    bkpt 0xab
    b hang
    .section .text.itpage, "ax"
    .thumb_func
it_page_end:
    lsls r2, r2, #31
    itt ne
    strbne.w r3, [r0], #1
    strbne.w r3, [r0], #1
    bcc 1f
    b hang
1:  bx lr
    .text
""",
    "semihost": """
    .thumb_func
reset:
    ldr r1, =semi
    movs r0, #0x04
    bkpt 0xab
    ldr r1, =exit_block
    movs r0, #0x20
    bkpt 0xab
    b hang
""",
}

_DATA = """
    .section .rodata
hello: .asciz "hello\\n"
semi: .asciz "semi\\n"
    .align 2
exit_block: .word 0x20026, 3
"""

_LINKER = """
MEMORY { FLASH (rx) : ORIGIN = 0x0, LENGTH = 64K  RAM (rwx) : ORIGIN = 0x20000000, LENGTH = 64K }
SECTIONS {
  .text : { KEEP(*(.vectors)) *(.text*) *(.rodata*) } > FLASH
  .bss (NOLOAD) : { __stack_bottom = .; . += 4096; __stack_top = .; } > RAM
}
"""


#: as `_LINKER`, with the stack's load address in flash right after .text (as the board linker
#: scripts place .bss after .data's flash image)
LINKER_STACK_LOADED_IN_FLASH = _LINKER.replace("} > RAM", "} > RAM AT > FLASH")


#: as `_LINKER`, with ``.text.itpage`` placed so that its IT block ends at 0x1000
LINKER_IT_PAGE = _LINKER.replace(
    "*(.text*) *(.rodata*) } > FLASH",
    "*(.text) *(.rodata*) } > FLASH\n  .itpage 0xff4 : { *(.text.itpage) } > FLASH")


def build_tiny(directory: Path, variant: str, linker: str = _LINKER) -> Path:
    """Assemble and link program `variant` into `directory`; skips when the toolchain is absent."""
    if shutil.which(GCC) is None:
        pytest.skip(f"{GCC} is not installed")
    source = directory / f"{variant}.S"
    source.write_text(_PRELUDE + _BODIES[variant] + _DATA)
    script = directory / "tiny.ld"
    script.write_text(linker)
    elf = directory / f"{variant}.elf"
    subprocess.run([GCC, "-mcpu=cortex-m4", "-mthumb", "-nostdlib", "-T", str(script),
                    str(source), "-o", str(elf)], check=True, capture_output=True)
    return elf


def write_minimal_elf(path: Path, machine: int = 40) -> Path:
    """A minimal, structurally valid Cortex-M ELF written without a toolchain: one PT_LOAD at 0x0
    holding a vector table (SP 0x20001000, reset at 0x8) and a ``b .`` loop, entry 0x9, no
    sections. `machine` is e_machine (40 = EM_ARM). For runner tests that never execute it."""
    import struct

    code = struct.pack("<II", 0x2000_1000, 0x9) + b"\xfe\xe7"  # b .
    header_size, phdr_size = 52, 32
    offset = header_size + phdr_size
    ident = b"\x7fELF" + bytes([1, 1, 1]) + bytes(9)
    header = ident + struct.pack("<HHIIIIIHHHHHH", 2, machine, 1, 0x9, header_size, 0, 0x5000000,
                                 header_size, phdr_size, 1, 40, 0, 0)
    phdr = struct.pack("<IIIIIIII", 1, offset, 0, 0, len(code), len(code), 5, 4)
    path.write_bytes(header + phdr + code)
    return path
