/* DEPTHWISE_CONV_2D, int8 (see ek_conv.h for the semantics).
 *
 * Follows TFLite (Micro)'s reference_integer_ops::DepthwiseConvPerChannel: output channel
 * c*M + m (M = depth multiplier) sums input channel c against filter channel c*M + m over the
 * taps inside the input; int32 accumulator (wrapping), per-channel requantisation, clamp.
 *
 * In-place use:
 *   - ek_depthwise_conv2d_s8_inplace implements the planner's `depthwise_channelwise` mode
 *     (edgekit.planner): channel by channel, output channel c is written only over the input's
 *     slots of channel c, after the input values it needs are saved (the row ring below, in the
 *     scratch plane; or the whole plane copy for the layers the ring does not take).
 *   - ek_depthwise_conv2d_s8 is what the planner's `conv_sliding` mode runs over its own input
 *     (output `lead` bytes before it): output pixels in increasing row-major order, pixel p's
 *     outputs stored only at output + p*out_c .. + out_c, its input read only inside pixel p's
 *     window, nothing cached across pixels, no `restrict`. Keep these properties if the loops
 *     change. Otherwise it needs disjoint buffers.
 *
 * DSP path (depth multiplier 1, filter offset 0): four channels per word. Channels are adjacent
 * bytes in both input and filter, so one load and two SXTB16 give lanes {c, c+2} and
 * {c+1, c+3}; the per-lane products (SMLABB/SMLATT) keep the channels apart. */
#include "ek_conv.h"

#include <stddef.h>
#include <string.h>

#include "ek_arm_dsp.h"

/* The model's kernel configuration (EK_DW_ONLY_QUAD below): generated with each model build
 * (edgekit.firmware.op_emitters.model_config_header). */
#if defined(__has_include)
#if __has_include("ek_model_config.h")
#include "ek_model_config.h"
#endif
#endif
#include "ek_conv_common.h"
#include "ek_conv_weights.h"

/* Forced (non-)inlining: the row loops are instantiated per row shape and requantisation mode
 * (constants), and the in-place paths keep separate stack frames (the stack high-water is the
 * deepest path, not the sum of all). */
#if defined(__GNUC__)
#define EK_DW_INLINE static inline __attribute__((always_inline))
#define EK_DW_NOINLINE static __attribute__((noinline))
/* the one-channel ring and plane kernels, which a model build may leave uncalled
 * (EK_DW_ONLY_QUAD below): then dropped by the compiler, without a warning */
