/* Element-wise kernels: ADD, MUL, RELU, RELU6, HARD_SWISH, QUANTIZE, DEQUANTIZE.
 *
 * Semantics: TFLite Micro's reference kernels as edgekit.reference.elementwise computes them
 * (add_common / reference_integer_ops::Add, Mul, the Relu/Relu6 kernels, reference_ops::HardSwish,
 * affine quantize, requantize, dequantize). Params field names are the Python Prepared fields.
 *
 * In place: every kernel here processes elements in increasing index order and reads element i
 * of each input before writing output element i, so the output may alias an input that has the
 * output's shape and element size (the planner's "elementwise" mode). A broadcast operand is
 * only read, never aliased. QUANTIZE / DEQUANTIZE between different element sizes must not
 * alias.
 */
#ifndef EK_ELEMENTWISE_H
#define EK_ELEMENTWISE_H

#include <stdint.h>

#include "ek_conv_common.h"
#include "ek_fixedpoint.h"

#if defined(__GNUC__)
#define EK_NOINLINE __attribute__((noinline))
#define EK_ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define EK_NOINLINE
#define EK_ALWAYS_INLINE static inline
#endif

/* Broadcast shapes of a binary op, right-aligned into EK_BROADCAST_DIMS dimensions (leading
 * dimensions 1). Strides are in elements; a broadcast dimension of an input has stride 0.
 * `broadcast` == 0 means both inputs have the output's shape (one flat loop over `size`). */
#define EK_BROADCAST_DIMS 5

typedef struct {
    int32_t size;                          /* output elements */
    int32_t broadcast;                     /* 0: no broadcasting */
    int32_t out_shape[EK_BROADCAST_DIMS];
    int32_t in1_strides[EK_BROADCAST_DIMS];
    int32_t in2_strides[EK_BROADCAST_DIMS];
} ek_broadcast_shape;

typedef struct {
    int32_t input1_offset;      /* -zero point of input 1 */
    int32_t input2_offset;
    int32_t output_offset;      /* +zero point of the output */
    int32_t left_shift;         /* 20 for int8, 15 for int16 */
    int32_t input1_multiplier;
    int32_t input1_shift;       /* <= 0 */
    int32_t input2_multiplier;
    int32_t input2_shift;       /* <= 0 */
    int32_t output_multiplier;
    int32_t output_shift;       /* <= 0 */
    int32_t act_min;
    int32_t act_max;
    ek_broadcast_shape shape;
} ek_add_params;

typedef struct {
    int32_t input1_offset;
    int32_t input2_offset;
    int32_t output_offset;
    int32_t output_multiplier;
    int32_t output_shift;
    int32_t act_min;
    int32_t act_max;
    ek_broadcast_shape shape;
} ek_mul_params;

/* RELU and int -> int QUANTIZE: clamp(MBQM(x - in_zp) + out_zp, act_min, act_max). */
typedef struct {
    int32_t input_zero_point;
    int32_t output_zero_point;
    int32_t multiplier;
    int32_t shift;
    int32_t act_min;
    int32_t act_max;
    int32_t size;
} ek_requantize_params;

/* RELU6: TFLite Micro clamps in the input's quantization without rescaling. */
typedef struct {
    int32_t lo;
    int32_t hi;
    int32_t size;
} ek_clamp_params;

typedef struct {
    int32_t input_zero_point;
    int32_t output_zero_point;
    int32_t reluish_multiplier_int16;
    int32_t reluish_multiplier_exponent;
    int32_t output_multiplier_int16;
    int32_t output_multiplier_exponent;   /* <= 0 */
    int32_t size;
} ek_hard_swish_params;

/* float -> int QUANTIZE: clamp(round_half_away(x / scale) + zero_point), float32 division. */
typedef struct {
    float scale;
    int32_t zero_point;
    int32_t size;
} ek_affine_quantize_params;

/* DEQUANTIZE: (float)(scale * (double)(q - zero_point)), scale a double as TFLite's. */
typedef struct {
    double scale;
    int32_t zero_point;
    int32_t size;
} ek_dequantize_params;

