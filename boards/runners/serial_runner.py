"""Real-board runner: flash with a probe (optional), then read the report over a serial port.

The port is opened before flashing, so the report printed right after the flasher's reset is not
missed. `open_port` is injectable (default: pyserial's ``serial_for_url``, which takes device
names like ``/dev/ttyACM0`` and URLs like ``socket://host:port`` or ``rfc2217://``), so the tests
drive a fake port. Cycles come from the report's ``cycles`` record (DWT), not from here.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import serial

from edgekit.boards.runners.base import ConsolePort, RunResult, Runner, check_elf, read_until_report
from edgekit.boards.runners.flashers import Flasher
from edgekit.errors import RunnerError, RunnerUnavailableError

#: environment variable naming the serial port of an attached board
PORT_ENV = "EDGEKIT_PORT"
DEFAULT_BAUDRATE = 115200


def default_open_port(url: str, baudrate: int) -> ConsolePort:
    """Open `url` with pyserial (a read timeout keeps the read loop responsive)."""
    return serial.serial_for_url(url, baudrate=baudrate, timeout=0.1)


def port_from_environment(environ: dict | None = None) -> str | None:
    """The serial port named by ``EDGEKIT_PORT``, or None."""
    environ = os.environ if environ is None else environ
    return environ.get(PORT_ENV) or None


class SerialRunner(Runner):
    """Flash (when a flasher is given) and read the report from a real board's serial port."""

    name = "serial"

    def __init__(self, port: str | None, *, flasher: Flasher | None = None,
                 baudrate: int = DEFAULT_BAUDRATE,
                 open_port: Callable[[str, int], ConsolePort] = default_open_port):
        self.port = port
        self.flasher = flasher
        self.baudrate = baudrate
        self.open_port = open_port

    def check_available(self) -> None:
        if not self.port:
            raise RunnerUnavailableError(f"no serial port given: pass --port or set {PORT_ENV} "
                                         "to the board's console (e.g. /dev/ttyACM0)")
        if self.flasher is not None:
            self.flasher.check_available()

    def run(self, elf: Path, timeout_s: float) -> RunResult:
        elf = check_elf(elf)
        self.check_available()
        started = time.monotonic()
        try:
            port = self.open_port(self.port, self.baudrate)
        except (serial.SerialException, OSError) as err:
            raise RunnerError(f"cannot open serial port {self.port}: {err}") from None
        details: dict = {"port": self.port, "baudrate": self.baudrate}
        try:
            reset_input = getattr(port, "reset_input_buffer", None)
            if reset_input is not None:
                reset_input()  # drop what an earlier program printed
            if self.flasher is not None:
                flashed = self.flasher.flash(elf)
                details["flasher"] = self.flasher.name
                details["flash_command"] = flashed.command
            console = read_until_report(port, timeout_s, what=f"board on {self.port}")
        finally:
            port.close()
        return RunResult(runner=self.name, console=console, exit_code=None,
                         wall_s=time.monotonic() - started, details=details)
