"""Generated C of the four MLPerf Tiny models, compiled with the host gcc (AddressSanitizer and
UBSan on), against the reference interpreter: every op's output at its planned arena offset and
the model outputs, byte for byte, on the portable kernels and on the emulated DSP path."""

from __future__ import annotations

import pytest

from conftest import HOST_KERNEL_DEFINES as PATHS, mlperf_path
from edgekit.converters.tflite_reader import load_tflite
from edgekit.firmware.codegen import generate
from edgekit.firmware.host_run import run_on_host
from generated_c import assert_matches_interpreter

pytestmark = pytest.mark.skipif(__import__("shutil").which("gcc") is None, reason="no host gcc")


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("model", ["ad01", "kws", "resnet", "vww"])
def test_generated_model_is_bit_exact_op_by_op(model, path, kernel_objects, tmp_path):
    graph = load_tflite(mlperf_path(model))
    gen = generate(graph, seed=7)
    run = run_on_host(gen, tmp_path, defines=PATHS[path], kernel_objects=kernel_objects[path])
    assert_matches_interpreter(graph, gen, run, label=model)


def test_two_seeds_give_different_inputs_and_outputs_still_match(kernel_objects, tmp_path):
    # a test input that does not matter would let a kernel ignore it: check two inputs differ
    graph = load_tflite(mlperf_path("ad01"))
    first, second = generate(graph, seed=1), generate(graph, seed=2)
    assert first.files["model_testdata.c"] != second.files["model_testdata.c"]
    assert first.expected_outputs != second.expected_outputs
    for gen, sub in ((first, "a"), (second, "b")):
        run = run_on_host(gen, tmp_path / sub, defines=PATHS["portable"],
                          kernel_objects=kernel_objects["portable"])
        assert run.outputs == gen.expected_outputs
