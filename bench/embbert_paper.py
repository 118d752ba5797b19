"""Benchmark: EmbBERT-Q at its paper's size (~781 kB of weights + activations) on NUCLEO-H743ZI.

Trains `edgekit.nas.embbert.PAPER_SPEC` (vocab 2,048, embedding 128, hidden 256, 3 layers,
kernel 5, 64 tokens, layer norm, key-padding mask) on fortunes for ``--steps`` AdamW steps
(short: this is about memory, not accuracy), quantizes it to int8 on 64 training texts, scores
float and int8 top-1 on the fixed test split (int8: the reference interpreter, one text at a
time), writes ``model.tflite`` and ``tokenizer.json`` to a folder, builds it with
`edgekit build --board nucleo-h743zi`, and runs it with `edgekit measure` on Unicorn and on
QEMU. Records weights, the planned and measured peak SRAM, weights + peak SRAM, flash, whether
it fits and is bit-exact, and instructions. Writes one JSON file.

    .venv/bin/python bench/embbert_paper.py [--steps 150] [--keep DIR]
        [--out bench/results/embbert_paper.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

from edgekit.nas.embbert_paper import paper_model
from nas_search_boards import _cli  # one CLI-as-JSON helper for the bench scripts

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "embbert_paper.json"
BOARD = "nucleo-h743zi"
MEASURED = ("flash_bytes", "static_ram_bytes", "stack_peak_bytes", "peak_sram_bytes",
            "arena_used_bytes", "instructions", "bit_exact", "fits", "estimate_peak_sram_bytes",
            "estimate_error")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--keep", type=Path, help="keep the model and firmware in this folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        result = paper_model(work / "model", steps=args.steps)
        print(json.dumps(result, indent=2), flush=True)
        build = _cli(["build", str(work / "model"), "--board", BOARD, "-o", str(work / "fw")])
        result["build_arena_bytes"] = build.get("plan_arena_bytes")
        for runner in ("unicorn", "qemu"):
            measure = _cli(["measure", str(work / "fw"), "--runner", runner])
            result[runner] = {k: measure.get(k) for k in MEASURED}
            print(runner, json.dumps(result[runner]), flush=True)
    result["measured_weights_plus_peak_sram"] = (result["weights_bytes"]
                                                 + result["unicorn"]["peak_sram_bytes"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "embbert_paper", "board": BOARD,
                                    "dataset": "fortunes", "host": platform.machine(),
                                    "result": result}, indent=2) + "\n")


if __name__ == "__main__":
    main()
