"""Every runner `edgekit boards` lists for a board runs that board's firmware.

The pairs come from `runners_for`, the function behind `edgekit boards --json` (and the first
test checks the CLI prints exactly them). Each pair runs the board's self-test through
`edgekit measure --runner R --json`, the way a user would, and must come back bit-exact:

- ``qemu``: the emulated build (a real board's runs on its stand-in's machine);
- ``unicorn``: the emulated build where the board has a stand-in, else the ``--hardware`` build
  on the board's own memory map and peripheral models;
- ``renode``: the ``--hardware`` build on Renode's model of the chip (skipped, with the reason,
  where Renode is not installed);
- ``serial``: the ``--hardware`` build "flashed" through the board file's flasher command (a fake
  tool on PATH logs its argv and resets the board) and read over a pseudo-terminal fake board
  that replays the console Unicorn printed running *this* ELF. No physical board is here: what
  runs is the whole serial path of edgekit (flash command line, reset, read, report checks)
  against the real report of the board's own firmware.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from edgekit.boards import list_boards, load_board, runners_for, target_for
from edgekit.boards.runners import make_runner
from edgekit.boards.runners.renode import find_renode
from edgekit.cli import main
from hardware_builds import selftest_builds  # noqa: F401 (fixture)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fake_serial_board import (ARGV_LOG_ENV, RESET_FILE_ENV, FakeSerialBoard,  # noqa: E402
                               fake_tools, logged_calls)

pytestmark = pytest.mark.hil

if shutil.which("arm-none-eabi-gcc") is None:
    pytest.skip("arm-none-eabi-gcc is not installed: cannot build the self-test", allow_module_level=True)

LISTED = [(board.id, runner) for board in list_boards() for runner in runners_for(board)]
TOOLS = {"qemu": "qemu-system-arm"}


def test_the_listing_is_what_edgekit_boards_prints(capsys) -> None:
    assert main(["boards", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)["boards"]
    assert [(b["id"], r) for b in printed for r in b["runners"]] == LISTED
    # every kind of runner is exercised somewhere, and every real board has its serial path
    assert {r for _, r in LISTED} == {"qemu", "unicorn", "renode", "serial"}
    real = {b.id for b in list_boards() if b.kind == "real"}
    assert real == {b for b, r in LISTED if r == "serial"}


@pytest.fixture(scope="module")
def emulated_builds(tmp_path_factory):
    """``get(board_id)``: the emulated self-test build of a board (its stand-in's for a real one)."""
    from edgekit.firmware.build import build_selftest

    root = tmp_path_factory.mktemp("emulated-selftests")

    def get(board_id: str) -> Path:
        if not (root / board_id / "firmware.elf").is_file():
            build_selftest(board_id, root / board_id, emulated=True)
        return root / board_id
    return get


def _uses_hardware_build(board_id: str, runner: str) -> bool:
    board = load_board(board_id)
    if board.kind != "real":
        return False
    return runner in ("renode", "serial") or (runner == "unicorn" and not board.emulation.stand_in)


def _measure(argv: list[str], capsys) -> dict:
    status = main(["measure", "--json", *argv])
    measured = json.loads(capsys.readouterr().out)
    assert status == 0, measured
    return measured


def _measure_over_fake_serial(board_id: str, build: Path, tmp_path: Path, monkeypatch,
                              capsys) -> dict:
    target = target_for(board_id, emulated=False)
    console = make_runner(target, "unicorn").run(build / "firmware.elf", 120).console
    log, reset = tmp_path / "argv.log", tmp_path / "reset"
    monkeypatch.setenv("PATH", f"{fake_tools(tmp_path / 'bin')}:{os.environ['PATH']}")
    monkeypatch.setenv(ARGV_LOG_ENV, str(log))
    monkeypatch.setenv(RESET_FILE_ENV, str(reset))
    from edgekit.boards.runners import flashers
    monkeypatch.setattr(flashers, "pyocd_api_installed", lambda: False)
    flasher = load_board(board_id).flasher
    with FakeSerialBoard(console.encode(), reset_file=reset) as fake:
        measured = _measure(["--runner", "serial", "--board", board_id, "--port", fake.port,
                             "--timeout", "20", str(build)], capsys)
    calls = logged_calls(log)
    assert len(calls) == 1 and calls[0][0] in ("pyocd", "openocd", "pio"), calls
    assert str(build / "firmware.elf") in " ".join(calls[0]) or calls[0][0] == "pio", calls
    assert fake.resets == 1 and flasher is not None
    return measured


@pytest.mark.parametrize("board_id, runner", LISTED)
def test_listed_runner_runs_the_board(board_id: str, runner: str, selftest_builds, emulated_builds,
                                      tmp_path: Path, monkeypatch, capsys) -> None:
    if runner in TOOLS and shutil.which(TOOLS[runner]) is None:
        pytest.skip(f"{TOOLS[runner]} is not installed")
    if runner == "renode" and find_renode() is None:
        pytest.skip("Renode not found (RENODE=/path or renode on PATH): the renode runner of "
                    f"{board_id} is not run here")
    hardware = _uses_hardware_build(board_id, runner)
    build = selftest_builds(board_id) if hardware else emulated_builds(board_id)
    manifest = json.loads((build / "edgekit-build.json").read_text())
    assert manifest["emulated"] is not hardware
    if runner == "serial":
        measured = _measure_over_fake_serial(board_id, build, tmp_path, monkeypatch, capsys)
    else:
        measured = _measure(["--runner", runner, "--board", board_id, "--timeout", "120",
                             str(build)], capsys)
    assert measured["runner"] == runner and measured["board"] == board_id
    assert measured["crc_ok"] is True and measured["expected_ok"] is True
    assert measured["outputs"] == manifest["expected_outputs"]
    assert measured["fits"] is True and measured["stack_peak_bytes"] > 0
