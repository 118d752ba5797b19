"""edgekit's own int8 ops LAYER_NORM, RMS_NORM and SILU (`edgekit.reference.norm`): accuracy
against the float op, the documented integer steps, float execution, quantization, and the
`.tflite` custom-op round trip (TFLite has no int8 kernel for them, so there is no TFLite
oracle: the semantics are ours, checked here against float math)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import norm_cases as nc
from edgekit import reference
from edgekit.converters.float_exec import run_float
from edgekit.converters.quantize import quantize
from edgekit.converters.tflite_custom import CUSTOM_CODES
from edgekit.converters.tflite_flatbuffer import decode
from edgekit.converters.tflite_reader import load_tflite_bytes
from edgekit.converters.tflite_writer import to_bytes
from edgekit.errors import ModelFormatError, UnsupportedError
from edgekit.interpreter import Interpreter
from edgekit.ir import DType, Graph, Op, Tensor
from graph_builders import assert_graphs_equal

NORMS = ("LAYER_NORM", "RMS_NORM")
KINDS = NORMS + ("SILU",)


@pytest.mark.parametrize("kind", KINDS)
def test_int8_matches_float_on_realistic_rows(kind):
    """Transformer-like rows (per-channel offsets and scales, outlier channels; C = 8..768,
    64 rows), quantization calibrated as the quantizer does: the int8 output is within half an
    LSB of the float op on the dequantised input, i.e. it is the correctly rounded float result
    (measured: max 0.500, mean 0.25 / 0.22 / 0.26 LSB for LAYER_NORM / RMS_NORM / SILU; 0 of
    79,360 values differ from the rounded float). Against the float op on the unquantised input
    (the input's own rounding included) the mean error stays below 0.5 LSB (measured 0.35 /
    0.45 / 0.38; max 2.5 / 4.0 / 1.6 LSB where a row's spread is a few input LSBs): that part is
    the input's quantization, not the kernel's."""
    rng = np.random.default_rng(2024 + len(kind))
    worst, raw = 0.0, []
    for c in (8, 16, 64, 128, 256, 768):
        g, x, q = nc.realistic_norm(rng, kind, 64, c)
        y = Interpreter(g).run([q])[0].astype(np.float64)
        ideal = np.clip(nc.float_reference(g, nc.dequantize(g, q)), -128, 127)
        worst = max(worst, float(np.abs(y - ideal).max()))
        raw.append(np.abs(y - np.clip(nc.float_reference(g, x), -128, 127)).ravel())
    assert worst <= 0.5 + 1e-6, worst
    raw = np.concatenate(raw)
    assert raw.mean() <= 0.5 and raw.max() <= 5.0, (raw.mean(), raw.max())


@pytest.mark.parametrize("kind", NORMS)
def test_norm_within_one_lsb_on_arbitrary_quantizations(kind):
    """Random shapes (C = 1..256), scales, zero points, epsilons, uniform int8 inputs (most
    saturate): never more than 1 LSB from the float op on the dequantised input."""
    rng = np.random.default_rng(7 + len(kind))
    build = nc.random_norm_case(kind)
    for _ in range(200):
        g = build(rng)
        q = rng.integers(-128, 128, size=g["x"].shape).astype(np.int8)
        y = Interpreter(g).run([q])[0].astype(np.float64)
        ideal = np.clip(nc.float_reference(g, nc.dequantize(g, q)), -128, 127)
        assert np.abs(y - ideal).max() <= 1.0, (g.ops[0].attrs, g["x"].quant, g["y"].quant)


def _steps(p, row: np.ndarray) -> np.ndarray:
    """The docstring's steps 1-6 for one row, in plain Python integers."""
    c = p.channels
    d = [int(v) - p.input_zero_point for v in row]
    total, sq = sum(d), sum(v * v for v in d)
    if p.subtract_mean:
        s, u = c * sq - total * total, [c * v - total for v in d]
    else:
        s, u = c * sq, [c * v for v in d]
    t = s + p.eps_term
    if t == 0:
        n = [0] * c
    else:
        k = (62 - t.bit_length()) // 2
        inv = (1 << 61) // math.isqrt(t << (2 * k))
        shift = 37 - k
        n = [int(np.sign(v)) * ((abs(v) * inv + (1 << (shift - 1))) >> shift) for v in u]
    out = []
    for i, v in enumerate(n):
        m, r, b = int(p.multipliers[i]), int(p.shifts[i]), int(p.offsets[i])
        prod = v * m
        high = int(np.sign(prod)) * ((abs(prod) + (1 << 30)) >> 31)
        acc = high + b
        y = acc if r == 0 else int(np.sign(acc)) * ((abs(acc) + (1 << (r - 1))) >> r)
        out.append(min(max(y, -128), 127))
    return np.array(out, dtype=np.int8)


@pytest.mark.parametrize("kind", NORMS)
def test_kernel_is_the_documented_integer_steps(kind):
    """The vectorised kernel equals a plain-integer transcription of the module docstring
    (ties away from zero everywhere), on random rows and on constant rows (T == 0 when
    epsilon is 0)."""
    rng = np.random.default_rng(99 + len(kind))
    build = nc.random_norm_case(kind)
    for case in range(60):
        g = build(rng)
        if case % 5 == 0:
            g.ops[0].attrs["epsilon"] = 0.0
        p = reference.prepare(g.ops[0], g)
        q = rng.integers(-128, 128, size=g["x"].shape).astype(np.int8)
        if case % 3 == 0:
            q[...] = rng.integers(-128, 128)
        got = reference.run_op(p, [q, None, None]).reshape(-1, p.channels)
        for row, out in zip(q.reshape(-1, p.channels), got):
            assert out.tobytes() == _steps(p, row).tobytes(), (case, p.eps_term)


def test_silu_table_is_dequantize_silu_round():
    rng = np.random.default_rng(3)
    for _ in range(50):
        g = nc.norm_graph(rng, "SILU", (1, 256))
        p = reference.prepare(g.ops[0], g)
        xq, yq = g["x"].quant, g["y"].quant
        for q in range(-128, 128, 7):
            v = float(np.float32(xq.scale[0])) * (q - int(xq.zero_point[0]))
            t = v / (1 + math.exp(-v)) if v > -700 else 0.0
            r = t / float(np.float32(yq.scale[0]))
            want = int(math.floor(abs(r) + 0.5)) * (1 if r >= 0 else -1) + int(yq.zero_point[0])
            assert int(p.table[q + 128]) == min(max(want, -128), 127)
        x = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)
        assert Interpreter(g).run([x])[0].tobytes() == p.table.tobytes()


