"""Random single-op graphs for edgekit's own ops LAYER_NORM, RMS_NORM and SILU (int8 in and
out, gamma/beta float32 constants), shared by the interpreter, C kernel and accuracy tests.

`realistic_norm` draws transformer-like activations (per-channel offsets and scales, a few
outlier channels), quantizes them and calibrates the output from the float op, as
`edgekit.converters.quantize` would; `norm_graph` draws arbitrary quantizations to reach the
kernel's corners.
"""

from __future__ import annotations

import numpy as np

from edgekit.converters.float_exec import KERNELS
from edgekit.converters.quantize import activation_quant
from edgekit.ir import DType, Graph, Op, Quantization, Tensor


def f32(v: float) -> float:
    return float(np.float32(v))


def norm_graph(rng, kind: str, shape, *, x_quant=None, y_quant=None, gamma=None, beta=None,
               epsilon: float | None = None) -> Graph:
    """One LAYER_NORM / RMS_NORM / SILU op: input ``x``, output ``y``, constants ``gamma`` and
    ``beta``; quantizations and constants random unless given."""
    c = shape[-1]
    x_quant = x_quant or Quantization.per_tensor(f32(rng.uniform(0.005, 0.5)),
                                                 int(rng.integers(-128, 128)))
    y_quant = y_quant or Quantization.per_tensor(f32(rng.uniform(0.005, 0.2)),
                                                 int(rng.integers(-100, 101)))
    tensors = [Tensor("x", shape, DType.INT8, x_quant), Tensor("y", shape, DType.INT8, y_quant)]
    inputs = ["x"]
    attrs = {}
    if kind != "SILU":
        if gamma is None:
            gamma = rng.normal(1.0, 0.5, c) * (rng.random(c) < 0.95)  # some dead channels
        tensors.append(Tensor("gamma", (c,), DType.FLOAT32, data=np.float32(gamma)))
        inputs.append("gamma")
        if kind == "LAYER_NORM":
            beta = rng.normal(0.0, 0.5, c) if beta is None else beta
            tensors.append(Tensor("beta", (c,), DType.FLOAT32, data=np.float32(beta)))
            inputs.append("beta")
        attrs["epsilon"] = f32(epsilon if epsilon is not None
                               else rng.choice([1e-5, 1e-6, 1e-3, 0.0, 0.1]))
    g = Graph(tensors, [Op(kind, inputs, ["y"], attrs, name="y")], ["x"], ["y"],
              name=kind.lower())
    g.validate()
    return g


def random_norm_case(kind: str):
    def build(rng) -> Graph:
        rank = int(rng.integers(1, 4))
        c = int(rng.choice([1, 2, 3, 8, 16, 33, 64, 100, 128, 256]))
        lead = tuple(int(rng.integers(1, 5)) for _ in range(rank - 1))
        return norm_graph(rng, kind, lead + (c,))
    return build


def realistic_norm(rng, kind: str, rows: int, channels: int):
    """(graph, float input, int8 input): transformer-like rows, input and output quantization
    calibrated on the float values (min/max, as the quantizer)."""
    offsets = rng.normal(0, 1.0, channels)
    scales = np.exp(rng.normal(0, 0.5, channels))
    scales[rng.random(channels) < 0.03] *= 8.0  # outlier channels, as in real transformers
    x = (offsets + scales * rng.normal(0, 1, (rows, channels))).astype(np.float32)
    xq = activation_quant(float(x.min()), float(x.max()))
    gamma = rng.normal(1.0, 0.3, channels).astype(np.float32)
    beta = rng.normal(0.0, 0.2, channels).astype(np.float32)
    probe = norm_graph(rng, kind, (rows, channels), x_quant=xq, y_quant=xq, gamma=gamma,
                       beta=beta, epsilon=1e-5)
    op = probe.ops[0]
    consts = [None if n == "x" else probe[n].data for n in op.inputs]
    y = KERNELS[kind](op, [x, *consts[1:]], probe)
    yq = activation_quant(float(y.min()), float(y.max()))
    g = norm_graph(rng, kind, (rows, channels), x_quant=xq, y_quant=yq, gamma=gamma, beta=beta,
                   epsilon=1e-5)
    q = np.clip(np.round(x / xq.scale[0]) + xq.zero_point[0], -128, 127).astype(np.int8)
    return g, x, q


