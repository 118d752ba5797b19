"""bench/plan_vs_tflm.py runs, measures TFLite Micro's arena itself, and writes its JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import bench_module, mlperf_path

pytest.importorskip("tflite_micro", reason="the tflite_micro host package is not installed")


def _bench_module():
    return bench_module("plan_vs_tflm")


def test_bench_writes_json_and_our_arena_beats_or_matches_tflm(tmp_path: Path, capsys):
    mlperf_path("vww")  # skips when the models are absent
    out = tmp_path / "nested" / "plan_vs_tflm.json"
    assert _bench_module().main(["--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["schema_version"] == 1
    assert [row["model"] for row in result["models"]] == ["vww", "kws", "resnet", "ad01"]
    for row in result["models"]:
        tflm = row["tflm"]
        assert tflm["arena_total_bytes"] == tflm["arena_activations_bytes"] + tflm["arena_persistent_bytes"]
        assert row["best_arena_bytes"] <= tflm["arena_activations_bytes"]
        assert row["best_arena_bytes"] <= 1.02 * row["best_lower_bound_bytes"]
        assert row["best_at_most_tflm_activations"] and row["best_within_1_02_of_bound"]
        greedy = [r for r in row["edgekit"] if r["strategy"] == "greedy"]
        assert all(r["arena_bytes"] >= row["best_arena_bytes"] for r in greedy)
    assert "wrote" in capsys.readouterr().out
