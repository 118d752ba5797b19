"""Helpers shared by the reference kernels' prepare functions: reading quantization off IR
tensors the way TFLite's ``TfLiteTensor.params`` holds it (float32 scale, int32 zero point),
fused-activation clamp ranges, and the errors for what a kernel does not support."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekit.errors import UnsupportedError
from edgekit.fixedpoint import round_half_away
from edgekit.ir import DType, Graph, Op, Tensor


def where(op: Op, index: int | None = None) -> str:
    """How error messages name an op: kind, name and TFLite index when known."""
    label = op.kind
    if op.name:
        label += f" {op.name!r}"
    tflite_index = op.attrs.get("tflite_index", index)
    if tflite_index is not None:
        label += f" (op #{tflite_index})"
    return label


def tensor(graph: Graph, name: str | None) -> Tensor | None:
    return None if name is None else graph[name]


def scale_f32(t: Tensor) -> np.float32:
    """Per-tensor scale as the float32 TFLite stores in ``params.scale``."""
    if t.quant is None:
        raise UnsupportedError(f"tensor {t.name!r} ({t.dtype.value}) has no quantization")
    return np.float32(t.quant.scale[0])


def scales_f32(t: Tensor) -> np.ndarray:
    """All (per-channel) scales as float32."""
    if t.quant is None:
        raise UnsupportedError(f"tensor {t.name!r} ({t.dtype.value}) has no quantization")
    return t.quant.scale.astype(np.float32)


def zero_point(t: Tensor) -> int:
    if t.quant is None:
        return 0
    return int(t.quant.zero_point[0])


def dtype_range(dtype: DType) -> tuple[int, int]:
    return dtype.min, dtype.max


def quantize_real(value: float, scale: np.float32, zp: int) -> int:
    """TFLite's ``Quantize`` used for clamp bounds: zp + round(value / scale), float32 math."""
    return zp + int(round_half_away(np.float32(value) / np.float32(scale)))


def activation_range(activation: str, out: Tensor) -> tuple[int, int]:
    """``CalculateActivationRangeQuantized``: the int clamp [min, max] of a fused activation."""
    qmin, qmax = dtype_range(out.dtype)
    if activation == "NONE":
        return qmin, qmax
    scale, zp = scale_f32(out), zero_point(out)
    if activation == "RELU":
        return max(qmin, quantize_real(0.0, scale, zp)), qmax
    if activation == "RELU6":
        return max(qmin, quantize_real(0.0, scale, zp)), min(qmax, quantize_real(6.0, scale, zp))
    if activation == "RELU_N1_TO_1":
        return max(qmin, quantize_real(-1.0, scale, zp)), min(qmax, quantize_real(1.0, scale, zp))
    raise UnsupportedError(f"unknown fused activation {activation!r}")


def require_dtype(op: Op, t: Tensor, allowed: tuple[DType, ...], role: str) -> None:
    if t.dtype not in allowed:
        names = ", ".join(d.value for d in allowed)
        raise UnsupportedError(f"{where(op)}: {role} tensor {t.name!r} is {t.dtype.value};"
                               f" the reference kernel supports {names}")


def require_quant(op: Op, t: Tensor, role: str) -> None:
    if t.quant is None:
        raise UnsupportedError(f"{where(op)}: {role} tensor {t.name!r} ({t.dtype.value}) has no"
                               " quantization parameters")


@dataclass(frozen=True)
class Prepared:
    """Base of every op's prepared parameters: the op kind and its output dtype."""

    kind: str
    out_dtype: DType


def int8_same_shape_operands(op: Op, graph: Graph) -> tuple[Tensor, Tensor]:
    """The input and output of a shape-preserving int8 -> int8 op (lookup tables, row norms),
    checked: both quantized int8, one shape."""
    x, out = graph[op.inputs[0]], graph[op.outputs[0]]
    for t, role in ((x, "input"), (out, "output")):
        require_dtype(op, t, (DType.INT8,), role)
        require_quant(op, t, role)
    if x.shape != out.shape:
        raise UnsupportedError(f"{where(op)}: input shape {x.shape} != output shape {out.shape}")
    return x, out
