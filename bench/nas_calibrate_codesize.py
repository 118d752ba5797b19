"""Fit the code-size model of `edgekit.nas.codesize` against real firmware builds.

Builds ``--count`` random MCUNet candidates (graph_from_spec: the converter's layout, random
int8 weights; every other one with a patch schedule, built patched) with `edgekit.firmware.model_build.build_model` for ``--board`` (arm-none-eabi-gcc),
reads each ELF's ``flash_bytes``, and fits ``flash - constants - input = fixed + sum per_op[group]
* count[group]`` by least squares. Writes the constants, the builds and the residuals to
nas/codesize.json (the model reads it) and a copy to bench/results/.

    .venv/bin/python bench/nas_calibrate_codesize.py [--count 14] [--board mps2-an386]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=14)
    parser.add_argument("--board", default="mps2-an386")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    from edgekit.firmware.model_build import build_model
    from edgekit.nas.codesize import CODESIZE_FILE, GROUPS, graph_features, group_count
    from edgekit.nas.graph import graph_from_spec
    from edgekit.nas.mcunet import SearchSpace, sample
    from edgekit.nas.memory import patch_schedule
    from edgekit.patching import apply_patches

    rng = random.Random(args.seed)
    # small resolutions keep the embedded test input and the builds quick; the code size does
    # not depend on the resolution, only the input bytes (a feature) do
    space = SearchSpace(resolutions=(32, 40))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.count):
            spec = sample(rng, space)
            if i % 2 == 0:  # half of the builds layer by layer, half patched
                spec = dataclasses.replace(spec, patch_split=None, patch_n=1)
            elif spec.patch_split is None:
                spec = dataclasses.replace(spec, patch_split=sum(spec.depths[:2]) - 1, patch_n=2)
            graph = graph_from_spec(spec)
            schedule = patch_schedule(spec)
            built = apply_patches(graph, schedule) if schedule else graph
            result = build_model(graph, args.board, Path(tmp) / str(i),
                                 patch=schedule if schedule else "none")
            rows.append({"spec": spec.to_dict(), "features": graph_features(built),
                         "flash_bytes": int(result.manifest["flash_bytes"]),
                         "constants_bytes": int(result.estimate.constants_bytes)})
            print(f"build {i}: flash {rows[-1]['flash_bytes']} B", flush=True)
    design = np.array([[1.0] + [group_count(r["features"], g) for g in GROUPS] for r in rows])
    target = np.array([r["flash_bytes"] - r["features"]["constants"] - r["features"]["input"]
                       for r in rows], dtype=np.float64)
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    predicted = design @ coef + [r["features"]["constants"] + r["features"]["input"] for r in rows]
    for row, pred in zip(rows, predicted):
        row["predicted"] = int(round(pred))
        row["error"] = round((pred - row["flash_bytes"]) / row["flash_bytes"], 5)
    gcc = subprocess.run(["arm-none-eabi-gcc", "--version"], capture_output=True, text=True)
    data = {
        "produced_by": "bench/nas_calibrate_codesize.py",
        "board": args.board,
        "compiler": gcc.stdout.splitlines()[0] if gcc.stdout else "",
        "fixed": round(float(coef[0]), 1),
        "per_op": {g: round(float(c), 1) for g, c in zip(GROUPS, coef[1:])},
        "max_abs_error": max(abs(r["error"]) for r in rows),
        "builds": rows,
    }
    text = json.dumps(data, indent=2) + "\n"
    CODESIZE_FILE.write_text(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(json.dumps({k: v for k, v in data.items() if k != "builds"}, indent=2))


if __name__ == "__main__":
    main()
