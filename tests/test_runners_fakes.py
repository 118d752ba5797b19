"""Serial runner and flashers with a fake port and fake probe commands; QEMU runner process
handling with a fake QEMU (a script serving the TCP console) and with a program that never ends."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import serial

from edgekit.boards import load_board
from edgekit.boards.report import format_report, output_records, parse_report
from edgekit.boards.runners.base import read_until_report
from edgekit.boards.runners.flashers import OpenOcdFlasher, PyOcdFlasher, flasher_for
from edgekit.boards.runners.qemu import QemuRunner
from edgekit.boards.runners.serial_runner import SerialRunner, port_from_environment
from edgekit.errors import RunnerError, RunnerTimeoutError, RunnerUnavailableError

REPORT = format_report([("board", "disco-f746ng"), ("payload", "selftest"),
                        ("stack_peak_bytes", "200"), ("cycles", "4242"),
                        *output_records(b"\x01\x02\x03")])


class FakePort:
    """A pyserial-like port that hands out `chunks` one read at a time, then nothing."""

    def __init__(self, chunks: list[bytes], events: list[str]):
        self.chunks = list(chunks)
        self.events = events
        self.timeout = 0.01
        self.closed = False

    @property
    def in_waiting(self) -> int:
        return len(self.chunks[0]) if self.chunks else 0

    def read(self, size: int = 1) -> bytes:
        if not self.chunks:
            return b""
        head = self.chunks[0]
        data, rest = head[:size], head[size:]
        if rest:
            self.chunks[0] = rest
        else:
            self.chunks.pop(0)
        return data

    def reset_input_buffer(self) -> None:
        self.events.append("reset_input")

    def close(self) -> None:
        self.closed = True
        self.events.append("close")


class FakeCommands:
    """Records probe commands and answers with a given status and output."""

    def __init__(self, events: list[str], returncode: int = 0, output: str = "Programmed 4 KiB"):
        self.events = events
        self.calls: list[list[str]] = []
        self.returncode = returncode
        self.output = output

    def __call__(self, cmd, timeout_s):
        self.calls.append(list(cmd))
        self.events.append("flash")
        return subprocess.CompletedProcess(list(cmd), self.returncode, self.output, "")


def present(_name: str) -> str:
    return "/usr/bin/fake"


def absent(_name: str) -> None:
    return None


@pytest.fixture
def elf(tmp_path: Path) -> Path:
    from tiny_firmware import write_minimal_elf

    return write_minimal_elf(tmp_path / "firmware.elf")  # runners refuse a malformed ELF


def test_serial_runner_opens_port_before_flashing_and_reads_report(elf: Path) -> None:
    events: list[str] = []
    chunks = [b"boot noise\r\n", REPORT[:40].encode(), REPORT[40:].encode(), b"trailing"]
    port = FakePort(chunks, events)
    opened = []

    def open_port(url, baudrate):
        opened.append((url, baudrate))
        events.append("open")
        return port

    commands = FakeCommands(events)
    flasher = PyOcdFlasher("stm32f746ng", run_command=commands, which=present)
    runner = SerialRunner("/dev/ttyACM7", flasher=flasher, baudrate=921600, open_port=open_port)
    result = runner.run(elf, timeout_s=5)
    assert opened == [("/dev/ttyACM7", 921600)]
    assert events == ["open", "reset_input", "flash", "close"]
    assert commands.calls == [["pyocd", "flash", "-t", "stm32f746ng", str(elf)]]
    report = parse_report(result.console)
    assert report.cycles == 4242
    assert report.outputs == [b"\x01\x02\x03"]
    assert result.details["flasher"] == "pyocd"


def test_serial_runner_timeout_keeps_console(elf: Path) -> None:
    events: list[str] = []
    port = FakePort([b"boot\n", REPORT[:50].encode()], events)
    runner = SerialRunner("socket://fake", open_port=lambda url, baud: port)
    with pytest.raises(RunnerTimeoutError) as info:
        runner.run(elf, timeout_s=0.2)
    assert info.value.console == "boot\n" + REPORT[:50]
    assert port.closed


def test_serial_runner_needs_a_port(elf: Path) -> None:
    with pytest.raises(RunnerUnavailableError, match="EDGEKIT_PORT"):
        SerialRunner(None).run(elf, timeout_s=1)


def test_serial_runner_reports_unopenable_port(elf: Path) -> None:
    def refuse(url, baud):
        raise serial.SerialException("could not open port /dev/nope")
    with pytest.raises(RunnerError, match="cannot open serial port /dev/nope"):
        SerialRunner("/dev/nope", open_port=refuse).run(elf, timeout_s=1)


def test_port_from_environment() -> None:
    assert port_from_environment({"EDGEKIT_PORT": "/dev/ttyUSB0"}) == "/dev/ttyUSB0"
    assert port_from_environment({}) is None


def test_openocd_command_quotes_path_and_lists_configs(tmp_path: Path) -> None:
    events: list[str] = []
    spaced = tmp_path / "my build" / "firmware.elf"
    spaced.parent.mkdir()
    spaced.write_bytes(b"\x7fELF")  # the flasher passes the path on; it does not read it
    commands = FakeCommands(events)
    flasher = OpenOcdFlasher(["interface/jlink.cfg", "target/nrf52.cfg"], run_command=commands,
                             which=present)
    flasher.flash(spaced)
    assert commands.calls == [["openocd", "-f", "interface/jlink.cfg", "-f", "target/nrf52.cfg",
                               "-c", f"program {{{spaced}}} verify reset exit"]]


def test_flash_failure_carries_tool_output(elf: Path) -> None:
    commands = FakeCommands([], returncode=1, output="Error: no probe found")
    flasher = PyOcdFlasher("nrf52840", run_command=commands, which=present)
    with pytest.raises(RunnerError, match="no probe found"):
        flasher.flash(elf)


def test_missing_flasher_tool_is_unavailable(elf: Path) -> None:
    flasher = PyOcdFlasher("nrf52840", run_command=FakeCommands([]), which=absent)
    with pytest.raises(RunnerUnavailableError, match="pyocd is not on PATH"):
        flasher.flash(elf)


def test_flasher_for_board_prefers_installed_tool() -> None:
    board = load_board("nrf52840dk")
    only_openocd = lambda name: "/usr/bin/openocd" if name == "openocd" else None  # noqa: E731
    assert isinstance(flasher_for(board, which=present, pyocd_api=False), PyOcdFlasher)
    chosen = flasher_for(board, which=only_openocd, pyocd_api=False)
    assert isinstance(chosen, OpenOcdFlasher) and chosen.configs == ("interface/jlink.cfg", "target/nrf52.cfg")
    with pytest.raises(RunnerUnavailableError, match=r"nrf52840dk is installed: install pip install 'edgekit\[hil\]'"):
        flasher_for(board, which=absent, pyocd_api=False)
    with pytest.raises(RunnerError, match="no flasher section"):
        flasher_for(load_board("mps2-an386"))


def test_read_until_report_stops_when_process_ends() -> None:
    port = FakePort([b"partial"], [])
    assert read_until_report(port, 5, what="x", still_running=lambda: False) == "partial"


# --- QEMU runner with a fake QEMU -------------------------------------------------------------

FAKE_QEMU = r'''
import socket, sys, time, os
args = sys.argv[1:]
serial_arg = args[args.index("-serial") + 1]
port = int(serial_arg.split(":")[2].split(",")[0])
open(os.environ["FAKE_QEMU_PIDFILE"], "w").write(str(os.getpid()))
mode = os.environ["FAKE_QEMU_MODE"]
if mode == "die":
    sys.stderr.write("qemu-system-arm: -M nosuch: unsupported machine type\n")
    sys.exit(1)
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port))
server.listen(1)
conn, _ = server.accept()
conn.sendall(os.environ["FAKE_QEMU_TEXT"].encode())
if mode == "hang":
    time.sleep(600)
conn.close()
sys.exit(int(os.environ.get("FAKE_QEMU_STATUS", "0")))
'''


@pytest.fixture
def fake_qemu(tmp_path: Path, monkeypatch):
    script = tmp_path / "fake-qemu"
    script.write_text(f"#!{sys.executable}\n{FAKE_QEMU}")
    script.chmod(0o755)
    pidfile = tmp_path / "pid"
    monkeypatch.setenv("FAKE_QEMU_PIDFILE", str(pidfile))

    def configure(mode: str, text: str = "", status: int = 0) -> QemuRunner:
        monkeypatch.setenv("FAKE_QEMU_MODE", mode)
        monkeypatch.setenv("FAKE_QEMU_TEXT", text)
        monkeypatch.setenv("FAKE_QEMU_STATUS", str(status))
        return QemuRunner("mps2-an386", qemu=str(script))

    configure.pidfile = pidfile
    return configure


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_qemu_runner_reads_console_and_exit_status(fake_qemu, elf: Path) -> None:
    runner = fake_qemu("exit", "noise\n" + REPORT, status=3)
    result = runner.run(elf, timeout_s=20)
    assert result.exit_code == 3
    assert parse_report(result.console).outputs == [b"\x01\x02\x03"]
    assert result.details["command"][-2] == "-serial"


def test_qemu_runner_timeout_kills_process_and_keeps_console(fake_qemu, elf: Path) -> None:
    runner = fake_qemu("hang", "started\n")
    with pytest.raises(RunnerTimeoutError) as info:
        runner.run(elf, timeout_s=1.5)
    assert info.value.console == "started\n"
    assert _gone(int(fake_qemu.pidfile.read_text()))


def test_qemu_runner_stops_wfi_firmware_after_complete_report(fake_qemu, elf: Path) -> None:
    runner = fake_qemu("hang", REPORT)  # report complete, then never exits (a wfi loop)
    result = runner.run(elf, timeout_s=20)
    assert result.exit_code is not None and result.exit_code != 0  # killed by us
    assert parse_report(result.console).board == "disco-f746ng"
    assert _gone(int(fake_qemu.pidfile.read_text()))


def test_qemu_that_dies_at_start_is_a_runner_error(fake_qemu, elf: Path) -> None:
    with pytest.raises(RunnerError, match="unsupported machine type"):
        fake_qemu("die").run(elf, timeout_s=10)


def test_qemu_missing_binary(elf: Path) -> None:
    with pytest.raises(RunnerUnavailableError, match="not on PATH"):
        QemuRunner("mps2-an386", qemu="no-such-qemu-binary").run(elf, timeout_s=1)


@pytest.mark.skipif(subprocess.run(["which", "qemu-system-arm"], capture_output=True).returncode != 0,
                    reason="qemu-system-arm is not installed")
def test_real_qemu_times_out_on_a_program_that_never_ends(tmp_path: Path) -> None:
    from tiny_firmware import build_tiny

    elf = build_tiny(tmp_path, "forever")
    with pytest.raises(RunnerTimeoutError) as info:
        QemuRunner("mps2-an386").run(elf, timeout_s=2)
    assert info.value.console == "hello\n"


def test_emulator_console_keeps_bytes_sent_before_open_returns() -> None:
    """An emulator with wait=on starts the guest as soon as it accepts: bytes it sends while
    pyserial is still opening must not be flushed away (they were, under load, with plain
    ``serial_for_url``)."""
    import socket
    import threading

    from edgekit.boards.runners.base import open_emulator_console

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    sent = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        conn.sendall(b"early bytes\n")
        conn.close()
        sent.set()

    thread = threading.Thread(target=serve)
    thread.start()
    original_open = socket.create_connection

    def connect_then_wait(*args, **kwargs):
        sock = original_open(*args, **kwargs)
        assert sent.wait(5)  # the peer has sent and closed before open() goes on
        return sock

    try:
        socket.create_connection = connect_then_wait
        link = open_emulator_console("127.0.0.1", server.getsockname()[1])
    finally:
        socket.create_connection = original_open
    try:
        assert read_until_report(link, 2, what="fake emulator", still_running=lambda: False) \
            == "early bytes\n"
    finally:
        link.close()
        thread.join()
        server.close()
