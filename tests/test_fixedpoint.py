"""TFLite's fixed-point primitives on hand-computed values (edgekit.fixedpoint)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgekit import fixedpoint as fp


@pytest.mark.parametrize("real, multiplier, shift", [
    (0.5, 1 << 30, 0),          # 0.5 = 0.5 * 2^0
    (1.0, 1 << 30, 1),          # 1.0 = 0.5 * 2^1
    (0.25, 1 << 30, -1),
    (0.75, 3 << 29, 0),         # 0.75 * 2^31 = 3 * 2^29
    (0.0, 0, 0),
    (1e-12, 0, 0),              # exponent below -31: flushed to zero as TFLite does
    (1.0 - 2.0 ** -40, 1 << 30, 1),  # mantissa rounds up to 1.0: renormalised
])
def test_quantize_multiplier(real, multiplier, shift):
    assert fp.quantize_multiplier_scalar(real) == (multiplier, shift)


def test_quantize_multiplier_rounds_half_away_from_zero():
    # mantissa * 2^31 = 2^30 + 0.5 exactly -> rounds up to 2^30 + 1
    real = (2.0 ** 30 + 0.5) / 2.0 ** 31
    assert fp.quantize_multiplier_scalar(real) == ((1 << 30) + 1, 0)


def test_saturating_rounding_doubling_high_mul():
    m = fp.saturating_rounding_doubling_high_mul
    assert m(1 << 30, 1 << 30) == 1 << 29            # 0.5 * 0.5 = 0.25
    assert m(fp.INT32_MIN, fp.INT32_MIN) == fp.INT32_MAX  # the one overflow saturates
    assert m(3, 1 << 30) == 2                         # 1.5 rounds to 2
    # gemmlowp's nudge for negative products is 1 - 2^30: negative ties round toward zero
    assert m(-3, 1 << 30) == -1                       # -1.5 -> -1
    assert m(1, 1 << 30) == 1 and m(-1, 1 << 30) == 0  # 0.5 -> 1, -0.5 -> 0


def test_rounding_divide_by_pot_ties_away_from_zero():
    x = np.array([5, -5, 3, -3, 4, -4, 6, -6])
    assert fp.rounding_divide_by_pot(x, 1).tolist() == [3, -3, 2, -2, 2, -2, 3, -3]
    assert fp.rounding_divide_by_pot(np.array([11, -11, 10, -10]), 2).tolist() == [3, -3, 3, -3]


def test_multiply_by_quantized_multiplier_double_vs_single_rounding():
    # multiplier 0.5 (2^30) and shift -1: x * 0.25
    mbqm = fp.multiply_by_quantized_multiplier
    single = fp.multiply_by_quantized_multiplier_single_rounding
    assert mbqm(10, 1 << 30, -1) == 3 and single(10, 1 << 30, -1) == 3   # 2.5 -> 3
    # x = -10: -2.5; double rounding rounds away (-3), single rounding rounds up (-2)
    assert mbqm(-10, 1 << 30, -1) == -3 and single(-10, 1 << 30, -1) == -2
    # double rounding rounds twice: x = 5, m = 2^30 + 1 (just over 0.5), shift -1:
    # high mul gives round(2.5000...) = 3, then 3/2 -> 2; single: 5 * 0.2500... = 1.25.. -> 1
    assert mbqm(5, (1 << 30) + 1, -1) == 2 and single(5, (1 << 30) + 1, -1) == 1
    assert mbqm(7, 1 << 30, 2) == 14  # left shift: 7 * 4 * 0.5


def test_multiply_by_quantized_multiplier_int64_reduces_the_multiplier():
    # multiplier 0.75 -> reduced (3<<29 + 2^15) >> 16 = 24576 (Q0.15), shift 0: x * 0.75
    assert fp.multiply_by_quantized_multiplier_int64(1 << 40, 3 << 29, 0) == 3 << 38
    assert fp.multiply_by_quantized_multiplier_int64(-2, 3 << 29, 0) == -1  # -1.5 rounds up


def test_exp_logistic_reciprocal_close_to_real_functions():
    # Q5.26 inputs in [-8, 0]
    xs = np.linspace(-8, 0, 97)
    raw = np.round(xs * 2 ** 26).astype(np.int64)
    exp = fp.exp_on_negative_values(raw, 5) / 2 ** 31
    assert np.max(np.abs(exp - np.exp(raw / 2 ** 26))) < 2e-8 * 2 ** 5
    assert fp.exp_on_negative_values(0, 5) == fp.INT32_MAX
    # logistic on Q4.27
    xs = np.linspace(-7.9, 7.9, 101)
    raw = np.round(xs * 2 ** 27).astype(np.int64)
    sig = fp.logistic(raw, 4) / 2 ** 31
    assert np.max(np.abs(sig - 1 / (1 + np.exp(-raw / 2 ** 27)))) < 1e-7
    assert fp.logistic(0, 4) == 1 << 30
    # 1/(1+x) for x in [0, 1)
    xs = np.linspace(0, 0.999, 50)
    inv = fp.one_over_one_plus_x_for_x_in_0_1(np.round(xs * 2 ** 31).astype(np.int64)) / 2 ** 31
    assert np.max(np.abs(inv - 1 / (1 + xs))) < 1e-8
    # GetReciprocal: 3.0 in Q12.19 -> (2/3) * 2^-1
    recip, bits = fp.get_reciprocal(3 << 19, 12)
    assert bits == 1 and abs(recip / 2 ** 31 - 2 / 3) < 1e-8


def test_known_gemmlowp_constants_are_exp_values():
    for exponent, multiplier in fp._EXP_BARREL:
        assert abs(multiplier - math.exp(-(2.0 ** exponent)) * 2 ** 31) <= 1


def test_softmax_scaling_helpers():
    # beta * scale * 2^26 with scale 1/16: 2^22 -> multiplier 2^30, shift 23
    assert fp.preprocess_softmax_scaling(1.0, 1 / 16, 5) == (1 << 30, 23)
    # radius: 31 * 2^26 / 2^23 = 248
    assert fp.calculate_input_radius(5, 23) == 248


def test_int16_helpers():
    assert fp.saturating_rounding_doubling_high_mul_int16(1 << 14, 1 << 14) == 1 << 13
    assert fp.saturating_rounding_doubling_high_mul_int16(fp.INT16_MIN, fp.INT16_MIN) == fp.INT16_MAX
    assert fp.saturating_doubling_high_mul_int16(3, 1 << 14) == 1      # 1.5 truncates to 1
    assert fp.saturating_doubling_high_mul_int16(-3, 1 << 14) == -1    # toward zero
    assert fp.saturating_left_shift_int16(20000, 1) == fp.INT16_MAX
    assert fp.saturating_left_shift_int16(-20000, 1) == fp.INT16_MIN
    assert fp.down_scale_int32_to_int16_multiplier(3 << 29) == 24576
    assert fp.down_scale_int32_to_int16_multiplier(fp.INT32_MAX) == fp.INT16_MAX


def test_round_half_away_is_exact_for_float32():
    x = np.float32([0.49999997, 0.5, -0.5, 1.5, -2.5, 2.4999998])
    assert fp.round_half_away(x).tolist() == [0.0, 1.0, -1.0, 2.0, -3.0, 2.0]
    assert fp.trunc_div(np.array([-7, 7, -7]), np.array([2, -2, -2])).tolist() == [-3, -3, 3]