def float_reference(graph: Graph, x: np.ndarray) -> np.ndarray:
    """The float op on ``x`` (float64), in the output's LSB units (not rounded)."""
    op = graph.ops[0]
    consts = [graph[n].data.astype(np.float64) for n in op.inputs[1:]]
    y = KERNELS[op.kind](op, [x.astype(np.float64), *consts], graph)
    q = graph["y"].quant
    return y / q.scale[0] + q.zero_point[0]


def dequantize(graph: Graph, q: np.ndarray) -> np.ndarray:
    xq = graph["x"].quant
    return (q.astype(np.float64) - xq.zero_point[0]) * float(np.float32(xq.scale[0]))


# --- the C kernels (firmware/c/kernels/ek_norm.c): params as the code generator fills them ---

from c_kernels import struct_type  # noqa: E402

NORM = struct_type("ek_norm_params", [
    ("rows", "int32_t"), ("channels", "int32_t"), ("input_zero_point", "int32_t"),
    ("subtract_mean", "int32_t"), ("eps_term", "int64_t"), ("multipliers", "void*"),
    ("shifts", "void*"), ("offsets", "void*")])
SILU = struct_type("ek_silu_params", [("size", "int32_t"), ("table", "void*")])
C_KINDS = ("LAYER_NORM", "RMS_NORM", "SILU")
#: pointer field -> (C element type, numpy dtype), as the generator declares the arrays
ARRAY_TYPES = {"multipliers": ("int32_t", np.int32), "shifts": ("int32_t", np.int32),
               "offsets": ("int64_t", np.int64), "table": ("int8_t", np.int8)}


def c_fields(graph: Graph, p) -> dict:
    """The params struct fields of the graph's one op; pointer fields as numpy arrays."""
    y = graph[graph.ops[0].outputs[0]]
    if p.kind == "SILU":
        return {"size": y.size, "table": np.ascontiguousarray(p.table, dtype=np.int8)}
    return {"rows": y.size // p.channels, "channels": p.channels,
            "input_zero_point": p.input_zero_point, "subtract_mean": int(p.subtract_mean),
            "eps_term": p.eps_term,
            **{name: np.ascontiguousarray(getattr(p, name), dtype=ARRAY_TYPES[name][1])
               for name in ("multipliers", "shifts", "offsets")}}


def kernel_calls(graph: Graph, p, fill_struct) -> list:
    """kernel_op_cases.kernel_calls for these kinds: one call, input x, no scratch."""
    struct = SILU if p.kind == "SILU" else NORM
    return [(f"ek_{p.kind.lower()}_s8", fill_struct(struct, c_fields(graph, p)), ["x"], None)]


def check_emitted(call, graph: Graph, p) -> None:
    """The generator's OpCall names the tested kernel and struct, fills the scalar fields with
    the tested values and the pointer fields with arrays of the tested contents and C types,
    and passes (x, y)."""
    want = c_fields(graph, p)
    assert call.kernel == f"ek_{p.kind.lower()}_s8"
    assert call.params_type == ("ek_silu_params" if p.kind == "SILU" else "ek_norm_params")
    arrays = {suffix: (ctype, values) for ctype, suffix, values in call.arrays}
    assert set(call.fields) == set(want), (call.fields, want)
    for name, value in want.items():
        if isinstance(value, np.ndarray):
            ctype, values = arrays[name]
            assert call.fields[name].name == f"A_{name}" and ctype == ARRAY_TYPES[name][0]
            assert np.array_equal(np.asarray(values).astype(value.dtype), value)
            assert np.array_equal(np.asarray(values).astype(np.float64), value)  # no wrap
        else:
            assert int(call.fields[name]) == int(value), name
    assert call.args == ["T_x", "T_y"], call.args
