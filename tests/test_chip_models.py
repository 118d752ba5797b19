"""The register models the Unicorn runner uses for hardware builds (test fixtures) are strict:
an unmodelled register, a gated peripheral, an unsafe clock switch or an uninvalidated cache
fail with the address, and ready bits follow what the firmware enabled."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from edgekit.boards.runners.chip_models import CHIP_MODELS, chip_model
from edgekit.boards.runners.uart_models import uart_model
from edgekit.boards import list_boards
from edgekit.errors import RunnerError


def _model(bsp: str, base: int, kind: str = "stm32_usart_v2"):
    sent = bytearray()
    return chip_model(bsp, uart_model(kind, sent.extend), base), sent


def test_every_board_with_a_bsp_has_a_model() -> None:
    assert {b.bsp for b in list_boards() if b.bsp} <= set(CHIP_MODELS)


def test_unmodelled_register_fails_with_its_address() -> None:
    chip, _ = _model("stm32f746", 0x4001_1000)
    with pytest.raises(RunnerError, match=r"read of unmodelled register 0x40023834"):
        chip.read(None, 0x4002_3834, 4)  # RCC_AHB2ENR: the BSP never touches it
    with pytest.raises(RunnerError, match=r"write of unmodelled register 0x40021000"):
        chip.write(None, 0x4002_1000, 4, 1)  # GPIOE


def test_ready_bits_follow_enables_and_clock_switch() -> None:
    chip, _ = _model("stm32f746", 0x4001_1000)
    assert not chip.read(None, 0x4002_3800, 4) >> 17 & 1
    chip.write(None, 0x4002_3800, 4, chip.read(None, 0x4002_3800, 4) | 1 << 16 | 1 << 24)
    value = chip.read(None, 0x4002_3800, 4)
    assert value >> 17 & 1 and value >> 25 & 1  # HSERDY, PLLRDY
    with pytest.raises(RunnerError, match="PLL with 0 flash wait states"):
        chip.write(None, 0x4002_3808, 4, 2)
    chip.write(None, 0x4002_3C00, 4, 7)
    chip.write(None, 0x4002_3808, 4, 2)
    assert chip.read(None, 0x4002_3808, 4) >> 2 & 3 == 2  # SWS = PLL


def test_gated_peripheral_and_console() -> None:
    chip, sent = _model("stm32f746", 0x4001_1000)
    with pytest.raises(RunnerError, match="PWR register 0x40007000 while its bus clock is off"):
        chip.write(None, 0x4000_7000, 4, 0xC000)
    with pytest.raises(RunnerError, match="USART1 register 0x40011028"):
        chip.write(None, 0x4001_1028, 4, ord("x"))
    chip.write(None, 0x4002_3844, 4, 1 << 4)
    chip.write(None, 0x4001_1028, 4, ord("x"))
    assert sent == b"x"


def test_d_cache_needs_every_set_and_way_invalidated() -> None:
    chip, _ = _model("stm32h743", 0x4000_4800)
    chip.write(None, 0xE000EF50, 4, 0)
    chip.write(None, 0xE000ED14, 4, 0x200 | 1 << 17)  # I-cache after ICIALLU: fine
    with pytest.raises(RunnerError, match="1024 of 1024 set/way lines not invalidated"):
        chip.write(None, 0xE000ED14, 4, 0x200 | 3 << 16)


def test_nrf_clock_task_and_uarte_dma_from_ram_only() -> None:
    chip, sent = _model("nrf52840", 0x4000_2000, "nrf_uarte")
    assert chip.read(None, 0x4000_0100, 4) == 0
    chip.write(None, 0x4000_0000, 4, 1)
    assert chip.read(None, 0x4000_0100, 4) == 1
    for offset, value in ((0x544, 0x2000_0000), (0x548, 2)):
        chip.write(None, 0x4000_2000 + offset, 4, value)
    chip.write(lambda address, count: {0x2000_0000: b"ok"}[address][:count], 0x4000_2008, 4, 1)
    assert sent == b"ok"
    chip.write(None, 0x4000_2544, 4, 0x0000_1000)  # a flash address
    with pytest.raises(RunnerError, match="EasyDMA reads only RAM"):
        chip.write(None, 0x4000_2008, 4, 1)


def test_boot2_crc_known_answer() -> None:
    from edgekit.firmware.boot2 import crc32_mpeg2

    assert crc32_mpeg2(b"123456789") == 0x0376E6E7  # CRC-32/MPEG-2 check value


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="no arm-none-eabi-gcc")
def test_pico_hardware_build_has_a_checksummed_boot_stage(tmp_path) -> None:
    from elftools.elf.elffile import ELFFile

    from edgekit.boards import target_for
    from edgekit.firmware import platformio
    from edgekit.firmware.boot2 import crc32_mpeg2
    from edgekit.firmware.build import build_selftest

    result = build_selftest("rpi-pico", tmp_path / "pico", emulated=False)
    with result.elf_path.open("rb") as handle:
        elf = ELFFile(handle)
        boot2 = elf.get_section_by_name(".boot2")
        assert (boot2["sh_addr"], boot2["sh_size"]) == (0x1000_0000, 256)
        stage, offset = boot2.data(), boot2["sh_offset"]
        vectors = elf.get_section_by_name(".text")["sh_addr"]
    assert vectors == 0x1000_0100
    assert int.from_bytes(stage[252:], "little") == crc32_mpeg2(stage[:252])
    # `make` alone (the Makefile's last step) writes the CRC again after a relink
    data = bytearray(result.elf_path.read_bytes())
    data[offset + 252:offset + 256] = b"\0\0\0\0"
    result.elf_path.write_bytes(bytes(data))
    subprocess.run([sys.executable, "boot2.py", "firmware.elf"], cwd=result.directory, check=True)
    assert result.elf_path.read_bytes()[offset + 252:offset + 256] == stage[252:]
    platformio.write_project(result.directory, target_for("rpi-pico", emulated=False), [])
    assert "extra_scripts = post:platformio_boot2.py" in (result.directory / "platformio.ini").read_text()


def test_rp2040_boot_rom_refuses_a_bad_boot_stage_and_ssi_order() -> None:
    from edgekit.firmware.boot2 import crc32_mpeg2

    chip, _ = _model("rp2040", 0x4003_4000, "pl011")
    stage = bytes(range(252))
    good = stage + crc32_mpeg2(stage).to_bytes(4, "little")
    assert chip.boot(lambda address, size: good)[1] == 0x2004_1F01
    with pytest.raises(RunnerError, match="CRC-32 .* does not match"):
        chip.boot(lambda address, size: stage + b"\0\0\0\0")
    with pytest.raises(RunnerError, match="XIP SSI configured while enabled"):
        chip.write(None, 0x1800_0000, 4, 0)
    chip.write(None, 0x1800_0008, 4, 0)  # SSIENR = 0: XIP off
    with pytest.raises(RunnerError, match="before setting up XIP reads"):
        chip.write(None, 0xE000ED08, 4, 0x1000_0100)
    with pytest.raises(RunnerError, match="UART0 register .* held in reset"):
        chip.write(None, 0x4003_4000, 4, ord("x"))
    chip.write(None, 0x4000_F000, 4, 1 << 22)  # RESETS clear alias: UART0 out of reset
    assert chip.read(None, 0x4000_C008, 4) >> 22 & 1
