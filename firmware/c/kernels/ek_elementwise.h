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

#include "ek_fixedpoint.h"

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
 * result as ek_add_element (the tests run both paths: s8 here, s16 there). */
typedef struct {
    int32_t off1, off2;          /* input offsets << left_shift */
    int32_t m1, m2, mo;
    int32_t half1, half2, half_o;
    int e1, e2, eo;
    int32_t out_offset, act_min, act_max;
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

/* ek_add_params -> the constants of ek_add_s8_output (computed once per kernel call). */
static inline ek_add_s8_consts ek_add_s8_prepare(const ek_add_params *p)
{
    const ek_add_s8_consts k = {
        .off1 = p->input1_offset * (1 << 20), .off2 = p->input2_offset * (1 << 20),
        .m1 = p->input1_multiplier, .m2 = p->input2_multiplier, .mo = p->output_multiplier,
        .half1 = p->input1_shift < 0 ? 1 << (-p->input1_shift - 1) : 0,
        .half2 = p->input2_shift < 0 ? 1 << (-p->input2_shift - 1) : 0,
        .half_o = p->output_shift < 0 ? 1 << (-p->output_shift - 1) : 0,
        .e1 = -p->input1_shift, .e2 = -p->input2_shift, .eo = -p->output_shift,
        .out_offset = p->output_offset, .act_min = p->act_min, .act_max = p->act_max,
    };
    return k;
}

/* One int8 ADD output, equal to (int8_t)ek_add_element(p, a, b) for int8 a, b and the
 * ek_add_params k was prepared from (a fused conv + residual add may use either). */
static inline int8_t ek_add_s8_output(const ek_add_s8_consts *k, int32_t a, int32_t b)
{
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
