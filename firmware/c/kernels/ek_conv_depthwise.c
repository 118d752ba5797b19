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

void ek_depthwise_conv2d_s8_inplace(const ek_depthwise_conv2d_params *params, int8_t *input,
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
