"""Benchmark: EmbBERT-Q top-1 on fortunes with and without the key-padding mask.

The same spec (default: the model the README's fortunes search chose: vocab 1,024, embedding 64,
hidden 32, one layer, kernel 5, 48 tokens, RMS norm) is trained with ``mask=True`` and
``mask=False`` from the same seeds (`EmbBERTFamily.train`, ``--steps`` AdamW steps of
``--batch-size``), quantized on 64 training texts, and scored on the fixed test split: float
top-1 (torch) and int8 top-1 (the reference interpreter, one text at a time, as the firmware
runs). Also reports how much of the inputs is padding. Writes one JSON file.

    .venv/bin/python bench/embbert_mask.py [--steps 750] [--seeds 0 1 2]
        [--out bench/results/embbert_mask.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "embbert_mask.json"
SPEC = dict(vocab_size=1024, embed_dim=64, hidden=32, layers=1, kernel=5, seq_len=48,
            norm="rms", combine="add")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=750)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    from edgekit.nas.embbert import EMBBERT, EmbBERTSpec
    from edgekit.nas.text import load_fortunes
    from edgekit.nas.tokenizer import PAD_ID

    data = load_fortunes()
    EMBBERT.space(data, None)
    runs = []
    for mask in (True, False):
        spec = EmbBERTSpec(**SPEC, num_classes=data.num_classes, mask=mask)
        for seed in args.seeds:
            start = time.perf_counter()
            model = EMBBERT.train(spec, data.train, steps=args.steps, batch_size=args.batch_size,
                                  seed=seed, threads=args.threads)
            graph = EMBBERT.int8_graph(model, spec, EMBBERT.calibration(spec, data.train))
            runs.append({"mask": mask, "seed": seed,
                         "float_top1": EMBBERT.float_accuracy(model, spec, data.test),
                         "int8_top1": EMBBERT.int8_accuracy(graph, spec, data.test),
                         "seconds": round(time.perf_counter() - start, 1)})
            print(json.dumps(runs[-1]), flush=True)
    ids = EMBBERT.inputs(EmbBERTSpec(**SPEC, num_classes=data.num_classes), data.test)
    summary = {str(mask): {key: float(np.mean([r[key] for r in runs if r["mask"] == mask]))
                           for key in ("float_top1", "int8_top1")} for mask in (True, False)}
    result = {"benchmark": "embbert_mask", "dataset": "fortunes",
              "train_texts": len(data.train), "test_texts": len(data.test),
              "test_padding_fraction": float((ids == PAD_ID).mean()),
              "spec": SPEC, "steps": args.steps, "batch_size": args.batch_size,
              "machine": {"python": platform.python_version(),
                          "processor": platform.processor(), "threads": args.threads},
              "runs": runs, "mean_by_mask": summary}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
