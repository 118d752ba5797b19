"""Measure a built firmware on a runner: the figures `edgekit measure` and `edgekit demo` print.

Resolves what the user pointed at (an ELF, or a build directory with its manifest), runs it,
parses the report (the only code path that reads it, `edgekit.boards.report`), and combines
the device's figures with the ELF's sizes into one flat dict (see `MEASUREMENT_FIELDS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgekit.boards import Target, load_board, target_for
from edgekit.boards.report import parse_report
from edgekit.boards.runners import default_runner_name, make_runner
from edgekit.boards.runners.base import check_elf, check_timeout
from edgekit.boards.runners.limits import run_limits
from edgekit.boards.runners.manifest import read_manifest
from edgekit.errors import ReportError, UsageError

MANIFEST_NAME = "edgekit-build.json"
ELF_NAME = "firmware.elf"

#: the fields of a measurement, in the order the JSON lists them
MEASUREMENT_FIELDS = (
    "board", "host_board", "runner", "elf", "flash_bytes", "static_ram_bytes", "stack_peak_bytes",
    "peak_sram_bytes", "arena_bytes", "arena_used_bytes", "instructions", "cycles", "outputs",
    "crc_ok", "expected_ok", "fits", "board_flash_bytes", "board_sram_bytes", "exit_code",
    "stack_peak_hooked_bytes", "arena_used_hooked_bytes", "emulator_cycles", "latency_ms",
    # model builds (edgekit.firmware.estimate.compare_with_measurement); None otherwise
    "bit_exact", "estimate_peak_sram_bytes", "estimate_stack_bytes", "estimate_error",
)


@dataclass(frozen=True)
class Firmware:
    """A firmware to flash or measure: the ELF, its build manifest (if any) and its target."""

    elf: Path
    manifest: dict | None
    target: Target


def resolve_firmware(firmware: str | Path, board: str | None, *, hardware: bool | None = None) -> Firmware:
    """The ELF and target behind `firmware` (an ELF file, or a build directory holding
    ``firmware.elf`` and ``edgekit-build.json``). `board` defaults to the manifest's; a
    manifest for another board is refused. `hardware` resolves a real board for itself rather
    than its emulated stand-in (the serial runner); None takes the manifest's choice."""
    path = Path(firmware)
    if path.is_dir():
        elf, manifest_path = path / ELF_NAME, path / MANIFEST_NAME
        if not elf.is_file():
            raise UsageError(f"build directory {path} has no {ELF_NAME} (build it with `edgekit build`)")
    elif path.is_file():
        elf, manifest_path = path, path.parent / MANIFEST_NAME
    else:
        raise UsageError(f"firmware {path} does not exist (give an ELF or a build directory)")
    manifest = read_manifest(manifest_path) if manifest_path.is_file() else None
    if manifest is not None and manifest.get("elf", ELF_NAME) != elf.name:
        manifest = None  # the manifest describes another ELF in the same folder
    built_for = manifest.get("board") if manifest else None
    if board is None:
        if built_for is None:
            raise UsageError(f"no --board given and no {MANIFEST_NAME} beside {elf} to say which board")
        board = built_for
    elif built_for is not None and built_for != board:
        raise UsageError(f"{elf} was built for board {built_for!r}, not {board!r} "
                         f"(see {manifest_path})")
    built_emulated = manifest.get("emulated", True) if manifest else True
    emulated = built_emulated if hardware is None else not hardware
    if manifest is not None and built_emulated != emulated and load_board(board).kind == "real":
        where = "its emulated stand-in" if built_emulated else "the hardware"
        raise UsageError(f"{elf} was built for {where} of {board}; rebuild it "
                         f"{'with' if hardware else 'without'} --hardware")
    return Firmware(elf=elf, manifest=manifest, target=target_for(board, emulated=emulated))


def _expected_outputs(manifest: dict | None) -> list[bytes] | None:
    if not manifest or "expected_outputs" not in manifest:
        return None
    return [bytes.fromhex(h) for h in manifest["expected_outputs"]]


