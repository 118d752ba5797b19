"""The Graph IR: the one small representation between importers and everything downstream.

A `Graph` is a set of named `Tensor`s and a list of `Op`s in a valid execution order
(topological). Converters produce it; the reference interpreter, the memory planner, the code
generator and the `.tflite` exporter consume it. It is deliberately close to TFLite's int8 model
(NHWC activations, OHWI convolution weights, ``1HWO`` depthwise weights, per-channel symmetric
weight scales on the output-channel axis) so that importing a `.tflite` file is a direct mapping
and bit-exactness with TFLite Micro is a property of the kernels, not of a translation.

Layout and attribute conventions (every op kind, its inputs and its attributes):

================== ============================== =====================================================
kind               inputs                         attrs
================== ============================== =====================================================
CONV_2D            x[NHWC], w[OHWI], bias[O]|None stride=(sh, sw), dilation=(dh, dw),
                                                  pad=(top, bottom, left, right), activation
DEPTHWISE_CONV_2D  x[NHWC], w[1HW(C*m)], bias|None stride, dilation, pad, depth_multiplier=m, activation
FULLY_CONNECTED    x[..., K], w[N, K], bias[N]|None activation, keep_num_dims
ADD, MUL           a, b (broadcastable)           activation
AVERAGE_POOL_2D,   x[NHWC]                        filter=(fh, fw), stride, pad, activation
MAX_POOL_2D
MEAN               x                              axes=tuple[int], keep_dims
RESHAPE            x                              (new shape is the output tensor's shape)
SOFTMAX            x                              beta
LOGISTIC, HARD_SWISH, RELU, RELU6, QUANTIZE, DEQUANTIZE   x     (none)
PAD                x                              paddings=((before, after), ...) per axis
CONCATENATION      x0, x1, ...                    axis, activation
SLICE              x                              begin=tuple[int] per axis (size: the output's shape)
INSERT_TILE        base|None, tile                origin=tuple[int] per axis: out = base (zeros if
                                                  None) with tile written at origin (patch schedules)
BATCH_MATMUL       a[..., M, K], b[..., K, N]     adj_x, adj_y (bool: a is [..., K, M] / b is [..., N, K]
                                                  transposed, as TFLite's); batch dims broadcast
TRANSPOSE          x                              perm=tuple[int] (out.shape[i] = x.shape[perm[i]])
GATHER             params[V, ...] (const), idx    axis=0: out = params[idx] (idx int32, any shape)
GELU               x                              approximate (bool): TFLite's int8 lookup table
SILU               x                              (none) int8 lookup table of x * sigmoid(x) (edgekit op)
LAYER_NORM         x[..., C], gamma[C], beta[C]   epsilon: normalise over the last axis (edgekit op)
RMS_NORM           x[..., C], gamma[C]            epsilon: x / rms(x) * gamma over the last axis
                                                  (edgekit op)
ATTENTION          q[..., Tq, d], k[..., Tk, d],  scores_scale, scores_zero_point, beta,
                   v[..., Tk, dv],                probs_scale, probs_zero_point (masked_scale,
                   mask[1, .., 1, Tk]|absent      masked_zero_point with a mask): softmax(q k^T
                                                  (+ mask)) v one query row at a time, the int8
                                                  arithmetic of BATCH_MATMUL(adj_y) -> (ADD mask)
                                                  -> SOFTMAX -> BATCH_MATMUL
                                                  (edgekit op, made by `edgekit.attention`; never
                                                  written to a .tflite)
================== ============================== =====================================================

Causal depthwise 1-D convolution over tokens is DEPTHWISE_CONV_2D on ``[1, 1, T, C]`` with
``pad=(0, 0, k - 1, 0)``; fully-connected over tokens is FULLY_CONNECTED on ``x[1, T, K]`` with
``keep_num_dims``. "edgekit op": TFLite has no builtin for it; the ``.tflite`` export writes it
as a custom op (``EDGEKIT_<KIND>``), our reference interpreter defines its int8 semantics and
the C kernels match it bit for bit.

``activation`` is one of `ACTIVATIONS`; for quantized tensors the fused activation is a clamp
derived from the output's quantization, as TFLite does. ``pad`` holds explicit amounts (TFLite's
SAME/VALID resolved at import), so that patch-based schedules can change them per patch.
Optional inputs that are absent are ``None`` in `Op.inputs`.

New op kinds (transformer ops, ...) are added to `OP_KINDS` with a line in the table above.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np

from edgekit.errors import GraphError


class DType(str, enum.Enum):
    """Element types of IR tensors. INT4 is stored unpacked (one int8 per value) in `Tensor.data`
    and packed two per byte only in files and firmware; `Tensor.nbytes` counts packed bytes."""

    INT4 = "int4"
    INT8 = "int8"
    INT16 = "int16"
    INT32 = "int32"
    INT64 = "int64"  # only for constant shape/axis operands before folding
    FLOAT32 = "float32"

    @property
    def bits(self) -> int:
        return _BITS[self]

    @property
    def numpy(self) -> np.dtype:
        """The numpy dtype that holds values of this type (int8 for INT4)."""
        return np.dtype(_NUMPY[self])

    @property
    def min(self) -> int:
        return -(1 << (self.bits - 1))

    @property
    def max(self) -> int:
        return (1 << (self.bits - 1)) - 1


_BITS = {DType.INT4: 4, DType.INT8: 8, DType.INT16: 16, DType.INT32: 32, DType.INT64: 64,
         DType.FLOAT32: 32}
_NUMPY = {DType.INT4: "int8", DType.INT8: "int8", DType.INT16: "int16", DType.INT32: "int32",
          DType.INT64: "int64", DType.FLOAT32: "float32"}

ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")

OP_KINDS = frozenset({
    "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MUL", "AVERAGE_POOL_2D",
    "MAX_POOL_2D", "MEAN", "RESHAPE", "SOFTMAX", "LOGISTIC", "HARD_SWISH", "RELU", "RELU6",
    "PAD", "CONCATENATION", "QUANTIZE", "DEQUANTIZE", "SLICE", "INSERT_TILE",
    # transformer ops (MCUFormer, EmbBERT-Q)
    "BATCH_MATMUL", "TRANSPOSE", "GATHER", "GELU", "SILU", "LAYER_NORM", "RMS_NORM",
    "ATTENTION",
})


@dataclass(frozen=True)
class Quantization:
    """Affine quantization ``real = scale * (q - zero_point)``.

    Per-tensor when ``scale`` has one element; per-channel along ``axis`` otherwise (TFLite's
    per-channel weights: symmetric, zero points all 0, ``axis`` the output-channel dimension).
    """

    scale: np.ndarray  # float64, shape (1,) or (C,)
    zero_point: np.ndarray  # int64, same shape as scale
    axis: int | None = None

    def __post_init__(self):
        scale = np.atleast_1d(np.asarray(self.scale, dtype=np.float64))
        zp = np.atleast_1d(np.asarray(self.zero_point, dtype=np.int64))
        if zp.size == 1 and scale.size > 1:
            zp = np.zeros_like(scale, dtype=np.int64) + zp[0]
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "zero_point", zp)
        if scale.ndim != 1 or scale.size == 0 or scale.shape != zp.shape:
            raise GraphError(f"quantization scale {scale.shape} and zero point {zp.shape} must be"
                             " non-empty vectors of the same length")
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise GraphError(f"quantization scale must be finite and positive, got {scale[:4]}")
        if scale.size > 1 and self.axis is None:
            raise GraphError("per-channel quantization needs an axis")

    @property
    def per_channel(self) -> bool:
        return self.scale.size > 1

    @classmethod
    def per_tensor(cls, scale: float, zero_point: int = 0) -> "Quantization":
        return cls(np.array([scale]), np.array([zero_point]))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Quantization) and self.axis == other.axis
                and np.array_equal(self.scale, other.scale)
                and np.array_equal(self.zero_point, other.zero_point))

    def __hash__(self):  # pragma: no cover - frozen dataclass with arrays
        return hash((self.scale.tobytes(), self.zero_point.tobytes(), self.axis))


@dataclass
class Tensor:
    """A named value: a constant (``data`` set: weights, biases) or an activation."""

    name: str
    shape: tuple[int, ...]
    dtype: DType
    quant: Quantization | None = None
    data: np.ndarray | None = None

    def __post_init__(self):
        self.shape = tuple(int(d) for d in self.shape)
        self.dtype = DType(self.dtype)
        if any(d < 0 for d in self.shape):
            raise GraphError(f"tensor {self.name!r}: negative dimension in shape {self.shape}")
        if self.data is not None:
            data = np.asarray(self.data)
            if data.shape != self.shape:
                raise GraphError(f"tensor {self.name!r}: data shape {data.shape} != shape {self.shape}")
            if data.dtype != self.dtype.numpy:
                raise GraphError(f"tensor {self.name!r}: data dtype {data.dtype} != {self.dtype.value}")
            if self.dtype == DType.INT4 and data.size and (data.min() < -8 or data.max() > 7):
                raise GraphError(f"tensor {self.name!r}: int4 data outside [-8, 7]")
            self.data = data
        q = self.quant
        if q is not None and q.per_channel:
            if q.axis is None or not -len(self.shape) <= q.axis < len(self.shape):
                raise GraphError(f"tensor {self.name!r}: quantization axis {q.axis} out of range"
                                 f" for shape {self.shape}")
            if self.shape[q.axis] != q.scale.size:
                raise GraphError(f"tensor {self.name!r}: {q.scale.size} channel scales for"
                                 f" dimension {self.shape[q.axis]} on axis {q.axis}")

    @property
    def size(self) -> int:
        """Number of elements."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        """Bytes in memory (int4 packed two per byte)."""
        return (self.size * self.dtype.bits + 7) // 8

    @property
    def is_constant(self) -> bool:
        return self.data is not None


@dataclass
class Op:
    """One operation: ``kind`` from `OP_KINDS`, input/output tensor names, attributes."""

    kind: str
    inputs: list[str | None]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    def present_inputs(self) -> list[str]:
        return [t for t in self.inputs if t is not None]


class Graph:
    """Tensors plus ops in execution order. Validated on construction (`validate`).

    Mutating passes (folding, reordering, patching) build a new `Graph` or call `validate()`
    again when they are done.
    """

    def __init__(self, tensors: Iterable[Tensor], ops: Iterable[Op], inputs: Iterable[str],
                 outputs: Iterable[str], name: str = "model"):
        self.tensors: dict[str, Tensor] = {}
        for t in tensors:
            if t.name in self.tensors:
                raise GraphError(f"duplicate tensor name {t.name!r}")
            self.tensors[t.name] = t
        self.ops: list[Op] = list(ops)
        self.inputs: list[str] = list(inputs)
        self.outputs: list[str] = list(outputs)
        self.name = name
        self.validate()

    # --- queries ---------------------------------------------------------------------------------

    def __getitem__(self, name: str) -> Tensor:
        try:
            return self.tensors[name]
        except KeyError:
            raise GraphError(f"no tensor named {name!r} in graph {self.name!r}") from None

    def constants(self) -> Iterator[Tensor]:
        return (t for t in self.tensors.values() if t.is_constant)

    def activations(self) -> Iterator[Tensor]:
        """Tensors that live in RAM at run time: everything that is not a constant."""
        return (t for t in self.tensors.values() if not t.is_constant)

    def producer(self) -> dict[str, int]:
        """Tensor name -> index of the op that writes it."""
        return {out: i for i, op in enumerate(self.ops) for out in op.outputs}

    def consumers(self) -> dict[str, list[int]]:
        """Tensor name -> indices of the ops that read it, in order."""
        users: dict[str, list[int]] = {name: [] for name in self.tensors}
        for i, op in enumerate(self.ops):
            for name in op.present_inputs():
                if i not in users[name]:
                    users[name].append(i)
        return users

    @property
    def weights_bytes(self) -> int:
        return sum(t.nbytes for t in self.constants())

    # --- invariants ------------------------------------------------------------------------------

    def validate(self) -> None:
        """Check references, single assignment and topological order; raise `GraphError`."""
        for name in (*self.inputs, *self.outputs):
            if name not in self.tensors:
                raise GraphError(f"graph {self.name!r}: input/output {name!r} is not a tensor")
        for name in self.inputs:
            if self.tensors[name].is_constant:
                raise GraphError(f"graph input {name!r} is a constant")
        available = {t.name for t in self.constants()} | set(self.inputs)
        written: set[str] = set()
        for i, op in enumerate(self.ops):
            where = f"op {i} ({op.kind}{' ' + op.name if op.name else ''})"
            if op.kind not in OP_KINDS:
                raise GraphError(f"{where}: unknown op kind {op.kind!r}")
            activation = op.attrs.get("activation", "NONE")
            if activation not in ACTIVATIONS:
                raise GraphError(f"{where}: unknown fused activation {activation!r}")
            for name in op.present_inputs():
                if name not in self.tensors:
                    raise GraphError(f"{where}: input {name!r} is not a tensor")
                if name not in available:
                    raise GraphError(f"{where}: input {name!r} is used before it is written"
                                     " (ops are not in topological order)")
            if not op.outputs:
                raise GraphError(f"{where}: has no outputs")
            for name in op.outputs:
                if name not in self.tensors:
                    raise GraphError(f"{where}: output {name!r} is not a tensor")
                if name in written or name in self.inputs or self.tensors[name].is_constant:
                    raise GraphError(f"{where}: output {name!r} is written more than once")
                written.add(name)
                available.add(name)
        for name in self.outputs:
            if name not in available:
                raise GraphError(f"graph output {name!r} is never written")

    def __repr__(self) -> str:
        return (f"Graph({self.name!r}, {len(self.ops)} ops, {len(self.tensors)} tensors,"
                f" inputs={self.inputs}, outputs={self.outputs})")
