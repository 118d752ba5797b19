/* Element-wise kernels (see ek_elementwise.h for the semantics and the in-place contract). */
#include "ek_elementwise.h"

/* Adding a zero point to a rescaled int32 can pass INT32_MAX (the reference adds in 64 bits
 * and then clamps), so these sums are made in int64. */
static inline int32_t ek_clamp64(int64_t v, int32_t lo, int32_t hi)
{
    return (int32_t)(v < lo ? lo : (v > hi ? hi : v));
}

/* Visit the output of a broadcast binary op in row-major order, calling BODY with the flat
 * indices o (output), i1, i2 (inputs). Why a macro: the int8/int16 ADD/MUL kernels share the
 * walk, and the inner loop stays a plain loop the compiler can optimise. */
#define EK_BROADCAST_WALK(SHAPE, BODY)                                                        \
    do {                                                                                      \
        const ek_broadcast_shape *s_ = (SHAPE);                                               \
        if (!s_->broadcast) {                                                                 \
            const int32_t size_ = s_->size;                                                   \
            for (int32_t o = 0; o < size_; ++o) {                                             \
                const int32_t i1 = o, i2 = o;                                                 \
                BODY;                                                                         \
            }                                                                                 \
            break;                                                                            \
        }                                                                                     \
        int32_t o = 0;                                                                        \
        for (int32_t d0 = 0; d0 < s_->out_shape[0]; ++d0) {                                   \
        for (int32_t d1 = 0; d1 < s_->out_shape[1]; ++d1) {                                   \
        for (int32_t d2 = 0; d2 < s_->out_shape[2]; ++d2) {                                   \
        for (int32_t d3 = 0; d3 < s_->out_shape[3]; ++d3) {                                   \
            int32_t i1 = d0 * s_->in1_strides[0] + d1 * s_->in1_strides[1]                    \
                       + d2 * s_->in1_strides[2] + d3 * s_->in1_strides[3];                   \
            int32_t i2 = d0 * s_->in2_strides[0] + d1 * s_->in2_strides[1]                    \
                       + d2 * s_->in2_strides[2] + d3 * s_->in2_strides[3];                   \
            const int32_t step1 = s_->in1_strides[4], step2 = s_->in2_strides[4];             \
            const int32_t n4_ = s_->out_shape[4];                                             \
            for (int32_t d4 = 0; d4 < n4_; ++d4, ++o, i1 += step1, i2 += step2) {             \
                BODY;                                                                         \
            }                                                                                 \
        }}}}                                                                                  \
    } while (0)

/* A binary kernel runs the flat loop (both inputs of the output's shape) itself and the
 * broadcast walk in an out-of-line helper NAME_broadcast: the walk's nested loops keep many
 * values live, and inlined they would deepen the frame of every call, broadcasting or not. The
 * memory estimate leaves a helper's frame out of the stack bound for a model none of whose
 * calls broadcast (edgekit.firmware.stack_paths), so the helper's name is part of that
 * contract. */
#define EK_DEFINE_BINARY(NAME, PARAMS, T, ELEMENT)                                            \
    static EK_NOINLINE void NAME##_broadcast(const PARAMS *p, const T *in1, const T *in2,     \
                                             T *out)                                          \
    {                                                                                         \
        const PARAMS q = *p;                                                                  \
        EK_BROADCAST_WALK(&q.shape, out[o] = (T)ELEMENT(&q, in1[i1], in2[i2]));               \
    }                                                                                         \
    void NAME(const PARAMS *p, const T *in1, const T *in2, T *out)                            \
    {                                                                                         \
        if (p->shape.broadcast) {                                                             \
            NAME##_broadcast(p, in1, in2, out);                                               \
            return;                                                                           \
        }                                                                                     \
        const PARAMS q = *p;                                                                  \
        for (int32_t i = 0; i < q.shape.size; ++i) {                                          \
            out[i] = (T)ELEMENT(&q, in1[i], in2[i]);                                          \
        }                                                                                     \
    }

EK_DEFINE_BINARY(ek_add_s16, ek_add_params, int16_t, ek_add_element)

