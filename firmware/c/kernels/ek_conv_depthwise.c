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
            uint32_t x02 = ek_sadd16(ek_sxtb16(xv), offset2);
            uint32_t x13 = ek_sadd16(ek_sxtb16_ror8(xv), offset2);
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

void ek_depthwise_conv2d_s8(const ek_depthwise_conv2d_params *p, const int8_t *input,
                            const int8_t *filter, const int32_t *bias, int8_t *output)
{
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

void ek_depthwise_conv2d_s8_inplace(const ek_depthwise_conv2d_params *p, int8_t *input,
                                    const int8_t *filter, const int32_t *bias, int8_t *output,
                                    int8_t *scratch)
{
    int8_t *data = output; /* == input: reads and writes go through one pointer */
    (void)input;
    const int32_t channels = p->in_c;
    const int32_t plane = p->in_h * p->in_w;
    for (int32_t c = 0; c < channels; ++c) {
        /* Save input channel c: its slots are about to receive output channel c. */
        for (int32_t i = 0; i < plane; ++i) {
            scratch[i] = data[i * channels + c];
        }
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_top;
            int32_t ky0, ky1;
            ek_conv_valid_taps(iy0, p->in_h, p->k_h, p->dilation_h, &ky0, &ky1);
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                const int32_t ix0 = ox * p->stride_w - p->pad_left;
                int32_t kx0, kx1;
                uint32_t acc = (uint32_t)bias_of(bias, c);
                ek_conv_valid_taps(ix0, p->in_w, p->k_w, p->dilation_w, &kx0, &kx1);
                for (int32_t ky = ky0; ky < ky1; ++ky) {
                    const int32_t row = (iy0 + ky * p->dilation_h) * p->in_w + ix0;
                    const int8_t *w_row = filter + ky * p->k_w * channels + c;
                    for (int32_t kx = kx0; kx < kx1; ++kx) {
                        acc += (uint32_t)((scratch[row + kx * p->dilation_w] + p->input_offset)
                                          * (w_row[kx * channels] + p->filter_offset));
                    }
                }
                data[(oy * p->out_w + ox) * channels + c] =
                    requantize_channel(p, (int32_t)acc, c);
            }
        }
    }
}
