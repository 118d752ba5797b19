"""Benchmark: edgekit's memory planner against TFLite Micro's arena on the MLPerf Tiny models.

For each model: TFLite Micro's tensor arena as the host ``tflite_micro`` package reports it
(``print_allocations()``: total, and the non-persistent "head" that holds the activations and
scratch), next to our ``arena_bytes`` and ``lower_bound_bytes`` for every strategy, with in-place
modes on and off. Writes one JSON file.

    .venv/bin/python bench/plan_vs_tflm.py [--out bench/results/plan_vs_tflm.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = REPO_ROOT.parent / "shared" / "models" / "mlperf_tiny"
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "plan_vs_tflm.json"
MODELS = {
    "vww": "vww_96_int8.tflite",
    "kws": "kws_ref_model.tflite",
    "resnet": "pretrainedResnet_quant.tflite",
    "ad01": "ad01_int8.tflite",
}
#: (strategy, inplace, reorder, alignment) settings planned for every model
SETTINGS = [
    (strategy, inplace, True, 4)
    for strategy in ("greedy", "multi", "search", "best") for inplace in (True, False)
] + [("greedy", False, False, 16)]  # closest to TFLM: greedy, no in-place, 16-byte alignment

_ALLOCATION = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")


def tflm_arena(model_path: Path) -> dict:
    """TFLite Micro's arena for ``model_path``: total, head (activations + scratch), tail
    (persistent), parsed from ``print_allocations()``, which writes to file descriptor 2."""
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_file(str(model_path))
    with tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            interpreter.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        text = capture.read().decode("utf-8", "replace")
    found = {kind: int(value) for kind, value in _ALLOCATION.findall(text)}
    if set(found) != {"total", "head", "tail"}:
        raise RuntimeError(f"{model_path}: unexpected print_allocations() output:\n{text}")
    return {"arena_total_bytes": found["total"], "arena_activations_bytes": found["head"],
            "arena_persistent_bytes": found["tail"]}


def edgekit_runs(model_path: Path) -> list[dict]:
    """Our plan of ``model_path`` under every setting in `SETTINGS` (each plan is checked)."""
    from edgekit.converters.tflite_reader import load_tflite
    from edgekit.planner import plan

    graph = load_tflite(model_path)
    runs = []
    for strategy, inplace, reorder, alignment in SETTINGS:
        start = time.perf_counter()
        result = plan(graph, strategy=strategy, inplace=inplace, reorder=reorder,
                      alignment=alignment)
        seconds = time.perf_counter() - start
        runs.append({
            "strategy": strategy, "inplace": inplace, "reorder": reorder, "alignment": alignment,
            "arena_bytes": result.arena_bytes, "lower_bound_bytes": result.lower_bound_bytes,
            "arena_over_bound": round(result.arena_bytes / max(result.lower_bound_bytes, 1), 4),
            "reordered": result.reordered, "plan_seconds": round(seconds, 4),
        })
    return runs


def benchmark(models_dir: Path) -> dict:
    """Plan every MLPerf Tiny model with TFLM and with edgekit; the result object."""
    import tflite_micro

    from edgekit import __version__

    rows = []
    for short, file_name in MODELS.items():
        path = models_dir / file_name
        if not path.exists():
            raise SystemExit(f"plan_vs_tflm: model not found: {path}")
        from edgekit.converters.tflite_reader import load_tflite

        graph = load_tflite(path)
        tflm = tflm_arena(path)
        runs = edgekit_runs(path)
        best = next(r for r in runs if r["strategy"] == "best" and r["inplace"])
        rows.append({
            "model": short,
            "file": file_name,
            "input_bytes": sum(graph[n].nbytes for n in graph.inputs),
            "output_bytes": sum(graph[n].nbytes for n in graph.outputs),
            "weights_bytes": graph.weights_bytes,
            "tflm": tflm,
            "edgekit": runs,
            "best_arena_bytes": best["arena_bytes"],
            "best_lower_bound_bytes": best["lower_bound_bytes"],
            "best_at_most_tflm_activations": best["arena_bytes"] <= tflm["arena_activations_bytes"],
            "best_within_1_02_of_bound": best["arena_bytes"] <= 1.02 * best["lower_bound_bytes"],
        })
    return {
        "schema_version": 1,
        "benchmark": "plan_vs_tflm",
        "edgekit_version": __version__,
        "tflite_micro_version": getattr(tflite_micro, "__version__", "unknown"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "notes": ("TFLM figures from the host tflite_micro package (64-bit host, reference "
                  "kernels, 16-byte buffer alignment): 'activations' is the arena head "
                  "(non-persistent: activations and kernel scratch). edgekit arenas hold every "
                  "non-constant tensor including the model input and output, plus scratch."),
        "models": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file to write")
    parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR,
                        help="folder with the MLPerf Tiny .tflite files")
    args = parser.parse_args(argv)
    result = benchmark(args.models_dir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for row in result["models"]:
        print(f"{row['model']:>7}: edgekit {row['best_arena_bytes']:>7,} B"
              f" (bound {row['best_lower_bound_bytes']:,})  TFLM activations"
              f" {row['tflm']['arena_activations_bytes']:>7,} B,"
              f" total {row['tflm']['arena_total_bytes']:,} B")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