/* As EK_DEFINE_BINARY, with the int8 ADD's prepared constants. The helper takes the params
 * and prepares its own constants: four arguments, all in registers, so the flat path's frame
 * holds neither an outgoing stack argument nor the constants in memory for the call. */
static EK_NOINLINE void ek_add_s8_broadcast(const ek_add_params *p, const int8_t *in1,
                                            const int8_t *in2, int8_t *out)
{
    const ek_add_s8_consts k = ek_add_s8_prepare(p);
    EK_BROADCAST_WALK(&p->shape, out[o] = ek_add_s8_output(&k, in1[i1], in2[i2]));
}

/* ek_add_s8_fast_output_e0 over n elements: input a's shift e_a is 1..31, b's is 0, and the
 * output takes the fast form with its offset (out_wide == 0). The constants come as scalars,
 * not in a struct, so that the caller's frame holds no second copy of them; the clamp is one SSAT where the activation range is all of int8 (`full`, a constant
 * after inlining): 28 instructions an element on resnet's ADDs, from 37 (26 with the
 * constants prepared out of line, but that frame held two copies of them: 88 B more stack). */
EK_ALWAYS_INLINE void ek_add_s8_loop_e0(const int8_t *a, const int8_t *b, int8_t *out, int32_t n,
                                        int32_t x_off_a, int32_t m_a, int32_t hi_a, int32_t e_a,
                                        int32_t x_off_b, int32_t m_b, const ek_add_s8_consts *k,
                                        int full)
{
    const int32_t mo = k->mo, k_hi = k->k_hi_o, right_m1 = k->eo - 1;
    const int32_t act_min = k->act_min, act_max = k->act_max;
    for (int32_t i = 0; i < n; ++i) {
        const int32_t sum = ek_add_s8_fast_input(a[i], x_off_a, m_a, hi_a, -1, e_a)
                            + ek_add_s8_fast_input_e0(b[i], x_off_b, m_b);
        const int32_t y = ek_requant_fast(sum, mo, k_hi, right_m1);
        out[i] = (int8_t)(full ? ek_ssat8(y) : ek_clamp(y, act_min, act_max));
    }
}

void ek_add_s8(const ek_add_params *p, const int8_t *in1, const int8_t *in2, int8_t *out)
{
    if (p->shape.broadcast) {
        ek_add_s8_broadcast(p, in1, in2, out);
        return;
    }
    /* the scalars only, in locals: int8 stores to out may alias the params, and reloading
     * them after every element would cost more than the registers */
    const ek_add_s8_consts k = ek_add_s8_prepare(p);
    const int32_t size = p->shape.size;
    if (k.fast && (k.e1 == 0) != (k.e2 == 0) && !k.out_wide) {
        /* the common case: the input of the larger scale has no rounding shift, the other one
         * has; the sum is symmetric, so the first is made the second */
        const int swap = k.e2 != 0;
        const int8_t *a = swap ? in2 : in1, *b = swap ? in1 : in2;
        const int32_t x_off_a = swap ? k.x_off2 : k.x_off1, m_a = swap ? k.m2 : k.m1;
        const int32_t hi_a = swap ? k.hi2 : k.hi1, e_a = swap ? k.e2 : k.e1;
        const int32_t x_off_b = swap ? k.x_off1 : k.x_off2, m_b = swap ? k.m1 : k.m2;
        if (k.act_min == -128 && k.act_max == 127) {
            ek_add_s8_loop_e0(a, b, out, size, x_off_a, m_a, hi_a, e_a, x_off_b, m_b, &k, 1);
        } else {
            ek_add_s8_loop_e0(a, b, out, size, x_off_a, m_a, hi_a, e_a, x_off_b, m_b, &k, 0);
        }
        return;
    }
    if (k.fast) { /* the form chosen once per call, not per element */
        for (int32_t i = 0; i < size; ++i) {
            out[i] = ek_add_s8_fast_output(&k, in1[i], in2[i]);
        }
        return;
    }
    for (int32_t i = 0; i < size; ++i) {
        out[i] = ek_add_s8_output(&k, in1[i], in2[i]);
    }
}

