"""Benchmark: candidates per second of the search's memory evaluation on one core.

Draws ``--count`` random MCUNet specs (default search space, seed fixed) in a fresh process
and times `peak_sram_fast` over all of them twice: cold (its segment cache empty, so the real
planner runs once per distinct segment; that cost is included) and warm. Also times the real
planner on a few of them for comparison, and checks the first ``--check`` fast figures against
it. Writes one JSON file.

    .venv/bin/python bench/nas_memory_throughput.py [--count 10000] [--out bench/results/nas_memory_throughput.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "nas_memory_throughput.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--check", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core

    from edgekit.nas.graph import graph_from_spec
    from edgekit.nas.mcunet import sample
    from edgekit.nas.memory import peak_sram_fast, segment_peak
    from edgekit.planner import plan

    rng = random.Random(args.seed)
    specs = [dataclasses.replace(sample(rng), patch_split=None, patch_n=1)
             for _ in range(args.count)]
    start = time.perf_counter()
    cold = [peak_sram_fast(s) for s in specs]
    cold_s = time.perf_counter() - start
    start = time.perf_counter()
    warm = [peak_sram_fast(s) for s in specs]
    warm_s = time.perf_counter() - start
    start = time.perf_counter()
    real = [plan(graph_from_spec(s)).arena_bytes for s in specs[:args.check]]
    real_s = time.perf_counter() - start
    result = {
        "benchmark": "nas_memory_throughput",
        "machine": {"python": platform.python_version(), "processor": platform.processor(),
                    "cores_used": 1},
        "candidates": args.count,
        "distinct_segments_planned": segment_peak.cache_info().currsize,
        "cold_seconds": round(cold_s, 3),
        "cold_candidates_per_second": round(args.count / cold_s, 1),
        "warm_seconds": round(warm_s, 3),
        "warm_candidates_per_second": round(args.count / warm_s, 1),
        "real_planner_candidates_per_second": round(args.check / real_s, 2),
        "checked_against_real_planner": args.check,
        "agree": cold == warm and cold[:args.check] == real,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
