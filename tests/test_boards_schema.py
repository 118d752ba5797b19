"""Board files: every shipped board loads; bad files name the file and the field."""

from __future__ import annotations

import json
import shutil

import pytest

from edgekit.boards import BOARDS_DIR, list_boards, load_board, load_board_file, runners_for, target_for
from edgekit.cli import main
from edgekit.errors import BoardError

EMULATED = {"mps2-an386", "mps2-an500", "mps3-an547", "netduinoplus2", "lm3s6965evb"}
REAL = {"disco-f746ng", "nucleo-h743zi", "nucleo-l4r5zi", "nrf52840dk", "rpi-pico"}


def test_all_shipped_boards_load():
    boards = {b.id: b for b in list_boards()}
    assert set(boards) == EMULATED | REAL
    for board_id in EMULATED:
        assert boards[board_id].kind == "emulated"
    for board_id in REAL:
        assert boards[board_id].kind == "real"
        assert boards[board_id].flasher.pyocd_target or boards[board_id].flasher.openocd_config


@pytest.mark.parametrize("board_id, cpu, sram, flash", [
    ("disco-f746ng", "cortex-m7", 320 * 1024, 1024 * 1024),
    ("nucleo-h743zi", "cortex-m7", 512 * 1024, 2048 * 1024),
    ("nucleo-l4r5zi", "cortex-m4", 640 * 1024, 2048 * 1024),
    ("nrf52840dk", "cortex-m4", 256 * 1024, 1024 * 1024),
    ("rpi-pico", "cortex-m0plus", 264 * 1024, 2048 * 1024),
    ("netduinoplus2", "cortex-m4", 128 * 1024, 1024 * 1024),
    ("lm3s6965evb", "cortex-m3", 64 * 1024, 256 * 1024),
])
def test_board_figures(board_id, cpu, sram, flash):
    board = load_board(board_id)
    assert (board.cpu, board.sram_bytes, board.flash_bytes) == (cpu, sram, flash)


def test_netduinoplus2_uses_the_real_128k_not_qemus_192k_block():
    board = load_board("netduinoplus2")
    data = board.region_for("data")
    assert (data.origin, data.size) == (0x2000_0000, 128 * 1024)
    ccm = next(r for r in board.sram if r.name == "ccm")
    assert ccm.holds == ()  # QEMU 7.2 does not map the CCM


@pytest.mark.parametrize("board_id, host_id", [
    ("disco-f746ng", "mps2-an500"), ("nucleo-h743zi", "mps2-an500"),
    ("nucleo-l4r5zi", "mps2-an386"), ("nrf52840dk", "mps2-an386"),
])
def test_real_board_targets_take_stand_in_origins_and_real_sizes(board_id, host_id):
    board, host = load_board(board_id), load_board(host_id)
    target = target_for(board_id)
    assert target.host.id == host_id and target.emulated
    assert target.cpu == board.cpu == host.cpu
    assert target.console == host.console
    assert (target.flash.origin, target.flash.size) == (host.flash.origin, board.flash.size)
    region = target.region_for("data")
    assert region.origin == host.region_for("data").origin
    assert region.size == board.region_for("data").size


def test_hardware_target_and_pico_use_their_own_map():
    disco = target_for("disco-f746ng", emulated=False)
    assert disco.host.id == "disco-f746ng" and not disco.emulated
    assert disco.flash.origin == 0x0800_0000 and disco.has_cycle_counter
    pico = target_for("rpi-pico")
    assert pico.host.id == "rpi-pico" and pico.flash.origin == 0x1000_0000
    assert pico.console.kind == "pl011" and not pico.has_cycle_counter  # an emulated run
    assert target_for("rpi-pico", emulated=False).has_cycle_counter  # SysTick on the M0+
    assert runners_for(load_board("rpi-pico")) == ("unicorn", "serial")
    assert runners_for(load_board("nrf52840dk"))[:2] == ("qemu", "unicorn")


@pytest.fixture
def board_copy(tmp_path):
    """A writable copy of mps2-an386.json and a function that rewrites it and loads it."""
    path = tmp_path / "mps2-an386.json"
    original = (BOARDS_DIR / "mps2-an386.json").read_text()

    def load_with(change):
        raw = json.loads(original)  # each change starts from the shipped file
        change(raw)
        path.write_text(json.dumps(raw))
        return load_board_file(path)

    return path, load_with


