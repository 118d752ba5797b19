"""Benchmark: `edgekit search` for a board, then build and measure the result.

For each ``--boards`` entry: runs the search CLI over ``--space`` (mcunet, mcuformer, embbert)
and ``--dataset`` (fashion-mnist for the image families, fortunes for embbert) (``--trials``, ``--time-budget`` and the
training sizes below) into a temporary directory, builds ``DIR/best`` (model.tflite with its
patch.json) with `edgekit build`, runs it with `edgekit measure --runner unicorn`, and records
the wall time of the search, the float/int8 accuracy, the planner's peak SRAM (input counted,
and without it), the measured peak SRAM, flash, whether it fits, and bit-exactness. Writes one
JSON file.

    .venv/bin/python bench/nas_search_boards.py [--boards lm3s6965evb disco-f746ng]
        [--space mcunet] [--dataset fashion-mnist]
        [--trials 20] [--time-budget 1500] [--out bench/results/nas_search_boards.json]
    .venv/bin/python bench/nas_search_boards.py --space mcuformer --boards disco-f746ng \
        --out bench/results/nas_search_mcuformer.json
    .venv/bin/python bench/nas_search_boards.py --space mcuformer --scale paper \
        --boards disco-f746ng --trials 12 --proxy-steps 10 --train-limit 1000 \
        --final-epochs 1 --test-limit 100 --out bench/results/nas_search_mcuformer_paper.json
    .venv/bin/python bench/nas_search_boards.py --space embbert --dataset fortunes \
        --boards nucleo-h743zi --out bench/results/nas_search_embbert.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "nas_search_boards.json"


def _cli(argv: list[str]) -> dict:
    from edgekit.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*argv, "--json"])
    if code != 0:
        raise SystemExit(f"edgekit {' '.join(argv)} exited {code}")
    return json.loads(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", nargs="+", default=["lm3s6965evb", "disco-f746ng"])
    parser.add_argument("--space", default="mcunet")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--time-budget", type=float, default=1500)
    parser.add_argument("--proxy-steps", type=int, default=150)
    parser.add_argument("--train-limit", type=int, default=6000)
    parser.add_argument("--final-epochs", type=int, default=3)
    parser.add_argument("--scale", default="default", choices=("default", "paper"))
    parser.add_argument("--test-limit", type=int, default=500)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    results = []
    for board in args.boards:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.monotonic()
            search = _cli(["search", "--board", board, "--space", args.space,
                           "--dataset", args.dataset,
                           "--trials", str(args.trials), "--time-budget", str(args.time_budget),
                           "--proxy-steps", str(args.proxy_steps), "--train-limit",
                           str(args.train_limit), "--final-epochs", str(args.final_epochs),
                           "--scale", args.scale, "--test-limit", str(args.test_limit),
                           "-o", f"{tmp}/search"])
            search_s = time.monotonic() - start
            build = _cli(["build", f"{tmp}/search/best", "--board", board, "-o", f"{tmp}/fw"])
            measure = _cli(["measure", f"{tmp}/fw", "--runner", "unicorn"])
        best = search["best"]
        results.append({
            "board": board, "search_seconds": round(search_s, 1),
            "trials_run": search["trials_run"], "pareto_size": len(search["pareto"]),
            "float_accuracy": best["float_accuracy"], "int8_accuracy": best["int8_accuracy"],
            "test_images": best.get("test_images", best.get("test_examples")),
            "patch": best.get("patch"), "planned_peak_sram": best["peak_sram"],
            "planned_peak_sram_without_input": best.get("peak_sram_without_input"),
            "planned_peak_sram_layer_by_layer": best.get("peak_sram_layer_by_layer"),
            "flash_estimate": best["flash_estimate"], "weights_bytes": best.get("weights_bytes"),
            "build_arena_bytes": build.get("plan_arena_bytes"),
            "measured": {k: measure.get(k) for k in (
                "flash_bytes", "static_ram_bytes", "stack_peak_bytes", "peak_sram_bytes",
                "arena_used_bytes", "instructions", "bit_exact", "fits",
                "estimate_peak_sram_bytes", "estimate_error")},
            "spec": best["spec"], "constraints": best.get("constraints"),
        })
        print(json.dumps(results[-1], indent=2), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "nas_search_boards", "space": args.space,
                                    "dataset": args.dataset,
                                    "settings": {k: v for k, v in vars(args).items()
                                                 if k not in ("out", "boards")},
                                    "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
