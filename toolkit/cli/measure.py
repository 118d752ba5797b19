"""`edgekit measure --board B FIRMWARE`: run a built firmware and report what it measured."""

from __future__ import annotations

import argparse

import json

from edgekit.atomic import atomic_writer, check_output_path
from edgekit.cli.output import emit
from edgekit.errors import ReportError, UsageError

NAME = "measure"
PROFILE_NAME = "profile.json"
HELP = "run a built firmware on an emulator or a board and report flash, peak SRAM, latency, outputs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from edgekit.boards.runners import RUNNER_NAMES

    parser.add_argument("firmware", metavar="FIRMWARE",
                        help="the ELF, or the build directory (with edgekit-build.json)")
    parser.add_argument("--board", help="board id (default: the one in the build manifest)")
    parser.add_argument("--runner", choices=RUNNER_NAMES,
                        help="qemu, unicorn (exact instruction counts), renode, or serial (a real "
                             "board); default: qemu for emulated builds, serial for hardware builds")
    parser.add_argument("--timeout", metavar="S",
                        help="seconds before the run is abandoned (a finite number above 0, at "
                             "most a day). Default: 60 s, or for a model build, scaled from the "
                             "work its manifest records: 60 s plus 1 s per 10 M instructions of "
                             "its bound (20 per MAC + 200 per output element + 50 M); 1 s per 1 M "
                             "under Unicorn, which also stops once the run passes that bound in "
                             "instructions, whatever the load on the machine")
    parser.add_argument("--port", help="serial port of a real board (default: $EDGEKIT_PORT)")
    parser.add_argument("--flasher", choices=("pyocd", "openocd", "pio", "none"),
                        help="how the serial runner programs the board first (default: whichever "
                             "is installed; 'none' if you flashed it yourself)")
    parser.add_argument("--reset", choices=("auto", "probe", "dtr", "none"), default="auto",
                        help="with --flasher none, how the board is reset before its report is "
                             "read: through the probe (pyocd/openocd), a DTR pulse on the port, or "
                             "not at all (press RESET); auto: the probe where a tool is installed, "
                             "else DTR")
    parser.add_argument("--profile", action="store_true",
                        help="also count instructions per op on Unicorn (the default runner "
                             "then), with each op's MACs and instructions per MAC; written as "
                             "JSON to the firmware's folder (profile.json) or -o")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="with --profile: the JSON file to write (default: profile.json "
                             "beside the ELF)")


def run(args: argparse.Namespace) -> int:
    from edgekit.boards.runners.base import check_timeout
    from edgekit.boards.runners.measure import (measure, measurement_ok, render_measurement,
                                                resolve_firmware)

    # serial needs a hardware build, QEMU an emulated one; Renode and Unicorn run either (a
    # hardware build on the chip's model), so they and the default follow the manifest
    hardware = {"serial": True, "qemu": False}.get(args.runner)
    # checked before anything is read or started: nan, inf, 0 and negative values never reach a runner
    timeout_s = None if args.timeout is None else check_timeout(args.timeout)
    if args.output is not None and not args.profile:
        raise UsageError("-o names the profile's file: give it with --profile")
    if args.profile and args.runner not in (None, "unicorn"):
        raise UsageError(f"--profile counts instructions per op on Unicorn only, not {args.runner}"
                         " (per-op DWT cycles on a real board are not implemented)")
    firmware = resolve_firmware(args.firmware, args.board, hardware=hardware)
    profile_path = None
    if args.profile:
        profile_path = check_output_path(args.output or firmware.elf.parent / PROFILE_NAME,
                                         suffixes=(".json",), what="profile file")
    try:
        measured = measure(firmware, args.runner, timeout_s=timeout_s, port=args.port,
                           flasher=args.flasher, reset=args.reset, profile=args.profile)
    except ReportError as err:
        # the message alone hides what the device said: show the end of its console
        tail = err.console[-1500:].rstrip()
        raise type(err)(f"{err}\n--- console (last {len(tail)} characters) ---\n{tail}",
                        err.console, *([err.registers] if hasattr(err, "registers") else [])) from None
    if profile_path is not None:
        _write_profile(profile_path, measured)
        measured["profile_file"] = str(profile_path)
    emit(args, NAME, measured, render_measurement)
    return 0 if measurement_ok(measured) else 1


def _write_profile(path, measured: dict) -> None:
    """The profile with the figures that say what was profiled (board, ELF, whole count)."""
    keep = ("board", "runner", "elf", "instructions", "bit_exact", "expected_ok")
    document = {**{key: measured[key] for key in keep}, **measured["profile"]}
    with atomic_writer(path, "w") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