/* MultiplyByQuantizedMultiplier (double rounding, as ek_mbqm) for the multipliers
 * QuantizeMultiplier produces, never negative (0 or [2^30, 2^31)), in fewer instructions.
 * Why equal to ek_mbqm: for b >= 0 the only saturating case (INT32_MIN * INT32_MIN) cannot
 * occur, and gemmlowp's truncating (ab + nudge) / 2^31 with nudge 2^30 (ab >= 0) or 1 - 2^30
 * (ab < 0) is floor((ab + 2^30) / 2^31) in both cases: for ab < 0, truncation of a negative
 * quotient is ceil, and ceil((ab + 1 - 2^30) / 2^31) = floor((ab + 2^30) / 2^31). The rounding
 * right shift is ek_rdbpot's. tests/test_kernels_c_ops.py compares it with edgekit.fixedpoint. */
static inline int32_t ek_mbqm_nonneg_multiplier(int32_t x, int32_t multiplier, int shift)
{
    int left = shift > 0 ? shift : 0;
    int right = shift > 0 ? 0 : -shift;
    int32_t shifted = (int32_t)((uint32_t)x << left); /* wraps as TFLite's int32 multiply */
    int32_t high = (int32_t)(((int64_t)shifted * multiplier + (INT64_C(1) << 30)) >> 31);
    return ek_rdbpot(high, right);
}

/* One int8/int16 ADD element: exposed so that a convolution fused with a residual add
 * (ek_conv*) reuses exactly this arithmetic. `a`, `b` are the raw quantized inputs. The
 * input and output shifts are <= 0 (edgekit.reference rejects a multiplier >= 1). */
static inline int32_t ek_add_element(const ek_add_params *p, int32_t a, int32_t b)
{
    /* |a + offset| < 2^16 and left_shift <= 20: the shifted value fits in int32. */
    int32_t sa = ek_mbqm_nonneg_multiplier((a + p->input1_offset) * (1 << p->left_shift),
                                           p->input1_multiplier, p->input1_shift);
    int32_t sb = ek_mbqm_nonneg_multiplier((b + p->input2_offset) * (1 << p->left_shift),
                                           p->input2_multiplier, p->input2_shift);
    int32_t raw = ek_mbqm_nonneg_multiplier(sa + sb, p->output_multiplier, p->output_shift);
    return ek_clamp(raw + p->output_offset, p->act_min, p->act_max);
}

/* RoundingDivideByPOT for |x| < 2^30, with half = exponent > 0 ? 2^(exponent - 1) : 0: one
 * add and one shift instead of ek_rdbpot's mask and compare. Why equal: rounding half away
 * from zero is floor((x + half) / 2^e) for x >= 0 and floor((x + half - 1) / 2^e) for x < 0;
 * the bound keeps x + half inside int32. */
static inline int32_t ek_rdbpot_small(int32_t x, int32_t half, int exponent)
{
    return (x + half - (int32_t)((x < 0) & (half != 0))) >> exponent;
}

/* One int8 ADD element with the bounds of int8 inputs: |(a - zp) << 20| < 2^28, so both input
 * rescalings and their sum stay below 2^29 and ek_rdbpot_small applies to all three. Same
 * result as ek_add_element (the tests run both paths: s8 here, s16 there).
 *
 * The fast form (`fast`: both input shifts in [-31, 0], the output's fast requantisation in
 * range) does each rescaling with one 64-bit multiply-accumulate and a shift. An input's
 * rescaling is h = RoundingDivideByPOT(SRDHM(x, m), e) with x = (a + offset) * 2^20, and
 * SRDHM(x, m) = floor((x m + 2^30) / 2^31) (gemmlowp's nudge and truncating division). For
 * e = 0 that is the high word of 2x m + 2^31; for e >= 1 it is floor(T / 2^(31+e)) with
 * T = x m + 2^30 + 2^(30+e) - [x < 0] 2^31, ek_requant_fast's argument (ek_conv_common.h) with
 * no output offset, so doubling numerator and denominator: the high word of
 * 2x m + 2^31 + (2^(e-1) - [x < 0]) 2^32, shifted right by e. Both start from the low word
 * 2^31 and a high word hi0 + (sign & (x >> 31)): hi0 = 2^(e-1) and sign = -1, or 0 and 0 for
 * e = 0. Bounds: |2x| < 2^29 and m < 2^31, so every term stays below 2^62 (e <= 31). The sum
 * of the two is requantised by ek_requant_fast (right shift 1-23, the output offset in k;
 * 24-31, the wide form and the offset added after). */
typedef struct {
    int32_t off1, off2;          /* input offsets << left_shift */
    int32_t m1, m2, mo;
    int32_t half1, half2, half_o;
    int e1, e2, eo;
    int32_t out_offset, act_min, act_max;
    /* the fast form: */
    int fast, out_wide;          /* out_wide: the output's wide form (offset added after) */
    int32_t x_off1, x_off2;      /* input offsets << 21 */
    int32_t hi1, hi2, sign1, sign2, k_hi_o;
} ek_add_s8_consts;

