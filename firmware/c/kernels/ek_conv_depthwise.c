/* DEPTHWISE_CONV_2D, int8 (see ek_conv.h for the semantics).
 *
 * Follows TFLite (Micro)'s reference_integer_ops::DepthwiseConvPerChannel: output channel
 * c*M + m (M = depth multiplier) sums input channel c against filter channel c*M + m over the
 * taps inside the input; int32 accumulator (wrapping), per-channel requantisation, clamp.
 *
 * In-place use: ek_depthwise_conv2d_s8_inplace implements the planner's
 * `depthwise_channelwise` mode (edgekit.planner): channel by channel, the input channel is copied
 * to a one-plane scratch, then the output channel is computed from the scratch only and written
 * over the input's slots of that channel. ek_depthwise_conv2d_s8 needs disjoint buffers.
 *
 * DSP path (depth multiplier 1, filter offset 0): four channels per word. Channels are adjacent
 * bytes in both input and filter, so one load and two SXTB16 give lanes {c, c+2} and
 * {c+1, c+3}; the per-lane products (SMLABB/SMLATT) keep the channels apart. */
#include "ek_conv.h"

#include <string.h>

#include "ek_arm_dsp.h"
#include "ek_conv_common.h"

static int32_t bias_of(const int32_t *bias, int32_t c)
{
    return bias != 0 ? bias[c] : 0;
}

static int8_t requantize_channel(const ek_conv2d_params *p, int32_t acc, int32_t oc)
{
    return ek_conv_requantize(acc, p->multipliers[oc], p->shifts[oc], p->output_offset,
                              p->act_min, p->act_max);
}

#if EK_USE_DSP
/* Output channels c..c+3 at one pixel (depth multiplier 1, filter offset 0). */
static void depthwise_acc4_dsp(const ek_conv2d_params *p, const int8_t *input,
                               const int8_t *filter, int32_t c, int32_t iy0, int32_t ix0,
                               int32_t ky0, int32_t ky1, int32_t kx0, int32_t kx1, int32_t acc[4])
{
    const int32_t channels = p->in_c;
    const uint32_t offset2 = ek_dup16(p->input_offset);
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    for (int32_t ky = ky0; ky < ky1; ++ky) {
        const int32_t iy = iy0 + ky * p->dilation_h;
        const int8_t *x = input + (iy * p->in_w + ix0 + kx0 * p->dilation_w) * channels + c;
        const int8_t *w = filter + (ky * p->k_w + kx0) * channels + c;
        const int32_t x_step = p->dilation_w * channels;
        for (int32_t kx = kx0; kx < kx1; ++kx) {
            uint32_t xv = ek_read_u32(x);
            uint32_t wv = ek_read_u32(w);
            uint32_t x02 = ek_sxtab16(offset2, xv);
            uint32_t x13 = ek_sxtab16_ror8(offset2, xv);
            uint32_t w02 = ek_sxtb16(wv);
            uint32_t w13 = ek_sxtb16_ror8(wv);
            a0 = ek_smlabb(x02, w02, a0);
            a2 = ek_smlatt(x02, w02, a2);
            a1 = ek_smlabb(x13, w13, a1);
            a3 = ek_smlatt(x13, w13, a3);
            x += x_step;
            w += channels;
        }
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}
#endif

/* Output channel oc (input channel ic) at one pixel, valid taps only. */
static int32_t depthwise_acc_portable(const ek_conv2d_params *p, const int8_t *input,
                                      const int8_t *filter, int32_t ic, int32_t oc, int32_t iy0,
                                      int32_t ix0, int32_t ky0, int32_t ky1, int32_t kx0,
                                      int32_t kx1, uint32_t acc)
{
    for (int32_t ky = ky0; ky < ky1; ++ky) {
        const int32_t iy = iy0 + ky * p->dilation_h;
        for (int32_t kx = kx0; kx < kx1; ++kx) {
            const int32_t ix = ix0 + kx * p->dilation_w;
            const int32_t x = input[(iy * p->in_w + ix) * p->in_c + ic];
            const int32_t w = filter[(ky * p->k_w + kx) * p->out_c + oc];
            acc += (uint32_t)((x + p->input_offset) * (w + p->filter_offset));
        }
    }
    return (int32_t)acc;
}

void ek_depthwise_conv2d_s8(const ek_depthwise_conv2d_params *params, const int8_t *input,
                            const int8_t *filter, const int32_t *bias, int8_t *output)
{
    /* A private copy: int8 stores to `output` would otherwise force field reloads. */
    const ek_depthwise_conv2d_params local = *params;
    const ek_depthwise_conv2d_params *p = &local;
    const int32_t multiplier = p->depth_multiplier;
#if EK_USE_DSP
    const int use_dsp = multiplier == 1 && p->filter_offset == 0;
#endif
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_top;
        int32_t ky0, ky1;
        ek_conv_valid_taps(iy0, p->in_h, p->k_h, p->dilation_h, &ky0, &ky1);
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t ix0 = ox * p->stride_w - p->pad_left;
            int32_t kx0, kx1;
            int32_t ic = 0;
            int8_t *out = output + (oy * p->out_w + ox) * p->out_c;
            ek_conv_valid_taps(ix0, p->in_w, p->k_w, p->dilation_w, &kx0, &kx1);
#if EK_USE_DSP
            if (use_dsp) {
                for (; ic + 4 <= p->in_c; ic += 4) {
                    int32_t acc[4] = {bias_of(bias, ic), bias_of(bias, ic + 1),
                                      bias_of(bias, ic + 2), bias_of(bias, ic + 3)};
                    depthwise_acc4_dsp(p, input, filter, ic, iy0, ix0, ky0, ky1, kx0, kx1, acc);
                    for (int32_t r = 0; r < 4; ++r) {
                        out[ic + r] = requantize_channel(p, acc[r], ic + r);
                    }
                }
            }
#endif
            for (; ic < p->in_c; ++ic) {
                for (int32_t m = 0; m < multiplier; ++m) {
                    const int32_t oc = ic * multiplier + m;
                    int32_t acc = depthwise_acc_portable(p, input, filter, ic, oc, iy0, ix0, ky0,
                                                         ky1, kx0, kx1,
                                                         (uint32_t)bias_of(bias, oc));
                    out[oc] = requantize_channel(p, acc, oc);
                }
            }
        }
    }
}

