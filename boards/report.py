"""Host parser of the firmware report protocol (docs/report-protocol.md, v1).

This is the only code that reads what a firmware prints, whatever ran it (QEMU, Unicorn, Renode, a
real board over serial), so every runner's console goes through `parse_report`. The host never
trusts a report without its CRCs: a truncated, garbled, CRC-failing or miscounted report raises
`ReportError`; a fault report raises `DeviceFaultError` with the registers. Both keep the raw
console text on the exception so nothing the device said is lost.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field

from edgekit.errors import DeviceFaultError, ReportError

BEGIN_MARKER = "@@EDGEKIT-BEGIN"
END_MARKER = "@@EDGEKIT-END"
FAULT_MARKER = "@@EDGEKIT-FAULT"
SUPPORTED_VERSIONS = ("v1",)

_RECORD_RE = re.compile(r"^([a-z0-9_]+)=([\x21-\x7e]*)$")
_END_RE = re.compile(r"^records=([0-9]{1,9}) crc32=([0-9a-f]{8})$")
#: a report integer: decimal ASCII digits, at most 20 of them (2^64 has 20); a longer one is
#: garbage, not a figure (and Python refuses to convert more than 4300 digits)
_INT_RE = re.compile(r"[0-9]{1,20}")
_HEX_RE = re.compile(r"^(?:[0-9a-f]{2})*$")
_CRC_RE = re.compile(r"^[0-9a-f]{8}$")
_REGISTER_RE = re.compile(r"^([a-z0-9_]+)=0x([0-9a-fA-F]{1,8})$")

#: records that must be present in every report (the protocol's example; the firmware always
#: knows these)
REQUIRED_KEYS = ("board", "payload", "stack_peak_bytes")


@dataclass(frozen=True)
class Report:
    """One accepted firmware report: its records, decoded outputs and the raw console text."""

    version: str
    records: dict[str, str]
    outputs: list[bytes]
    console: str = field(repr=False)

    @property
    def board(self) -> str:
        return self.records["board"]

    @property
    def payload(self) -> str:
        return self.records["payload"]

    def get_int(self, key: str) -> int | None:
        """The integer record `key`, or None when the firmware did not print it."""
        if key not in self.records:
            return None
        return _parse_int(key, self.records[key], self.console)

    def require_int(self, key: str) -> int:
        """The integer record `key`; a `ReportError` naming it when absent."""
        value = self.get_int(key)
        if value is None:
            raise ReportError(f"report has no '{key}' record", self.console)
        return value

    @property
    def stack_size_bytes(self) -> int:
        return self.require_int("stack_size_bytes")

    @property
    def stack_peak_bytes(self) -> int:
        return self.require_int("stack_peak_bytes")

    @property
    def arena_bytes(self) -> int | None:
        return self.get_int("arena_bytes")

    @property
    def arena_used_bytes(self) -> int | None:
        return self.get_int("arena_used_bytes")

    @property
    def cycles(self) -> int | None:
        """DWT cycles of the measured work; None where the board has no working DWT (emulators)."""
        return self.get_int("cycles")


def _parse_int(key: str, value: str, console: str) -> int:
    if not _INT_RE.fullmatch(value):
        shown = value if len(value) <= 40 else value[:37] + "..."
        raise ReportError(f"report record '{key}={shown}' is not a decimal integer of at most 20 "
                          "digits", console)
    return int(value)


def _shown(text: str, limit: int = 80) -> str:
    """`text` quoted for a message, cut to `limit` characters (a flood can make a line huge)."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


def _split_lines(text: str) -> list[str]:
    """Lines without their terminator; a `\\r` before the `\\n` is ignored (protocol rule)."""
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


def _crc_hex(data: str) -> str:
    return f"{zlib.crc32(data.encode('latin-1')) & 0xFFFFFFFF:08x}"


