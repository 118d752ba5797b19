/* Helpers shared by the convolution-family kernels (ek_conv*.c): requantisation of one
 * accumulator and the range of kernel taps that fall inside the input; the int8 ADD's fast
 * form (ek_elementwise.h) requantises with ek_requant_fast too. The generated code includes
 * ek_conv.h and ek_elementwise.h, not this. */
#ifndef EK_CONV_COMMON_H
#define EK_CONV_COMMON_H

#include <stdint.h>

#include "ek_fixedpoint.h"

/* int32 accumulator -> int8 output, TFLite's per-channel requantisation (double rounding).
 * Multipliers come from QuantizeMultiplier, so they are never negative (ek_mbqm_nonneg). */
static inline int8_t ek_conv_requantize(int32_t acc, int32_t multiplier, int32_t shift,
                                        int32_t output_offset, int32_t act_min, int32_t act_max)
{
    int32_t y = ek_mbqm_nonneg(acc, multiplier, (int)shift) + output_offset;
    return (int8_t)ek_clamp(y, act_min, act_max);
}

/* The fast form of ek_conv_requantize for a channel whose multiplier is non-negative with a right
 * shift r = -shift in [EK_REQUANT_SHORTEST, 23] (ek_requant_fast_applies): one 64-bit
 * multiply-accumulate and a shift instead of ek_mbqm_nonneg's two roundings, the same result
 * for every acc.
 *
 * Why it is exact. ek_mbqm_nonneg computes high = floor((P + 2^30) / 2^31) with P = acc * M,
 * then rounds high / 2^r half away from zero: floor((high + 2^(r-1) - neg) / 2^r) with
 * neg = [high < 0]. Adding an integer inside a floor commutes with the division, so
 *     result + output_offset = floor(T / 2^(31+r)),
 *     T = P + 2^30 + (2^(r-1) + output_offset * 2^r - neg) * 2^31,
 * exact in int64: |P| < 2^62 and the other terms stay below 2^61 in magnitude for r <= 23.
 * neg = [P + 2^30 < 0] is replaced by [acc < 0] (M >= 0): they differ only when P is in
 * [-2^30, -1], where high = 0 and floor((2^(r-1) - 1) / 2^r) = floor(2^(r-1) / 2^r) = 0 for
 * r >= 1, so the result is the same. T's starting value (before one SMLAL adds P; the result is
 * then T's high word shifted right by r - 1, before the clamp) is made from acc's sign and k,
 * the channel's constant (ek_requant_fast_k), in one of two ways:
 *
 * - r >= 2 (EK_REQUANT_SHORTEST 2, the int8 kernels): k = 2^(r-2) + output_offset * 2^(r-1),
 *   the factor's even part halved; T starts from the low word 2^30 + neg * 2^31 (bit 31 of acc,
 *   or-ed in) and the high word k - neg (acc >> 31 added): three instructions.
 * - r >= 1 (EK_REQUANT_SHORTEST 1, the int4 kernels: their weight scales, about 18 times
 *   int8's, give right shifts of 1): k = (1 + 2 * output_offset) * 2^(r-1), the whole factor
 *   but neg; u = k - neg, and T starts from u * 2^31 + 2^30: the high word u >> 1 and the low
 *   word 2^30 with u's bit 0 in bit 31 (for r >= 2 that bit is neg, for r = 1 the 2^(r-1) term
 *   lands there too): four instructions. */
#ifndef EK_REQUANT_SHORTEST
#define EK_REQUANT_SHORTEST 2
#endif

/* Whether a channel takes a fast form whose right shift may be up to `longest`: 23 for the
 * fast form (ek_requant_fast_applies), 31 for the wide one (ek_requant_wide_applies). */
static inline int ek_requant_right_within(int32_t multiplier, int32_t shift, int32_t longest)
{
    return multiplier >= 0 && shift <= -EK_REQUANT_SHORTEST && shift >= -longest;
}

static inline int ek_requant_fast_applies(int32_t multiplier, int32_t shift)
{
    return ek_requant_right_within(multiplier, shift, 23);
}

