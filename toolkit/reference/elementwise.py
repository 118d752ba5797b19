"""Element-wise ops: ADD, MUL (with numpy broadcasting), RELU, RELU6, HARD_SWISH, QUANTIZE,
DEQUANTIZE, as TFLite Micro's reference kernels compute them.

- ADD (``add_common.cc`` + ``reference_integer_ops::Add``): both inputs are shifted left by 20
  bits (15 for int16), rescaled to twice the larger input scale with
  ``MultiplyByQuantizedMultiplierSmallerThanOneExp``, summed, rescaled to the output.
- MUL: ``(a - a_zp) * (b - b_zp)`` rescaled by ``a_scale * b_scale / y_scale``.
- RELU: requantises ``x - x_zp`` to the output scale and clamps at the output zero point.
- RELU6: TFLite Micro does *not* requantise: it clamps the input to
  [x_zp, quantize(6.0)] in the input's quantization and copies.
- HARD_SWISH: the int16 fixed-point algorithm of ``reference_ops::HardSwish``.
- QUANTIZE: float -> int: ``round(x / scale) + zp`` in float32; int -> int: requantise.
- DEQUANTIZE: ``float(double(scale) * (q - zp))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekit import fixedpoint as fp
from edgekit.errors import UnsupportedError
from edgekit.ir import DType, Graph, Op
from edgekit.reference.common import (Prepared, activation_range, require_dtype, require_quant,
                                      scale_f32, where, zero_point)

_QTYPES = (DType.INT8, DType.INT16)


@dataclass(frozen=True, eq=False)
class AddParams(Prepared):
    input1_offset: int
    input2_offset: int
    output_offset: int
    left_shift: int
    input1_multiplier: int
    input1_shift: int
    input2_multiplier: int
    input2_shift: int
    output_multiplier: int
    output_shift: int
    act_min: int
    act_max: int
    out_shape: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class MulParams(Prepared):
    input1_offset: int
    input2_offset: int
    output_offset: int
    output_multiplier: int
    output_shift: int
    act_min: int
    act_max: int
    out_shape: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class RequantizeParams(Prepared):
    """RELU, int->int QUANTIZE: ``clamp(MBQM(x - in_zp) + out_zp, act_min, act_max)``."""

    input_zero_point: int
    output_zero_point: int
    multiplier: int
    shift: int
    act_min: int
    act_max: int


@dataclass(frozen=True, eq=False)
class ClampParams(Prepared):
    """RELU6: clamp to [lo, hi] in the input's quantization, no rescaling."""

    lo: int
    hi: int


@dataclass(frozen=True, eq=False)
class HardSwishParams(Prepared):
    input_zero_point: int
    output_zero_point: int
    reluish_multiplier_int16: int
    reluish_multiplier_exponent: int
    output_multiplier_int16: int
    output_multiplier_exponent: int


@dataclass(frozen=True, eq=False)
class AffineQuantizeParams(Prepared):
    """float -> int QUANTIZE: ``clamp(round(x / scale) + zp)`` with float32 division."""

    scale: np.float32
    zero_point: int


@dataclass(frozen=True, eq=False)
class DequantizeParams(Prepared):
    scale: float  # double, as TFLite's DequantizationParams
    zero_point: int


def _binary_operands(op: Op, graph: Graph):
    a, b, out = graph[op.inputs[0]], graph[op.inputs[1]], graph[op.outputs[0]]
    for t, role in ((a, "first input"), (b, "second input"), (out, "output")):
        require_dtype(op, t, _QTYPES, role)
        require_quant(op, t, role)
    require_dtype(op, b, (a.dtype,), "second input")
    require_dtype(op, out, (a.dtype,), "output")
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise UnsupportedError(f"{where(op)}: input shapes {a.shape} and {b.shape} do not"
                               " broadcast") from None
    if tuple(shape) != out.shape:
        raise UnsupportedError(f"{where(op)}: broadcast shape {tuple(shape)} != output shape"
                               f" {out.shape}")
    return a, b, out


def prepare_add(op: Op, graph: Graph) -> AddParams:
    a, b, out = _binary_operands(op, graph)
    left_shift = 15 if out.dtype == DType.INT16 else 20
    sa, sb, so = (np.float64(scale_f32(t)) for t in (a, b, out))
    twice_max = 2.0 * max(sa, sb)
    m1, s1 = fp.quantize_multiplier_scalar(sa / twice_max)
    m2, s2 = fp.quantize_multiplier_scalar(sb / twice_max)
    mo, so_ = fp.quantize_multiplier_scalar(twice_max / (float(1 << left_shift) * so))
    if max(s1, s2, so_) > 0:
        raise UnsupportedError(f"{where(op)}: scales {sa}, {sb} -> {so} need a multiplier >= 1")
    act_min, act_max = activation_range(op.attrs.get("activation", "NONE"), out)
    return AddParams(kind=op.kind, out_dtype=out.dtype, input1_offset=-zero_point(a),
                     input2_offset=-zero_point(b), output_offset=zero_point(out),
                     left_shift=left_shift, input1_multiplier=m1, input1_shift=s1,
                     input2_multiplier=m2, input2_shift=s2, output_multiplier=mo,
                     output_shift=so_, act_min=act_min, act_max=act_max, out_shape=out.shape)


