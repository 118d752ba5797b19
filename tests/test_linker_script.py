"""Generated linker scripts: regions, sizes and symbols; a too-big firmware fails to link."""

from __future__ import annotations

import re
import shutil

import pytest
from elftools.elf.elffile import ELFFile

from edgekit.boards import target_for
from edgekit.boards.linker import linker_script
from edgekit.errors import BuildError, MemoryOverflowError

needs_toolchain = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None or shutil.which("make") is None,
                                     reason="arm-none-eabi-gcc or make not installed")


def _memory(script: str) -> dict[str, tuple[int, int]]:
    found = re.findall(r"^\s+(\w+) \(\w+\) : ORIGIN = (0x[0-9a-f]+), LENGTH = (0x[0-9a-f]+)", script, re.M)
    return {name: (int(origin, 16), int(length, 16)) for name, origin, length in found}


@pytest.mark.parametrize("board_id, flash, sram_name, sram", [
    ("mps2-an386", (0x0, 0x400000), "SSRAM23", (0x2000_0000, 0x400000)),
    ("mps3-an547", (0x1000_0000, 0x80000), "DTCM", (0x3000_0000, 0x80000)),
    ("netduinoplus2", (0x0800_0000, 0x100000), "SRAM", (0x2000_0000, 0x20000)),
    ("lm3s6965evb", (0x0, 0x40000), "SRAM", (0x2000_0000, 0x10000)),
    # real boards on their stand-ins: stand-in origins, real sizes
    ("disco-f746ng", (0x0, 0x100000), "SRAM", (0x2000_0000, 320 * 1024)),
    ("nucleo-h743zi", (0x0, 0x200000), "AXI_SRAM", (0x2000_0000, 512 * 1024)),
    ("nrf52840dk", (0x0, 0x100000), "SRAM", (0x2000_0000, 256 * 1024)),
    ("rpi-pico", (0x1000_0000, 0x200000), "SRAM", (0x2000_0000, 264 * 1024)),
])
def test_regions_and_sizes(board_id, flash, sram_name, sram):
    script = linker_script(target_for(board_id), stack_bytes=4096)
    assert _memory(script) == {"FLASH": flash, sram_name: sram}
    assert f"> {sram_name} AT > FLASH" in script
    assert "__edgekit_stack_bytes = 0x1000;" in script


def test_hardware_build_uses_the_boards_own_addresses():
    script = linker_script(target_for("nucleo-h743zi", emulated=False))
    assert _memory(script) == {"FLASH": (0x0800_0000, 0x200000), "AXI_SRAM": (0x2400_0000, 0x80000)}


def test_symbols_for_startup_and_report_protocol():
    script = linker_script(target_for("mps2-an386"))
    for symbol in ("__stack_bottom", "__stack_top", "__arena_start", "__arena_end", "__data_start",
                   "__data_end", "__data_load", "__bss_start", "__bss_end"):
        assert re.search(rf"\b{symbol} = ", script), symbol
    assert "ENTRY(Reset_Handler)" in script and "KEEP(*(.vectors))" in script
    # the arena sits inside .bss, so static RAM (.data + .bss) includes it
    bss = script[script.index(".bss (NOLOAD)"):script.index(".stack (NOLOAD)")]
    assert "KEEP(*(.bss.edgekit_arena))" in bss


@pytest.mark.parametrize("stack", [0, -8, 1001])
def test_bad_stack_size(stack):
    with pytest.raises(BuildError, match=f"stack size {stack} bytes"):
        linker_script(target_for("mps2-an386"), stack_bytes=stack)


@needs_toolchain
def test_too_big_firmware_fails_with_region_and_exact_overflow(tmp_path):
    from edgekit.firmware.build import build_selftest

    fits = build_selftest("lm3s6965evb", tmp_path / "fits", stack_bytes=4096)
    with fits.elf_path.open("rb") as handle:
        symbols = ELFFile(handle).get_section_by_name(".symtab")
        stack_top = symbols.get_symbol_by_name("__stack_top")[0]["st_value"]
    used = stack_top - 0x2000_0000  # static RAM + alignment + stack: the end of what ld places
    assert used >= fits.manifest["static_ram_bytes"] + 4096
    extra = 70 * 1024  # 64 KB board: certainly too big
    with pytest.raises(MemoryOverflowError) as info:
        build_selftest("lm3s6965evb", tmp_path / "big", stack_bytes=4096, extra_arena_bytes=extra)
    assert info.value.region == "SRAM"
    assert info.value.overflow_bytes == used + extra - 64 * 1024
    assert "region SRAM overflowed by" in str(info.value) and "lm3s6965evb" in str(info.value)


@needs_toolchain
def test_stand_in_enforces_the_real_boards_sram(tmp_path):
    """Both boards run on mps2-an386 (4 MB), but only the 640 KB board fits a 300 KB arena."""
    from edgekit.firmware.build import build_selftest

    big = 300 * 1024
    ok = build_selftest("nucleo-l4r5zi", tmp_path / "l4", extra_arena_bytes=big)
    assert ok.manifest["host_board"] == "mps2-an386" and ok.manifest["arena_bytes"] > big
    with pytest.raises(MemoryOverflowError) as info:
        build_selftest("nrf52840dk", tmp_path / "nrf", extra_arena_bytes=big)
    assert info.value.region == "SRAM" and info.value.overflow_bytes > 0