static inline int32_t ek_mul_element(const ek_mul_params *p, int32_t a, int32_t b)
{
    /* int8: |product| < 2^16; int16 has zero points 0 so |product| <= 2^30: no overflow. */
    int32_t product = (a + p->input1_offset) * (b + p->input2_offset);
    int64_t raw = (int64_t)ek_mbqm_nonneg_multiplier(product, p->output_multiplier,
                                                     p->output_shift) + p->output_offset;
    return ek_clamp64(raw, p->act_min, p->act_max);
}

EK_DEFINE_BINARY(ek_mul_s8, ek_mul_params, int8_t, ek_mul_element)
EK_DEFINE_BINARY(ek_mul_s16, ek_mul_params, int16_t, ek_mul_element)

/* --- requantisation: RELU and int -> int QUANTIZE ------------------------------------------- */

#define EK_DEFINE_REQUANTIZE(NAME, TIN, TOUT)                                                 \
    void NAME(const ek_requantize_params *p, const TIN *in, TOUT *out)                        \
    {                                                                                         \
        const ek_requantize_params q = *p;                                                    \
        for (int32_t i = 0; i < q.size; ++i) {                                                \
            int64_t raw = (int64_t)ek_mbqm_nonneg_multiplier((int32_t)in[i] - q.input_zero_point, \
                                                             q.multiplier, q.shift)           \
                          + q.output_zero_point;                                              \
            out[i] = (TOUT)ek_clamp64(raw, q.act_min, q.act_max);                             \
        }                                                                                     \
    }

EK_DEFINE_REQUANTIZE(ek_relu_s8, int8_t, int8_t)
EK_DEFINE_REQUANTIZE(ek_relu_s16, int16_t, int16_t)
EK_DEFINE_REQUANTIZE(ek_quantize_s8_s8, int8_t, int8_t)
EK_DEFINE_REQUANTIZE(ek_quantize_s8_s16, int8_t, int16_t)
EK_DEFINE_REQUANTIZE(ek_quantize_s16_s8, int16_t, int8_t)
EK_DEFINE_REQUANTIZE(ek_quantize_s16_s16, int16_t, int16_t)

#define EK_DEFINE_RELU6(SUFFIX, T)                                                            \
    void ek_relu6_##SUFFIX(const ek_clamp_params *p, const T *in, T *out)                     \
    {                                                                                         \
        const T lo = (T)p->lo, hi = (T)p->hi;                                                 \
        const int32_t size = p->size;                                                         \
        for (int32_t i = 0; i < size; ++i) {                                                  \
            /* TFLite's order: above six gives six even when six < zero point. */             \
            T v = in[i];                                                                      \
            out[i] = v > hi ? hi : (v < lo ? lo : v);                                         \
        }                                                                                     \
    }

EK_DEFINE_RELU6(s8, int8_t)
EK_DEFINE_RELU6(s16, int16_t)

/* --- HARD_SWISH: gemmlowp int16 fixed point, as reference_ops::HardSwish ---------------------- */

static inline int16_t ek_wrap_s16(int32_t x)
{
    return (int16_t)(uint16_t)(uint32_t)x;
}

/* SaturatingRoundingDoublingHighMul on int16 (round half away from zero). */
static inline int16_t ek_srdhm_s16(int16_t a, int16_t b)
{
    if (a == INT16_MIN && b == INT16_MIN) {
        return INT16_MAX;
    }
    int32_t ab = (int32_t)a * (int32_t)b;
    int32_t nudge = ab >= 0 ? (1 << 14) : (1 - (1 << 14));
    return ek_wrap_s16((ab + nudge) / (1 << 15)); /* C division truncates toward zero */
}

/* SaturatingDoublingHighMul on int16: no rounding nudge. */
static inline int16_t ek_sdhm_s16(int16_t a, int16_t b)
{
    if (a == INT16_MIN && b == INT16_MIN) {
        return INT16_MAX;
    }
    return ek_wrap_s16(((int32_t)a * (int32_t)b) / (1 << 15));
}

static inline int16_t ek_saturating_left_shift_s16(int16_t x, int amount)
{
    return (int16_t)ek_clamp((int32_t)x * (1 << amount), INT16_MIN, INT16_MAX);
}