def _expect_error(load_with, change, *needles):
    with pytest.raises(BoardError) as info:
        load_with(change)
    message = str(info.value)
    assert "mps2-an386.json" in message
    for needle in needles:
        assert needle in message, message
    return message


def test_missing_field(board_copy):
    _, load_with = board_copy
    _expect_error(load_with, lambda raw: raw.pop("cpu"), "field cpu", "missing")
    _expect_error(load_with, lambda raw: raw["memory"]["sram"][0].pop("origin"),
                  "memory.sram[0].origin", "missing")


def test_wrong_type(board_copy):
    _, load_with = board_copy
    _expect_error(load_with, lambda raw: raw.update(clock_hz="fast"), "field clock_hz", "'fast'")
    _expect_error(load_with, lambda raw: raw["memory"].update(sram={}), "memory.sram")
    _expect_error(load_with, lambda raw: raw["memory"]["flash"].update(size=True), "memory.flash.size")


def test_unknown_cpu_and_impossible_fpu(board_copy):
    _, load_with = board_copy
    _expect_error(load_with, lambda raw: raw.update(cpu="cortex-m99"), "field cpu", "cortex-m99")
    _expect_error(load_with, lambda raw: raw.update(cpu="cortex-m3"), "field fpu", "cortex-m3")


def test_overlapping_regions(board_copy):
    _, load_with = board_copy

    def overlap(raw):
        raw["memory"]["sram"].append({"name": "extra", "origin": "0x20100000", "size": 4096})

    _expect_error(load_with, overlap, "memory.sram[1]", "overlaps", "ssram23")
    _expect_error(load_with, lambda raw: raw["memory"]["flash"].update(origin="0x20000000"),
                  "memory.sram[0]", "overlaps")


def test_role_placement_and_unknown_fields(board_copy):
    _, load_with = board_copy
    _expect_error(load_with, lambda raw: raw["memory"]["sram"][0].update(holds=["data", "arena"]),
                  "memory.sram", "'stack'")
    _expect_error(load_with, lambda raw: raw["console"].update(kind="uart9000"), "console.kind")
    _expect_error(load_with, lambda raw: raw.update(colour="red"), "field colour", "unknown field")
    _expect_error(load_with, lambda raw: raw["emulation"].update(stand_in="mps2-an500"),
                  "emulation.stand_in")


def test_not_json_and_unknown_board(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text("{ not json")
    with pytest.raises(BoardError, match="broken.json.*not valid JSON"):
        load_board_file(bad)
    with pytest.raises(BoardError, match="unknown board 'no-such-board'.*mps2-an386"):
        load_board("no-such-board")


def test_unknown_stand_in_is_caught_when_listing(tmp_path):
    for name in ("mps2-an386.json", "nrf52840dk.json"):
        shutil.copy(BOARDS_DIR / name, tmp_path / name)
    raw = json.loads((tmp_path / "nrf52840dk.json").read_text())
    raw["emulation"]["stand_in"] = "mps2-an999"
    (tmp_path / "nrf52840dk.json").write_text(json.dumps(raw))
    with pytest.raises(BoardError, match="nrf52840dk.json: field emulation.stand_in: unknown board 'mps2-an999'"):
        list_boards(tmp_path)


def test_cli_boards_json(capsys):
    assert main(["boards", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["schema_version"] == 1
    rows = {row["id"]: row for row in payload["boards"]}
    assert set(rows) == EMULATED | REAL
    assert rows["disco-f746ng"]["sram_bytes"] == 320 * 1024
    assert rows["disco-f746ng"]["flash_bytes"] == 1024 * 1024
    assert rows["disco-f746ng"]["cpu"] == "cortex-m7"
    assert rows["disco-f746ng"]["stand_in"] == "mps2-an500"
    assert rows["nrf52840dk"]["stand_in"] == "mps2-an386"
    assert rows["mps2-an386"]["stand_in"] is None and "qemu" in rows["mps2-an386"]["runners"]
    assert rows["rpi-pico"]["unicorn"] == "cortex-m0"


def test_cli_boards_text(capsys):
    assert main(["boards", "--kind", "real"]) == 0
    text = capsys.readouterr().out
    rows = text.splitlines()[2:]
    assert len(rows) == len(REAL)
    assert any(row.startswith("nucleo-h743zi") and "512 KB" in row for row in rows)
    assert not any(row.startswith("mps2-an386") for row in rows)
