/* SOFTMAX and LOGISTIC (see ek_softmax.h). The gemmlowp fixed-point functions below follow
 * edgekit/fixedpoint.py step by step; FixedPoint<int32> additions wrap as int32 does in gemmlowp,
 * which is why they go through uint32_t (signed overflow is undefined in C). */
#include "ek_softmax.h"

static inline int32_t ek_wrap_add(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

static inline int32_t ek_wrap_sub(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a - (uint32_t)b);
}

/* gemmlowp SaturatingRoundingMultiplyByPOT<exponent>. */
static inline int32_t ek_srmbpot(int32_t x, int exponent)
{
    if (exponent == 0) {
        return x;
    }
    if (exponent < 0) {
        return ek_rdbpot(x, -exponent);
    }
    const int32_t threshold = (int32_t)((UINT32_C(1) << (31 - exponent)) - 1u);
    if (x > threshold) {
        return INT32_MAX;
    }
    if (x < -threshold) {
        return INT32_MIN;
    }
    return (int32_t)((uint32_t)x << exponent);
}

/* exp(a) for a in [-1/4, 0), Q0.31 in and out: Taylor series around -1/8. */
static int32_t ek_exp_on_interval_between_negative_one_quarter_and_0_excl(int32_t a)
{
    const int32_t constant_term = 1895147668;    /* exp(-1/8) in Q0.31 */
    const int32_t constant_1_over_3 = 715827883; /* 1/3 in Q0.31 */
    int32_t x = ek_wrap_add(a, 1 << 28);         /* a + 1/8 */
    int32_t x2 = ek_srdhm(x, x);
    int32_t x3 = ek_srdhm(x2, x);
    int32_t x4 = ek_srdhm(x2, x2);
    int32_t x4_over_4 = ek_srmbpot(x4, -2);
    int32_t poly = ek_srmbpot(
        ek_wrap_add(ek_srdhm(ek_wrap_add(x4_over_4, x3), constant_1_over_3), x2), -1);
    return ek_wrap_add(constant_term, ek_srdhm(constant_term, ek_wrap_add(x, poly)));
}

/* gemmlowp exp_on_negative_values: exp(a) for a <= 0 in FixedPoint<int32, integer_bits>;
 * result in Q0.31. */
static int32_t ek_exp_on_negative_values(int32_t a, int integer_bits)
{
    /* exp(-2^k) in Q0.31 for k = -2..4: the barrel shifter's constants. */
    static const int32_t barrel[7] = {1672461947, 1302514674, 790015084, 290630308,
                                      39332535, 720401, 242};
    const int fractional_bits = 31 - integer_bits;
    const int32_t one_quarter = (int32_t)1 << (fractional_bits - 2);
    const int32_t mask = one_quarter - 1;
    const int32_t a_mod_quarter_minus_one_quarter = (a & mask) - one_quarter;
    int32_t result = ek_exp_on_interval_between_negative_one_quarter_and_0_excl(
        ek_srmbpot(a_mod_quarter_minus_one_quarter, integer_bits));
    const int32_t remainder = ek_wrap_sub(a_mod_quarter_minus_one_quarter, a);
    for (int k = -2; k <= 4; ++k) {
        if (integer_bits > k) {
            const uint32_t bit = UINT32_C(1) << (fractional_bits + k);
            if ((uint32_t)remainder & bit) {
                result = ek_srdhm(result, barrel[k + 2]);
            }
        }
    }
    if (integer_bits > 5) {
        const int32_t clamp = -((int32_t)1 << (fractional_bits + 5)); /* -32 */
        if (a < clamp) {
            result = 0;
        }
    }
    return a == 0 ? INT32_MAX : result;
}

/* gemmlowp one_over_one_plus_x_for_x_in_0_1: 1/(1+a), Q0.31, Newton-Raphson in Q2.29. */
static int32_t ek_one_over_one_plus_x_for_x_in_0_1(int32_t a)
{
    const int64_t total = (int64_t)a + INT32_MAX;
    /* RoundingHalfSum: (a + b + sign) / 2 truncating toward zero. */
    const int32_t half_denominator = (int32_t)((total + (total >= 0 ? 1 : -1)) / 2);
    const int32_t constant_48_over_17 = 1515870810;
    const int32_t constant_neg_32_over_17 = -1010580540;
    const int32_t one_q2 = (int32_t)1 << 29;
    int32_t x = ek_wrap_add(constant_48_over_17,
                            ek_srdhm(half_denominator, constant_neg_32_over_17));
    for (int i = 0; i < 3; ++i) {
        int32_t half_denominator_times_x = ek_srdhm(half_denominator, x);
        int32_t one_minus = ek_wrap_sub(one_q2, half_denominator_times_x);
        x = ek_wrap_add(x, ek_srmbpot(ek_srdhm(x, one_minus), 2));
    }
    return ek_srmbpot(x, 1);
}

