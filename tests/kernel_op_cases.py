"""Randomized single-op cases for the C kernels of every op except convolution / depthwise /
fully connected, shared by the host tests (test_kernels_c_ops.py) and the Cortex-M tests
(test_kernels_c_ops_cortexm.py):

- ctypes mirrors of the C params structs (declaration order of the kernel headers);
- `kernel_calls(graph)`: the kernel function(s), params struct and argument tensors for a
  single-op graph, with the numbers of ``edgekit.reference.prepare`` put in the struct the way
  the code generator does (one field per Prepared field, plus shapes);
- case builders per op kind (random shapes, quantizations, activations, broadcasting, padding,
  int8 and where the reference allows int16; scales that make rounding ties common);
- `case_inputs`: random and edge inputs.
"""

from __future__ import annotations

import ctypes

import numpy as np

import graph_builders as gb
import transformer_builders as tb
import norm_cases
from c_kernels import fill_struct, struct_type
from edgekit import reference
from edgekit.ir import DType, Graph, Quantization, Tensor

SOURCES = ["ek_elementwise.c", "ek_pool.c", "ek_softmax.c", "ek_misc.c", "ek_transformer.c",
           "ek_norm.c"]
HEADERS = ["ek_elementwise.h", "ek_pool.h", "ek_softmax.h", "ek_misc.h", "ek_transformer.h",
           "ek_norm.h"]
ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")

# --- ctypes mirrors of the C params structs (declaration order of the headers) ------------------

BROADCAST = struct_type("ek_broadcast_shape", [
    ("size", "int32_t"), ("broadcast", "int32_t"), ("out_shape", "int32_t[5]"),
    ("in1_strides", "int32_t[5]"), ("in2_strides", "int32_t[5]")])
ADD = struct_type("ek_add_params", [
    *[(n, "int32_t") for n in ("input1_offset", "input2_offset", "output_offset", "left_shift",
                               "input1_multiplier", "input1_shift", "input2_multiplier",
                               "input2_shift", "output_multiplier", "output_shift", "act_min",
                               "act_max")],
    ("shape", "ek_broadcast_shape")])
MUL = struct_type("ek_mul_params", [
    *[(n, "int32_t") for n in ("input1_offset", "input2_offset", "output_offset",
                               "output_multiplier", "output_shift", "act_min", "act_max")],
    ("shape", "ek_broadcast_shape")])
REQUANTIZE = struct_type("ek_requantize_params", [
    (n, "int32_t") for n in ("input_zero_point", "output_zero_point", "multiplier", "shift",
                             "act_min", "act_max", "size")])
CLAMP = struct_type("ek_clamp_params", [("lo", "int32_t"), ("hi", "int32_t"), ("size", "int32_t")])
HARD_SWISH = struct_type("ek_hard_swish_params", [
    (n, "int32_t") for n in ("input_zero_point", "output_zero_point", "reluish_multiplier_int16",
                             "reluish_multiplier_exponent", "output_multiplier_int16",
                             "output_multiplier_exponent", "size")])
AFFINE_QUANTIZE = struct_type("ek_affine_quantize_params", [
    ("scale", "float"), ("zero_point", "int32_t"), ("size", "int32_t")])
DEQUANTIZE = struct_type("ek_dequantize_params", [
    ("scale", "double"), ("zero_point", "int32_t"), ("size", "int32_t")])
POOL = struct_type("ek_pool_params", [
    (n, "int32_t") for n in ("in_h", "in_w", "channels", "out_h", "out_w", "filter_h", "filter_w",
                             "stride_h", "stride_w", "pad_top", "pad_left", "act_min", "act_max")])
MEAN = struct_type("ek_mean_params", [
    ("in_shape", "int32_t[4]"), ("out_strides", "int32_t[4]"),
    *[(n, "int32_t") for n in ("out_size", "num_elements", "input_zero_point",
                               "output_zero_point", "multiplier", "shift")]])
