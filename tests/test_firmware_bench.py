"""bench/firmware_mlperf.py: its MAC counts agree with the issue's peer table for all four
models, and one run (ad01 on the emulated M4) yields a complete, bit-exact record."""

from __future__ import annotations

import shutil

import pytest

from conftest import MLPERF_MODELS, bench_module, mlperf_path
from edgekit.converters.tflite_reader import load_tflite
from edgekit.costs import graph_macs


@pytest.fixture(scope="module")
def bench():
    return bench_module("firmware_mlperf")


@pytest.mark.parametrize("model", sorted(MLPERF_MODELS))
def test_mac_counts_match_the_peer_table(bench, model):
    graph = load_tflite(mlperf_path(model))
    assert graph_macs(graph) == bench.TFLM_PEER[model]["macs"]


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="no arm-none-eabi-gcc")
def test_one_run_is_complete_and_bit_exact(bench, tmp_path):
    run = bench.run_one(mlperf_path("ad01"), "nucleo-l4r5zi", tmp_path)
    assert run["bit_exact"] is True
    assert run["peak_sram_bytes"] == run["static_ram_bytes"] + run["stack_peak_bytes"]
    assert abs(run["estimate_error"]) <= 0.01
    assert run["instructions"] > run["macs"] == 264_192
    assert run["instructions_per_mac"] == run["instructions"] / run["macs"]
    kinds = {k["kind"]: k for k in run["per_kind"]}
    assert sum(k["instructions"] for k in run["per_kind"]) <= run["instructions"]
    assert kinds["FULLY_CONNECTED"]["macs"] == run["macs"]  # ad01: an MLP
