"""The fuzz suite: mutated `.tflite`, `.onnx`, `.pt2`, `.npy`/`.npz`, board files, ELFs, build
manifests and firmware reports through every command that opens them (`tests/fuzz/harness.py`
says how outcomes are classified). The suite fails on any traceback, internal error, unclean
exit, hang, signal or payload, and lists each failure with the command that replays it.

The default run is sized to about two minutes on the CI machine; ``-m slow`` adds a longer run with
another seed. Both write their counts to JSON and print them at the end of the pytest run.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import MLPERF_DIR
from fuzz import conftest as fuzz_conftest
from fuzz.cases import TYPE_WEIGHTS
from fuzz.harness import CRASH_AT_ENV, STALL_AT_ENV, classify, run_cases
from fuzz.seeds import build_seeds

pytest.importorskip("torch")
pytest.importorskip("onnx")

DEFAULT_SEED, DEFAULT_CASES = 20261203, 1000
SLOW_SEED, SLOW_CASES = 20261204, 2500


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> Path:
    import shutil

    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc is not installed (the ELF seeds are built with it)")
    return build_seeds(tmp_path_factory.mktemp("fuzz-seeds"), MLPERF_DIR)


def signature(detail: str) -> str:
    """The last line of a failure's detail with quoted text, numbers and addresses blanked, so
    that one bug hit by many cases is listed once."""
    last = (detail.strip().splitlines() or [""])[-1]
    last = re.sub(r"b?'[^']*'?|\"[^\"]*\"?|\(.*\)|<[^>]*>", "…", last)
    return re.sub(r"0x[0-9a-fA-F]+|\d+", "N", last)[:90]


def failure_report(summary) -> str:
    """One line per distinct failure (file type, command, outcome, signature), with how many
    cases hit it and the command that replays the first."""
    groups: dict = defaultdict(list)
    for failure in summary.failures:
        # each probe is its own finding; mutated files group by what went wrong
        what = failure["mutation"] if failure["kind"] == "probe" else signature(failure["detail"])
        groups[(failure["kind"], failure["cli"], failure["outcome"], what)].append(failure)
    lines = [f"{len(summary.failures)} failing commands, {len(groups)} distinct:"]
    for (kind, cli, outcome, last), hits in sorted(groups.items()):
        first = hits[0]
        lines.append(f"- {kind} x {cli} x {outcome} ({len(hits)}): {last}\n"
                     f"    replay: .venv/bin/python bench/fuzz_cli.py --seed {summary.seed}"
                     f" --replay {first['index']}   ({first['mutation']})")
    return "\n".join(lines)


def check_run(seeds: Path, seed: int, cases: int, out: Path) -> None:
    summary = run_cases(seeds, seed, cases)
    fuzz_conftest.SUMMARIES.append(summary)
    out.write_text(json.dumps(summary.to_json(), indent=1))
    assert summary.cases == cases
    # the fuzzer reached every file type, and its mutations are neither all fatal nor all harmless
    assert set(summary.counts) == set(TYPE_WEIGHTS), sorted(summary.counts)
    totals = summary.totals()
    assert totals["ok"] > 0 and totals["error"] > 0, dict(totals)
    if summary.failures:
        pytest.fail(failure_report(summary), pytrace=False)


def test_fuzz_cli_default_run(seeds, tmp_path):
    check_run(seeds, DEFAULT_SEED, DEFAULT_CASES, tmp_path / "fuzz_summary.json")


@pytest.mark.slow
def test_fuzz_cli_long_run(seeds, tmp_path):
    check_run(seeds, SLOW_SEED, SLOW_CASES, tmp_path / "fuzz_summary.json")


@pytest.mark.parametrize("code, stderr, flags, want", [
    (0, "", {}, "ok"),
    (1, "warning: x\nedgekit run: error: input file 'a.npy' is not readable", {}, "error"),
    (1, "edgekit run: error: x\nTraceback (most recent call last):\n  ...", {}, "traceback"),
    (1, "", {"escaped": True}, "traceback"),
    (70, "edgekit run: internal error (a bug in edgekit ...)", {}, "internal_error"),
    (2, "usage: edgekit run ...", {}, "unclean"),
    (1, "edgekit plan: error: wrong command's message", {}, "unclean"),
    (-11, "", {}, "signal"),
    (None, "", {"timed_out": True}, "hang"),
    (1, "edgekit run: error: refused", {"marker_hit": True}, "payload"),
    (0, "", {"leaked": True}, "payload"),
])
def test_outcome_classes(code, stderr, flags, want):
    assert classify("run", code, stderr, **flags) == want


def test_failure_signature_merges_one_bug_hit_many_times():
    a = "Traceback ...\nValueError: cannot reshape array of size 6 into shape (1048576,)"
    b = "Traceback ...\nValueError: cannot reshape array of size 162 into shape (6,3,3,7)"
    assert signature(a) == signature(b) != signature("KeyError: 'x'")


def test_supervisor_charges_a_crash_and_a_stall_and_carries_on(seeds, monkeypatch):
    """A worker killed by a signal on case 1 and one stalled on case 3: both cases are charged,
    and the cases after them still run."""
    monkeypatch.setenv(CRASH_AT_ENV, "1")
    monkeypatch.setenv(STALL_AT_ENV, "3")
    summary = run_cases(seeds, DEFAULT_SEED, 5, stall_s=5)
    assert summary.cases == 5
    charged = [(f["index"], f["outcome"]) for f in summary.failures if "the worker" in f["detail"]]
    assert charged == [(1, "signal"), (3, "hang")]
    ran = sum(sum(c.values()) for per in summary.counts.values() for c in per.values())
    assert ran > len(summary.failures)
