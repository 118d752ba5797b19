"""Runners that always end, and inputs that never traceback: console floods, silence, faults and
infinite loops on every runner end at the timeout (plus a little slack) with a clean error;
bad ELFs, manifests, timeouts, reports and board files are refused with an `EdgekitError`
naming the file. The firmwares are the hand-written ones of `tiny_firmware` (a few hundred
bytes each), every run is bounded by a 2 s timeout, and the fuzz loops are seeded.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgekit.boards import BOARDS_DIR, load_board, load_board_file
from edgekit.boards.report import format_report, output_records, parse_report
from edgekit.boards.runners.base import ConsoleBuffer, check_timeout, read_until_report
from edgekit.boards.runners.elf_check import validate_elf
from edgekit.boards.runners.limits import DEFAULT_TIMEOUT_S, instruction_bound, run_limits
from edgekit.boards.runners.manifest import read_manifest
from edgekit.boards.target import resolve_target
from edgekit.cli import main
from edgekit.errors import (BoardError, DeviceFaultError, FirmwareFormatError, ReportError,
                            RunnerTimeoutError, UsageError)
from tiny_firmware import build_tiny, write_minimal_elf

#: how far past its timeout a run may end (process start-up and kill, on a loaded 2-core host)
SLACK_S = 2.0
TIMEOUT_S = 2.0
HAVE_QEMU = shutil.which("qemu-system-arm") is not None
needs_qemu = pytest.mark.skipif(not HAVE_QEMU, reason="qemu-system-arm is not installed")

REPORT = format_report([("board", "mps2-an386"), ("payload", "selftest"),
                        ("stack_peak_bytes", "200"), ("arena_bytes", "4096"),
                        ("output_count", "2"), *output_records(b"\x01\x02\x03", "0"),
                        *output_records(b"\xff\x00", "1")])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """The tiny firmwares, assembled once (skips without arm-none-eabi-gcc)."""
    directory = tmp_path_factory.mktemp("tiny")
    return {name: build_tiny(directory, name)
            for name in ("exit", "forever", "fault", "flood", "silent", "semiflood")}


def _timed(call):
    started = time.monotonic()
    try:
        call()
    except Exception as err:  # noqa: BLE001 -- the caller asserts on the kind
        return err, time.monotonic() - started
    return None, time.monotonic() - started


# --- the console buffer and the read loop --------------------------------------------------------

def test_console_buffer_keeps_head_and_tail_of_a_flood_and_says_so() -> None:
    console = ConsoleBuffer(head_bytes=1000, tail_bytes=5000)
    console.append(b"boot\n")
    for _ in range(2000):
        console.append(b"x" * 4096)
    console.append(REPORT.encode())
    assert console.total == 5 + 2000 * 4096 + len(REPORT)
    assert len(console.head) == 1000 and len(console.tail) <= 2 * 5000
    text = console.text()
    assert len(text) < 1000 + 5000 + 200
    assert text.startswith("boot\n") and "console bytes cut here" in text
    assert console.finished
    assert parse_report(text).outputs == [b"\x01\x02\x03", b"\xff\x00"]


@pytest.mark.parametrize("chunk", [1, 3, 13, 4096])
def test_console_buffer_sees_the_report_end_whatever_the_chunking(chunk: int) -> None:
    data = ("noise @@EDGEKIT-END\n" + REPORT).encode()
    console = ConsoleBuffer()
    for start in range(0, len(data), chunk):
        assert not console.finished  # never before the last newline
        console.append(data[start:start + chunk])
    assert console.finished and console.text() == data.decode()


class FloodPort:
    """A serial port that always has more to say."""

    timeout = 0.01

    def __init__(self, line: bytes = b"x" * 63 + b"\n"):
        self.line = line
        self.reads = 0

    @property
    def in_waiting(self) -> int:
        return 1 << 16

    def read(self, size: int = 1) -> bytes:
        self.reads += 1
        return (self.line * (size // len(self.line) + 1))[:size]

    def close(self) -> None:
        pass


@pytest.mark.parametrize("line", [b"x" * 63 + b"\n", b"@@EDGEKIT-BEGIN v1\n"])
def test_read_loop_ends_on_time_under_a_flood(line: bytes) -> None:
    port = FloodPort(line)
    err, elapsed = _timed(lambda: read_until_report(port, 1.0, what="flood"))
    assert isinstance(err, RunnerTimeoutError), err
    assert 1.0 <= elapsed < 1.0 + SLACK_S
    assert port.reads > 10 and "cut" in str(err)
    assert len(err.console) < 2 << 20  # bounded, although megabytes arrived


def test_read_loop_ends_at_once_on_a_flood_of_end_lines() -> None:
    """End lines with no begin line finish the read (the parser then refuses the report)."""
    port = FloodPort(b"@@EDGEKIT-END records=1 crc32=00000000\n")
    started = time.monotonic()
    console = read_until_report(port, 5.0, what="flood")
    assert "@@EDGEKIT-END" in console and time.monotonic() - started < 1.0


def test_serial_runner_ends_on_time_under_a_flood(tmp_path: Path) -> None:
    from edgekit.boards.runners.serial_runner import SerialRunner

    runner = SerialRunner("socket://flood", open_port=lambda url, baud: FloodPort())
    err, elapsed = _timed(lambda: runner.run(write_minimal_elf(tmp_path / "f.elf"), TIMEOUT_S))
    assert isinstance(err, RunnerTimeoutError), err
    assert elapsed < TIMEOUT_S + SLACK_S


# --- --timeout -----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1", "1e9", "abc", ""])
def test_bad_timeouts_are_usage_errors(value: str, tmp_path: Path, capsys) -> None:
    with pytest.raises(UsageError, match="--timeout"):
        check_timeout(value)
    elf = write_minimal_elf(tmp_path / "f.elf")
    for json_flag in ([], ["--json"]):
        assert main(["measure", *json_flag, "--board", "mps2-an386", f"--timeout={value}", str(elf)]) == 2
        assert "--timeout" in capsys.readouterr().err or json_flag


def test_good_timeouts_pass() -> None:
    assert check_timeout("2") == 2.0
    assert check_timeout(0.5) == 0.5


# --- ELF validation ------------------------------------------------------------------------------

def _sectioned_elf(path: Path, section_offset: int, section_size: int) -> Path:
    """The minimal ELF plus a section header table whose one PROGBITS section lies at the given
    place (beyond the file when the test wants it)."""
    write_minimal_elf(path)
    data = bytearray(path.read_bytes())
    shoff = len(data)
    data += bytes(40)  # the null section
    data += struct.pack("<IIIIIIIIII", 0, 1, 2, 0, section_offset, section_size, 0, 0, 4, 0)
    struct.pack_into("<I", data, 32, shoff)
    struct.pack_into("<HHH", data, 46, 40, 2, 0)
    path.write_bytes(bytes(data))
    return path


BAD_ELFS = {
    "magic only": (lambda p: p.write_bytes(b"\x7fELF"), "truncated ELF header"),
    "not an ELF": (lambda p: p.write_bytes(b"MZ" + bytes(100)), "not an ELF"),
    "64-bit": (lambda p: p.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(100)), "32-bit"),
    "big-endian": (lambda p: p.write_bytes(b"\x7fELF\x01\x02\x01" + bytes(100)), "little-endian"),
    "x86-64 machine": (lambda p: write_minimal_elf(p, machine=62), "EM_X86_64"),
    "truncated segment": (lambda p: p.write_bytes(write_minimal_elf(p).read_bytes()[:-4]),
                          "past the end of the file"),
    "no loadable segment": (lambda p: p.write_bytes(_patched(write_minimal_elf(p), 52, b"\x06\0\0\0")),
                            "no loadable segment"),
    "entry outside": (lambda p: p.write_bytes(_patched(write_minimal_elf(p), 24, b"\x01\0\0\x30")),
                      "entry point 0x30000001 lies outside"),
    "section beyond file": (lambda p: _sectioned_elf(p, 1 << 20, 64), "section 1"),
}


def _patched(path: Path, offset: int, data: bytes) -> bytes:
    raw = bytearray(path.read_bytes())
    raw[offset:offset + len(data)] = data
    return bytes(raw)


@pytest.mark.parametrize("case", sorted(BAD_ELFS))
def test_bad_elfs_are_refused_naming_the_file(case: str, tmp_path: Path) -> None:
    make, message = BAD_ELFS[case]
    path = tmp_path / "bad.elf"
    make(path)
    with pytest.raises(FirmwareFormatError, match=message) as info:
        validate_elf(path)
    assert str(path) in str(info.value)


def test_minimal_and_tiny_elfs_pass(tiny, tmp_path: Path) -> None:
    assert validate_elf(write_minimal_elf(tmp_path / "ok.elf")).entry == 9
    for elf in tiny.values():
        validate_elf(elf)


def test_elf_fuzz_only_format_errors(tiny, tmp_path: Path) -> None:
    """Seeded byte flips and truncations of a gcc-built tiny ELF: the check and the Unicorn
    loader accept it or raise FirmwareFormatError, nothing else."""
    from edgekit.boards.runners.unicorn_runner import read_elf

    base = tiny["exit"].read_bytes()
    rng = random.Random(15)
    path = tmp_path / "fuzz.elf"
    outcomes = {"accepted": 0, "refused": 0}
    for _ in range(1500):
        data = bytearray(base)
        if rng.random() < 0.3:
            data = data[:rng.randrange(len(data))]
        else:
            for _ in range(rng.randint(1, 6)):
                # most flips land in the headers, where the structure is
                where = rng.randrange(200) if rng.random() < 0.6 else rng.randrange(len(data))
                if where < len(data):
                    data[where] = rng.randrange(256)
        path.write_bytes(bytes(data))
        try:
            read_elf(path)
            outcomes["accepted"] += 1
        except FirmwareFormatError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 500 and outcomes["accepted"] > 100, outcomes


# --- the build manifest --------------------------------------------------------------------------

BAD_MANIFESTS = {
    "a list": ([{"board": "mps2-an386"}], "expected a JSON object, got list"),
    "garbage expected outputs": ({"board": "mps2-an386", "expected_outputs": ["zz"]},
                                 r"field expected_outputs\[0\]"),
    "expected outputs not a list": ({"board": "mps2-an386", "expected_outputs": "00"},
                                    "field expected_outputs"),
    "board a number": ({"board": 7}, "field board"),
    "emulated a string": ({"board": "mps2-an386", "emulated": "yes"}, "field emulated"),
    "elf a list": ({"board": "mps2-an386", "elf": ["firmware.elf"]}, "field elf"),
    "estimate a string": ({"board": "mps2-an386", "estimate": "big"}, "field estimate"),
    "estimate NaN": ({"board": "mps2-an386", "estimate": {"peak_sram_bytes": float("nan")}},
                     "field estimate.peak_sram_bytes"),
    "work negative": ({"board": "mps2-an386", "work": {"macs": -5}}, "field work.macs"),
    "work huge": ({"board": "mps2-an386", "work": {"macs": 10 ** 30}}, "field work.macs"),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_bad_manifests_are_refused_naming_file_and_field(case: str, tmp_path: Path, capsys) -> None:
    content, message = BAD_MANIFESTS[case]
    write_minimal_elf(tmp_path / "firmware.elf")
    manifest = tmp_path / "edgekit-build.json"
    manifest.write_text(json.dumps(content))
    with pytest.raises(FirmwareFormatError, match=message) as info:
        read_manifest(manifest)
    assert str(manifest) in str(info.value)
    assert main(["measure", "--timeout", "2", str(tmp_path)]) == 1
    assert str(manifest) in capsys.readouterr().err


@pytest.mark.parametrize("text", ["{", "[" * 100_000, '{"board": ' + "9" * 5000 + "}", "\udcff"])
def test_unparsable_manifests_are_format_errors(text: str, tmp_path: Path) -> None:
    manifest = tmp_path / "edgekit-build.json"
    manifest.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(FirmwareFormatError, match="cannot read build manifest"):
        read_manifest(manifest)


# --- default limits ------------------------------------------------------------------------------

def test_limits_scale_with_the_manifests_work() -> None:
    manifest = {"work": {"macs": 40_000_000, "elements": 2_000_000}}
    bound = instruction_bound(manifest)
    assert bound == 50_000_000 + 20 * 40_000_000 + 200 * 2_000_000
    unicorn = run_limits(manifest, "unicorn")
    assert unicorn.instruction_budget == bound and unicorn.timeout_s == DEFAULT_TIMEOUT_S + bound / 1e6
    qemu = run_limits(manifest, "qemu")
    assert qemu.instruction_budget is None and qemu.timeout_s == DEFAULT_TIMEOUT_S + bound / 1e7
    # an explicit timeout replaces the wall clock, not the budget
    assert run_limits(manifest, "unicorn", 5.0).timeout_s == 5.0
    assert run_limits(manifest, "unicorn", 5.0).instruction_budget == bound
    assert run_limits(None, "unicorn") == run_limits({}, "unicorn")
    assert run_limits(None, "qemu").timeout_s == DEFAULT_TIMEOUT_S


# --- every runner ends on time, whatever the firmware does ---------------------------------------

@needs_qemu
@pytest.mark.parametrize("variant", ["flood", "silent", "forever", "fault"])
def test_qemu_ends_on_time(variant: str, tiny) -> None:
    from edgekit.boards.runners.qemu import QemuRunner

    err, elapsed = _timed(lambda: QemuRunner("mps2-an386").run(tiny[variant], TIMEOUT_S))
    assert isinstance(err, RunnerTimeoutError), err
    assert elapsed < TIMEOUT_S + SLACK_S, elapsed
    assert f"within {TIMEOUT_S:g} s" in str(err)


@needs_qemu
def test_qemu_semihosting_console_flood_ends_on_time(tiny) -> None:
    from edgekit.boards.runners.qemu import QemuRunner

    runner = QemuRunner("mps2-an386", console="semihosting")
    err, elapsed = _timed(lambda: runner.run(tiny["semiflood"], TIMEOUT_S))
    assert isinstance(err, RunnerTimeoutError), err
    assert elapsed < TIMEOUT_S + SLACK_S
    assert err.console.startswith("semi\nsemi\n")


@needs_qemu
def test_qemu_dies_with_a_killed_caller(tiny, tmp_path: Path) -> None:
    """SIGKILL the process running QEMU (as a test timeout or a user does): no QEMU is left."""
    import signal
    import subprocess
    import sys

    script = ("import sys; from edgekit.boards.runners.qemu import QemuRunner; "
              "QemuRunner('mps2-an386').run(sys.argv[1], 600)")
    caller = subprocess.Popen([sys.executable, "-c", script, str(tiny["forever"])])
    children = Path(f"/proc/{caller.pid}/task/{caller.pid}/children")
    deadline = time.monotonic() + 60
    qemu_pids: list[int] = []
    while not qemu_pids and time.monotonic() < deadline and caller.poll() is None:
        time.sleep(0.1)
        qemu_pids = [int(p) for p in children.read_text().split()] if children.exists() else []
    assert qemu_pids, "QEMU did not start"
    caller.send_signal(signal.SIGKILL)
    caller.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_running(pid) for pid in qemu_pids):
        time.sleep(0.05)
    assert not any(_running(pid) for pid in qemu_pids), f"QEMU {qemu_pids} outlived its caller"


def test_an_emulator_orphaned_before_it_asks_for_the_signal_exits(tmp_path: Path) -> None:
    """The caller dies between fork and the child's PR_SET_PDEATHSIG (the race that once left a
    QEMU running after a SIGKILL): the kernel sends no signal then, so the child must see its
    new parent and exit before it runs the emulator."""
    from edgekit.boards.runners.base import _die_with_parent_hook

    if _die_with_parent_hook() is None:
        pytest.skip("no prctl on this platform")
    ran_on = tmp_path / "ran_on"
    script = f"""