def parse_report(console_text: str) -> Report:
    """Parse and verify the report in `console_text` (the whole console log of one run).

    Boot noise before the last ``@@EDGEKIT-BEGIN`` and anything after the end sentinel are kept in
    the raw log but ignored. Raises `DeviceFaultError` for a fault report, `ReportError` for a
    missing, truncated, garbled, miscounted or CRC-failing report.
    """
    if FAULT_MARKER in console_text:
        raise _fault_error(console_text)

    start = console_text.rfind(BEGIN_MARKER)
    if start < 0:
        raise ReportError(
            f"no '{BEGIN_MARKER}' marker in the console output ({len(console_text)} characters): "
            "the firmware did not start its report", console_text)
    body = console_text[start:]
    lines = _split_lines(body)
    header = lines[0]
    version = header[len(BEGIN_MARKER):].strip()
    if version not in SUPPORTED_VERSIONS:
        raise ReportError(f"report version {_shown(version)} in line {_shown(header)} is not supported "
                          f"(this edgekit reads {', '.join(SUPPORTED_VERSIONS)})", console_text)

    end_index = next((i for i, line in enumerate(lines) if line.startswith(END_MARKER)), None)
    if end_index is None:
        raise ReportError(
            f"truncated report: no '{END_MARKER}' line after {_shown(header)} "
            f"({len(lines) - 1} lines received)", console_text)
    end_line = lines[end_index]
    end_fields = end_line[len(END_MARKER):].strip()
    if end_fields == "status=fault":
        raise _fault_error(console_text)
    match = _END_RE.match(end_fields)
    if not match:
        raise ReportError(f"garbled end line {_shown(end_line)}: expected "
                          f"'{END_MARKER} records=N crc32=XXXXXXXX'", console_text)
    declared_count, declared_crc = int(match.group(1)), match.group(2)

    record_lines = lines[1:end_index]
    records: dict[str, str] = {}
    for number, line in enumerate(record_lines, start=1):
        rec = _RECORD_RE.match(line)
        if not rec:
            raise ReportError(f"garbled report line {number}: {_shown(line)} is not 'key=value' "
                              "(key [a-z0-9_]+, value printable ASCII without spaces)", console_text)
        key, value = rec.groups()
        if key in records:
            raise ReportError(f"report line {number}: record '{key}' appears twice", console_text)
        records[key] = value

    if len(record_lines) != declared_count:
        raise ReportError(f"record count mismatch: end line says records={declared_count}, "
                          f"received {len(record_lines)} record lines", console_text)

    _check_report_crc(body, end_index, record_lines, header, declared_crc, console_text)

    for key in REQUIRED_KEYS:
        if key not in records:
            raise ReportError(f"report has no '{key}' record", console_text)
    outputs = _decode_outputs(records, console_text)
    report = Report(version=version, records=records, outputs=outputs, console=console_text)
    for key in ("stack_size_bytes", "stack_peak_bytes", "arena_bytes", "arena_used_bytes", "cycles"):
        report.get_int(key)  # validates every integer record the host relies on
    return report


def _check_report_crc(body: str, end_index: int, record_lines: list[str], header: str,
                      declared_crc: str, console_text: str) -> None:
    """Both the normalised text (lines ended by `\\n`) and the raw bytes (a firmware whose console
    driver adds `\\r` and also feeds it to the CRC) are accepted: each is a CRC over exactly what
    the firmware sent, so a corrupted byte fails both."""
    normalised = "".join(line + "\n" for line in [header, *record_lines])
    raw_lines = body.split("\n")[:end_index]
    raw = "".join(line + "\n" for line in raw_lines)
    if declared_crc in (_crc_hex(normalised), _crc_hex(raw)):
        return
    raise ReportError(f"report CRC mismatch: end line says crc32={declared_crc}, the received "
                      f"report hashes to {_crc_hex(normalised)}", console_text)