/* Largest filter window (k_h*k_w) whose channel weights the in-place kernel keeps in a local
 * table; larger windows take the generic loop. */
#define EK_DW_MAX_TAPS 25

/* One output pixel of channel c from the saved plane, valid taps only (generic loop). */
static int32_t plane_acc(const ek_depthwise_conv2d_params *p, const int8_t *plane,
                         const int32_t *taps, int32_t iy0, int32_t ix0, int32_t ky0, int32_t ky1,
                         int32_t kx0, int32_t kx1, uint32_t acc)
{
    for (int32_t ky = ky0; ky < ky1; ++ky) {
        const int32_t row = (iy0 + ky * p->dilation_h) * p->in_w + ix0;
        for (int32_t kx = kx0; kx < kx1; ++kx) {
            acc += (uint32_t)((plane[row + kx * p->dilation_w] + p->input_offset)
                              * taps[ky * p->k_w + kx]);
        }
    }
    return (int32_t)acc;
}

/* plane_acc for windows too large for the tap table: weights read from the filter. */
static int32_t plane_acc_wide(const ek_depthwise_conv2d_params *p, const int8_t *plane,
                              const int8_t *filter, int32_t c, int32_t iy0, int32_t ix0,
                              int32_t ky0, int32_t ky1, int32_t kx0, int32_t kx1, uint32_t acc)
{
    for (int32_t ky = ky0; ky < ky1; ++ky) {
        const int32_t row = (iy0 + ky * p->dilation_h) * p->in_w + ix0;
        for (int32_t kx = kx0; kx < kx1; ++kx) {
            const int32_t w = filter[(ky * p->k_w + kx) * p->in_c + c] + p->filter_offset;
            acc += (uint32_t)((plane[row + kx * p->dilation_w] + p->input_offset) * w);
        }
    }
    return (int32_t)acc;
}

/* Interior output pixels of one channel for a 3x3, stride-1, dilation-1 window: every tap is
 * inside the plane, so the input offset is folded into `base` = bias + input_offset * sum(w),
 * and only sum(x * w) is accumulated. Row `oy`, pixels ox in [ox_lo, ox_hi). */
