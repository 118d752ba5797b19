"""`edgekit demo`: the main job in small, on the default emulated board (the LM3S6965EVB:
Cortex-M3, 64 KB SRAM, 256 KB flash, emulated by QEMU and Unicorn).

A short architecture search on a bundled dataset (Fashion-MNIST from Debian's
``dataset-fashion-mnist``: a few trials over small resolutions and widths, a hundred training
steps each, then a final training and int8 quantization of the chosen model) under the board's
SRAM and flash, then ``edgekit build DIR/best`` for the board and ``edgekit measure`` on QEMU and
on Unicorn. The summary says what the search found (top-1 float
and int8, peak SRAM, patch schedule) and what each run measured (flash, peak SRAM against the
estimate, instructions, bit-exactness with the reference interpreter). Exits non-zero unless
every run is bit-exact, fits the board and meets the estimate within 1%.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from edgekit.atomic import atomic_directory, check_output_path
from edgekit.cli.output import emit, progress

NAME = "demo"
HELP = ("the main job in small: a short search on Fashion-MNIST, then build and measure the"
        " chosen model on an emulated board (QEMU and Unicorn)")
DEFAULT_BOARD = "lm3s6965evb"
#: the demo's corner of the search space: small inputs and widths train in seconds on a CPU
DEMO_RESOLUTIONS = (32, 40)
DEMO_WIDTHS = (0.25, 0.35, 0.5)
#: the estimate must hold within this fraction on every run (the product's promise)
ESTIMATE_TOLERANCE = 0.01


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--board", default=DEFAULT_BOARD,
                        help=f"board to search for and run on (real boards run on their emulated"
                        f" stand-in); default {DEFAULT_BOARD}")
    parser.add_argument("--dataset", default="fashion-mnist",
                        help="dataset for the search (as for `edgekit search`; default fashion-mnist)")
    parser.add_argument("--trials", type=int, default=6, help="search trials (default 6)")
    parser.add_argument("--time-budget", type=float, default=240.0, metavar="S",
                        help="start no trial after S seconds (default 240)")
    parser.add_argument("--proxy-steps", type=int, default=100,
                        help="training batches per trial (default 100)")
    parser.add_argument("--train-limit", type=int, default=3000,
                        help="training images (default 3000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", metavar="DIR",
                        help="directory to keep (search, best model, firmware); default: a"
                        " temporary one, removed after")
    parser.add_argument("--timeout", type=float, default=300.0, metavar="S",
                        help="seconds per firmware run (default 300)")


def _render(payload: dict) -> str:
    from edgekit.boards.runners.measure import render_measurement

    s = payload["search"]
    patch = s["patch"]
    patch_text = ("layer by layer" if patch["split"] is None
                  else f"{patch['n']}x{patch['n']} patches up to {patch['split']!r}")
    parts = [
        "\n".join([
            f"edgekit demo: search on {s['dataset']} for {payload['board']} in {payload['directory']}",
            f"  {s['trials_run']} trials; chosen trial {s['trial']}: top-1 on {s['test_images']}"
            f" test images float {s['float_accuracy']:.3f}, int8 {s['int8_accuracy']:.3f}",
            f"  planned peak SRAM {s['peak_sram']:,} B (input included), flash estimate"
            f" {s['flash_estimate']:,} B, {patch_text}",
            f"  firmware: {payload['build']['ops']} ops, estimate peak SRAM"
            f" {payload['build']['estimate_peak_sram_bytes']:,} B",
        ])]
    parts += [render_measurement(m) for m in payload["runs"]]
    for note in payload["skipped"]:
        parts.append(f"skipped: {note}")
    verdict = ("every run is bit-exact, fits the board and meets the estimate within 1%"
               if payload["ok"] else "SOMETHING IS WRONG (see above)")
    parts.append(f"result: {verdict}")
    return "\n\n".join(parts)


def _demo(args, directory: Path) -> dict:
    from edgekit.boards.runners.measure import measure, measurement_ok, resolve_firmware
    from edgekit.errors import RunnerUnavailableError
    from edgekit.firmware.model_build import build_model
    from edgekit.nas.search import SearchConfig, run_search

    # the proxy strategy: a search of minutes (the supernet's training alone takes longer)
    config = SearchConfig(board=args.board, dataset=args.dataset, out_dir=directory / "search",
                          strategy="proxy", trials=args.trials, time_budget=args.time_budget, seed=args.seed,
                          proxy_steps=args.proxy_steps, train_limit=args.train_limit,
                          val_limit=500, final_epochs=1, test_limit=1000,
                          resolutions=DEMO_RESOLUTIONS, widths=DEMO_WIDTHS,
                          # the demo's small resolutions and widths are its choice already:
                          # TinyNAS's step would take the largest of them (the most MACs that
                          # fit), which trains several times slower on two CPU cores
                          space_opt=False)
    found = run_search(config, progress=lambda total: progress(total=total, desc="trials",
                                                                args=args))
    firmware_dir = directory / "firmware"
    with atomic_directory(firmware_dir) as tmp:  # never half a firmware folder
        build = build_model(found.best_dir, args.board, tmp)
    firmware = resolve_firmware(firmware_dir, None)
    host = firmware.target.host
    runs, skipped = [], []
    for runner in ("qemu", "unicorn"):
        if (runner == "qemu" and not host.emulation.qemu_machine) or \
                (runner == "unicorn" and not host.emulation.unicorn):
            skipped.append(f"{runner}: {host.id} has no {runner} model")
            continue
        try:
            runs.append(measure(firmware, runner, timeout_s=args.timeout))
        except RunnerUnavailableError as err:
            skipped.append(f"{runner}: {err}")
    ok = bool(runs) and all(
        measurement_ok(m) and m["bit_exact"] and m["fits"]
        and abs(m["estimate_error"]) <= ESTIMATE_TOLERANCE for m in runs)
    return {
        "board": args.board, "directory": str(directory),
        "search": {"dataset": args.dataset, "trials_run": found.trials_run, **found.best},
        "build": {"directory": str(firmware_dir), "ops": build.manifest["ops"],
                  "estimate_peak_sram_bytes": build.manifest["estimate"]["peak_sram_bytes"],
                  "patch": build.manifest["patch"]},
        "runs": runs, "skipped": skipped, "ok": ok,
    }


def run(args: argparse.Namespace) -> int:
    from edgekit.extras import SEARCH_MODULES, require_all

    require_all("nas", "edgekit demo", SEARCH_MODULES)  # the demo starts with a search
    if args.output:
        directory = check_output_path(args.output, directory=True)
        directory.mkdir(exist_ok=True)
        payload = _demo(args, directory)
    else:
        with tempfile.TemporaryDirectory(prefix="edgekit-demo-") as tmp:
            payload = _demo(args, Path(tmp))
            payload["directory"] += " (temporary, removed)"
    emit(args, NAME, payload, _render)
    return 0 if payload["ok"] else 1