SOFTMAX = struct_type("ek_softmax_params", [
    (n, "int32_t") for n in ("input_multiplier", "input_left_shift", "diff_min", "rows", "depth")])
LOGISTIC = struct_type("ek_logistic_params", [
    (n, "int32_t") for n in ("input_zero_point", "input_range_radius", "input_multiplier",
                             "input_left_shift", "size")])
PAD = struct_type("ek_pad_params", [
    ("in_shape", "int32_t[4]"), ("out_shape", "int32_t[4]"), ("before", "int32_t[4]"),
    ("pad_value", "int32_t")])
CONCAT = struct_type("ek_concatenation_params", [
    (n, "int32_t") for n in ("outer", "in_block", "out_block", "out_offset")])
RESHAPE = struct_type("ek_reshape_params", [("nbytes", "int32_t")])
COPY_ROWS = struct_type("ek_copy_rows_params", [
    (n, "int32_t") for n in ("rows", "row_bytes", "src_offset", "src_stride", "dst_offset",
                             "dst_stride")])

BATCH_MATMUL = struct_type("ek_batch_matmul_params", [
    *[(n, "int32_t") for n in ("lhs_offset", "rhs_offset", "output_offset", "multiplier", "shift",
                               "adj_x", "adj_y", "rows", "cols", "depth")],
    ("out_batch", "int32_t[3]"), ("lhs_batch_strides", "int32_t[3]"),
    ("rhs_batch_strides", "int32_t[3]")])
TRANSPOSE = struct_type("ek_transpose_params", [
    ("out_shape", "int32_t[6]"), ("in_strides", "int32_t[6]"), ("size", "int32_t"),
    ("elem_bytes", "int32_t")])
GATHER = struct_type("ek_gather_params", [
    (n, "int32_t") for n in ("outer", "axis_size", "inner_bytes", "num_indices", "fill")])
LUT = struct_type("ek_lut_params", [("size", "int32_t"), ("lut", "int8_t[256]")])
#: kind -> (params mirror, kernel): these cases take their fields from the code generator's own
#: emitter (edgekit.firmware.op_emitters), so the test covers what the firmware compiles
TRANSFORMER = {"BATCH_MATMUL": (BATCH_MATMUL, "ek_batch_matmul_s8"),
               "TRANSPOSE": (TRANSPOSE, "ek_transpose"), "GATHER": (GATHER, "ek_gather"),
               "GELU": (LUT, "ek_lut_s8")}

ALL_STRUCTS = [COPY_ROWS, BROADCAST, ADD, MUL, REQUANTIZE, CLAMP, HARD_SWISH, AFFINE_QUANTIZE, DEQUANTIZE,
               POOL, MEAN, SOFTMAX, LOGISTIC, PAD, CONCAT, RESHAPE, BATCH_MATMUL, TRANSPOSE, GATHER,
               LUT, norm_cases.NORM, norm_cases.SILU]


SUFFIX = {DType.INT8: "s8", DType.INT16: "s16", DType.FLOAT32: "f32"}


# --- params: Prepared + graph -> struct, as the code generator emits them -----------------------

def prepared_fields(p, exclude=("kind", "out_dtype", "out_shape")) -> dict:
    return {f: getattr(p, f) for f in p.__dataclass_fields__ if f not in exclude}


def _right_aligned(shape, dims, fill=1) -> list[int]:
    return [fill] * (dims - len(shape)) + [int(d) for d in shape]


def broadcast_fields(a, b, out) -> dict:
    size = int(np.prod(out, dtype=np.int64))
    if tuple(a) == tuple(out) and tuple(b) == tuple(out):
        return {"size": size, "broadcast": 0, "out_shape": [1] * 5, "in1_strides": [0] * 5,
                "in2_strides": [0] * 5}

    def strides(shape):
        dims = _right_aligned(shape, 5)
        result, step = [0] * 5, 1
        for i in reversed(range(5)):
            result[i] = 0 if dims[i] == 1 else step
            step *= dims[i]
        return result

    return {"size": size, "broadcast": 1, "out_shape": _right_aligned(out, 5),
            "in1_strides": strides(a), "in2_strides": strides(b)}


