"""The one interface every runner implements: load an ELF, run it with a timeout, return what the
console said and what the runner could measure.

A runner builds nothing (the firmware is built before, by `edgekit build`), and it never parses
the report itself: the caller hands `RunResult.console` to `edgekit.boards.report.parse_report`,
so the report is read by one code path whatever ran it.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import serial
from serial.urlhandler.protocol_socket import Serial as SerialSocket

from edgekit.boards.report import BEGIN_MARKER, END_MARKER, FAULT_MARKER
from edgekit.errors import RunnerError, RunnerTimeoutError


@dataclass
class RunResult:
    """What one run produced. Figures a runner cannot measure stay None."""

    runner: str
    console: str
    #: exit status the firmware gave through semihosting; None where the runner has no exit path
    exit_code: int | None = None
    #: exact instructions executed between edgekit_measure_begin and edgekit_measure_end (Unicorn)
    instructions: int | None = None
    #: stack high-water mark seen by memory-write hooks (Unicorn), same window as the painted one
    stack_peak_hooked_bytes: int | None = None
    #: arena high-water mark seen by memory-write hooks (Unicorn)
    arena_used_hooked_bytes: int | None = None
    #: host seconds the run took; never a latency figure (emulators do not model time)
    wall_s: float = 0.0
    #: runner-specific facts worth showing (command line, port, flasher output, ...)
    details: dict = field(default_factory=dict)


class Runner(ABC):
    """Runs one ELF on one (emulated or real) board."""

    #: short id used by `edgekit measure --runner`
    name: str = ""

    def check_available(self) -> None:
        """Raise `RunnerUnavailableError` (with the reason) when this runner cannot run here."""

    @abstractmethod
    def run(self, elf: Path, timeout_s: float) -> RunResult:
        """Run `elf` until it exits or finishes its report; `RunnerTimeoutError` after `timeout_s`."""


class ConsolePort(Protocol):
    """The part of a pyserial port a runner uses (real serial, `socket://`, or a test fake)."""

    timeout: float | None

    @property
    def in_waiting(self) -> int: ...

    def read(self, size: int = 1) -> bytes: ...

    def close(self) -> None: ...


def report_finished(console: str) -> bool:
    """True once the console holds a complete report or fault report (end line with newline)."""
    start = max(console.rfind(BEGIN_MARKER), console.rfind(FAULT_MARKER))
    if start < 0:
        return False
    end = console.find(END_MARKER, start)
    return end >= 0 and console.find("\n", end) >= 0


def decode_console(data: bytes) -> str:
    """Console bytes as text; latin-1 maps every byte, so boot noise never breaks decoding."""
    return data.decode("latin-1")


def check_elf(elf: Path) -> Path:
    """The ELF path, or a `RunnerError` naming it when it is missing or not an ELF file."""
    path = Path(elf)
    if not path.is_file():
        raise RunnerError(f"firmware file {path} does not exist")
    with path.open("rb") as handle:
        if handle.read(4) != b"\x7fELF":
            raise RunnerError(f"firmware file {path} is not an ELF file")
    return path


def read_until_report(port: ConsolePort, timeout_s: float, *, what: str,
                      still_running=lambda: True, chunk: int = 4096,
                      clock=time.monotonic) -> str:
    """Read `port` until a complete report arrived, `still_running()` turns False, or the timeout.

    `what` names the device in the timeout message. On timeout raises `RunnerTimeoutError`
    carrying the console text received so far.
    """
    deadline = clock() + timeout_s
    received = bytearray()
    while True:
        data = read_available(port, chunk)
        if data:
            received += data
            if report_finished(decode_console(bytes(received))):
                return decode_console(bytes(received))
            continue
        if not still_running():
            return decode_console(bytes(received))
        if clock() >= deadline:
            console = decode_console(bytes(received))
            raise RunnerTimeoutError(
                f"{what} did not finish its report within {timeout_s:g} s "
                f"({len(received)} console bytes received)", console)


def read_available(port: ConsolePort, chunk: int) -> bytes:
    """What the port has now: waits up to ``port.timeout`` for a first byte, then takes what is
    waiting. pyserial's ``socket://`` port drops a partly filled read when the peer closes (the
    emulator exited right after printing), and its ``in_waiting`` only says 0 or 1, so after the
    first byte it is read in what ``in_waiting`` promises: nothing is lost at the close. A closed
    port reads as no data after a short pause, so the caller neither spins nor misses the exit."""
    data = bytearray()
    try:
        data += port.read(1)
        while data and len(data) < chunk:
            waiting = port.in_waiting
            if not waiting:
                break
            data += port.read(min(waiting, chunk - len(data)))
    except (serial.SerialException, OSError):
        if not data:
            time.sleep(0.05)
    return bytes(data)


class _EmulatorSocket(SerialSocket):
    """pyserial's ``socket://`` port without the input flush at the end of ``open()``.

    pyserial clears the input buffer once connected, but an emulator with ``wait=on`` starts the
    guest the moment it accepts us: a short firmware can print (and exit) before ``open()``
    returns, and that flush would throw its first bytes -- or its whole report -- away.
    """

    _opening = False

    def open(self) -> None:
        self._opening = True
        try:
            super().open()
        finally:
            self._opening = False

    def reset_input_buffer(self) -> None:
        if not self._opening:
            super().reset_input_buffer()


def open_emulator_console(host: str, port: int, timeout: float = 0.1) -> serial.SerialBase:
    """Connect to an emulator's TCP serial server, keeping every byte it sent from the start.
    Raises `serial.SerialException` while nothing listens yet (callers retry)."""
    link = _EmulatorSocket(None, timeout=timeout)
    link.port = f"socket://{host}:{port}"
    link.open()
    return link