import os, sys, time
from edgekit.boards.runners.base import _die_with_parent_hook
hook = _die_with_parent_hook()
parent = os.getpid()
child = os.fork()
if child == 0:
    while os.getppid() == parent:
        time.sleep(0.01)
    hook()
    open({str(ran_on)!r}, "w").close()
    os._exit(0)
print(child, flush=True)
os._exit(0)
"""
    caller = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True, timeout=60)
    orphan = int(caller.stdout)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _running(orphan):
        time.sleep(0.05)
    assert not _running(orphan), "the orphan is still running"
    assert not ran_on.exists(), "the orphan went on past the hook"


def _running(pid: int) -> bool:
    """`pid` exists and is not a zombie waiting for its (new) parent to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@needs_qemu
def test_qemu_exit_without_report_fails_at_once(tiny) -> None:
    from edgekit.boards.runners.qemu import QemuRunner

    err, elapsed = _timed(lambda: QemuRunner("mps2-an386").run(tiny["exit"], 30))
    assert isinstance(err, ReportError) and "exited with status 0 before" in str(err), err
    assert err.console == "hello\n" and elapsed < 10


@needs_qemu
@pytest.mark.parametrize("reset", [0x8, 0x3000_0001])
def test_qemu_refuses_an_image_that_cannot_start(reset: int, tmp_path: Path) -> None:
    """A reset vector without the Thumb bit, or outside the image: QEMU would lock up at once
    and wait out the timeout; it is refused before QEMU starts."""
    from edgekit.boards.runners.qemu import QemuRunner

    path = write_minimal_elf(tmp_path / "f.elf")
    path.write_bytes(_patched(path, 84 + 4, reset.to_bytes(4, "little")))
    validate_elf(path)  # structurally fine
    err, elapsed = _timed(lambda: QemuRunner("mps2-an386").run(path, 60))
    assert isinstance(err, FirmwareFormatError) and f"reset vector {reset:#010x}" in str(err), err
    assert elapsed < 1