/* gemmlowp logistic: 1/(1+exp(-a)) for FixedPoint<int32, integer_bits>, Q0.31 out. */
static int32_t ek_logistic_fixed(int32_t a, int integer_bits)
{
    if (a == 0) {
        return (int32_t)1 << 30;
    }
    /* -|a| (INT32_MIN stays INT32_MIN, as the two's-complement negation gives). */
    const int32_t neg_abs_a = a > 0 ? (int32_t)(0u - (uint32_t)a) : a;
    const int32_t positive = ek_one_over_one_plus_x_for_x_in_0_1(
        ek_exp_on_negative_values(neg_abs_a, integer_bits));
    return a > 0 ? positive : ek_wrap_sub(INT32_MAX, positive);
}

static inline int ek_clz_u32(uint32_t x)
{
#if defined(__GNUC__)
    return x == 0 ? 32 : __builtin_clz(x);
#else
    int n = 0;
    while (n < 32 && !(x & (UINT32_C(0x80000000) >> n))) {
        ++n;
    }
    return n;
#endif
}

/* RoundingDivideByPOT for exponents that may reach 32 or more (softmax's final shift). */
static inline int32_t ek_rdbpot_wide(int32_t x, int exponent)
{
    if (exponent < 31) {
        return ek_rdbpot(x, exponent);
    }
    const int64_t mask = (INT64_C(1) << exponent) - 1;
    const int64_t remainder = (int64_t)x & mask;
    const int64_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (int32_t)(((int64_t)x >> exponent) + (remainder > threshold ? 1 : 0));
}

/* exp of one input difference to the row maximum, in Q0.31. */
static inline int32_t ek_softmax_exp(const ek_softmax_params *p, int32_t diff)
{
    /* MultiplyByQuantizedMultiplierGreaterThanOne: wrapping left shift, then SRDHM. */
    int32_t shifted = (int32_t)((uint32_t)diff << p->input_left_shift);
    return ek_exp_on_negative_values(ek_srdhm(shifted, p->input_multiplier), 5);
}

void ek_softmax_s8(const ek_softmax_params *p, const int8_t *in, int8_t *out)
{
    const int32_t depth = p->depth;
    for (int32_t r = 0; r < p->rows; ++r) {
        const int8_t *x = in + r * depth;
        int8_t *y = out + r * depth;
        int32_t max = INT8_MIN;
        for (int32_t i = 0; i < depth; ++i) {
            max = x[i] > max ? x[i] : max;
        }
        int32_t sum_of_exps = 0; /* Q12.19, wrapping as the reference's int32 sum */
        for (int32_t i = 0; i < depth; ++i) {
            int32_t diff = x[i] - max;
            if (diff >= p->diff_min) {
                sum_of_exps = ek_wrap_add(sum_of_exps, ek_rdbpot(ek_softmax_exp(p, diff), 12));
            }
        }
        /* GetReciprocal of the sum (> 0: the maximum's own term is 2^19). */
        const int headroom_plus_one = ek_clz_u32((uint32_t)sum_of_exps);
        const int num_bits_over_unit = 12 - headroom_plus_one;
        const int32_t shifted_sum_minus_one =
            (int32_t)(((uint32_t)sum_of_exps << headroom_plus_one) - UINT32_C(0x80000000));
        const int32_t reciprocal = ek_one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one);
        const int exponent = num_bits_over_unit + 31 - 8;
        for (int32_t i = 0; i < depth; ++i) {
            int32_t diff = x[i] - max;
            int32_t v = -128;
            if (diff >= p->diff_min) {
                int32_t scaled = ek_srdhm(reciprocal, ek_softmax_exp(p, diff));
                v = ek_clamp(ek_rdbpot_wide(scaled, exponent) - 128, -128, 127);
            }
            y[i] = (int8_t)v;
        }
    }
}

void ek_logistic_s8(const ek_logistic_params *p, const int8_t *in, int8_t *out)
{
    for (int32_t i = 0; i < p->size; ++i) {
        const int32_t x = (int32_t)in[i] - p->input_zero_point;
        int32_t v;
        if (x <= -p->input_range_radius) {
            v = -128;
        } else if (x >= p->input_range_radius) {
            v = 127;
        } else {
            int32_t in_q4 = ek_mbqm(x, p->input_multiplier, p->input_left_shift);
            v = ek_clamp(ek_rdbpot(ek_logistic_fixed(in_q4, 4), 31 - 8) - 128, -128, 127);
        }
        out[i] = (int8_t)v;
    }
}
