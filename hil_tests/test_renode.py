"""The self-test on Renode, through the shipped board scripts (boards/renode/*.resc) and the
Robot test (boards/renode/selftest.robot).

Renode is not installable on the CI machine (no registry it reaches carries it), so these tests
skip with that reason unless ``renode`` (and, for the Robot test, ``renode-test``) is on PATH.
The script checks below run everywhere: they keep the shipped files consistent with the boards.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from edgekit.boards import load_board
from edgekit.boards.report import parse_report
from edgekit.boards.runners.renode import SCRIPTS_DIR, RenodeRunner, script_for, uart_of
from edgekit.errors import BuildError

pytestmark = pytest.mark.hil

#: board -> built for its emulated self (True) or for the hardware memory map (False)
RENODE_BOARDS = {"netduinoplus2": True, "nrf52840dk": False}
RENODE_MISSING = shutil.which("renode") is None
needs_renode = pytest.mark.skipif(RENODE_MISSING, reason="renode is not on PATH (not installable "
                                  "here; install it from https://renode.io to run these)")


@pytest.mark.parametrize("board_id", sorted(RENODE_BOARDS))
def test_scripts_match_board_files(board_id: str) -> None:
    script = script_for(board_id)
    text = script.read_text()
    board = load_board(board_id)
    assert board.emulation.renode_platform and f"@{board.emulation.renode_platform}" in text
    assert "sysbus LoadELF $elf" in text
    assert uart_of(script).startswith("sysbus.")


def test_robot_file_is_shipped() -> None:
    robot = (SCRIPTS_DIR / "selftest.robot").read_text()
    assert "Wait For Line On Uart" in robot and "@@EDGEKIT-END" in robot


@needs_renode
@pytest.mark.parametrize("board_id", sorted(RENODE_BOARDS))
def test_selftest_on_renode(board_id: str, tmp_path) -> None:
    from edgekit.firmware.build import build_selftest

    try:
        build_selftest(board_id, tmp_path, emulated=RENODE_BOARDS[board_id])
    except BuildError as err:  # e.g. a console driver the BSP does not have yet
        pytest.skip(f"cannot build the self-test for {board_id}: {err}")
    manifest = json.loads((tmp_path / "edgekit-build.json").read_text())
    result = RenodeRunner.for_board(board_id).run(tmp_path / "firmware.elf", timeout_s=120)
    report = parse_report(result.console)
    assert report.board == board_id
    assert [o.hex() for o in report.outputs] == manifest["expected_outputs"]


@needs_renode
@pytest.mark.skipif(shutil.which("renode-test") is None, reason="renode-test is not on PATH")
def test_robot_selftest(tmp_path) -> None:
    from edgekit.firmware.build import build_selftest

    build_selftest("netduinoplus2", tmp_path)
    script = script_for("netduinoplus2")
    done = subprocess.run(
        ["renode-test", str(SCRIPTS_DIR / "selftest.robot"), "--variable", f"ELF:{tmp_path / 'firmware.elf'}",
         "--variable", f"RESC:{script}", "--variable", f"UART:{uart_of(script)}"],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