/* k of the fast form for the params shift (-r) and the output offset: (1 + 2 * output_offset)
 * shifted left by r - 2 (r >= 2) or r - 1 (r >= 1): one shift of a per-layer constant. */
static inline int32_t ek_requant_fast_k(int32_t shift, int32_t output_offset)
{
    return (int32_t)((UINT32_C(1) + 2u * (uint32_t)output_offset)
                     << (-shift - EK_REQUANT_SHORTEST));
}

/* The fast form's value (output offset added, not clamped); right_m1 = r - 1. */
static inline int32_t ek_requant_fast(int32_t acc, int32_t multiplier, int32_t k,
                                      int32_t right_m1)
{
#if EK_REQUANT_SHORTEST == 1
    const int32_t u = (int32_t)((uint32_t)k + (uint32_t)(acc >> 31));
    const uint32_t low = ((uint32_t)u << 31) | 0x40000000u;
    const uint32_t high = (uint32_t)(u >> 1);
#else
    const uint32_t low = ((uint32_t)acc & 0x80000000u) | 0x40000000u;
    const uint32_t high = (uint32_t)k + (uint32_t)(acc >> 31);
#endif
    const int64_t t = (int64_t)(((uint64_t)high << 32) | low) + (int64_t)acc * multiplier;
    return (int32_t)(t >> 32) >> right_m1;
}

/* The wide fast form: ek_requant_fast with the output offset left out of k and added to its
 * value, for a right shift r = -shift in [EK_REQUANT_SHORTEST, 31] (ek_requant_wide_applies).
 * QuantizeMultiplier gives r up to 31 for a channel of tiny scale (a nearly dead one), where the
 * fast form's k would overflow and the offset would not fit the bits left after its shift.
 *
 * Why it is exact: the fast form's argument above with output_offset = 0, which nowhere needs
 * r <= 23: T = P + 2^30 + 2^(30+r) - neg * 2^31 stays below 2^62 + 2^61 + 2^31 < 2^63 in
 * magnitude for r <= 31, k (at most 2^30) fits a word with acc >> 31 added, and the result
 * floor(T / 2^(31+r)) = ek_mbqm_nonneg(acc, ...) is at most 2^(31-r) + 1 in magnitude, within the
 * 33 - r bits of T's high word that the shift by r - 1 keeps. Adding the offset afterwards is
 * what ek_conv_requantize does. */
static inline int ek_requant_wide_applies(int32_t multiplier, int32_t shift)
{
    return ek_requant_right_within(multiplier, shift, 31);
}

/* k of the wide fast form (no output offset in it): 2^(r-2), or 2^(r-1) for r >= 1. */
static inline int32_t ek_requant_wide_k(int32_t shift)
{
    return (int32_t)(UINT32_C(1) << (-shift - EK_REQUANT_SHORTEST));
}

/* v clamped to [-128, 127]: one SSAT where the core has it (the clamp of a layer whose
 * activation range is the whole int8 range). */
static inline int32_t ek_ssat8(int32_t v)
{
#if defined(__ARM_FEATURE_SAT) && !defined(EDGEKIT_EMULATE_DSP)
    int32_t r;
    __asm__("ssat %0, #8, %1" : "=r"(r) : "r"(v));
    return r;
#else
    return ek_clamp(v, -128, 127);
#endif
}

/* Kernel taps k in [*first, *end) with 0 <= origin + k*dilation < size (the taps a window
 * starting at `origin` reads inside the input); the others are padding and are skipped. */
static inline void ek_conv_valid_taps(int32_t origin, int32_t size, int32_t kernel,
                                      int32_t dilation, int32_t *first, int32_t *end)
{
    int32_t f = origin < 0 ? (-origin + dilation - 1) / dilation : 0;
    int32_t room = size - origin; /* taps with k*dilation < room are inside */
    int32_t e = room <= 0 ? 0 : (room + dilation - 1) / dilation;
    if (e > kernel) {
        e = kernel;
    }
    if (f > e) {
        f = e;
    }
    *first = f;
    *end = e;
}

#endif