def test_prepare_refuses_what_the_kernel_cannot_do():
    rng = np.random.default_rng(0)
    g = nc.norm_graph(rng, "LAYER_NORM", (2, 8))
    g.tensors["gamma"] = Tensor("gamma", (8,), DType.FLOAT32, data=np.full(8, 1e9, np.float32))
    with pytest.raises(UnsupportedError, match="gamma"):
        reference.prepare(g.ops[0], g)
    g = nc.norm_graph(rng, "RMS_NORM", (2, 8))
    g.ops[0].attrs["epsilon"] = -1.0
    with pytest.raises(UnsupportedError, match="epsilon"):
        reference.prepare(g.ops[0], g)
    g = nc.norm_graph(rng, "LAYER_NORM", (1, 5000))
    with pytest.raises(UnsupportedError, match="4096"):
        reference.prepare(g.ops[0], g)


def _float_graph(rng, kind: str, c: int) -> Graph:
    tensors = [Tensor("x", (1, 6, c), DType.FLOAT32), Tensor("y", (1, 6, c), DType.FLOAT32)]
    inputs = ["x"]
    if kind != "SILU":
        tensors.append(Tensor("gamma", (c,), DType.FLOAT32,
                              data=rng.normal(1, 0.2, c).astype(np.float32)))
        inputs.append("gamma")
    if kind == "LAYER_NORM":
        tensors.append(Tensor("beta", (c,), DType.FLOAT32,
                              data=rng.normal(0, 0.2, c).astype(np.float32)))
        inputs.append("beta")
    attrs = {} if kind == "SILU" else {"epsilon": 1e-5}
    return Graph(tensors, [Op(kind, inputs, ["y"], attrs, name="y")], ["x"], ["y"], name="f")


