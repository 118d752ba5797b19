"""Transformer ops that TFLite has as builtins: BATCH_MATMUL, TRANSPOSE, GATHER, GELU (int8).

- BATCH_MATMUL (TFLite Micro's ``batch_matmul.cc`` + ``reference_ops::BatchMatMul``, int8 per
  tensor): ``acc = sum_k (a - a_zp) * (b - b_zp)`` in int32, then
  ``MultiplyByQuantizedMultiplier(acc, m, s) + y_zp`` clamped to int8; the multiplier comes
  from ``double(a_scale) * double(b_scale) / double(y_scale)`` (``GetQuantizedConvolution
  Multipler``). ``adj_x`` / ``adj_y`` read ``a`` as ``[..., K, M]`` / ``b`` as ``[..., N, K]``;
  batch dimensions (at most three, TFLite's rank limit of 5) broadcast as numpy's do.
- TRANSPOSE: ``out.shape[i] = x.shape[perm[i]]``, bytes moved, quantization unchanged.
- GATHER (``axis``, ``batch_dims`` 0): ``out = take(params, idx, axis)``; the output keeps the
  params' quantization. An index outside ``[0, params.shape[axis])`` is an error, as in TFLite
  Micro (which fails the invoke); the C kernel writes the zero point there instead.
- GELU (int8): TFLite's 256-entry lookup table (``LUTPopulate``): for every int8 ``q``,
  ``x = in_scale * (q - in_zp)`` in float32, ``g = gelu(x)`` in float32 (``erf`` form, or the
  ``tanh`` form when ``approximate``), ``y = clamp(round(g * (1 / out_scale)) + out_zp)``.
  The table is computed here once and the C code gets the same 256 bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgekit import fixedpoint as fp
from edgekit.errors import InterpreterError, UnsupportedError
from edgekit.ir import DType, Graph, Op
from edgekit.reference.common import (Prepared, int8_same_shape_operands, require_dtype,
                                      require_quant, scale_f32, where,
                                      zero_point)

#: TFLite's BATCH_MATMUL handles rank <= 5: at most three broadcast batch dimensions
MAX_BATCH_DIMS = 3
#: TFLite Micro's TRANSPOSE handles rank <= 6 (``kTransposeMaxDimensions``)
MAX_TRANSPOSE_RANK = 6


@dataclass(frozen=True, eq=False)
class BatchMatMulParams(Prepared):
    lhs_offset: int  # -a zero point
    rhs_offset: int  # -b zero point
    output_offset: int
    multiplier: int
    shift: int
    adj_x: bool
    adj_y: bool
    out_shape: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class TransposeParams(Prepared):
    perm: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class GatherParams(Prepared):
    axis: int
    axis_size: int
    fill: int  # what the C kernel writes for an out-of-range index (the zero point)
    name: str


@dataclass(frozen=True, eq=False)
class LutParams(Prepared):
    """GELU (and any other int8 -> int8 table op): ``lut[q + 128]`` is the output for ``q``."""

    lut: np.ndarray  # int8 [256]


def _matmul_dims(op: Op, shape: tuple[int, ...], adj: bool, role: str) -> tuple[int, int]:
    if not 2 <= len(shape) <= 2 + MAX_BATCH_DIMS:
        raise UnsupportedError(f"{where(op)}: {role} has shape {shape}; BATCH_MATMUL needs rank"
                               f" 2 to {2 + MAX_BATCH_DIMS}")
    rows, cols = shape[-2:]
    return (cols, rows) if adj else (rows, cols)


def prepare_batch_matmul(op: Op, graph: Graph) -> BatchMatMulParams:
    a, b, out = graph[op.inputs[0]], graph[op.inputs[1]], graph[op.outputs[0]]
    for t, role in ((a, "first input"), (b, "second input"), (out, "output")):
        require_dtype(op, t, (DType.INT8,), role)
        require_quant(op, t, role)
        if t.quant.per_channel:
            raise UnsupportedError(f"{where(op)}: {role} {t.name!r} must be quantized per tensor")
    adj_x, adj_y = bool(op.attrs.get("adj_x", False)), bool(op.attrs.get("adj_y", False))
    m, k = _matmul_dims(op, a.shape, adj_x, "first input")
    n, k2 = _matmul_dims(op, b.shape, not adj_y, "second input")
    if k != k2:
        raise UnsupportedError(f"{where(op)}: inner dimensions differ: {a.shape} (adj_x={adj_x})"
                               f" x {b.shape} (adj_y={adj_y})")
    try:
        batch = tuple(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
    except ValueError:
        raise UnsupportedError(f"{where(op)}: batch dimensions of {a.shape} and {b.shape} do not"
                               " broadcast") from None
    if batch + (m, n) != out.shape:
        raise UnsupportedError(f"{where(op)}: output {out.name!r} has shape {out.shape},"
                               f" expected {batch + (m, n)}")
    if op.attrs.get("activation", "NONE") != "NONE":
        raise UnsupportedError(f"{where(op)}: BATCH_MATMUL has no fused activation")
    real = float(scale_f32(a)) * float(scale_f32(b)) / float(scale_f32(out))
    multiplier, shift = fp.quantize_multiplier_scalar(real)
    return BatchMatMulParams(kind=op.kind, out_dtype=out.dtype, lhs_offset=-zero_point(a),
                             rhs_offset=-zero_point(b), output_offset=zero_point(out),
                             multiplier=multiplier, shift=shift, adj_x=adj_x, adj_y=adj_y,
                             out_shape=out.shape)


def batch_matmul(p: BatchMatMulParams, inputs: list) -> np.ndarray:
    a = inputs[0].astype(np.float64) + p.lhs_offset
    b = inputs[1].astype(np.float64) + p.rhs_offset
    if p.adj_x:
        a = np.swapaxes(a, -1, -2)
    if p.adj_y:
        b = np.swapaxes(b, -1, -2)
    # every partial sum is an integer below 2^53: the float64 product is exact
    acc = fp.wrap_int32(np.matmul(a, b).astype(np.int64))
    y = fp.multiply_by_quantized_multiplier(acc, p.multiplier, p.shift) + p.output_offset
    return np.clip(y, -128, 127).astype(np.int8).reshape(p.out_shape)


def prepare_transpose(op: Op, graph: Graph) -> TransposeParams:
    x, out = graph[op.inputs[0]], graph[op.outputs[0]]
    perm = tuple(int(i) for i in op.attrs.get("perm", ()))
    rank = len(x.shape)
    if sorted(perm) != list(range(rank)) or rank > MAX_TRANSPOSE_RANK:
        raise UnsupportedError(f"{where(op)}: perm {perm} is not a permutation of the"
                               f" {rank} axes of {x.shape} (rank <= {MAX_TRANSPOSE_RANK})")
    if tuple(x.shape[i] for i in perm) != out.shape:
        raise UnsupportedError(f"{where(op)}: output {out.name!r} has shape {out.shape},"
                               f" perm {perm} of {x.shape} gives"
                               f" {tuple(x.shape[i] for i in perm)}")
    if x.dtype != out.dtype or x.quant != out.quant:
        raise UnsupportedError(f"{where(op)}: output {out.name!r} must keep the input's dtype and"
                               " quantization (TRANSPOSE does not rescale)")
    return TransposeParams(kind=op.kind, out_dtype=out.dtype, perm=perm)


def transpose(p: TransposeParams, inputs: list) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(inputs[0], p.perm))


def prepare_gather(op: Op, graph: Graph) -> GatherParams:
    params, idx, out = graph[op.inputs[0]], graph[op.inputs[1]], graph[op.outputs[0]]
    require_dtype(op, idx, (DType.INT32,), "indices")
    if op.attrs.get("batch_dims", 0):
        raise UnsupportedError(f"{where(op)}: batch_dims {op.attrs['batch_dims']} is not"
                               " supported (0 is)")
    rank = len(params.shape)
    axis = int(op.attrs.get("axis", 0))
    if not -rank <= axis < rank:
        raise UnsupportedError(f"{where(op)}: axis {axis} is out of range for params"
                               f" {params.shape}")
    axis %= rank
    expected = params.shape[:axis] + idx.shape + params.shape[axis + 1:]
    if out.shape != expected:
        raise UnsupportedError(f"{where(op)}: output {out.name!r} has shape {out.shape},"
                               f" expected {expected}")
    if params.dtype != out.dtype or params.quant != out.quant:
        raise UnsupportedError(f"{where(op)}: output {out.name!r} must keep the params' dtype and"
                               f" quantization ({params.name!r})")
    return GatherParams(kind=op.kind, out_dtype=out.dtype, axis=axis,
                        axis_size=params.shape[axis], fill=zero_point(out), name=idx.name)


def gather(p: GatherParams, inputs: list) -> np.ndarray:
    params, idx = inputs[0], inputs[1]
    bad = (idx < 0) | (idx >= p.axis_size)
    if np.any(bad):
        value = int(idx[bad].ravel()[0])
        raise InterpreterError(f"GATHER: index {value} in {p.name!r} is outside [0,"
                               f" {p.axis_size})")
    return np.take(params, idx.astype(np.int64), axis=p.axis)


_SQRT1_2 = np.float32(math.sqrt(0.5))
_SQRT_2_OVER_PI = np.float32(math.sqrt(2.0 / math.pi))


def _erf_f32(x: np.float32) -> np.float32:
    # libm's erff is within an ulp of the correctly rounded value; so is this
    return np.float32(math.erf(float(x)))


def gelu_f32(x: np.float32, approximate: bool) -> np.float32:
    """TFLite's float32 GELU transform, one value (the table's generator)."""
    half_x = np.float32(0.5) * x
    if approximate:
        inner = x + np.float32(0.044715) * x * x * x
        t = np.float32(math.tanh(float(_SQRT_2_OVER_PI * inner)))
        return half_x * (np.float32(1.0) + t)
    return half_x * (np.float32(1.0) + _erf_f32(x * _SQRT1_2))


def lut_int8(in_scale: np.float32, in_zp: int, out_scale: np.float32, out_zp: int,
             transform) -> np.ndarray:
    """``LUTPopulate<int8_t>``: the 256 outputs for inputs -128..127, float32 arithmetic."""
    inverse = np.float32(1.0) / np.float32(out_scale)
    table = np.empty(256, dtype=np.int8)
    with np.errstate(over="ignore", invalid="ignore"):
        for q in range(-128, 128):
            x = np.float32(in_scale) * np.float32(q - in_zp)
            g = np.float32(transform(x))
            if not np.isfinite(g):
                table[q + 128] = -128
                continue
            rescaled = float(fp.round_half_away(np.float32(g * inverse)))
            quantized = int(np.clip(np.float32(rescaled) + np.float32(out_zp), -2.0**31, 2.0**31 - 128))
            table[q + 128] = min(max(quantized, -128), 127)
    return table


def prepare_gelu(op: Op, graph: Graph) -> LutParams:
    x, out = int8_same_shape_operands(op, graph)
    approximate = bool(op.attrs.get("approximate", False))
    table = lut_int8(scale_f32(x), zero_point(x), scale_f32(out), zero_point(out),
                     lambda v: gelu_f32(v, approximate))
    return LutParams(kind=op.kind, out_dtype=out.dtype, lut=table)


def lookup(p: LutParams, inputs: list) -> np.ndarray:
    return p.lut[inputs[0].astype(np.int64) + 128]


PREPARE = {"BATCH_MATMUL": prepare_batch_matmul, "TRANSPOSE": prepare_transpose,
           "GATHER": prepare_gather, "GELU": prepare_gelu}
KERNELS = {"BATCH_MATMUL": batch_matmul, "TRANSPOSE": transpose, "GATHER": gather,
           "GELU": lookup}
