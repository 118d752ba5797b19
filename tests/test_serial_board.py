"""`edgekit flash` and `edgekit measure --runner serial` against a fake board on a pseudo-terminal.

The fake board (tests/fake_serial_board.py) replays the console Renode printed for the kws
``--hardware`` build of disco-f746ng (tests/data/kws_disco-f746ng_renode.console.txt); the
probe tools (pyocd, openocd, pio) are fake scripts on PATH that log their argv and reset the
board. Shown here: the replayed report measures to the same JSON as Renode's run (re-recorded
live where Renode is installed), 20 seeded corruptions are each refused with a clear error, a
silent board times out on time, and each board's flasher command lines come from its board file.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
import types
import zlib
from pathlib import Path

import pytest

from edgekit.boards import list_boards, load_board
from edgekit.boards.runners import flashers
from edgekit.boards.runners.measure import measure, resolve_firmware
from edgekit.boards.runners.renode import find_renode
from edgekit.boards.runners.serial_runner import SerialRunner
from edgekit.cli import main
from edgekit.errors import ReportError, RunnerError, RunnerTimeoutError, RunnerUnavailableError
from fake_serial_board import ARGV_LOG_ENV, RESET_FILE_ENV, FakeSerialBoard, fake_tools, logged_calls
from serial_fixture import BOARD, build_kws, read_fixture, record_with_renode, runner_independent

BOARDS_DIR = Path(__file__).resolve().parents[1] / "boards"
#: figures that come from the ELF build, not from the report (compared with the recording only
#: when the build is the one recorded; the live Renode test compares them always)
ELF_FIELDS = ("flash_bytes", "static_ram_bytes", "peak_sram_bytes", "fits",
              "estimate_peak_sram_bytes", "estimate_stack_bytes", "estimate_error")


@pytest.fixture(scope="module")
def kws_build(tmp_path_factory) -> Path:
    return build_kws(tmp_path_factory.mktemp("serial") / "kws-f7")


@pytest.fixture
def probe_env(tmp_path: Path, monkeypatch) -> dict:
    """Fake pyocd/openocd/pio first on PATH (pyOCD's Python API hidden), logging to files."""
    bin_dir = fake_tools(tmp_path / "bin")
    log, reset = tmp_path / "argv.log", tmp_path / "reset"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv(ARGV_LOG_ENV, str(log))
    monkeypatch.setenv(RESET_FILE_ENV, str(reset))
    monkeypatch.setattr(flashers, "pyocd_api_installed", lambda: False)
    return {"log": log, "reset": reset, "bin": bin_dir}


def cli_json(argv: list[str], capsys) -> tuple[int, dict]:
    status = main([*argv, "--json"])
    return status, json.loads(capsys.readouterr().out)


# --- the recorded report measures like Renode's run -----------------------------------------------

def test_replayed_renode_report_measures_to_renodes_json(kws_build: Path, probe_env: dict,
                                                         capsys) -> None:
    console, renode = read_fixture()
    with FakeSerialBoard(console, reset_file=probe_env["reset"]) as board:
        status, measured = cli_json(["measure", "--runner", "serial", "--board", BOARD, "--port",
                                     board.port, str(kws_build)], capsys)
    assert status == 0 and board.resets == 1
    # flashed through the (fake) pyocd command with the board file's target, which reset it
    assert logged_calls(probe_env["log"]) == [["pyocd", "flash", "-t", "stm32f746ng",
                                               str(kws_build / "firmware.elf")]]
    assert measured["runner"] == "serial" and measured["bit_exact"] is True
    # Renode's DWT model reads 0: no cycle count rather than a latency of 0 ms
    assert measured["cycles"] is None and measured["latency_ms"] is None
    got = runner_independent(measured)
    got.pop("schema_version", None), got.pop("command", None)
    recorded_build = all(got[k] == renode[k] for k in ("flash_bytes", "static_ram_bytes"))
    if not recorded_build:
        # the code generator changed since the recording: the report is still this model's
        # (outputs, stack), the sizes are the new ELF's; tests/serial_fixture.py re-records
        got = {k: v for k, v in got.items() if k not in ELF_FIELDS}
        renode = {k: v for k, v in renode.items() if k not in ELF_FIELDS}
    assert got == renode


@pytest.mark.hil
@pytest.mark.skipif(find_renode() is None, reason="Renode not found (RENODE=/path or renode on PATH)")
def test_live_renode_console_measures_the_same_over_the_fake_board(kws_build: Path,
                                                                   tmp_path: Path) -> None:
    console, renode = record_with_renode(kws_build)
    firmware = resolve_firmware(kws_build, BOARD, hardware=True)
    with FakeSerialBoard(console.encode()) as board:
        runner = probe_reset_runner(board)
        serial_measured = _measure_with(runner, firmware)
    assert runner_independent(serial_measured) == runner_independent(renode)
    assert serial_measured["runner"] == "serial" and renode["runner"] == "renode"


class BoardProbe:
    """A probe wired to a `FakeSerialBoard`: its reset restarts that board (after the runner
    opened and flushed the port, as a real probe reset comes)."""

    name = "fake-probe"

    def __init__(self, board: FakeSerialBoard):
        self.board = board

    def check_available(self) -> None:
        pass

    def reset(self) -> flashers.FlashResult:
        self.board.reset()
        return flashers.FlashResult(command=["fake-probe", "reset"], output="")


def probe_reset_runner(board: FakeSerialBoard) -> SerialRunner:
    return SerialRunner(board.port, reset="probe", reset_probe=BoardProbe(board))


def _measure_with(runner, firmware, timeout_s: float = 10.0) -> dict:
    import edgekit.boards.runners.measure as measure_module

    original = measure_module.make_runner
    measure_module.make_runner = lambda *a, **k: runner
    try:
        return measure(firmware, "serial", timeout_s=timeout_s)
    finally:
        measure_module.make_runner = original


# --- corrupted reports ------------------------------------------------------------------------

def _reframe(lines: list[bytes]) -> bytes:
    """`lines` (BEGIN, records..., END) with the end line's count and CRC made consistent."""
    body = b"".join(lines[:-1])
    records = len(lines) - 2
    return body + f"@@EDGEKIT-END records={records} crc32={zlib.crc32(body):08x}\n".encode()


def corrupted_reports(console: bytes, seed: int = 12) -> list[tuple[str, bytes]]:
    """20 corruptions of `console`: 8 byte flips, 4 truncations, 4 dropped lines, 4 bad CRCs."""
    rng = random.Random(seed)
    lines = console.splitlines(keepends=True)
    cases = []
    for _ in range(8):
        data = bytearray(console)
        at = rng.randrange(len(data))
        data[at] ^= 1 << rng.randrange(8)
        cases.append((f"flip byte {at}", bytes(data)))
    for _ in range(4):
        cut = rng.randrange(1, len(console) - 1)
        cases.append((f"truncated at {cut}", console[:cut]))
    for _ in range(4):
        drop = rng.randrange(1, len(lines) - 1)
        cases.append((f"dropped line {drop}", b"".join(lines[:drop] + lines[drop + 1:])))
    end = lines[-1]
    crc = end.split(b"crc32=")[1][:8]
    wrong = f"{int(crc, 16) ^ 0x00010000:08x}".encode()
    cases.append(("end CRC off by one bit", b"".join(lines[:-1]) + end.replace(crc, wrong)))
    output_crc = next(i for i, line in enumerate(lines) if line.startswith(b"output_crc32="))
    bad_output_crc = list(lines)
    bad_output_crc[output_crc] = b"output_crc32=00000000\n"
    cases.append(("output CRC wrong, end CRC recomputed", _reframe(bad_output_crc)))
    output = next(i for i, line in enumerate(lines) if line.startswith(b"output="))
    bad_output = list(lines)
    bad_output[output] = bad_output[output].replace(b"=8", b"=9", 1)
    cases.append(("output byte changed, end CRC recomputed", _reframe(bad_output)))
    cases.append(("record count off by one", b"".join(lines[:-1]) +
                  end.replace(b"records=12", b"records=11")))
    return cases


def test_twenty_corrupted_reports_are_each_refused(kws_build: Path, record_property) -> None:
    console, _ = read_fixture()
    outcomes = {"ReportError": 0, "RunnerTimeoutError": 0}
    firmware = resolve_firmware(kws_build, BOARD, hardware=True)
    cases = corrupted_reports(console)
    assert len(cases) == 20 and len({data for _, data in cases}) == 20
    assert all(data != console for _, data in cases)
    for what, data in cases:
        with FakeSerialBoard(data) as board:
            runner = probe_reset_runner(board)
            started = time.monotonic()
            with pytest.raises((ReportError, RunnerTimeoutError)) as caught:
                _measure_with(runner, firmware, timeout_s=1.0)
        message = str(caught.value)
        outcomes["RunnerTimeoutError" if isinstance(caught.value, RunnerTimeoutError)
                 else "ReportError"] += 1
        assert time.monotonic() - started < 5, what
        if isinstance(caught.value, RunnerTimeoutError):
            # the end sentinel never arrived intact: the bytes that did are counted and kept
            assert "did not finish its report within 1 s" in message, what
            assert caught.value.console, what
        else:
            assert any(word in message for word in ("CRC mismatch", "record count mismatch", "garbled",
                                                    "no report", "not a decimal", "not lowercase hex",
                                                    "no '", "version")), (what, message)
        if what.startswith("truncated"):
            assert isinstance(caught.value, RunnerTimeoutError), what
        if what.startswith(("dropped", "end CRC", "output", "record count")):
            assert isinstance(caught.value, ReportError), (what, message)
            assert "mismatch" in message, (what, message)
    record_property("summary", f"fake serial board: 20 corrupted reports refused,"
                               f" {outcomes['ReportError']} as ReportError,"
                               f" {outcomes['RunnerTimeoutError']} as a timeout")


def test_a_counting_dwt_gives_cycles_and_latency_at_the_reported_clock(kws_build: Path) -> None:
    """What a real F746 adds to Renode's report: a DWT that counts (Renode's reads 0)."""
    console, _ = read_fixture()
    lines = console.splitlines(keepends=True)
    counted = _reframe([b"cycles=21600000\n" if line == b"cycles=0\n" else line for line in lines])
    assert counted != console
    firmware = resolve_firmware(kws_build, BOARD, hardware=True)
    with FakeSerialBoard(counted) as board:
        measured = _measure_with(probe_reset_runner(board), firmware)
    assert measured["cycles"] == 21_600_000 and measured["emulator_cycles"] is None
    assert measured["latency_ms"] == pytest.approx(100.0)  # at the reported clock_hz=216000000


def test_silent_board_times_out_cleanly(kws_build: Path, probe_env: dict, capsys) -> None:
    with FakeSerialBoard(None, reset_file=probe_env["reset"]) as board:
        started = time.monotonic()
        status = main(["measure", "--runner", "serial", "--board", BOARD, "--port", board.port,
                       "--flasher", "none", "--timeout", "1.5", str(kws_build)])
        elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert status != 0 and elapsed < 5
    assert "Traceback" not in err
    assert "did not finish its report within 1.5 s (0 console bytes received)" in err
    assert "nothing arrived" in err and "reset: probe (pyocd)" in err
    # --flasher none: the board was reset through the probe (fake pyocd), not programmed
    assert logged_calls(probe_env["log"]) == [["pyocd", "reset", "-t", "stm32f746ng"]]
    assert board.resets == 1


# --- resets -----------------------------------------------------------------------------------

class DtrPort:
    """A port that records DTR changes and then plays a report."""

    def __init__(self, report: bytes):
        self.events: list = []
        self.timeout = 0.01
        self._data = b""
        self._report = report

    @property
    def dtr(self):
        return None

    @dtr.setter
    def dtr(self, value: bool) -> None:
        self.events.append(("dtr", value))
        if value:
            self._data = self._report  # the board restarts when DTR is asserted again

    @property
    def in_waiting(self) -> int:
        return len(self._data)

    def read(self, size: int = 1) -> bytes:
        data, self._data = self._data[:size], self._data[size:]
        return data

    def reset_input_buffer(self) -> None:
        self.events.append("flush")

    def close(self) -> None:
        self.events.append("close")


def test_dtr_pulse_resets_a_board_that_was_not_programmed(tmp_path: Path) -> None:
    from tiny_firmware import write_minimal_elf

    console, _ = read_fixture()
    port = DtrPort(console)
    pauses = []
    runner = SerialRunner("/dev/ttyUSB0", reset="dtr", open_port=lambda url, baud: port,
                          sleep=pauses.append)
    result = runner.run(write_minimal_elf(tmp_path / "f.elf"), timeout_s=2)
    assert port.events == ["flush", ("dtr", False), ("dtr", True), "close"]
    assert pauses == [0.1] and result.details["reset"] == "dtr"
    assert result.console.encode() == console


def test_auto_reset_falls_back_to_dtr_when_the_probe_fails(tmp_path: Path) -> None:
    from tiny_firmware import write_minimal_elf

    class AbsentProbe:  # the tool is installed; no probe is attached
        name = "pyocd"

        def check_available(self) -> None:
            pass

        def reset(self):
            raise RunnerError("pyOCD found no debug probe for target stm32f746ng")

    console, _ = read_fixture()
    port = DtrPort(console)
    runner = SerialRunner("/dev/ttyUSB0", reset_probe=AbsentProbe(), open_port=lambda url, baud: port,
                          sleep=lambda s: None)
    result = runner.run(write_minimal_elf(tmp_path / "f.elf"), timeout_s=2)
    assert result.details["reset"] == "dtr"
    assert "found no debug probe" in result.details["probe_reset_failed"]
    with pytest.raises(RunnerError, match="found no debug probe"):  # asked for the probe: no fallback
        SerialRunner("/dev/ttyUSB0", reset="probe", reset_probe=AbsentProbe(),
                     open_port=lambda url, baud: DtrPort(console)).run(tmp_path / "f.elf", timeout_s=2)


def test_a_port_without_dtr_still_reads_and_says_so(kws_build: Path) -> None:
    console, _ = read_fixture()
    firmware = resolve_firmware(kws_build, BOARD, hardware=True)
    with FakeSerialBoard(console) as board:  # a pty has no modem lines
        runner = SerialRunner(board.port, reset="dtr")
        # the board restarts 0.5 s from now (the user pressing RESET), well after the port opened
        threading.Timer(0.5, board.reset).start()
        result = runner.run(firmware.elf, timeout_s=5)
    # the pty refused the DTR change: the read went on and got the report the board printed
    assert result.details["reset"].startswith("none (the port has no DTR line")
    assert result.console.encode() == console


# --- flasher command lines per board ------------------------------------------------------------

def _real_boards() -> list[str]:
    return sorted(b.id for b in list_boards() if b.kind == "real")


def _expected_commands(board_id: str, elf: Path) -> dict[str, list[str]]:
    """The command lines each tool must get, read straight from the board's JSON file."""
    spec = json.loads((BOARDS_DIR / f"{board_id}.json").read_text())["flasher"]
    expected = {}
    if "pyocd_target" in spec:
        expected["pyocd"] = ["pyocd", "flash", "-t", spec["pyocd_target"], str(elf)]
    if "openocd_config" in spec:
        configs = spec["openocd_config"]
        configs = [configs] if isinstance(configs, str) else configs
        expected["openocd"] = ["openocd", *[a for c in configs for a in ("-f", c)], "-c",
                               f"program {{{elf}}} verify reset exit"]
    if "platformio_board" in spec:
        expected["pio"] = ["pio", "run", "-d", str(elf.parent), "-e", board_id, "-t", "upload"]
    return expected


def test_every_real_board_has_a_tested_flasher() -> None:
    assert _real_boards() == ["disco-f746ng", "nrf52840dk", "nucleo-h743zi", "nucleo-l4r5zi", "rpi-pico"]


@pytest.mark.parametrize("board_id", _real_boards())
def test_flasher_command_lines_per_board(board_id: str, probe_env: dict, tmp_path: Path) -> None:
    build = tmp_path / "build dir"  # a space: each tool must get the path as one argument
    build.mkdir()
    elf = build / "firmware.elf"
    elf.write_bytes(b"\x7fELF")
    (build / "platformio.ini").write_text(f"[env:{board_id}]\nboard = x\n")
    expected = _expected_commands(board_id, elf)
    assert "pyocd" in expected or "openocd" in expected
    for tool, command in expected.items():
        done = flashers.flasher_for(load_board(board_id), prefer=tool).flash(elf)
        assert done.command == command and "fake" in done.output
        assert logged_calls(probe_env["log"])[-1] == command
    # unpreferred: the first installed of pyocd, openocd, pio that the board has settings for
    first = next(t for t in ("pyocd", "openocd", "pio") if t in expected)
    assert flashers.flasher_for(load_board(board_id)).name == first


def test_no_flasher_installed_names_what_to_install(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there
    monkeypatch.setattr(flashers, "pyocd_api_installed", lambda: False)
    with pytest.raises(RunnerUnavailableError) as caught:
        flashers.flasher_for(load_board("nucleo-h743zi"))
    message = str(caught.value)
    for hint in ("pip install 'edgekit[hil]'", "OpenOCD", "PlatformIO", "--flasher none"):
        assert hint in message


def test_pio_refuses_a_project_without_the_boards_env(probe_env: dict, tmp_path: Path) -> None:
    elf = tmp_path / "firmware.elf"
    elf.write_bytes(b"\x7fELF")
    with pytest.raises(RunnerError, match="no platformio.ini"):
        flashers.flasher_for(load_board("rpi-pico"), prefer="pio").flash(elf)
    (tmp_path / "platformio.ini").write_text("[env:other]\n")
    with pytest.raises(RunnerError, match=r"no \[env:rpi-pico\]"):
        flashers.flasher_for(load_board("rpi-pico"), prefer="pio").flash(elf)


def test_edgekit_flash_programs_the_build(kws_build: Path, probe_env: dict, capsys) -> None:
    status, payload = cli_json(["flash", "--board", BOARD, "--flasher", "openocd", str(kws_build)], capsys)
    assert status == 0 and payload["action"] == "programmed with openocd"
    assert logged_calls(probe_env["log"]) == [["openocd", "-f", "board/stm32f7discovery.cfg", "-c",
                                               f"program {{{kws_build / 'firmware.elf'}}} verify reset exit"]]


def test_failing_flasher_is_a_clean_error(kws_build: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    bin_dir = fake_tools(tmp_path / "failbin", returncode=3)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv(ARGV_LOG_ENV, str(tmp_path / "log"))
    monkeypatch.setattr(flashers, "pyocd_api_installed", lambda: False)
    status = main(["flash", "--board", BOARD, "--flasher", "pyocd", str(kws_build)])
    err = capsys.readouterr().err
    assert status != 0 and "Traceback" not in err
    assert "pyocd failed (status 3) programming" in err and "fake pyocd: done" in err


# --- pyOCD's Python API (a stand-in module: no probe here) -----------------------------------

def _fake_pyocd(monkeypatch, events: list, probe_found: bool = True) -> None:
    class Error(Exception):
        pass

    class Target:
        def reset(self):
            events.append("reset")

    class Session:
        target = Target()

        def __enter__(self):
            events.append("open")
            return self

        def __exit__(self, *exc):
            events.append("close")

    class ConnectHelper:
        @staticmethod
        def session_with_chosen_probe(**kwargs):
            events.append(("session", kwargs["target_override"], kwargs["unique_id"]))
            return Session() if probe_found else None

    class FileProgrammer:
        def __init__(self, session):
            pass

        def program(self, path, file_format=None):
            events.append(("program", path, file_format))

    modules = {
        "pyocd": types.ModuleType("pyocd"),
        "pyocd.core": types.ModuleType("pyocd.core"),
        "pyocd.core.helpers": types.SimpleNamespace(ConnectHelper=ConnectHelper),
        "pyocd.core.exceptions": types.SimpleNamespace(Error=Error),
        "pyocd.flash": types.ModuleType("pyocd.flash"),
        "pyocd.flash.file_programmer": types.SimpleNamespace(FileProgrammer=FileProgrammer),
    }
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)


def test_pyocd_python_api_programs_then_resets(monkeypatch, tmp_path: Path) -> None:
    events: list = []
    _fake_pyocd(monkeypatch, events)
    elf = tmp_path / "firmware.elf"
    flasher = flashers.flasher_for(load_board("nrf52840dk"), pyocd_api=True, probe_uid="0123")
    assert isinstance(flasher, flashers.PyOcdApiFlasher)
    flasher.flash(elf)
    assert events == [("session", "nrf52840", "0123"), "open", ("program", str(elf), "elf"),
                      "reset", "close"]


def test_pyocd_python_api_without_a_probe_is_a_clear_error(monkeypatch, tmp_path: Path) -> None:
    _fake_pyocd(monkeypatch, [], probe_found=False)
    flasher = flashers.flasher_for(load_board("nrf52840dk"), pyocd_api=True)
    with pytest.raises(RunnerError, match="pyOCD found no debug probe for target nrf52840"):
        flasher.flash(tmp_path / "firmware.elf")


@pytest.mark.skipif(not flashers.pyocd_api_installed(), reason="pyOCD is not installed (pip install 'edgekit[hil]')")
def test_real_pyocd_api_without_the_probe_is_a_clear_error(capsys, tmp_path: Path) -> None:
    """The API calls as pyOCD itself takes them; a probe id that no probe has keeps any probe
    attached to this machine untouched."""
    flasher = flashers.flasher_for(load_board("nucleo-h743zi"), probe_uid="edgekit-no-such-probe")
    assert isinstance(flasher, flashers.PyOcdApiFlasher)
    with pytest.raises(RunnerError, match="pyOCD found no probe edgekit-no-such-probe for target "
                                          "stm32h743zitx"):
        flasher.flash(tmp_path / "firmware.elf")
    assert capsys.readouterr().out == ""  # pyOCD's own complaint goes to stderr: --json stays clean
