"""TFLite's integer fixed-point primitives, as small vectorised numpy functions.

These are the building blocks of TFLite (Micro)'s int8/int16 reference kernels: how a real
scale becomes a 32-bit multiplier and a shift (``QuantizeMultiplier``), how an int32 accumulator
is rescaled with it (``MultiplyByQuantizedMultiplier``: a rounding doubling high multiply
followed by a rounding right shift, i.e. *double rounding*), and the gemmlowp fixed-point
transcendental functions the softmax and logistic kernels use (``exp_on_negative_values``,
``one_over_one_plus_x_for_x_in_0_1``, ``logistic``).

Conventions: every function takes integer numpy arrays (or Python ints) and returns int64
arrays whose values are what the C code's ``int32_t`` (or ``int16_t``) would hold. Arithmetic
is done in int64 so that no intermediate overflows silently; where the C code relies on a
32-bit wrap or saturation we do that explicitly. Semantics were learnt from TFLite's
``kernels/internal/common.h``, ``quantization_util.cc`` and gemmlowp's ``fixedpoint.h``; the
code is our own.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
INT16_MIN = -(1 << 15)
INT16_MAX = (1 << 15) - 1


def _i64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)


def wrap_int32(x) -> np.ndarray:
    """Two's-complement wrap to int32 range (what a 32-bit register holds after overflow)."""
    x = _i64(x)
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def trunc_div(a, b) -> np.ndarray:
    """C integer division (rounds toward zero), element-wise; ``b`` must be non-zero."""
    a, b = _i64(a), _i64(b)
    q = np.abs(a) // np.abs(b)
    return np.where((a < 0) != (b < 0), -q, q)


def round_half_away(x) -> np.ndarray:
    """``TfLiteRound`` / ``std::round``: round to nearest, ties away from zero (float in, float out)."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    magnitude = np.abs(x)
    whole = np.floor(magnitude)
    # frac is exact in floating point; adding 0.5 first could round up 0.49999997f
    frac = magnitude - whole
    return np.sign(x) * (whole + (frac >= 0.5))


# --- multipliers from real scales ---------------------------------------------------------------

def quantize_multiplier(real_multiplier) -> tuple[np.ndarray, np.ndarray]:
    """``QuantizeMultiplier``: real (double) -> (Q0.31 multiplier in [2^30, 2^31), shift).

    ``real ~= multiplier * 2^(shift - 31)``; shift > 0 is a left shift. Zero maps to (0, 0);
    tiny values whose shift would be below -31 map to (0, 0) as TFLite does.
    """
    real = np.atleast_1d(np.asarray(real_multiplier, dtype=np.float64))
    mantissa, exponent = np.frexp(real)
    q = round_half_away(mantissa * float(1 << 31)).astype(np.int64)
    exponent = exponent.astype(np.int64)
    carry = q == (1 << 31)  # rounding reached 1.0: renormalise
    q = np.where(carry, q // 2, q)
    exponent = np.where(carry, exponent + 1, exponent)
    tiny = exponent < -31
    q = np.where(tiny | (real == 0), 0, q)
    exponent = np.where(tiny | (real == 0), 0, exponent)
    return q, exponent


def quantize_multiplier_scalar(real_multiplier: float) -> tuple[int, int]:
    """`quantize_multiplier` for one value, as Python ints."""
    m, s = quantize_multiplier(real_multiplier)
    return int(m[0]), int(s[0])


def down_scale_int32_to_int16_multiplier(multiplier: int) -> int:
    """``DownScaleInt32ToInt16Multiplier``: a Q0.31 multiplier rounded to Q0.15 (saturating)."""
    if multiplier >= INT32_MAX - (1 << 15):
        return INT16_MAX
    return (multiplier + (1 << 15)) >> 16


def preprocess_softmax_scaling(beta: float, input_scale: float,
                               input_integer_bits: int) -> tuple[int, int]:
    """``PreprocessSoftmaxScaling`` (double rounding build): the multiplier and left shift that
    map an int8 input difference to a Q(input_integer_bits).(31-input_integer_bits) value."""
    max_real = float((1 << 31) - 1)
    real = min(beta * input_scale * float(1 << (31 - input_integer_bits)), max_real)
    return quantize_multiplier_scalar(real)


def calculate_input_radius(input_integer_bits: int, input_left_shift: int,
                           total_signed_bits: int = 31) -> int:
    """``CalculateInputRadius``: the largest |input difference| that does not saturate."""
    max_input_rescaled = (1.0 * ((1 << input_integer_bits) - 1)
                          * float(1 << (total_signed_bits - input_integer_bits))
                          / float(1 << input_left_shift))
    return int(math.floor(max_input_rescaled))


# --- the core integer ops -----------------------------------------------------------------------

def saturating_rounding_doubling_high_mul(a, b) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingDoublingHighMul`` on int32: round(a*b / 2^31), saturating
    the single overflow case a == b == INT32_MIN."""
    a, b = _i64(a), _i64(b)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    result = trunc_div(ab + nudge, 1 << 31)
    overflow = (a == b) & (a == INT32_MIN)
    return np.where(overflow, INT32_MAX, result)


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    """gemmlowp ``RoundingDivideByPOT``: x / 2^exponent rounded to nearest, ties away from zero."""
    x, exponent = _i64(x), _i64(exponent)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def multiply_by_quantized_multiplier(x, multiplier, shift) -> np.ndarray:
    """``MultiplyByQuantizedMultiplier`` (int32 x, the default *double-rounding* build that TFLite
    Micro uses): left shift, rounding doubling high multiply, rounding right shift."""
    x, multiplier, shift = _i64(x), _i64(multiplier), _i64(shift)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    shifted = wrap_int32(x * (np.int64(1) << left))
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier), right)