static void plane_row_3x3(const ek_depthwise_conv2d_params *p, const int8_t *plane,
                          const int32_t *taps, int32_t oy, int32_t ox_lo, int32_t ox_hi,
                          int32_t base, int32_t c, int8_t *data)
{
    const int32_t width = p->in_w, channels = p->in_c;
    const int32_t multiplier = p->multipliers[c], shift = p->shifts[c];
    const int8_t *x = plane + (oy - p->pad_top) * width + (ox_lo - p->pad_left);
    int8_t *out = data + (oy * p->out_w + ox_lo) * channels + c;
    int32_t ox = ox_lo;
#if EK_USE_DSP
    /* Two pixels at once: per kernel row, the four bytes x0..x3 serve pixel ox (x0 x1 x2) and
     * ox+1 (x1 x2 x3); lanes {x0,x2} and {x1,x3} meet the weight pairs {w0,w2} and w1. */
    uint32_t w02[3], w1[3];
    for (int32_t r = 0; r < 3; ++r) {
        w02[r] = ((uint32_t)taps[3 * r] & 0xFFFFu) | ((uint32_t)taps[3 * r + 2] << 16);
        w1[r] = (uint32_t)taps[3 * r + 1] & 0xFFFFu;
    }
    for (; ox + 2 <= ox_hi; ox += 2, x += 2) {
        int32_t a0 = base, a1 = base;
        const int8_t *row = x;
        for (int32_t r = 0; r < 3; ++r, row += width) {
            uint32_t v = ek_read_u32(row);
            uint32_t x02 = ek_sxtb16(v), x13 = ek_sxtb16_ror8(v);
            a0 = ek_smlad(x02, w02[r], a0);
            a0 = ek_smlabb(x13, w1[r], a0);
            a1 = ek_smlad(x13, w02[r], a1);
            a1 = ek_smlatb(x02, w1[r], a1);
        }
        out[0] = ek_conv_requantize(a0, multiplier, shift, p->output_offset, p->act_min,
                                    p->act_max);
        out[channels] = ek_conv_requantize(a1, multiplier, shift, p->output_offset, p->act_min,
                                           p->act_max);
        out += 2 * channels;
    }
#endif
    for (; ox < ox_hi; ++ox, ++x) {
        uint32_t acc = (uint32_t)base;
        const int8_t *row = x;
        for (int32_t r = 0; r < 3; ++r, row += width) {
            acc += (uint32_t)(row[0] * taps[3 * r]) + (uint32_t)(row[1] * taps[3 * r + 1])
                   + (uint32_t)(row[2] * taps[3 * r + 2]);
        }
        *out = ek_conv_requantize((int32_t)acc, multiplier, shift, p->output_offset, p->act_min,
                                  p->act_max);
        out += channels;
    }
}

/* First output index whose window starts at or after 0 and first one whose window ends past
 * `size` (both clamped to [0, out]): the interior is [lo, hi). */
static void interior_range(int32_t out, int32_t stride, int32_t pad, int32_t span, int32_t size,
                           int32_t *lo, int32_t *hi)
{
    int32_t l = 0, h = out;
    while (l < out && l * stride - pad < 0) {
        ++l;
    }
    while (h > l && (h - 1) * stride - pad + span > size) {
        --h;
    }
    *lo = l;
    *hi = h;
}

/* The plane-scratch in-place kernel: any window and dilation (the ring kernel's fallback). */
static void inplace_plane(const ek_depthwise_conv2d_params *params, int8_t *input,
                          const int8_t *filter, const int32_t *bias, int8_t *output,
                          int8_t *scratch)
{
    const ek_depthwise_conv2d_params local = *params; /* see ek_depthwise_conv2d_s8 */
    const ek_depthwise_conv2d_params *p = &local;
    int8_t *data = output; /* == input: reads and writes go through one pointer */
    const int32_t channels = p->in_c;
    const int32_t plane = p->in_h * p->in_w;
    const int32_t n_taps = p->k_h * p->k_w;
    const int fast_3x3 = p->k_h == 3 && p->k_w == 3 && p->stride_w == 1 && p->dilation_h == 1
                         && p->dilation_w == 1;
    int32_t taps[EK_DW_MAX_TAPS];
    int32_t oy_lo = 0, oy_hi = 0, ox_lo = 0, ox_hi = 0; /* the 3x3 fast path's interior */
    (void)input;
    if (fast_3x3) {
        interior_range(p->out_h, p->stride_h, p->pad_top, 3, p->in_h, &oy_lo, &oy_hi);
        interior_range(p->out_w, 1, p->pad_left, 3, p->in_w, &ox_lo, &ox_hi);
    }
    for (int32_t c = 0; c < channels; ++c) {
        int32_t tap_sum = 0;
        /* Save input channel c: its slots are about to receive output channel c. */
        for (int32_t i = 0; i < plane; ++i) {
            scratch[i] = data[i * channels + c];
        }
        if (n_taps <= EK_DW_MAX_TAPS) {
            for (int32_t t = 0; t < n_taps; ++t) {
                taps[t] = filter[t * channels + c] + p->filter_offset;
                tap_sum += taps[t];
            }
        }
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_top;
            const int interior_row = oy >= oy_lo && oy < oy_hi;
            int32_t ky0, ky1;
            ek_conv_valid_taps(iy0, p->in_h, p->k_h, p->dilation_h, &ky0, &ky1);
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                const int32_t ix0 = ox * p->stride_w - p->pad_left;
                int32_t kx0, kx1, acc;
                if (interior_row && ox == ox_lo && ox_hi > ox_lo) {
                    const uint32_t base = (uint32_t)bias_of(bias, c)
                                          + (uint32_t)(p->input_offset * tap_sum);
                    plane_row_3x3(p, scratch, taps, oy, ox_lo, ox_hi, (int32_t)base, c, data);
                    ox = ox_hi - 1;
                    continue;
                }
                ek_conv_valid_taps(ix0, p->in_w, p->k_w, p->dilation_w, &kx0, &kx1);
                if (n_taps > EK_DW_MAX_TAPS) {
                    acc = plane_acc_wide(p, scratch, filter, c, iy0, ix0, ky0, ky1, kx0, kx1,
                                         (uint32_t)bias_of(bias, c));
                } else {
                    acc = plane_acc(p, scratch, taps, iy0, ix0, ky0, ky1, kx0, kx1,
                                    (uint32_t)bias_of(bias, c));
                }
                data[(oy * p->out_w + ox) * channels + c] = requantize_channel(p, acc, c);
            }
        }
    }
}

