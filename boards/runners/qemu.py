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

from edgekit.boards.runners.base import (PipeConsole, RunResult, Runner, decode_console,
                                         open_emulator_console, read_available, read_until_report,
                                         report_finished, start_emulator,
                                         stop_process_group)
from edgekit.boards.runners.elf_check import validate_elf
from edgekit.errors import ReportError, RunnerError, RunnerTimeoutError, RunnerUnavailableError

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
        semihosting = ["-semihosting-config", "enable=on,target=native"]
        if self.console == "semihosting":
            # QEMU writes semihosting output to stderr unless given a chardev: stdout keeps it
            # apart from QEMU's own messages
            semihosting = ["-semihosting-config", "enable=on,target=native,chardev=semihosting",
                           "-chardev", "stdio,id=semihosting,signal=off"]
        return [self.qemu, "-M", self.machine, "-nographic", "-monitor", "none", *semihosting,
                "-kernel", str(elf), "-serial", f"tcp:127.0.0.1:{port},server=on,wait=on",
                *self.extra_args]

    def run(self, elf: Path, timeout_s: float) -> RunResult:
        elf = Path(elf)
        validate_elf(elf).check_reset_vector(elf)  # else QEMU locks up and waits out the timeout
        self.check_available()
        started = time.monotonic()
        deadline = started + timeout_s
        # semihosting output is QEMU's stdout (see `command`): read as a pipe, bounded like the
        # UART; a UART firmware prints nothing there
        stdout = subprocess.PIPE if self.console == "semihosting" else subprocess.DEVNULL
        with tempfile.TemporaryFile() as stderr:
            for attempt in range(PORT_ATTEMPTS):
                port = free_tcp_port()
                cmd = self.command(elf, port)
                proc = start_emulator(cmd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
                try:
                    link = self._connect(proc, port, stderr, deadline)
                    if link is None:  # QEMU exited before serving the port
                        if attempt + 1 < PORT_ATTEMPTS and b"bind" in _tail(stderr).encode().lower():
                            continue
                        raise RunnerError(f"QEMU exited with status {proc.returncode} before "
                                          f"starting the firmware {elf}: {_tail(stderr)}")
                    console = self._collect(proc, link, deadline - time.monotonic(), timeout_s)
                finally:
                    stop_process_group(proc)
                break
            if not report_finished(console):  # the console ended early: QEMU exited by itself
                raise ReportError(f"QEMU {self.machine} exited with status {proc.returncode} before "
                                  f"{elf.name} finished its report"
                                  f"{': ' + _tail(stderr) if _tail(stderr) else ''}", console)
            details = {"command": cmd, "port": port, "stderr": _tail(stderr)}
        return RunResult(runner=self.name, console=console, exit_code=proc.returncode,
                         wall_s=time.monotonic() - started, details=details)

    def _connect(self, proc: subprocess.Popen, port: int, stderr,
                 run_deadline: float) -> serial.SerialBase | None:
        """Connect to QEMU's serial server, retrying while it starts; None if QEMU died first."""
        deadline = min(time.monotonic() + CONNECT_TIMEOUT_S, run_deadline)
        while True:
            if proc.poll() is not None:
                return None
            try:
                return open_emulator_console("127.0.0.1", port)
            except serial.SerialException:
                if time.monotonic() > deadline:
                    if deadline == run_deadline:
                        raise RunnerTimeoutError(f"QEMU {self.machine} did not open its serial port "
                                                 "before the timeout") from None
                    raise RunnerError(f"could not connect to QEMU's serial port 127.0.0.1:{port} "
                                      f"within {CONNECT_TIMEOUT_S:g} s: {_tail(stderr)}") from None
                time.sleep(0.05)

    def _collect(self, proc: subprocess.Popen, link, timeout_s: float, stated_timeout_s: float) -> str:
        """Read the console until the report is complete and QEMU exited (or the timeout)."""
        what = f"QEMU {self.machine}"
        try:
            port = link if self.console == "uart" else PipeConsole(proc.stdout)
            console = read_until_report(port, max(timeout_s, 0.0), what=what,
                                        still_running=lambda: proc.poll() is None,
                                        stated_timeout_s=stated_timeout_s)
            try:
                proc.wait(EXIT_GRACE_S)
            except subprocess.TimeoutExpired:
                pass  # a wfi-loop firmware: the report is complete, stop_process_group ends QEMU
            # whatever QEMU flushed between the report's end and its exit
            return console + decode_console(_drain(port))
        finally:
            link.close()


def _drain(port, limit_bytes: int = 64 << 10, limit_s: float = 1.0) -> bytes:
    """What the port still holds once the report is in (the socket closes when QEMU exits);
    bounded, since a firmware may keep printing after its report."""
    data = bytearray()
    deadline = time.monotonic() + limit_s
    while len(data) < limit_bytes and time.monotonic() < deadline:
        chunk = read_available(port, 4096)
        if not chunk:
            break
        data += chunk
    return bytes(data[:limit_bytes])


def _tail(handle, limit: int = 2000) -> str:
    handle.flush()
    handle.seek(0, 2)
    size = handle.tell()
    handle.seek(max(0, size - limit))
    text = handle.read().decode("utf-8", "replace")
    # QEMU's note that it waits for our connection is not news
    return "\n".join(line for line in text.splitlines()
                     if "waiting for connection" not in line).strip()