def _latency_ms(report, board) -> float | None:
    """DWT cycles at the clock the firmware reports it set (``clock_hz``), else the board's."""
    if report.cycles is None:
        return None
    clock_hz = report.get_int("clock_hz") or board.clock_hz
    return report.cycles * 1000.0 / clock_hz


def measure(firmware: Firmware, runner_name: str | None = None, *, timeout_s: float | None = None,
            port: str | None = None, flasher: str | None = None, reset: str = "auto",
            profile: bool = False) -> dict:
    """Run `firmware` on `runner_name` and return the measurement (`MEASUREMENT_FIELDS`).

    `timeout_s` None takes the default scaled from the manifest's work (`limits.run_limits`);
    Unicorn also stops at the instruction budget derived from it. The ELF is checked before
    any runner starts. A report the host cannot accept raises `ReportError` /
    `DeviceFaultError` with the console. `profile` (Unicorn only) adds ``profile``: per op
    instructions, MACs and instructions per MAC (`edgekit.boards.runners.profile`).
    """
    from edgekit.firmware.elf import sizes

    if timeout_s is not None:
        timeout_s = check_timeout(timeout_s)
    check_elf(firmware.elf)
    target = firmware.target
    name = runner_name or ("unicorn" if profile else default_runner_name(target))
    if profile and name != "unicorn":
        raise UsageError(f"--profile counts instructions per op on Unicorn only, not {name} (per-op"
                         " DWT cycles on a real board are not implemented)")
    limits = run_limits(firmware.manifest, name, timeout_s)
    runner = make_runner(target, name, port=port, flasher=flasher, reset=reset,
                         instruction_budget=limits.instruction_budget, budget_note=limits.note,
                         profile=profile)
    result = runner.run(firmware.elf, limits.timeout_s)
    report = parse_report(result.console)
    if report.board != target.board.id:
        raise ReportError(f"the device reports board={report.board}, but {firmware.elf} was "
                          f"measured as {target.board.id}", result.console)
    elf_sizes = sizes(firmware.elf)
    stack_peak = report.stack_peak_bytes
    peak_sram = elf_sizes.static_ram_bytes + stack_peak
    expected = _expected_outputs(firmware.manifest)
    board = target.board
    measured = {
        "board": board.id,
        "host_board": target.host.id,
        "runner": name,
        "elf": str(firmware.elf),
        "flash_bytes": elf_sizes.flash_bytes,
        "static_ram_bytes": elf_sizes.static_ram_bytes,
        "stack_peak_bytes": stack_peak,
        "peak_sram_bytes": peak_sram,
        "arena_bytes": report.arena_bytes,
        "arena_used_bytes": report.arena_used_bytes,
        "instructions": result.instructions,
        # only a real board's DWT gives cycles; an emulator's count (Renode models the DWT of a
        # hardware build) is the emulator's, never a latency figure
        # a DWT that reads 0 after the inference is not counting (locked, or not a real core):
        # no figure rather than a latency of 0 ms
        "cycles": (report.cycles or None) if name == "serial" else None,
        "latency_ms": _latency_ms(report, board) if name == "serial" and report.cycles else None,
        # Renode's stock platforms stub the DWT (it reads 0): no count rather than a false one
        "emulator_cycles": (report.cycles or None) if name != "serial" else None,
        "outputs": [o.hex() for o in report.outputs],
        "crc_ok": True,  # parse_report accepted both CRCs and the record count
        "expected_ok": None if expected is None else report.outputs == expected,
        "fits": peak_sram <= board.sram_bytes and elf_sizes.flash_bytes <= board.flash_bytes,
        "board_flash_bytes": board.flash_bytes,
        "board_sram_bytes": board.sram_bytes,
        "exit_code": result.exit_code,
        "stack_peak_hooked_bytes": result.stack_peak_hooked_bytes,
        "arena_used_hooked_bytes": result.arena_used_hooked_bytes,
    }
    from edgekit.firmware.estimate import compare_with_measurement

    measured.update(compare_with_measurement(firmware.manifest, measured))
    ordered = {key: measured[key] for key in MEASUREMENT_FIELDS}
    if profile:
        ordered["profile"] = _profile(firmware, result)
    return ordered


