"""`edgekit measure` / `flash` argument handling: what is refused before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgekit.boards.runners.measure import resolve_firmware
from edgekit.cli import main
from edgekit.errors import UsageError


def _build_dir(tmp_path: Path, board: str = "mps2-an386", emulated: bool = True) -> Path:
    (tmp_path / "firmware.elf").write_bytes(b"\x7fELF" + bytes(60))
    (tmp_path / "edgekit-build.json").write_text(json.dumps(
        {"board": board, "emulated": emulated, "elf": "firmware.elf", "expected_outputs": ["00"]}))
    return tmp_path


def test_board_comes_from_manifest(tmp_path: Path) -> None:
    firmware = resolve_firmware(_build_dir(tmp_path), None)
    assert firmware.target.board.id == "mps2-an386"
    assert firmware.elf == tmp_path / "firmware.elf"
    assert firmware.manifest["expected_outputs"] == ["00"]


def test_elf_path_finds_manifest_beside_it(tmp_path: Path) -> None:
    firmware = resolve_firmware(_build_dir(tmp_path) / "firmware.elf", "mps2-an386")
    assert firmware.manifest is not None


def test_board_mismatch_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="built for board 'mps2-an386', not 'netduinoplus2'"):
        resolve_firmware(_build_dir(tmp_path), "netduinoplus2")


def test_elf_without_manifest_needs_board(tmp_path: Path) -> None:
    elf = tmp_path / "x.elf"
    elf.write_bytes(b"\x7fELF")
    with pytest.raises(UsageError, match="no --board given"):
        resolve_firmware(elf, None)
    assert resolve_firmware(elf, "lm3s6965evb").target.host.id == "lm3s6965evb"


def test_missing_firmware(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        resolve_firmware(tmp_path / "nope.elf", "mps2-an386")
    with pytest.raises(UsageError, match="has no firmware.elf"):
        resolve_firmware(tmp_path, "mps2-an386")


def test_stand_in_build_refused_for_serial(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="rebuild it with --hardware"):
        resolve_firmware(_build_dir(tmp_path, "disco-f746ng"), None, hardware=True)


def test_hardware_build_defaults_to_the_hardware(tmp_path: Path) -> None:
    firmware = resolve_firmware(_build_dir(tmp_path, "disco-f746ng", emulated=False), None)
    assert firmware.target.emulated is False


def test_cli_error_exit_status(tmp_path: Path, capsys) -> None:
    assert main(["measure", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_unknown_runner_is_an_argparse_error(tmp_path: Path) -> None:
    assert main(["measure", "--runner", "gem5", str(tmp_path)]) == 2
