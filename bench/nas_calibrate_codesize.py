"""Fit the code-size model of `edgekit.nas.codesize` against real firmware builds.

For each of ``--boards`` (one per Cortex-M core), builds ``--count`` random MCUNet candidates
(graph_from_spec: the converter's layout, random weights; every other one with a patch
schedule, built patched; a third each int8, int4 and mixed) with `edgekit.firmware.model_build.build_model` (arm-none-eabi-gcc),
reads each ELF's ``flash_bytes``, and fits ``flash - constants - input = fixed + sum
per_op[group] * count[group]`` by least squares for that core. Writes the constants, the builds
and the residuals to nas/codesize.json (the model reads it) and a copy to bench/results/.

    .venv/bin/python bench/nas_calibrate_codesize.py [--count 8] [--boards mps2-an386 lm3s6965evb ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import subprocess
import tempfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "bench" / "results" / "nas_calibrate_codesize.json"
#: one emulated board per core: M4F, M3, M7, M0+ (stand-in), M55
DEFAULT_BOARDS = ("mps2-an386", "lm3s6965evb", "mps2-an500", "rpi-pico", "mps3-an547")


def calibrate(board: str, count: int, seed: int, build_model) -> dict:
    """Build ``count`` candidates for ``board`` and fit its core's constants."""
    from edgekit.nas.codesize import GROUPS, graph_features, group_count
    from edgekit.nas.graph import graph_from_spec
    from edgekit.nas.mcunet import SearchSpace, sample
    from edgekit.nas.memory import patch_schedule
    from edgekit.patching import apply_patches

    from edgekit.boards import load_board
    from edgekit.nas.codesize import features

    flash = load_board(board).flash_bytes
    rng = random.Random(seed)
    # small resolutions and widths keep the embedded test input, the weights and the builds
    # quick; the code size depends on neither, only the input and constants bytes (features) do
    space = SearchSpace(resolutions=(32, 40), widths=(0.25, 0.35), bits=(8, 4))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        while len(rows) < count:
            i = len(rows)
            spec = sample(rng, space)
            # a third of the builds int8, a third int4, a third mixed (random bits per layer):
            # the int4 kernels replace or join the int8 ones
            layers = len(spec.weighted_layer_names())
            spec = dataclasses.replace(spec, weight_bits=(
                () if i % 3 == 0 else (4,) * layers if i % 3 == 1 else spec.weight_bits))
            if features(spec)["constants"] > 0.6 * flash:  # would not link on this board
                continue
            if i % 2 == 0:  # half of the builds layer by layer, half patched
                spec = dataclasses.replace(spec, patch_split=None, patch_n=1)
            elif spec.patch_split is None:
                spec = dataclasses.replace(spec, patch_split=sum(spec.depths[:2]) - 1, patch_n=2)
            graph = graph_from_spec(spec)
            schedule = patch_schedule(spec)
            built = apply_patches(graph, schedule) if schedule else graph
            result = build_model(graph, board, Path(tmp) / str(i),
                                 patch=schedule if schedule else "none")
            rows.append({"spec": spec.to_dict(), "features": graph_features(built),
                         "flash_bytes": int(result.manifest["flash_bytes"]),
                         "constants_bytes": int(result.estimate.constants_bytes)})
            print(f"{board} build {i}: flash {rows[-1]['flash_bytes']} B", flush=True)
    design = np.array([[1.0] + [group_count(r["features"], g) for g in GROUPS] for r in rows])
    target = np.array([r["flash_bytes"] - r["features"]["constants"] - r["features"]["input"]
                       for r in rows], dtype=np.float64)
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    predicted = design @ coef + [r["features"]["constants"] + r["features"]["input"] for r in rows]
    for row, pred in zip(rows, predicted):
        row["predicted"] = int(round(pred))
        row["error"] = round((pred - row["flash_bytes"]) / row["flash_bytes"], 5)
    return {"board": board, "fixed": round(float(coef[0]), 1),
            "per_op": {g: round(float(c), 1) for g, c in zip(GROUPS, coef[1:])},
            "max_abs_error": max(abs(r["error"]) for r in rows), "builds": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=12, help="builds per board")
    parser.add_argument("--boards", nargs="+", default=list(DEFAULT_BOARDS),
                        help="one board per Cortex-M core to calibrate")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    from edgekit.boards import load_board
    from edgekit.firmware.model_build import build_model
    gcc = subprocess.run(["arm-none-eabi-gcc", "--version"], capture_output=True, text=True)
    data = {"produced_by": "bench/nas_calibrate_codesize.py",
            "compiler": gcc.stdout.splitlines()[0] if gcc.stdout else "", "by_cpu": {}}
    for board in args.boards:
        cpu = load_board(board).cpu
        data["by_cpu"][cpu] = calibrate(board, args.count, args.seed, build_model)
        print(json.dumps({cpu: {k: v for k, v in data["by_cpu"][cpu].items() if k != "builds"}}),
              flush=True)
        # written after each core, so a long calibration yields its first cores early (the
        # cores not refitted yet keep their previous constants)
        _write(data)


def _write(data: dict) -> None:
    from edgekit.nas.codesize import CODESIZE_FILE

    try:
        previous = json.loads(CODESIZE_FILE.read_text())["by_cpu"]
    except (OSError, ValueError, KeyError):
        previous = {}
    text = json.dumps({**data, "by_cpu": {**previous, **data["by_cpu"]}}, indent=2) + "\n"
    CODESIZE_FILE.write_text(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
