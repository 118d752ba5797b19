"""Renode runner: the board's `.resc` script (boards/renode/<board>.resc), console on a TCP
server socket read through pyserial's ``socket://`` URL (same path as QEMU and real boards).

Renode is in no package registry: install it from its official packages (https://renode.io),
or use the kit a CI machine keeps in ../shared/tools/renode. The binary is ``$RENODE`` when set,
else ``renode`` on PATH; without it this runner raises `RunnerUnavailableError` and its tests
skip with that reason.
Renode keeps running after the firmware ends (it has no semihosting exit), so the run ends when
the report is complete and the process is stopped. Renode's virtual time is not a latency figure
either; only a real board's DWT cycles are.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import serial

from edgekit.boards.runners.base import (RunResult, Runner, check_elf, open_emulator_console,
                                         read_until_report, start_emulator, stop_process_group)
from edgekit.boards.runners.qemu import free_tcp_port
from edgekit.errors import RunnerError, RunnerUnavailableError

RENODE_BINARY = "renode"
#: environment variable naming the Renode binary (a path, or a name on PATH)
RENODE_ENV = "RENODE"
SCRIPTS_DIR = Path(__file__).resolve().parent.parent / "renode"
#: Renode (a .NET program) takes a while to start and open the socket
CONNECT_TIMEOUT_S = 60.0
_UART_RE = re.compile(r'^\$uart\?="([^"]+)"', re.MULTILINE)


def script_for(board_id: str) -> Path:
    """The shipped `.resc` script of `board_id`; `RunnerError` listing those that exist."""
    path = SCRIPTS_DIR / f"{board_id}.resc"
    if not path.is_file():
        known = ", ".join(p.stem for p in sorted(SCRIPTS_DIR.glob("*.resc")))
        raise RunnerError(f"no Renode script for board {board_id!r} (scripts exist for: {known})")
    return path


def uart_of(script: Path) -> str:
    """The console peripheral a script declares with ``$uart?="sysbus.x"``."""
    match = _UART_RE.search(script.read_text(encoding="utf-8"))
    if not match:
        raise RunnerError(f"{script}: no '$uart?=\"sysbus...\"' line naming the console")
    return match.group(1)


def renode_binary() -> str:
    """The Renode binary to run: ``$RENODE`` when set, else ``renode``."""
    return os.environ.get(RENODE_ENV) or RENODE_BINARY


def find_renode() -> str | None:
    """The full path of the Renode binary, or None when there is none."""
    return shutil.which(renode_binary())


class RenodeRunner(Runner):
    """Run an ELF with Renode using a shipped board script."""

    name = "renode"

    def __init__(self, script: Path, *, renode: str | None = None):
        self.script = Path(script)
        self.renode = renode or renode_binary()

    @classmethod
    def for_board(cls, board_id: str) -> RenodeRunner:
        return cls(script_for(board_id))

    def check_available(self) -> None:
        if shutil.which(self.renode) is None:
            raise RunnerUnavailableError(
                f"Renode ({self.renode!r}) is not found: put `renode` on PATH or set {RENODE_ENV}="
                "/path/to/renode (install it from https://renode.io; see docs/real-boards.md)")

    def command(self, elf: Path, port: int) -> list[str]:
        """Renode headless: load the board script and serve its UART on `port`. The emulation is
        started later through the monitor (stdin), once we are connected: Renode's socket
        terminal does not keep what the firmware printed before a client connected."""
        commands = "; ".join([
            f"$elf=@{elf}",
            f"include @{self.script}",
            f'emulation CreateServerSocketTerminal {port} "edgekit_console" false',
            "connector Connect $uart edgekit_console",
        ])
        return [self.renode, "--disable-gui", "--console", "--plain", "-e", commands]

    def run(self, elf: Path, timeout_s: float) -> RunResult:
        elf = check_elf(elf).resolve()
        self.check_available()
        uart_of(self.script)  # fail early on a script without a console
        started = time.monotonic()
        port = free_tcp_port()
        cmd = self.command(elf, port)
        with tempfile.TemporaryFile() as log:
            proc = start_emulator(cmd, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT)
            try:
                link = self._connect(proc, port, log)
                try:
                    proc.stdin.write(b"start\n")
                    proc.stdin.flush()
                except OSError:  # BrokenPipeError: Renode died; the CLI must not read it as `| head`
                    raise RunnerError(f"Renode exited (status {proc.poll()}) before the emulation "
                                      "started") from None
                try:
                    console = read_until_report(link, timeout_s, what=f"Renode ({self.script.name})",
                                                still_running=lambda: proc.poll() is None)
                except RunnerError as err:
                    # what Renode logged (unmodelled registers, a CPU abort) says why
                    log.seek(0)
                    tail = log.read().decode("utf-8", "replace")[-2000:].rstrip()
                    err.args = (f"{err.args[0]}\n--- Renode log (last {len(tail)} characters) ---\n{tail}",
                                *err.args[1:])
                    raise
                finally:
                    link.close()
            finally:
                stop_process_group(proc)
        return RunResult(runner=self.name, console=console, exit_code=None,
                         wall_s=time.monotonic() - started,
                         details={"command": cmd, "port": port, "script": str(self.script)})

    def _connect(self, proc: subprocess.Popen, port: int, log):
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RunnerError(f"Renode exited with status {proc.returncode} before serving "
                                  f"the console: {log.read().decode('utf-8', 'replace')[-2000:]}")
            try:
                return open_emulator_console("127.0.0.1", port)
            except serial.SerialException:
                if time.monotonic() > deadline:
                    raise RunnerError(f"Renode did not open its console socket on port {port} "
                                      f"within {CONNECT_TIMEOUT_S:g} s") from None
                time.sleep(0.2)