/* ---- In-place ring kernel -------------------------------------------------------------------
 *
 * The planner's depthwise_channelwise mode without a plane copy and without border cases:
 * channel by channel, input rows are gathered (strided byte loads) into a ring of k_h padded
 * rows, each `rw` = (out_w - 1) * stride_w + k_w bytes wide, whose padding columns hold the
 * input zero point; rows above or below the input read a row of zero points. A zero-point byte
 * contributes (zp + input_offset) * w = 0, exactly what skipping a padding tap contributes, so
 * every output pixel takes the same straight loop, with the input offset folded into the
 * channel's base: acc = bias + input_offset * sum(w) + sum(x * w)  (mod 2^32, as the reference).
 *
 * Order: output row oy is written (channel c only) after the rows its window reads are in the
 * ring; it is safe when every pixel it writes lies in an input row already gathered or never
 * needed (ring_order_safe checks it for the layer; otherwise the plane kernel runs). The ring
 * lives in the planner's scratch plane when it fits there, else in a small stack buffer.
 *
 * Requantisation: a channel whose multiplier is non-negative with a right shift r in [1, 23]
 * (every MLPerf depthwise layer) takes dw_requant_fast, one 64-bit multiply-add and a shift
 * instead of ek_mbqm_nonneg's two roundings; the others take ek_conv_requantize. */

/* Largest ring kept on the stack when the scratch plane is smaller than the ring. */
#define EK_DW_RING_STACK 64

#if defined(__GNUC__)
#define EK_DW_INLINE static inline __attribute__((always_inline))
#define EK_DW_NOINLINE static __attribute__((noinline))
#else
#define EK_DW_INLINE static inline
#define EK_DW_NOINLINE static
#endif

/* Requantisation of one channel: its constants, computed once per channel. */
typedef struct {
    int64_t k; /* fast form: 2^30 + 2^(30+r) + output_offset * 2^(31+r) */
    int32_t multiplier;
    int32_t shift;      /* fast form: r - 1; generic form: the params shift */
    int32_t output_offset, act_min, act_max;
} dw_requant;

enum { DW_GENERIC, DW_FAST, DW_FAST_FULL };

/* Why the fast form is exact. ek_mbqm_nonneg computes high = floor((P + 2^30) / 2^31) with
 * P = acc * M, then rounds high / 2^r half away from zero: floor((high + 2^(r-1) - neg) / 2^r)
 * with neg = [high < 0]. Adding an integer inside a floor commutes with the division, so
 *     result + output_offset
 *       = floor((P + 2^30 + 2^(30+r) + output_offset * 2^(31+r) - neg * 2^31) / 2^(31+r)),
 * computed exactly in int64: |P| < 2^62 and the constant is below 2^61 in magnitude for
 * r <= 23. neg = [P + 2^30 < 0] is replaced by [acc < 0] (M >= 0): they differ only when
 * P is in [-2^30, -1], where high = 0 and floor((2^(r-1) - 1) / 2^r) = floor(2^(r-1) / 2^r)
 * = 0 for r >= 1, so the result is the same. The result is the high word shifted right by
 * r - 1 (31 + r >= 32). */