@pytest.mark.parametrize("kind", KINDS)
def test_float_kernel_and_quantized_graph(kind):
    """The float executor computes the textbook op; the quantizer keeps gamma/beta float32,
    calibrates the output, and the int8 graph is within 2 LSB of the float graph."""
    rng = np.random.default_rng(11)
    g = _float_graph(rng, kind, 32)
    x = rng.normal(0.5, 2.0, (20, 6, 32)).astype(np.float32)
    y = run_float(g, [x])[0].astype(np.float64)
    xd = x.astype(np.float64)
    if kind == "SILU":
        want = xd / (1 + np.exp(-xd))
    else:
        centred = xd - xd.mean(-1, keepdims=True) if kind == "LAYER_NORM" else xd
        want = centred / np.sqrt((centred ** 2).mean(-1, keepdims=True) + 1e-5) * g["gamma"].data
        want = want + g["beta"].data if kind == "LAYER_NORM" else want
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)
    qg = quantize(g, x)
    for name in qg.ops[0].inputs[1:]:
        assert qg[name].dtype == DType.FLOAT32 and np.array_equal(qg[name].data, g[name].data)
    yq = qg["y"].quant
    assert yq is not None and qg["y"].dtype == DType.INT8
    xq = qg["x"].quant
    q = np.clip(np.round(x / xq.scale[0]) + xq.zero_point[0], -128, 127).astype(np.int8)
    interp = Interpreter(qg)
    got = np.concatenate([interp.run([q[i:i + 1]])[0] for i in range(len(q))]).astype(np.float64)
    lsb = np.abs((got - yq.zero_point[0]) * yq.scale[0] - y) / yq.scale[0]
    assert lsb.max() <= 2.0, lsb.max()


@pytest.mark.parametrize("kind", KINDS)
def test_tflite_custom_op_round_trip(kind):
    """Exported as custom op EDGEKIT_<KIND> with a flexbuffer epsilon; our reader gives the
    same graph back and our interpreter the same output bytes."""
    rng = np.random.default_rng(5 + len(kind))
    for _ in range(10):
        g = nc.random_norm_case(kind)(rng)
        data = to_bytes(g)
        raw = decode(data, "<test>")
        assert [op.op_name for op in raw.ops] == [f"CUSTOM:{CUSTOM_CODES[kind]}"]
        assert bool(raw.ops[0].custom_options) == (kind != "SILU")
        back = load_tflite_bytes(data)
        assert back.ops[0].attrs["tflite_index"] == 0
        assert_graphs_equal(g, back)
        x = rng.integers(-128, 128, size=g["x"].shape).astype(np.int8)
        assert Interpreter(g).run([x])[0].tobytes() == Interpreter(back).run([x])[0].tobytes()


def test_damaged_custom_options_are_a_format_error():
    g = nc.norm_graph(np.random.default_rng(1), "LAYER_NORM", (2, 8), epsilon=1e-5)
    data = bytearray(to_bytes(g))
    key = data.find(b"epsilon")
    data[key:key + 7] = b"epsilom"
    with pytest.raises(ModelFormatError, match="epsilon"):
        load_tflite_bytes(bytes(data))


def test_tflite_micro_refuses_edgekit_ops():
    """TFLite Micro has no kernel for the custom ops: the documented refusal, not a wrong
    answer (tflite_custom's docstring tells users so)."""
    runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    g = nc.norm_graph(np.random.default_rng(2), "SILU", (1, 8))
    with pytest.raises(RuntimeError, match="allocate"):  # after "Failed to get registration
        runtime.Interpreter.from_bytes(to_bytes(g))   # from op code CUSTOM" on stderr
