"""AVERAGE_POOL_2D, MAX_POOL_2D and MEAN, as TFLite Micro's reference kernels compute them.

- Pools clip each window to the input (padding is never counted); the average divides the
  integer sum by the number of valid taps rounding half away from zero, then clamps to the
  fused activation. No zero points are involved: input and output share the quantization.
- MEAN (``reduce.cc`` + ``QuantizedMeanOrSum``): ``sum - zp_in * n`` rescaled by the multiplier
  of ``in_scale / out_scale`` with ``1/n`` folded in (``(m << k) / n``, shift - k), plus the
  output zero point, saturated. The TFLite Micro we test against takes this path for every int8
  MEAN, also when input and output share a quantization (older releases divided the raw sum by
  n there; the randomized tests pin the current behaviour).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekit import fixedpoint as fp
from edgekit.errors import UnsupportedError
from edgekit.ir import DType, Graph, Op
from edgekit.reference.common import (Prepared, activation_range, require_dtype, require_quant,
                                      scale_f32, where, zero_point)
from edgekit.reference.conv import window_view


@dataclass(frozen=True, eq=False)
class PoolParams(Prepared):
    filter: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int, int, int]
    act_min: int
    act_max: int
    out_shape: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class MeanParams(Prepared):
    axes: tuple[int, ...]  # resolved, non-negative, unique
    num_elements: int  # elements averaged per output
    input_zero_point: int
    output_zero_point: int
    multiplier: int  # already includes 1/num_elements
    shift: int
    out_shape: tuple[int, ...]


def prepare_pool(op: Op, graph: Graph) -> PoolParams:
    x, out = graph[op.inputs[0]], graph[op.outputs[0]]
    require_dtype(op, x, (DType.INT8, DType.INT16), "input")
    require_dtype(op, out, (x.dtype,), "output")
    if len(x.shape) != 4 or len(out.shape) != 4 or x.shape[3] != out.shape[3]:
        raise UnsupportedError(f"{where(op)}: expects NHWC input/output with equal channels, got"
                               f" {x.shape} -> {out.shape}")
    act_min, act_max = activation_range(op.attrs.get("activation", "NONE"), out)
    return PoolParams(kind=op.kind, out_dtype=out.dtype,
                      filter=tuple(op.attrs["filter"]), stride=tuple(op.attrs.get("stride", (1, 1))),
                      pad=tuple(op.attrs.get("pad", (0, 0, 0, 0))), act_min=act_min,
                      act_max=act_max, out_shape=out.shape)


def _windows(p: PoolParams, x: np.ndarray, fill):
    _, oh, ow, _ = p.out_shape
    return window_view(x, p.filter, p.stride, (1, 1), p.pad[0], p.pad[2], (oh, ow), fill)


def average_pool(p: PoolParams, inputs: list) -> np.ndarray:
    x = inputs[0].astype(np.int64)
    total = _windows(p, x, 0).sum(axis=(3, 4))
    count = _windows(p, np.ones_like(x[..., :1]), 0).sum(axis=(3, 4))
    if np.any(count == 0):
        raise UnsupportedError(f"{p.kind}: a pooling window lies entirely in the padding")
    half = count // 2
    avg = fp.trunc_div(np.where(total > 0, total + half, total - half), count)
    return np.clip(avg, p.act_min, p.act_max).astype(p.out_dtype.numpy)


def max_pool(p: PoolParams, inputs: list) -> np.ndarray:
    x = inputs[0].astype(np.int64)
    lowest = np.iinfo(np.int64).min
    best = _windows(p, x, lowest).max(axis=(3, 4))
    return np.clip(best, p.act_min, p.act_max).astype(p.out_dtype.numpy)


def prepare_mean(op: Op, graph: Graph) -> MeanParams:
    x, out = graph[op.inputs[0]], graph[op.outputs[0]]
    require_dtype(op, x, (DType.INT8, DType.INT16), "input")
    require_dtype(op, out, (x.dtype,), "output")
    require_quant(op, x, "input")
    require_quant(op, out, "output")
    rank = len(x.shape)
    axes: list[int] = []
    for a in op.attrs.get("axes", ()):
        a = int(a)
        resolved = a + rank if a < 0 else a
        if not 0 <= resolved < rank:
            raise UnsupportedError(f"{where(op)}: axis {a} out of range for input {x.shape}")
        if resolved not in axes:
            axes.append(resolved)
    n = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    if n == 0:
        raise UnsupportedError(f"{where(op)}: MEAN over an empty axis")
    multiplier, shift = fp.quantize_multiplier_scalar(
        np.float64(scale_f32(x)) / np.float64(scale_f32(out)))
    # Fold 1/n into the multiplier as QuantizedMeanOrSum does: at most 32 bits of headroom and
    # never beyond a total right shift of 31.
    k = min(int(n).bit_length() - 1, 32, 31 + shift)
    multiplier = int(fp.trunc_div(np.int64(multiplier) << k, n))
    shift -= k
    return MeanParams(kind=op.kind, out_dtype=out.dtype, axes=tuple(axes), num_elements=n,
                      input_zero_point=zero_point(x), output_zero_point=zero_point(out),
                      multiplier=multiplier, shift=shift, out_shape=out.shape)


def mean(p: MeanParams, inputs: list) -> np.ndarray:
    x = inputs[0].astype(np.int64)
    total = x.sum(axis=p.axes)
    shifted = fp.wrap_int32(total - p.input_zero_point * p.num_elements)
    y = fp.multiply_by_quantized_multiplier(shifted, p.multiplier, p.shift) + p.output_zero_point
    return np.clip(y, p.out_dtype.min, p.out_dtype.max).astype(p.out_dtype.numpy).reshape(p.out_shape)


PREPARE = {"AVERAGE_POOL_2D": prepare_pool, "MAX_POOL_2D": prepare_pool, "MEAN": prepare_mean}
KERNELS = {"AVERAGE_POOL_2D": average_pool, "MAX_POOL_2D": max_pool, "MEAN": mean}
