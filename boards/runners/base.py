"""The one interface every runner implements: load an ELF, run it with a timeout, return what the
console said and what the runner could measure.

A runner builds nothing (the firmware is built before, by `edgekit build`), and it never parses
the report itself: the caller hands `RunResult.console` to `edgekit.boards.report.parse_report`,
so the report is read by one code path whatever ran it.
"""

from __future__ import annotations

import math
import os
import select
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import serial
from serial.urlhandler.protocol_socket import Serial as SerialSocket

from edgekit.boards.report import BEGIN_MARKER, END_MARKER, FAULT_MARKER
from edgekit.errors import RunnerTimeoutError, UsageError


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
    """True once the console holds a complete report or fault report (end line with newline).

    An end line that starts a line with no begin line before it also ends the read (a report
    whose begin line was garbled on the wire): the parser then rejects it at once, instead of
    the run waiting out its timeout for a begin line that will never come. The marker in the
    middle of a line of boot noise does not."""
    start = max(console.rfind(BEGIN_MARKER), console.rfind(FAULT_MARKER))
    if start >= 0:
        end = console.find(END_MARKER, start)
    else:
        end = console.find("\n" + END_MARKER)
    return end >= 0 and console.find("\n", end) >= 0


def decode_console(data: bytes) -> str:
    """Console bytes as text; latin-1 maps every byte, so boot noise never breaks decoding."""
    return data.decode("latin-1")


def check_elf(elf: Path) -> Path:
    """The ELF path, or a `FirmwareFormatError` naming it when it is missing or not a loadable
    Arm ELF (`elf_check.validate_elf`): refused before any emulator starts."""
    from edgekit.boards.runners.elf_check import validate_elf

    validate_elf(elf)
    return Path(elf)


#: longest `--timeout` accepted: a day; more is a typo, and no run should block a CI job for longer
MAX_TIMEOUT_S = 24 * 3600.0