def multiply_by_quantized_multiplier_single_rounding(x, multiplier, shift) -> np.ndarray:
    """The ``TFLITE_SINGLE_ROUNDING`` variant: one 64-bit product, one rounding right shift by
    ``31 - shift`` (ties toward +infinity). Not what TFLite Micro runs; kept to explain oracles."""
    x, multiplier, shift = _i64(x), _i64(multiplier), _i64(shift)
    total_shift = 31 - shift
    rounding = np.int64(1) << (total_shift - 1)
    # x * multiplier fits in int64 (|x| < 2^31, multiplier < 2^31)
    return (x * multiplier + rounding) >> total_shift


def multiply_by_quantized_multiplier_int64(x, multiplier, shift) -> np.ndarray:
    """``MultiplyByQuantizedMultiplier(int64_t x, ...)`` used by the 16x8 kernels (int64
    accumulators): the multiplier is first reduced to 16 bits, then one rounding shift."""
    x, multiplier, shift = _i64(x), _i64(multiplier), _i64(shift)
    reduced = np.where(multiplier < 0x7FFF0000, (multiplier + (1 << 15)) >> 16, 0x7FFF)
    total_shift = 15 - shift
    rounding = np.int64(1) << (total_shift - 1)
    return (x * reduced + rounding) >> total_shift


def multiply_by_quantized_multiplier_smaller_than_one_exp(x, multiplier, left_shift) -> np.ndarray:
    """``MultiplyByQuantizedMultiplierSmallerThanOneExp`` (double rounding): shift <= 0."""
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, multiplier),
                                  -_i64(left_shift))


def multiply_by_quantized_multiplier_greater_than_one(x, multiplier, left_shift) -> np.ndarray:
    """``MultiplyByQuantizedMultiplierGreaterThanOne`` (double rounding): shift >= 0."""
    shifted = wrap_int32(_i64(x) * (np.int64(1) << _i64(left_shift)))
    return saturating_rounding_doubling_high_mul(shifted, multiplier)


def saturating_rounding_multiply_by_pot(x, exponent: int) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingMultiplyByPOT<exponent>`` on int32 raw values."""
    x = _i64(x)
    if exponent == 0:
        return x
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    shifted = x << exponent
    return np.where(x > threshold, INT32_MAX, np.where(x < -threshold, INT32_MIN, shifted))


# --- int16 helpers (hard-swish) ----------------------------------------------------------------

def saturating_rounding_doubling_high_mul_int16(a, b) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingDoublingHighMul`` on int16."""
    a, b = _i64(a), _i64(b)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 14, 1 - (1 << 14))
    result = wrap_int16(trunc_div(ab + nudge, 1 << 15))
    return np.where((a == b) & (a == INT16_MIN), INT16_MAX, result)


def saturating_doubling_high_mul_int16(a, b) -> np.ndarray:
    """TFLite's ``SaturatingDoublingHighMul`` on int16: truncating (no rounding nudge)."""
    a, b = _i64(a), _i64(b)
    result = wrap_int16(trunc_div(a * b, 1 << 15))
    return np.where((a == b) & (a == INT16_MIN), INT16_MAX, result)


def saturating_left_shift_int16(x, amount: int) -> np.ndarray:
    """TFLite's ``SaturatingLeftShift`` on int16."""
    return np.clip(_i64(x) * (1 << amount), INT16_MIN, INT16_MAX)


def wrap_int16(x) -> np.ndarray:
    """Two's-complement wrap to int16 range (``static_cast<int16_t>``)."""
    x = _i64(x)
    return ((x + (1 << 15)) & 0xFFFF) - (1 << 15)


# --- gemmlowp fixed-point transcendental functions (raw int32 values) --------------------------