static int dw_requant_setup(const ek_depthwise_conv2d_params *p, int32_t c, dw_requant *q)
{
    const int32_t multiplier = p->multipliers[c], shift = p->shifts[c];
    q->multiplier = multiplier;
    q->output_offset = p->output_offset;
    q->act_min = p->act_min;
    q->act_max = p->act_max;
    q->k = 0;
    q->shift = shift;
    if (multiplier >= 0 && shift <= -1 && shift >= -23) {
        const int32_t r = -shift;
        q->k = (INT64_C(1) << 30) + (INT64_C(1) << (30 + r))
               + (int64_t)p->output_offset * (INT64_C(1) << (31 + r));
        q->shift = r - 1;
        return p->act_min == -128 && p->act_max == 127 ? DW_FAST_FULL : DW_FAST;
    }
    return DW_GENERIC;
}

static inline int32_t dw_ssat8(int32_t v)
{
#if defined(__ARM_FEATURE_SAT) && !defined(EDGEKIT_EMULATE_DSP)
    int32_t r;
    __asm__("ssat %0, #8, %1" : "=r"(r) : "r"(v));
    return r;
#else
    return ek_clamp(v, -128, 127);
#endif
}

EK_DW_INLINE int8_t dw_output(const dw_requant *q, int32_t acc, int mode)
{
    if (mode == DW_GENERIC) {
        return ek_conv_requantize(acc, q->multiplier, q->shift, q->output_offset, q->act_min,
                                  q->act_max);
    }
    int64_t t = (int64_t)acc * q->multiplier + q->k;
    t -= (int64_t)((uint32_t)acc >> 31) << 31;
    const int32_t v = (int32_t)(t >> 32) >> q->shift;
    if (mode == DW_FAST_FULL) {
        return (int8_t)dw_ssat8(v);
    }
    return (int8_t)ek_clamp(v, q->act_min, q->act_max);
}

/* One row of outputs, any window (k_h*k_w <= EK_DW_MAX_TAPS), from the ring rows. */
EK_DW_INLINE void dw_row_generic(const int8_t *const *rows, const int32_t *taps, int32_t k_h,
                                 int32_t k_w, int32_t stride, uint32_t base, int32_t out_w,
                                 int8_t *out, int32_t step, const dw_requant *q, int mode)
{
    for (int32_t ox = 0; ox < out_w; ++ox) {
        uint32_t acc = base;
        const int32_t *t = taps;
        for (int32_t ky = 0; ky < k_h; ++ky) {
            const int8_t *x = rows[ky] + ox * stride;
            for (int32_t kx = 0; kx < k_w; ++kx) {
                acc += (uint32_t)(x[kx] * t[kx]);
            }
            t += k_w;
        }
        *out = dw_output(q, (int32_t)acc, mode);
        out += step;
    }
}

