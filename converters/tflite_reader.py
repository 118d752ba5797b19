"""Import a `.tflite` model into the Graph IR (`edgekit.ir`).

`load_tflite(path)` / `load_tflite_bytes(data)` read subgraph 0 of a TFLite flatbuffer with the
`tflite` package's generated classes (no TensorFlow at run time), fold constant shape arithmetic
(`edgekit.converters.fold`), map each remaining op onto an IR op following the table in
`edgekit.ir`, and validate everything they build:

- SAME/VALID padding becomes explicit ``pad=(top, bottom, left, right)`` computed as TFLite's
  ``ComputePaddingHeightWidth`` does (the odd pixel goes to the bottom/right); a PAD feeding
  one convolution is folded back into its pad (`edgekit.converters.pad_fold`: how our writer
  stores a pad that is neither SAME nor VALID);
- per-channel quantization keeps its axis (TFLite's ``quantized_dimension``);
- tensor names are made unique deterministically (``name``, ``name_1``, ... in tensor order;
  unnamed tensors become ``tensor<index>``);
- each op gets ``op.name`` = its first output tensor's name and
  ``op.attrs["tflite_index"]`` = its operator index in the file;
- int4 constants (TFLite ``INT4``, two per byte, low nibble first) are unpacked to int8 values.

Damaged files raise `ModelFormatError` (the flatbuffer boundary is `tflite_flatbuffer.decode`;
this module checks shapes against buffers, indices against ranges and shapes against each op's
semantics); valid files with ops or dtypes we do not implement raise `UnsupportedError` naming
the op, its index and the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from tflite.TensorType import TensorType

from edgekit.converters.fold import FoldError, fold_op
from edgekit.converters.pad_fold import fold_pads_into_convolutions
from edgekit.converters.tflite_custom import CUSTOM_ARITY, CUSTOM_KINDS, decode_options
from edgekit.converters.tflite_flatbuffer import RawModel, RawOp, RawTensor, decode
from edgekit.errors import GraphError, ModelFormatError, UnsupportedError
from edgekit.file_read import read_limited
from edgekit.ir import DType, Graph, Op, Quantization, Tensor

#: refuse files larger than this before reading them (no MCU model comes close)
MAX_FILE_BYTES = 1 << 30
#: a tensor with more elements than this is a damaged shape, not a microcontroller model
MAX_TENSOR_ELEMENTS = 1 << 28

_DTYPES = {
    TensorType.INT4: DType.INT4, TensorType.INT8: DType.INT8, TensorType.INT16: DType.INT16,
    TensorType.INT32: DType.INT32, TensorType.INT64: DType.INT64,
    TensorType.FLOAT32: DType.FLOAT32,
}
_TYPE_NAMES = {v: k for k, v in vars(TensorType).items() if k.isupper()}

#: a scale must be a normal float32 (TFLite stores float32; a denormal scale is damage)
_SMALLEST_SCALE = float(np.finfo(np.float32).tiny)
#: zero points a quantized tensor of each type may have (its own value range)
_ZERO_POINT_RANGE = {DType.INT4: (-8, 7), DType.INT8: (-128, 127), DType.INT16: (-32768, 32767),
                     DType.INT32: (-(1 << 31), (1 << 31) - 1),
                     DType.INT64: (-(1 << 63), (1 << 63) - 1)}

_ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}
_PADDING = {0: "SAME", 1: "VALID"}

#: TFLite op name -> IR kind, for the ops that map one to one (SQUEEZE and EXPAND_DIMS are
#: reshapes: their output shape is all the IR needs)
_KIND = {
    "CONV_2D": "CONV_2D", "DEPTHWISE_CONV_2D": "DEPTHWISE_CONV_2D",
    "FULLY_CONNECTED": "FULLY_CONNECTED", "ADD": "ADD", "MUL": "MUL",
    "AVERAGE_POOL_2D": "AVERAGE_POOL_2D", "MAX_POOL_2D": "MAX_POOL_2D", "MEAN": "MEAN",
    "RESHAPE": "RESHAPE", "SQUEEZE": "RESHAPE", "EXPAND_DIMS": "RESHAPE", "SOFTMAX": "SOFTMAX",
    "LOGISTIC": "LOGISTIC", "HARD_SWISH": "HARD_SWISH", "RELU": "RELU", "RELU6": "RELU6",
    "PAD": "PAD", "CONCATENATION": "CONCATENATION", "QUANTIZE": "QUANTIZE",
    "DEQUANTIZE": "DEQUANTIZE", "BATCH_MATMUL": "BATCH_MATMUL", "TRANSPOSE": "TRANSPOSE",
    "GATHER": "GATHER", "GELU": "GELU", **CUSTOM_KINDS,
}


def load_tflite(path: str | os.PathLike) -> Graph:
    """Read a `.tflite` file into a validated `Graph` named after the file."""
    path = Path(path)
    data = read_limited(path, MAX_FILE_BYTES, ModelFormatError, "TFLite model")
    return load_tflite_bytes(data, source=str(path), name=path.stem)


def load_tflite_bytes(data: bytes, source: str = "<bytes>", name: str = "model") -> Graph:
    """Read a `.tflite` model held in memory; `source` names it in error messages."""
    raw = decode(data, source)
    return _Importer(raw, source).graph(name)


def pad_amounts(in_size: int, filter_size: int, stride: int, dilation: int,
                padding: str) -> tuple[int, int, int]:
    """(out_size, pad_before, pad_after) for one spatial axis, as TFLite computes them.

    SAME: ``out = ceil(in / stride)``; VALID: ``out = ceil((in - dilated_filter + 1) / stride)``.
    The total padding ``(out - 1) * stride + dilated_filter - in`` (at least 0) is split with the
    odd pixel after (TFLite's ``ComputePaddingWithOffset``).
    """
    effective = (filter_size - 1) * dilation + 1
    if padding == "SAME":
        out = (in_size + stride - 1) // stride
    else:
        out = (in_size - effective + stride) // stride
    total = max((out - 1) * stride + effective - in_size, 0)
    return out, total // 2, total - total // 2


class _Importer:
    """Maps one decoded model onto the IR; every check raises with file and op named."""

    def __init__(self, raw: RawModel, source: str):
        self.raw = raw
        self.source = source
        self.names = _unique_names(raw.tensors)
        self.values: dict[int, np.ndarray] = {}  # tensor index -> known constant value
        self.ir_ops: list[Op] = []
        self.extra_tensors: list[Tensor] = []

    # --- errors ----------------------------------------------------------------------------------

    def _where(self, op: RawOp) -> str:
        return f"{self.source}: op {op.index} ({op.op_name})"

    def _format_error(self, op: RawOp, message: str) -> ModelFormatError:
        return ModelFormatError(f"{self._where(op)}: {message}")

    # --- tensors ---------------------------------------------------------------------------------

    def _tensor(self, index: int, op: RawOp | None = None, what: str = "tensor") -> RawTensor:
        if not 0 <= index < len(self.raw.tensors):
            where = self._where(op) if op else self.source
            raise ModelFormatError(f"{where}: {what} index {index} is out of range"
                                   f" (the model has {len(self.raw.tensors)} tensors)")
        return self.raw.tensors[index]

    def _shape(self, t: RawTensor) -> tuple[int, ...]:
        if any(d < 0 for d in t.shape):
            raise UnsupportedError(f"{self.source}: tensor {self.names[t.index]!r} has a dynamic"
                                   f" shape {t.shape}; only static shapes are supported")
        if np.prod(t.shape, dtype=np.float64) > MAX_TENSOR_ELEMENTS:
            raise ModelFormatError(f"{self.source}: tensor {self.names[t.index]!r} has an"
                                   f" implausible shape {t.shape}")
        return tuple(t.shape)

    def _dtype(self, t: RawTensor, op: RawOp | None = None) -> DType:
        dtype = _DTYPES.get(t.type)
        if dtype is None:
            where = self._where(op) if op else self.source
            type_name = _TYPE_NAMES.get(t.type, f"type code {t.type}")
            raise UnsupportedError(f"{where}: tensor {self.names[t.index]!r} has unsupported"
                                   f" dtype {type_name}")
        return dtype

    def _value(self, index: int, op: RawOp | None = None) -> np.ndarray | None:
        """The constant value of a tensor (from its buffer or folded), None for activations."""
        if index in self.values:
            return self.values[index]
        t = self._tensor(index, op)
        if not 0 <= t.buffer < len(self.raw.buffers):
            raise ModelFormatError(f"{self.source}: tensor {self.names[index]!r} refers to buffer"
                                   f" {t.buffer}, but the model has {len(self.raw.buffers)}")
        data = self.raw.buffers[t.buffer]
        if t.buffer == 0 or not data:
            return None
        if t.is_variable:
            raise UnsupportedError(f"{self.source}: tensor {self.names[index]!r} is a variable"
                                   " (stateful models are not supported)")
        if t.has_sparsity:
            raise UnsupportedError(f"{self.source}: tensor {self.names[index]!r} is sparse"
                                   " (sparse weights are not supported)")
        dtype, shape = self._dtype(t, op), self._shape(t)
        count = int(np.prod(shape, dtype=np.int64))
        need = (count + 1) // 2 if dtype == DType.INT4 else count * dtype.numpy.itemsize
        if len(data) != need:
            raise ModelFormatError(f"{self.source}: tensor {self.names[index]!r} {list(shape)}"
                                   f" {dtype.value} needs {need} bytes, but buffer {t.buffer}"
                                   f" holds {len(data)}")
        if dtype == DType.INT4:
            value = unpack_int4(data, count).reshape(shape)
        else:
            value = np.frombuffer(data, dtype=dtype.numpy.newbyteorder("<")).astype(
                dtype.numpy).reshape(shape)
        self.values[index] = value
        return value

    def _quant(self, t: RawTensor, dtype: DType, shape: tuple[int, ...]) -> Quantization | None:
        q = t.quant
        if q is None or dtype == DType.FLOAT32:
            return None
        scale = q.scale.astype(np.float64)
        zp = q.zero_point if q.zero_point.size else np.zeros(scale.shape, dtype=np.int64)
        if zp.size not in (1, scale.size):
            raise ModelFormatError(f"{self.source}: tensor {self.names[t.index]!r} has"
                                   f" {scale.size} scales but {zp.size} zero points")
        axis = None
        if scale.size > 1:
            axis = q.quantized_dimension
            if not 0 <= axis < len(shape) or shape[axis] != scale.size:
                raise ModelFormatError(f"{self.source}: tensor {self.names[t.index]!r} has"
                                       f" {scale.size} channel scales on axis {axis} of shape"
                                       f" {list(shape)}")
        if not np.all(np.isfinite(scale)) or np.any(scale < _SMALLEST_SCALE):
            raise ModelFormatError(f"{self.source}: tensor {self.names[t.index]!r} has a"
                                   f" non-positive, denormal or non-finite scale"
                                   f" {scale[:4].tolist()}")
        low, high = _ZERO_POINT_RANGE.get(dtype, (0, 0))
        if zp.size and (int(zp.min()) < low or int(zp.max()) > high):
            bad = int(zp.min()) if int(zp.min()) < low else int(zp.max())
            raise ModelFormatError(f"{self.source}: tensor {self.names[t.index]!r} has zero point"
                                   f" {bad}, outside the {dtype.value} range [{low}, {high}]")
        return Quantization(scale, zp, axis)

    def _ir_tensor(self, index: int, op: RawOp | None = None) -> Tensor:
        t = self._tensor(index, op)
        dtype, shape = self._dtype(t, op), self._shape(t)
        value = self._value(index, op)
        if dtype == DType.INT64:
            where = self._where(op) if op else self.source
            raise UnsupportedError(f"{where}: tensor {self.names[index]!r} is int64; int64 is"
                                   " only accepted for constant shape operands")
        try:
            return Tensor(self.names[index], shape, dtype, self._quant(t, dtype, shape), value)
        except GraphError as err:
            raise ModelFormatError(f"{self.source}: {err}") from None

    # --- the graph -------------------------------------------------------------------------------

    def graph(self, name: str) -> Graph:
        raw = self.raw
        # TFLite Micro refuses these in AllocateTensors; a damaged root table often reads so
        for count, what in ((len(raw.ops), "operators"), (len(raw.inputs), "inputs"),
                            (len(raw.outputs), "outputs")):
            if count == 0:
                raise ModelFormatError(f"{self.source}: subgraph 0 has no {what}; the file is"
                                       " damaged or holds no model")
        for t in raw.tensors:  # every reference valid, used or not (TFLite Micro reads them all)
            if not 0 <= t.buffer < len(raw.buffers):
                raise ModelFormatError(f"{self.source}: tensor {self.names[t.index]!r} refers to"
                                       f" buffer {t.buffer}, but the model has"
                                       f" {len(raw.buffers)}")
        for index in (*raw.inputs, *raw.outputs):
            self._tensor(index, what="subgraph input/output")
        for op in raw.ops:
            if not op.outputs:
                raise self._format_error(op, "has no outputs")
            for i in (*op.inputs, *op.outputs):
                if i != -1:
                    self._tensor(i, op)
            if not self._try_fold(op):
                self.ir_ops.append(self._convert(op))
        used: dict[int, None] = {}
        for index in raw.inputs:
            used[index] = None
        for op in self.ir_ops:
            for tensor_name in (*op.present_inputs(), *op.outputs):
                if tensor_name in self._index_of:
                    used[self._index_of[tensor_name]] = None
        for index in raw.outputs:
            used[index] = None
        tensors = [self._ir_tensor(i) for i in sorted(used)] + self.extra_tensors
        for index in raw.inputs:
            if self._value(index) is not None:
                raise ModelFormatError(f"{self.source}: graph input {self.names[index]!r} is a"
                                       " constant")
        try:
            graph = Graph(tensors, self.ir_ops, [self.names[i] for i in raw.inputs],
                          [self.names[i] for i in raw.outputs], name=name)
            return fold_pads_into_convolutions(graph)
        except GraphError as err:
            raise ModelFormatError(f"{self.source}: {err}") from None

    @property
    def _index_of(self) -> dict[str, int]:
        if not hasattr(self, "_index_cache"):
            self._index_cache = {n: i for i, n in enumerate(self.names)}
        return self._index_cache

    # --- folding ---------------------------------------------------------------------------------

    def _try_fold(self, op: RawOp) -> bool:
        """Fold `op` into a constant when its operands are known; True when folded."""
        if len(op.outputs) != 1:
            return False
        out = self._tensor(op.outputs[0], op)
        if out.quant is not None and out.type != TensorType.FLOAT32:
            return False  # quantized arithmetic is the interpreter's job, not numpy's
        if out.index in self.values or out.type not in _DTYPES:
            return False
        present = [i for i in op.inputs if i != -1]
        values = [self._value(i, op) for i in present]
        shapes = [self._shape(self._tensor(i, op)) for i in present]
        try:
            result = fold_op(op.op_name, op.options, values, shapes, self._shape(out),
                             self._dtype(out, op).numpy)
        except FoldError as err:
            raise self._format_error(op, f"cannot evaluate constant operands: {err}") from None
        if result is None:
            return False
        if tuple(result.shape) != self._shape(out):
            raise self._format_error(op, f"folded value has shape {list(result.shape)}, but"
                                         f" output {self.names[out.index]!r} is declared"
                                         f" {out.shape}")
        self.values[out.index] = result
        return True

    # --- op conversion ---------------------------------------------------------------------------

    def _convert(self, op: RawOp) -> Op:
        kind = _KIND.get(op.op_name)
        if kind is None:
            raise UnsupportedError(f"{self._where(op)}: op {op.op_name} is not supported"
                                   " (and its operands are not constant, so it cannot be folded)")
        for i in (*op.inputs, *op.outputs):
            if i != -1:
                t = self._tensor(i, op)
                self._dtype(t, op)
                if t.type == TensorType.INT64 and i in op.outputs:
                    raise UnsupportedError(f"{self._where(op)}: int64 output"
                                           f" {self.names[i]!r} is not supported")
        attrs = _CONVERTERS[kind](self, op)
        if len(op.outputs) != 1 or -1 in op.outputs:
            raise self._format_error(op, f"expects 1 output, has {op.outputs}")
        ir_inputs = attrs.pop("_inputs")
        attrs["tflite_index"] = op.index
        out_name = self.names[op.outputs[0]]
        return Op(kind, ir_inputs, [out_name], attrs, name=out_name)

    def _inputs(self, op: RawOp, n_min: int, n_max: int) -> list[int]:
        if not n_min <= len(op.inputs) <= n_max:
            expected = n_min if n_min == n_max else f"{n_min} to {n_max}"
            raise self._format_error(op, f"expects {expected} inputs, has {len(op.inputs)}")
        for position, i in enumerate(op.inputs[:n_min]):
            if i == -1:
                raise self._format_error(op, f"required input {position} is missing")
        return list(op.inputs)

    def _shape_of(self, index: int, op: RawOp) -> tuple[int, ...]:
        return self._shape(self._tensor(index, op))

    def _out_shape(self, op: RawOp) -> tuple[int, ...]:
        return self._shape_of(op.outputs[0], op)

    def _activation(self, op: RawOp) -> str:
        code = op.options.get("fused_activation_function", 0)
        if code not in _ACTIVATIONS:
            raise UnsupportedError(f"{self._where(op)}: fused activation code {code} is not"
                                   " supported (NONE, RELU, RELU_N1_TO_1, RELU6 are)")
        return _ACTIVATIONS[code]

    def _padding(self, op: RawOp) -> str:
        code = op.options.get("padding", 0)
        if code not in _PADDING:
            raise self._format_error(op, f"padding code {code} is neither SAME nor VALID")
        return _PADDING[code]

    def _expect_shape(self, op: RawOp, expected: Sequence[int]) -> None:
        actual = self._out_shape(op)
        if tuple(actual) != tuple(expected):
            raise self._format_error(op, f"output {self.names[op.outputs[0]]!r} has shape"
                                         f" {list(actual)}, expected {list(expected)}")

    def _names(self, indices: Sequence[int]) -> list[str | None]:
        return [None if i == -1 else self.names[i] for i in indices]

    def _spatial(self, op: RawOp, x_shape, fh: int, fw: int, sh: int, sw: int, dh: int,
                 dw: int) -> tuple[int, int, tuple[int, int, int, int]]:
        if min(sh, sw, dh, dw, fh, fw) < 1:
            raise self._format_error(op, f"stride ({sh}, {sw}), dilation ({dh}, {dw}) and filter"
                                         f" ({fh}, {fw}) must be positive")
        padding = self._padding(op)
        oh, top, bottom = pad_amounts(x_shape[1], fh, sh, dh, padding)
        ow, left, right = pad_amounts(x_shape[2], fw, sw, dw, padding)
        if oh < 1 or ow < 1:
            raise self._format_error(op, f"filter ({fh}, {fw}) does not fit input"
                                         f" {list(x_shape)} with {padding} padding")
        return oh, ow, (top, bottom, left, right)

    def _rank(self, op: RawOp, index: int, rank: int, role: str) -> tuple[int, ...]:
        shape = self._shape_of(index, op)
        if len(shape) != rank:
            raise self._format_error(op, f"{role} {self.names[index]!r} has shape {list(shape)},"
                                         f" expected rank {rank}")
        return shape

    def _bias(self, op: RawOp, inputs: list[int], channels: int) -> None:
        if len(inputs) > 2 and inputs[2] != -1:
            shape = self._shape_of(inputs[2], op)
            if tuple(shape) != (channels,):
                raise self._format_error(op, f"bias {self.names[inputs[2]]!r} has shape"
                                             f" {list(shape)}, expected {channels} values")

    def _constant_ints(self, op: RawOp, index: int, role: str) -> np.ndarray:
        value = self._value(index, op)
        if value is None:
            raise UnsupportedError(f"{self._where(op)}: {role} {self.names[index]!r} is computed"
                                   " at run time; only constant values are supported")
        if value.dtype.kind not in "iu":
            raise self._format_error(op, f"{role} {self.names[index]!r} must be integers")
        return value

    def _conv(self, op: RawOp) -> dict:
        inputs = self._inputs(op, 2, 3)
        x = self._rank(op, inputs[0], 4, "input")
        w = self._rank(op, inputs[1], 4, "filter")
        o = op.options
        oh, ow, pad = self._spatial(op, x, w[1], w[2], o.get("stride_h", 1), o.get("stride_w", 1),
                                    o.get("dilation_h_factor", 1), o.get("dilation_w_factor", 1))
        if x[3] != w[3]:
            raise UnsupportedError(f"{self._where(op)}: input has {x[3]} channels, filter expects"
                                   f" {w[3]} (grouped convolution is not supported)")
        self._bias(op, inputs, w[0])
        self._expect_shape(op, (x[0], oh, ow, w[0]))
        return {"_inputs": self._names(inputs[:3] + [-1] * (3 - len(inputs))),
                "stride": (o.get("stride_h", 1), o.get("stride_w", 1)),
                "dilation": (o.get("dilation_h_factor", 1), o.get("dilation_w_factor", 1)),
                "pad": pad, "activation": self._activation(op)}

    def _depthwise(self, op: RawOp) -> dict:
        inputs = self._inputs(op, 2, 3)
        x = self._rank(op, inputs[0], 4, "input")
        w = self._rank(op, inputs[1], 4, "filter")
        o = op.options
        if w[0] != 1 or x[3] == 0 or w[3] % x[3] != 0:
            raise self._format_error(op, f"filter shape {list(w)} does not fit input {list(x)}"
                                         " (expected [1, H, W, C*multiplier])")
        # TFLite's kernels derive the multiplier from the shapes (some files carry a stale
        # depth_multiplier option), so do we.
        multiplier = w[3] // x[3]
        oh, ow, pad = self._spatial(op, x, w[1], w[2], o.get("stride_h", 1), o.get("stride_w", 1),
                                    o.get("dilation_h_factor", 1), o.get("dilation_w_factor", 1))
        self._bias(op, inputs, w[3])
        self._expect_shape(op, (x[0], oh, ow, w[3]))
        return {"_inputs": self._names(inputs[:3] + [-1] * (3 - len(inputs))),
                "stride": (o.get("stride_h", 1), o.get("stride_w", 1)),
                "dilation": (o.get("dilation_h_factor", 1), o.get("dilation_w_factor", 1)),
                "pad": pad, "depth_multiplier": multiplier, "activation": self._activation(op)}

    def _fully_connected(self, op: RawOp) -> dict:
        inputs = self._inputs(op, 2, 3)
        if op.options.get("weights_format", 0) != 0:
            raise UnsupportedError(f"{self._where(op)}: shuffled FULLY_CONNECTED weights are not"
                                   " supported")
        x = self._shape_of(inputs[0], op)
        w = self._rank(op, inputs[1], 2, "weights")
        n, k = w
        if not x or k == 0 or int(np.prod(x)) % k != 0:
            raise self._format_error(op, f"input {list(x)} cannot be flattened into rows of the"
                                         f" weights' {k} columns")
        x_name = self.names[inputs[0]]
        keep = bool(op.options.get("keep_num_dims", 0))
        if x[-1] != k:
            if keep:
                raise self._format_error(op, f"keep_num_dims needs input depth {k}, input is"
                                             f" {list(x)}")
            # TFLite flattens the input to [-1, K] implicitly; the IR wants x[..., K], so make
            # that flattening an explicit RESHAPE.
            x_name = self._add_reshape(op, inputs[0], (int(np.prod(x)) // k, k))
            x = (int(np.prod(x)) // k, k)
        self._bias(op, inputs, n)
        self._expect_shape(op, (*x[:-1], n) if keep else (int(np.prod(x[:-1])), n))
        bias = self._names(inputs[2:3]) or [None]
        return {"_inputs": [x_name, self.names[inputs[1]], bias[0]],
                "activation": self._activation(op), "keep_num_dims": keep}

    def _add_reshape(self, op: RawOp, index: int, shape: tuple[int, ...]) -> str:
        source = self._tensor(index, op)
        name = f"{self.names[index]}/flattened"
        while name in self._index_of or any(t.name == name for t in self.extra_tensors):
            name += "_"
        dtype = self._dtype(source, op)
        self.extra_tensors.append(Tensor(name, shape, dtype,
                                         self._quant(source, dtype, self._shape(source))))
        self.ir_ops.append(Op("RESHAPE", [self.names[index]], [name],
                              {"tflite_index": op.index}, name=name))
        return name

    def _binary(self, op: RawOp) -> dict:
        inputs = self._inputs(op, 2, 2)
        a, b = self._shape_of(inputs[0], op), self._shape_of(inputs[1], op)
        try:
            expected = np.broadcast_shapes(a, b)
        except ValueError:
            raise self._format_error(op, f"input shapes {list(a)} and {list(b)} do not"
                                         " broadcast") from None
        self._expect_shape(op, expected)
        return {"_inputs": self._names(inputs), "activation": self._activation(op)}

    def _pool(self, op: RawOp) -> dict:
        inputs = self._inputs(op, 1, 1)
        x = self._rank(op, inputs[0], 4, "input")
        o = op.options
        fh, fw = o.get("filter_height", 1), o.get("filter_width", 1)
        sh, sw = o.get("stride_h", 1), o.get("stride_w", 1)
        oh, ow, pad = self._spatial(op, x, fh, fw, sh, sw, 1, 1)
        self._expect_shape(op, (x[0], oh, ow, x[3]))
        return {"_inputs": self._names(inputs), "filter": (fh, fw), "stride": (sh, sw),
                "pad": pad, "activation": self._activation(op)}

    def _mean(self, op: RawOp) -> dict:
        inputs = self._inputs(op, 2, 2)
        x = self._shape_of(inputs[0], op)
        axes = set()
        for a in self._constant_ints(op, inputs[1], "axis").ravel().tolist():
            if not -len(x) <= a < len(x):
                raise self._format_error(op, f"axis {a} is out of range for input {list(x)}")
            axes.add(a % len(x))
        keep = bool(op.options.get("keep_dims", 0))
        expected = [1 if i in axes else d for i, d in enumerate(x) if keep or i not in axes]
        self._expect_shape(op, expected)
        return {"_inputs": self._names(inputs[:1]), "axes": tuple(sorted(axes)),
                "keep_dims": keep}

    def _reshape(self, op: RawOp) -> dict:
        inputs = self._inputs(op, 1, 2)
        x = self._shape_of(inputs[0], op)
        out = self._out_shape(op)
        if int(np.prod(x)) != int(np.prod(out)):
            raise self._format_error(op, f"cannot reshape {list(x)} ({int(np.prod(x))} elements)"
                                         f" to {list(out)}")
        return {"_inputs": self._names(inputs[:1])}

    def _unary(self, op: RawOp) -> dict:
        inputs = self._inputs(op, 1, 1)
        self._expect_shape(op, self._shape_of(inputs[0], op))
        return {"_inputs": self._names(inputs)}

    def _softmax(self, op: RawOp) -> dict:
        attrs = self._unary(op)
        attrs["beta"] = float(op.options.get("beta", 1.0))
        return attrs

    def _pad(self, op: RawOp) -> dict:
        inputs = self._inputs(op, 2, 2)
        x = self._shape_of(inputs[0], op)
        pads = self._constant_ints(op, inputs[1], "paddings")
        if pads.shape != (len(x), 2) or (pads.size and pads.min() < 0):
            raise self._format_error(op, f"paddings {pads.tolist()} do not fit input {list(x)}")
        paddings = tuple((int(b), int(a)) for b, a in pads)
        self._expect_shape(op, [d + b + a for d, (b, a) in zip(x, paddings)])
        return {"_inputs": self._names(inputs[:1]), "paddings": paddings}

    def _edgekit_custom(self, op: RawOp) -> dict:
        """LAYER_NORM / RMS_NORM / SILU (`tflite_custom`): x, then the per-channel constants."""
        kind = CUSTOM_KINDS[op.op_name]
        n = CUSTOM_ARITY[kind]
        inputs = self._inputs(op, n, n)
        x = self._shape_of(inputs[0], op)
        for i in inputs[1:]:
            if not x or self._shape_of(i, op) != (x[-1],):
                raise self._format_error(op, f"{self.names[i]!r} has shape"
                                             f" {list(self._shape_of(i, op))}, expected"
                                             f" [{x[-1] if x else '?'}] (input {list(x)})")
        self._expect_shape(op, x)
        return {"_inputs": self._names(inputs),
                **decode_options(kind, op.custom_options, self._where(op))}

    def _concatenation(self, op: RawOp) -> dict:
        inputs = self._inputs(op, 1, 1 << 16)
        shapes = [self._shape_of(i, op) for i in inputs]
        rank = len(shapes[0])
        axis = op.options.get("axis", 0)
        if not -rank <= axis < rank:
            raise self._format_error(op, f"axis {axis} is out of range for rank {rank}")
        axis %= rank
        for s in shapes:
            if len(s) != rank or any(d != e for i, (d, e) in enumerate(zip(s, shapes[0]))
                                     if i != axis):
                raise self._format_error(op, f"input shapes {[list(s) for s in shapes]} do not"
                                             f" concatenate on axis {axis}")
        expected = list(shapes[0])
        expected[axis] = sum(s[axis] for s in shapes)
        self._expect_shape(op, expected)
        return {"_inputs": self._names(inputs), "axis": axis, "activation": self._activation(op)}

    def _batch_matmul(self, op: RawOp) -> dict:
        inputs = self._inputs(op, 2, 2)
        a, b = self._shape_of(inputs[0], op), self._shape_of(inputs[1], op)
        adj_x, adj_y = bool(op.options.get("adj_x", 0)), bool(op.options.get("adj_y", 0))
        if len(a) < 2 or len(b) < 2:
            raise self._format_error(op, f"inputs {list(a)} and {list(b)} must have rank >= 2")
        m, k = (a[-1], a[-2]) if adj_x else (a[-2], a[-1])
        k2, n = (b[-1], b[-2]) if adj_y else (b[-2], b[-1])
        try:
            batch = np.broadcast_shapes(a[:-2], b[:-2])
        except ValueError:
            batch = None
        if k != k2 or batch is None:
            raise self._format_error(op, f"inputs {list(a)} (adj_x={adj_x}) and {list(b)}"
                                         f" (adj_y={adj_y}) do not multiply")
        self._expect_shape(op, (*batch, m, n))
        return {"_inputs": self._names(inputs), "adj_x": adj_x, "adj_y": adj_y}

    def _transpose(self, op: RawOp) -> dict:
        inputs = self._inputs(op, 2, 2)
        x = self._shape_of(inputs[0], op)
        perm = [int(p) for p in self._constant_ints(op, inputs[1], "perm").ravel()]
        perm = [p + len(x) if p < 0 else p for p in perm]
        if sorted(perm) != list(range(len(x))):
            raise self._format_error(op, f"perm {perm} is not a permutation of {len(x)} axes")
        self._expect_shape(op, [x[p] for p in perm])
        return {"_inputs": self._names(inputs[:1]), "perm": tuple(perm)}

    def _gather(self, op: RawOp) -> dict:
        inputs = self._inputs(op, 2, 2)
        params, idx = self._shape_of(inputs[0], op), self._shape_of(inputs[1], op)
        axis = int(op.options.get("axis", 0))
        if op.options.get("batch_dims", 0):
            raise UnsupportedError(f"{self._where(op)}: GATHER batch_dims"
                                   f" {op.options['batch_dims']} is not supported")
        if not -len(params) <= axis < len(params):
            raise self._format_error(op, f"axis {axis} is out of range for {list(params)}")
        axis %= len(params)
        self._expect_shape(op, (*params[:axis], *idx, *params[axis + 1:]))
        return {"_inputs": self._names(inputs), "axis": axis}

    def _gelu(self, op: RawOp) -> dict:
        attrs = self._unary(op)
        attrs["approximate"] = bool(op.options.get("approximate", 0))
        return attrs


_CONVERTERS = {
    "CONV_2D": _Importer._conv, "DEPTHWISE_CONV_2D": _Importer._depthwise,
    "FULLY_CONNECTED": _Importer._fully_connected, "ADD": _Importer._binary,
    "MUL": _Importer._binary, "AVERAGE_POOL_2D": _Importer._pool,
    "MAX_POOL_2D": _Importer._pool, "MEAN": _Importer._mean, "RESHAPE": _Importer._reshape,
    "SOFTMAX": _Importer._softmax, "LOGISTIC": _Importer._unary,
    "HARD_SWISH": _Importer._unary, "RELU": _Importer._unary, "RELU6": _Importer._unary,
    "PAD": _Importer._pad, "CONCATENATION": _Importer._concatenation,
    "QUANTIZE": _Importer._unary, "DEQUANTIZE": _Importer._unary,
    "BATCH_MATMUL": _Importer._batch_matmul, "TRANSPOSE": _Importer._transpose,
    "GATHER": _Importer._gather, "GELU": _Importer._gelu,
    **{kind: _Importer._edgekit_custom for kind in CUSTOM_ARITY},
}


def _unique_names(tensors: Sequence[RawTensor]) -> list[str]:
    """TFLite names may repeat or be empty; give each tensor a unique one, in tensor order."""
    taken: set[str] = set()
    names = []
    for t in tensors:
        base = t.name or f"tensor{t.index}"
        name, k = base, 0
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        taken.add(name)
        names.append(name)
    return names


def unpack_int4(data: bytes, count: int) -> np.ndarray:
    """Unpack TFLite INT4 (two's complement nibbles, low nibble first) into int8 values."""
    packed = np.frombuffer(data, dtype=np.uint8)
    low = (packed & 0x0F).astype(np.int8)
    high = (packed >> 4).astype(np.int8)
    values = np.empty(packed.size * 2, dtype=np.int8)
    values[0::2], values[1::2] = low, high
    values = np.where(values > 7, values - 16, values).astype(np.int8)
    return values[:count]


__all__ = ["load_tflite", "load_tflite_bytes", "pad_amounts", "unpack_int4"]
