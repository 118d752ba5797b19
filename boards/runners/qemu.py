"""QEMU runner: `qemu-system-arm` with the board's machine, console over a TCP serial port.

The UART is exposed as ``-serial tcp:127.0.0.1:PORT,server=on,wait=on`` and read through
pyserial's ``socket://`` URL, so the console path is the same as a real board's. ``wait=on``
matters: QEMU holds the guest until we connect, else a short program finishes before we listen.
The exit status comes from semihosting (``SYS_EXIT``); a firmware that ends in a ``wfi`` loop
instead is stopped once its report is complete. QEMU does not model time: its wall time is never
a latency figure, and it has no instruction counter here (no TCG plugins) -- Unicorn counts.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import serial

from edgekit.boards.runners.base import (RunResult, Runner, check_elf, open_emulator_console,
                                         read_available,
                                         decode_console, read_until_report, report_finished)
from edgekit.errors import RunnerError, RunnerTimeoutError, RunnerUnavailableError

QEMU_BINARY = "qemu-system-arm"
#: how long QEMU may take to open its serial server socket
CONNECT_TIMEOUT_S = 10.0
#: after a complete report, how long the firmware gets to exit through semihosting
EXIT_GRACE_S = 2.0
#: attempts when another process grabbed the free port between our probe and QEMU's bind
PORT_ATTEMPTS = 3


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it; QEMU binds it next,
    and `QemuRunner` retries with a new port if something else got there first)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class QemuRunner(Runner):
    """Run an ELF on a QEMU Cortex-M machine (mps2-an386, netduinoplus2, lm3s6965evb, ...)."""

    name = "qemu"

    def __init__(self, machine: str, *, console: str = "uart", qemu: str = QEMU_BINARY,
                 extra_args: tuple[str, ...] = ()):
        if console not in ("uart", "semihosting"):
            raise RunnerError(f"QEMU console must be 'uart' or 'semihosting', not {console!r}")
        self.machine = machine
        self.console = console
        self.qemu = qemu
        self.extra_args = tuple(extra_args)

    def check_available(self) -> None:
        if shutil.which(self.qemu) is None:
            raise RunnerUnavailableError(
                f"{self.qemu} is not on PATH (Debian: apt-get install --no-install-recommends "
                "qemu-system-arm)")

    def command(self, elf: Path, port: int) -> list[str]:
        """The QEMU command line for `elf` with its first UART served on 127.0.0.1:`port`."""
        return [self.qemu, "-M", self.machine, "-nographic", "-monitor", "none",
                "-semihosting-config", "enable=on,target=native", "-kernel", str(elf),
                "-serial", f"tcp:127.0.0.1:{port},server=on,wait=on", *self.extra_args]

    def run(self, elf: Path, timeout_s: float) -> RunResult:
        elf = check_elf(elf)
        self.check_available()
        started = time.monotonic()
        with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
            for attempt in range(PORT_ATTEMPTS):
                port = free_tcp_port()
                cmd = self.command(elf, port)
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
                try:
                    link = self._connect(proc, port, stderr)
                    if link is None:  # QEMU exited before serving the port
                        if attempt + 1 < PORT_ATTEMPTS and b"bind" in _tail(stderr).encode().lower():
                            continue
                        raise RunnerError(f"QEMU exited with status {proc.returncode} before "
                                          f"starting the firmware: {_tail(stderr)}")
                    console = self._collect(proc, link, stdout, timeout_s - (time.monotonic() - started))
                finally:
                    _stop(proc)
                break
            details = {"command": cmd, "port": port, "stderr": _tail(stderr)}
        return RunResult(runner=self.name, console=console, exit_code=proc.returncode,
                         wall_s=time.monotonic() - started, details=details)

    def _connect(self, proc: subprocess.Popen, port: int, stderr) -> serial.SerialBase | None:
        """Connect to QEMU's serial server, retrying while it starts; None if QEMU died first."""
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                return None
            try:
                return open_emulator_console("127.0.0.1", port)
            except serial.SerialException:
                if time.monotonic() > deadline:
                    raise RunnerError(f"could not connect to QEMU's serial port 127.0.0.1:{port} "
                                      f"within {CONNECT_TIMEOUT_S:g} s: {_tail(stderr)}")
                time.sleep(0.05)

    def _collect(self, proc: subprocess.Popen, link, stdout, timeout_s: float) -> str:
        """Read the console until the report is complete and QEMU exited (or the timeout)."""
        what = f"QEMU {self.machine}"
        try:
            if self.console == "uart":
                console = read_until_report(link, max(timeout_s, 0.0), what=what,
                                            still_running=lambda: proc.poll() is None)
                try:
                    proc.wait(EXIT_GRACE_S)
                except subprocess.TimeoutExpired:
                    pass  # a wfi-loop firmware: the report is complete, _stop ends QEMU
                # whatever QEMU flushed between the report's end and its exit
                return console + decode_console(_drain(link))
            return self._collect_semihosting(proc, stdout, timeout_s, what)
        finally:
            link.close()

    def _collect_semihosting(self, proc, stdout, timeout_s: float, what: str) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            exited = proc.poll() is not None
            stdout.seek(0)
            console = decode_console(stdout.read())
            if exited or report_finished(console):
                return console
            if time.monotonic() >= deadline:
                raise RunnerTimeoutError(f"{what} did not finish its report within {timeout_s:g} s",
                                         console)
            time.sleep(0.05)


def _drain(link) -> bytes:
    """Whatever the port still holds (the socket closes when QEMU exits)."""
    data = bytearray()
    while True:
        chunk = read_available(link, 4096)
        if not chunk:
            return bytes(data)
        data += chunk


def _stop(proc: subprocess.Popen) -> None:
    """End QEMU if it still runs, and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _tail(handle, limit: int = 2000) -> str:
    handle.flush()
    handle.seek(0)
    text = handle.read().decode("utf-8", "replace")
    return text[-limit:].strip()
