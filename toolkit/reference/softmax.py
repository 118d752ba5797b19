"""SOFTMAX and LOGISTIC on int8, with gemmlowp's fixed-point exp and reciprocal.

- SOFTMAX (``reference_ops::Softmax``, int8 in, int8 out with scale 1/256 and zero point -128):
  each row's differences to its maximum are scaled by ``beta * in_scale`` into Q5.26
  (``PreprocessSoftmaxScaling``), differences below ``-CalculateInputRadius`` are dropped,
  ``exp_on_negative_values`` is summed in Q12.19, its reciprocal taken with
  ``one_over_one_plus_x_for_x_in_0_1``, and each exp times the reciprocal is shifted to 8 bits.
- LOGISTIC (``reference_integer_ops::Logistic``): the input is scaled into Q4.27, inputs beyond
  the radius saturate, otherwise gemmlowp's ``logistic`` in Q0.31 is rounded to 8 bits; the
  output has scale 1/256 and zero point -128.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekit import fixedpoint as fp
from edgekit.errors import UnsupportedError
from edgekit.ir import DType, Graph, Op
from edgekit.reference.common import (Prepared, require_dtype, require_quant, scale_f32, where,
                                      zero_point)

_SCALED_DIFF_INTEGER_BITS = 5
_ACCUMULATION_INTEGER_BITS = 12
_LOGISTIC_INPUT_INTEGER_BITS = 4


@dataclass(frozen=True, eq=False)
class SoftmaxParams(Prepared):
    input_multiplier: int
    input_left_shift: int
    diff_min: int


@dataclass(frozen=True, eq=False)
class LogisticParams(Prepared):
    input_zero_point: int
    input_range_radius: int
    input_multiplier: int
    input_left_shift: int


def _check_int8_probability_output(op: Op, graph: Graph):
    x, out = graph[op.inputs[0]], graph[op.outputs[0]]
    require_dtype(op, x, (DType.INT8,), "input")
    require_dtype(op, out, (DType.INT8,), "output")
    require_quant(op, x, "input")
    require_quant(op, out, "output")
    if zero_point(out) != -128 or scale_f32(out) != np.float32(1.0 / 256.0):
        raise UnsupportedError(f"{where(op)}: output {out.name!r} must have scale 1/256 and zero"
                               f" point -128 (got {float(scale_f32(out))}, {zero_point(out)})")
    if x.shape != out.shape:
        raise UnsupportedError(f"{where(op)}: input shape {x.shape} != output shape {out.shape}")
    return x, out


def prepare_softmax(op: Op, graph: Graph) -> SoftmaxParams:
    x, out = _check_int8_probability_output(op, graph)
    beta = float(np.float32(op.attrs.get("beta", 1.0)))
    multiplier, left_shift = fp.preprocess_softmax_scaling(
        beta, float(scale_f32(x)), _SCALED_DIFF_INTEGER_BITS)
    diff_min = -fp.calculate_input_radius(_SCALED_DIFF_INTEGER_BITS, left_shift)
    return SoftmaxParams(kind=op.kind, out_dtype=out.dtype, input_multiplier=multiplier,
                         input_left_shift=left_shift, diff_min=diff_min)


def softmax(p: SoftmaxParams, inputs: list) -> np.ndarray:
    x = inputs[0].astype(np.int64)
    diff = x - x.max(axis=-1, keepdims=True)
    used = diff >= p.diff_min
    scaled = fp.multiply_by_quantized_multiplier_greater_than_one(
        np.where(used, diff, 0), p.input_multiplier, p.input_left_shift)
    exps = fp.exp_on_negative_values(scaled, _SCALED_DIFF_INTEGER_BITS)  # Q0.31
    # Rescale<12> of each term, then a plain (wrapping) int32 sum along the row
    terms = np.where(used, fp.rounding_divide_by_pot(exps, _ACCUMULATION_INTEGER_BITS), 0)
    sum_of_exps = fp.wrap_int32(terms.sum(axis=-1, keepdims=True))
    reciprocal, bits_over_unit = fp.get_reciprocal(sum_of_exps, _ACCUMULATION_INTEGER_BITS)
    exponent = bits_over_unit + 31 - 8
    y = fp.rounding_divide_by_pot(fp.saturating_rounding_doubling_high_mul(reciprocal, exps),
                                  exponent) - 128
    y = np.where(used, np.clip(y, -128, 127), -128)
    return y.astype(np.int8)


def prepare_logistic(op: Op, graph: Graph) -> LogisticParams:
    x, out = _check_int8_probability_output(op, graph)
    real = float(scale_f32(x)) * float(1 << (31 - _LOGISTIC_INPUT_INTEGER_BITS))
    mantissa, left_shift = np.frexp(real)
    if left_shift < 0:  # TFLite's CalculateInputRadius would shift by a negative amount
        raise UnsupportedError(f"{where(op)}: input scale {float(scale_f32(x)):.3g} is too small"
                               " for LOGISTIC (below 2^-28)")
    multiplier = int(fp.round_half_away(mantissa * float(1 << 31)))
    radius = fp.calculate_input_radius(_LOGISTIC_INPUT_INTEGER_BITS, int(left_shift))
    return LogisticParams(kind=op.kind, out_dtype=out.dtype, input_zero_point=zero_point(x),
                          input_range_radius=radius, input_multiplier=multiplier,
                          input_left_shift=int(left_shift))


def logistic(p: LogisticParams, inputs: list) -> np.ndarray:
    x = inputs[0].astype(np.int64) - p.input_zero_point
    in_q4 = fp.multiply_by_quantized_multiplier(x, p.input_multiplier, p.input_left_shift)
    out_q0 = fp.logistic(in_q4, _LOGISTIC_INPUT_INTEGER_BITS)
    y = np.clip(fp.rounding_divide_by_pot(out_q0, 31 - 8) - 128, -128, 127)
    y = np.where(x <= -p.input_range_radius, -128, np.where(x >= p.input_range_radius, 127, y))
    return y.astype(np.int8)


PREPARE = {"SOFTMAX": prepare_softmax, "LOGISTIC": prepare_logistic}
KERNELS = {"SOFTMAX": softmax, "LOGISTIC": logistic}
