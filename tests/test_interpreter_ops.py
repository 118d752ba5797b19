"""Per-op randomized bit-exactness: our reference interpreter vs TFLite Micro (the oracle).

Every IR op kind gets many random single-op graphs (shapes, strides, padding, dilation,
per-channel or per-tensor quantization, fused activations, int4 weights, int16 activations where
TFLite Micro supports them), exported with our `.tflite` writer, run in TFLite Micro's reference
kernels and in our interpreter on random inputs; the outputs must be byte-for-byte equal.
Fixed seeds: the same cases every run. Case counts per op are asserted at the end.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import graph_builders as gb
import transformer_builders as tb
from norm_cases import random_norm_case
from oracle_runners import LiteRTRunner, TflmRunner
from edgekit import fixedpoint as fp
from edgekit.converters.tflite_writer import to_bytes
from edgekit.ir import DType, Graph, Quantization, Tensor
from edgekit.interpreter import Interpreter

ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")
CASES_PER_OP = 100
INPUTS_PER_CASE = 3


def _padding(rng) -> str:
    return str(rng.choice(["SAME", "VALID"]))


def _spatial(rng, lo=1, hi=12) -> tuple[int, int]:
    return int(rng.integers(lo, hi)), int(rng.integers(lo, hi))


def _with_int64_bias(graph: Graph) -> Graph:
    """The same graph with its int32 bias widened to int64 (TFLite's 16x8 bias option)."""
    tensors = []
    for t in graph.tensors.values():
        if t.name == "bias":
            t = Tensor(t.name, t.shape, DType.INT64, t.quant, t.data.astype(np.int64))
        tensors.append(t)
    return Graph(tensors, graph.ops, graph.inputs, graph.outputs, graph.name)


def conv_case(rng) -> Graph:
    kernel = _spatial(rng, 1, 5)
    dilation = (1, 1) if rng.random() < 0.6 else _spatial(rng, 1, 3)
    stride = _spatial(rng, 1, 3)
    need = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    h, w = (int(rng.integers(n, n + 8)) for n in need)
    weight_dtype = DType.INT4 if rng.random() < 0.2 else DType.INT8
    act_dtype = DType.INT16 if weight_dtype == DType.INT8 and rng.random() < 0.2 else DType.INT8
    graph = gb.conv2d(rng, in_shape=(int(rng.integers(1, 3)), h, w, int(rng.integers(1, 9))),
                      out_channels=int(rng.integers(1, 12)), kernel=kernel, stride=stride,
                      dilation=dilation, padding=_padding(rng),
                      activation=str(rng.choice(ACTIVATIONS)),
                      per_channel=bool(rng.random() < 0.8), bias=bool(rng.random() < 0.85),
                      weight_dtype=weight_dtype, act_dtype=act_dtype)
    if act_dtype == DType.INT16 and "bias" in graph.tensors and rng.random() < 0.5:
        graph = _with_int64_bias(graph)
    return graph


def depthwise_case(rng) -> Graph:
    kernel = _spatial(rng, 1, 5)
    dilation = (1, 1) if rng.random() < 0.6 else _spatial(rng, 1, 3)
    need = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    h, w = (int(rng.integers(n, n + 8)) for n in need)
    return gb.depthwise_conv2d(rng, in_shape=(1, h, w, int(rng.integers(1, 9))),
                               multiplier=int(rng.choice([1, 1, 2, 3])), kernel=kernel,
                               stride=_spatial(rng, 1, 3), dilation=dilation,
                               padding=_padding(rng), activation=str(rng.choice(ACTIVATIONS)),
                               # TFLite requires a depthwise bias: LiteRT refuses a model without
                               # one and TFLite Micro's host build segfaults on it
                               bias=True)


def fc_case(rng) -> Graph:
    int4 = rng.random() < 0.25
    return gb.fully_connected(rng, batch=int(rng.integers(1, 4)),
                              in_features=int(rng.integers(1, 200)),
                              out_features=int(rng.integers(1, 40)),
                              activation=str(rng.choice(ACTIVATIONS)),
                              bias=bool(rng.random() < 0.85),
                              # TFLite Micro runs int4 FC weights per-tensor only
                              per_channel=bool(not int4 and rng.random() < 0.5),
                              weight_dtype=DType.INT4 if int4 else DType.INT8)


def _broadcast_shapes(rng) -> tuple[tuple, tuple]:
    rank = int(rng.integers(1, 5))
    full = tuple(int(rng.integers(1, 6)) for _ in range(rank))
    if rng.random() < 0.4:
        return full, full
    other = tuple(d if rng.random() < 0.5 else 1 for d in full)
    other = other[int(rng.integers(0, rank)):] if rng.random() < 0.3 else other
    return (full, other) if rng.random() < 0.5 else (other, full)


def add_case(rng) -> Graph:
    a, b = _broadcast_shapes(rng)
    return gb.add(rng, shape_a=a, shape_b=b, activation=str(rng.choice(ACTIVATIONS)))


def mul_case(rng) -> Graph:
    a, b = _broadcast_shapes(rng)
    return gb.mul(rng, shape_a=a, shape_b=b, activation=str(rng.choice(ACTIVATIONS)))


def pool_case(kind):
    def build(rng) -> Graph:
        filt = _spatial(rng, 1, 5)
        h, w = (int(rng.integers(f, f + 8)) for f in filt)
        return gb.pool2d(rng, kind=kind, in_shape=(int(rng.integers(1, 3)), h, w,
                                                   int(rng.integers(1, 9))),
                         filter_size=filt, stride=_spatial(rng, 1, 4), padding=_padding(rng),
                         activation=str(rng.choice(ACTIVATIONS)))
    return build


def mean_case(rng) -> Graph:
    rank = int(rng.integers(2, 5))
    shape = tuple(int(rng.integers(1, 8)) for _ in range(rank))
    if rank == 4 and rng.random() < 0.5:
        axes = (1, 2)
    else:
        axes = tuple(sorted(rng.choice(rank, size=int(rng.integers(1, rank + 1)), replace=False)))
    graph = gb.mean(rng, in_shape=shape, axes=tuple(int(a) for a in axes),
                    keep_dims=bool(rng.random() < 0.6))
    if rng.random() < 0.25:  # identical quantization in and out: TFLite's plain integer mean
        x, y = graph["x"], graph["y"]
        y.quant = x.quant
    return graph


def softmax_case(rng) -> Graph:
    rank = int(rng.integers(1, 4))
    shape = tuple(int(rng.integers(1, 6)) for _ in range(rank - 1)) + (int(rng.integers(1, 40)),)
    graph = gb.softmax(rng, shape=shape, beta=float(rng.choice([1.0, 1.0, 0.5, 2.0])))
    graph["x"].quant = Quantization.per_tensor(float(np.float32(rng.uniform(0.01, 0.5))),
                                               int(rng.integers(-128, 128)))
    return graph


def _unary_shape(rng) -> tuple[int, ...]:
    return tuple(int(rng.integers(1, 7)) for _ in range(int(rng.integers(1, 5))))


def logistic_case(rng) -> Graph:
    graph = gb.logistic(rng, shape=_unary_shape(rng))
    graph["x"].quant = Quantization.per_tensor(float(np.float32(rng.uniform(0.005, 0.2))),
                                               int(rng.integers(-50, 50)))
    return graph


def hard_swish_case(rng) -> Graph:
    return gb.hard_swish(rng, shape=_unary_shape(rng))


def relu_case(kind):
    def build(rng) -> Graph:
        graph = gb.relu(rng, kind=kind, shape=_unary_shape(rng))
        if kind == "RELU6" or rng.random() < 0.3:
            graph["y"].quant = graph["x"].quant  # TFLite's RELU6 needs equal quantization
        return graph
    return build


def quantize_case(rng) -> Graph:
    return gb.quantize(rng, shape=_unary_shape(rng), from_float=bool(rng.random() < 0.5))


def dequantize_case(rng) -> Graph:
    return gb.dequantize(rng, shape=_unary_shape(rng))


def reshape_case(rng) -> Graph:
    shape = _unary_shape(rng)
    flat = int(np.prod(shape))
    return gb.reshape(rng, in_shape=shape, out_shape=(1, flat) if rng.random() < 0.5 else (flat,))


def pad_case(rng) -> Graph:
    shape = tuple(int(rng.integers(1, 6)) for _ in range(4))
    paddings = tuple((int(rng.integers(0, 3)), int(rng.integers(0, 3))) for _ in range(4))
    return gb.pad(rng, in_shape=shape, paddings=paddings)


def concat_case(rng) -> Graph:
    rank = int(rng.integers(1, 5))
    base = [int(rng.integers(1, 5)) for _ in range(rank)]
    axis = int(rng.integers(0, rank))
    shapes = []
    for _ in range(int(rng.integers(2, 5))):
        s = list(base)
        s[axis] = int(rng.integers(1, 5))
        shapes.append(tuple(s))
    return gb.concatenation(rng, shapes=tuple(shapes), axis=axis)


CASES = {
    "CONV_2D": conv_case, "DEPTHWISE_CONV_2D": depthwise_case, "FULLY_CONNECTED": fc_case,
    "ADD": add_case, "MUL": mul_case, "AVERAGE_POOL_2D": pool_case("AVERAGE_POOL_2D"),
    "MAX_POOL_2D": pool_case("MAX_POOL_2D"), "MEAN": mean_case, "RESHAPE": reshape_case,
    "SOFTMAX": softmax_case, "LOGISTIC": logistic_case, "HARD_SWISH": hard_swish_case,
    "RELU": relu_case("RELU"), "RELU6": relu_case("RELU6"), "PAD": pad_case,
    "CONCATENATION": concat_case, "QUANTIZE": quantize_case, "DEQUANTIZE": dequantize_case,
    **tb.CASES,
    **{kind: random_norm_case(kind) for kind in ("SILU", "LAYER_NORM", "RMS_NORM")},
}
#: edgekit's own ops: TFLite Micro has no kernel for them; their semantics are checked against
#: float math in tests/test_norm_ops.py, and here through the .tflite round trip
EDGEKIT_OPS = {"SILU", "LAYER_NORM", "RMS_NORM"}


def _random_inputs(rng, graph: Graph) -> list[np.ndarray]:
    return tb.graph_inputs(rng, graph)


def test_every_ir_op_kind_has_cases():
    from edgekit.ir import OP_KINDS
    from edgekit import reference
    # SLICE / INSERT_TILE exist only in patched graphs, which are never exported: they are
    # checked against the unpatched graph (itself checked against TFLite Micro) in
    # tests/test_patching.py
    patch_kinds = {"SLICE", "INSERT_TILE"}
    # ATTENTION exists only in firmware graphs (edgekit.attention), checked against the unfused
    # BATCH_MATMUL -> SOFTMAX -> BATCH_MATMUL in tests/test_attention_fused.py
    patch_kinds |= {"ATTENTION"}
    assert set(CASES) | patch_kinds == set(OP_KINDS) == set(reference.supported_kinds())


@pytest.mark.parametrize("kind", sorted(EDGEKIT_OPS))
def test_edgekit_op_survives_the_tflite_round_trip(kind):
    from edgekit.converters.tflite_reader import load_tflite_bytes
    rng = np.random.default_rng(sum(map(ord, kind)))
    for _ in range(CASES_PER_OP):
        graph = CASES[kind](rng)
        back = Interpreter(load_tflite_bytes(to_bytes(graph)))
        ours = Interpreter(graph)
        for _ in range(INPUTS_PER_CASE):
            inputs = _random_inputs(rng, graph)
            assert ours.run(inputs)[0].tobytes() == back.run(inputs)[0].tobytes(), kind


@pytest.mark.parametrize("kind", sorted(set(CASES) - EDGEKIT_OPS))
def test_op_bit_exact_with_tflite_micro(kind):
    rng = np.random.default_rng(sum(map(ord, kind)))
    compared = 0
    for case in range(CASES_PER_OP):
        graph = CASES[kind](rng)
        oracle = (LiteRTRunner(to_bytes(graph)) if kind in tb.LITERT_ORACLE
                  else TflmRunner(to_bytes(graph), len(graph.outputs)))
        ours = Interpreter(graph)
        for _ in range(INPUTS_PER_CASE):
            inputs = _random_inputs(rng, graph)
            expected = oracle(inputs)[0]
            got = ours.run(inputs)[0]
            assert got.dtype == expected.dtype and got.shape == expected.shape, (kind, case)
            if got.tobytes() != expected.tobytes():
                bad = np.flatnonzero(got.reshape(-1).view(np.uint8 if got.dtype.itemsize == 1
                                                          else got.dtype)
                                     != expected.reshape(-1).view(np.uint8 if got.dtype.itemsize == 1
                                                                  else got.dtype))
                pytest.fail(f"{kind} case {case}: {bad.size} of {got.size} values differ;"
                            f" first at {bad[:5]}: ours {got.reshape(-1)[bad[:5]]}, TFLM"
                            f" {expected.reshape(-1)[bad[:5]]}; graph attrs {graph.ops[0].attrs},"
                            f" shapes { {n: t.shape for n, t in graph.tensors.items()} }")
            compared += 1
    assert compared == CASES_PER_OP * INPUTS_PER_CASE


def test_depthwise_without_bias_equals_zero_bias():
    """The IR allows a bias-less depthwise conv (TFLite does not): it must equal the same conv
    with an explicit zero bias, which TFLite Micro runs."""
    rng = np.random.default_rng(7)
    for _ in range(10):
        graph = depthwise_case(rng)
        op = graph.ops[0]
        zero_bias = graph
        tensors = [t for t in graph.tensors.values() if t.name != "bias"]
        no_bias = Graph(tensors, [type(op)(op.kind, [op.inputs[0], op.inputs[1], None],
                                           op.outputs, dict(op.attrs), op.name)],
                        graph.inputs, graph.outputs)
        zero_bias["bias"].data = np.zeros_like(zero_bias["bias"].data)
        tflm = TflmRunner(to_bytes(zero_bias))
        inputs = _random_inputs(rng, graph)
        assert Interpreter(no_bias).run(inputs)[0].tobytes() == tflm(inputs)[0].tobytes()


def _boundary_fc_cases(rng, wanted: int):
    """Per-tensor 1x1 FULLY_CONNECTED graphs whose output depends on how the multiplier is
    derived: ``double(in_scale * w_scale)`` (product in float32) and
    ``double(in_scale) * double(w_scale)`` give different multipliers, and the bias puts the
    accumulator on a value where the two round to different int8 outputs (the input equals its
    zero point, so the accumulator is the bias)."""
    found = []
    for _ in range(2000):
        graph = gb.fully_connected(rng, batch=1, in_features=1, out_features=1,
                                   per_channel=False)
        sx, sw, sy = (np.float32(graph[n].quant.scale[0]) for n in ("x", "w", "y"))
        m_f32, s_f32 = fp.quantize_multiplier_scalar(float(np.float32(sx * sw)) / float(sy))
        m_dbl, s_dbl = fp.quantize_multiplier_scalar(float(sx) * float(sw) / float(sy))
        if (m_f32, s_f32) == (m_dbl, s_dbl):
            continue
        # the two can only differ next to an output rounding boundary y = k + 1/2
        real = float(sx) * float(sw) / float(sy)
        boundaries = np.rint((np.arange(-100, 100) + 0.5) / real).astype(np.int64)
        acc = (boundaries[:, None] + np.arange(-3, 4)).reshape(-1)
        acc = acc[np.abs(acc) < (1 << 30)]
        via_f32 = fp.multiply_by_quantized_multiplier(acc, m_f32, s_f32)
        via_dbl = fp.multiply_by_quantized_multiplier(acc, m_dbl, s_dbl)
        hits = np.flatnonzero((via_f32 != via_dbl) & (np.abs(via_dbl) < 100))
        if hits.size:
            graph["bias"].data = np.array([acc[hits[0]]], dtype=np.int32)
            x = np.full((1, 1), graph["x"].quant.zero_point[0], dtype=np.int8)
            found.append((graph, x))
            if len(found) == wanted:
                break
    return found


def test_fc_per_tensor_multiplier_is_a_double_product():
    cases = _boundary_fc_cases(np.random.default_rng(11), wanted=5)
    assert len(cases) == 5
    for graph, x in cases:
        expected = TflmRunner(to_bytes(graph))([x])[0]
        assert Interpreter(graph).run([x])[0].tobytes() == expected.tobytes()


def test_litert_reference_fc_is_single_rounding():
    """LiteRT's reference FULLY_CONNECTED (per-tensor and per-channel) is reproduced byte for
    byte by single rounding; TFLite Micro's double rounding differs on some bytes."""
    rng = np.random.default_rng(5)
    differing = 0
    for case in range(60):
        graph = gb.fully_connected(rng, batch=int(rng.integers(1, 4)),
                                   in_features=int(rng.integers(1, 200)),
                                   out_features=int(rng.integers(1, 40)),
                                   per_channel=bool(case % 2))
        litert = LiteRTRunner(to_bytes(graph), reference=True)
        double = Interpreter(graph)
        single = Interpreter(graph)
        single.prepared = [dataclasses.replace(p, rounding="single") for p in single.prepared]
        for _ in range(5):
            inputs = _random_inputs(rng, graph)
            expected = litert(inputs)[0]
            assert single.run(inputs)[0].tobytes() == expected.tobytes()
            differing += int((double.run(inputs)[0] != expected).sum())
    assert differing > 0