#if EK_USE_DSP
/* SMLABT (not in ek_arm_dsp.h): acc + a.lo * b.hi, wrapping. */
static inline int32_t dw_smlabt(uint32_t a, uint32_t b, int32_t acc)
{
#if defined(__ARM_FEATURE_DSP) && !defined(EDGEKIT_EMULATE_DSP)
    int32_t r;
    __asm__("smlabt %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
#else
    const int32_t lo = (int16_t)(uint16_t)(a & 0xFFFFu), hi = (int16_t)(uint16_t)(b >> 16);
    return (int32_t)((uint32_t)acc + (uint32_t)(lo * hi));
#endif
}

static inline uint32_t dw_pack(int32_t lo, int32_t hi)
{
    return ((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16);
}

/* One 3x3 pixel from the rows at x0, y0, z0: per row a word x0..x3 of which x3 is unused (it
 * may be the ring's slack byte past the row). */
EK_DW_INLINE int32_t dw_pixel_3x3(const int8_t *x0, const int8_t *y0, const int8_t *z0,
                                  uint32_t w02_0, uint32_t w02_1, uint32_t w02_2, uint32_t w1_01,
                                  uint32_t w1_2, uint32_t base)
{
    uint32_t v = ek_read_u32(x0);
    int32_t a = ek_smlad(ek_sxtb16(v), w02_0, (int32_t)base);
    a = ek_smlabb(ek_sxtb16_ror8(v), w1_01, a);
    v = ek_read_u32(y0);
    a = ek_smlad(ek_sxtb16(v), w02_1, a);
    a = dw_smlabt(ek_sxtb16_ror8(v), w1_01, a);
    v = ek_read_u32(z0);
    a = ek_smlad(ek_sxtb16(v), w02_2, a);
    return ek_smlabb(ek_sxtb16_ror8(v), w1_2, a);
}

/* 3x3 window, stride 1: two pixels per step. Per kernel row, the bytes x0..x3 serve pixel ox
 * (x0 x1 x2) and ox+1 (x1 x2 x3): lanes {x0,x2} and {x1,x3} meet {w0,w2} and w1. The middle
 * weights of rows 0 and 1 share one word (w1 lo / hi), row 2's sits alone. Reads stay inside
 * the ring row: the last pair reads up to byte out_w + 1 = rw - 1. */
EK_DW_INLINE void dw_row_3x3_s1(const int8_t *const *rows, const int32_t *taps, uint32_t base,
                                int32_t out_w, int8_t *out, int32_t step, const dw_requant *q,
                                int mode)
{
    const int8_t *r0 = rows[0], *r1 = rows[1], *r2 = rows[2];
    const uint32_t w02_0 = dw_pack(taps[0], taps[2]), w02_1 = dw_pack(taps[3], taps[5]);
    const uint32_t w02_2 = dw_pack(taps[6], taps[8]);
    const uint32_t w1_01 = dw_pack(taps[1], taps[4]), w1_2 = dw_pack(taps[7], 0);
    int32_t ox = 0;
    for (; ox + 2 <= out_w; ox += 2) {
        int32_t a0 = (int32_t)base, a1 = (int32_t)base;
        uint32_t v = ek_read_u32(r0 + ox);
        uint32_t x02 = ek_sxtb16(v), x13 = ek_sxtb16_ror8(v);
        a0 = ek_smlad(x02, w02_0, a0);
        a0 = ek_smlabb(x13, w1_01, a0);
        a1 = ek_smlad(x13, w02_0, a1);
        a1 = ek_smlatb(x02, w1_01, a1);
        v = ek_read_u32(r1 + ox);
        x02 = ek_sxtb16(v);
        x13 = ek_sxtb16_ror8(v);
        a0 = ek_smlad(x02, w02_1, a0);
        a0 = dw_smlabt(x13, w1_01, a0);
        a1 = ek_smlad(x13, w02_1, a1);
        a1 = ek_smlatt(x02, w1_01, a1);
        v = ek_read_u32(r2 + ox);
        x02 = ek_sxtb16(v);
        x13 = ek_sxtb16_ror8(v);
        a0 = ek_smlad(x02, w02_2, a0);
        a0 = ek_smlabb(x13, w1_2, a0);
        a1 = ek_smlad(x13, w02_2, a1);
        a1 = ek_smlatb(x02, w1_2, a1);
        out[0] = dw_output(q, a0, mode);
        out[step] = dw_output(q, a1, mode);
        out += 2 * step;
    }
    if (ox < out_w) {
        *out = dw_output(q, dw_pixel_3x3(r0 + ox, r1 + ox, r2 + ox, w02_0, w02_1, w02_2, w1_01,
                                         w1_2, base), mode);
    }
}

/* 3x3 window, stride 2: two pixels per step from five bytes x0..x4 per kernel row: pixel ox
 * reads x0 x1 x2, pixel ox+1 reads x2 x3 x4. One word load gives {x0,x2} and {x1,x3}; x4 is a
 * byte load. The last pair reads up to byte 2*out_w = rw - 1. */
EK_DW_INLINE void dw_row_3x3_s2(const int8_t *const *rows, const int32_t *taps, uint32_t base,
                                int32_t out_w, int8_t *out, int32_t step, const dw_requant *q,
                                int mode)
{
    const int8_t *r0 = rows[0], *r1 = rows[1], *r2 = rows[2];
    const uint32_t w02_0 = dw_pack(taps[0], taps[2]), w02_1 = dw_pack(taps[3], taps[5]);
    const uint32_t w02_2 = dw_pack(taps[6], taps[8]);
    const uint32_t w1_01 = dw_pack(taps[1], taps[4]), w1_2 = dw_pack(taps[7], 0);
    int32_t ox = 0;
    for (; ox + 2 <= out_w; ox += 2) {
        const int32_t at = 2 * ox;
        int32_t a0 = (int32_t)base, a1 = (int32_t)base;
        uint32_t v = ek_read_u32(r0 + at);
        uint32_t x02 = ek_sxtb16(v), x13 = ek_sxtb16_ror8(v);
        a0 = ek_smlad(x02, w02_0, a0);
        a0 = ek_smlabb(x13, w1_01, a0);
        a1 = ek_smlatb(x02, w02_0, a1);
        a1 = ek_smlatb(x13, w1_01, a1);
        a1 = dw_smlabt((uint32_t)(int32_t)r0[at + 4], w02_0, a1);
        v = ek_read_u32(r1 + at);
        x02 = ek_sxtb16(v);
        x13 = ek_sxtb16_ror8(v);
        a0 = ek_smlad(x02, w02_1, a0);
        a0 = dw_smlabt(x13, w1_01, a0);
        a1 = ek_smlatb(x02, w02_1, a1);
        a1 = ek_smlatt(x13, w1_01, a1);
        a1 = dw_smlabt((uint32_t)(int32_t)r1[at + 4], w02_1, a1);
        v = ek_read_u32(r2 + at);
        x02 = ek_sxtb16(v);
        x13 = ek_sxtb16_ror8(v);
        a0 = ek_smlad(x02, w02_2, a0);
        a0 = ek_smlabb(x13, w1_2, a0);
        a1 = ek_smlatb(x02, w02_2, a1);
        a1 = ek_smlatb(x13, w1_2, a1);
        a1 = dw_smlabt((uint32_t)(int32_t)r2[at + 4], w02_2, a1);
        out[0] = dw_output(q, a0, mode);
        out[step] = dw_output(q, a1, mode);
        out += 2 * step;
    }
    if (ox < out_w) {
        const int32_t at = 2 * ox;
        *out = dw_output(q, dw_pixel_3x3(r0 + at, r1 + at, r2 + at, w02_0, w02_1, w02_2, w1_01,
                                         w1_2, base), mode);
    }
}
#endif

/* Which row loop a layer takes. */
enum { DW_ROW_GENERIC, DW_ROW_3X3_S1, DW_ROW_3X3_S2 };

EK_DW_INLINE void dw_row(int shape, const int8_t *const *rows, const int32_t *taps, int32_t k_h,
                         int32_t k_w, int32_t stride, uint32_t base, int32_t out_w, int8_t *out,
                         int32_t step, const dw_requant *q, int mode)
{
#if EK_USE_DSP
    if (shape == DW_ROW_3X3_S1) {
        dw_row_3x3_s1(rows, taps, base, out_w, out, step, q, mode);
        return;
    }
    if (shape == DW_ROW_3X3_S2) {
        dw_row_3x3_s2(rows, taps, base, out_w, out, step, q, mode);
        return;
    }
#else
    (void)shape;
#endif
    dw_row_generic(rows, taps, k_h, k_w, stride, base, out_w, out, step, q, mode);
}

/* dw_row with the requantisation mode as a compile-time constant in each branch. */
static void dw_row_dispatch(int shape, const int8_t *const *rows, const int32_t *taps,
                            int32_t k_h, int32_t k_w, int32_t stride, uint32_t base,
                            int32_t out_w, int8_t *out, int32_t step, const dw_requant *q,
                            int mode)
{
    if (mode == DW_FAST_FULL) {
        dw_row(shape, rows, taps, k_h, k_w, stride, base, out_w, out, step, q, DW_FAST_FULL);
    } else if (mode == DW_FAST) {
        dw_row(shape, rows, taps, k_h, k_w, stride, base, out_w, out, step, q, DW_FAST);
    } else {
        dw_row(shape, rows, taps, k_h, k_w, stride, base, out_w, out, step, q, DW_GENERIC);
    }
}

/* n bytes of one channel (every `step`-th byte from src) into dst. */
static void dw_gather(const int8_t *src, int32_t step, int8_t *dst, int32_t n)
{
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        dst[i] = src[0];
        dst[i + 1] = src[step];
        dst[i + 2] = src[2 * step];
        dst[i + 3] = src[3 * step];
        src += 4 * step;
    }
    for (; i < n; ++i) {
        dst[i] = *src;
        src += step;
    }
}

/* Whether writing output row oy (channel c) right after its window's rows are gathered never
 * overwrites an input pixel of channel c that a later window still needs. */
static int ring_order_safe(const ek_depthwise_conv2d_params *p)
{
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        int32_t gathered = oy * p->stride_h - p->pad_top + p->k_h;
        if (gathered > p->in_h) {
            gathered = p->in_h;
        }
        if ((oy + 1) * p->out_w > gathered * p->in_w) {
            return 0;
        }
    }
    return 1;
}

