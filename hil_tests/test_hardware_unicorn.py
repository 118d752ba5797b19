"""Every real board's --hardware ELF, in every run, without Renode: Unicorn runs it on the
board's own memory map with register models of exactly the peripherals its BSP touches
(boards/runners/chip_models.py, test fixtures). Each firmware boots through its clock set-up,
prints a valid report with the clock it reached, and is bit-exact."""

from __future__ import annotations

import pytest

from edgekit.boards import list_boards
from edgekit.boards.report import parse_report
from hardware_builds import hardware_model_builds, selftest_builds  # noqa: F401 (fixtures)

pytestmark = pytest.mark.hil

HARDWARE_BOARDS = sorted(b.id for b in list_boards() if b.kind == "real" and b.bsp)


def test_the_modelled_boards_are_there() -> None:
    assert {"disco-f746ng", "nucleo-h743zi", "nrf52840dk"} <= set(HARDWARE_BOARDS)


@pytest.mark.parametrize("board_id", HARDWARE_BOARDS)
def test_selftest_hardware_build_on_unicorn(board_id: str, selftest_builds) -> None:
    from edgekit.boards import load_board
    from edgekit.boards.runners import make_runner
    from edgekit.boards.runners.measure import measure, resolve_firmware

    firmware = resolve_firmware(selftest_builds(board_id), None)
    assert firmware.target.emulated is False
    measured = measure(firmware, "unicorn", timeout_s=120)
    assert measured["expected_ok"] is True and measured["instructions"] > 0
    assert measured["stack_peak_hooked_bytes"] == measured["stack_peak_bytes"]
    assert measured["cycles"] is None  # the DWT model does not count: never a latency
    console = make_runner(firmware.target, "unicorn").run(firmware.elf, 120).console
    assert parse_report(console).get_int("clock_hz") == load_board(board_id).clock_hz


@pytest.mark.slow
@pytest.mark.parametrize("board_id", HARDWARE_BOARDS)
def test_kws_hardware_build_on_unicorn(board_id: str, hardware_model_builds) -> None:
    from edgekit.boards.runners.measure import measure, resolve_firmware

    measured = measure(resolve_firmware(hardware_model_builds(board_id, "kws"), None), "unicorn",
                       timeout_s=300)
    assert measured["bit_exact"] is True and measured["fits"] is True
    assert measured["estimate_error"] is not None and abs(measured["estimate_error"]) <= 0.01
