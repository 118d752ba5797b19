"""Random single-op IR graphs with valid TFLite quantization, for per-op tests.

Every builder takes a `numpy.random.Generator` and keyword options and returns a validated
`Graph` with one input ``"x"`` (two, ``"a"`` and ``"b"``, for ADD/MUL; ``"x0"``... for
CONCATENATION), one output ``"y"`` and the op's constants. Quantization follows TFLite's int8
rules: activations per-tensor with a zero point, weights symmetric per-channel int8 (zero points
0, axis = output channel: 0 for conv/FC, 3 for depthwise), bias int32 with
``scale = input_scale * weight_scale`` and zero point 0. Every scale is float32-representable, so
a graph survives `.tflite` export and import unchanged. Write one with
``edgekit.converters.tflite_writer.to_bytes(graph)`` and run it in TFLite Micro or LiteRT.

`raw_tflite` builds a `.tflite` flatbuffer op by op from TFLite builtin codes, for models the
IR cannot express (shape arithmetic to fold, unsupported ops or dtypes).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import flatbuffers
import numpy as np
import tflite

from edgekit.converters.tflite_reader import pad_amounts
from edgekit.ir import DType, Graph, Op, Quantization, Tensor


# --- quantization helpers -----------------------------------------------------------------------

def f32(values) -> np.ndarray:
    """Round to float32 and back: the scales a .tflite file can hold exactly."""
    return np.asarray(values, dtype=np.float32).astype(np.float64)


def act_quant(rng: np.random.Generator, dtype: DType = DType.INT8) -> Quantization:
    """A per-tensor activation quantization (int16 activations are symmetric, as TFLite's)."""
    scale = f32(rng.uniform(0.01, 0.1))
    zp = 0 if dtype == DType.INT16 else int(rng.integers(-20, 21))
    return Quantization(scale.reshape(1), np.array([zp]))


def random_values(rng: np.random.Generator, shape: Sequence[int], dtype: DType) -> np.ndarray:
    """Uniform random integers over the whole range of `dtype` (int8 storage for int4)."""
    return rng.integers(dtype.min, dtype.max + 1, size=tuple(shape)).astype(dtype.numpy)


def activation_tensor(rng, name: str, shape: Sequence[int], dtype: DType = DType.INT8,
                      quant: Quantization | None = None) -> Tensor:
    return Tensor(name, tuple(shape), dtype, quant or act_quant(rng, dtype))


def weights_tensor(rng, name: str, shape: Sequence[int], axis: int,
                   dtype: DType = DType.INT8) -> Tensor:
    """Symmetric per-channel weights along `axis` (zero points 0)."""
    channels = shape[axis]
    scale = f32(rng.uniform(0.002, 0.02, size=channels) * (8.0 if dtype == DType.INT4 else 1.0))
    data = random_values(rng, shape, dtype)
    if dtype != DType.INT4:
        data[data == dtype.min] = dtype.min + 1  # symmetric range, as TFLite's quantizer makes
    return Tensor(name, tuple(shape), dtype, Quantization(scale, np.zeros(channels, np.int64), axis),
                  data)


def bias_tensor(rng, name: str, x: Tensor, w: Tensor, n: int) -> Tensor:
    """`n` int32 biases with scale = input scale * weight scale (per channel or not), zp 0."""
    scale = f32(np.float32(x.quant.scale[0]) * w.quant.scale.astype(np.float32))
    data = rng.integers(-2000, 2001, size=n).astype(np.int32)
    return Tensor(name, (n,), DType.INT32,
                  Quantization(scale, np.zeros(scale.size, np.int64), 0 if scale.size > 1 else None),
                  data)


def _output_quant(rng, x: Tensor, w: Tensor, fan_in: int, dtype: DType = DType.INT8) -> Quantization:
    # The accumulator's real-valued spread is about in_scale * w_scale * 73^2 * sqrt(fan_in) for
    # uniform operands; this output scale spans a few standard deviations, so outputs neither
    # saturate nor collapse to one value.
    spread = x.quant.scale[0] * float(np.mean(w.quant.scale)) * np.sqrt(fan_in)
    scale = f32(spread * rng.uniform(60, 200) * (256.0 if dtype == DType.INT16 else 1.0))
    zp = 0 if dtype == DType.INT16 else int(rng.integers(-10, 11))
    return Quantization(scale.reshape(1), np.array([zp]))


def _single(tensors: list[Tensor], op: Op, inputs: list[str], name: str) -> Graph:
    return Graph(tensors, [op], inputs, ["y"], name=name)


# --- builders ------------------------------------------------------------------------------------

def shrink_channels(graph: Graph, channels: Sequence[int], factor: float = 2**20,
                    live: bool = False) -> Graph:
    """``graph`` with the filter scale (and so the bias scale) of ``channels`` divided by
    ``factor``: their right shifts grow by log2(factor); with 2**20 every sum they reach rounds
    to the zero point. ``live``: their biases are set where the output rounds up by one, so
    the sums still move it (the channels keep their long right shifts without being constant:
    edgekit.constant_channels)."""
    channels = list(channels)
    x, y = graph[graph.ops[0].inputs[0]], graph[graph.ops[0].outputs[0]]
    tensors = []
    for t in graph.tensors.values():
        if t.name in ("w", "bias"):
            scale = np.array(t.quant.scale, dtype=np.float64)
            scale[channels] /= factor
            t = dataclasses.replace(t, quant=dataclasses.replace(t.quant, scale=scale))
            if t.name == "bias" and live:
                data = t.data.copy()
                data[channels] = np.round(0.5 * float(y.quant.scale[0]) / scale[channels])
                t = dataclasses.replace(t, data=data)
        tensors.append(t)
    return Graph(tensors, graph.ops, graph.inputs, graph.outputs, name=graph.name)


def chain(in_shape, layers: Sequence[Callable[[tuple], Graph]], name: str = "chain") -> Graph:
    """Single-op graphs in a row: each of ``layers`` makes one (x -> y, with its constants) from
    its input shape; the op i's tensors are renamed w{i}, bias{i} (and so on) and t{i}, and
    each reads the previous one's output (the first, the graph input x)."""
    tensors, ops, previous, shape = [], [], None, in_shape
    for i, layer in enumerate(layers):
        g = layer(shape)
        names = {t: (previous or "x") if t == "x" else f"t{i}" if t == "y" else f"{t}{i}"
                 for t in g.tensors}
        for t in g.tensors.values():
            if t.name == "x" and previous is not None:
                continue
            tensors.append(dataclasses.replace(t, name=names[t.name]))
        op = g.ops[0]
        ops.append(dataclasses.replace(op, inputs=[names[n] if n else n for n in op.inputs],
                                       outputs=[names[n] for n in op.outputs], name=f"t{i}"))
        previous, shape = f"t{i}", g["y"].shape
    return Graph(tensors, ops, ["x"], [previous], name=name)


def conv2d(rng: np.random.Generator, *, in_shape=(1, 9, 9, 3), out_channels: int = 4,
           kernel=(3, 3), stride=(1, 1), dilation=(1, 1), padding: str = "SAME",
           activation: str = "NONE", per_channel: bool = True, bias: bool = True,
           weight_dtype: DType = DType.INT8, act_dtype: DType = DType.INT8) -> Graph:
    """CONV_2D with SAME/VALID padding resolved to explicit amounts."""
    x = activation_tensor(rng, "x", in_shape, act_dtype)
    w = weights_tensor(rng, "w", (out_channels, *kernel, in_shape[3]), 0, weight_dtype)
    if not per_channel:
        w.quant = Quantization(w.quant.scale[:1], np.array([0]))
    oh, top, bottom = pad_amounts(in_shape[1], kernel[0], stride[0], dilation[0], padding)
    ow, left, right = pad_amounts(in_shape[2], kernel[1], stride[1], dilation[1], padding)
    fan_in = kernel[0] * kernel[1] * in_shape[3]
    y = Tensor("y", (in_shape[0], oh, ow, out_channels), act_dtype,
               _output_quant(rng, x, w, fan_in, act_dtype))
    tensors = [x, w, y]
    b_name = None
    if bias:
        tensors.append(bias_tensor(rng, "bias", x, w, out_channels))
        b_name = "bias"
    op = Op("CONV_2D", ["x", "w", b_name], ["y"],
            {"stride": tuple(stride), "dilation": tuple(dilation),
             "pad": (top, bottom, left, right), "activation": activation}, name="y")
    return _single(tensors, op, ["x"], "conv2d")


def depthwise_conv2d(rng: np.random.Generator, *, in_shape=(1, 9, 9, 4), multiplier: int = 1,
                     kernel=(3, 3), stride=(1, 1), dilation=(1, 1), padding: str = "SAME",
                     activation: str = "NONE", bias: bool = True) -> Graph:
    """DEPTHWISE_CONV_2D, weights [1, H, W, C*multiplier] quantized on axis 3."""
    channels = in_shape[3] * multiplier
    x = activation_tensor(rng, "x", in_shape)
    w = weights_tensor(rng, "w", (1, *kernel, channels), 3)
    oh, top, bottom = pad_amounts(in_shape[1], kernel[0], stride[0], dilation[0], padding)
    ow, left, right = pad_amounts(in_shape[2], kernel[1], stride[1], dilation[1], padding)
    y = Tensor("y", (in_shape[0], oh, ow, channels), DType.INT8,
               _output_quant(rng, x, w, kernel[0] * kernel[1]))
    tensors = [x, w, y]
    if bias:
        tensors.append(bias_tensor(rng, "bias", x, w, channels))
    op = Op("DEPTHWISE_CONV_2D", ["x", "w", "bias" if bias else None], ["y"],
            {"stride": tuple(stride), "dilation": tuple(dilation),
             "pad": (top, bottom, left, right), "depth_multiplier": multiplier,
             "activation": activation}, name="y")
    return _single(tensors, op, ["x"], "depthwise_conv2d")


def fully_connected(rng: np.random.Generator, *, batch: int = 1, in_features: int = 16,
                    out_features: int = 8, activation: str = "NONE", bias: bool = True,
                    per_channel: bool = True, weight_dtype: DType = DType.INT8) -> Graph:
    """FULLY_CONNECTED: x [batch, K], w [N, K], bias [N]."""
    x = activation_tensor(rng, "x", (batch, in_features))
    w = weights_tensor(rng, "w", (out_features, in_features), 0, weight_dtype)
    if not per_channel:
        w.quant = Quantization(w.quant.scale[:1], np.array([0]))
    y = Tensor("y", (batch, out_features), DType.INT8, _output_quant(rng, x, w, in_features))
    tensors = [x, w, y]
    if bias:
        tensors.append(bias_tensor(rng, "bias", x, w, out_features))
    op = Op("FULLY_CONNECTED", ["x", "w", "bias" if bias else None], ["y"],
            {"activation": activation, "keep_num_dims": False}, name="y")
    return _single(tensors, op, ["x"], "fully_connected")


def _binary(rng, kind: str, shape_a, shape_b, activation: str) -> Graph:
    a = activation_tensor(rng, "a", shape_a)
    b = activation_tensor(rng, "b", shape_b)
    out_shape = np.broadcast_shapes(tuple(shape_a), tuple(shape_b))
    if kind == "ADD":
        scale = f32(2 * max(a.quant.scale[0], b.quant.scale[0]) * rng.uniform(0.8, 1.5))
    else:
        scale = f32(a.quant.scale[0] * b.quant.scale[0] * 128 * rng.uniform(0.5, 1.5))
    y = Tensor("y", out_shape, DType.INT8,
               Quantization(scale.reshape(1), np.array([int(rng.integers(-10, 11))])))
    op = Op(kind, ["a", "b"], ["y"], {"activation": activation}, name="y")
    return _single([a, b, y], op, ["a", "b"], kind.lower())


def add(rng: np.random.Generator, *, shape_a=(1, 4, 4, 8), shape_b=(1, 4, 4, 8),
        activation: str = "NONE") -> Graph:
    """ADD of two int8 activations (broadcasting allowed)."""
    return _binary(rng, "ADD", shape_a, shape_b, activation)


def mul(rng: np.random.Generator, *, shape_a=(1, 4, 4, 8), shape_b=(1, 4, 4, 8),
        activation: str = "NONE") -> Graph:
    """MUL of two int8 activations (broadcasting allowed)."""
    return _binary(rng, "MUL", shape_a, shape_b, activation)


def pool2d(rng: np.random.Generator, *, kind: str = "AVERAGE_POOL_2D", in_shape=(1, 8, 8, 4),
           filter_size=(2, 2), stride=(2, 2), padding: str = "VALID",
           activation: str = "NONE") -> Graph:
    """AVERAGE_POOL_2D or MAX_POOL_2D; TFLite requires output quantization == input's."""
    x = activation_tensor(rng, "x", in_shape)
    oh, top, bottom = pad_amounts(in_shape[1], filter_size[0], stride[0], 1, padding)
    ow, left, right = pad_amounts(in_shape[2], filter_size[1], stride[1], 1, padding)
    y = Tensor("y", (in_shape[0], oh, ow, in_shape[3]), DType.INT8, x.quant)
    op = Op(kind, ["x"], ["y"], {"filter": tuple(filter_size), "stride": tuple(stride),
                                 "pad": (top, bottom, left, right), "activation": activation},
            name="y")
    return _single([x, y], op, ["x"], kind.lower())


def mean(rng: np.random.Generator, *, in_shape=(1, 4, 4, 8), axes=(1, 2),
         keep_dims: bool = True) -> Graph:
    """MEAN over `axes` (int8)."""
    x = activation_tensor(rng, "x", in_shape)
    out_shape = [1 if i in axes else d for i, d in enumerate(in_shape) if keep_dims or i not in axes]
    y = Tensor("y", tuple(out_shape), DType.INT8, act_quant(rng))
    op = Op("MEAN", ["x"], ["y"], {"axes": tuple(sorted(axes)), "keep_dims": keep_dims}, name="y")
    return _single([x, y], op, ["x"], "mean")


def _unary(rng, kind: str, shape, out_quant: Quantization | None, attrs: dict[str, Any],
           in_dtype: DType = DType.INT8, out_dtype: DType = DType.INT8) -> Graph:
    x = activation_tensor(rng, "x", shape, in_dtype) if in_dtype != DType.FLOAT32 else \
        Tensor("x", tuple(shape), DType.FLOAT32)
    if out_dtype == DType.FLOAT32:
        y = Tensor("y", tuple(shape), DType.FLOAT32)
    else:
        y = Tensor("y", tuple(shape), out_dtype, out_quant or act_quant(rng, out_dtype))
    op = Op(kind, ["x"], ["y"], attrs, name="y")
    return _single([x, y], op, ["x"], kind.lower())


def softmax(rng: np.random.Generator, *, shape=(1, 10), beta: float = 1.0) -> Graph:
    """SOFTMAX; TFLite requires the int8 output at scale 1/256, zero point -128."""
    return _unary(rng, "SOFTMAX", shape, Quantization.per_tensor(1 / 256, -128),
                  {"beta": float(np.float32(beta))})


def logistic(rng: np.random.Generator, *, shape=(1, 4, 4, 8)) -> Graph:
    """LOGISTIC; TFLite requires the int8 output at scale 1/256, zero point -128."""
    return _unary(rng, "LOGISTIC", shape, Quantization.per_tensor(1 / 256, -128), {})


def hard_swish(rng: np.random.Generator, *, shape=(1, 4, 4, 8)) -> Graph:
    """HARD_SWISH (int8 in and out, independent quantization)."""
    return _unary(rng, "HARD_SWISH", shape, None, {})


def relu(rng: np.random.Generator, *, kind: str = "RELU", shape=(1, 4, 4, 8)) -> Graph:
    """RELU or RELU6 as standalone ops."""
    return _unary(rng, kind, shape, None, {})


def quantize(rng: np.random.Generator, *, shape=(1, 16), from_float: bool = True) -> Graph:
    """QUANTIZE float32 -> int8, or int8 -> int8 requantization when `from_float` is False."""
    return _unary(rng, "QUANTIZE", shape, None, {},
                  in_dtype=DType.FLOAT32 if from_float else DType.INT8)


def dequantize(rng: np.random.Generator, *, shape=(1, 16)) -> Graph:
    """DEQUANTIZE int8 -> float32."""
    return _unary(rng, "DEQUANTIZE", shape, None, {}, out_dtype=DType.FLOAT32)


def reshape(rng: np.random.Generator, *, in_shape=(1, 2, 2, 8), out_shape=(1, 32)) -> Graph:
    """RESHAPE (output keeps the input's quantization, as TFLite requires)."""
    x = activation_tensor(rng, "x", in_shape)
    y = Tensor("y", tuple(out_shape), DType.INT8, x.quant)
    return _single([x, y], Op("RESHAPE", ["x"], ["y"], {}, name="y"), ["x"], "reshape")


def pad(rng: np.random.Generator, *, in_shape=(1, 4, 4, 3),
        paddings=((0, 0), (1, 2), (2, 1), (0, 0))) -> Graph:
    """PAD (int8; padded with the zero point; output quantization == input's)."""
    x = activation_tensor(rng, "x", in_shape)
    out = tuple(d + b + a for d, (b, a) in zip(in_shape, paddings))
    y = Tensor("y", out, DType.INT8, x.quant)
    op = Op("PAD", ["x"], ["y"], {"paddings": tuple(tuple(p) for p in paddings)}, name="y")
    return _single([x, y], op, ["x"], "pad")


def concatenation(rng: np.random.Generator, *, shapes=((1, 4, 4, 3), (1, 4, 4, 5)),
                  axis: int = 3, activation: str = "NONE") -> Graph:
    """CONCATENATION of int8 inputs; TFLite requires one quantization for inputs and output."""
    quant = act_quant(rng)
    xs = [activation_tensor(rng, f"x{i}", s, quant=quant) for i, s in enumerate(shapes)]
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    y = Tensor("y", tuple(out), DType.INT8, quant)
    op = Op("CONCATENATION", [x.name for x in xs], ["y"], {"axis": axis, "activation": activation},
            name="y")
    return _single([*xs, y], op, [x.name for x in xs], "concatenation")


def slice_box(rng: np.random.Generator, *, in_shape=(1, 7, 6, 3), begin=(0, 2, 1, 0),
              size=(1, 4, 3, 3), dtype: DType = DType.INT8) -> Graph:
    """SLICE of a box (patch schedules cut regions of whole pixels)."""
    x = activation_tensor(rng, "x", in_shape, dtype)
    y = Tensor("y", tuple(size), dtype, x.quant)
    return _single([x, y], Op("SLICE", ["x"], ["y"], {"begin": tuple(begin)}, name="y"), ["x"],
                   "slice")


def insert_tile(rng: np.random.Generator, *, out_shape=(1, 6, 7, 4), tile_shape=(1, 3, 2, 4),
                origin=(0, 2, 4, 0), base: bool = True, dtype: DType = DType.INT8) -> Graph:
    """INSERT_TILE: a tile written into a feature map (with a base tensor, or into a fresh
    output filled with the zero point)."""
    quant = act_quant(rng, dtype)
    tile = activation_tensor(rng, "tile", tile_shape, dtype, quant)
    y = Tensor("y", tuple(out_shape), dtype, quant)
    tensors, inputs = [tile, y], ["tile"]
    if base:
        tensors.append(activation_tensor(rng, "base", out_shape, dtype, quant))
        inputs = ["base", "tile"]
    op = Op("INSERT_TILE", ["base" if base else None, "tile"], ["y"], {"origin": tuple(origin)},
            name="y")
    return _single(tensors, op, inputs, "insert_tile")


#: one default graph per IR op kind, for tests that sweep every kind
BUILDERS: dict[str, Callable[[np.random.Generator], Graph]] = {
    "CONV_2D": conv2d, "DEPTHWISE_CONV_2D": depthwise_conv2d,
    "FULLY_CONNECTED": fully_connected, "ADD": add, "MUL": mul,
    "AVERAGE_POOL_2D": lambda rng: pool2d(rng, kind="AVERAGE_POOL_2D"),
    "MAX_POOL_2D": lambda rng: pool2d(rng, kind="MAX_POOL_2D"),
    "MEAN": mean, "RESHAPE": reshape, "SOFTMAX": softmax, "LOGISTIC": logistic,
    "HARD_SWISH": hard_swish, "RELU": relu, "RELU6": lambda rng: relu(rng, kind="RELU6"),
    "PAD": pad, "CONCATENATION": concatenation, "QUANTIZE": quantize, "DEQUANTIZE": dequantize,
}


def random_input(rng: np.random.Generator, tensor: Tensor) -> np.ndarray:
    """A random value for a graph input (uniform ints, or floats in a few scales' range)."""
    if tensor.dtype == DType.FLOAT32:
        return rng.uniform(-3, 3, size=tensor.shape).astype(np.float32)
    return random_values(rng, tensor.shape, tensor.dtype)


# --- raw flatbuffers for models the IR cannot express -----------------------------------------

def raw_tflite(tensors: Sequence[dict], ops: Sequence[dict], inputs: Sequence[int],
               outputs: Sequence[int]) -> bytes:
    """Build a .tflite file from raw parts.

    tensors: dicts with ``name``, ``shape``, ``type`` (a `tflite.TensorType` value), optional
    ``data`` (bytes) and ``scale``/``zero_point`` lists. ops: dicts with ``op`` (a
    `tflite.BuiltinOperator` value, or a string for a custom op), ``inputs``, ``outputs`` and
    optional ``options``: ``(BuiltinOptions type, fn(builder) -> table offset)``.
    """
    b = flatbuffers.Builder(1024)
    buffers: list[bytes] = [b""]
    tensor_offsets = []
    for t in tensors:
        buffer = 0
        if t.get("data") is not None:
            buffers.append(bytes(t["data"]))
            buffer = len(buffers) - 1
        name = b.CreateString(t["name"])
        shape = b.CreateNumpyVector(np.asarray(t["shape"], dtype=np.int32))
        quant = 0
        if "scale" in t:
            scale = b.CreateNumpyVector(np.asarray(t["scale"], dtype=np.float32))
            zp = b.CreateNumpyVector(np.asarray(t.get("zero_point", [0]), dtype=np.int64))
            tflite.QuantizationParametersStart(b)
            tflite.QuantizationParametersAddScale(b, scale)
            tflite.QuantizationParametersAddZeroPoint(b, zp)
            quant = tflite.QuantizationParametersEnd(b)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape)
        tflite.TensorAddType(b, t["type"])
        tflite.TensorAddBuffer(b, buffer)
        tflite.TensorAddName(b, name)
        if quant:
            tflite.TensorAddQuantization(b, quant)
        tensor_offsets.append(tflite.TensorEnd(b))
    codes: list[Any] = []
    op_offsets = []
    for op in ops:
        if op["op"] not in codes:
            codes.append(op["op"])
        ins = b.CreateNumpyVector(np.asarray(op["inputs"], dtype=np.int32))
        outs = b.CreateNumpyVector(np.asarray(op["outputs"], dtype=np.int32))
        opts_type, opts = (op["options"][0], op["options"][1](b)) if "options" in op else (0, 0)
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, codes.index(op["op"]))
        tflite.OperatorAddInputs(b, ins)
        tflite.OperatorAddOutputs(b, outs)
        if opts:
            tflite.OperatorAddBuiltinOptionsType(b, opts_type)
            tflite.OperatorAddBuiltinOptions(b, opts)
        op_offsets.append(tflite.OperatorEnd(b))

    def vector(start, offsets):
        start(b, len(offsets))
        for off in reversed(offsets):
            b.PrependUOffsetTRelative(off)
        return b.EndVector()

    tensors_vec = vector(tflite.SubGraphStartTensorsVector, tensor_offsets)
    ops_vec = vector(tflite.SubGraphStartOperatorsVector, op_offsets)
    ins = b.CreateNumpyVector(np.asarray(inputs, dtype=np.int32))
    outs = b.CreateNumpyVector(np.asarray(outputs, dtype=np.int32))
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tensors_vec)
    tflite.SubGraphAddInputs(b, ins)
    tflite.SubGraphAddOutputs(b, outs)
    tflite.SubGraphAddOperators(b, ops_vec)
    subgraph = tflite.SubGraphEnd(b)
    code_offsets = []
    for code in codes:
        custom = b.CreateString(code) if isinstance(code, str) else 0
        tflite.OperatorCodeStart(b)
        builtin = tflite.BuiltinOperator.CUSTOM if custom else code
        tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(builtin, 127))
        tflite.OperatorCodeAddBuiltinCode(b, builtin)
        if custom:
            tflite.OperatorCodeAddCustomCode(b, custom)
        tflite.OperatorCodeAddVersion(b, 1)
        code_offsets.append(tflite.OperatorCodeEnd(b))
    buffer_offsets = []
    for payload in buffers:
        data = b.CreateNumpyVector(np.frombuffer(payload, dtype=np.uint8)) if payload else 0
        tflite.BufferStart(b)
        if data:
            tflite.BufferAddData(b, data)
        buffer_offsets.append(tflite.BufferEnd(b))
    codes_vec = vector(tflite.ModelStartOperatorCodesVector, code_offsets)
    subgraphs_vec = vector(tflite.ModelStartSubgraphsVector, [subgraph])
    buffers_vec = vector(tflite.ModelStartBuffersVector, buffer_offsets)
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, codes_vec)
    tflite.ModelAddSubgraphs(b, subgraphs_vec)
    tflite.ModelAddBuffers(b, buffers_vec)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def assert_graphs_equal(a: Graph, b: Graph) -> None:
    """Same tensors (names, shapes, dtypes, quantization, data), ops, inputs and outputs."""
    assert set(a.tensors) == set(b.tensors), sorted(set(a.tensors) ^ set(b.tensors))
    for name, t in a.tensors.items():
        u = b.tensors[name]
        assert (t.shape, t.dtype) == (u.shape, u.dtype), name
        assert t.quant == u.quant, (name, t.quant, u.quant)
        assert (t.data is None) == (u.data is None), name
        if t.data is not None:
            assert t.data.dtype == u.data.dtype and np.array_equal(t.data, u.data), name
    assert a.inputs == b.inputs and a.outputs == b.outputs
    assert len(a.ops) == len(b.ops)
    for op, other in zip(a.ops, b.ops):
        assert (op.kind, op.inputs, op.outputs) == (other.kind, other.inputs, other.outputs)
        strip = lambda attrs: {k: v for k, v in attrs.items() if k != "tflite_index"}  # noqa: E731
        assert strip(op.attrs) == strip(other.attrs), (op.kind, op.attrs, other.attrs)