static inline int32_t ek_add_s8_element(const ek_add_s8_consts *k, int32_t a, int32_t b)
{
    const int64_t round = INT64_C(1) << 30;
    int32_t ha = (int32_t)(((int64_t)(a * (1 << 20) + k->off1) * k->m1 + round) >> 31);
    int32_t hb = (int32_t)(((int64_t)(b * (1 << 20) + k->off2) * k->m2 + round) >> 31);
    int32_t sum = ek_rdbpot_small(ha, k->half1, k->e1) + ek_rdbpot_small(hb, k->half2, k->e2);
    int32_t ho = (int32_t)(((int64_t)sum * k->mo + round) >> 31);
    return ek_rdbpot_small(ho, k->half_o, k->eo);
}

/* One input's rescaling in the fast form (see above); x_off = offset << 21. */
static inline int32_t ek_add_s8_fast_input(int32_t a, int32_t x_off, int32_t m, int32_t hi0,
                                           int32_t sign, int e)
{
    const int32_t x2 = (int32_t)((uint32_t)a << 21) + x_off; /* 2 (a + offset) 2^20 */
    const uint32_t hi = (uint32_t)hi0 + ((uint32_t)(x2 >> 31) & (uint32_t)sign);
    const int64_t t = (int64_t)(((uint64_t)hi << 32) | 0x80000000u) + (int64_t)x2 * m;
    return (int32_t)(t >> 32) >> e;
}

/* ek_add_params -> the constants of ek_add_s8_output (computed once per kernel call). Always
 * inline: out of line it returns the struct through memory and every caller holds a copy,
 * 88 more bytes of stack on the Cortex-M4 ADD's path. */
EK_ALWAYS_INLINE ek_add_s8_consts ek_add_s8_prepare(const ek_add_params *p)
{
    const int in_range = p->input1_multiplier >= 0 && p->input2_multiplier >= 0
                         && p->input1_shift <= 0 && p->input1_shift >= -31
                         && p->input2_shift <= 0 && p->input2_shift >= -31;
    const int out_fast = ek_requant_fast_applies(p->output_multiplier, p->output_shift);
    const int out_wide = ek_requant_wide_applies(p->output_multiplier, p->output_shift);
    const ek_add_s8_consts k = {
        .off1 = p->input1_offset * (1 << 20), .off2 = p->input2_offset * (1 << 20),
        .m1 = p->input1_multiplier, .m2 = p->input2_multiplier, .mo = p->output_multiplier,
        .half1 = p->input1_shift < 0 ? 1 << (-p->input1_shift - 1) : 0,
        .half2 = p->input2_shift < 0 ? 1 << (-p->input2_shift - 1) : 0,
        .half_o = p->output_shift < 0 ? 1 << (-p->output_shift - 1) : 0,
        .e1 = -p->input1_shift, .e2 = -p->input2_shift, .eo = -p->output_shift,
        .out_offset = p->output_offset, .act_min = p->act_min, .act_max = p->act_max,
        .fast = in_range && (out_fast || out_wide),
        .out_wide = !out_fast,
        .x_off1 = (int32_t)((uint32_t)p->input1_offset << 21),
        .x_off2 = (int32_t)((uint32_t)p->input2_offset << 21),
        .hi1 = p->input1_shift < 0 ? 1 << (-p->input1_shift - 1) : 0,
        .hi2 = p->input2_shift < 0 ? 1 << (-p->input2_shift - 1) : 0,
        .sign1 = p->input1_shift < 0 ? -1 : 0, .sign2 = p->input2_shift < 0 ? -1 : 0,
        .k_hi_o = out_fast ? ek_requant_fast_k(p->output_shift, p->output_offset)
                  : out_wide ? ek_requant_wide_k(p->output_shift) : 0,
    };
    return k;
}

/* One int8 ADD output in the fast form (k->fast). */
static inline int8_t ek_add_s8_fast_output(const ek_add_s8_consts *k, int32_t a, int32_t b)
{
    const int32_t sum = ek_add_s8_fast_input(a, k->x_off1, k->m1, k->hi1, k->sign1, k->e1)
                        + ek_add_s8_fast_input(b, k->x_off2, k->m2, k->hi2, k->sign2, k->e2);
    const int32_t y = ek_requant_fast(sum, k->mo, k->k_hi_o, k->eo - 1)
                      + (k->out_wide ? k->out_offset : 0);
    return (int8_t)ek_clamp(y, k->act_min, k->act_max);
}

