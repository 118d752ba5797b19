"""A fake real board on a pseudo-terminal, and fake probe tools on PATH, for the serial path.

`FakeSerialBoard` opens a pty pair: the runner opens the slave by its name (``/dev/pts/N``) with
pyserial exactly as it opens a board's ``/dev/ttyACM0``; after each reset the board writes its
console to the master. A reset is the file `reset_file` appearing (a fake probe tool creates it,
as a real probe resets the chip after programming) or `reset()`. A board given no console stays
silent.

`fake_tools(bin_dir, ...)` writes tiny ``pyocd``, ``openocd``, ``pio`` scripts that append their
argv (JSON, one line per call) to a log and create the reset file, so a test runs the real
command lines and checks exactly what would have been run.
"""

from __future__ import annotations

import json
import os
import select
import sys
import threading
import tty
from pathlib import Path

FAKE_TOOLS = ("pyocd", "openocd", "pio")
ARGV_LOG_ENV = "EDGEKIT_FAKE_ARGV_LOG"
RESET_FILE_ENV = "EDGEKIT_FAKE_RESET_FILE"


class FakeSerialBoard:
    """A board whose UART is a pseudo-terminal: writes `console` after every reset."""

    def __init__(self, console: bytes | None, *, reset_file: Path | None = None, chunk: int = 64):
        self.console = console
        self.reset_file = reset_file
        self.chunk = chunk
        self.resets = 0
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no newline translation: bytes pass as a UART's do
        self.port = os.ttyname(self._slave)
        self._reset = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "FakeSerialBoard":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        os.close(self._master)
        os.close(self._slave)

    def reset(self) -> None:
        self._reset.set()

    def _reset_requested(self) -> bool:
        if self._reset.is_set():
            self._reset.clear()
            return True
        if self.reset_file is not None and self.reset_file.exists():
            self.reset_file.unlink()
            return True
        return False

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._reset_requested():
                self._stop.wait(0.01)
                continue
            self.resets += 1
            if self.console:
                self._write(self.console)

    def _write(self, data: bytes) -> None:
        # in chunks, waiting for room: a reader that stops reading never blocks the thread's stop
        view = memoryview(data)
        while view and not self._stop.is_set():
            _, writable, _ = select.select([], [self._master], [], 0.05)
            if writable:
                view = view[os.write(self._master, view[:self.chunk]):]


def fake_tools(bin_dir: Path, tools=FAKE_TOOLS, returncode: int = 0) -> Path:
    """Write fake `tools` into `bin_dir` (put it first on PATH): each appends its argv to
    ``$EDGEKIT_FAKE_ARGV_LOG`` and creates ``$EDGEKIT_FAKE_RESET_FILE`` (the probe's reset)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for tool in tools:
        script = bin_dir / tool
        script.write_text(f"""#!{sys.executable}
import json, os, sys
with open(os.environ["{ARGV_LOG_ENV}"], "a") as log:
    log.write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + "\\n")
reset = os.environ.get("{RESET_FILE_ENV}")
if reset:
    open(reset, "w").close()
print("fake {tool}: done")
sys.exit({returncode})
""")
        script.chmod(0o755)
    return bin_dir


def logged_calls(log: Path) -> list[list[str]]:
    """The argv of every fake tool call, in order."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]
