"""Flashers: put an ELF on a real board through a debug probe (pyOCD, OpenOCD or PlatformIO).

A flasher programs and resets; the serial runner reads the console. pyOCD is driven through its
Python API when the package is installed (`pip install 'edgekit[hil]'`), else through its
``pyocd`` command; OpenOCD and PlatformIO (``pio run -t upload``) through their commands. The
command runner is injectable (`run_command`) so the tests drive a fake instead of a probe.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import subprocess
import sys
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
        return self._run_tool(self.command(Path(elf)), f"programming {elf}")

    def reset_command(self) -> list[str] | None:
        """The command line that only resets the target (None: this tool cannot)."""
        return None

    def reset(self) -> FlashResult:
        """Reset the target through the probe, without programming it."""
        self.check_available()
        cmd = self.reset_command()
        if cmd is None:
            raise RunnerError(f"{self.name} cannot reset a board on its own: use --reset dtr, or "
                              "press the board's reset button")
        return self._run_tool(cmd, "resetting the board")

    def _run_tool(self, cmd: list[str], doing: str) -> FlashResult:
        """Run the probe tool's `cmd`; a `RunnerError` with its output when it fails or hangs."""
        try:
            done = self.run_command(cmd, FLASH_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise RunnerError(f"{self.name} did not finish {doing} within {FLASH_TIMEOUT_S:g} s:"
                              f" {' '.join(cmd)}") from None
        output = ((done.stdout or "") + (done.stderr or "")).strip()
        if done.returncode != 0:
            raise RunnerError(f"{self.name} failed (status {done.returncode}) {doing}: "
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

    def reset_command(self) -> list[str]:
        cmd = [self.executable, "reset", "-t", self.target]
        return cmd + (["-u", self.probe_uid] if self.probe_uid else [])


def pyocd_api_installed() -> bool:
    """Whether the pyOCD package (not only a ``pyocd`` command) is importable here."""
    return importlib.util.find_spec("pyocd") is not None


class PyOcdApiFlasher(PyOcdFlasher):
    """pyOCD through its Python API: a session on the chosen probe, `FileProgrammer` for the
    ELF, then a reset. No subprocess, so a probe error arrives as pyOCD's own exception, which
    is turned into a `RunnerError` naming the target and probe."""

    name = "pyocd"

    def check_available(self) -> None:
        from edgekit.extras import require

        require("pyocd", extra="hil", purpose="flashing through pyOCD")

    def _session(self):
        from pyocd.core.helpers import ConnectHelper

        # pyOCD prints "No connected debug probes" on stdout: keep stdout for --json
        with contextlib.redirect_stdout(sys.stderr):
            session = ConnectHelper.session_with_chosen_probe(
                blocking=False, return_first=True, unique_id=self.probe_uid,
                target_override=self.target)
        if session is None:
            which = f"probe {self.probe_uid}" if self.probe_uid else "debug probe"
            raise RunnerError(f"pyOCD found no {which} for target {self.target}: is the board "
                              "plugged in, and may this user open it (udev rules)?")
        return session

    def _with_session(self, what: str, action) -> FlashResult:
        self.check_available()
        from pyocd.core.exceptions import Error as PyOcdError

        cmd = ["pyocd-api", what, "-t", self.target] + (["-u", self.probe_uid] if self.probe_uid else [])
        try:
            with self._session() as session:
                action(session)
        except PyOcdError as err:
            raise RunnerError(f"pyOCD failed to {what} target {self.target}: {err}") from None
        return FlashResult(command=cmd, output="")

    def flash(self, elf: Path) -> FlashResult:
        from pyocd.flash.file_programmer import FileProgrammer

        def program(session) -> None:
            FileProgrammer(session).program(str(elf), file_format="elf")
            session.target.reset()
        done = self._with_session("flash", program)
        done.command.append(str(elf))
        return done

    def reset(self) -> FlashResult:
        return self._with_session("reset", lambda session: session.target.reset())


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

    def reset_command(self) -> list[str]:
        cmd = [self.executable]
        for config in self.configs:
            cmd += ["-f", config]
        return cmd + ["-c", "init; reset run; shutdown"]


class PlatformIoFlasher(Flasher):
    """``pio run -d BUILD_DIR -e BOARD -t upload``: PlatformIO builds the build directory's
    ``platformio.ini`` project with the official platform's toolchain and uploads *that* image
    with the board's default upload protocol (ST-LINK, J-Link, picotool...), so the ELF it
    programs is PlatformIO's build of the same sources, not `elf` itself."""

    name = "pio"
    executable = "pio"

    def __init__(self, env: str, project_dir: Path | None = None, **kwargs):
        super().__init__(**kwargs)
        self.env = env
        self.project_dir = project_dir

    def check_available(self) -> None:
        if self.which("pio") is None and self.which("platformio") is not None:
            self.executable = "platformio"  # the older name of the same command
        super().check_available()

    def command(self, elf: Path) -> list[str]:
        project = Path(self.project_dir) if self.project_dir is not None else Path(elf).parent
        ini = project / "platformio.ini"
        if not ini.is_file():
            raise RunnerError(f"{project} has no platformio.ini to upload with PlatformIO "
                              "(give the build directory `edgekit build` wrote)")
        if f"[env:{self.env}]" not in ini.read_text(errors="replace"):
            raise RunnerError(f"{ini} has no [env:{self.env}] section: it was not written for "
                              f"board {self.env} (rebuild with --board {self.env} --hardware)")
        return [self.executable, "run", "-d", str(project), "-e", self.env, "-t", "upload"]


#: flasher names, in the order `flasher_for` tries them
FLASHER_NAMES = ("pyocd", "openocd", "pio")
#: what to install for each, in the error that says none is
INSTALL_HINTS = {
    "pyocd": "pip install 'edgekit[hil]' (pyOCD)",
    "openocd": "OpenOCD (apt install openocd)",
    "pio": "PlatformIO (pip install platformio)",
}


def flasher_for(board, prefer: str | None = None, *, pyocd_api: bool | None = None,
                project_dir: Path | None = None, **kwargs) -> Flasher:
    """The flasher for a real board (`edgekit.boards.Board`): `prefer` ('pyocd', 'openocd' or
    'pio'), else the first of `FLASHER_NAMES` that the board has settings for and that is
    installed. pyOCD goes through its Python API where the package imports (`pyocd_api`
    None detects it), else through the ``pyocd`` command. `project_dir` is the build
    directory PlatformIO uploads from (default: the ELF's folder)."""
    spec = board.flasher
    if spec is None:
        raise RunnerError(f"board {board.id} has no flasher section (is it an emulated board?)")
    which = kwargs.get("which", shutil.which)
    api = pyocd_api_installed() if pyocd_api is None else pyocd_api
    candidates = []
    if spec.pyocd_target:
        make_pyocd = PyOcdApiFlasher if api else PyOcdFlasher
        candidates.append(("pyocd", lambda: make_pyocd(spec.pyocd_target, **kwargs),
                           lambda: api or which("pyocd") is not None))
    if spec.openocd_config:
        candidates.append(("openocd", lambda: OpenOcdFlasher(spec.openocd_config, **kwargs),
                           lambda: which("openocd") is not None))
    if spec.platformio_board:
        candidates.append(("pio", lambda: PlatformIoFlasher(board.id, project_dir, **kwargs),
                           lambda: which("pio") is not None or which("platformio") is not None))
    if prefer is not None:
        for name, make, _ in candidates:
            if name == prefer:
                return make()
        raise RunnerError(f"board {board.id} has no {prefer} settings in its flasher section "
                          f"(it has: {', '.join(n for n, _, _ in candidates) or 'none'})")
    for _, make, installed in candidates:
        if installed():
            return make()
    hints = "; or ".join(INSTALL_HINTS[name] for name, _, _ in candidates)
    raise RunnerUnavailableError(f"no tool to flash board {board.id} is installed: install {hints} "
                                 "(or flash it yourself and pass --flasher none)")