@pytest.mark.parametrize("variant", ["flood", "silent", "forever", "semiflood"])
def test_unicorn_ends_on_time(variant: str, tiny) -> None:
    from edgekit.boards.runners import make_runner
    from edgekit.boards import target_for

    runner = make_runner(target_for("mps2-an386"), "unicorn")
    err, elapsed = _timed(lambda: runner.run(tiny[variant], TIMEOUT_S))
    assert isinstance(err, RunnerTimeoutError), err
    assert elapsed < TIMEOUT_S + SLACK_S, elapsed


def test_unicorn_fault_is_a_device_fault(tiny) -> None:
    from edgekit.boards import target_for
    from edgekit.boards.runners import make_runner

    err, elapsed = _timed(lambda: make_runner(target_for("mps2-an386"), "unicorn").run(tiny["fault"], 30))
    assert isinstance(err, DeviceFaultError) and err.console == "hello\n"
    assert elapsed < 10


def test_unicorn_instruction_budget_stops_at_the_same_point_every_time(tiny) -> None:
    from edgekit.boards import target_for
    from edgekit.boards.runners import make_runner

    stops = []
    for _ in range(2):
        runner = make_runner(target_for("mps2-an386"), "unicorn", instruction_budget=200_000,
                             budget_note="test budget")
        err, elapsed = _timed(lambda: runner.run(tiny["forever"], 60))
        assert isinstance(err, RunnerTimeoutError) and "budget of 200000 (test budget)" in str(err), err
        assert elapsed < 30
        stops.append(str(err))
    assert stops[0] == stops[1]  # "ran N instructions": the same N, whatever the load


