"""Export a Graph IR as a `.tflite` flatbuffer that TFLite Micro and LiteRT run.

`to_bytes(graph)` builds the file with the flatbuffers builder and the `tflite` package's
generated builder functions; `save_tflite(graph, path)` writes it atomically (temp file in the
same folder + rename, so a reader never sees half a model).

The mapping is the importer's (`tflite_reader`) in reverse, so ``load(save(g)) == g`` (except
for the explicit pads below, which come back as an equivalent PAD + VALID pair):

- explicit ``pad`` is written as SAME or VALID, whichever reproduces it (TFLite has no explicit
  padding); a pad that neither gives (the causal 1-D convolution's ``(0, 0, k - 1, 0)``) is
  written as a PAD op and a VALID convolution, which the reader gives back as those two ops;
- RESHAPE gets its new shape as an int32 constant second input (and in ReshapeOptions), MEAN
  its axes, PAD its paddings: these operands are attrs in the IR and are dropped again on import;
- scales are stored as float32 (TFLite's type): build graphs with float32-representable scales
  when a round trip must be exact;
- INT4 constants are packed two per byte, low nibble first;
- LAYER_NORM, RMS_NORM and SILU become custom ops ``EDGEKIT_<KIND>`` (`tflite_custom`), which
  only edgekit runs (TFLite Micro and LiteRT refuse them as unresolved custom ops).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
import tflite
from tflite.BuiltinOperator import BuiltinOperator
from tflite.BuiltinOptions import BuiltinOptions
from tflite.TensorType import TensorType

from edgekit.converters.tflite_custom import CUSTOM_CODES, encode_options
from edgekit.converters.tflite_reader import pad_amounts
from edgekit.errors import UnsupportedError
from edgekit.ir import DType, Graph, Op, Tensor

_TENSOR_TYPES = {
    DType.INT4: TensorType.INT4, DType.INT8: TensorType.INT8, DType.INT16: TensorType.INT16,
    DType.INT32: TensorType.INT32, DType.INT64: TensorType.INT64,
    DType.FLOAT32: TensorType.FLOAT32,
}
_ACTIVATION_CODES = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3}

#: IR kind -> (builtin code, operator version). Versions are those TensorFlow's converter writes
#: for int8 models; runtimes pick kernels by code and only check the version is registered.
_OPCODES = {
    "CONV_2D": (BuiltinOperator.CONV_2D, 3),
    "DEPTHWISE_CONV_2D": (BuiltinOperator.DEPTHWISE_CONV_2D, 3),
    "FULLY_CONNECTED": (BuiltinOperator.FULLY_CONNECTED, 4),
    "ADD": (BuiltinOperator.ADD, 2), "MUL": (BuiltinOperator.MUL, 2),
    "AVERAGE_POOL_2D": (BuiltinOperator.AVERAGE_POOL_2D, 2),
    "MAX_POOL_2D": (BuiltinOperator.MAX_POOL_2D, 2),
    "MEAN": (BuiltinOperator.MEAN, 2), "RESHAPE": (BuiltinOperator.RESHAPE, 1),
    "SOFTMAX": (BuiltinOperator.SOFTMAX, 2), "LOGISTIC": (BuiltinOperator.LOGISTIC, 2),
    "HARD_SWISH": (BuiltinOperator.HARD_SWISH, 1), "RELU": (BuiltinOperator.RELU, 2),
    "RELU6": (BuiltinOperator.RELU6, 2), "PAD": (BuiltinOperator.PAD, 2),
    "CONCATENATION": (BuiltinOperator.CONCATENATION, 2),
    "QUANTIZE": (BuiltinOperator.QUANTIZE, 2), "DEQUANTIZE": (BuiltinOperator.DEQUANTIZE, 2),
    "BATCH_MATMUL": (BuiltinOperator.BATCH_MATMUL, 2),
    "TRANSPOSE": (BuiltinOperator.TRANSPOSE, 2), "GATHER": (BuiltinOperator.GATHER, 2),
    "GELU": (BuiltinOperator.GELU, 2),
}

#: alignment of constant buffers in the file (TFLite's writer uses 16)
_BUFFER_ALIGNMENT = 16


def save_tflite(graph: Graph, path: str | os.PathLike) -> Path:
    """Write `graph` to `path` as a `.tflite` file, atomically; returns the path."""
    from edgekit.atomic import atomic_write_bytes

    path = Path(path)
    atomic_write_bytes(path, to_bytes(graph))
    return path


def to_bytes(graph: Graph) -> bytes:
    """Serialise `graph` as TFLite flatbuffer bytes (schema version 3, one subgraph)."""
    graph.validate()
    return _Writer(graph).build()


def pack_int4(values: np.ndarray) -> bytes:
    """Pack int4 values (int8 in [-8, 7]) two per byte, low nibble first (TFLite's order)."""
    nibbles = (np.asarray(values, dtype=np.int8).ravel() & 0x0F).astype(np.uint8)
    if nibbles.size % 2:
        nibbles = np.append(nibbles, np.uint8(0))
    return (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8).tobytes()


def padding_mode(op: Op, x: Tensor, filter_hw: tuple[int, int]) -> int:
    """TFLite Padding enum (SAME=0, VALID=1) that reproduces ``op.attrs['pad']`` exactly."""
    stride = op.attrs.get("stride", (1, 1))
    dilation = op.attrs.get("dilation", (1, 1))
    want = tuple(op.attrs.get("pad", (0, 0, 0, 0)))
    for code, mode in ((tflite.Padding.VALID, "VALID"), (tflite.Padding.SAME, "SAME")):
        _, top, bottom = pad_amounts(x.shape[1], filter_hw[0], stride[0], dilation[0], mode)
        _, left, right = pad_amounts(x.shape[2], filter_hw[1], stride[1], dilation[1], mode)
        if (top, bottom, left, right) == want:
            return code
    raise UnsupportedError(f"op {op.kind} {op.name!r}: explicit padding {want} is neither SAME"
                           " nor VALID, and TFLite has no explicit padding (insert a PAD op)")


#: transformer builtins: IR op -> (BuiltinOptions member, (builder kind, fields))
_TRANSFORMER_OPTIONS = {
    "BATCH_MATMUL": lambda op: (BuiltinOptions.BatchMatMulOptions, ("bmm", dict(
        adj_x=bool(op.attrs.get("adj_x", False)), adj_y=bool(op.attrs.get("adj_y", False))))),
    "TRANSPOSE": lambda op: (BuiltinOptions.TransposeOptions, ("transpose", {})),
    "GATHER": lambda op: (BuiltinOptions.GatherOptions, ("gather", dict(
        axis=int(op.attrs.get("axis", 0)), batch_dims=int(op.attrs.get("batch_dims", 0))))),
    "GELU": lambda op: (BuiltinOptions.GeluOptions, ("gelu", dict(
        approximate=bool(op.attrs.get("approximate", False))))),
}


def _bmm_options(b, f) -> int:
    tflite.BatchMatMulOptionsStart(b)
    tflite.BatchMatMulOptionsAddAdjX(b, f["adj_x"])
    tflite.BatchMatMulOptionsAddAdjY(b, f["adj_y"])
    return tflite.BatchMatMulOptionsEnd(b)


def _gather_options(b, f) -> int:
    tflite.GatherOptionsStart(b)
    tflite.GatherOptionsAddAxis(b, f["axis"])
    tflite.GatherOptionsAddBatchDims(b, f["batch_dims"])
    return tflite.GatherOptionsEnd(b)


def _gelu_options(b, f) -> int:
    tflite.GeluOptionsStart(b)
    tflite.GeluOptionsAddApproximate(b, f["approximate"])
    return tflite.GeluOptionsEnd(b)


def _transpose_options(b, f) -> int:
    tflite.TransposeOptionsStart(b)
    return tflite.TransposeOptionsEnd(b)


_TRANSFORMER_BUILDERS = {"bmm": _bmm_options, "gather": _gather_options, "gelu": _gelu_options,
                         "transpose": _transpose_options}


class _Writer:
    def __init__(self, graph: Graph):
        self.graph = graph
        self.b = flatbuffers.Builder(1 << 16)
        self.tensor_index: dict[str, int] = {}
        self.tensors: list[tuple[Tensor, int]] = []  # (tensor, buffer index)
        self.buffers: list[bytes] = [b""]  # buffer 0: the empty sentinel TFLite expects
        self.opcodes: dict[str, int] = {}
        self.ops: list[tuple[int, list[int], list[int], int, Any]] = []
        for t in graph.tensors.values():
            self._add_tensor(t)

    # --- tensors ---------------------------------------------------------------------------------

    def _add_tensor(self, t: Tensor) -> int:
        buffer = 0
        if t.data is not None:
            if t.dtype == DType.INT4:
                payload = pack_int4(t.data)
            else:
                payload = np.ascontiguousarray(t.data, dtype=t.dtype.numpy.newbyteorder("<")).tobytes()
            self.buffers.append(payload)
            buffer = len(self.buffers) - 1
        self.tensor_index[t.name] = len(self.tensors)
        self.tensors.append((t, buffer))
        return self.tensor_index[t.name]

    def _constant_operand(self, op: Op, suffix: str, values: np.ndarray) -> int:
        """An int32 constant that TFLite wants as an input (shape, axes, paddings)."""
        base = f"{op.outputs[0]}/{suffix}"
        name = base
        while name in self.tensor_index:
            name += "_"
        arr = np.asarray(values, dtype=np.int32)
        return self._add_tensor(Tensor(name, arr.shape, DType.INT32, data=arr))

    # --- ops -------------------------------------------------------------------------------------

    def _ids(self, names) -> list[int]:
        return [-1 if n is None else self.tensor_index[n] for n in names]

    def _opcode(self, kind: str) -> int:
        if kind not in self.opcodes:
            self.opcodes[kind] = len(self.opcodes)
        return self.opcodes[kind]

    def _op(self, op: Op) -> None:
        if op.kind in CUSTOM_CODES:
            self.ops.append((self._opcode(op.kind), self._ids(op.inputs), self._ids(op.outputs),
                             BuiltinOptions.NONE, ("custom", encode_options(op))))
            return
        if op.kind not in _OPCODES:
            raise UnsupportedError(f"op {op.kind} {op.name!r}: no TFLite export for this kind")
        inputs = self._ids(op.inputs)
        g = self.graph
        options_type, options = BuiltinOptions.NONE, None
        act = _ACTIVATION_CODES[op.attrs.get("activation", "NONE")]
        a = op.attrs
        if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w = g[op.inputs[1]]
            try:
                padding = padding_mode(op, g[op.inputs[0]], (w.shape[1], w.shape[2]))
            except UnsupportedError:
                inputs[0] = self._explicit_pad(op, (w.shape[1], w.shape[2]))
                padding = tflite.Padding.VALID
            fields = dict(padding=padding, stride_h=a["stride"][0], stride_w=a["stride"][1],
                          dilation_h=a["dilation"][0], dilation_w=a["dilation"][1], act=act)
            if op.kind == "CONV_2D":
                options_type, options = BuiltinOptions.Conv2DOptions, ("conv", fields)
            else:
                fields["depth_multiplier"] = a.get("depth_multiplier", 1)
                options_type, options = BuiltinOptions.DepthwiseConv2DOptions, ("dw", fields)
            inputs = inputs + [-1] * (3 - len(inputs))
        elif op.kind == "FULLY_CONNECTED":
            options_type = BuiltinOptions.FullyConnectedOptions
            options = ("fc", dict(act=act, keep=bool(a.get("keep_num_dims", False))))
            inputs = inputs + [-1] * (3 - len(inputs))
        elif op.kind in ("ADD", "MUL"):
            options_type = BuiltinOptions.AddOptions if op.kind == "ADD" else BuiltinOptions.MulOptions
            options = (op.kind.lower(), dict(act=act))
        elif op.kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            padding = padding_mode(op, g[op.inputs[0]], tuple(a["filter"]))
            options_type = BuiltinOptions.Pool2DOptions
            options = ("pool", dict(padding=padding, stride_h=a["stride"][0],
                                    stride_w=a["stride"][1], filter_h=a["filter"][0],
                                    filter_w=a["filter"][1], act=act))
        elif op.kind == "MEAN":
            inputs = inputs[:1] + [self._constant_operand(op, "axes", list(a["axes"]))]
            options_type = BuiltinOptions.ReducerOptions
            options = ("reducer", dict(keep=bool(a.get("keep_dims", False))))
        elif op.kind == "RESHAPE":
            shape = list(g[op.outputs[0]].shape)
            inputs = inputs[:1] + [self._constant_operand(op, "shape", shape)]
            options_type, options = BuiltinOptions.ReshapeOptions, ("reshape", dict(shape=shape))
        elif op.kind == "SOFTMAX":
            options_type = BuiltinOptions.SoftmaxOptions
            options = ("softmax", dict(beta=float(a.get("beta", 1.0))))
        elif op.kind == "PAD":
            pads = np.asarray(a["paddings"], dtype=np.int32).reshape(-1, 2)
            inputs = inputs[:1] + [self._constant_operand(op, "paddings", pads)]
            options_type, options = BuiltinOptions.PadOptions, ("pad", {})
        elif op.kind == "CONCATENATION":
            options_type = BuiltinOptions.ConcatenationOptions
            options = ("concat", dict(axis=int(a["axis"]), act=act))
        elif op.kind in _TRANSFORMER_OPTIONS:
            options_type, options = _TRANSFORMER_OPTIONS[op.kind](op)
            if op.kind == "TRANSPOSE":
                inputs = inputs[:1] + [self._constant_operand(op, "perm", list(a["perm"]))]
        self.ops.append((self._opcode(op.kind), inputs, self._ids(op.outputs), options_type,
                         options))

    def _explicit_pad(self, op: Op, filter_hw: tuple[int, int]) -> int:
        """A PAD op in front of a VALID convolution for a pad neither SAME nor VALID gives (the
        causal 1-D convolution's ``(0, 0, k - 1, 0)``): PAD fills with the input zero point,
        which is what a convolution's padding means. Returns the padded tensor's index."""
        x, out = self.graph[op.inputs[0]], self.graph[op.outputs[0]]
        top, _, left, _ = op.attrs.get("pad", (0, 0, 0, 0))
        stride = op.attrs.get("stride", (1, 1))
        dilation = op.attrs.get("dilation", (1, 1))
        extents = []
        for axis, before in ((1, top), (2, left)):
            # the padded extent VALID needs for the IR's output size (rows past it are unused)
            need = (out.shape[axis] - 1) * stride[axis - 1] + (filter_hw[axis - 1] - 1) * dilation[axis - 1] + 1
            extents.append((before, max(need - x.shape[axis] - before, 0)))
        padded_shape = (x.shape[0], x.shape[1] + sum(extents[0]), x.shape[2] + sum(extents[1]),
                        x.shape[3])
        for axis, (before, after) in ((1, extents[0]), (2, extents[1])):
            size = x.shape[axis] + before + after
            eff = (filter_hw[axis - 1] - 1) * dilation[axis - 1] + 1
            if (size - eff) // stride[axis - 1] + 1 != out.shape[axis]:
                raise UnsupportedError(f"op {op.kind} {op.name!r}: padding {op.attrs.get('pad')}"
                                       f" and output {out.shape} do not agree for input {x.shape}")
        name = f"{x.name}/padded"
        while name in self.tensor_index:
            name += "_"
        padded = self._add_tensor(Tensor(name, padded_shape, x.dtype, x.quant))
        paddings = [(0, 0), extents[0], extents[1], (0, 0)]
        pad_op = Op("PAD", [x.name], [name], {}, name=name)
        operand = self._constant_operand(pad_op, "paddings", np.asarray(paddings, np.int32))
        self.ops.append((self._opcode("PAD"), [self.tensor_index[x.name], operand], [padded],
                         BuiltinOptions.PadOptions, ("pad", {})))
        return padded

    # --- flatbuffer building ---------------------------------------------------------------------

    def _int_vector(self, values, dtype=np.int32) -> int:
        return self.b.CreateNumpyVector(np.asarray(values, dtype=dtype).ravel())

    def _bytes_vector(self, payload: bytes) -> int:
        b = self.b
        b.StartVector(1, len(payload), _BUFFER_ALIGNMENT)
        b.head = b.head - len(payload)
        b.Bytes[b.head:b.head + len(payload)] = payload
        return b.EndVector()

    def _table_vector(self, start_fn, offsets: list[int]) -> int:
        start_fn(self.b, len(offsets))
        for off in reversed(offsets):
            self.b.PrependUOffsetTRelative(off)
        return self.b.EndVector()

    def _options(self, options) -> int:
        if options is None:
            return 0
        kind, f = options
        b = self.b
        if kind in ("conv", "dw"):
            prefix = "Conv2DOptions" if kind == "conv" else "DepthwiseConv2DOptions"
            getattr(tflite, prefix + "Start")(b)
            getattr(tflite, prefix + "AddPadding")(b, f["padding"])
            getattr(tflite, prefix + "AddStrideW")(b, f["stride_w"])
            getattr(tflite, prefix + "AddStrideH")(b, f["stride_h"])
            getattr(tflite, prefix + "AddFusedActivationFunction")(b, f["act"])
            getattr(tflite, prefix + "AddDilationWFactor")(b, f["dilation_w"])
            getattr(tflite, prefix + "AddDilationHFactor")(b, f["dilation_h"])
            if kind == "dw":
                tflite.DepthwiseConv2DOptionsAddDepthMultiplier(b, f["depth_multiplier"])
                return tflite.DepthwiseConv2DOptionsEnd(b)
            return tflite.Conv2DOptionsEnd(b)
        if kind == "fc":
            tflite.FullyConnectedOptionsStart(b)
            tflite.FullyConnectedOptionsAddFusedActivationFunction(b, f["act"])
            tflite.FullyConnectedOptionsAddKeepNumDims(b, f["keep"])
            return tflite.FullyConnectedOptionsEnd(b)
        if kind == "add":
            tflite.AddOptionsStart(b)
            tflite.AddOptionsAddFusedActivationFunction(b, f["act"])
            return tflite.AddOptionsEnd(b)
        if kind == "mul":
            tflite.MulOptionsStart(b)
            tflite.MulOptionsAddFusedActivationFunction(b, f["act"])
            return tflite.MulOptionsEnd(b)
        if kind == "pool":
            tflite.Pool2DOptionsStart(b)
            tflite.Pool2DOptionsAddPadding(b, f["padding"])
            tflite.Pool2DOptionsAddStrideW(b, f["stride_w"])
            tflite.Pool2DOptionsAddStrideH(b, f["stride_h"])
            tflite.Pool2DOptionsAddFilterWidth(b, f["filter_w"])
            tflite.Pool2DOptionsAddFilterHeight(b, f["filter_h"])
            tflite.Pool2DOptionsAddFusedActivationFunction(b, f["act"])
            return tflite.Pool2DOptionsEnd(b)
        if kind == "reducer":
            tflite.ReducerOptionsStart(b)
            tflite.ReducerOptionsAddKeepDims(b, f["keep"])
            return tflite.ReducerOptionsEnd(b)
        if kind == "reshape":
            shape = self._int_vector(f["shape"])
            tflite.ReshapeOptionsStart(b)
            tflite.ReshapeOptionsAddNewShape(b, shape)
            return tflite.ReshapeOptionsEnd(b)
        if kind == "softmax":
            tflite.SoftmaxOptionsStart(b)
            tflite.SoftmaxOptionsAddBeta(b, f["beta"])
            return tflite.SoftmaxOptionsEnd(b)
        if kind == "pad":
            tflite.PadOptionsStart(b)
            return tflite.PadOptionsEnd(b)
        if kind == "concat":
            tflite.ConcatenationOptionsStart(b)
            tflite.ConcatenationOptionsAddAxis(b, f["axis"])
            tflite.ConcatenationOptionsAddFusedActivationFunction(b, f["act"])
            return tflite.ConcatenationOptionsEnd(b)
        if kind in _TRANSFORMER_BUILDERS:
            return _TRANSFORMER_BUILDERS[kind](b, f)
        raise AssertionError(f"unhandled options kind {kind}")  # a bug in this module

    def _quantization(self, t: Tensor) -> int:
        q = t.quant
        if q is None:
            return 0
        b = self.b
        scale = self._int_vector(q.scale, np.float32)
        zp = self._int_vector(q.zero_point, np.int64)
        tflite.QuantizationParametersStart(b)
        tflite.QuantizationParametersAddScale(b, scale)
        tflite.QuantizationParametersAddZeroPoint(b, zp)
        axis = q.axis if q.axis is not None else 0
        tflite.QuantizationParametersAddQuantizedDimension(b, axis % max(len(t.shape), 1))
        return tflite.QuantizationParametersEnd(b)

    def _tensor(self, t: Tensor, buffer: int) -> int:
        b = self.b
        name = b.CreateString(t.name)
        shape = self._int_vector(t.shape)
        quant = self._quantization(t)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape)
        tflite.TensorAddType(b, _TENSOR_TYPES[t.dtype])
        tflite.TensorAddBuffer(b, buffer)
        tflite.TensorAddName(b, name)
        if quant:
            tflite.TensorAddQuantization(b, quant)
        return tflite.TensorEnd(b)

    def _operator(self, opcode: int, inputs, outputs, options_type: int, options) -> int:
        b = self.b
        ins = self._int_vector(inputs)
        outs = self._int_vector(outputs)
        custom = options[1] if options and options[0] == "custom" else None
        opts = 0 if custom is not None else self._options(options)
        custom_vec = self._bytes_vector(custom) if custom else 0
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, opcode)
        tflite.OperatorAddInputs(b, ins)
        tflite.OperatorAddOutputs(b, outs)
        if custom_vec:
            tflite.OperatorAddCustomOptions(b, custom_vec)  # format 0: FLEXBUFFERS
        if opts:
            tflite.OperatorAddBuiltinOptionsType(b, options_type)
            tflite.OperatorAddBuiltinOptions(b, opts)
        return tflite.OperatorEnd(b)

    def build(self) -> bytes:
        for op in self.graph.ops:
            self._op(op)
        b = self.b
        tensors = [self._tensor(t, buf) for t, buf in self.tensors]
        operators = [self._operator(*entry) for entry in self.ops]
        sg_name = b.CreateString(self.graph.name)
        tensors_vec = self._table_vector(tflite.SubGraphStartTensorsVector, tensors)
        ops_vec = self._table_vector(tflite.SubGraphStartOperatorsVector, operators)
        inputs = self._int_vector(self._ids(self.graph.inputs))
        outputs = self._int_vector(self._ids(self.graph.outputs))
        tflite.SubGraphStart(b)
        tflite.SubGraphAddTensors(b, tensors_vec)
        tflite.SubGraphAddInputs(b, inputs)
        tflite.SubGraphAddOutputs(b, outputs)
        tflite.SubGraphAddOperators(b, ops_vec)
        tflite.SubGraphAddName(b, sg_name)
        subgraph = tflite.SubGraphEnd(b)

        codes = []
        for kind in self.opcodes:  # insertion order == opcode index
            custom = b.CreateString(CUSTOM_CODES[kind]) if kind in CUSTOM_CODES else 0
            code, version = (BuiltinOperator.CUSTOM, 1) if custom else _OPCODES[kind]
            tflite.OperatorCodeStart(b)
            if custom:
                tflite.OperatorCodeAddCustomCode(b, custom)
            tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
            tflite.OperatorCodeAddBuiltinCode(b, code)
            tflite.OperatorCodeAddVersion(b, version)
            codes.append(tflite.OperatorCodeEnd(b))
        buffers = []
        for payload in self.buffers:
            data = self._bytes_vector(payload) if payload else 0
            tflite.BufferStart(b)
            if data:
                tflite.BufferAddData(b, data)
            buffers.append(tflite.BufferEnd(b))
        description = b.CreateString("edgekit")
        codes_vec = self._table_vector(tflite.ModelStartOperatorCodesVector, codes)
        subgraphs_vec = self._table_vector(tflite.ModelStartSubgraphsVector, [subgraph])
        buffers_vec = self._table_vector(tflite.ModelStartBuffersVector, buffers)
        tflite.ModelStart(b)
        tflite.ModelAddVersion(b, 3)
        tflite.ModelAddOperatorCodes(b, codes_vec)
        tflite.ModelAddSubgraphs(b, subgraphs_vec)
        tflite.ModelAddDescription(b, description)
        tflite.ModelAddBuffers(b, buffers_vec)
        b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())
