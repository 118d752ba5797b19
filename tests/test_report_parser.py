"""The firmware report parser: accepts only complete reports whose count and CRCs match."""

from __future__ import annotations

import zlib

import pytest

from edgekit.boards.report import format_report, output_records, parse_report
from edgekit.errors import DeviceFaultError, ReportError

OUTPUT = bytes([0x0A, 0x0B, 0xFC, 0x80, 0x7F, 0x00])


def good_records(output: bytes = OUTPUT) -> list[tuple[str, str]]:
    return [
        ("board", "mps2-an386"),
        ("payload", "selftest"),
        ("stack_size_bytes", "8192"),
        ("stack_peak_bytes", "1234"),
        ("arena_bytes", "4096"),
        ("arena_used_bytes", "4000"),
        ("instructions_marker", "1"),
        ("output_bytes", str(len(output))),
        *output_records(output),
    ]


def good_report() -> str:
    return format_report(good_records())


def test_good_report_is_parsed() -> None:
    report = parse_report(good_report())
    assert report.board == "mps2-an386"
    assert report.payload == "selftest"
    assert report.stack_peak_bytes == 1234
    assert report.stack_size_bytes == 8192
    assert report.arena_bytes == 4096
    assert report.arena_used_bytes == 4000
    assert report.cycles is None
    assert report.outputs == [OUTPUT]


def test_crc_matches_the_protocol_definition() -> None:
    """Check the CRC rule independently of format_report: zlib crc32 over BEGIN..last record \\n."""
    body = "@@EDGEKIT-BEGIN v1\nboard=x\npayload=p\nstack_peak_bytes=5\n"
    crc = zlib.crc32(body.encode()) & 0xFFFFFFFF
    report = parse_report(body + f"@@EDGEKIT-END records=3 crc32={crc:08x}\n")
    assert report.stack_peak_bytes == 5
    with pytest.raises(ReportError, match="CRC mismatch"):
        parse_report(body + f"@@EDGEKIT-END records=3 crc32={crc ^ 1:08x}\n")


def test_boot_noise_before_marker_is_ignored_but_kept() -> None:
    noise = "\x00\xffboot v2.1\r\nclock ok\nhalf line "
    text = noise + good_report() + "trailing semihosting text\n"
    report = parse_report(text)
    assert report.outputs == [OUTPUT]
    assert report.console == text


def test_crlf_line_endings_are_accepted() -> None:
    report = parse_report(format_report(good_records(), newline="\r\n"))
    assert report.stack_peak_bytes == 1234


def test_crlf_console_with_crc_over_lf_text() -> None:
    """A UART driver that turns \\n into \\r\\n after the firmware computed its CRC."""
    text = good_report().replace("\n", "\r\n")
    assert parse_report(text).outputs == [OUTPUT]


@pytest.mark.parametrize("cut", [20, 60, -40, -1 - len("@@EDGEKIT-END records=10 crc32=00000000\n")])
def test_truncated_report_is_rejected_with_console(cut: int) -> None:
    text = good_report()[:cut]
    with pytest.raises(ReportError) as info:
        parse_report(text)
    assert "truncated" in str(info.value)
    assert info.value.console == text


def test_cut_end_line_is_rejected() -> None:
    text = good_report()[:-5]
    with pytest.raises(ReportError, match="garbled end line"):
        parse_report(text)


def test_missing_begin_marker() -> None:
    with pytest.raises(ReportError, match="no '@@EDGEKIT-BEGIN'"):
        parse_report("hello world\n")


def test_garbled_line_is_rejected() -> None:
    text = good_report().replace("arena_bytes=4096", "arena_b#tes=4096")
    with pytest.raises(ReportError, match=r"garbled report line 5: 'arena_b#tes=4096'") as info:
        parse_report(text)
    assert info.value.console == text


def test_value_with_space_is_garbled() -> None:
    text = good_report().replace("payload=selftest", "payload=self test")
    with pytest.raises(ReportError, match="garbled"):
        parse_report(text)


def test_single_flipped_byte_fails_crc() -> None:
    text = good_report().replace("stack_peak_bytes=1234", "stack_peak_bytes=1284")
    with pytest.raises(ReportError, match="CRC mismatch") as info:
        parse_report(text)
    assert info.value.console == text


def test_output_crc_mismatch() -> None:
    records = good_records()
    records = [(k, "00000000") if k == "output_crc32" else (k, v) for k, v in records]
    with pytest.raises(ReportError, match="output CRC mismatch on 'output'"):
        parse_report(format_report(records))


def test_output_bytes_mismatch() -> None:
    records = [(k, "99") if k == "output_bytes" else (k, v) for k, v in good_records()]
    with pytest.raises(ReportError, match="output_bytes=99"):
        parse_report(format_report(records))


def test_record_count_mismatch() -> None:
    text = good_report()
    lines = text.splitlines(keepends=True)
    # drop one record and fix nothing else: count mismatch is detected before the CRC
    tampered = "".join(lines[:3] + lines[4:])
    with pytest.raises(ReportError, match="record count mismatch: end line says records=10, received 9"):
        parse_report(tampered)


def test_duplicate_record() -> None:
    records = good_records() + [("board", "other")]
    with pytest.raises(ReportError, match="'board' appears twice"):
        parse_report(format_report(records))


def test_non_integer_value() -> None:
    records = [(k, "12x") if k == "stack_peak_bytes" else (k, v) for k, v in good_records()]
    with pytest.raises(ReportError, match="stack_peak_bytes=12x"):
        parse_report(format_report(records))


def test_unsupported_version() -> None:
    with pytest.raises(ReportError, match="'v2'"):
        parse_report(format_report(good_records(), version="v2"))


def test_several_outputs() -> None:
    first, second = b"\x01\x02", b"\xff"
    records = [("board", "b"), ("payload", "p"), ("stack_peak_bytes", "1"), ("output_count", "2"),
               *output_records(first, "0"), *output_records(second, "1")]
    assert parse_report(format_report(records)).outputs == [first, second]
    with pytest.raises(ReportError, match="no 'output1'"):
        parse_report(format_report(records[:-2]))


def test_cycles_record() -> None:
    report = parse_report(format_report(good_records() + [("cycles", "123456")]))
    assert report.cycles == 123456


FAULT = (
    "boot\r\n@@EDGEKIT-BEGIN v1\nboard=mps2-an386\n"
    "@@EDGEKIT-FAULT kind=hardfault\r\n"
    "r0=0x00000001 r1=0x20000000 r2=0x00000000 r3=0xdeadbeef r12=0x00000000 lr=0x00000215 "
    "pc=0x00000340 xpsr=0x21000000 cfsr=0x00008200 hfsr=0x40000000 mmfar=0x00000000 bfar=0xe0000000\r\n"
    "@@EDGEKIT-END status=fault\r\n"
)


def test_fault_report_raises_with_registers() -> None:
    with pytest.raises(DeviceFaultError) as info:
        parse_report(FAULT)
    err = info.value
    assert isinstance(err, ReportError)
    assert err.registers["pc"] == 0x340
    assert err.registers["r3"] == 0xDEADBEEF
    assert err.registers["cfsr"] == 0x8200
    assert len(err.registers) == 12
    assert "kind=hardfault" in str(err) and "pc=0x00000340" in str(err)
    assert err.console == FAULT


def test_truncated_fault_report_is_still_a_fault() -> None:
    text = FAULT[: FAULT.index("pc=")]
    with pytest.raises(DeviceFaultError, match="truncated") as info:
        parse_report(text)
    assert info.value.registers["lr"] == 0x215
    assert "pc" not in info.value.registers