#define EK_DW_MAYBE_UNUSED __attribute__((unused))
/* the plane kernel keeps its name (no .constprop clone): the stack bound's path list names it */
#if defined(__clang__)
#define EK_DW_NOCLONE
#else
#define EK_DW_NOCLONE __attribute__((noclone))
#endif
#else
#define EK_DW_MAYBE_UNUSED
#define EK_DW_NOCLONE
#define EK_DW_INLINE static inline
#define EK_DW_NOINLINE static
#endif

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
        int32_t w = (ky * p->k_w + kx0) * channels + c; /* filter element index */
        const int32_t x_step = p->dilation_w * channels;
        for (int32_t kx = kx0; kx < kx1; ++kx) {
            uint32_t xv = ek_read_u32(x);
            uint32_t wv = EK_FILTER_WORD4(filter, w);
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
            const int32_t w = EK_FILTER(filter, (ky * p->k_w + kx) * p->out_c + oc);
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
            const int32_t w = EK_FILTER(filter, (ky * p->k_w + kx) * p->in_c + c) + p->filter_offset;
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
EK_DW_NOINLINE EK_DW_NOCLONE EK_DW_MAYBE_UNUSED void inplace_plane(const ek_depthwise_conv2d_params *params, int8_t *input,
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
                taps[t] = EK_FILTER(filter, t * channels + c) + p->filter_offset;
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
 * input zero point; rows above or below the input are rows of zero points. A zero-point byte
 * contributes (zp + input_offset) * w = 0, exactly what skipping a padding tap contributes, so
 * every output pixel takes the same straight loop, with the input offset folded into the
 * channel's base: acc = bias + input_offset * sum(w) + sum(x * w)  (mod 2^32, as the reference).
 *
 * Ring: input row iy (padding rows included) lives in slot iy mod k_h and again in slot
 * k_h + (iy mod k_h), so the k_h rows of every window are k_h consecutive slots starting at
 * slot (iy0 mod k_h): a window is one pointer and a row pitch. 2*k_h*rw bytes + 3 slack bytes
 * (a single-pixel tail reads one word per row, one byte past its window).
 *
 * Order: output row oy is written (channel c only) after the rows its window reads are in the
 * ring; it is safe when every pixel it writes lies in an input row already gathered or never
 * needed (ring_order_safe checks it for the layer; otherwise the plane kernel runs). The ring
 * lives in the planner's scratch plane when it fits there, else in a small stack buffer.
 *
 * Requantisation: a channel whose multiplier is non-negative with a right shift r in
 * [EK_REQUANT_SHORTEST, 23] (ek_conv_common.h: 2, the int4 kernels 1; every MLPerf
 * depthwise layer) takes the fast form (dw_requant_setup): one 64-bit
 * multiply-accumulate and a shift instead of ek_mbqm_nonneg's two roundings; the others take
 * ek_conv_requantize. */

/* Largest ring kept on the stack when the scratch plane is smaller than the ring. */
#define EK_DW_RING_STACK 64

/* Requantisation of one channel: its constants, computed once per channel. */
typedef struct {
    int32_t k_hi;       /* fast form: ek_requant_fast_k (the wide form's: ek_requant_wide_k) */
    int32_t multiplier;
    int32_t shift;      /* fast form: r - 1; generic form: the params shift */
    int32_t output_offset, act_min, act_max;
} dw_requant;

/* DW_WIDE_FULL: the wide fast form (ek_requant_wide_applies) with the int8-range clamp, which
 * only the pair ring gives a channel (dw_pairs_setup; the others take DW_GENERIC for it). */
enum { DW_GENERIC, DW_FAST, DW_FAST_FULL, DW_WIDE_FULL };

/* The fast form and why it is exact: ek_requant_fast in ek_conv_common.h. */
static int dw_requant_setup(const ek_depthwise_conv2d_params *p, int32_t c, dw_requant *q)
{
    const int32_t multiplier = p->multipliers[c], shift = p->shifts[c];
    q->multiplier = multiplier;
    q->output_offset = p->output_offset;
    q->act_min = p->act_min;
    q->act_max = p->act_max;
    q->k_hi = 0;
    q->shift = shift;
    if (ek_requant_fast_applies(multiplier, shift)) {
        q->k_hi = ek_requant_fast_k(shift, p->output_offset);
        q->shift = -shift - 1;
        return p->act_min == -128 && p->act_max == 127 ? DW_FAST_FULL : DW_FAST;
    }
    return DW_GENERIC;
}

EK_DW_INLINE int8_t dw_output(const dw_requant *q, int32_t acc, int mode)
{
    if (mode == DW_GENERIC) {
        return ek_conv_requantize(acc, q->multiplier, q->shift, q->output_offset, q->act_min,
                                  q->act_max);
    }
    const int32_t v = ek_requant_fast(acc, q->multiplier, q->k_hi, q->shift);
    if (mode == DW_FAST_FULL) {
        return (int8_t)ek_ssat8(v);
    }
    if (mode == DW_WIDE_FULL) {
        return (int8_t)ek_ssat8(v + q->output_offset);
    }
    return (int8_t)ek_clamp(v, q->act_min, q->act_max);
}

/* One row of outputs, any window (k_h*k_w <= EK_DW_MAX_TAPS): window rows at win + ky*rw. */
EK_DW_INLINE void dw_row_generic(const int8_t *win, int32_t rw, const int16_t *taps, int32_t k_h,
                                 int32_t k_w, int32_t stride, uint32_t base, int32_t out_w,
                                 int8_t *out, int32_t step, const dw_requant *q, int mode)
{
    for (int32_t ox = 0; ox < out_w; ++ox) {
        uint32_t acc = base;
        const int16_t *t = taps;
        const int8_t *x = win + ox * stride;
        for (int32_t ky = 0; ky < k_h; ++ky) {
            for (int32_t kx = 0; kx < k_w; ++kx) {
                acc += (uint32_t)(x[kx] * t[kx]);
            }
            t += k_w;
            x += rw;
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

/* A 3x3 channel's weights as int16 pairs: {w0,w2} of each row, the middle weights of rows 0
 * and 1 in one word (lo, hi) and row 2's alone. */
typedef struct {
    uint32_t w02_0, w02_1, w02_2, w1_01, w1_2;
} dw_w3x3;

static dw_w3x3 dw_pack_3x3(const int16_t *taps)
{
    dw_w3x3 w;
    w.w02_0 = dw_pack(taps[0], taps[2]);
    w.w02_1 = dw_pack(taps[3], taps[5]);
    w.w02_2 = dw_pack(taps[6], taps[8]);
    w.w1_01 = dw_pack(taps[1], taps[4]);
    w.w1_2 = dw_pack(taps[7], 0);
    return w;
}

/* One 3x3 pixel from the window at x (rows x, x + rw, x + 2*rw): per row a word x0..x3 of which
 * x3 is unused (it may be the byte after the window). */
EK_DW_INLINE int32_t dw_pixel_3x3(const int8_t *x, int32_t rw, const dw_w3x3 *w, uint32_t base)
{
    uint32_t v = ek_read_u32(x);
    int32_t a = ek_smlad(ek_sxtb16(v), w->w02_0, (int32_t)base);
    a = ek_smlabb(ek_sxtb16_ror8(v), w->w1_01, a);
    v = ek_read_u32(x + rw);
    a = ek_smlad(ek_sxtb16(v), w->w02_1, a);
    a = dw_smlabt(ek_sxtb16_ror8(v), w->w1_01, a);
    v = ek_read_u32(x + 2 * rw);
    a = ek_smlad(ek_sxtb16(v), w->w02_2, a);
    return ek_smlabb(ek_sxtb16_ror8(v), w->w1_2, a);
}

/* 3x3 window, stride 1: two pixels per step. Per kernel row, the bytes x0..x3 serve pixel ox
 * (x0 x1 x2) and ox+1 (x1 x2 x3): lanes {x0,x2} and {x1,x3} meet {w0,w2} and w1. Pairs read up
 * to byte out_w + 1 = rw - 1 of a row. */
EK_DW_INLINE void dw_row_3x3_s1(const int8_t *x, int32_t rw, const dw_w3x3 *wp, uint32_t base,
                                int32_t out_w, int8_t *out, int32_t step, const dw_requant *q,
                                int mode)
{
    const dw_w3x3 w = *wp;
    const int32_t rw2 = 2 * rw;
    const int8_t *end = x + (out_w & ~1);
    for (; x != end; x += 2) {
        int32_t a0 = (int32_t)base, a1 = (int32_t)base;
        uint32_t v = ek_read_u32(x);
        uint32_t x02 = ek_sxtb16(v), x13 = ek_sxtb16_ror8(v);
        a0 = ek_smlad(x02, w.w02_0, a0);
        a0 = ek_smlabb(x13, w.w1_01, a0);
        a1 = ek_smlad(x13, w.w02_0, a1);
        a1 = ek_smlatb(x02, w.w1_01, a1);
        v = ek_read_u32(x + rw);
        x02 = ek_sxtb16(v);
        x13 = ek_sxtb16_ror8(v);
        a0 = ek_smlad(x02, w.w02_1, a0);
        a0 = dw_smlabt(x13, w.w1_01, a0);
        a1 = ek_smlad(x13, w.w02_1, a1);
        a1 = ek_smlatt(x02, w.w1_01, a1);
        v = ek_read_u32(x + rw2);
        x02 = ek_sxtb16(v);
        x13 = ek_sxtb16_ror8(v);
        a0 = ek_smlad(x02, w.w02_2, a0);
        a0 = ek_smlabb(x13, w.w1_2, a0);
        a1 = ek_smlad(x13, w.w02_2, a1);
        a1 = ek_smlatb(x02, w.w1_2, a1);
        out[0] = dw_output(q, a0, mode);
        out[step] = dw_output(q, a1, mode);
        out += 2 * step;
    }
    if (out_w & 1) {
        *out = dw_output(q, dw_pixel_3x3(x, rw, &w, base), mode);
    }
}

/* 3x3 window, stride 2: two pixels per step from five bytes x0..x4 per kernel row: pixel ox
 * reads x0 x1 x2, pixel ox+1 reads x2 x3 x4. One word load gives {x0,x2} and {x1,x3}; x4 is a
 * byte load. Pairs read up to byte 2*out_w = rw - 1 of a row. */
EK_DW_INLINE void dw_row_3x3_s2(const int8_t *x, int32_t rw, const dw_w3x3 *wp, uint32_t base,
                                int32_t out_w, int8_t *out, int32_t step, const dw_requant *q,
                                int mode)
{
    const dw_w3x3 w = *wp;
    const int32_t rw2 = 2 * rw;
    const int8_t *end = x + 2 * (out_w & ~1);
    for (; x != end; x += 4) {
        int32_t a0 = (int32_t)base, a1 = (int32_t)base;
        uint32_t v = ek_read_u32(x);
        uint32_t x02 = ek_sxtb16(v), x13 = ek_sxtb16_ror8(v);
        a0 = ek_smlad(x02, w.w02_0, a0);
        a0 = ek_smlabb(x13, w.w1_01, a0);
        a1 = ek_smlatb(x02, w.w02_0, a1);
        a1 = ek_smlatb(x13, w.w1_01, a1);
        a1 = dw_smlabt((uint32_t)(int32_t)x[4], w.w02_0, a1);
        v = ek_read_u32(x + rw);
        x02 = ek_sxtb16(v);
        x13 = ek_sxtb16_ror8(v);
        a0 = ek_smlad(x02, w.w02_1, a0);
        a0 = dw_smlabt(x13, w.w1_01, a0);
        a1 = ek_smlatb(x02, w.w02_1, a1);
        a1 = ek_smlatt(x13, w.w1_01, a1);
        a1 = dw_smlabt((uint32_t)(int32_t)x[rw + 4], w.w02_1, a1);
        v = ek_read_u32(x + rw2);
        x02 = ek_sxtb16(v);
        x13 = ek_sxtb16_ror8(v);
        a0 = ek_smlad(x02, w.w02_2, a0);
        a0 = ek_smlabb(x13, w.w1_2, a0);
        a1 = ek_smlatb(x02, w.w02_2, a1);
        a1 = ek_smlatb(x13, w.w1_2, a1);
        a1 = dw_smlabt((uint32_t)(int32_t)x[rw2 + 4], w.w02_2, a1);
        out[0] = dw_output(q, a0, mode);
        out[step] = dw_output(q, a1, mode);
        out += 2 * step;
    }
    if (out_w & 1) {
        *out = dw_output(q, dw_pixel_3x3(x, rw, &w, base), mode);
    }
}
#endif

/* Which row loop a layer takes. */
enum { DW_ROW_GENERIC, DW_ROW_3X3_S1, DW_ROW_3X3_S2 };

/* The layer's constants the channel loop needs. */
typedef struct {
    int8_t *ring;
    int32_t rw, cols, pad_left, zero_point;
    int32_t in_h, in_w, channels, k_h, k_w, stride_h, stride_w, out_h, out_w, pad_top;
} dw_layer;

/* Input row iy of channel c (or, outside the input, zero points) into both copies of its slot.
 * (Skipping the last slot's unread second copy measured slower on the Cortex-M4: the extra
 * branch and registers cost more than the stores it saves.) */
static void dw_fill_row(const dw_layer *g, const int8_t *channel, int32_t iy, int32_t slot)
{
    int8_t *dst = g->ring + slot * g->rw;
    int8_t *dst2 = dst + g->k_h * g->rw;
    if (iy < 0 || iy >= g->in_h) {
        const int8_t zp = (int8_t)g->zero_point;
        for (int32_t i = 0; i < g->rw; ++i) {
            dst[i] = zp;
            dst2[i] = zp;
        }
        return;
    }
    const int32_t step = g->channels, n = g->cols;
    const int8_t *src = channel + iy * g->in_w * step;
    int32_t i = g->pad_left;
    const int32_t end = i + n;
    for (; i + 2 <= end; i += 2) {
        const int8_t a = src[0], b = src[step];
        dst[i] = a;
        dst[i + 1] = b;
        dst2[i] = a;
        dst2[i + 1] = b;
        src += 2 * step;
    }
    if (i < end) {
        dst[i] = *src;
        dst2[i] = *src;
    }
}

/* One channel: rows gathered as the windows reach them, one row loop per output row. */
EK_DW_INLINE void dw_channel(const dw_layer *g, int shape, int mode, int8_t *channel,
                             const int16_t *taps, uint32_t base, const dw_requant *q)
{
    const int32_t k_h = g->k_h, rw = g->rw, stride_h = g->stride_h, out_w = g->out_w;
    const int32_t step = g->channels, row_step = out_w * step;
    int32_t next = -g->pad_top; /* next input row to bring into the ring */
    int32_t slot;               /* next's slot: next mod k_h */
    int8_t *out = channel;
    (void)shape;
#if EK_USE_DSP
    dw_w3x3 w3 = {0, 0, 0, 0, 0};
    if (shape != DW_ROW_GENERIC) {
        w3 = dw_pack_3x3(taps);
    }
#endif
    slot = next % k_h; /* C's % truncates: a negative next (top padding) needs + k_h */
    if (slot < 0) {
        slot += k_h;
    }
    for (int32_t oy = 0; oy < g->out_h; ++oy) {
        const int32_t iy0 = oy * stride_h - g->pad_top;
        if (next < iy0) { /* rows between windows (stride > k_h) are never read */
            next = iy0;
            slot = next % k_h;
        }
        const int32_t first_slot = slot - (next - iy0) < 0 ? slot - (next - iy0) + k_h
                                                              : slot - (next - iy0);
        for (; next < iy0 + k_h; ++next) {
            dw_fill_row(g, channel, next, slot);
            if (++slot == k_h) {
                slot = 0;
            }
        }
        const int8_t *win = g->ring + first_slot * rw;
#if EK_USE_DSP
        if (shape == DW_ROW_3X3_S1) {
            dw_row_3x3_s1(win, rw, &w3, base, out_w, out, step, q, mode);
        } else if (shape == DW_ROW_3X3_S2) {
            dw_row_3x3_s2(win, rw, &w3, base, out_w, out, step, q, mode);
        } else
#endif
        {
            dw_row_generic(win, rw, taps, k_h, g->k_w, g->stride_w, base, out_w, out, step, q,
                           mode);
        }
        out += row_step;
    }
}

/* dw_channel with the row shape and the requantisation mode as compile-time constants. */
static void dw_channel_dispatch(const dw_layer *g, int shape, int mode, int8_t *channel,
                                const int16_t *taps, uint32_t base, const dw_requant *q)
{
#if EK_USE_DSP
#define EK_DW_MODES(SHAPE)                                                                      \
    if (mode == DW_FAST_FULL) {                                                                \
        dw_channel(g, SHAPE, DW_FAST_FULL, channel, taps, base, q);                           \
    } else if (mode == DW_FAST) {                                                              \
        dw_channel(g, SHAPE, DW_FAST, channel, taps, base, q);                                \
    } else {                                                                                   \
        dw_channel(g, SHAPE, DW_GENERIC, channel, taps, base, q);                             \
    }
    if (shape == DW_ROW_3X3_S1) {
        EK_DW_MODES(DW_ROW_3X3_S1)
        return;
    }
    if (shape == DW_ROW_3X3_S2) {
        EK_DW_MODES(DW_ROW_3X3_S2)
        return;
    }
    EK_DW_MODES(DW_ROW_GENERIC)
#undef EK_DW_MODES
#else
    (void)shape;
    if (mode == DW_GENERIC) {
        dw_channel(g, DW_ROW_GENERIC, DW_GENERIC, channel, taps, base, q);
    } else if (mode == DW_FAST) {
        dw_channel(g, DW_ROW_GENERIC, DW_FAST, channel, taps, base, q);
    } else {
        dw_channel(g, DW_ROW_GENERIC, DW_FAST_FULL, channel, taps, base, q);
    }
#endif
}

#if EK_USE_DSP
static int32_t ring_bytes(const ek_depthwise_conv2d_params *p, int32_t *rw);

/* ---- In-place ring kernel, four channels at a time ---------------------------------------------
 *
 * The ring kernel above over channel groups c..c+3 (in_c % 4 == 0, 3x3 window, stride_w 1 or 2,
 * filter offset 0): each ring element is one word holding the four channels' bytes of an input
 * pixel (one unaligned load from the NHWC data), so a tap costs one load, two SXTB16 and four
 * SMLAxy for four MACs instead of a byte gather per channel, and the requantisation constants
 * of a group are set up once per group. Same ring rows, slots, padding by zero points and write
 * order as the one-channel ring (ring_order_safe holds per channel, so for the group: its writes
 * are the four channels' slots of the same pixels). Ring: 3 * rw words, word aligned, one copy
 * of each row (the one-channel ring keeps two, so that a window's rows are contiguous; here a
 * window steps from row to row by its own two offsets, and the ring takes half the memory: it
 * fits the scratch plane of the 3x3 layers over 12-24 pixel wide planes, or the stack).
 * Where twice that fits (the plane, or the stack), the ring holds each pixel widened, the two
 * words SXTB16 and SXTB16 ROR #8 make of it (inplace_quad_wide): the SXTB16s are paid once
 * per input pixel instead of once per tap, and a tap is one LDRD of the window, one of the
 * weights and four SMLAxy. */

/* Words of the quad ring kept on the stack when the scratch plane is smaller: a build sizes
 * it to its largest user (ek_model_config.h; edgekit.firmware.op_emitters
 * .depthwise_quad_stack_words), at most this default. */
#ifndef EK_DW_QUAD_STACK_WORDS
#define EK_DW_QUAD_STACK_WORDS 160
#endif

static int32_t quad_ring_words(const ek_depthwise_conv2d_params *p)
{
    int32_t rw;
    (void)ring_bytes(p, &rw);
    return p->k_h * rw;
}

/* 0 when no in-place call of the model may take the four-channel ring (the generator's
 * mirror, edgekit.firmware.op_emitters.depthwise_maybe_quad, ek_model_config.h): its code, both
 * rings, is left out (flash; a 1-D or 5x5 depthwise model). */
#ifndef EK_DW_QUAD
#define EK_DW_QUAD 1
#endif
/* 1 when some in-place call of the model may give the pair ring a channel in the wide fast form
 * (edgekit.firmware.op_emitters.depthwise_pairs_wide, ek_model_config.h): its row loops in
 * assembly for that form are compiled in. */
#ifndef EK_DW_PAIRS_WIDE
#define EK_DW_PAIRS_WIDE 1
#endif
/* The pair ring's strides_w (bit 0: 1, bit 1: 2) of the in-place calls that may take it
 * (op_emitters.depthwise_pairs_strides): with one, the other's row loops in assembly are left
 * out (flash). */
#ifndef EK_DW_PAIRS_STRIDES
#define EK_DW_PAIRS_STRIDES 3
#endif
/* 1 when some in-place call may give the pair ring a channel whose requantisation is none of
 * the clamp-free full forms (op_emitters.depthwise_pairs_in_c): on DSP cores its rows in C
 * (dw_pairs_rows) are compiled in only then. */
#ifndef EK_DW_PAIRS_C
#define EK_DW_PAIRS_C 1
#endif
/* 1 when every in-place call of the model that may take the four-channel rings surely takes the
 * pair ring (op_emitters.depthwise_surely_pairs, ek_model_config.h): the byte and widened rings
 * it falls back to are left out (flash). */
#ifndef EK_DW_ONLY_PAIRS
#define EK_DW_ONLY_PAIRS 0
#endif

/* The layers the four-channel ring takes: channel groups of four, 3x3, stride_w 1 or 2. A group
 * whose channels all take the fast requantisation with the int8-range clamp (DW_FAST_FULL, as
 * every int8 MLPerf depthwise layer) stores inline; the others through dw_quad_store_each. */
static int dw_quad_applies(const ek_depthwise_conv2d_params *p)
{
    return EK_DW_QUAD && (p->in_c & 3) == 0 && p->depth_multiplier == 1 && p->filter_offset == 0
           && p->k_h == 3 && p->k_w == 3 && (p->stride_w == 1 || p->stride_w == 2);
}

/* Input row iy of the group at `group` (its first channel's byte) into slot: per pixel the
 * word of its four bytes, or (wide) the two words SXTB16 and SXTB16 ROR #8 make of it. */
EK_DW_INLINE void dw_quad_fill_row(const dw_layer *g, const int8_t *group, uint32_t *ring,
                                   int32_t iy, int32_t slot, int wide)
{
    uint32_t *dst = ring + (slot * g->rw << wide);
    if (iy < 0 || iy >= g->in_h) {
        const uint32_t zp4 = ((uint32_t)(uint8_t)g->zero_point) * 0x01010101u;
        const uint32_t fill = wide ? ek_sxtb16(zp4) : zp4;
        for (int32_t i = 0, end = g->rw << wide; i < end; ++i) {
            dst[i] = fill;
        }
        return;
    }
    const int32_t step = g->channels;
    const int8_t *src = group + iy * g->in_w * step;
    for (int32_t i = g->pad_left, end = g->pad_left + g->cols; i < end; ++i, src += step) {
        const uint32_t v = ek_read_u32(src);
        if (wide) {
            dst[2 * i] = ek_sxtb16(v);
            dst[2 * i + 1] = ek_sxtb16_ror8(v);
        } else {
            dst[i] = v;
        }
    }
}

/* The group's four accumulators at the window starting at win (row ky at row[ky]). */
#define EK_DW_QUAD_TAP(ky, kx)                                                                  \
    do {                                                                                        \
        const uint32_t v_ = row[ky][(kx) << wide];                                              \
        const uint32_t x02_ = wide ? v_ : ek_sxtb16(v_);                                        \
        const uint32_t x13_ = wide ? row[ky][2 * (kx) + 1] : ek_sxtb16_ror8(v_);                \
        const uint32_t w02_ = w[6 * (ky) + 2 * (kx)], w13_ = w[6 * (ky) + 2 * (kx) + 1];        \
        a0 = ek_smlabb(x02_, w02_, a0);                                                         \
        a2 = ek_smlatt(x02_, w02_, a2);                                                         \
        a1 = ek_smlabb(x13_, w13_, a1);                                                         \
        a3 = ek_smlatt(x13_, w13_, a3);                                                         \
    } while (0)

/* A group whose channels do not all take DW_FAST_FULL: each channel's own form (out of line:
 * this path is rare, its code small). */
EK_DW_NOINLINE void dw_quad_store_each(const dw_requant *q, const int *modes, int32_t a0,
                                       int32_t a1, int32_t a2, int32_t a3, int8_t *out)
{
    const int32_t acc[4] = {a0, a1, a2, a3};
    for (int32_t k = 0; k < 4; ++k) {
        const int mode = modes[k];
        out[k] = mode == DW_FAST_FULL ? dw_output(&q[k], acc[k], DW_FAST_FULL)
                 : mode == DW_FAST    ? dw_output(&q[k], acc[k], DW_FAST)
                                      : dw_output(&q[k], acc[k], DW_GENERIC);
    }
}

/* One output row of the group: pixels from the window at win, stored at out (stride `step`
 * bytes per pixel); modes == NULL (a constant after inlining): every channel requantised in
 * the fast form with the int8-range clamp, else each in its own (dw_quad_store_each). wide (a
 * constant): the ring holds each pixel widened, two words, so a tap needs no SXTB16. */
EK_DW_INLINE void dw_quad_row(const uint32_t *win, int32_t d1, int32_t d2, int32_t stride,
                              int32_t out_w, const uint32_t *w, const int32_t *base,
                              const dw_requant *q, const int *modes, int8_t *out, int32_t step,
                              int wide)
{
    for (int32_t ox = 0; ox < out_w; ++ox, win += stride << wide, out += step) {
#if defined(__ARM_FEATURE_DSP) && !defined(EDGEKIT_EMULATE_DSP)
        /* The nine taps as one block: per tap one LDR, two SXTB16, one LDRD of the tap's two
         * weight words and four SMLAxy (compiled from C, the window words and weights were
         * all loaded first and spilled); from the widened ring, the window's two words by one
         * LDRD and no SXTB16. The accumulators start from base by two LDRD in the block (from
         * C, four loads into one register and four moves out of it). */
        int32_t a0, a1, a2, a3;
        {
            const uint32_t *x = win;
            const int32_t step1 = 4 * d1, step2 = 4 * d2; /* bytes to the window's next row */
            uint32_t v, t, wl, wh;
            if (wide) {
#define EK_DW_QUAD_WIDE_TAP(xoff, woff)                                                         \
    "ldrd %[v], %[t], [%[x], #" #xoff "]\n\t"                                                     \
    "ldrd %[wl], %[wh], [%[w], #" #woff "]\n\t"                                                  \
    "smlabb %[a0], %[v], %[wl], %[a0]\n\t"                                                     \
    "smlatt %[a2], %[v], %[wl], %[a2]\n\t"                                                     \
    "smlabb %[a1], %[t], %[wh], %[a1]\n\t"                                                     \
    "smlatt %[a3], %[t], %[wh], %[a3]\n\t"
                __asm__("ldrd %[a0], %[a1], [%[base]]\n\t"
                        "ldrd %[a2], %[a3], [%[base], #8]\n\t"
                        EK_DW_QUAD_WIDE_TAP(0, 0) EK_DW_QUAD_WIDE_TAP(8, 8)
                        EK_DW_QUAD_WIDE_TAP(16, 16)
                        "add %[x], %[x], %[d1]\n\t"
                        EK_DW_QUAD_WIDE_TAP(0, 24) EK_DW_QUAD_WIDE_TAP(8, 32)
                        EK_DW_QUAD_WIDE_TAP(16, 40)
                        "add %[x], %[x], %[d2]\n\t"
                        EK_DW_QUAD_WIDE_TAP(0, 48) EK_DW_QUAD_WIDE_TAP(8, 56)
                        EK_DW_QUAD_WIDE_TAP(16, 64)
                        : [x] "+r"(x), [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2),
                          [a3] "=&r"(a3), [v] "=&r"(v), [t] "=&r"(t), [wl] "=&r"(wl),
                          [wh] "=&r"(wh)
                        : [w] "r"(w), [d1] "r"(step1), [d2] "r"(step2), [base] "r"(base)
                        : "memory");
#undef EK_DW_QUAD_WIDE_TAP
            } else {
#define EK_DW_QUAD_ASM_TAP(xoff, woff)                                                          \
    "ldr %[v], [%[x], #" #xoff "]\n\t"                                                           \
    "sxtb16 %[t], %[v], ror #8\n\t"                                                           \
    "sxtb16 %[v], %[v]\n\t"                                                                   \
    "ldrd %[wl], %[wh], [%[w], #" #woff "]\n\t"                                                  \
    "smlabb %[a0], %[v], %[wl], %[a0]\n\t"                                                     \
    "smlatt %[a2], %[v], %[wl], %[a2]\n\t"                                                     \
    "smlabb %[a1], %[t], %[wh], %[a1]\n\t"                                                     \
    "smlatt %[a3], %[t], %[wh], %[a3]\n\t"
                __asm__("ldrd %[a0], %[a1], [%[base]]\n\t"
                        "ldrd %[a2], %[a3], [%[base], #8]\n\t"
                        EK_DW_QUAD_ASM_TAP(0, 0) EK_DW_QUAD_ASM_TAP(4, 8) EK_DW_QUAD_ASM_TAP(8, 16)
                        "add %[x], %[x], %[d1]\n\t"
                        EK_DW_QUAD_ASM_TAP(0, 24) EK_DW_QUAD_ASM_TAP(4, 32) EK_DW_QUAD_ASM_TAP(8, 40)
                        "add %[x], %[x], %[d2]\n\t"
                        EK_DW_QUAD_ASM_TAP(0, 48) EK_DW_QUAD_ASM_TAP(4, 56) EK_DW_QUAD_ASM_TAP(8, 64)
                        : [x] "+r"(x), [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2),
                          [a3] "=&r"(a3), [v] "=&r"(v), [t] "=&r"(t), [wl] "=&r"(wl),
                          [wh] "=&r"(wh)
                        : [w] "r"(w), [d1] "r"(step1), [d2] "r"(step2), [base] "r"(base)
                        : "memory");
            }
#undef EK_DW_QUAD_ASM_TAP
        }
#else
        int32_t a0 = base[0], a1 = base[1], a2 = base[2], a3 = base[3];
        const uint32_t *const row[3] = {win, win + d1, win + d1 + d2};
        EK_DW_QUAD_TAP(0, 0);
        EK_DW_QUAD_TAP(0, 1);
        EK_DW_QUAD_TAP(0, 2);
        EK_DW_QUAD_TAP(1, 0);
        EK_DW_QUAD_TAP(1, 1);
        EK_DW_QUAD_TAP(1, 2);
        EK_DW_QUAD_TAP(2, 0);
        EK_DW_QUAD_TAP(2, 1);
        EK_DW_QUAD_TAP(2, 2);
#endif
        if (modes != 0) {
            dw_quad_store_each(q, modes, a0, a1, a2, a3, out);
            continue;
        }
#if defined(__ARM_FEATURE_DSP) && !defined(EDGEKIT_EMULATE_DSP)
        { /* dw_output's DW_FAST_FULL form, kept in int32 (no SXTB), and four STRB (merged,
           * GCC clears a word, inserts the four bytes and stores it) */
            const int32_t y0 = ek_ssat8(ek_requant_fast(a0, q[0].multiplier, q[0].k_hi,
                                                          q[0].shift));
            const int32_t y1 = ek_ssat8(ek_requant_fast(a1, q[1].multiplier, q[1].k_hi,
                                                          q[1].shift));
            const int32_t y2 = ek_ssat8(ek_requant_fast(a2, q[2].multiplier, q[2].k_hi,
                                                          q[2].shift));
            const int32_t y3 = ek_ssat8(ek_requant_fast(a3, q[3].multiplier, q[3].k_hi,
                                                          q[3].shift));
            __asm__("strb %[y0], [%[out]]\n\t"
                    "strb %[y1], [%[out], #1]\n\t"
                    "strb %[y2], [%[out], #2]\n\t"
                    "strb %[y3], [%[out], #3]\n\t"
                    :
                    : [out] "r"(out), [y0] "r"(y0), [y1] "r"(y1), [y2] "r"(y2), [y3] "r"(y3)
                    : "memory");
        }
#else
        out[0] = dw_output(&q[0], a0, DW_FAST_FULL);
        out[1] = dw_output(&q[1], a1, DW_FAST_FULL);
        out[2] = dw_output(&q[2], a2, DW_FAST_FULL);
        out[3] = dw_output(&q[3], a3, DW_FAST_FULL);
#endif
    }
}
#undef EK_DW_QUAD_TAP

/* One channel group, every output row; the ring rows gathered as the windows reach them. */
EK_DW_INLINE void dw_quad_group(const dw_layer *g, uint32_t *ring, int8_t *group,
                                const uint32_t *w, const int32_t *base, const dw_requant *q,
                                const int *modes, int wide)
{
    const int32_t slot_words = g->rw << wide;
    const int32_t channels = g->channels;
    int32_t next = -g->pad_top, slot = next % 3;
    if (slot < 0) {
        slot += 3;
    }
    for (int32_t oy = 0; oy < g->out_h; ++oy) {
        const int32_t iy0 = oy * g->stride_h - g->pad_top;
        if (next < iy0) {
            next = iy0;
            slot = next % 3;
        }
        const int32_t first_slot = slot - (next - iy0) < 0 ? slot - (next - iy0) + 3
                                                              : slot - (next - iy0);
        for (; next < iy0 + 3; ++next) {
            dw_quad_fill_row(g, group, ring, next, slot, wide);
            if (++slot == 3) {
                slot = 0;
            }
        }
        { /* the window's rows sit in slots first_slot, +1, +2 (mod 3) */
            const int32_t s1 = first_slot == 2 ? 0 : first_slot + 1, s2 = s1 == 2 ? 0 : s1 + 1;
            dw_quad_row(ring + first_slot * slot_words, (s1 - first_slot) * slot_words,
                        (s2 - s1) * slot_words, g->stride_w, g->out_w, w, base, q, modes,
                        group + oy * g->out_w * channels, channels, wide);
        }
    }
}

EK_DW_INLINE void inplace_quad_run(const ek_depthwise_conv2d_params *p, int8_t *data,
                                   const int8_t *filter, const int32_t *bias, uint32_t *ring,
                                   int wide)
{
    dw_layer g;
    const int32_t channels = p->in_c, words = quad_ring_words(p) << wide;
    (void)ring_bytes(p, &g.rw);
    g.ring = 0;
    g.pad_left = p->pad_left;
    g.zero_point = -p->input_offset;
    g.in_h = p->in_h;
    g.in_w = p->in_w;
    g.channels = channels;
    g.k_h = 3;
    g.k_w = 3;
    g.stride_h = p->stride_h;
    g.stride_w = p->stride_w;
    g.out_h = p->out_h;
    g.out_w = p->out_w;
    g.pad_top = p->pad_top;
    g.cols = g.rw - g.pad_left < g.in_w ? g.rw - g.pad_left : g.in_w;
    {
        const uint32_t zp4 = ((uint32_t)(uint8_t)g.zero_point) * 0x01010101u;
        const uint32_t fill = wide ? ek_sxtb16(zp4) : zp4;
        for (int32_t i = 0; i < words; ++i) { /* padding columns: never written by a fill */
            ring[i] = fill;
        }
    }
    for (int32_t c = 0; c < channels; c += 4) {
        uint32_t w[18]; /* per tap {w_c, w_c+2}, {w_c+1, w_c+3} as int16 lanes */
        int32_t base[4];
        dw_requant q[4];
        int modes[4], all_full = 1;
        for (int32_t t = 0; t < 9; ++t) {
            const uint32_t wv = EK_FILTER_WORD4(filter, t * channels + c);
            w[2 * t] = ek_sxtb16(wv);
            w[2 * t + 1] = ek_sxtb16_ror8(wv);
        }
        for (int32_t k = 0; k < 4; ++k) {
            int32_t tap_sum = 0;
            for (int32_t t = 0; t < 9; ++t) {
                const uint32_t lanes = w[2 * t + (k & 1)];
                tap_sum += (k & 2) ? (int32_t)(int16_t)(lanes >> 16)
                                   : (int32_t)(int16_t)(lanes & 0xFFFFu);
            }
            base[k] = (int32_t)((uint32_t)bias_of(bias, c + k)
                                + (uint32_t)p->input_offset * (uint32_t)tap_sum);
            modes[k] = dw_requant_setup(p, c + k, &q[k]);
            all_full &= modes[k] == DW_FAST_FULL;
        }
        if (all_full) {
            dw_quad_group(&g, ring, data + c, w, base, q, 0, wide);
        } else {
            dw_quad_group(&g, ring, data + c, w, base, q, modes, wide);
        }
    }
}

/* The ring of bytes: k_h * rw words. */
EK_DW_NOINLINE EK_DW_MAYBE_UNUSED void inplace_quad(const ek_depthwise_conv2d_params *p, int8_t *data,
                                 const int8_t *filter, const int32_t *bias, uint32_t *ring)
{
    inplace_quad_run(p, data, filter, bias, ring, 0);
}

/* The widened ring: 2 * k_h * rw words, two fewer instructions per tap (measured on vww's
 * 3x3 layers: 137 -> 119 instructions per pixel of a group of four channels). */
EK_DW_NOINLINE EK_DW_MAYBE_UNUSED void inplace_quad_wide(const ek_depthwise_conv2d_params *p, int8_t *data,
                                      const int8_t *filter, const int32_t *bias, uint32_t *ring)
{
    inplace_quad_run(p, data, filter, bias, ring, 1);
}

/* ---- The pair ring: the four-channel ring with two taps a multiply ---------------------------
 *
 * The quad rings pair channels in a word, and a depthwise sum never adds two channels: one
 * SMLAxy a MAC. Here a word pairs two horizontally adjacent pixels of one channel, ring
 * columns 2j (low half) and 2j + 1 (high), widened, so one SMLAD adds two taps of a kernel row.
 * A block is four output pixels of one channel; per kernel row it reads the words P0, P1, ...
 * from its window's first column and the row's weights A = {w0, w1}, B = {w2, w1}:
 *   stride 1 (P0 = {x0, x1}, P1 = {x2, x3}, P2 = {x4, x5}):
 *     out0 = SMLAD(P0, A) + SMLABB(P1, B)     out1 = SMLATB(P0, A) + SMLADX(P1, B)
 *     out2 = SMLAD(P1, A) + SMLABB(P2, B)     out3 = SMLATB(P1, A) + SMLADX(P2, B)
 *   stride 2 (out i starts at P_i): out_i = SMLAD(P_i, A) + SMLABB(P_{i+1}, B), P0..P4;
 * eight instructions for twelve MACs, each weight word loaded once for the four pixels.
 *
 * Ring: per slot (3) and channel of the group (4) a sub-row of m words, the ring row's columns;
 * a last partial block computes pixels past out_w from whatever follows its sub-row and stores
 * none of them. Same slots, fill order and write order as the quad rings (so ring_order_safe
 * covers it); at stride 1 with out_w % 4 == 0 it takes exactly the widened ring's words. */

/* One channel of the group, as the block loop reads it (the assembly by these offsets). */
typedef struct {
    uint32_t w[6];      /* per kernel row: A = {w0, w1}, B = {w2, w1} as int16 lanes */
    int32_t base;       /* 24: bias + input_offset * the taps' sum */
    int32_t multiplier; /* 28 */
    int32_t k_hi;       /* 32: dw_requant's, fast form */
    int32_t shift;      /* 36: dw_requant's (r - 1 in the fast forms) */
    int32_t offset;     /* 40: the output offset (added after the wide form's shift) */
    int32_t mode;       /* 44: DW_GENERIC, DW_FAST, DW_FAST_FULL or DW_WIDE_FULL */
} dw_pairs_channel;

/* What a group's row loop needs of the output row (the assembly's fourth argument). */
typedef struct {
    int32_t d1, d12; /* bytes from the window's row 0 to its rows 1 and 2 */
    int32_t step;    /* bytes from an output pixel to the next (in_c) */
    int32_t last;    /* the last block's first output, from the row's first (bytes) */
    int32_t tail;    /* outputs of the last block, 1-4 */
    int32_t m;       /* bytes from a channel's sub-row to the next's */
    int32_t span;    /* bytes of the channels to run (the assembly: 44 a channel) */
} dw_pairs_row_ctl;

/* A sub-row's words: the ring row's columns, rw = (out_w - 1) * stride_w + 3. */
static int32_t pairs_sub_row_words(const ek_depthwise_conv2d_params *p)
{
    return ((p->out_w - 1) * p->stride_w + 4) / 2;
}

/* Words of the pair ring: 3 slots of 4 sub-rows, and the slack the last sub-row's partial block
 * reads past it (a block reads 2 * stride_w words and one more; elsewhere it reads into the
 * next sub-row). */
static int32_t pairs_ring_words(const ek_depthwise_conv2d_params *p)
{
    const int32_t m = pairs_sub_row_words(p);
    const int32_t slack = 2 * p->stride_w * ((p->out_w + 3) / 4) + 1 - m;
    return 12 * m + (slack > 0 ? slack : 0);
}

/* The four channels' pair words of ring columns 2j, 2j + 1 from their pixels' words a, b. */
EK_DW_INLINE void dw_pairs_put(uint32_t *d, int32_t m, uint32_t a, uint32_t b)
{
    const uint32_t a02 = ek_sxtb16(a), a13 = ek_sxtb16_ror8(a);
    const uint32_t b02 = ek_sxtb16(b), b13 = ek_sxtb16_ror8(b);
    d[0] = ek_pack_lo16(a02, b02);
    d[m] = ek_pack_lo16(a13, b13);
    d[2 * m] = ek_pack_hi16(a02, b02);
    d[3 * m] = ek_pack_hi16(a13, b13);
}

/* Input row iy of the group at `group` into slot: zero points outside the input; within it, the
 * words holding an input pixel (the words of padding columns only keep the zero points
 * inplace_quad_pairs put there, which no row changes). */
EK_DW_NOINLINE void dw_pairs_fill_row(const dw_layer *g, const int8_t *group, uint32_t *ring,
                                      int32_t m, int32_t iy, int32_t slot)
{
    uint32_t *d = ring + 4 * m * slot;
    const uint32_t zp4 = ((uint32_t)(uint8_t)g->zero_point) * 0x01010101u;
    if (iy < 0 || iy >= g->in_h) {
        const uint32_t fill = ek_sxtb16(zp4);
        for (uint32_t *const end = d + 4 * m; d < end; d += 4) { /* 4 * m words */
            d[0] = fill;
            d[1] = fill;
            d[2] = fill;
            d[3] = fill;
        }
        return;
    }
    const int32_t step = g->channels;
    const int8_t *s = group + iy * g->in_w * step;
    int32_t pixels = g->cols;
    d += g->pad_left / 2;
    if ((g->pad_left & 1) && pixels > 0) { /* a padding column, then the row's first pixel */
        dw_pairs_put(d++, m, zp4, ek_read_u32(s));
        s += step;
        --pixels;
    }
#if defined(__ARM_FEATURE_DSP) && !defined(EDGEKIT_EMULATE_DSP) && defined(__GNUC__)
    if (pixels >= 2) { /* dw_pairs_put over the pixel pairs (from C, 20 instructions to set up) */
        const int32_t pairs = pixels / 2, m4 = 4 * m;
        uint32_t *d3 = d + 3 * m, *const end = d + pairs;
        uint32_t a, b, a13, b13, t0, t1;
        __asm__ volatile("1:\n\t"
                         "ldr %[a], [%[s]]\n\t"
                         "ldr %[b], [%[s], %[step]]\n\t"
                         "add %[s], %[s], %[step], lsl #1\n\t"
                         "sxtb16 %[a13], %[a], ror #8\n\t"
                         "sxtb16 %[a], %[a]\n\t"
                         "sxtb16 %[b13], %[b], ror #8\n\t"
                         "sxtb16 %[b], %[b]\n\t"
                         "pkhbt %[t0], %[a], %[b], lsl #16\n\t"
                         "pkhtb %[b], %[b], %[a], asr #16\n\t"
                         "pkhbt %[t1], %[a13], %[b13], lsl #16\n\t"
                         "pkhtb %[b13], %[b13], %[a13], asr #16\n\t"
                         "str %[t1], [%[d], %[m4]]\n\t"
                         "str %[b], [%[d], %[m4], lsl #1]\n\t"
                         "str %[t0], [%[d]], #4\n\t"
                         "str %[b13], [%[d3]], #4\n\t"
                         "cmp %[d], %[end]\n\t"
                         "bne 1b\n\t"
                         : [s] "+r"(s), [d] "+r"(d), [d3] "+r"(d3), [a] "=&r"(a), [b] "=&r"(b),
                           [a13] "=&r"(a13), [b13] "=&r"(b13), [t0] "=&r"(t0), [t1] "=&r"(t1)
                         : [step] "r"(step), [m4] "r"(m4), [end] "r"(end)
                         : "memory", "cc");
        pixels -= 2 * pairs;
    }
#else
    for (; pixels >= 2; pixels -= 2, s += 2 * step) {
        dw_pairs_put(d++, m, ek_read_u32(s), ek_read_u32(s + step));
    }
#endif
    if (pixels == 1) {
        dw_pairs_put(d, m, ek_read_u32(s), zp4);
    }
}

#if defined(__ARM_FEATURE_DSP) && !defined(EDGEKIT_EMULATE_DSP) && defined(__GNUC__)
#define EK_DW_PAIRS_ASM 1
_Static_assert(sizeof(dw_pairs_channel) == 48 && offsetof(dw_pairs_channel, base) == 24
                   && offsetof(dw_pairs_channel, multiplier) == 28
                   && offsetof(dw_pairs_channel, shift) == 36
                   && offsetof(dw_pairs_channel, offset) == 40
                   && offsetof(dw_pairs_row_ctl, span) == 24,
               "dw_pairs_rows_*_asm read their arguments by these offsets");

/* One kernel row of a block: the row's words from `ptr` (after `pre`), its weights A in r12 and
 * B in lr, the accumulators r5-r8 (stride 1: P0-P2 in r9-r11; stride 2: P0-P2, then P3 and P4
 * in r9 and r10). */
#define EK_DW_PAIRS_ROW_S1(pre, ptr, woff)                                                      \
    pre "ldm " ptr ", {r9, r10, r11}\n\t"                                                       \
    "ldrd r12, lr, [r2, #" woff "]\n\t"                                                         \
    "smlad r5, r9, r12, r5\n\t"                                                                 \
    "smlabb r5, r10, lr, r5\n\t"                                                                \
    "smlatb r6, r9, r12, r6\n\t"                                                                \
    "smladx r6, r10, lr, r6\n\t"                                                                \
    "smlad r7, r10, r12, r7\n\t"                                                                \
    "smlabb r7, r11, lr, r7\n\t"                                                                \
    "smlatb r8, r10, r12, r8\n\t"                                                               \
    "smladx r8, r11, lr, r8\n\t"
/* Row 0 of a block, the accumulators starting from the base in r5 (out0's last, as it
 * overwrites r5). */
#define EK_DW_PAIRS_ROW0_S1                                                                     \
    "ldm r0, {r9, r10, r11}\n\t"                                                                \
    "ldrd r12, lr, [r2]\n\t"                                                                    \
    "smlatb r6, r9, r12, r5\n\t"                                                               \
    "smladx r6, r10, lr, r6\n\t"                                                               \
    "smlad r7, r10, r12, r5\n\t"                                                               \
    "smlabb r7, r11, lr, r7\n\t"                                                               \
    "smlatb r8, r10, r12, r5\n\t"                                                              \
    "smladx r8, r11, lr, r8\n\t"                                                               \
    "smlad r5, r9, r12, r5\n\t"                                                                \
    "smlabb r5, r10, lr, r5\n\t"
#define EK_DW_PAIRS_ROW0_S2                                                                     \
    "ldm r0, {r9, r10, r11}\n\t"                                                                \
    "ldrd r12, lr, [r2]\n\t"                                                                    \
    "smlad r6, r10, r12, r5\n\t"                                                               \
    "smlabb r6, r11, lr, r6\n\t"                                                               \
    "smlad r7, r11, r12, r5\n\t"                                                               \
    "ldr r11, [r0, #12]\n\t"                                                                   \
    "smlabb r7, r11, lr, r7\n\t"                                                               \
    "smlad r8, r11, r12, r5\n\t"                                                               \
    "smlad r5, r9, r12, r5\n\t"                                                                \
    "smlabb r5, r10, lr, r5\n\t"                                                               \
    "ldr r9, [r0, #16]\n\t"                                                                    \
    "smlabb r8, r9, lr, r8\n\t"
#define EK_DW_PAIRS_ROW_S2(pre, ptr, woff)                                                      \
    pre "ldm " ptr ", {r9, r10, r11}\n\t"                                                       \
    "ldrd r12, lr, [r2, #" woff "]\n\t"                                                         \
    "smlad r5, r9, r12, r5\n\t"                                                                 \
    "smlabb r5, r10, lr, r5\n\t"                                                                \
    "smlad r6, r10, r12, r6\n\t"                                                                \
    "smlabb r6, r11, lr, r6\n\t"                                                                \
    "smlad r7, r11, r12, r7\n\t" pre                                                            \
    "ldrd r9, r10, [" ptr ", #12]\n\t"                                                          \
    "smlabb r7, r9, lr, r7\n\t"                                                                 \
    "smlad r8, r9, r12, r8\n\t"                                                                 \
    "smlabb r8, r10, lr, r8\n\t"

/* Accumulator acc requantised (ek_requant_fast: multiplier r12, k_hi lr, right shift - 1 r11)
 * and saturated into r10 (r9 scratch). */
#if EK_REQUANT_SHORTEST == 1 /* ek_requant_fast's start in r9 (low), r10 (high) */
#define EK_DW_PAIRS_REQUANT_START(acc)                                                          \
    "add r10, lr, " acc ", asr #31\n\t"                                                         \
    "lsl r9, r10, #31\n\t"                                                                      \
    "orr r9, r9, #0x40000000\n\t"                                                               \
    "asr r10, r10, #1\n\t"
#else
#define EK_DW_PAIRS_REQUANT_START(acc)                                                          \
    "and r9, " acc ", #0x80000000\n\t"                                                          \
    "orr r9, r9, #0x40000000\n\t"                                                               \
    "add r10, lr, " acc ", asr #31\n\t"
#endif
#define EK_DW_PAIRS_REQUANT(acc)                                                                \
    EK_DW_PAIRS_REQUANT_START(acc)                                                              \
    "smlal r9, r10, " acc ", r12\n\t"                                                           \
    "asr r10, r10, r11\n\t"                                                                     \
    "ssat r10, #8, r10\n\t"
/* The same in the wide form: the output offset added after the shift. */
#define EK_DW_PAIRS_REQUANT_WIDE(acc)                                                           \
    EK_DW_PAIRS_REQUANT_START(acc)                                                              \
    "smlal r9, r10, " acc ", r12\n\t"                                                           \
    "ldr r9, [r2, #40]\n\t"                                                                     \
    "asr r10, r10, r11\n\t"                                                                     \
    "add r10, r10, r9\n\t"                                                                      \
    "ssat r10, #8, r10\n\t"

/* Channels of a group's output row in DW_FAST_FULL: per channel its blocks as dw_pairs_rows
 * computes them (ROW0, ROW: the stride's kernel rows, `advance`: a block's bytes of ring row).
 * r0: the first block's row-0 words of the first channel, r1: its first output, r2: the
 * channels, r3: the row. Frame: 0 step, 4 the channel's last block's first output, 8 that
 * block's outputs, 12 m, 16 `last` of the row, 20 the channel's first words, 24 its first
 * output, 28 the channels' end. A whole block at stride 1: 70 instructions for 36 MACs. */
#define EK_DW_PAIRS_ROWS(ROW0, ROW, advance, REQ)                                                  \
    "push {r4-r11, lr}\n\t"                                                                     \
    "ldm r3, {r3-r9}\n\t" /* d1, d12, step, last, tail, m, span */                            \
    "sub sp, sp, #32\n\t"                                                                       \
    "str r5, [sp]\n\t"                                                                          \
    "strd r7, r8, [sp, #8]\n\t"                                                                 \
    "str r6, [sp, #16]\n\t"                                                                     \
    "add r9, r2, r9\n\t"                                                                        \
    "str r9, [sp, #28]\n"                                                                       \
    "0:\n\t" /* a channel */                                                                    \
    "ldr r6, [sp, #16]\n\t"                                                                     \
    "add r6, r1, r6\n\t"                                                                        \
    "str r6, [sp, #4]\n\t"                                                                      \
    "strd r0, r1, [sp, #20]\n"                                                                  \
    "1:\n\t" /* a block */                                                                      \
    "ldr r5, [r2, #24]\n\t" ROW0 ROW("add r9, r0, r3\n\t", "r9", "8")                           \
    ROW("add r9, r0, r4\n\t", "r9", "16")                                                       \
    "add r0, r0, #" advance "\n\t"                                                              \
    "ldrd r12, lr, [r2, #28]\n\t"                                                               \
    "ldr r11, [r2, #36]\n\t" REQ("r5")                                          \
    "strb r10, [r1]\n\t"                                                                        \
    "ldrd r5, r9, [sp]\n\t"                                                                     \
    "cmp r1, r9\n\t"                                                                            \
    "beq 2f\n\t" REQ("r6")                                                      \
    "strb r10, [r1, r5]\n\t" REQ("r7")                                          \
    "strb r10, [r1, r5, lsl #1]\n\t"                                                            \
    "add r1, r1, r5, lsl #1\n\t" REQ("r8")                                      \
    "strb r10, [r1, r5]\n\t"                                                                    \
    "add r1, r1, r5, lsl #1\n\t"                                                                \
    "b 1b\n"                                                                                    \
    "2:\n\t" /* the last block: its first `tail` outputs */                                     \
    "ldr r0, [sp, #8]\n\t"                                                                      \
    "cmp r0, #2\n\t"                                                                            \
    "blt 3f\n\t" REQ("r6")                                                      \
    "strb r10, [r1, r5]\n\t"                                                                    \
    "cmp r0, #3\n\t"                                                                            \
    "blt 3f\n\t" REQ("r7")                                                      \
    "strb r10, [r1, r5, lsl #1]\n\t"                                                            \
    "cmp r0, #4\n\t"                                                                            \
    "blt 3f\n\t"                                                                                \
    "add r1, r1, r5, lsl #1\n\t" REQ("r8")                                      \
    "strb r10, [r1, r5]\n"                                                                      \
    "3:\n\t" /* the next channel */                                                             \
    "ldrd r0, r1, [sp, #20]\n\t"                                                                \
    "ldr r9, [sp, #12]\n\t"                                                                     \
    "add r0, r0, r9\n\t"                                                                        \
    "add r1, r1, #1\n\t"                                                                        \
    "add r2, r2, #48\n\t"                                                                       \
    "ldr r9, [sp, #28]\n\t"                                                                     \
    "cmp r2, r9\n\t"                                                                            \
    "bne 0b\n\t"                                                                                \
    "add sp, sp, #32\n\t"                                                                       \
    "pop {r4-r11, pc}\n\t"

#define EK_DW_PAIRS_ASM_FN(name, stride, advance, REQ)                                          \
    static __attribute__((naked, noinline, unused)) void name(                                  \
        const uint32_t *x, int8_t *out, const dw_pairs_channel *f, const dw_pairs_row_ctl *row) \
    {                                                                                           \
        __asm__ volatile(EK_DW_PAIRS_ROWS(EK_DW_PAIRS_ROW0_##stride, EK_DW_PAIRS_ROW_##stride,  \
                                          advance, REQ));                                       \
    }
EK_DW_PAIRS_ASM_FN(dw_pairs_rows_s1_asm, S1, "8", EK_DW_PAIRS_REQUANT)
EK_DW_PAIRS_ASM_FN(dw_pairs_rows_s2_asm, S2, "16", EK_DW_PAIRS_REQUANT)
#if EK_DW_PAIRS_WIDE
EK_DW_PAIRS_ASM_FN(dw_pairs_rows_s1_wide_asm, S1, "8", EK_DW_PAIRS_REQUANT_WIDE)
EK_DW_PAIRS_ASM_FN(dw_pairs_rows_s2_wide_asm, S2, "16", EK_DW_PAIRS_REQUANT_WIDE)
#endif
#undef EK_DW_PAIRS_ASM_FN
#undef EK_DW_PAIRS_ROW0_S1
#undef EK_DW_PAIRS_ROW0_S2
#undef EK_DW_PAIRS_ROW_S1
#undef EK_DW_PAIRS_ROW_S2
#undef EK_DW_PAIRS_REQUANT
#undef EK_DW_PAIRS_REQUANT_WIDE
#undef EK_DW_PAIRS_ROWS
#else
#define EK_DW_PAIRS_ASM 0
#endif

/* Channels of a group's output row (the first one's first window at x, its first output at
 * out; `count` of them): per channel and block of four output pixels the sums above, then
 * each pixel's requantisation in dw_output's forms (where the assembly does not apply: a
 * channel not in DW_FAST_FULL, or the host's emulation; out of line, so that its frame is not
 * on the assembly's path). */
/* One channel's row of dw_pairs_rows, `stride` a constant after inlining. */
EK_DW_INLINE void dw_pairs_channel_row(const ek_depthwise_conv2d_params *p, const uint32_t *x,
                                       const dw_pairs_channel *f, const dw_pairs_row_ctl *row,
                                       int8_t *out, int32_t stride, int mode)
{
    const dw_requant q = {f->k_hi, f->multiplier, f->shift, p->output_offset, p->act_min,
                          p->act_max};
    const uint32_t *const r1 = x + row->d1 / 4, *const r2 = x + row->d12 / 4;
    const int32_t step = row->step, out_w = p->out_w;
    for (int32_t ox = 0, j = 0; ox < out_w; ox += 4, j += 2 * stride) {
        int32_t a[4] = {f->base, f->base, f->base, f->base};
        for (int32_t r = 0; r < 3; ++r) {
            const uint32_t *const w = (r == 0 ? x : r == 1 ? r1 : r2) + j;
            const uint32_t ka = f->w[2 * r], kb = f->w[2 * r + 1];
            if (stride == 1) {
                a[0] = ek_smlabb(w[1], kb, ek_smlad(w[0], ka, a[0]));
                a[1] = ek_smladx(w[1], kb, ek_smlatb(w[0], ka, a[1]));
                a[2] = ek_smlabb(w[2], kb, ek_smlad(w[1], ka, a[2]));
                a[3] = ek_smladx(w[2], kb, ek_smlatb(w[1], ka, a[3]));
            } else {
                for (int32_t i = 0; i < 4; ++i) {
                    a[i] = ek_smlabb(w[i + 1], kb, ek_smlad(w[i], ka, a[i]));
                }
            }
        }
        for (int32_t i = 0; i < 4 && ox + i < out_w; ++i) {
            out[(ox + i) * step] = dw_output(&q, a[i], mode);
        }
    }
}

EK_DW_NOINLINE EK_DW_MAYBE_UNUSED void dw_pairs_rows(const ek_depthwise_conv2d_params *p,
                                                     const uint32_t *x, const dw_pairs_channel *f,
                                                     const dw_pairs_row_ctl *row, int8_t *out,
                                                     int32_t count)
{
    for (int32_t k = 0; k < count; ++k, ++f, ++out, x += row->m / 4) {
        if (p->stride_w == 1) { /* the mode at run time: this path is rare, its code small */
            dw_pairs_channel_row(p, x, f, row, out, 1, f->mode);
        } else {
            dw_pairs_channel_row(p, x, f, row, out, 2, f->mode);
        }
    }
}

/* The group's channel c: its weights as pairs, base and requantisation. */
static void dw_pairs_setup(const ek_depthwise_conv2d_params *p, const int8_t *filter,
                           const int32_t *bias, int32_t c, dw_pairs_channel *f)
{
    uint32_t tap_sum = 0;
    dw_requant q;
    for (int32_t r = 0; r < 3; ++r) {
        const int32_t w0 = EK_FILTER(filter, (3 * r) * p->in_c + c);
        const int32_t w1 = EK_FILTER(filter, (3 * r + 1) * p->in_c + c);
        const int32_t w2 = EK_FILTER(filter, (3 * r + 2) * p->in_c + c);
        f->w[2 * r] = dw_pack(w0, w1);
        f->w[2 * r + 1] = dw_pack(w2, w1);
        tap_sum += (uint32_t)(w0 + w1 + w2);
    }
    f->base = (int32_t)((uint32_t)bias_of(bias, c) + (uint32_t)p->input_offset * tap_sum);
    f->mode = dw_requant_setup(p, c, &q);
    f->multiplier = q.multiplier;
    f->k_hi = q.k_hi;
    f->shift = q.shift;
    f->offset = p->output_offset;
    if (f->mode == DW_GENERIC && p->act_min == -128 && p->act_max == 127
        && ek_requant_wide_applies(q.multiplier, q.shift)) {
        f->mode = DW_WIDE_FULL;
        f->k_hi = ek_requant_wide_k(q.shift);
        f->shift = -q.shift - 1;
    }
}

/* The pair ring in `ring` (pairs_ring_words words). */
EK_DW_NOINLINE void inplace_quad_pairs(const ek_depthwise_conv2d_params *p, int8_t *data,
                                       const int8_t *filter, const int32_t *bias, uint32_t *ring)
{
    dw_layer g;
    const int32_t m = pairs_sub_row_words(p), channels = p->in_c, out_w = p->out_w;
    const int32_t slot_words = 4 * m;
    dw_pairs_row_ctl row;
    row.step = channels;
    row.last = (out_w - 1) / 4 * 4 * channels;
    row.tail = out_w - (out_w - 1) / 4 * 4;
    row.m = 4 * m;
    (void)ring_bytes(p, &g.rw);
    g.pad_left = p->pad_left;
    g.zero_point = -p->input_offset;
    g.in_h = p->in_h;
    g.in_w = p->in_w;
    g.channels = channels;
    g.cols = g.rw - g.pad_left < g.in_w ? g.rw - g.pad_left : g.in_w;
    { /* padding columns and the slack (read for no stored pixel): zero points */
        const uint32_t fill = ek_sxtb16(((uint32_t)(uint8_t)g.zero_point) * 0x01010101u);
        for (int32_t i = 0, end = pairs_ring_words(p); i < end; ++i) {
            ring[i] = fill;
        }
    }
    for (int32_t c = 0; c < channels; c += 4) {
        dw_pairs_channel f[4];
        int all_full = 1;
        for (int32_t k = 0; k < 4; ++k) {
            dw_pairs_setup(p, filter, bias, c + k, &f[k]);
            all_full &= f[k].mode == DW_FAST_FULL;
        }
        row.span = 4 * (int32_t)sizeof(dw_pairs_channel);
        int8_t *const group = data + c;
        int32_t next = -p->pad_top, slot = next % 3;
        if (slot < 0) {
            slot += 3;
        }
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_top;
            if (next < iy0) {
                next = iy0;
                slot = next % 3;
            }
            const int32_t first = slot - (next - iy0) < 0 ? slot - (next - iy0) + 3
                                                         : slot - (next - iy0);
            for (; next < iy0 + 3; ++next) {
                dw_pairs_fill_row(&g, group, ring, m, next, slot);
                if (++slot == 3) {
                    slot = 0;
                }
            }
            const int32_t s1 = first == 2 ? 0 : first + 1, s2 = s1 == 2 ? 0 : s1 + 1;
            row.d1 = 4 * (s1 - first) * slot_words;
            row.d12 = 4 * (s2 - first) * slot_words;
            const uint32_t *const x = ring + first * slot_words;
            int8_t *const out = group + oy * out_w * channels;
#if EK_DW_PAIRS_ASM
            /* stride_w 1 (the build's only stride, or this layer's) */
            const int stride1 = EK_DW_PAIRS_STRIDES == 1
                                || ((EK_DW_PAIRS_STRIDES & 1) && p->stride_w == 1);
            if (all_full) { /* the common case: the group in one call */
                if (stride1) {
                    dw_pairs_rows_s1_asm(x, out, f, &row);
                } else {
                    dw_pairs_rows_s2_asm(x, out, f, &row);
                }
                continue;
            }
            /* runs of channels of one mode: the clamp-free fast forms in assembly, others in C */
            for (int32_t k = 0, run; k < 4; k += run) {
                const int mode = f[k].mode;
                for (run = 1; k + run < 4 && f[k + run].mode == mode; ++run) {
                }
                row.span = run * (int32_t)sizeof(dw_pairs_channel);
                if (mode == DW_FAST_FULL && stride1) {
                    dw_pairs_rows_s1_asm(x + k * m, out + k, &f[k], &row);
                } else if (mode == DW_FAST_FULL) {
                    dw_pairs_rows_s2_asm(x + k * m, out + k, &f[k], &row);
#if EK_DW_PAIRS_WIDE
                } else if (mode == DW_WIDE_FULL && stride1) {
                    dw_pairs_rows_s1_wide_asm(x + k * m, out + k, &f[k], &row);
                } else if (mode == DW_WIDE_FULL) {
                    dw_pairs_rows_s2_wide_asm(x + k * m, out + k, &f[k], &row);
#endif
                } else {
#if EK_DW_PAIRS_C
                    dw_pairs_rows(p, x + k * m, &f[k], &row, out + k, run);
#endif
                }
            }
#else
            dw_pairs_rows(p, x, f, &row, out, 4);
#endif
        }
    }
}

/* inplace_quad, its widened ring (`kind` 1) or the pair ring (2), on the stack. */
EK_DW_NOINLINE void inplace_quad_on_stack(const ek_depthwise_conv2d_params *p, int8_t *data,
                                          const int8_t *filter, const int32_t *bias, int kind)
{
    uint32_t ring[EK_DW_QUAD_STACK_WORDS];
#if EK_DW_ONLY_PAIRS
    (void)kind;
    inplace_quad_pairs(p, data, filter, bias, ring);
#else
    if (kind == 2) {
        inplace_quad_pairs(p, data, filter, bias, ring);
    } else if (kind == 1) {
        inplace_quad_wide(p, data, filter, bias, ring);
    } else {
        inplace_quad(p, data, filter, bias, ring);
    }
#endif
}
#endif

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

/* Ring row width and total bytes (both copies of k_h rows, 3 slack bytes). */
static int32_t ring_bytes(const ek_depthwise_conv2d_params *p, int32_t *rw)
{
    *rw = (p->out_w - 1) * p->stride_w + p->k_w;
    return 2 * p->k_h * *rw + 3;
}

EK_DW_NOINLINE EK_DW_MAYBE_UNUSED void inplace_ring(const ek_depthwise_conv2d_params *p, int8_t *data,
                                 const int8_t *filter, const int32_t *bias, int8_t *ring)
{
    dw_layer g;
    const int32_t channels = p->in_c, n_taps = p->k_h * p->k_w;
    const int32_t bytes = ring_bytes(p, &g.rw);
    g.ring = ring;
    g.pad_left = p->pad_left;
    g.zero_point = -p->input_offset;
    g.in_h = p->in_h;
    g.in_w = p->in_w;
    g.channels = channels;
    g.k_h = p->k_h;
    g.k_w = p->k_w;
    g.stride_h = p->stride_h;
    g.stride_w = p->stride_w;
    g.out_h = p->out_h;
    g.out_w = p->out_w;
    g.pad_top = p->pad_top;
    /* Input columns inside the ring rows: [0, cols), at ring column pad_left + ix. */
    g.cols = g.rw - g.pad_left < g.in_w ? g.rw - g.pad_left : g.in_w;
    int shape = DW_ROW_GENERIC;
    if (g.k_h == 3 && g.k_w == 3 && g.stride_w == 1) {
        shape = DW_ROW_3X3_S1;
    } else if (g.k_h == 3 && g.k_w == 3 && g.stride_w == 2) {
        shape = DW_ROW_3X3_S2;
    }
    /* Padding columns (never written by a gather) and the slack bytes: zero points. */
    memset(ring, (int8_t)g.zero_point, (size_t)bytes);
    for (int32_t c = 0; c < channels; ++c) {
        int16_t taps[EK_DW_MAX_TAPS]; /* w + filter_offset is within [-255, 255] */
        uint32_t tap_sum = 0;
        dw_requant q;
        const int mode = dw_requant_setup(p, c, &q);
        for (int32_t t = 0; t < n_taps; ++t) {
            taps[t] = (int16_t)(EK_FILTER(filter, t * channels + c) + p->filter_offset);
            tap_sum += (uint32_t)taps[t];
        }
        const uint32_t base = (uint32_t)bias_of(bias, c) + (uint32_t)p->input_offset * tap_sum;
        dw_channel_dispatch(&g, shape, mode, data + c, taps, base, &q);
    }
}

/* inplace_ring with the ring on the stack (scratch planes smaller than the ring). */
EK_DW_NOINLINE EK_DW_MAYBE_UNUSED void inplace_ring_on_stack(const ek_depthwise_conv2d_params *p, int8_t *data,
                                          const int8_t *filter, const int32_t *bias)
{
    int8_t ring[EK_DW_RING_STACK];
    inplace_ring(p, data, filter, bias, ring);
}

#if EK_USE_DSP
/* The four-channel ring, widened where that fits, in the scratch plane (from its first word
 * boundary) when it fits there, else on the stack when it fits that; 0 when neither (or
 * dw_quad_applies fails). */
static int run_quad(const ek_depthwise_conv2d_params *p, int8_t *output, const int8_t *filter,
                    const int32_t *bias, int8_t *scratch)
{
    if (!dw_quad_applies(p)) {
        return 0;
    }
    const int32_t words = quad_ring_words(p), plane = p->in_h * p->in_w;
    const uintptr_t skip = (4u - ((uintptr_t)scratch & 3u)) & 3u;
    uint32_t *const ring = (uint32_t *)(void *)(scratch + skip);
    {
        const int32_t pairs = pairs_ring_words(p);
        if ((int32_t)skip + 4 * pairs <= plane) {
            inplace_quad_pairs(p, output, filter, bias, ring);
            return 1;
        }
        if (pairs <= EK_DW_QUAD_STACK_WORDS) {
            inplace_quad_on_stack(p, output, filter, bias, 2);
            return 1;
        }
    }
#if EK_DW_ONLY_PAIRS
    (void)words;
    return 0; /* never: every call takes the pair ring */
#else
    if ((int32_t)skip + 8 * words <= plane) {
        inplace_quad_wide(p, output, filter, bias, ring);
        return 1;
    }
    if (2 * words <= EK_DW_QUAD_STACK_WORDS) {
        inplace_quad_on_stack(p, output, filter, bias, 1);
        return 1;
    }
    if ((int32_t)skip + 4 * words <= plane) {
        inplace_quad(p, output, filter, bias, ring);
        return 1;
    }
    if (words <= EK_DW_QUAD_STACK_WORDS) {
        inplace_quad_on_stack(p, output, filter, bias, 0);
        return 1;
    }
    return 0;
#endif
}
#endif

/* 1 when every in-place call of the model surely runs the four-channel ring on DSP cores
 * (edgekit.firmware.op_emitters.depthwise_surely_quad, ek_model_config.h): the one-channel
 * ring and the plane kernels are then left out of DSP builds (flash). */
#ifndef EK_DW_ONLY_QUAD
#define EK_DW_ONLY_QUAD 0
#endif

void ek_depthwise_conv2d_s8_inplace(const ek_depthwise_conv2d_params *params, int8_t *input,
                                    const int8_t *filter, const int32_t *bias, int8_t *output,
                                    int8_t *scratch)
{
    /* No private copy here: nothing is stored before the paths below take theirs (or read the
     * fields once per channel). */
    const ek_depthwise_conv2d_params *p = params;
#if EK_USE_DSP && EK_DW_ONLY_QUAD
    (void)input; /* every call takes the ring (see above): the same checks, no other path */
    if (p->dilation_h == 1 && p->dilation_w == 1 && p->k_h * p->k_w <= EK_DW_MAX_TAPS
        && ring_order_safe(p)) {
        (void)run_quad(p, output, filter, bias, scratch);
    }
#else
    if (p->dilation_h == 1 && p->dilation_w == 1 && p->k_h * p->k_w <= EK_DW_MAX_TAPS
        && ring_order_safe(p)) {
#if EK_USE_DSP
        if (run_quad(p, output, filter, bias, scratch)) {
            return;
        }
#endif
        int32_t rw;
        const int32_t bytes = ring_bytes(p, &rw);
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
#endif
}