/* Ring geometry: row width, whether a zero-point row is needed, total bytes. */
static int32_t ring_bytes(const ek_depthwise_conv2d_params *p, int32_t *rw, int *zp_row)
{
    const int32_t bottom = (p->out_h - 1) * p->stride_h - p->pad_top + p->k_h; /* rows spanned */
    *rw = (p->out_w - 1) * p->stride_w + p->k_w;
    *zp_row = p->pad_top > 0 || bottom > p->in_h;
    /* + 3 slack bytes: a single-pixel tail reads one word per row, one byte past its window */
    return (p->k_h + (*zp_row ? 1 : 0)) * *rw + 3;
}

static void inplace_ring(const ek_depthwise_conv2d_params *p, int8_t *data, const int8_t *filter,
                         const int32_t *bias, int8_t *ring)
{
    const int32_t channels = p->in_c, in_h = p->in_h, in_w = p->in_w;
    const int32_t k_h = p->k_h, k_w = p->k_w, stride_h = p->stride_h, stride_w = p->stride_w;
    const int32_t out_h = p->out_h, out_w = p->out_w, pad_top = p->pad_top;
    const int32_t pad_left = p->pad_left, n_taps = k_h * k_w;
    const int8_t zero_point = (int8_t)(-p->input_offset);
    int32_t rw, cols;
    int has_zp_row;
    (void)ring_bytes(p, &rw, &has_zp_row);
    int8_t *const zp_row = ring + k_h * rw;
    int shape = DW_ROW_GENERIC;
    if (k_h == 3 && k_w == 3 && stride_w == 1) {
        shape = DW_ROW_3X3_S1;
    } else if (k_h == 3 && k_w == 3 && stride_w == 2) {
        shape = DW_ROW_3X3_S2;
    }
    /* Input columns inside the ring rows: [0, cols), at ring column pad_left + ix. */
    cols = rw - pad_left < in_w ? rw - pad_left : in_w;
    for (int32_t s = 0; s < k_h; ++s) {
        int8_t *slot = ring + s * rw;
        memset(slot, zero_point, (size_t)pad_left);
        if (pad_left + cols < rw) {
            memset(slot + pad_left + cols, zero_point, (size_t)(rw - pad_left - cols));
        }
    }
    /* the zero-point row (if any) and the 3 slack bytes after the last row */
    memset(zp_row, zero_point, (size_t)((has_zp_row ? rw : 0) + 3));
    for (int32_t c = 0; c < channels; ++c) {
        int32_t taps[EK_DW_MAX_TAPS];
        uint32_t tap_sum = 0;
        const int8_t *rows[EK_DW_MAX_TAPS];
        dw_requant q;
        const int mode = dw_requant_setup(p, c, &q);
        int32_t next = 0; /* input rows below `next` are in the ring or never needed */
        for (int32_t t = 0; t < n_taps; ++t) {
            taps[t] = filter[t * channels + c] + p->filter_offset;
            tap_sum += (uint32_t)taps[t];
        }
        const uint32_t base = (uint32_t)bias_of(bias, c) + (uint32_t)p->input_offset * tap_sum;
        for (int32_t oy = 0; oy < out_h; ++oy) {
            const int32_t iy0 = oy * stride_h - pad_top;
            for (int32_t ky = 0; ky < k_h; ++ky) {
                const int32_t iy = iy0 + ky;
                if (iy < 0 || iy >= in_h) {
                    rows[ky] = zp_row;
                    continue;
                }
                int8_t *slot = ring + (iy % k_h) * rw;
                if (iy >= next) {
                    dw_gather(data + iy * in_w * channels + c, channels, slot + pad_left, cols);
                    next = iy + 1;
                }
                rows[ky] = slot;
            }
            dw_row_dispatch(shape, rows, taps, k_h, k_w, stride_w, base, out_w,
                            data + oy * out_w * channels + c, channels, &q, mode);
        }
    }
}

