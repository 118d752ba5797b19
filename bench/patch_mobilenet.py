"""Patch-based inference against layer by layer, measured on the emulated boards: MobileNetV2
(width 0.35, 144x144, the Keras-applications layout, int8) and the MLPerf Tiny VWW model.

For each model: the layer-by-layer firmware, and the schedule `--patch auto` picks under each
objective (the peak with the input in SRAM, and without it as MCUNetV2 counts), each built with
the code generator and run on Unicorn (exact instructions, painted stack, and the runner's own paint), on the
emulated stand-in of the target board when it fits there (else on mps2-an386, to measure it
anyway). Every run is checked bit-exact against the *unpatched* model's reference output, whose
bytes equal TFLite Micro's (checked here on the same test input). Writes
bench/results/patch_mobilenet.json.

The MobileNetV2 has a 2-class head (person / no person, the visual-wake-words task MCUNetV2
evaluates it on; the 1000-class head's 1.3 MB of weights alone overflow the nRF52840's 1 MB of
flash) and untrained weights (torch's initialisation, calibrated on uniform noise): memory,
flash, instructions and bit-exactness do not depend on what the weights are.

    .venv/bin/python bench/patch_mobilenet.py [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "patch_mobilenet.json"
VWW = REPO_ROOT.parent / "shared" / "models" / "mlperf_tiny" / "vww_96_int8.tflite"
SEED = 7  # the firmware's embedded test input


def mobilenet_v2_tflite(path: Path) -> Path:
    """MobileNetV2 0.35 / 144 / int8 through edgekit's converter, written to ``path``."""
    import torch

    from edgekit.nas.convert import save_int8
    from edgekit.nas.mcunet import mobilenet_v2_spec, to_torch

    torch.manual_seed(0)
    module = to_torch(mobilenet_v2_spec(width=0.35, resolution=144, num_classes=2))
    calib = np.random.default_rng(0).uniform(0, 1, size=(8, 3, 144, 144)).astype(np.float32)
    save_int8(module, calib, path)
    return path


def tflm_output(model: Path, x: np.ndarray) -> bytes:
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(model.read_bytes())
    interp.set_input(x, 0)
    interp.invoke()
    return np.array(interp.get_output(0)).tobytes()


def run_variant(model: Path, label: str, patch, objective: str, board: str, work: Path,
                expected: bytes) -> dict:
    from edgekit.boards.runners.measure import measure, resolve_firmware
    from edgekit.errors import MemoryOverflowError
    from edgekit.firmware.model_build import build_model

    started = time.time()
    fits_target, overflow = True, None
    try:
        result = build_model(model, board, work / f"{label}-{board}", seed=SEED, patch=patch,
                             patch_objective=objective)
        ran_on = board
    except MemoryOverflowError as err:  # measure it on a board with room, and say so
        fits_target, overflow = False, str(err)
        result = build_model(model, "mps2-an386", work / f"{label}-mps2-an386", seed=SEED,
                             patch=patch, patch_objective=objective)
        ran_on = "mps2-an386"
    measured = measure(resolve_firmware(result.directory, None), "unicorn", timeout_s=900)
    device_bytes = bytes.fromhex(measured["outputs"][0])
    patch_info = result.manifest["patch"] or {}
    plan = result.model.plan
    from edgekit.patching import peak_without_inputs

    return {
        "variant": label,
        "patch": patch_info.get("schedule"),
        "patch_objective": objective if patch == "auto" else None,
        "target_board": board,
        "fits_target_board": fits_target,
        "overflow": overflow,
        "measured_on": ran_on,
        "ops": result.manifest["ops"],
        "arena_bytes": plan.arena_bytes,
        "peak_bytes_without_input": peak_without_inputs(plan),
        "peak_sram_bytes": measured["peak_sram_bytes"],
        "estimate_peak_sram_bytes": measured["estimate_peak_sram_bytes"],
        "estimate_error": measured["estimate_error"],
        "flash_bytes": measured["flash_bytes"],
        "instructions": measured["instructions"],
        "macs": patch_info.get("macs"),
        "mac_overhead": patch_info.get("mac_overhead", 0.0),
        "bit_exact_vs_build": measured["bit_exact"],
        "bit_exact_vs_unpatched_model": device_bytes == expected,
        "seconds": round(time.time() - started, 1),
    }


def benchmark_model(name: str, model: Path, board: str, work: Path) -> dict:
    from edgekit import interpreter
    from edgekit.converters.tflite_reader import load_tflite
    from edgekit.firmware.codegen import random_test_inputs

    graph = load_tflite(model)
    x = random_test_inputs(graph, SEED)[0]
    expected = interpreter.run(graph, [x])[0].tobytes()
    oracle = tflm_output(model, x)
    runs = [run_variant(model, "layer-by-layer", None, "peak", board, work, expected)]
    for objective in ("peak", "peak-without-input"):
        runs.append(run_variant(model, f"auto-{objective}", "auto", objective, board, work,
                                expected))
    base = runs[0]
    for run in runs[1:]:
        run["peak_sram_reduction"] = base["peak_sram_bytes"] / run["peak_sram_bytes"]
        run["peak_reduction_without_input"] = (base["peak_bytes_without_input"]
                                               / run["peak_bytes_without_input"])
    return {"model": name, "input_bytes": int(x.nbytes), "reference_equals_tflm": expected == oracle,
            "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-patch-") as tmp:
        work = Path(tmp)
        mbv2 = mobilenet_v2_tflite(work / "mobilenet_v2_0.35_144_2class_int8.tflite")
        results = [benchmark_model("mobilenet_v2_0.35_144_2class_int8", mbv2, "nrf52840dk", work)]
        if VWW.exists():
            results.append(benchmark_model("vww_96_int8", VWW, "nucleo-l4r5zi", work))
    report = {"benchmark": "patch_mobilenet", "machine": platform.platform(),
              "runner": "unicorn (exact instructions; peak SRAM = .data + .bss + painted stack)",
              "models": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(report, indent=2) + "\n")
    tmp_out.replace(args.out)
    print(f"{'model':<28}{'variant':<26}{'board':<14}{'fits':>5}{'peak SRAM':>10}{'no input':>9}"
          f"{'x':>6}{'x no in':>8}{'MACs+':>7}{'instr':>12}{'est err':>8}  bit-exact")
    for entry in results:
        for run in entry["runs"]:
            print(f"{entry['model']:<28}{run['variant']:<26}{run['target_board']:<14}"
                  f"{'yes' if run['fits_target_board'] else 'no':>5}{run['peak_sram_bytes']:>10,}"
                  f"{run['peak_bytes_without_input']:>9,}{run.get('peak_sram_reduction', 1):>6.2f}"
                  f"{run.get('peak_reduction_without_input', 1):>8.2f}"
                  f"{100 * run['mac_overhead']:>6.1f}%{run['instructions']:>12,}"
                  f"{100 * run['estimate_error']:>7.2f}%  {run['bit_exact_vs_unpatched_model']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
