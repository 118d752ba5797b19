"""Flashers: put an ELF on a real board through a debug probe (pyOCD or OpenOCD).

A flasher only programs; the serial runner reads the console. The command runner is injectable
(`run_command`) so the tests drive a fake instead of a probe.
"""

from __future__ import annotations

import shutil
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from edgekit.errors import RunnerError, RunnerUnavailableError

#: how long programming may take before we call the probe stuck
FLASH_TIMEOUT_S = 180.0

CommandRunner = Callable[[Sequence[str], float], subprocess.CompletedProcess]


def run_subprocess(cmd: Sequence[str], timeout_s: float) -> subprocess.CompletedProcess:
    """Run `cmd`, capturing its output as text (the default `CommandRunner`)."""
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout_s, check=False)


@dataclass
class FlashResult:
    """What programming did: the command and the tail of its output."""

    command: list[str]
    output: str


class Flasher(ABC):
    """Programs an ELF into a board's flash and resets it."""

    name: str = ""
    executable: str = ""

    def __init__(self, *, run_command: CommandRunner = run_subprocess,
                 which: Callable[[str], str | None] = shutil.which):
        self.run_command = run_command
        self.which = which

    @abstractmethod
    def command(self, elf: Path) -> list[str]:
        """The command line that programs, verifies and resets."""

    def check_available(self) -> None:
        if self.which(self.executable) is None:
            raise RunnerUnavailableError(f"{self.executable} is not on PATH: cannot flash with {self.name}")

    def flash(self, elf: Path) -> FlashResult:
        """Program `elf`; a `RunnerError` with the tool's output when it fails."""
        self.check_available()
        cmd = self.command(Path(elf))
        try:
            done = self.run_command(cmd, FLASH_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise RunnerError(f"{self.name} did not finish programming {elf} within "
                              f"{FLASH_TIMEOUT_S:g} s: {' '.join(cmd)}") from None
        output = ((done.stdout or "") + (done.stderr or "")).strip()
        if done.returncode != 0:
            raise RunnerError(f"{self.name} failed (status {done.returncode}) programming {elf}: "
                              f"{' '.join(cmd)}\n{output[-2000:]}")
        return FlashResult(command=cmd, output=output[-2000:])


class PyOcdFlasher(Flasher):
    """``pyocd flash -t TARGET ELF`` (pyOCD resets the target after programming)."""

    name = "pyocd"
    executable = "pyocd"

    def __init__(self, target: str, *, probe_uid: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.target = target
        self.probe_uid = probe_uid

    def command(self, elf: Path) -> list[str]:
        cmd = [self.executable, "flash", "-t", self.target]
        if self.probe_uid:
            cmd += ["-u", self.probe_uid]
        return cmd + [str(elf)]


class OpenOcdFlasher(Flasher):
    """``openocd -f CFG... -c "program ELF verify reset exit"``."""

    name = "openocd"
    executable = "openocd"

    def __init__(self, configs: Sequence[str], **kwargs):
        super().__init__(**kwargs)
        if not configs:
            raise RunnerError("OpenOCD needs at least one configuration file (-f)")
        self.configs = tuple(configs)

    def command(self, elf: Path) -> list[str]:
        cmd = [self.executable]
        for config in self.configs:
            cmd += ["-f", config]
        # OpenOCD parses -c as Tcl: braces keep a path with spaces one word
        return cmd + ["-c", f"program {{{elf}}} verify reset exit"]


def flasher_for(board, prefer: str | None = None, **kwargs) -> Flasher:
    """The flasher for a real board (`edgekit.boards.Board`): `prefer` ('pyocd' or 'openocd'),
    else pyOCD when the board names a target and pyocd is installed, else OpenOCD."""
    spec = board.flasher
    if spec is None:
        raise RunnerError(f"board {board.id} has no flasher section (is it an emulated board?)")
    which = kwargs.get("which", shutil.which)
    candidates = []
    if spec.pyocd_target:
        candidates.append(("pyocd", lambda: PyOcdFlasher(spec.pyocd_target, **kwargs)))
    if spec.openocd_config:
        candidates.append(("openocd", lambda: OpenOcdFlasher(spec.openocd_config, **kwargs)))
    if prefer is not None:
        for name, make in candidates:
            if name == prefer:
                return make()
        raise RunnerError(f"board {board.id} has no {prefer} settings in its flasher section "
                          f"(it has: {', '.join(n for n, _ in candidates) or 'none'})")
    for name, make in candidates:
        if which(name) is not None:
            return make()
    raise RunnerUnavailableError(f"neither pyocd nor openocd is on PATH to flash board {board.id}")