def kernel_calls(graph: Graph) -> list[tuple[str, ctypes.Structure, list[str], str | None]]:
    """[(function, params, input tensor names, scratch bytes or None)] for the graph's one op;
    the output is always the graph output ``y``."""
    op = graph.ops[0]
    p = reference.prepare(op, graph)
    x = graph[op.inputs[0]]
    y = graph[op.outputs[0]]
    kind = op.kind
    if kind in TRANSFORMER:
        from edgekit.firmware.op_emitters import EMITTERS, EmitContext
        call = EMITTERS[kind](EmitContext(graph, op, lambda n: n, lambda s: s, None, None), p)
        struct, function = TRANSFORMER[kind]
        assert call.kernel == function and not call.arrays
        return [(function, fill_struct(struct, call.fields), op.present_inputs(), None)]
    if kind in norm_cases.C_KINDS:
        return norm_cases.kernel_calls(graph, p, fill_struct)
    if kind in ("ADD", "MUL"):
        fields = prepared_fields(p)
        fields["shape"] = broadcast_fields(graph["a"].shape, graph["b"].shape, y.shape)
        struct = ADD if kind == "ADD" else MUL
        return [(f"ek_{kind.lower()}_{SUFFIX[y.dtype]}", fill_struct(struct, fields),
                 ["a", "b"], None)]
    if kind in ("RELU", "QUANTIZE") and isinstance(p, reference.elementwise.RequantizeParams):
        fields = {**prepared_fields(p), "size": y.size}
        name = (f"ek_relu_{SUFFIX[y.dtype]}" if kind == "RELU"
                else f"ek_quantize_{SUFFIX[x.dtype]}_{SUFFIX[y.dtype]}")
        return [(name, fill_struct(REQUANTIZE, fields), ["x"], None)]
    if kind == "QUANTIZE":
        fields = {"scale": float(p.scale), "zero_point": p.zero_point, "size": y.size}
        return [(f"ek_quantize_f32_{SUFFIX[y.dtype]}", fill_struct(AFFINE_QUANTIZE, fields),
                 ["x"], None)]
    if kind == "DEQUANTIZE":
        fields = {"scale": p.scale, "zero_point": p.zero_point, "size": y.size}
        return [(f"ek_dequantize_{SUFFIX[x.dtype]}_f32", fill_struct(DEQUANTIZE, fields),
                 ["x"], None)]
    if kind == "RELU6":
        return [(f"ek_relu6_{SUFFIX[y.dtype]}",
                 fill_struct(CLAMP, {"lo": p.lo, "hi": p.hi, "size": y.size}), ["x"], None)]
    if kind == "HARD_SWISH":
        return [("ek_hard_swish_s8", fill_struct(HARD_SWISH, {**prepared_fields(p),
                                                               "size": y.size}), ["x"], None)]
    if kind == "LOGISTIC":
        return [("ek_logistic_s8", fill_struct(LOGISTIC, {**prepared_fields(p), "size": y.size}),
                 ["x"], None)]
    if kind == "SOFTMAX":
        depth = x.shape[-1]
        fields = {**prepared_fields(p), "rows": x.size // depth, "depth": depth}
        return [("ek_softmax_s8", fill_struct(SOFTMAX, fields), ["x"], None)]
    if kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        _, ih, iw, c = x.shape
        _, oh, ow, _ = y.shape
        fields = {"in_h": ih, "in_w": iw, "channels": c, "out_h": oh, "out_w": ow,
                  "filter_h": p.filter[0], "filter_w": p.filter[1], "stride_h": p.stride[0],
                  "stride_w": p.stride[1], "pad_top": p.pad[0], "pad_left": p.pad[2],
                  "act_min": p.act_min, "act_max": p.act_max}
        name = "avg_pool" if kind == "AVERAGE_POOL_2D" else "max_pool"
        return [(f"ek_{name}_{SUFFIX[y.dtype]}", fill_struct(POOL, fields), ["x"], None)]
    if kind == "MEAN":
        rank = len(x.shape)
        kept = [d for d in range(rank) if d not in p.axes]
        out_strides, step = [0] * rank, 1
        for d in reversed(kept):
            out_strides[d] = step
            step *= x.shape[d]
        fields = {"in_shape": _right_aligned(x.shape, 4),
                  "out_strides": _right_aligned(out_strides, 4, fill=0), "out_size": y.size,
                  **prepared_fields(p, exclude=("kind", "out_dtype", "out_shape", "axes"))}
        return [(f"ek_mean_{SUFFIX[y.dtype]}", fill_struct(MEAN, fields), ["x"], 4 * y.size)]
    if kind == "PAD":
        fields = {"in_shape": _right_aligned(x.shape, 4),
                  "out_shape": _right_aligned(y.shape, 4),
                  "before": _right_aligned([b for b, _ in p.paddings], 4, fill=0),
                  "pad_value": p.pad_value}
        return [(f"ek_pad_{SUFFIX[y.dtype]}", fill_struct(PAD, fields), ["x"], None)]
    if kind == "CONCATENATION":
        item = y.dtype.bits // 8
        outer = int(np.prod(y.shape[:p.axis], dtype=np.int64))
        inner = int(np.prod(y.shape[p.axis + 1:], dtype=np.int64)) * item
        calls, offset = [], 0
        for name in op.present_inputs():
            block = graph[name].shape[p.axis] * inner
            fields = {"outer": outer, "in_block": block, "out_block": y.shape[p.axis] * inner,
                      "out_offset": offset}
            calls.append(("ek_concatenation_copy", fill_struct(CONCAT, fields), [name], None))
            offset += block
        return calls
    if kind == "RESHAPE":
        return [("ek_reshape", fill_struct(RESHAPE, {"nbytes": y.nbytes}), ["x"], None)]
    if kind == "SLICE":
        item = y.dtype.numpy.itemsize
        _, _, w, c = x.shape
        row = y.shape[2] * c * item
        fields = {"rows": y.shape[1], "row_bytes": row,
                  "src_offset": (p.corner[1] * w + p.corner[2]) * c * item,
                  "src_stride": w * c * item, "dst_offset": 0, "dst_stride": row}
        return [("ek_copy_rows", fill_struct(COPY_ROWS, fields), ["x"], None)]
    if kind == "INSERT_TILE":  # the emitted sequence: the base copied whole, then the tile
        tile = graph["tile"]
        item = y.dtype.numpy.itemsize
        _, _, w, c = y.shape
        row = tile.shape[2] * c * item
        fields = {"rows": tile.shape[1], "row_bytes": row, "src_offset": 0, "src_stride": row,
                  "dst_offset": (p.corner[1] * w + p.corner[2]) * c * item,
                  "dst_stride": w * c * item}
        return [("ek_reshape", fill_struct(RESHAPE, {"nbytes": y.nbytes}), ["base"], None),
                ("ek_copy_rows", fill_struct(COPY_ROWS, fields), ["tile"], None)]
    raise AssertionError(f"no C kernel mapping for {kind}")


def reference_output(graph: Graph, inputs: dict[str, np.ndarray]) -> np.ndarray:
    op = graph.ops[0]
    p = reference.prepare(op, graph)
    values = {**{t.name: t.data for t in graph.constants()}, **inputs}
    return reference.run_op(p, [values[name] if name else None for name in op.inputs])


# --- random cases ---------------------------------------------------------------------------------

def _as_int16(graph: Graph) -> Graph:
    """The same graph with int16 activations (zero points 0, as TFLite's int16 quantization)."""
    tensors = []
    for t in graph.tensors.values():
        if t.dtype == DType.INT8 and not t.is_constant:
            q = Quantization(t.quant.scale, np.zeros_like(t.quant.zero_point), t.quant.axis)
            t = Tensor(t.name, t.shape, DType.INT16, q)
        tensors.append(t)
    return Graph(tensors, graph.ops, graph.inputs, graph.outputs, graph.name)


def _shape(rng, lo_rank=1, hi_rank=4, hi=7) -> tuple[int, ...]:
    return tuple(int(rng.integers(1, hi)) for _ in range(int(rng.integers(lo_rank, hi_rank + 1))))


def _broadcast_pair(rng):
    full = _shape(rng, 1, 5, 6)
    if rng.random() < 0.35:
        return full, full
    other = tuple(d if rng.random() < 0.5 else 1 for d in full)
    if rng.random() < 0.3:
        other = other[int(rng.integers(0, len(full))):]
    return (full, other) if rng.random() < 0.5 else (other, full)


def _tie_friendly(rng, graph: Graph, names=("a", "b", "x", "y")) -> Graph:
    """Scales that are one float times powers of two: the multipliers become exact powers of
    two (2^30 in Q0.31), so products land exactly on rounding ties and a kernel that rounds a
    tie the wrong way (or forgets a rounding step) is caught, which random scales almost never
    do (a tie there has a chance of about 2^-20 per element)."""
    base = float(np.float32(rng.uniform(0.01, 0.1)))
    for name in names:
        if name in graph.tensors:
            t = graph[name]
            scale = base * 2.0 ** int(rng.integers(-2, 3))
            t.quant = Quantization(np.array([scale]), t.quant.zero_point, t.quant.axis)
    return graph


def add_case(rng):
    g = gb.add(rng, shape_a=(s := _broadcast_pair(rng))[0], shape_b=s[1],
               activation=str(rng.choice(ACTIVATIONS)))
    if rng.random() < 0.4:
        g = _tie_friendly(rng, g)
    return _as_int16(g) if rng.random() < 0.2 else g


def mul_case(rng):
    g = gb.mul(rng, shape_a=(s := _broadcast_pair(rng))[0], shape_b=s[1],
               activation=str(rng.choice(ACTIVATIONS)))
    if rng.random() < 0.4:
        g = _tie_friendly(rng, g)
    return _as_int16(g) if rng.random() < 0.2 else g


def pool_case(kind):
    def build(rng):
        filt = (int(rng.integers(1, 6)), int(rng.integers(1, 6)))
        h, w = (int(rng.integers(f, f + 9)) for f in filt)
        g = gb.pool2d(rng, kind=kind, in_shape=(1, h, w, int(rng.integers(1, 20))),
                      filter_size=filt, stride=(int(rng.integers(1, 4)), int(rng.integers(1, 4))),
                      padding=str(rng.choice(["SAME", "VALID"])),
                      activation=str(rng.choice(ACTIVATIONS)))
        return _as_int16(g) if rng.random() < 0.2 else g
    return build


def mean_case(rng):
    shape = _shape(rng, 1, 4, 8)
    rank = len(shape)
    if rank == 4 and rng.random() < 0.4:
        axes = (1, 2)
    else:
        axes = tuple(sorted(int(a) for a in rng.choice(rank, size=int(rng.integers(1, rank + 1)),
                                                       replace=False)))
    g = gb.mean(rng, in_shape=shape, axes=axes, keep_dims=bool(rng.random() < 0.6))
    if rng.random() < 0.25:
        g["y"].quant = g["x"].quant
    elif rng.random() < 0.3:
        g = _tie_friendly(rng, g)
    return _as_int16(g) if rng.random() < 0.2 else g


def softmax_case(rng):
    depth = int(rng.choice([1, 2, 3, 10, 12, 37, 64, 300, 1000]))
    shape = _shape(rng, 0, 2, 4) + (depth,)
    g = gb.softmax(rng, shape=shape, beta=float(rng.choice([1.0, 1.0, 0.5, 2.0])))
    # Large input scales put diff_min inside the int8 range: differences below it are dropped.
    scale = rng.uniform(0.005, 0.5) if rng.random() < 0.6 else rng.uniform(0.5, 12.0)
    g["x"].quant = Quantization.per_tensor(float(np.float32(scale)), int(rng.integers(-128, 128)))
    return g


def logistic_case(rng):
    g = gb.logistic(rng, shape=_shape(rng))
    g["x"].quant = Quantization.per_tensor(float(np.float32(rng.uniform(0.002, 0.3))),
                                           int(rng.integers(-60, 60)))
    return g


def hard_swish_case(rng):
    return gb.hard_swish(rng, shape=_shape(rng))


def relu_case(kind):
    def build(rng):
        g = gb.relu(rng, kind=kind, shape=_shape(rng))
        if kind == "RELU6" or rng.random() < 0.3:
            g["y"].quant = g["x"].quant
        if kind == "RELU" and rng.random() < 0.3:
            g = _tie_friendly(rng, g)
        elif kind == "RELU" and rng.random() < 0.2:
            g["y"].quant = Quantization.per_tensor(float(g["x"].quant.scale[0]) / 700.0,
                                                   int(rng.integers(-20, 20)))
        return _as_int16(g) if rng.random() < 0.2 else g
    return build


def quantize_case(rng):
    from_float = bool(rng.random() < 0.5)
    g = gb.quantize(rng, shape=_shape(rng), from_float=from_float)
    roll = rng.random()
    if not from_float and roll < 0.3:  # int8 -> int16, int16 -> int8, int16 -> int16
        x, y = g["x"], g["y"]
        choice = int(rng.integers(0, 3))
        tensors = [Tensor("x", x.shape, DType.INT16 if choice else DType.INT8,
                          Quantization.per_tensor(float(x.quant.scale[0]), 0 if choice else
                                                  int(x.quant.zero_point[0]))),
                   Tensor("y", y.shape, DType.INT8 if choice == 1 else DType.INT16,
                          Quantization.per_tensor(float(y.quant.scale[0]) / 100,
                                                  int(y.quant.zero_point[0]) if choice == 1 else 0))]
        g = Graph(tensors, g.ops, g.inputs, g.outputs, g.name)
    elif from_float and roll < 0.3:
        g = _as_int16(g)
    elif not from_float and roll < 0.6:
        g = _tie_friendly(rng, g)
    return g


def dequantize_case(rng):
    g = gb.dequantize(rng, shape=_shape(rng))
    return _as_int16(g) if rng.random() < 0.3 else g


def reshape_case(rng):
    shape = _shape(rng)
    flat = int(np.prod(shape))
    return gb.reshape(rng, in_shape=shape, out_shape=(1, flat))


def pad_case(rng):
    shape = _shape(rng, 1, 4, 6)
    paddings = tuple((int(rng.integers(0, 4)), int(rng.integers(0, 4))) for _ in shape)
    g = gb.pad(rng, in_shape=shape, paddings=paddings)
    return _as_int16(g) if rng.random() < 0.2 else g


def concat_case(rng):
    rank = int(rng.integers(1, 5))
    base = [int(rng.integers(1, 5)) for _ in range(rank)]
    axis = int(rng.integers(0, rank))
    shapes = []
    for _ in range(int(rng.integers(1, 5))):
        s = list(base)
        s[axis] = int(rng.integers(1, 5))
        shapes.append(tuple(s))
    g = gb.concatenation(rng, shapes=tuple(shapes), axis=axis)
    return _as_int16(g) if rng.random() < 0.2 else g


def slice_case(rng):
    _, h, w, c = (1, *(int(v) for v in rng.integers(1, 9, size=3)))
    rows, cols = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
    begin = (0, int(rng.integers(0, h - rows + 1)), int(rng.integers(0, w - cols + 1)), 0)
    g = gb.slice_box(rng, in_shape=(1, h, w, c), begin=begin, size=(1, rows, cols, c))
    return _as_int16(g) if rng.random() < 0.2 else g


def insert_tile_case(rng):
    _, h, w, c = (1, *(int(v) for v in rng.integers(1, 9, size=3)))
    rows, cols = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
    origin = (0, int(rng.integers(0, h - rows + 1)), int(rng.integers(0, w - cols + 1)), 0)
    g = gb.insert_tile(rng, out_shape=(1, h, w, c), tile_shape=(1, rows, cols, c), origin=origin)
    return _as_int16(g) if rng.random() < 0.2 else g


CASE_BUILDERS = {
    "SLICE": slice_case, "INSERT_TILE": insert_tile_case,
    "ADD": add_case, "MUL": mul_case, "AVERAGE_POOL_2D": pool_case("AVERAGE_POOL_2D"),
    "MAX_POOL_2D": pool_case("MAX_POOL_2D"), "MEAN": mean_case, "SOFTMAX": softmax_case,
    "LOGISTIC": logistic_case, "HARD_SWISH": hard_swish_case, "RELU": relu_case("RELU"),
    "RELU6": relu_case("RELU6"), "PAD": pad_case, "CONCATENATION": concat_case,
    "QUANTIZE": quantize_case, "DEQUANTIZE": dequantize_case, "RESHAPE": reshape_case,
    **tb.CASES,
    **{kind: norm_cases.random_norm_case(kind) for kind in norm_cases.C_KINDS},
}
ELEMENTWISE_IN_PLACE = {"ADD", "MUL", "RELU", "RELU6", "HARD_SWISH", "LOGISTIC", "QUANTIZE",
                        "DEQUANTIZE", "RESHAPE",
                        # the planner's elementwise mode: row ops and lookup tables
                        "SOFTMAX", "GELU", "SILU", "LAYER_NORM", "RMS_NORM"}


def case_inputs(rng, graph: Graph, variant: int) -> dict[str, np.ndarray]:
    """Variant 0: uniform random; 1: every element the type's minimum; 2: its maximum;
    3: random with a few extremes (floats: huge, tiny, exact .5 ties)."""
    result = {}
    ids = {op.inputs[1]: graph[op.inputs[0]].shape[int(op.attrs.get("axis", 0))]
           for op in graph.ops if op.kind == "GATHER"}
    for name in graph.inputs:
        t = graph[name]
        if name in ids:  # token ids: inside the table (0 and the last row for the edge cases)
            vocab = ids[name]
            result[name] = (tb.random_indices(rng, t, vocab) if variant in (0, 3) else
                            np.full(t.shape, 0 if variant == 1 else vocab - 1, np.int32))
            continue
        value = gb.random_input(rng, t)
        if t.dtype == DType.FLOAT32:
            scale = float(graph["y"].quant.scale[0])
            if variant == 1:
                value = (np.round(value / scale) + 0.5).astype(np.float32) * np.float32(scale)
            elif variant == 2:
                value = value * np.float32(1e4)
            elif variant == 3:
                value = value.reshape(-1)
                value[: min(3, value.size)] = np.float32([3e38, -3e38, 0.0])[: min(3, value.size)]
                value = value.reshape(t.shape)
        elif variant == 1:
            value = np.full(t.shape, t.dtype.min, t.dtype.numpy)
        elif variant == 2:
            value = np.full(t.shape, t.dtype.max, t.dtype.numpy)
        result[name] = value
    return result


def equal_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


#: unary kinds whose tests also run every input value at once
UNARY_EXHAUSTIVE = {"GELU": tb.gelu_case, "LOGISTIC": logistic_case, "HARD_SWISH": hard_swish_case,
                    "RELU": relu_case("RELU"), "RELU6": relu_case("RELU6"),
                    "QUANTIZE": quantize_case, "DEQUANTIZE": dequantize_case,
                    "SOFTMAX": softmax_case, "SILU": norm_cases.random_norm_case("SILU")}
