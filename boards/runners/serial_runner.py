"""Real-board runner: flash with a probe (optional), reset, then read the report over a serial port.

The port is opened before flashing, so the report printed right after the flasher's reset is not
missed. Programming resets the board; without it (the user flashed it already) the board is
reset through the probe (``reset="probe"``) or by pulsing the port's DTR line (``"dtr"``; only
boards that wire DTR to reset react, the ST-LINK and J-Link virtual COM ports do not), or not at
all (``"none"``: press RESET); ``"auto"`` tries the probe where one is given and pulses DTR when
there is none or it fails (a probe tool installed, but the board on a plain USB-serial cable). `open_port` is injectable (default: pyserial's ``serial_for_url``, which takes device
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
from edgekit.errors import RunnerError, RunnerTimeoutError, RunnerUnavailableError

#: environment variable naming the serial port of an attached board
PORT_ENV = "EDGEKIT_PORT"
DEFAULT_BAUDRATE = 115200
#: how the board is reset when nothing is programmed (`SerialRunner`)
RESET_MODES = ("auto", "probe", "dtr", "none")
#: how long DTR is released before it is asserted again
DTR_PULSE_S = 0.1


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
                 reset: str = "auto", reset_probe: Flasher | None = None,
                 baudrate: int = DEFAULT_BAUDRATE,
                 open_port: Callable[[str, int], ConsolePort] = default_open_port,
                 sleep: Callable[[float], None] = time.sleep):
        if reset not in RESET_MODES:
            raise RunnerError(f"unknown reset mode {reset!r}; expected one of {', '.join(RESET_MODES)}")
        if reset == "probe" and flasher is None and reset_probe is None:
            raise RunnerError("reset through the probe needs a probe tool (pyocd or openocd)")
        self.port = port
        self.flasher = flasher
        self.reset = reset
        self.reset_probe = reset_probe
        self.baudrate = baudrate
        self.open_port = open_port
        self.sleep = sleep

    def check_available(self) -> None:
        if not self.port:
            raise RunnerUnavailableError(f"no serial port given: pass --port or set {PORT_ENV} "
                                         "to the board's console (e.g. /dev/ttyACM0)")
        if self.flasher is not None:
            self.flasher.check_available()
        elif self.reset == "probe":
            self.reset_probe.check_available()

    def _reset_board(self, port: ConsolePort, details: dict) -> None:
        """Reset a board that is not being programmed (programming resets it)."""
        if self.reset in ("probe", "auto") and self.reset_probe is not None:
            try:
                done = self.reset_probe.reset()
            except RunnerError as err:
                if self.reset == "probe":
                    raise
                details["probe_reset_failed"] = str(err)
            else:
                details["reset"] = f"probe ({self.reset_probe.name})"
                details["reset_command"] = done.command
                return
        if self.reset in ("dtr", "auto"):
            try:
                port.dtr = False
                self.sleep(DTR_PULSE_S)
                port.dtr = True  # the state pyserial opens with
                details["reset"] = "dtr"
            except (serial.SerialException, OSError, AttributeError) as err:
                # a port with no modem lines (a pseudo-terminal, some bridges): read anyway, the
                # user may press RESET; the timeout message says so
                details["reset"] = f"none (the port has no DTR line: {err})"
        else:
            details["reset"] = "none"

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
                details["reset"] = f"after programming ({self.flasher.name})"
            else:
                self._reset_board(port, details)
            try:
                console = read_until_report(port, timeout_s, what=f"board on {self.port}")
            except RunnerTimeoutError as err:
                other = "" if details["reset"].startswith(("probe", "after")) else ", or use --reset probe"
                hint = ("" if err.console else
                        f"; nothing arrived: check the port and {self.baudrate} baud, that the board "
                        f"runs this firmware, and that it was reset (reset: {details['reset']}"
                        + (f", after the probe failed: {details['probe_reset_failed']}"
                           if "probe_reset_failed" in details else "") + "; "
                        f"press the board's RESET button{other})")
                raise RunnerTimeoutError(f"{err}{hint}", err.console) from None
        finally:
            port.close()
        return RunResult(runner=self.name, console=console, exit_code=None,
                         wall_s=time.monotonic() - started, details=details)