def check_timeout(value, what: str = "--timeout") -> float:
    """`value` as seconds: a `UsageError` unless it is a finite number in (0, MAX_TIMEOUT_S]."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{what} {value!r} is not a number of seconds") from None
    if not math.isfinite(seconds) or seconds <= 0 or seconds > MAX_TIMEOUT_S:
        raise UsageError(f"{what} {value!r} must be a finite number of seconds above 0 and at most "
                         f"{MAX_TIMEOUT_S:g} (a day)")
    return seconds


class ConsoleBuffer:
    """The console of one run, bounded: the first `head_bytes` and the last `tail_bytes` are kept,
    and what lies between is cut (and said so in `text()`), so a firmware that floods its console
    cannot fill the host's memory. A report is a few KiB and the parser reads the last one, so
    the tail always holds it.

    `finished` turns True once a complete report or fault report arrived; it is re-checked only
    when an end sentinel has come in and a newline follows, so a flood costs no re-parsing.
    """

    def __init__(self, head_bytes: int = 64 << 10, tail_bytes: int = 1 << 20):
        self.head_bytes = head_bytes
        self.tail_bytes = tail_bytes
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0
        self.finished = False
        self._end_pending = False
        self._end = END_MARKER.encode()
        self._recent = b""

    @property
    def cut_bytes(self) -> int:
        return self.total - len(self.head) - min(len(self.tail), self.tail_bytes)

    def append(self, data: bytes) -> None:
        if not data:
            return
        window = self._recent + data  # a sentinel may straddle two reads
        self._recent = window[-len(self._end):]
        self.total += len(data)
        room = self.head_bytes - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > 2 * self.tail_bytes:  # trim in large steps: amortised O(1)
                del self.tail[:len(self.tail) - self.tail_bytes]
        if self.finished:
            return
        if self._end in window:
            self._end_pending = True
        if self._end_pending and b"\n" in window:
            self.finished = report_finished(self.text())
            # an end line already closed by its newline can never complete a report later
            self._end_pending = not self.finished and self._end in window[window.rfind(b"\n"):]

    def text(self) -> str:
        """The console as text; a cut is marked by one line naming how many bytes were left out."""
        tail = self.tail[-self.tail_bytes:] if len(self.tail) > self.tail_bytes else self.tail
        cut = self.cut_bytes
        if cut <= 0:
            return decode_console(bytes(self.head + tail))
        marker = f"\n[edgekit: {cut} console bytes cut here; the first {len(self.head)} and " \
                 f"the last {len(tail)} are kept]\n"
        return decode_console(bytes(self.head)) + marker + decode_console(bytes(tail))


def read_until_report(port: ConsolePort, timeout_s: float, *, what: str,
                      still_running=lambda: True, chunk: int = 4096,
                      clock=time.monotonic, stated_timeout_s: float | None = None) -> str:
    """Read `port` until a complete report arrived, `still_running()` turns False, or the timeout.

    The deadline is checked after every read, so a console that never stops talking ends on
    time too; the text kept is bounded (`ConsoleBuffer`). `what` names the device in the timeout
    message, and `stated_timeout_s` (default `timeout_s`) the timeout it quotes (a runner that
    spent part of it starting the emulator passes what is left). On timeout raises
    `RunnerTimeoutError` carrying the console text received so far.
    """
    deadline = clock() + timeout_s
    stated = timeout_s if stated_timeout_s is None else stated_timeout_s
    console = ConsoleBuffer()
    while True:
        data = read_available(port, chunk)
        if data:
            console.append(data)
            if console.finished:
                return console.text()
        elif not still_running():
            return console.text()
        if clock() >= deadline:
            flood = f", {console.cut_bytes} of them cut" if console.cut_bytes else ""
            raise RunnerTimeoutError(
                f"{what} did not finish its report within {stated:g} s "
                f"({console.total} console bytes received{flood})", console.text())


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


class PipeConsole:
    """A child process's output pipe read as a `ConsolePort` (QEMU's semihosting console), so
    it goes through the same bounded, deadline-checked `read_until_report`."""

    def __init__(self, stream, timeout: float = 0.1):
        self.fd = stream.fileno()
        self.timeout = timeout
        self.eof = False

    @property
    def in_waiting(self) -> int:
        if self.eof:
            return 0
        ready, _, _ = select.select([self.fd], [], [], 0)
        return 1 << 16 if ready else 0

    def read(self, size: int = 1) -> bytes:
        if self.eof:
            time.sleep(self.timeout)  # the writer is gone; the caller's poll notices the exit
            return b""
        ready, _, _ = select.select([self.fd], [], [], self.timeout)
        if not ready:
            return b""
        data = os.read(self.fd, size)
        self.eof = not data
        return data

    def close(self) -> None:
        pass  # the pipe belongs to the process object


def _die_with_parent_hook():
    """A ``preexec_fn`` for Linux: the child gets SIGKILL when this process dies. A runner killed
    by its caller (a test timeout, SIGKILL) never gets to stop its emulator, whose own session
    keeps it away from the terminal's signals: without this it runs on, orphaned. None where
    ``prctl`` is missing (not Linux): `stop_process_group` still ends every run that ends normally.

    ``prctl`` is looked up here, in the parent: the child between fork and exec should only make
    system calls, not import modules."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def die_with_parent() -> None:
        prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        # The parent may have died between fork and the line above: then no signal will come.
        if os.getppid() != parent:
            os._exit(1)

    return die_with_parent


def start_emulator(cmd: list[str], **popen_kwargs) -> subprocess.Popen:
    """Start an emulator in its own process group (killed whole by `stop_process_group` when the
    run ends, helpers included) that also dies with this process."""
    return subprocess.Popen(cmd, start_new_session=True, preexec_fn=_die_with_parent_hook(),
                            **popen_kwargs)


def stop_process_group(proc: subprocess.Popen) -> None:
    """Kill `proc`'s process group (started with ``start_new_session=True``) if it still runs,
    and reap it: an emulator and anything it spawned end with the run."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
    proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


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
