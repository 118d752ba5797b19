"""Benchmark: the ``--hardware`` builds of every real board, run on Unicorn and (where installed)
Renode — the README's "Real boards and Renode" table.

For each real board with a BSP: the self-test and the MLPerf Tiny kws and vww models built with
`edgekit.firmware` for the board itself (``emulated=False``), flash and whether it fits; each
build run on Unicorn (the board's own memory map and peripheral models) and on Renode where a
board script ships and Renode is found, with ``bit_exact`` / ``expected_ok`` and the measured
peak SRAM (static RAM + painted stack peak) of each, and Renode's peak SRAM against Unicorn's.
Writes one JSON file.

    .venv/bin/python bench/hardware_boards.py [--boards disco-f746ng ...] [--models kws vww]
        [--objective memory|speed|balanced] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "bench"))
from results_file import compiler_version, write_results  # noqa: E402

DEFAULT_MODELS_DIR = REPO_ROOT.parent / "shared" / "models" / "mlperf_tiny"
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "hardware_boards.json"
MODEL_FILES = {"kws": "kws_ref_model.tflite", "vww": "vww_96_int8.tflite"}
#: the figures kept per run (the rest of a measurement is in `edgekit measure --json`)
KEPT = ("bit_exact", "expected_ok", "peak_sram_bytes", "stack_peak_bytes", "static_ram_bytes",
        "estimate_peak_sram_bytes", "estimate_error", "instructions")


def hardware_boards() -> list[str]:
    from edgekit.boards import list_boards

    return [b.id for b in list_boards() if b.kind == "real" and b.bsp]


def build(board: str, payload: str, models_dir: Path, objective: str, work: Path) -> Path:
    from edgekit.firmware.build import build_selftest
    from edgekit.firmware.model_build import build_model

    directory = work / f"{board}-{payload}"
    if payload == "selftest":
        build_selftest(board, directory, emulated=False)
    else:
        build_model(models_dir / MODEL_FILES[payload], board, directory, emulated=False,
                    objective=objective)
    return directory


def run_on(directory: Path, runner: str) -> dict:
    from edgekit.boards.runners.measure import measure, resolve_firmware

    started = time.time()
    measured = measure(resolve_firmware(directory, None), runner, timeout_s=900)
    kept = {k: measured.get(k) for k in KEPT}
    kept["seconds"] = round(time.time() - started, 1)
    return kept


def benchmark(boards: list[str], payloads: list[str], models_dir: Path, objective: str,
              work: Path) -> dict:
    from edgekit.boards import load_board, runners_for
    from edgekit.boards.runners.renode import find_renode

    renode = find_renode() is not None
    results: dict = {}
    for board in boards:
        listed = runners_for(load_board(board))
        for payload in payloads:
            directory = build(board, payload, models_dir, objective, work)
            manifest = json.loads((directory / "edgekit-build.json").read_text())
            row = {"flash_bytes": manifest["flash_bytes"], "fits": manifest.get("fits"),
                   "runs": {"unicorn": run_on(directory, "unicorn")}}
            if "renode" in listed and renode:
                row["runs"]["renode"] = run_on(directory, "renode")
                row["renode_vs_unicorn_peak_sram"] = (
                    row["runs"]["renode"]["peak_sram_bytes"] / row["runs"]["unicorn"]["peak_sram_bytes"] - 1)
            elif "renode" in listed:
                row["renode"] = "not run: Renode not found (RENODE=/path or renode on PATH)"
            results.setdefault(board, {})[payload] = row
            print(f"{board} {payload}: flash {row['flash_bytes']} B, runs "
                  + ", ".join(f"{r}: peak {v['peak_sram_bytes']} B, "
                              f"{'bit-exact' if v['bit_exact'] or v['expected_ok'] else 'WRONG'}"
                              for r, v in row["runs"].items()), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", nargs="+", default=None, help="default: every real board with a BSP")
    parser.add_argument("--models", nargs="+", default=["kws", "vww"], choices=sorted(MODEL_FILES))
    parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    parser.add_argument("--objective", default="balanced", choices=("memory", "speed", "balanced"),
                        help="the planner objective of the model builds (edgekit build's default)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    boards = args.boards or hardware_boards()
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        results = benchmark(boards, ["selftest", *args.models], args.models_dir, args.objective,
                            Path(tmp))
    write_results(args.out, {"benchmark": "hardware_boards", "objective": args.objective,
                             "machine": platform.platform(), "compiler": compiler_version(),
                             "seconds": round(time.time() - started, 1), "boards": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
