"""Renode runs the firmware unmodified on its models of the chips: the hardware build of each
real board Renode models (disco-f746ng, nucleo-h743zi, nrf52840dk) and the emulated
netduinoplus2, through the shipped board scripts (boards/renode/*.resc) and the Robot suite
(boards/renode/selftest.robot).

Renode is found as ``$RENODE`` or ``renode`` on PATH (CI: ../shared/tools/renode, put on PATH by
run.sh); without it the Renode tests skip with that reason. The script checks run everywhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from edgekit.boards import list_boards, load_board, runners_for
from edgekit.boards.runners.renode import SCRIPTS_DIR, find_renode, script_for, uart_of
from hardware_builds import hardware_model_builds, selftest_builds  # noqa: F401 (fixtures)

pytestmark = pytest.mark.hil

#: every board a Renode script ships for: Renode runs the hardware build of a real board
RENODE_BOARDS = sorted(p.stem for p in SCRIPTS_DIR.glob("*.resc"))
RENODE = find_renode()
needs_renode = pytest.mark.skipif(
    RENODE is None, reason="Renode not found (set RENODE=/path/to/renode or put renode on PATH; "
    "https://renode.io, or ../shared/tools/renode on CI machines)")


def test_renode_is_listed_exactly_where_a_script_runs_it() -> None:
    listing = {b.id for b in list_boards() if "renode" in runners_for(b)}
    assert listing == set(RENODE_BOARDS)
    assert {"disco-f746ng", "nucleo-h743zi", "nrf52840dk", "netduinoplus2"} <= listing


@pytest.mark.parametrize("board_id", RENODE_BOARDS)
def test_scripts_match_board_files(board_id: str) -> None:
    script = script_for(board_id)
    text = script.read_text()
    board = load_board(board_id)
    assert board.emulation.renode_platform and f"@{board.emulation.renode_platform}" in text
    assert "sysbus LoadELF $elf" in text
    assert uart_of(script).startswith("sysbus.")
    assert board.kind == "emulated" or board.bsp, f"{board_id}: Renode runs the hardware build"


def test_robot_suite_has_one_test_per_board_with_its_uart() -> None:
    robot = (SCRIPTS_DIR / "selftest.robot").read_text()
    table = robot.split("*** Test Cases ***")[1].split("*** Keywords ***")[0].splitlines()[1:]
    rows = {cells[0]: cells[2] for cells in (line.split() for line in table) if len(cells) == 3}
    assert rows == {b: uart_of(script_for(b)) for b in RENODE_BOARDS}
    assert "content=payload=selftest" in robot  # Renode reads bare name=value as a named argument


@needs_renode
@pytest.mark.parametrize("board_id", RENODE_BOARDS)
def test_selftest_on_renode(board_id: str, selftest_builds) -> None:
    from edgekit.boards.runners.measure import measure, resolve_firmware

    measured = measure(resolve_firmware(selftest_builds(board_id), None), "renode", timeout_s=120)
    assert measured["board"] == board_id and measured["expected_ok"] is True
    assert measured["cycles"] is None and measured["latency_ms"] is None  # never from an emulator
    assert 0 < measured["stack_peak_bytes"] < 8192
    assert measured["arena_used_bytes"] == measured["arena_bytes"]


@needs_renode
@pytest.mark.skipif(shutil.which("renode-test") is None, reason="renode-test is not on PATH")
def test_robot_selftest(selftest_builds, tmp_path) -> None:
    for board_id in RENODE_BOARDS:
        selftest_builds(board_id)
    # renode-test runs the first python3 on PATH: this interpreter, which has robotframework
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    done = subprocess.run(
        ["renode-test", str(SCRIPTS_DIR / "selftest.robot"), "--variable", f"BUILDS:{selftest_builds(RENODE_BOARDS[0]).parent}",
         "-r", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False, env=env)
    log = done.stdout[-3000:] + done.stderr[-3000:]
    assert done.returncode == 0, log
    for board_id in RENODE_BOARDS:
        assert f"Finished test 'selftest.{board_id}'" in done.stdout, log


#: the real boards Renode models, each with its MLPerf Tiny hardware builds
RENODE_REAL_BOARDS = [b for b in RENODE_BOARDS if load_board(b).kind == "real"]


@needs_renode
@pytest.mark.slow
@pytest.mark.parametrize("model", ["kws", "vww"])
@pytest.mark.parametrize("board_id", RENODE_REAL_BOARDS)
def test_mlperf_hardware_build_on_renode_matches_unicorn(board_id: str, model: str, hardware_model_builds) -> None:
    """The same --hardware ELF on Renode's chip model and on Unicorn with the BSP's register
    models: both bit-exact with the reference interpreter, and the same painted peak SRAM."""
    from edgekit.boards.runners.measure import measure, resolve_firmware

    firmware = resolve_firmware(hardware_model_builds(board_id, model), None)
    on_renode = measure(firmware, "renode", timeout_s=300)
    on_unicorn = measure(firmware, "unicorn", timeout_s=300)
    for measured in (on_renode, on_unicorn):
        assert measured["bit_exact"] is True and measured["fits"] is True
        assert measured["cycles"] is None and measured["latency_ms"] is None
    assert on_renode["outputs"] == on_unicorn["outputs"]
    assert abs(on_renode["peak_sram_bytes"] - on_unicorn["peak_sram_bytes"]) <= 0.01 * on_unicorn["peak_sram_bytes"]
    assert on_unicorn["stack_peak_hooked_bytes"] == on_unicorn["stack_peak_bytes"]