/* inplace_ring with the ring on the stack (scratch planes smaller than the ring). */
EK_DW_NOINLINE void inplace_ring_on_stack(const ek_depthwise_conv2d_params *p, int8_t *data,
                                          const int8_t *filter, const int32_t *bias)
{
    int8_t ring[EK_DW_RING_STACK];
    inplace_ring(p, data, filter, bias, ring);
}

void ek_depthwise_conv2d_s8_inplace(const ek_depthwise_conv2d_params *params, int8_t *input,
                                    const int8_t *filter, const int32_t *bias, int8_t *output,
                                    int8_t *scratch)
{
    const ek_depthwise_conv2d_params local = *params; /* see ek_depthwise_conv2d_s8 */
    const ek_depthwise_conv2d_params *p = &local;
    if (p->dilation_h == 1 && p->dilation_w == 1 && p->k_h * p->k_w <= EK_DW_MAX_TAPS
        && ring_order_safe(p)) {
        int32_t rw;
        int has_zp_row;
        const int32_t bytes = ring_bytes(p, &rw, &has_zp_row);
        if (bytes <= p->in_h * p->in_w) {
            inplace_ring(p, output, filter, bias, scratch);
            return;
        }
        if (bytes <= EK_DW_RING_STACK) {
            inplace_ring_on_stack(p, output, filter, bias);
            return;
        }
    }
    inplace_plane(params, input, filter, bias, output, scratch);
}
