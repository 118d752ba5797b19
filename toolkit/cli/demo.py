"""`edgekit demo`: the main job in one command on the default emulated board.

Builds the self-test firmware (an int8 convolution with a known answer) for mps2-an386, runs it
on QEMU and on Unicorn, and prints what each measured: flash, peak SRAM (static + painted stack),
arena use, exact instructions (Unicorn), and whether the output bytes match the host's answer.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from edgekit.cli.output import emit

NAME = "demo"
HELP = "build the self-test for an emulated board and measure it with QEMU and Unicorn"
DEFAULT_BOARD = "mps2-an386"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--board", default=DEFAULT_BOARD,
                        help=f"emulated board (or real board on its stand-in); default {DEFAULT_BOARD}")
    parser.add_argument("-o", "--output", metavar="DIR",
                        help="build directory to keep (default: a temporary one, removed after)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="S",
                        help="seconds per run (default 60)")


def _render(payload: dict) -> str:
    from edgekit.boards.runners.measure import render_measurement

    parts = [f"edgekit demo: self-test built for {payload['board']} in {payload['build_dir']}"]
    parts += [render_measurement(m) for m in payload["runs"]]
    for note in payload["skipped"]:
        parts.append(f"skipped: {note}")
    verdict = "all runs match the expected answer" if payload["ok"] else "SOMETHING IS WRONG (see above)"
    parts.append(f"result: {verdict}")
    return "\n\n".join(parts)


def _demo(board: str, build_dir: Path, timeout_s: float) -> dict:
    from edgekit.boards.runners.measure import measure, measurement_ok, resolve_firmware
    from edgekit.errors import RunnerUnavailableError
    from edgekit.firmware.build import build_selftest

    build_selftest(board, build_dir)
    firmware = resolve_firmware(build_dir, board)
    host = firmware.target.host
    runs, skipped = [], []
    for runner in ("qemu", "unicorn"):
        if (runner == "qemu" and not host.emulation.qemu_machine) or \
                (runner == "unicorn" and not host.emulation.unicorn):
            skipped.append(f"{runner}: {host.id} has no {runner} model")
            continue
        try:
            runs.append(measure(firmware, runner, timeout_s=timeout_s))
        except RunnerUnavailableError as err:
            skipped.append(f"{runner}: {err}")
    ok = bool(runs) and all(measurement_ok(m) and m["expected_ok"] and m["fits"] for m in runs)
    unicorn = [m for m in runs if m["runner"] == "unicorn"]
    if unicorn and unicorn[0]["stack_peak_hooked_bytes"] != unicorn[0]["stack_peak_bytes"]:
        ok = False
    return {"board": board, "build_dir": str(build_dir), "runs": runs, "skipped": skipped, "ok": ok}


def run(args: argparse.Namespace) -> int:
    if args.output:
        payload = _demo(args.board, Path(args.output), args.timeout)
    else:
        with tempfile.TemporaryDirectory(prefix="edgekit-demo-") as tmp:
            payload = _demo(args.board, Path(tmp), args.timeout)
            payload["build_dir"] += " (temporary, removed)"
    emit(args, NAME, payload, _render)
    return 0 if payload["ok"] else 1
