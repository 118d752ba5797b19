"""Benchmark: which budget the paper-scale MCUFormer space (``edgekit search --scale paper``)
meets on each board, without training: ``--samples`` candidates drawn at random from the space
(`edgekit.nas.mcuformer.sample`, seeds 0..N-1) are sized as the search sizes them (the firmware
planner's arena of the placeholder int8 graph with fused attention; the flash estimate) and
counted as over the SRAM budget (`edgekit.nas.search.sram_budget`), over flash, both, or
feasible. Writes one JSON file.

    .venv/bin/python bench/mcuformer_paper_budgets.py [--samples 40]
        [--boards disco-f746ng nucleo-l4r5zi] [--out bench/results/mcuformer_paper_budgets.json]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "mcuformer_paper_budgets.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--boards", nargs="+", default=["disco-f746ng", "nucleo-l4r5zi"])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    from edgekit.boards import load_board
    from edgekit.nas.datasets import Dataset, Split
    from edgekit.nas.mcuformer import MCUFormerFamily, sample
    from edgekit.nas.mcuformer_ir import memory
    from edgekit.nas.search import SearchConfig, sram_budget

    images = Split(np.zeros((1, 28, 28, 1), np.float32), np.zeros(1, np.int64))
    config = SearchConfig(board=args.boards[0], dataset="fashion-mnist", out_dir=Path("."),
                          space="mcuformer", scale="paper")
    space = MCUFormerFamily().space(Dataset("fashion-mnist", images, images, 10), config)
    specs = [sample(random.Random(seed), space) for seed in range(args.samples)]
    results = []
    for board_id in args.boards:
        board = load_board(board_id)
        counts = {"sram_only": 0, "flash_only": 0, "both": 0, "feasible": 0}
        largest_feasible = None
        for spec in specs:
            m = memory(spec, board)
            over_sram, over_flash = m["peak_sram"] > sram_budget(board), m["flash"] > board.flash_bytes
            key = ("both" if over_sram and over_flash else "sram_only" if over_sram
                   else "flash_only" if over_flash else "feasible")
            counts[key] += 1
            if key == "feasible" and (largest_feasible is None
                                      or m["peak_sram"] > largest_feasible["peak_sram"]):
                largest_feasible = {"peak_sram": m["peak_sram"], "flash": m["flash"],
                                    "tokens": spec.tokens, "spec": spec.to_dict()}
        results.append({"board": board_id, "sram_budget": sram_budget(board),
                        "flash_budget": board.flash_bytes, "samples": len(specs), **counts,
                        "largest_feasible": largest_feasible})
        print(json.dumps(results[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "mcuformer_paper_budgets",
                                    "tokens_sampled": sorted({s.tokens for s in specs}),
                                    "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