def add(p: AddParams, inputs: list) -> np.ndarray:
    a, b = (x.astype(np.int64) for x in inputs[:2])
    a, b = np.broadcast_arrays(a, b)
    sa = fp.multiply_by_quantized_multiplier_smaller_than_one_exp(
        (a + p.input1_offset) << p.left_shift, p.input1_multiplier, p.input1_shift)
    sb = fp.multiply_by_quantized_multiplier_smaller_than_one_exp(
        (b + p.input2_offset) << p.left_shift, p.input2_multiplier, p.input2_shift)
    raw = fp.multiply_by_quantized_multiplier_smaller_than_one_exp(
        sa + sb, p.output_multiplier, p.output_shift) + p.output_offset
    return np.clip(raw, p.act_min, p.act_max).astype(p.out_dtype.numpy).reshape(p.out_shape)


def prepare_mul(op: Op, graph: Graph) -> MulParams:
    a, b, out = _binary_operands(op, graph)
    if a.dtype == DType.INT16 and (zero_point(a) or zero_point(b) or zero_point(out)):
        raise UnsupportedError(f"{where(op)}: int16 MUL needs zero points 0")
    real = (np.float64(scale_f32(a)) * np.float64(scale_f32(b))) / np.float64(scale_f32(out))
    m, s = fp.quantize_multiplier_scalar(real)
    act_min, act_max = activation_range(op.attrs.get("activation", "NONE"), out)
    return MulParams(kind=op.kind, out_dtype=out.dtype, input1_offset=-zero_point(a),
                     input2_offset=-zero_point(b), output_offset=zero_point(out),
                     output_multiplier=m, output_shift=s, act_min=act_min, act_max=act_max,
                     out_shape=out.shape)


def mul(p: MulParams, inputs: list) -> np.ndarray:
    a, b = (x.astype(np.int64) for x in inputs[:2])
    prod = fp.wrap_int32((a + p.input1_offset) * (b + p.input2_offset))
    raw = fp.multiply_by_quantized_multiplier(prod, p.output_multiplier, p.output_shift)
    out = np.clip(raw + p.output_offset, p.act_min, p.act_max).astype(p.out_dtype.numpy)
    return np.broadcast_to(out, p.out_shape).copy()


def _unary_operands(op: Op, graph: Graph, in_types=_QTYPES, out_types=_QTYPES):
    x, out = graph[op.inputs[0]], graph[op.outputs[0]]
    require_dtype(op, x, in_types, "input")
    require_dtype(op, out, out_types, "output")
    if x.shape != out.shape:
        raise UnsupportedError(f"{where(op)}: input shape {x.shape} != output shape {out.shape}")
    return x, out


def prepare_relu(op: Op, graph: Graph) -> RequantizeParams:
    x, out = _unary_operands(op, graph)
    require_dtype(op, out, (x.dtype,), "output")
    require_quant(op, x, "input")
    require_quant(op, out, "output")
    m, s = fp.quantize_multiplier_scalar(np.float64(scale_f32(x)) / np.float64(scale_f32(out)))
    return RequantizeParams(kind=op.kind, out_dtype=out.dtype, input_zero_point=zero_point(x),
                            output_zero_point=zero_point(out), multiplier=m, shift=s,
                            act_min=max(out.dtype.min, zero_point(out)), act_max=out.dtype.max)


def requantize(p: RequantizeParams, inputs: list) -> np.ndarray:
    x = inputs[0].astype(np.int64)
    raw = fp.multiply_by_quantized_multiplier(x - p.input_zero_point, p.multiplier, p.shift)
    return np.clip(raw + p.output_zero_point, p.act_min, p.act_max).astype(p.out_dtype.numpy)


def prepare_relu6(op: Op, graph: Graph) -> ClampParams:
    x, out = _unary_operands(op, graph)
    require_dtype(op, out, (x.dtype,), "output")
    require_quant(op, x, "input")
    zp = zero_point(x)
    six = zp + int(fp.round_half_away(np.float32(6.0) / scale_f32(x)))
    six = min(max(six, x.dtype.min), x.dtype.max)
    return ClampParams(kind=op.kind, out_dtype=out.dtype, lo=zp, hi=six)


def clamp(p: ClampParams, inputs: list) -> np.ndarray:
    x = inputs[0]
    # TFLite's Relu6: val > six ? six : val < zero ? zero : val (six wins if six < zero)
    return np.where(x > p.hi, p.hi, np.where(x < p.lo, p.lo, x)).astype(p.out_dtype.numpy)


