"""The self-test on a real board: flashed through its probe, report read over serial.

Runs only where a board is attached and named:

    EDGEKIT_PORT=/dev/ttyACM0 EDGEKIT_BOARD=disco-f746ng [EDGEKIT_FLASHER=pyocd|openocd|none] \
        pytest hil_tests/test_real_board.py

Skips, with the reason, everywhere else (CI has no boards).
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from edgekit.boards import load_board, target_for
from edgekit.boards.report import parse_report
from edgekit.boards.runners.flashers import flasher_for
from edgekit.boards.runners.serial_runner import PORT_ENV, SerialRunner

pytestmark = pytest.mark.hil

PORT = os.environ.get(PORT_ENV)
BOARD = os.environ.get("EDGEKIT_BOARD")
FLASHER = os.environ.get("EDGEKIT_FLASHER")

if not PORT:
    pytest.skip(f"no real board attached: set {PORT_ENV} (serial port) and EDGEKIT_BOARD (board id)",
                allow_module_level=True)
if not BOARD:
    pytest.skip(f"{PORT_ENV} is set but EDGEKIT_BOARD is not: name the attached board",
                allow_module_level=True)
if shutil.which("arm-none-eabi-gcc") is None:
    pytest.skip("arm-none-eabi-gcc is not installed: cannot build the self-test", allow_module_level=True)


def test_selftest_on_real_board(tmp_path) -> None:
    from edgekit.firmware.build import build_selftest

    board = load_board(BOARD)
    if board.kind != "real":
        pytest.skip(f"EDGEKIT_BOARD={BOARD} is an emulated board")
    build_selftest(BOARD, tmp_path, emulated=False)
    manifest = json.loads((tmp_path / "edgekit-build.json").read_text())
    flasher = None if FLASHER == "none" else flasher_for(board, prefer=FLASHER)
    result = SerialRunner(PORT, flasher=flasher).run(tmp_path / "firmware.elf", timeout_s=120)
    report = parse_report(result.console)
    assert report.board == BOARD
    assert [o.hex() for o in report.outputs] == manifest["expected_outputs"]
    assert 0 < report.stack_peak_bytes < report.stack_size_bytes
    if target_for(BOARD, emulated=False).has_cycle_counter:
        assert report.cycles is not None and report.cycles > 0
