"""bench/convert_fashion_mnist.py on tiny slices: it trains, converts every variant, checks the
exported files in TFLite Micro and writes the results JSON (the full run is the bench itself)."""

from __future__ import annotations

import json

import pytest

from conftest import bench_module

pytest.importorskip("torch")
from edgekit.nas.datasets import fashion_mnist_available  # noqa: E402


@pytest.mark.slow
@pytest.mark.skipif(not fashion_mnist_available(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_bench_runs_on_small_slices(tmp_path):
    bench = bench_module("convert_fashion_mnist")
    out = tmp_path / "r.json"
    assert bench.main(["-o", str(out), "--epochs", "1", "--train-limit", "1000",
                       "--test-limit", "60", "--calib", "32"]) == 0
    data = json.loads(out.read_text())
    assert data["test_images"] == 60
    names = {"float"} | {v[0] for v in bench.VARIANTS}
    assert set(data["results"]) == names
    for name, row in data["results"].items():
        assert 0.0 <= row["top1"] <= 100.0
        if name != "float":
            assert row["tflm_bit_exact_images"] in (60, None)
    int8, int4 = data["results"]["int8"], data["results"]["int4"]
    assert int4["weights_bytes"] < int8["weights_bytes"]