def test_renode_runner_ends_on_time_under_a_flood(tmp_path: Path, monkeypatch) -> None:
    """Renode is absent here: a stand-in script serves the console socket the runner asks for
    and floods it, and never exits."""
    from edgekit.boards.runners.renode import RenodeRunner

    fake = tmp_path / "renode"
    fake.write_text(f"#!{sys.executable}\n" + r'''
import re, socket, sys
port = int(re.search(r"CreateServerSocketTerminal (\d+)", sys.argv[-1]).group(1))
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port))
server.listen(1)
conn, _ = server.accept()
while True:
    conn.sendall(b"x" * 4096)
''')
    fake.chmod(0o755)
    script = tmp_path / "board.resc"
    script.write_text('$uart?="sysbus.usart1"\n')
    runner = RenodeRunner(script, renode=str(fake))
    err, elapsed = _timed(lambda: runner.run(write_minimal_elf(tmp_path / "f.elf"), TIMEOUT_S))
    assert isinstance(err, RunnerTimeoutError), err
    assert elapsed < TIMEOUT_S + SLACK_S + 1.0  # + the stand-in's Python start-up


# --- the CLI: non-zero exit, a clean message, no traceback ---------------------------------------

def _cli(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    entry = "import sys; from edgekit.cli import main; sys.exit(main())"
    done = subprocess.run([sys.executable, "-c", entry, *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return done, time.monotonic() - started


@pytest.mark.parametrize("runner,json_flag", [("qemu", []), ("qemu", ["--json"]),
                                              ("unicorn", ["--json"])])
def test_cli_measure_on_a_flooding_firmware_ends_cleanly(runner, json_flag, tiny) -> None:
    if runner == "qemu" and not HAVE_QEMU:
        pytest.skip("qemu-system-arm is not installed")
    done, elapsed = _cli("measure", *json_flag, "--board", "mps2-an386", "--runner", runner,
                         "--timeout", "2", str(tiny["flood"]))
    assert done.returncode not in (0, None) and "Traceback" not in done.stderr + done.stdout
    assert "within 2 s" in done.stderr + done.stdout
    assert elapsed < 2 + SLACK_S + 2.0  # + interpreter start-up
    if json_flag:  # exactly one JSON object on stdout: the error, with its kind and message
        error = json.loads(done.stdout)["error"]
        assert error["kind"] == "RunnerTimeoutError" and "within 2 s" in error["message"]


@needs_qemu
def test_cli_measure_on_garbage_elf_fails_at_once(tmp_path: Path) -> None:
    elf = tmp_path / "magic.elf"
    elf.write_bytes(b"\x7fELF")
    done, elapsed = _cli("measure", "--board", "mps2-an386", "--runner", "qemu", str(elf))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"firmware file {elf}: truncated ELF header" in done.stderr
    assert elapsed < 10  # not the default timeout


# --- report parser fuzz --------------------------------------------------------------------------

def _mutations(base: bytes, rng: random.Random):
    inserts = [b"9" * 5000, b"\xb2", b"\xff\xfe", b"\n" * 3, b"@@EDGEKIT-BEGIN v1\n",
               b"@@EDGEKIT-END records=1 crc32=00000000\n", b"@@EDGEKIT-FAULT kind=hard\n",
               b"@@EDGEKIT-END status=fault\n", b"output_count=99999999999999999999\n", b"\r", b"\x00"]
    data = bytearray(base)
    kind = rng.randrange(5)
    if kind == 0:
        data = data[:rng.randrange(len(data))]
    elif kind == 1:
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 2:
        where = rng.randrange(len(data))
        data[where:where] = rng.choice(inserts)
    elif kind == 3:
        where = rng.randrange(len(data))
        del data[where:where + rng.randint(1, 40)]
    else:
        data = data * rng.randint(2, 50)  # repeated and huge
    return bytes(data)


def test_report_parser_fuzz_only_report_errors() -> None:
    base = ("boot noise\r\n" + REPORT).encode("latin-1")
    rng = random.Random(15)
    outcomes = {"accepted": 0, "refused": 0}
    started = time.monotonic()
    for _ in range(4000):
        text = _mutations(base, rng).decode("latin-1")  # the runners' decoding: any byte maps
        try:
            parse_report(text)
            outcomes["accepted"] += 1
        except ReportError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 2000 and outcomes["accepted"] > 50, outcomes
    assert time.monotonic() - started < 30


def test_report_with_huge_numbers_is_a_report_error() -> None:
    text = format_report([("board", "b"), ("payload", "p"), ("stack_peak_bytes", "9" * 5000)])
    with pytest.raises(ReportError, match="at most 20 digits"):
        parse_report(text)


# --- board file fuzz -----------------------------------------------------------------------------

_JUNK = [None, float("nan"), float("inf"), -1, 0, 2 ** 70, 1.5, True, "", "0x", "0xFFFFFFFFFFFF",
         "x" * 5000, [], {}, [1], {"a": 1}, "cortex-m4", "semihosting", "real", "mps2-an386"]


def _paths(node, prefix=()):
    if prefix:
        yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield from _paths(value, prefix + (key,))


def _mutate_board(doc, rng: random.Random):
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(list(_paths(doc)))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = rng.randrange(3)
        if action == 0:
            parent[path[-1]] = rng.choice(_JUNK)
        elif action == 1:
            del parent[path[-1]]
            return doc
        elif isinstance(parent, dict):
            parent["unexpected"] = 1
    return doc


def test_board_file_fuzz_only_board_errors_naming_the_file(tmp_path: Path) -> None:
    originals = [(p.stem, p.read_text()) for p in sorted(BOARDS_DIR.glob("*.json"))]
    rng = random.Random(15)
    outcomes = {"accepted": 0, "refused": 0}
    for _ in range(1500):
        board_id, text = rng.choice(originals)
        raw = json.dumps(_mutate_board(json.loads(text), rng)).encode()
        if rng.random() < 0.25:  # byte flips: broken JSON, bad UTF-8
            raw = bytearray(raw)
            for _ in range(rng.randint(1, 3)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
        path = tmp_path / f"{board_id}.json"
        path.write_bytes(bytes(raw))
        try:
            board = load_board_file(path)
            if board.kind == "real" and board.emulation.stand_in in [b for b, _ in originals]:
                resolve_target(board, load_board(board.emulation.stand_in))
            outcomes["accepted"] += 1
        except BoardError as err:
            outcomes["refused"] += 1
            assert str(path) in str(err) or "board " in str(err), err
    assert outcomes["refused"] > 1000 and outcomes["accepted"] > 20, outcomes


@pytest.mark.parametrize("field,value,message", [
    ("clock_hz", float("nan"), "field clock_hz: expected an integer"),
    ("clock_hz", 2 ** 40, "field clock_hz: value 0x10000000000 does not fit"),
    ("memory.flash.size", "0x" + "f" * 40, "field memory.flash.size"),
    ("console", None, "field console: expected an object"),
    ("memory.sram", [], "field memory.sram: expected a non-empty list"),
])
def test_board_file_errors_name_file_and_field(field: str, value, message: str, tmp_path: Path) -> None:
    doc = json.loads((BOARDS_DIR / "mps2-an386.json").read_text())
    parent = doc
    *parents, last = field.split(".")
    for key in parents:
        parent = parent[key]
    parent[last] = value
    path = tmp_path / "mps2-an386.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(BoardError, match=message) as info:
        load_board_file(path)
    assert str(path) in str(info.value)


def test_report_with_a_garbled_begin_line_ends_the_read_at_its_end_line() -> None:
    """The end line at the start of a line finishes the read without a begin line, so the parser
    rejects the report at once rather than the run waiting out its timeout."""
    garbled = REPORT.replace("@@EDGEKIT-BEGIN", "@@EDGEKIT-B\xffGIN", 1)
    assert "@@EDGEKIT-BEGIN" not in garbled
    console = ConsoleBuffer()
    console.append(garbled.encode("latin-1"))
    assert console.finished
