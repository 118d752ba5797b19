"""The fuzz suite's long run, or one case replayed.

    .venv/bin/python bench/fuzz_cli.py [--cases 2500] [--seed 20261204]
        runs the cases (tests/fuzz: mutated .tflite, .onnx, .pt2, .npy/.npz, board files, ELFs,
        build manifests, firmware reports through the CLI) and writes the counts per file type x
        command x outcome, and every failure, to bench/results/fuzz_summary.json
    .venv/bin/python bench/fuzz_cli.py --seed S --replay I [--keep DIR]
        rebuilds case I of seed S in DIR and runs it, printing each command and its outcome
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))
sys.path.insert(0, str(REPO_ROOT))

from conftest import MLPERF_DIR  # noqa: E402
from fuzz.cases import make_case  # noqa: E402
from fuzz.harness import run_case, run_cases  # noqa: E402
from fuzz.seeds import build_seeds  # noqa: E402


def replay(seeds: Path, seed: int, index: int, folder: Path) -> None:
    case = make_case(seeds, seed, index, folder)
    print(f"case {index} of seed {seed}: {case.kind}, {case.mutation}; files in {folder}")
    for result in run_case(case):
        print(f"  edgekit {' '.join(result['argv'])}\n    -> {result['outcome']} (exit {result['code']})")
        if result["detail"]:
            print("      " + result["detail"].replace("\n", "\n      "))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2500)
    parser.add_argument("--seed", type=int, default=20261204)
    parser.add_argument("--replay", type=int, metavar="INDEX", help="replay this one case")
    parser.add_argument("--keep", type=Path, help="folder for the seeds and the replayed case")
    parser.add_argument("-o", "--output", type=Path, default=REPO_ROOT / "bench/results/fuzz_summary.json")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="edgekit-fuzz-"))
    seeds = build_seeds(work / "seeds", MLPERF_DIR)
    if args.replay is not None:
        replay(seeds, args.seed, args.replay, work / f"case{args.replay}")
        return 0
    summary = run_cases(seeds, args.seed, args.cases)
    result = {**summary.to_json(), "machine": platform.platform(), "python": platform.python_version()}
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(summary.table())
    print(f"wrote {args.output}")
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