def _profile(firmware: Firmware, result) -> dict:
    from edgekit.boards.runners.profile import BEFORE_OPS, profile_rows

    counts = result.details.get("op_instructions") or {}
    if set(counts) <= {BEFORE_OPS}:
        raise UsageError(f"{firmware.elf} has no per-op functions (op000_...) to profile: profile a"
                         " model firmware built by this edgekit (`edgekit build`)")
    return profile_rows(counts, firmware.manifest)


def measurement_ok(measured: dict) -> bool:
    """True when the run is one to trust: known answer matched (where there is one) and a clean
    exit (where the runner sees one)."""
    return measured["expected_ok"] is not False and measured["exit_code"] in (0, None)


def render_measurement(measured: dict) -> str:
    """The readable form of one measurement."""
    def kib(value: int | None) -> str:
        return "n/a" if value is None else f"{value} B ({value / 1024:.1f} KiB)"

    host = "" if measured["host_board"] == measured["board"] else f" on stand-in {measured['host_board']}"
    lines = [f"{measured['board']}{host} via {measured['runner']}: {measured['elf']}",
             f"  flash:            {kib(measured['flash_bytes'])} of {kib(measured['board_flash_bytes'])}",
             f"  static RAM:       {kib(measured['static_ram_bytes'])}",
             f"  stack peak:       {kib(measured['stack_peak_bytes'])} (painted)"]
    if measured["stack_peak_hooked_bytes"] is not None:
        agree = "agrees" if measured["stack_peak_hooked_bytes"] == measured["stack_peak_bytes"] else "DIFFERS"
        lines.append(f"                    {measured['stack_peak_hooked_bytes']} B by Unicorn's own paint ({agree})")
    lines.append(f"  peak SRAM:        {kib(measured['peak_sram_bytes'])} of {kib(measured['board_sram_bytes'])}"
                 f" -> {'fits' if measured['fits'] else 'DOES NOT FIT'}")
    if measured["arena_bytes"] is not None:
        lines.append(f"  arena:            {measured['arena_used_bytes']} of {measured['arena_bytes']} B used")
    if measured["instructions"] is not None:
        lines.append(f"  instructions:     {measured['instructions']} (exact, Unicorn)")
    if measured["cycles"] is not None:
        latency = "" if measured.get("latency_ms") is None else f", {measured['latency_ms']:.3f} ms"
        lines.append(f"  cycles:           {measured['cycles']} (DWT{latency})")
    if measured.get("emulator_cycles") is not None:
        lines.append(f"  emulator cycles:  {measured['emulator_cycles']} ({measured['runner']}'s DWT model:"
                     " the emulator's count, not a latency)")
    if measured["runner"] == "serial" and measured["cycles"] is None:
        lines.append("  cycles:           none (the report's DWT count was 0 or absent: no latency)")
    elif measured["instructions"] is None and measured["cycles"] is None:
        lines.append("  latency:          not measured by this runner (use --runner unicorn or a real board)")
    outputs = ", ".join(f"{len(h) // 2} B" for h in measured["outputs"]) or "none"
    answer = {None: "no expected answer in the manifest", True: "matches the expected answer",
              False: "DIFFERS from the expected answer"}[measured["expected_ok"]]
    lines.append(f"  outputs:          {outputs}, CRC ok, {answer}")
    if measured.get("bit_exact") is not None:
        lines.append(f"  bit exact:        {'yes' if measured['bit_exact'] else 'NO'} (vs the reference"
                     " interpreter)")
    if measured.get("estimate_peak_sram_bytes") is not None:
        lines.append(f"  estimate:         peak SRAM {measured['estimate_peak_sram_bytes']} B, measured"
                     f" {measured['peak_sram_bytes']} B ({100 * measured['estimate_error']:+.2f}%)")
    if measured["exit_code"] not in (0, None):
        lines.append(f"  exit status:      {measured['exit_code']} (non-zero)")
    if measured.get("profile") is not None:
        from edgekit.boards.runners.profile import render_profile

        lines.append("  profile (instructions on Unicorn per op function):")
        lines.append(render_profile(measured["profile"]))
    return "\n".join(lines)