def prepare_hard_swish(op: Op, graph: Graph) -> HardSwishParams:
    x, out = _unary_operands(op, graph, (DType.INT8,), (DType.INT8,))
    require_quant(op, x, "input")
    require_quant(op, out, "output")
    hires_input_scale = np.float32(1.0 / 128.0) * scale_f32(x)
    reluish_scale = np.float32(3.0 / 32768.0)
    out_m, out_e = fp.quantize_multiplier_scalar(np.float64(hires_input_scale / scale_f32(out)))
    if out_e > 0:
        raise UnsupportedError(f"{where(op)}: output scale {float(scale_f32(out))} is too small"
                               f" for input scale {float(scale_f32(x))}")
    rel_m, rel_e = fp.quantize_multiplier_scalar(np.float64(hires_input_scale / reluish_scale))
    return HardSwishParams(
        kind=op.kind, out_dtype=out.dtype, input_zero_point=zero_point(x),
        output_zero_point=zero_point(out),
        reluish_multiplier_int16=fp.down_scale_int32_to_int16_multiplier(rel_m),
        reluish_multiplier_exponent=rel_e,
        output_multiplier_int16=fp.down_scale_int32_to_int16_multiplier(out_m),
        output_multiplier_exponent=out_e)


def hard_swish(p: HardSwishParams, inputs: list) -> np.ndarray:
    x = inputs[0].astype(np.int64)
    value = fp.wrap_int16(x - p.input_zero_point)
    hires = fp.wrap_int16(value * (1 << 7))
    preshift_output = fp.saturating_rounding_doubling_high_mul_int16(
        hires, p.output_multiplier_int16)
    reluish = hires
    if p.reluish_multiplier_exponent > 0:
        reluish = fp.saturating_left_shift_int16(reluish, p.reluish_multiplier_exponent - 1)
    reluish = fp.saturating_rounding_doubling_high_mul_int16(reluish, p.reluish_multiplier_int16)
    if p.reluish_multiplier_exponent > 0:
        reluish = fp.saturating_left_shift_int16(reluish, 1)
    if p.reluish_multiplier_exponent < 0:
        reluish = fp.rounding_divide_by_pot(reluish, -p.reluish_multiplier_exponent)
    reluish = (reluish + (1 << 15)) >> 1  # [-1, 1] -> [0, 1] in Q0.15
    preshift = fp.saturating_doubling_high_mul_int16(reluish, preshift_output)
    y = fp.rounding_divide_by_pot(preshift, -p.output_multiplier_exponent) + p.output_zero_point
    y = fp.wrap_int16(y)
    return np.clip(y, p.out_dtype.min, p.out_dtype.max).astype(p.out_dtype.numpy)


def prepare_quantize(op: Op, graph: Graph):
    x, out = _unary_operands(op, graph, (DType.FLOAT32, DType.INT8, DType.INT16))
    require_quant(op, out, "output")
    if x.dtype == DType.FLOAT32:
        return AffineQuantizeParams(kind=op.kind, out_dtype=out.dtype, scale=scale_f32(out),
                                    zero_point=zero_point(out))
    require_quant(op, x, "input")
    m, s = fp.quantize_multiplier_scalar(np.float64(scale_f32(x)) / np.float64(scale_f32(out)))
    return RequantizeParams(kind=op.kind, out_dtype=out.dtype, input_zero_point=zero_point(x),
                            output_zero_point=zero_point(out), multiplier=m, shift=s,
                            act_min=out.dtype.min, act_max=out.dtype.max)


def affine_quantize(p: AffineQuantizeParams, inputs: list) -> np.ndarray:
    x = inputs[0].astype(np.float32)
    q = fp.round_half_away(x / p.scale)
    # clip in float first: the C cast of an out-of-range float is undefined; TFLite then clamps
    q = np.clip(q, -2.0**31, 2.0**31 - 128).astype(np.int64) + p.zero_point
    return np.clip(q, p.out_dtype.min, p.out_dtype.max).astype(p.out_dtype.numpy)


def quantize(p, inputs: list) -> np.ndarray:
    """QUANTIZE: float -> int (`affine_quantize`) or int -> int (`requantize`)."""
    if isinstance(p, AffineQuantizeParams):
        return affine_quantize(p, inputs)
    return requantize(p, inputs)


def prepare_dequantize(op: Op, graph: Graph) -> DequantizeParams:
    x, out = _unary_operands(op, graph, (DType.INT8, DType.INT16), (DType.FLOAT32,))
    require_quant(op, x, "input")
    return DequantizeParams(kind=op.kind, out_dtype=out.dtype,
                            scale=float(scale_f32(x)), zero_point=zero_point(x))


def dequantize(p: DequantizeParams, inputs: list) -> np.ndarray:
    x = inputs[0].astype(np.int64)
    return (p.scale * (x - p.zero_point).astype(np.float64)).astype(np.float32)


PREPARE = {"ADD": prepare_add, "MUL": prepare_mul, "RELU": prepare_relu,
           "RELU6": prepare_relu6, "HARD_SWISH": prepare_hard_swish,
           "QUANTIZE": prepare_quantize, "DEQUANTIZE": prepare_dequantize}
KERNELS = {"ADD": add, "MUL": mul, "RELU": requantize, "RELU6": clamp,
           "HARD_SWISH": hard_swish, "QUANTIZE": quantize, "DEQUANTIZE": dequantize}