/* ek_add_s8_fast_input for a shift of 0: the high word of 2x m + 2^31, no sign term, no
 * shift. */
static inline int32_t ek_add_s8_fast_input_e0(int32_t a, int32_t x_off, int32_t m)
{
    const int32_t x2 = (int32_t)((uint32_t)a << 21) + x_off;
    return (int32_t)((INT64_C(0x80000000) + (int64_t)x2 * m) >> 32);
}

/* ek_add_s8_fast_output where the second input's shift is 0 (k->e2 == 0). */
static inline int8_t ek_add_s8_fast_output_e0(const ek_add_s8_consts *k, int32_t a, int32_t b)
{
    const int32_t sum = ek_add_s8_fast_input(a, k->x_off1, k->m1, k->hi1, k->sign1, k->e1)
                        + ek_add_s8_fast_input_e0(b, k->x_off2, k->m2);
    const int32_t y = ek_requant_fast(sum, k->mo, k->k_hi_o, k->eo - 1)
                      + (k->out_wide ? k->out_offset : 0);
    return (int8_t)ek_clamp(y, k->act_min, k->act_max);
}

/* k with its two inputs' constants exchanged (the sum of the rescaled inputs is symmetric). */
static inline ek_add_s8_consts ek_add_s8_swapped(const ek_add_s8_consts *k)
{
    ek_add_s8_consts s = *k;
    s.off1 = k->off2, s.off2 = k->off1, s.m1 = k->m2, s.m2 = k->m1;
    s.half1 = k->half2, s.half2 = k->half1, s.e1 = k->e2, s.e2 = k->e1;
    s.x_off1 = k->x_off2, s.x_off2 = k->x_off1, s.hi1 = k->hi2, s.hi2 = k->hi1;
    s.sign1 = k->sign2, s.sign2 = k->sign1;
    return s;
}

/* One int8 ADD output, equal to (int8_t)ek_add_element(p, a, b) for int8 a, b and the
 * ek_add_params k was prepared from (a fused conv + residual add may use either). */
static inline int8_t ek_add_s8_output(const ek_add_s8_consts *k, int32_t a, int32_t b)
{
    if (k->fast) {
        return k->e2 == 0 ? ek_add_s8_fast_output_e0(k, a, b) : ek_add_s8_fast_output(k, a, b);
    }
    return (int8_t)ek_clamp(ek_add_s8_element(k, a, b) + k->out_offset, k->act_min, k->act_max);
}

void ek_add_s8(const ek_add_params *p, const int8_t *in1, const int8_t *in2, int8_t *out);
void ek_add_s16(const ek_add_params *p, const int16_t *in1, const int16_t *in2, int16_t *out);
void ek_mul_s8(const ek_mul_params *p, const int8_t *in1, const int8_t *in2, int8_t *out);
void ek_mul_s16(const ek_mul_params *p, const int16_t *in1, const int16_t *in2, int16_t *out);

void ek_relu_s8(const ek_requantize_params *p, const int8_t *in, int8_t *out);
void ek_relu_s16(const ek_requantize_params *p, const int16_t *in, int16_t *out);
void ek_relu6_s8(const ek_clamp_params *p, const int8_t *in, int8_t *out);
void ek_relu6_s16(const ek_clamp_params *p, const int16_t *in, int16_t *out);
void ek_hard_swish_s8(const ek_hard_swish_params *p, const int8_t *in, int8_t *out);

void ek_quantize_s8_s8(const ek_requantize_params *p, const int8_t *in, int8_t *out);
void ek_quantize_s8_s16(const ek_requantize_params *p, const int8_t *in, int16_t *out);
void ek_quantize_s16_s8(const ek_requantize_params *p, const int16_t *in, int8_t *out);
void ek_quantize_s16_s16(const ek_requantize_params *p, const int16_t *in, int16_t *out);
void ek_quantize_f32_s8(const ek_affine_quantize_params *p, const float *in, int8_t *out);
void ek_quantize_f32_s16(const ek_affine_quantize_params *p, const float *in, int16_t *out);
void ek_dequantize_s8_f32(const ek_dequantize_params *p, const int8_t *in, float *out);
void ek_dequantize_s16_f32(const ek_dequantize_params *p, const int16_t *in, float *out);

#endif
