/* TFLite's integer fixed-point primitives, in C99, with the exact semantics of the Python
 * reference (edgekit/fixedpoint.py): every kernel requantises through these so that generated
 * firmware is bit-exact with the reference interpreter and with TFLite Micro.
 *
 *   ek_srdhm     SaturatingRoundingDoublingHighMul: (a*b*2 + 2^31 rounding) >> 32, rounding
 *                half away from zero, saturating the one overflow case (INT32_MIN * INT32_MIN).
 *   ek_rdbpot    RoundingDivideByPOT: x / 2^exponent rounded half away from zero.
 *   ek_mbqm      MultiplyByQuantizedMultiplier (double rounding, TFLite Micro's default):
 *                x * multiplier (Q0.31) * 2^shift, shift > 0 a left shift before the multiply.
 *
 * Everything is static inline: the compiler folds it into each kernel's inner loop. */
#ifndef EK_FIXEDPOINT_H
#define EK_FIXEDPOINT_H

#include <stdint.h>

static inline int32_t ek_srdhm(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? (INT64_C(1) << 30) : (INT64_C(1) - (INT64_C(1) << 30));
    int64_t sum = ab + nudge;
    /* Division truncating toward zero, as C99 and TFLite's gemmlowp do (not an arithmetic
     * shift, which would floor negative values). */
    int64_t q = sum >= 0 ? (sum >> 31) : -((-sum) >> 31);
    return (int32_t)q;
}

static inline int32_t ek_rdbpot(int32_t x, int exponent)
{
    int32_t mask = (int32_t)((UINT32_C(1) << exponent) - 1u);
    int32_t remainder = x & mask;
    int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

static inline int32_t ek_mbqm(int32_t x, int32_t multiplier, int shift)
{
    int left = shift > 0 ? shift : 0;
    int right = shift > 0 ? 0 : -shift;
    /* Wrap-around multiply through uint32_t: TFLite relies on the same two's-complement
     * result, and signed overflow would be undefined behaviour in C. */
    int32_t shifted = (int32_t)((uint32_t)x * (UINT32_C(1) << left));
    return ek_rdbpot(ek_srdhm(shifted, multiplier), right);
}

static inline int32_t ek_clamp(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* ek_mbqm for a non-negative multiplier (what QuantizeMultiplier produces: 0 or [2^30, 2^31)),
 * in fewer instructions, same result for every x and shift. Why equal: gemmlowp's
 * SaturatingRoundingDoublingHighMul truncates (ab + nudge) / 2^31 toward zero with nudge 2^30
 * for ab >= 0 and 1 - 2^30 for ab < 0; for ab < 0 truncation is floor((ab + 1 - 2^30 + 2^31 - 1)
 * / 2^31), so both cases are floor((ab + 2^30) / 2^31): one 64-bit multiply-add and an
 * arithmetic shift. Saturation cannot happen (b is never INT32_MIN), and the result fits int32.
 * The rounding right shift that follows is ek_rdbpot's, unchanged (double rounding kept).
 * Added by the convolution kernels (F2); checked against edgekit.fixedpoint in
 * tests/test_kernels_c_conv.py. */
static inline int32_t ek_mbqm_nonneg(int32_t x, int32_t multiplier, int shift)
{
    int left = shift > 0 ? shift : 0;
    int right = left - shift; /* max(-shift, 0), without a second branch */
    int32_t shifted = (int32_t)((uint32_t)x << left);
    int64_t product = (int64_t)shifted * multiplier + (INT64_C(1) << 30);
    /* bits 31..62 of the product: the floor shift, as the result fits int32 */
    int32_t high = (int32_t)(uint32_t)((uint64_t)product >> 31);
    /* ek_rdbpot(high, right), spelled out so the compiler keeps one straight path */
    int32_t mask = (int32_t)((UINT32_C(1) << right) - 1u);
    int32_t threshold = (mask >> 1) + (int32_t)((uint32_t)high >> 31);
    return (high >> right) + ((high & mask) > threshold ? 1 : 0);
}

#endif
