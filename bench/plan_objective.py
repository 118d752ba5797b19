"""`--objective memory|speed|balanced` on the MLPerf Tiny models (and MobileNetV2-0.35), measured: peak SRAM and
instructions per inference on Unicorn's Cortex-M4 (the nucleo-l4r5zi build, run on its
mps2-an386 stand-in), every run bit-exact with the reference interpreter, and the cost model's
estimate beside the measured count.

    .venv/bin/python bench/plan_objective.py [--models vww kws resnet ad01 mobilenetv2]
                         [--board nucleo-l4r5zi]
                         [--out bench/results/plan_objective.json]

Per model and objective: the planner's arena, the measured peak SRAM and the estimate's error,
the measured instructions (and per MAC), the cost model's estimate over the ops it models against the same
ops' measured share (`edgekit measure --profile`), and the in-place modes the plan used.
Per model: how far the default (balanced) is from the fastest of the three, in instructions.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

from edgekit.boards.runners.measure import measure, resolve_firmware
from edgekit.costs import graph_macs
from edgekit.firmware.model_build import build_model
from edgekit.planner.objective import OBJECTIVES

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from results_file import write_results  # noqa: E402

MODELS_DIR = REPO.parent / "shared" / "models" / "mlperf_tiny"
MODELS = {"vww": "vww_96_int8.tflite", "kws": "kws_ref_model.tflite",
          "resnet": "pretrainedResnet_quant.tflite", "ad01": "ad01_int8.tflite"}
#: beyond the four: bench/patch_mobilenet.py's MobileNetV2-0.35 at 144 px (issue 14's
#: depthwise-heavy model), written into the work folder
BEYOND = ("mobilenetv2",)


def model_path(name: str, work: Path) -> Path:
    if name == "mobilenetv2":
        from patch_mobilenet import mobilenet_v2_tflite

        return mobilenet_v2_tflite(work / "mobilenet_v2_035_144.tflite")
    return MODELS_DIR / MODELS[name]


def measure_objective(model: Path, board: str, objective: str, work: Path) -> dict:
    built = build_model(model, board, work, objective=objective)
    measured = measure(resolve_firmware(work, None), "unicorn", profile=True)
    if not measured["bit_exact"]:
        raise SystemExit(f"{model.name} --objective {objective}: outputs differ from the reference")
    chosen = built.manifest["objective"]
    counts = {row["op"]: row["instructions"] for row in measured["profile"]["ops"]
              if row["op"] is not None}
    modelled = [row for row in chosen["ops"] if row["instructions"] is not None]
    measured_modelled = sum(counts.get(row["op"], 0) for row in modelled)
    estimated = sum(row["instructions"] for row in modelled)
    return {
        "objective": objective, "applied": chosen["applied"], "note": chosen["note"],
        "arena_bytes": built.manifest["plan_arena_bytes"],
        "peak_sram_bytes": measured["peak_sram_bytes"],
        "estimate_peak_sram_bytes": measured["estimate_peak_sram_bytes"],
        "estimate_error": measured["estimate_error"],
        "instructions": measured["instructions"],
        "instructions_per_mac": round(measured["instructions"] / graph_macs(built.model.graph), 4),
        "bit_exact": measured["bit_exact"],
        "modelled_ops": len(modelled),
        "modelled_instructions_measured": measured_modelled,
        "modelled_instructions_estimated": estimated,
        "cost_model_error": round(estimated / measured_modelled - 1, 4) if measured_modelled else None,
        "modes": dict(Counter(row["mode"] for row in chosen["ops"] if row["mode"])),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=[*MODELS, *BEYOND],
                        choices=[*MODELS, *BEYOND])
    parser.add_argument("--board", default="nucleo-l4r5zi")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "plan_objective.json")
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            rows, model = {}, model_path(name, Path(tmp))
            for objective in OBJECTIVES:
                rows[objective] = measure_objective(model, args.board, objective,
                                                    Path(tmp) / f"{name}-{objective}")
                r = rows[objective]
                print(f"{name:<7} {objective:<9} arena {r['arena_bytes']:>7} B, peak SRAM"
                      f" {r['peak_sram_bytes']:>7} B (estimate error {r['estimate_error']}),"
                      f" {r['instructions']:>10,} instructions; cost model"
                      f" {r['cost_model_error']:+.1%} on {r['modelled_ops']} ops", flush=True)
            fastest = min(r["instructions"] for r in rows.values())
            results[name] = {
                "objectives": rows,
                "default_over_fastest": round(rows["balanced"]["instructions"] / fastest - 1, 5),
                "speed_over_memory_instructions": round(
                    rows["speed"]["instructions"] / rows["memory"]["instructions"] - 1, 5),
                "speed_over_memory_peak_sram": round(
                    rows["speed"]["peak_sram_bytes"] / rows["memory"]["peak_sram_bytes"] - 1, 5),
            }
            print(f"{name:<7} default within {100 * results[name]['default_over_fastest']:.2f}%"
                  " of the fastest", flush=True)
    payload = {"board": args.board, "runner": "unicorn", "command": "bench/plan_objective.py",
               "models": results}
    write_results(args.out, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
