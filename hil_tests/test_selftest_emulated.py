"""The self-test firmware on every board that runs emulated, with QEMU and with Unicorn.

For each board the self-test (an int8 convolution whose answer the host computed) is built once
and run on each emulator the board (or its stand-in) has. Every run must deliver a report the
host accepts (CRCs, record count), the expected output bytes, a clean exit, and, on Unicorn, a
runner's own stack high-water mark (its own paint) exactly equal to the painted one the firmware printed (and the
same for the arena), plus an exact instruction count cross-checked per instruction.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgekit.boards import list_boards, target_for
from edgekit.boards.report import parse_report
from edgekit.boards.runners import make_runner
from edgekit.cli import main

pytestmark = pytest.mark.hil

if shutil.which("arm-none-eabi-gcc") is None:
    pytest.skip("arm-none-eabi-gcc is not installed: cannot build the self-test", allow_module_level=True)


def _emulated_runs() -> list[tuple[str, str]]:
    """(board, runner) for every board that resolves to an emulated target, per emulator."""
    runs = []
    for board in list_boards():
        target = target_for(board.id)
        if not target.emulated:
            continue
        if target.host.emulation.qemu_machine:
            runs.append((board.id, "qemu"))
        if target.host.emulation.unicorn:
            runs.append((board.id, "unicorn"))
    return runs


EMULATED_RUNS = _emulated_runs()


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> dict:
    """Self-test builds, one per board, made on first use and shared by the module's tests."""
    from edgekit.firmware.build import build_selftest

    cache: dict[str, Path] = {}

    def get(board: str) -> Path:
        if board not in cache:
            directory = tmp_path_factory.mktemp(f"selftest-{board}")
            build_selftest(board, directory)
            cache[board] = directory
        return cache[board]
    return get


def test_every_emulated_board_has_a_run() -> None:
    boards = {b for b, _ in EMULATED_RUNS}
    assert {"mps2-an386", "netduinoplus2", "lm3s6965evb"} <= boards
    assert ("mps2-an386", "unicorn") in EMULATED_RUNS and ("mps2-an386", "qemu") in EMULATED_RUNS


@pytest.mark.parametrize("board, runner_name", EMULATED_RUNS)
def test_selftest_known_answer(builds, board: str, runner_name: str) -> None:
    if runner_name == "qemu" and shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm is not installed")
    directory = builds(board)
    manifest = json.loads((directory / "edgekit-build.json").read_text())
    target = target_for(board)
    runner = make_runner(target, runner_name, verify_counts=True)
    result = runner.run(directory / "firmware.elf", timeout_s=60)
    report = parse_report(result.console)

    assert report.board == board
    assert report.payload == "selftest"
    assert [o.hex() for o in report.outputs] == manifest["expected_outputs"]
    assert result.exit_code == 0
    assert 0 < report.stack_peak_bytes < report.stack_size_bytes
    assert report.arena_bytes == manifest["arena_bytes"]
    assert report.cycles is None  # emulators never print DWT cycles
    if runner_name == "unicorn":
        assert result.stack_peak_hooked_bytes == report.stack_peak_bytes
        assert result.arena_used_hooked_bytes == report.arena_used_bytes
        assert result.instructions > 10_000
        # hooked + condition-failed IT instructions == block count (else run() raised)
        assert result.details["instructions_per_insn_hook"] <= result.instructions
    else:
        assert result.instructions is None


def test_unicorn_counts_are_deterministic(builds) -> None:
    directory = builds("mps2-an386")
    runner = make_runner(target_for("mps2-an386"), "unicorn")
    first = runner.run(directory / "firmware.elf", timeout_s=60)
    second = runner.run(directory / "firmware.elf", timeout_s=60)
    assert first.instructions == second.instructions
    assert first.stack_peak_hooked_bytes == second.stack_peak_hooked_bytes


def test_measure_cli_json(builds, capsys) -> None:
    directory = builds("mps2-an386")
    assert main(["measure", "--json", "--runner", "unicorn", str(directory)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["schema_version"] == 1
    assert out["board"] == "mps2-an386" and out["runner"] == "unicorn"
    assert out["crc_ok"] is True and out["expected_ok"] is True and out["fits"] is True
    assert out["peak_sram_bytes"] == out["static_ram_bytes"] + out["stack_peak_bytes"]
    assert out["stack_peak_hooked_bytes"] == out["stack_peak_bytes"]
    assert out["instructions"] > 0 and out["cycles"] is None
    manifest = json.loads((directory / "edgekit-build.json").read_text())
    assert out["flash_bytes"] == manifest["flash_bytes"]
    assert out["outputs"] == manifest["expected_outputs"]


def test_measure_cli_qemu_text_on_elf_path(builds, capsys) -> None:
    if shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm is not installed")
    elf = builds("netduinoplus2") / "firmware.elf"
    assert main(["measure", "--board", "netduinoplus2", str(elf)]) == 0
    text = capsys.readouterr().out
    assert "netduinoplus2 via qemu" in text and "matches the expected answer" in text
    assert "not measured by this runner" in text  # no latency from QEMU


def test_measure_detects_wrong_answer(builds, tmp_path: Path, capsys) -> None:
    directory = builds("mps2-an386")
    copy = tmp_path / "build"
    shutil.copytree(directory, copy)
    manifest = json.loads((copy / "edgekit-build.json").read_text())
    first = manifest["expected_outputs"][0]
    manifest["expected_outputs"][0] = ("00" if first[:2] != "00" else "01") + first[2:]
    (copy / "edgekit-build.json").write_text(json.dumps(manifest))
    assert main(["measure", "--json", "--runner", "unicorn", str(copy)]) == 1
    assert json.loads(capsys.readouterr().out)["expected_ok"] is False


def test_flash_cli_checks_an_emulated_board(builds, capsys) -> None:
    directory = builds("disco-f746ng")
    assert main(["flash", "--json", "--board", "disco-f746ng", str(directory)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["emulated"] is True and out["host_board"] == "mps2-an500"
    assert "unicorn" in out["runners_ready"]
    assert out["flash_bytes"] <= out["board_flash_bytes"]

