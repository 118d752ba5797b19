"""Packed int4 weights in the generated C (the _s4 kernels): the MLPerf kws and resnet models
re-quantized to int4 and to mixed int8/int4 (`edgekit.converters.int4_requant`), compiled with
the host gcc on the portable kernels and on the emulated DSP path, against the reference
interpreter op by op; the interpreter against TFLite Micro on the written int4 `.tflite`; and
the packed arrays' layout and flash accounting."""

from __future__ import annotations

import numpy as np
import pytest

import graph_builders as gb
from conftest import HOST_KERNEL_DEFINES as PATHS, mlperf_path
from edgekit.converters.int4_requant import requantize_weights
from edgekit.converters.tflite_reader import load_tflite, load_tflite_bytes
from edgekit.converters.tflite_writer import to_bytes
from edgekit.firmware.c_source import INT4_PAD_BYTES, packed_int4, stored_bytes
from edgekit.firmware.codegen import generate
from edgekit.firmware.estimate import estimate_before_build
from edgekit.firmware.host_run import run_on_host
from edgekit.interpreter import Interpreter
from edgekit.ir import DType

pytestmark = pytest.mark.skipif(__import__("shutil").which("gcc") is None, reason="no host gcc")

#: (model, bits) cases: every layer int4, and mixed (the first layer int8: each its own kernel)
CASES = [("kws", "4"), ("kws", "mixed:default=4,#0=8"), ("resnet", "4"),
         ("resnet", "mixed:default=4,#0=8,#-1=8")]


def _graph(model: str, bits: str):
    graph = load_tflite(mlperf_path(model))
    if bits.endswith(",#-1=8"):  # the last layer int8 too
        layers = sum(op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
                     for op in graph.ops)
        bits = bits.replace("#-1", f"#{layers - 1}")
    # through the .tflite writer and reader: the firmware builds what a user's file holds
    return load_tflite_bytes(to_bytes(requantize_weights(graph, bits)))


def test_packed_layout_is_tflite_int4_low_nibble_first():
    values = np.array([1, -2, 7, -8, 3], dtype=np.int8)
    packed = packed_int4(values).view(np.uint8)
    assert packed[:3].tolist() == [0xE1, 0x87, 0x03] and packed[3:].tolist() == [0] * INT4_PAD_BYTES


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("model,bits", CASES)
def test_int4_model_is_bit_exact_op_by_op(model, bits, path, kernel_objects, tmp_path):
    graph = _graph(model, bits)
    gen = generate(graph, seed=3)
    kernels = {k for k in gen.kernels if k}
    assert any(k.endswith(("_s4", "_s4_inplace", "_s4_pointwise_inplace",
                           "_s4_pointwise_inplace_backward")) for k in kernels)
    assert ("ek_conv2d_s8" in kernels) == bits.startswith("mixed")  # the int8 first layer
    run = run_on_host(gen, tmp_path, defines=PATHS[path], kernel_objects=kernel_objects[path])
    _, values = Interpreter(graph).run(gen.test_inputs, intermediates=True)
    for (step, name), got in zip(gen.traced, run.op_outputs):
        index = gen.plan.schedule[step]
        assert got == np.ascontiguousarray(values[name]).tobytes(), (
            f"{model} {bits}: step {step} op {index} ({graph.ops[index].kind}) differs")
    assert run.outputs == gen.expected_outputs


@pytest.mark.parametrize("model,bits", CASES[:3])
def test_reference_interpreter_equals_tflite_micro_on_int4(model, bits):
    from oracle_runners import TflmRunner

    graph = _graph(model, bits)
    tflm = TflmRunner(to_bytes(graph))
    rng = np.random.default_rng(5)
    for _ in range(2):
        x = [rng.integers(-128, 128, size=graph[n].shape).astype(np.int8) for n in graph.inputs]
        assert [o.tobytes() for o in Interpreter(graph).run(x)] == [o.tobytes() for o in tflm(x)]


def test_flash_counts_packed_int4_bytes():
    graph = _graph("kws", "4")
    int8 = load_tflite(mlperf_path("kws"))
    gen, gen8 = generate(graph), generate(int8)
    weights = [t for t in graph.constants() if t.dtype == DType.INT4]
    saved = sum(t.size - t.nbytes for t in weights)
    assert saved > 0 and all(stored_bytes(t) == (t.size + 1) // 2 + INT4_PAD_BYTES for t in weights)
    before, before8 = estimate_before_build(gen, None), estimate_before_build(gen8, None)
    assert before8.constants_bytes - before.constants_bytes == saved - INT4_PAD_BYTES * len(weights)
    # the generated arrays hold exactly those bytes
    source = gen.files["model_weights.c"]
    for t in weights:
        assert f"[{stored_bytes(t)}]" in source