def _decode_hex_output(key: str, records: dict[str, str], console_text: str) -> bytes:
    value = records[key]
    if not _HEX_RE.match(value):
        raise ReportError(f"report record '{key}' is not lowercase hex with two digits per byte",
                          console_text)
    data = bytes.fromhex(value)
    crc_key = f"{key}_crc32"
    if crc_key not in records:
        raise ReportError(f"report has '{key}' but no '{crc_key}' record", console_text)
    declared = records[crc_key]
    if not _CRC_RE.match(declared):
        raise ReportError(f"report record '{crc_key}={declared}' is not 8 lowercase hex digits",
                          console_text)
    actual = f"{zlib.crc32(data) & 0xFFFFFFFF:08x}"
    if actual != declared:
        raise ReportError(f"output CRC mismatch on '{key}': report says {declared}, the "
                          f"{len(data)} received bytes hash to {actual}", console_text)
    return data


def _decode_outputs(records: dict[str, str], console_text: str) -> list[bytes]:
    if "output_count" in records:
        count = _parse_int("output_count", records["output_count"], console_text)
        outputs = []
        for index in range(count):
            key = f"output{index}"
            if key not in records:
                raise ReportError(f"report says output_count={count} but has no '{key}' record",
                                  console_text)
            outputs.append(_decode_hex_output(key, records, console_text))
        return outputs
    if "output" not in records:
        return []
    data = _decode_hex_output("output", records, console_text)
    if "output_bytes" in records:
        declared = _parse_int("output_bytes", records["output_bytes"], console_text)
        if declared != len(data):
            raise ReportError(f"report says output_bytes={declared} but 'output' holds "
                              f"{len(data)} bytes", console_text)
    return [data]


def _fault_error(console_text: str) -> DeviceFaultError:
    """Build the `DeviceFaultError` for a fault report, with whatever registers arrived."""
    start = console_text.rfind(FAULT_MARKER)
    if start < 0:  # an end line with status=fault but no fault header
        return DeviceFaultError("device reported a fault (status=fault) without fault registers",
                                console_text)
    lines = _split_lines(console_text[start:])
    header_fields = dict(_fields(lines[0][len(FAULT_MARKER):]))
    kind = header_fields.get("kind", "unknown")
    registers: dict[str, int] = {}
    complete = False
    for line in lines[1:]:
        if line.startswith(END_MARKER):
            complete = True
            break
        for token in line.split():
            reg = _REGISTER_RE.match(token)
            if reg:
                registers[reg.group(1)] = int(reg.group(2), 16)
    shown = " ".join(f"{name}=0x{value:08x}" for name, value in registers.items()
                     if name in ("pc", "lr", "cfsr", "hfsr", "mmfar", "bfar"))
    suffix = "" if complete else " (fault report truncated)"
    return DeviceFaultError(f"device fault: kind={kind} {shown}{suffix}".rstrip(), console_text,
                            registers)


def _fields(text: str) -> list[tuple[str, str]]:
    pairs = []
    for token in text.split():
        key, sep, value = token.partition("=")
        if sep:
            pairs.append((key, value))
    return pairs


def format_report(records: list[tuple[str, str]], version: str = "v1", newline: str = "\n") -> str:
    """Render records as a protocol report with correct count and CRC (the host side of the
    contract, for tests and fake devices; firmware does the same in C)."""
    head = f"{BEGIN_MARKER} {version}\n"
    lines = [f"{key}={value}\n" for key, value in records]
    crc = _crc_hex(head + "".join(lines))
    text = head + "".join(lines) + f"{END_MARKER} records={len(lines)} crc32={crc}\n"
    return text.replace("\n", newline)


def output_records(data: bytes, suffix: str = "") -> list[tuple[str, str]]:
    """The `output`/`output_crc32` records for `data` (see `format_report`)."""
    return [(f"output{suffix}", data.hex()),
            (f"output{suffix}_crc32", f"{zlib.crc32(data) & 0xFFFFFFFF:08x}")]
