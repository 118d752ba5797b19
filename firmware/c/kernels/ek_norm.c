/* LAYER_NORM, RMS_NORM and SILU (see ek_norm.h; the specification is the docstring of
 * edgekit.reference.norm). */
#include "ek_norm.h"

#include <stddef.h>

/* floor(sqrt(v)), digit by digit: exact, so equal to Python's math.isqrt. */
static uint32_t ek_isqrt64(uint64_t v)
{
    uint64_t root = 0;
    uint64_t bit = UINT64_C(1) << 62;
    while (bit > v) {
        bit >>= 2;
    }
    while (bit != 0) {
        if (v >= root + bit) {
            v -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    return (uint32_t)root;
}

static int ek_bit_length64(uint64_t v)
{
    int bits = 0;
    while (v != 0) {
        v >>= 1;
        ++bits;
    }
    return bits;
}

static void ek_norm_rows(const ek_norm_params *p, const int8_t *in, int8_t *out)
{
    const int32_t c = p->channels;
    const int32_t zp = p->input_zero_point;
    for (int32_t r = 0; r < p->rows; ++r) {
        const int8_t *x = in + (size_t)r * (size_t)c;
        int8_t *y = out + (size_t)r * (size_t)c;
        int32_t sum = 0;
        int32_t sq = 0;
        for (int32_t i = 0; i < c; ++i) {
            const int32_t d = (int32_t)x[i] - zp;
            sum += d;
            sq += d * d;
        }
        const int32_t mean_term = p->subtract_mean ? sum : 0;
        const int64_t s = (int64_t)c * sq - (int64_t)mean_term * mean_term;
        const uint64_t t = (uint64_t)(s + p->eps_term);
        /* the row's 1/sqrt(t) as inv * 2^(k - 61) (inv in (2^30, 2^31]), t == 0: n = 0 */
        uint32_t inv = 0;
        int shift = 0;
        if (t != 0) {
            const int k = (62 - ek_bit_length64(t)) >> 1;
            inv = (uint32_t)((UINT64_C(1) << 61) / ek_isqrt64(t << (2 * k)));
            shift = 37 - k;
        }
        const uint64_t n_half = shift ? (UINT64_C(1) << (shift - 1)) : 0;
        for (int32_t i = 0; i < c; ++i) {
            const int32_t u = c * ((int32_t)x[i] - zp) - mean_term;
            /* RoundingDivideByPOT(u * inv, shift) on int64: ties away from zero, so symmetric
             * in the sign of u: one 32x32->64 unsigned multiply-add and a shift */
            const uint32_t magnitude = (uint32_t)(u < 0 ? -u : u);
            const int32_t n_abs = (int32_t)(((uint64_t)magnitude * inv + n_half) >> shift);
            const int32_t n = u < 0 ? -n_abs : n_abs;
            /* ek_srdhm(n, m) == floor((n*m + 2^30) / 2^31) for every n, m but INT32_MIN twice
             * (see ek_mbqm_nonneg); |n| < 2^30 here. Then the offset, and RoundingDivideByPOT
             * by r on int64: floor((acc + 2^(r-1) - [acc < 0]) / 2^r), ties away from zero. */
            const int64_t acc = (((int64_t)n * p->multipliers[i] + (INT64_C(1) << 30)) >> 31)
                                + p->offsets[i];
            const int r = (int)p->shifts[i];
            const int64_t v = r ? ((acc + (INT64_C(1) << (r - 1)) - (acc < 0 ? 1 : 0)) >> r) : acc;
            y[i] = (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
        }
    }
}

void ek_layer_norm_s8(const ek_norm_params *p, const int8_t *in, int8_t *out)
{
    ek_norm_rows(p, in, out);
}

void ek_rms_norm_s8(const ek_norm_params *p, const int8_t *in, int8_t *out)
{
    ek_norm_rows(p, in, out);
}

void ek_silu_s8(const ek_silu_params *p, const int8_t *in, int8_t *out)
{
    for (int32_t i = 0; i < p->size; ++i) {
        out[i] = p->table[(int32_t)in[i] + 128];
    }
}
