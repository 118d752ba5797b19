"""The Unicorn runner on hand-written programs whose instruction counts and stack use are known."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekit.boards.runners.semihosting import Semihosting
from edgekit.boards.runners.uart_models import uart_model
from edgekit.boards.runners.unicorn_runner import Region, UnicornRunner
from edgekit.errors import DeviceFaultError, RunnerError, RunnerTimeoutError
from tiny_firmware import (EXPECTED_INSTRUCTIONS, EXPECTED_STACK_PEAK, LINKER_IT_PAGE,
                           LINKER_STACK_LOADED_IN_FLASH, build_tiny)

MPS2_REGIONS = [Region("flash", 0x0, 0x400000), Region("ram", 0x2000_0000, 0x400000)]


def runner(**kwargs) -> UnicornRunner:
    return UnicornRunner("cortex-m4", MPS2_REGIONS, "cmsdk_uart", 0x4000_4000, vector_table=0, **kwargs)


def test_exact_instruction_count_and_stack_peak(tmp_path: Path) -> None:
    result = runner().run(build_tiny(tmp_path, "exit"), timeout_s=10)
    assert result.console == "hello\n"
    assert result.exit_code == 0
    assert result.instructions == EXPECTED_INSTRUCTIONS
    assert result.stack_peak_hooked_bytes == EXPECTED_STACK_PEAK
    assert result.arena_used_hooked_bytes is None  # no arena symbols in this program
    assert result.details["stop_reason"] == "semihosting exit"


def test_it_block_ending_at_a_page_boundary(tmp_path: Path) -> None:
    """A conditional store ending an IT block at a page boundary, a conditional branch after it:
    with a memory-write hook installed, Unicorn 2.1 ran that branch as if inside the IT block
    and faulted (invalid instruction); the runner measures memory without such hooks."""
    elf = build_tiny(tmp_path, "itpage", LINKER_IT_PAGE)
    result = runner().run(elf, timeout_s=10)
    assert result.exit_code == 0, result.details
    assert result.stack_peak_hooked_bytes == 4096  # the two bytes at the stack's bottom


def test_block_counts_agree_with_per_instruction_counts(tmp_path: Path) -> None:
    result = runner(verify_counts=True).run(build_tiny(tmp_path, "exit"), timeout_s=10)
    assert result.details["instructions_per_insn_hook"] == result.instructions == EXPECTED_INSTRUCTIONS


def test_semihosting_output_and_exit_status(tmp_path: Path) -> None:
    result = runner().run(build_tiny(tmp_path, "semihost"), timeout_s=10)
    assert result.console == "semi\n"
    assert result.exit_code == 3
    assert result.instructions is None  # no measure window was entered


def test_never_ending_program_times_out_with_console(tmp_path: Path) -> None:
    with pytest.raises(RunnerTimeoutError) as info:
        runner().run(build_tiny(tmp_path, "forever"), timeout_s=0.5)
    assert info.value.console == "hello\n"


def test_undefined_instruction_is_a_device_fault(tmp_path: Path) -> None:
    elf = build_tiny(tmp_path, "fault")
    with pytest.raises(DeviceFaultError) as info:
        runner().run(elf, timeout_s=5)
    assert info.value.console == "hello\n"
    assert "pc" in info.value.registers


def test_segment_outside_memory_map_is_refused(tmp_path: Path) -> None:
    small = UnicornRunner("cortex-m4", [Region("ram", 0x2000_0000, 0x10000)], "cmsdk_uart",
                          0x4000_4000, vector_table=0)
    with pytest.raises(RunnerError, match="outside the board's memory map"):
        small.run(build_tiny(tmp_path, "exit"), timeout_s=5)


def test_zero_filled_segments_are_not_loaded_at_their_load_address(tmp_path: Path) -> None:
    """The stack segment (no file bytes) has a load address just past .text in flash; with
    flash only one page long, loading its 4 KiB of zeros there would fall off the map (as a
    model filling a board's flash did). Only file bytes are loaded; the program runs."""
    tight = UnicornRunner("cortex-m4", [Region("flash", 0x0, 0x1000),
                                        Region("ram", 0x2000_0000, 0x10000)],
                          "cmsdk_uart", 0x4000_4000, vector_table=0)
    elf = build_tiny(tmp_path, "exit", LINKER_STACK_LOADED_IN_FLASH)
    result = tight.run(elf, timeout_s=10)
    assert result.console == "hello\n" and result.exit_code == 0


def test_unknown_cpu_model() -> None:
    with pytest.raises(RunnerError, match="cortex-m55"):
        UnicornRunner("cortex-m55", MPS2_REGIONS, "cmsdk_uart", 0x4000_4000)


def test_not_an_elf(tmp_path: Path) -> None:
    bogus = tmp_path / "fw.elf"
    bogus.write_bytes(b"MZ not an elf")
    with pytest.raises(RunnerError, match="not an ELF"):
        runner().run(bogus, timeout_s=1)


@pytest.mark.parametrize("kind, status_offset, status, tx_offset", [
    ("cmsdk_uart", 0x4, 0x0, 0x0),
    ("stm32_usart", 0x0, 0xC0, 0x4),
    ("stm32_usart_v2", 0x1C, 0xC0, 0x28),
    ("stellaris_uart", 0x18, 0x90, 0x0),
    ("pl011", 0x18, 0x90, 0x0),
])
def test_uart_models_report_ready_and_capture_tx(kind, status_offset, status, tx_offset) -> None:
    sent = bytearray()
    model = uart_model(kind, sent.extend)
    assert model.read(None, status_offset, 4) == status
    model.write(None, 0x30, 4, 0x1234)           # a control register keeps its value
    assert model.read(None, 0x30, 4) == 0x1234
    model.write(None, tx_offset, 4, ord("k"))
    assert bytes(sent) == b"k"


def test_nrf_uarte_sends_dma_buffer() -> None:
    sent = bytearray()
    memory = {0x2000_0100 + i: b for i, b in enumerate(b"dma!")}

    def read(address: int, size: int) -> bytes:
        return bytes(memory[address + i] for i in range(size))

    model = uart_model("nrf_uarte", sent.extend)
    model.write(read, 0x544, 4, 0x2000_0100)  # TXD.PTR
    model.write(read, 0x548, 4, 4)            # TXD.MAXCNT
    model.write(read, 0x008, 4, 1)            # TASKS_STARTTX
    assert bytes(sent) == b"dma!"
    assert model.read(read, 0x120, 4) == 1    # EVENTS_ENDTX
    assert model.read(read, 0x54C, 4) == 4    # TXD.AMOUNT


def test_unknown_console_kind() -> None:
    with pytest.raises(RunnerError, match="no model of console kind 'usb_cdc'"):
        uart_model("usb_cdc", print)


def test_semihosting_unknown_op_is_an_error() -> None:
    host = Semihosting(lambda a, n: bytes(n), lambda data: None)
    with pytest.raises(RunnerError, match="op 0x6"):
        host.call(0x06, 0)
