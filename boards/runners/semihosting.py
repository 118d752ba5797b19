"""The Arm semihosting calls an edgekit firmware makes (``bkpt 0xab``, op in r0, argument in r1),
served for the Unicorn runner (QEMU serves them itself with ``-semihosting-config``).

Only console output and exit are needed: SYS_WRITEC, SYS_WRITE0, SYS_WRITE (to the console
handle), SYS_OPEN of ``:tt``, SYS_ISTTY, SYS_CLOSE, SYS_ERRNO, SYS_EXIT and SYS_EXIT_EXTENDED.
An op outside that list is a `RunnerError` naming it rather than a silent wrong answer.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable

from edgekit.errors import RunnerError

SYS_OPEN, SYS_CLOSE, SYS_WRITEC, SYS_WRITE0, SYS_WRITE = 0x01, 0x02, 0x03, 0x04, 0x05
SYS_ISTTY, SYS_ERRNO, SYS_EXIT, SYS_EXIT_EXTENDED = 0x09, 0x13, 0x18, 0x20
#: the SYS_EXIT reason of a normal end (QEMU maps it to exit status 0, anything else to 1)
ADP_STOPPED_APPLICATION_EXIT = 0x20026
_CONSOLE_HANDLE = 1
_MAX_STRING = 1 << 16


@dataclass
class SemihostingResult:
    """What one call did: the value for r0, and the exit status when the firmware exited."""

    r0: int = 0
    exit_code: int | None = None


class Semihosting:
    """Serve semihosting ops; `read_memory(address, size) -> bytes` reads guest memory."""

    def __init__(self, read_memory: Callable[[int, int], bytes], emit: Callable[[bytes], None]):
        self.read_memory = read_memory
        self.emit = emit

    def _words(self, address: int, count: int) -> tuple[int, ...]:
        return struct.unpack(f"<{count}I", self.read_memory(address, 4 * count))

    def _c_string(self, address: int) -> bytes:
        out = bytearray()
        while len(out) < _MAX_STRING:
            chunk = self.read_memory(address + len(out), 64)
            end = chunk.find(0)
            if end >= 0:
                return bytes(out + chunk[:end])
            out += chunk
        raise RunnerError(f"semihosting string at {address:#010x} has no terminator in {_MAX_STRING} bytes")

    def call(self, op: int, arg: int) -> SemihostingResult:
        """Perform op `op` with r1 = `arg`."""
        if op == SYS_WRITEC:
            self.emit(self.read_memory(arg, 1))
        elif op == SYS_WRITE0:
            self.emit(self._c_string(arg))
        elif op == SYS_WRITE:
            handle, buffer, length = self._words(arg, 3)
            if handle != _CONSOLE_HANDLE:
                raise RunnerError(f"semihosting SYS_WRITE to handle {handle}: only the console "
                                  f"(':tt', handle {_CONSOLE_HANDLE}) is served")
            self.emit(self.read_memory(buffer, length))
            return SemihostingResult(r0=0)  # bytes NOT written
        elif op == SYS_OPEN:
            name_ptr, _mode, _length = self._words(arg, 3)
            name = self._c_string(name_ptr)
            if name != b":tt":
                raise RunnerError(f"semihosting SYS_OPEN of {name!r}: only ':tt' is served")
            return SemihostingResult(r0=_CONSOLE_HANDLE)
        elif op == SYS_ISTTY:
            return SemihostingResult(r0=1)
        elif op in (SYS_CLOSE, SYS_ERRNO):
            return SemihostingResult(r0=0)
        elif op == SYS_EXIT:
            return SemihostingResult(exit_code=0 if arg == ADP_STOPPED_APPLICATION_EXIT else 1)
        elif op == SYS_EXIT_EXTENDED:
            reason, subcode = self._words(arg, 2)
            code = subcode if reason == ADP_STOPPED_APPLICATION_EXIT else 1
            return SemihostingResult(exit_code=code)
        else:
            raise RunnerError(f"semihosting op {op:#x} is not served by the Unicorn runner")
        return SemihostingResult(r0=0)