def _fp_mul(a, b) -> np.ndarray:
    """Product of two gemmlowp FixedPoint<int32> raw values (integer bits add up)."""
    return saturating_rounding_doubling_high_mul(a, b)


def _exp_on_interval_between_negative_one_quarter_and_0_excl(a) -> np.ndarray:
    """exp(a) for a in [-1/4, 0), Q0.31 in and out: Taylor series around -1/8."""
    constant_term = 1895147668  # exp(-1/8) in Q0.31
    constant_1_over_3 = 715827883  # 1/3 in Q0.31
    x = _i64(a) + (1 << 28)  # a + 1/8
    x2 = _fp_mul(x, x)
    x3 = _fp_mul(x2, x)
    x4 = _fp_mul(x2, x2)
    x4_over_4 = saturating_rounding_multiply_by_pot(x4, -2)
    poly = saturating_rounding_multiply_by_pot(_fp_mul(x4_over_4 + x3, constant_1_over_3) + x2, -1)
    return wrap_int32(constant_term + _fp_mul(constant_term, x + poly))


#: exp(-2^k) in Q0.31 for k = -2..4, gemmlowp's barrel-shifter constants
_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
               (2, 39332535), (3, 720401), (4, 242))


def exp_on_negative_values(a, integer_bits: int) -> np.ndarray:
    """gemmlowp ``exp_on_negative_values``: exp(a) for a <= 0 given as FixedPoint<int32,
    integer_bits> raw values; result in Q0.31 raw."""
    a = _i64(a)
    fractional_bits = 31 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    mask = one_quarter - 1
    a_mod_quarter_minus_one_quarter = (a & mask) - one_quarter
    result = _exp_on_interval_between_negative_one_quarter_and_0_excl(
        saturating_rounding_multiply_by_pot(a_mod_quarter_minus_one_quarter, integer_bits))
    remainder = a_mod_quarter_minus_one_quarter - a
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent:
            bit = 1 << (fractional_bits + exponent)
            result = np.where((remainder & bit) != 0, _fp_mul(result, multiplier), result)
    if integer_bits > 5:
        clamp = -(1 << (fractional_bits + 5))  # -32 in the input format
        result = np.where(a < clamp, 0, result)
    return np.where(a == 0, INT32_MAX, result)


def one_over_one_plus_x_for_x_in_0_1(a) -> np.ndarray:
    """gemmlowp ``one_over_one_plus_x_for_x_in_0_1``: 1/(1+a) for a in [0, 1), Q0.31 in and
    out, by three Newton-Raphson steps in Q2.29."""
    a = _i64(a)
    total = a + INT32_MAX
    half_denominator = trunc_div(total + np.where(total >= 0, 1, -1), 2)  # RoundingHalfSum
    constant_48_over_17 = 1515870810
    constant_neg_32_over_17 = -1010580540
    one_q2 = 1 << 29
    x = constant_48_over_17 + _fp_mul(half_denominator, constant_neg_32_over_17)
    for _ in range(3):
        half_denominator_times_x = _fp_mul(half_denominator, x)
        one_minus = one_q2 - half_denominator_times_x
        x = x + saturating_rounding_multiply_by_pot(_fp_mul(x, one_minus), 2)
    return saturating_rounding_multiply_by_pot(x, 1)


def logistic(a, integer_bits: int) -> np.ndarray:
    """gemmlowp ``logistic``: 1/(1+exp(-a)) for FixedPoint<int32, integer_bits> raw inputs,
    Q0.31 raw output."""
    a = _i64(a)
    abs_a = np.where(a > 0, a, -a)
    positive = one_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(-abs_a, integer_bits))
    negative = INT32_MAX - positive
    result = np.where(a > 0, positive, negative)
    return np.where(a == 0, 1 << 30, result)


def count_leading_zeros_u32(x) -> np.ndarray:
    """Leading zero bits of a uint32 value (32 for zero)."""
    x = _i64(x) & 0xFFFFFFFF
    bits = np.zeros_like(x)
    for i in range(32):
        bits = np.where(x >= (np.int64(1) << i), i + 1, bits)
    return 32 - bits


def get_reciprocal(x, x_integer_digits: int) -> tuple[np.ndarray, np.ndarray]:
    """TFLite ``GetReciprocal``: for x > 0 in FixedPoint<int32, x_integer_digits>, returns
    (1/x scaled into Q0.31 raw, num_bits_over_unit)."""
    x = _i64(x)
    headroom_plus_one = count_leading_zeros_u32(x)
    num_bits_over_unit = x_integer_digits - headroom_plus_one
    shifted_sum_minus_one = wrap_int32(((x << headroom_plus_one) & 0xFFFFFFFF) - (1 << 31))
    return one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one), num_bits_over_unit