void ek_hard_swish_s8(const ek_hard_swish_params *p, const int8_t *in, int8_t *out)
{
    const ek_hard_swish_params q = *p;
    const int16_t out_mult = (int16_t)q.output_multiplier_int16;
    const int16_t reluish_mult = (int16_t)q.reluish_multiplier_int16;
    const int reluish_exp = q.reluish_multiplier_exponent;
    for (int32_t i = 0; i < q.size; ++i) {
        int16_t value = ek_wrap_s16((int32_t)in[i] - q.input_zero_point);
        int16_t hires = ek_wrap_s16((int32_t)value * (1 << 7));
        int16_t preshift_output = ek_srdhm_s16(hires, out_mult);
        int16_t reluish = hires;
        if (reluish_exp > 0) {
            reluish = ek_saturating_left_shift_s16(reluish, reluish_exp - 1);
        }
        reluish = ek_srdhm_s16(reluish, reluish_mult);
        if (reluish_exp > 0) {
            reluish = ek_saturating_left_shift_s16(reluish, 1);
        }
        int32_t r = reluish;
        if (reluish_exp < 0) {
            r = ek_rdbpot(r, -reluish_exp);
        }
        r = (r + (1 << 15)) >> 1; /* [-1, 1] -> [0, 1] in Q0.15 */
        int32_t pre = ek_sdhm_s16((int16_t)r, preshift_output);
        int32_t y = ek_rdbpot(pre, -q.output_multiplier_exponent) + q.output_zero_point;
        out[i] = (int8_t)ek_clamp(ek_wrap_s16(y), INT8_MIN, INT8_MAX);
    }
}

/* --- QUANTIZE from float, DEQUANTIZE --------------------------------------------------------- */

/* round(x / scale) + zero point, clamped; ties away from zero as TfLiteRound. NaN is not a
 * quantizable input (TFLite leaves it undefined); it maps to the zero point here. */
static int32_t ek_affine_quantize_value(float x, float scale, int32_t zero_point,
                                        int32_t qmin, int32_t qmax)
{
    float q = x / scale;
    float magnitude = q < 0.0f ? -q : q;
    int64_t rounded;
    if (!(magnitude == magnitude)) {
        rounded = 0;
    } else if (magnitude >= 2147483648.0f) {
        rounded = q < 0.0f ? INT64_C(-2147483648) : INT64_C(2147483520); /* 2^31 - 128 */
    } else {
        /* magnitude < 2^31: the truncation is exact and so is the fraction. */
        int64_t whole = (int64_t)magnitude;
        float frac = magnitude - (float)whole;
        rounded = whole + (frac >= 0.5f ? 1 : 0);
        if (q < 0.0f) {
            rounded = -rounded;
        }
        if (rounded > INT64_C(2147483520)) {
            rounded = INT64_C(2147483520);
        }
    }
    int64_t v = rounded + zero_point;
    return (int32_t)(v < qmin ? qmin : (v > qmax ? qmax : v));
}

void ek_quantize_f32_s8(const ek_affine_quantize_params *p, const float *in, int8_t *out)
{
    for (int32_t i = 0; i < p->size; ++i) {
        out[i] = (int8_t)ek_affine_quantize_value(in[i], p->scale, p->zero_point, INT8_MIN,
                                                  INT8_MAX);
    }
}

void ek_quantize_f32_s16(const ek_affine_quantize_params *p, const float *in, int16_t *out)
{
    for (int32_t i = 0; i < p->size; ++i) {
        out[i] = (int16_t)ek_affine_quantize_value(in[i], p->scale, p->zero_point, INT16_MIN,
                                                   INT16_MAX);
    }
}

void ek_dequantize_s8_f32(const ek_dequantize_params *p, const int8_t *in, float *out)
{
    for (int32_t i = 0; i < p->size; ++i) {
        out[i] = (float)(p->scale * (double)((int32_t)in[i] - p->zero_point));
    }
}

void ek_dequantize_s16_f32(const ek_dequantize_params *p, const int16_t *in, float *out)
{
    for (int32_t i = 0; i < p->size; ++i) {
        out[i] = (float)(p->scale * (double)((int32_t)in[i] - p->zero_point));
    }
}
