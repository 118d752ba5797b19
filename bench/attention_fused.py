"""Benchmark: fused row-wise attention vs the unfused BATCH_MATMUL -> SOFTMAX -> BATCH_MATMUL on
an emulated board, MCUFormer at growing token counts.

For each (resolution, patch) point (default 28/4, 56/4 and 80/4: 49, 196 and 400 tokens; embed
32, 4 heads, one block, random weights calibrated on random images) the same int8 graph is built
for ``--board`` twice, fused (the default build) and with ``fuse_attention=False``, and each
firmware is run on ``--runner``: measured peak SRAM (static RAM + painted stack high-water
mark), the estimate made before any run and its error, flash, instructions, and whether the
outputs equal the reference interpreter's (and the two builds' each other's). A build whose
planned arena does not fit the board's SRAM is not built; its plan is reported. Writes one
JSON file.

    .venv/bin/python bench/attention_fused.py [--board disco-f746ng] [--runner unicorn]
        [--points 28:4,56:4,80:4] [--out bench/results/attention_fused.json]
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
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "attention_fused.json"
SPEC = dict(in_channels=1, num_classes=10, embed_dim=32, depth=1, heads=4, mlp_ratio=2.0,
            rank_ratio=0.5)


def _graph(resolution: int, patch: int, seed: int = 0):
    from edgekit.nas.mcuformer import MCUFormerSpec
    from edgekit.nas.mcuformer_ir import int8_graph
    from edgekit.nas.mcuformer_torch import to_torch

    spec = MCUFormerSpec(resolution=resolution, patch=patch, **SPEC)
    calib = np.random.default_rng(seed).uniform(0, 255, (8, 28, 28, 1)).astype(np.float32)
    return spec, int8_graph(to_torch(spec, seed=seed).eval(), spec, calib)


def _variant(graph, fuse: bool, board, runner: str, workdir: Path) -> dict:
    from edgekit.attention import fuse_attention
    from edgekit.boards.runners.measure import measure, resolve_firmware
    from edgekit.firmware.codegen import firmware_plan
    from edgekit.firmware.model_build import build_model
    from edgekit.nas.search import sram_budget

    planned = firmware_plan(fuse_attention(graph) if fuse else graph).arena_bytes
    row = {"fused": fuse, "plan_arena_bytes": planned}
    if planned > sram_budget(board):
        return {**row, "built": False, "fits": False}
    build = build_model(graph, board.id, workdir / f"fused-{fuse}", seed=3, fuse_attention=fuse)
    start = time.perf_counter()
    m = measure(resolve_firmware(build.directory, None), runner, timeout_s=900)
    estimate = build.manifest["estimate"]
    return {**row, "built": True, "fits": m["fits"], "bit_exact": m["bit_exact"],
            "peak_sram_bytes": m["peak_sram_bytes"],
            "estimate_peak_sram_bytes": estimate["peak_sram_bytes"],
            "estimate_error": m["estimate_error"], "stack_peak_bytes": m["stack_peak_bytes"],
            "flash_bytes": m["flash_bytes"], "instructions": m["instructions"],
            "run_seconds": round(time.perf_counter() - start, 1), "outputs": m["outputs"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", default="disco-f746ng")
    parser.add_argument("--runner", default="unicorn")
    parser.add_argument("--points", default="28:4,56:4,80:4",
                        help="resolution:patch pairs (tokens = (resolution / patch)^2)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    from edgekit.boards import load_board

    board = load_board(args.board)
    points = []
    for item in args.points.split(","):
        resolution, patch = (int(v) for v in item.split(":"))
        spec, graph = _graph(resolution, patch)
        with tempfile.TemporaryDirectory() as tmp:
            fused, unfused = (_variant(graph, f, board, args.runner, Path(tmp))
                              for f in (True, False))
        point = {"resolution": resolution, "patch": patch, "tokens": spec.tokens,
                 "heads": spec.heads, "embed_dim": spec.embed_dim,
                 "scores_bytes": spec.heads * spec.tokens ** 2, "fused": fused,
                 "unfused": unfused}
        if fused.get("built") and unfused.get("built"):
            point["outputs_equal"] = fused["outputs"] == unfused["outputs"]
            point["peak_sram_saving_bytes"] = unfused["peak_sram_bytes"] - fused["peak_sram_bytes"]
        for v in (fused, unfused):
            v.pop("outputs", None)
        points.append(point)
        print(json.dumps(point), file=sys.stderr, flush=True)
    result = {"benchmark": "attention_fused", "board": args.board, "runner": args.runner,
              "model": {"family": "mcuformer", **SPEC, "weights": "random (seed 0), calibrated"
                        " on 8 random images"},
              "machine": {"python": platform.python_version(), "processor": platform.processor()},
              "points": points}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
