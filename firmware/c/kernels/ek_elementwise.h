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
