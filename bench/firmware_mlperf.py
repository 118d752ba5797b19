"""Benchmark: the generated firmware of the MLPerf Tiny models on emulated boards.

For each model and board: build with `edgekit.firmware.model_build`, run on Unicorn (the exact
instruction count of one inference, per kind of op too, painted stack and arena high-water
marks), and record
``peak_sram_bytes`` (measured: static RAM + stack high-water), ``flash_bytes``, the estimate and
its error, ``instructions`` per inference, the model's MACs and instructions per MAC, beside
TFLite Micro's host arena (measured here with the ``tflite_micro`` package) and the issue's peer
figures for TFLite Micro on Cortex-M4 (quoted, not measured here). Writes one JSON file.
Beyond the four: ``mobilenetv2`` is bench/patch_mobilenet.py's MobileNetV2-0.35 at 144 px
(random weights through edgekit's converter; issue 14's depthwise-heavy model), without a peer.

    .venv/bin/python bench/firmware_mlperf.py [--boards nucleo-l4r5zi disco-f746ng]
        [--models vww kws resnet ad01 mobilenetv2] [--out FILE]

Running some of the models replaces only their entries of an existing ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "bench"))
from plan_vs_tflm import MODELS, tflm_arena  # noqa: E402

from edgekit.costs import graph_macs  # noqa: E402

DEFAULT_MODELS_DIR = REPO_ROOT.parent / "shared" / "models" / "mlperf_tiny"
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "firmware_mlperf.json"
DEFAULT_BOARDS = ("nucleo-l4r5zi", "disco-f746ng")

#: issue 4's peer table (TFLite Micro for Cortex-M4F, gcc 12.2 -O2, on Unicorn): quoted figures
TFLM_PEER = {
    "vww": {"peak_sram_bytes": 103_292, "cmsis_nn_instructions": 24_101_898,
            "reference_instructions": 100_483_277, "macs": 7_489_664},
    "kws": {"peak_sram_bytes": 25_468, "cmsis_nn_instructions": 7_697_339,
            "reference_instructions": 43_112_215, "macs": 2_656_768},
    "resnet": {"peak_sram_bytes": 57_212, "cmsis_nn_instructions": 29_864_628,
               "reference_instructions": 107_491_834, "macs": 12_501_632},
    "ad01": {"peak_sram_bytes": 4_196, "cmsis_nn_instructions": 582_948,
             "reference_instructions": 1_954_018, "macs": 264_192},
}


def run_one(model_path: Path, board: str, work: Path) -> dict:
    from edgekit.boards.runners.measure import measure, resolve_firmware
    from edgekit.firmware.model_build import build_model

    started = time.time()
    result = build_model(model_path, board, work / f"{model_path.stem}-{board}")
    measured = measure(resolve_firmware(result.directory, None), "unicorn", timeout_s=600,
                       profile=True)
    macs = graph_macs(result.model.graph)
    return {
        "board": board,
        "host_board": measured["host_board"],
        "cpu_flags": result.manifest["cpu_flags"],
        "bit_exact": measured["bit_exact"],
        "peak_sram_bytes": measured["peak_sram_bytes"],
        "static_ram_bytes": measured["static_ram_bytes"],
        "stack_peak_bytes": measured["stack_peak_bytes"],
        "arena_bytes": result.model.plan.arena_bytes,
        "flash_bytes": measured["flash_bytes"],
        "estimate_peak_sram_bytes": measured["estimate_peak_sram_bytes"],
        "estimate_error": measured["estimate_error"],
        "instructions": measured["instructions"],
        "macs": macs,
        "instructions_per_mac": measured["instructions"] / macs if macs else None,
        # `edgekit measure --profile`'s totals per kind of op (instructions, MACs, per MAC)
        "per_kind": measured["profile"]["kinds"],
        "inplace_modes": sorted({b.inplace_mode for b in result.model.plan.buffers.values()
                                 if b.inplace_mode}),
        "fusions": len(getattr(result.model.plan, "fusions", {})),
        "seconds": round(time.time() - started, 2),
    }


#: models beyond the MLPerf four (no peer figures)
BEYOND = ("mobilenetv2",)


def benchmark(models_dir: Path, boards: list[str], work: Path, models) -> dict:
    results = {}
    if "mobilenetv2" in models:
        from patch_mobilenet import mobilenet_v2_tflite

        path = mobilenet_v2_tflite(work / "mobilenet_v2_035_144.tflite")
        results["mobilenetv2"] = {"model": "MobileNetV2-0.35, 144 px (bench/patch_mobilenet.py)",
                                  "runs": [run_one(path, board, work) for board in boards]}
    for short, file_name in MODELS.items():
        if short not in models:
            continue
        path = models_dir / file_name
        peer = TFLM_PEER[short]
        runs = [run_one(path, board, work) for board in boards]
        for run in runs:
            run["peak_sram_vs_tflm"] = run["peak_sram_bytes"] / peer["peak_sram_bytes"]
            run["instructions_vs_tflm_cmsis_nn"] = run["instructions"] / peer["cmsis_nn_instructions"]
        results[short] = {"model": file_name, "tflm_host_arena": tflm_arena(path),
                          "tflm_peer_cortex_m4": peer, "runs": runs}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    parser.add_argument("--boards", nargs="+", default=list(DEFAULT_BOARDS))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--models", nargs="+", default=[*MODELS, *BEYOND],
                        choices=[*MODELS, *BEYOND])
    args = parser.parse_args(argv)
    gcc = subprocess.run(["arm-none-eabi-gcc", "--version"], capture_output=True, text=True)
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-") as work:
        results = benchmark(args.models_dir, args.boards, Path(work), args.models)
    if args.out.exists() and set(args.models) != {*MODELS, *BEYOND}:
        results = {**json.loads(args.out.read_text()).get("models", {}), **results}
    report = {
        "benchmark": "firmware_mlperf",
        "machine": platform.platform(),
        "compiler": gcc.stdout.splitlines()[0] if gcc.stdout else None,
        "instructions_runner": "unicorn (exact count, one inference between the markers)",
        "models": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'model':<8}{'board':<15}{'peak SRAM':>10}{'x TFLM':>8}{'flash':>9}{'instr':>12}"
          f"{'x CMSIS':>9}{'instr/MAC':>10}{'est err':>9}  bit-exact")
    for short, entry in results.items():
        for run in entry["runs"]:
            peer = short not in BEYOND
            print(f"{short:<8}{run['board']:<15}{run['peak_sram_bytes']:>10,}"
                  f"{run['peak_sram_vs_tflm'] if peer else float('nan'):>8.2f}"
                  f"{run['flash_bytes']:>9,}{run['instructions']:>12,}"
                  f"{run['instructions_vs_tflm_cmsis_nn'] if peer else float('nan'):>9.2f}"
                  f"{run['instructions_per_mac']:>10.2f}{100 * run['estimate_error']:>8.2f}%"
                  f"  {run['bit_exact']}")
    print("instructions per MAC by kind of op (first board):")
    for short, entry in results.items():
        kinds = ", ".join(f"{k['kind']} {k['instructions_per_mac']:.2f}"
                          for k in entry["runs"][0]["per_kind"] if k["macs"])
        print(f"  {short:<8}{kinds}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
