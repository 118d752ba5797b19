"""Decode a `.tflite` flatbuffer into plain Python records, safely.

This module is the ONE boundary between untrusted bytes and edgekit: it walks the file with the
`tflite` package's generated flatbuffer classes (no TensorFlow), bounds-checks every vector
length against the file size before touching it (so a damaged length cannot make us loop or
allocate for ever), and converts every exception the flatbuffer reader can raise on damaged
input into one `ModelFormatError`. What comes out (`RawModel`) is plain data that the importer
(`tflite_reader`) validates and maps onto the Graph IR.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tflite
from tflite.BuiltinOptions import BuiltinOptions
from tflite.utils import BUILTIN_OPCODE2NAME

from edgekit.errors import ModelFormatError

#: the file identifier TFLite writes at bytes 4..8
FILE_IDENTIFIER = b"TFL3"

#: BuiltinOptions union member -> (generated class, [(attribute name, getter name), ...]).
#: Only the options of ops we import or fold; other ops keep an empty options dict.
_OPTION_FIELDS: dict[int, tuple[type, list[tuple[str, str]]]] = {
    BuiltinOptions.Conv2DOptions: (tflite.Conv2DOptions, [
        ("padding", "Padding"), ("stride_w", "StrideW"), ("stride_h", "StrideH"),
        ("fused_activation_function", "FusedActivationFunction"),
        ("dilation_w_factor", "DilationWFactor"), ("dilation_h_factor", "DilationHFactor")]),
    BuiltinOptions.DepthwiseConv2DOptions: (tflite.DepthwiseConv2DOptions, [
        ("padding", "Padding"), ("stride_w", "StrideW"), ("stride_h", "StrideH"),
        ("depth_multiplier", "DepthMultiplier"),
        ("fused_activation_function", "FusedActivationFunction"),
        ("dilation_w_factor", "DilationWFactor"), ("dilation_h_factor", "DilationHFactor")]),
    BuiltinOptions.FullyConnectedOptions: (tflite.FullyConnectedOptions, [
        ("fused_activation_function", "FusedActivationFunction"),
        ("weights_format", "WeightsFormat"), ("keep_num_dims", "KeepNumDims")]),
    BuiltinOptions.AddOptions: (tflite.AddOptions, [
        ("fused_activation_function", "FusedActivationFunction")]),
    BuiltinOptions.SubOptions: (tflite.SubOptions, [
        ("fused_activation_function", "FusedActivationFunction")]),
    BuiltinOptions.MulOptions: (tflite.MulOptions, [
        ("fused_activation_function", "FusedActivationFunction")]),
    BuiltinOptions.DivOptions: (tflite.DivOptions, [
        ("fused_activation_function", "FusedActivationFunction")]),
    BuiltinOptions.Pool2DOptions: (tflite.Pool2DOptions, [
        ("padding", "Padding"), ("stride_w", "StrideW"), ("stride_h", "StrideH"),
        ("filter_width", "FilterWidth"), ("filter_height", "FilterHeight"),
        ("fused_activation_function", "FusedActivationFunction")]),
    BuiltinOptions.ReducerOptions: (tflite.ReducerOptions, [("keep_dims", "KeepDims")]),
    BuiltinOptions.SoftmaxOptions: (tflite.SoftmaxOptions, [("beta", "Beta")]),
    BuiltinOptions.ConcatenationOptions: (tflite.ConcatenationOptions, [
        ("axis", "Axis"), ("fused_activation_function", "FusedActivationFunction")]),
    BuiltinOptions.StridedSliceOptions: (tflite.StridedSliceOptions, [
        ("begin_mask", "BeginMask"), ("end_mask", "EndMask"), ("ellipsis_mask", "EllipsisMask"),
        ("new_axis_mask", "NewAxisMask"), ("shrink_axis_mask", "ShrinkAxisMask"),
        ("offset", "Offset")]),
    BuiltinOptions.PackOptions: (tflite.PackOptions, [("values_count", "ValuesCount"),
                                                      ("axis", "Axis")]),
    BuiltinOptions.GatherOptions: (tflite.GatherOptions, [("axis", "Axis"),
                                                          ("batch_dims", "BatchDims")]),
    BuiltinOptions.SqueezeOptions: (tflite.SqueezeOptions, []),
    BuiltinOptions.BatchMatMulOptions: (tflite.BatchMatMulOptions, [("adj_x", "AdjX"),
                                                                    ("adj_y", "AdjY")]),
    BuiltinOptions.GeluOptions: (tflite.GeluOptions, [("approximate", "Approximate")]),
    BuiltinOptions.ShapeOptions: (tflite.ShapeOptions, [("out_type", "OutType")]),
}


@dataclass
class RawQuant:
    scale: np.ndarray  # float32 as stored
    zero_point: np.ndarray  # int64
    quantized_dimension: int


@dataclass
class RawTensor:
    index: int
    name: str
    shape: list[int]
    type: int  # tflite.TensorType value
    buffer: int
    quant: RawQuant | None
    is_variable: bool
    has_sparsity: bool


@dataclass
class RawOp:
    index: int
    opcode: int  # builtin operator code, or -1 for a custom op
    op_name: str  # "CONV_2D", or "CUSTOM:<code>"
    inputs: list[int]
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)
    options_type: int = 0
    squeeze_dims: list[int] = field(default_factory=list)
    reshape_new_shape: list[int] | None = None
    custom_options: bytes = b""


@dataclass
class RawModel:
    version: int
    tensors: list[RawTensor]
    ops: list[RawOp]
    inputs: list[int]
    outputs: list[int]
    buffers: list[bytes]
    subgraph_count: int


# Exceptions the flatbuffer reader raises on damaged input: offsets outside the buffer
# (struct.error, IndexError), numpy views past the end (ValueError), absurd numbers
# (OverflowError), undecodable strings, and type confusion from damaged union tags.
_PARSER_ERRORS = (struct.error, IndexError, ValueError, OverflowError, TypeError,
                  UnicodeDecodeError, AttributeError, MemoryError, RecursionError)


def decode(buf: bytes, source: str) -> RawModel:
    """Parse `buf` (a whole `.tflite` file) into a `RawModel`; `source` names it in errors."""
    if len(buf) == 0:
        raise ModelFormatError(f"{source}: empty file, not a TFLite model")
    if len(buf) < 8:
        raise ModelFormatError(f"{source}: {len(buf)} bytes is too short for a TFLite model")
    if buf[4:8] != FILE_IDENTIFIER:
        raise ModelFormatError(f"{source}: not a TFLite model (file identifier {bytes(buf[4:8])!r},"
                               f" expected {FILE_IDENTIFIER!r})")
    try:
        return _Decoder(bytes(buf), source).model()
    except ModelFormatError:
        raise
    except _PARSER_ERRORS as err:
        detail = ("an offset points outside the file" if isinstance(err, (struct.error, IndexError))
                  else f"{type(err).__name__}: {err}")
        raise ModelFormatError(f"{source}: corrupt or truncated TFLite flatbuffer ({detail})"
                               ) from None


class _Decoder:
    def __init__(self, buf: bytes, source: str):
        self.buf = buf
        self.source = source

    def _length(self, n: int, elem_size: int, what: str) -> int:
        """Refuse a vector whose length cannot fit in the file (damaged length field)."""
        if n < 0 or n * elem_size > len(self.buf):
            raise ModelFormatError(f"{self.source}: {what} claims {n} elements, more than the"
                                   f" {len(self.buf)}-byte file can hold")
        return n

    def _ints(self, obj, stem: str, elem_size: int, what: str) -> list[int]:
        n = self._length(getattr(obj, stem + "Length")(), elem_size, what)
        if n == 0:
            return []
        return [int(v) for v in getattr(obj, stem + "AsNumpy")()]

    def _string(self, raw: bytes | None) -> str:
        return "" if raw is None else raw.decode("utf-8", errors="replace")

    def model(self) -> RawModel:
        m = tflite.Model.GetRootAs(self.buf, 0)
        n_sub = self._length(m.SubgraphsLength(), 4, "subgraph list")
        if n_sub == 0:
            raise ModelFormatError(f"{self.source}: the model has no subgraph")
        opcodes = [self._opcode(m.OperatorCodes(i))
                   for i in range(self._length(m.OperatorCodesLength(), 4, "operator code list"))]
        buffers = [self._buffer(m.Buffers(i), i)
                   for i in range(self._length(m.BuffersLength(), 4, "buffer list"))]
        sg = m.Subgraphs(0)
        tensors = [self._tensor(sg.Tensors(i), i)
                   for i in range(self._length(sg.TensorsLength(), 4, "tensor list"))]
        ops = [self._op(sg.Operators(i), i, opcodes)
               for i in range(self._length(sg.OperatorsLength(), 4, "operator list"))]
        return RawModel(version=int(m.Version()), tensors=tensors, ops=ops,
                        inputs=self._ints(sg, "Inputs", 4, "subgraph inputs"),
                        outputs=self._ints(sg, "Outputs", 4, "subgraph outputs"),
                        buffers=buffers, subgraph_count=n_sub)

    def _opcode(self, oc) -> tuple[int, str]:
        # Builtin codes above 127 live in `builtin_code`; older files only fill the deprecated
        # int8 field, so the larger of the two is the real code (TFLite's GetBuiltinCode).
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        if code == tflite.BuiltinOperator.CUSTOM:
            return -1, "CUSTOM:" + self._string(oc.CustomCode())
        return code, BUILTIN_OPCODE2NAME.get(code, f"BUILTIN_{code}")

    def _buffer(self, b, index: int) -> bytes:
        offset, size = int(b.Offset()), int(b.Size())
        if offset > 1:
            # Large models keep buffer data after the flatbuffer, addressed from file start.
            if offset + size > len(self.buf):
                raise ModelFormatError(f"{self.source}: buffer {index} points at bytes"
                                       f" {offset}..{offset + size}, past the end of the"
                                       f" {len(self.buf)}-byte file")
            return self.buf[offset:offset + size]
        n = self._length(b.DataLength(), 1, f"buffer {index}")
        if n == 0:
            return b""
        data = b.DataAsNumpy()
        if data.size != n:
            raise ModelFormatError(f"{self.source}: buffer {index} is truncated")
        return data.tobytes()

    def _tensor(self, t, index: int) -> RawTensor:
        q = t.Quantization()
        quant = None
        if q is not None:
            scale = self._ints_f(q, index)
            if scale.size:
                zp_n = self._length(q.ZeroPointLength(), 8, f"tensor {index} zero points")
                zp = (np.asarray(q.ZeroPointAsNumpy(), dtype=np.int64) if zp_n
                      else np.zeros(0, dtype=np.int64))
                quant = RawQuant(scale, zp, int(q.QuantizedDimension()))
        return RawTensor(index=index, name=self._string(t.Name()),
                         shape=self._ints(t, "Shape", 4, f"tensor {index} shape"),
                         type=int(t.Type()), buffer=int(t.Buffer()), quant=quant,
                         is_variable=bool(t.IsVariable()), has_sparsity=t.Sparsity() is not None)

    def _ints_f(self, q, index: int) -> np.ndarray:
        n = self._length(q.ScaleLength(), 4, f"tensor {index} scales")
        return np.asarray(q.ScaleAsNumpy(), dtype=np.float32) if n else np.zeros(0, np.float32)

    def _op(self, o, index: int, opcodes: list[tuple[int, str]]) -> RawOp:
        oc_index = int(o.OpcodeIndex())
        if not 0 <= oc_index < len(opcodes):
            raise ModelFormatError(f"{self.source}: op {index} uses operator code {oc_index},"
                                   f" but the model lists {len(opcodes)}")
        code, name = opcodes[oc_index]
        op = RawOp(index=index, opcode=code, op_name=name,
                   inputs=self._ints(o, "Inputs", 4, f"op {index} inputs"),
                   outputs=self._ints(o, "Outputs", 4, f"op {index} outputs"),
                   options_type=int(o.BuiltinOptionsType()))
        if self._length(o.CustomOptionsLength(), 1, f"op {index} custom options"):
            op.custom_options = o.CustomOptionsAsNumpy().tobytes()
        spec = _OPTION_FIELDS.get(op.options_type)
        table = o.BuiltinOptions() if spec else None
        if spec and table is not None:
            cls, fields = spec
            opts = cls()
            opts.Init(table.Bytes, table.Pos)
            op.options = {attr: getter_value(opts, getter) for attr, getter in fields}
            if op.options_type == BuiltinOptions.SqueezeOptions:
                op.squeeze_dims = self._ints(opts, "SqueezeDims", 4, f"op {index} squeeze dims")
        if op.options_type == BuiltinOptions.ReshapeOptions and o.BuiltinOptions() is not None:
            t = o.BuiltinOptions()
            opts = tflite.ReshapeOptions()
            opts.Init(t.Bytes, t.Pos)
            if not opts.NewShapeIsNone():
                op.reshape_new_shape = self._ints(opts, "NewShape", 4, f"op {index} new shape")
        return op


def getter_value(obj, getter: str) -> Any:
    value = getattr(obj, getter)()
    return float(value) if isinstance(value, float) else int(value)
