/* CONV_2D and FULLY_CONNECTED, int8 (see ek_conv.h for the semantics).
 *
 * Follows TFLite (Micro)'s reference_integer_ops::ConvPerChannel and FullyConnected: int32
 * accumulator (wrapping), per-channel MultiplyByQuantizedMultiplier, output offset, clamp; taps
 * outside the input are skipped. In-place use: none here (output must not overlap input).
 *
 * Loop order: output pixel, then output channels. For a pixel, the taps of one kernel row that
 * fall inside the input are one contiguous run of bytes in both the NHWC input and the OHWI
 * filter (when dilation_w == 1), so the DSP path runs a 4-channel dot product per run; the
 * portable path is the reference loop nest. */
#include "ek_conv.h"

#include "ek_arm_dsp.h"
#include "ek_conv_common.h"
#include "ek_conv_dot.h"
#include "ek_elementwise.h"

static int32_t bias_of(const int32_t *bias, int32_t c)
{
    return bias != 0 ? bias[c] : 0;
}

/* acc of output channel oc at the pixel whose window starts at (iy0, ix0), valid taps only. */
static int32_t conv_acc_portable(const ek_conv2d_params *p, const int8_t *input,
                                 const int8_t *filter, int32_t oc, int32_t iy0, int32_t ix0,
                                 int32_t ky0, int32_t ky1, int32_t kx0, int32_t kx1, uint32_t acc)
{
    const int32_t c_in = p->in_c;
    for (int32_t ky = ky0; ky < ky1; ++ky) {
        const int32_t iy = iy0 + ky * p->dilation_h;
        for (int32_t kx = kx0; kx < kx1; ++kx) {
            const int32_t ix = ix0 + kx * p->dilation_w;
            const int8_t *x = input + ((int32_t)iy * p->in_w + ix) * c_in;
            const int8_t *w = filter + ((oc * p->k_h + ky) * p->k_w + kx) * c_in;
            for (int32_t ic = 0; ic < c_in; ++ic) {
                acc += (uint32_t)((x[ic] + p->input_offset) * (w[ic] + p->filter_offset));
            }
        }
    }
    return (int32_t)acc;
}

#if EK_USE_DSP
/* Four output channels oc..oc+3 at one pixel (filter offset 0). */
static void conv_acc4_dsp(const ek_conv2d_params *p, const int8_t *input, const int8_t *filter,
                          int32_t oc, int32_t iy0, int32_t ix0, int32_t ky0, int32_t ky1,
                          int32_t kx0, int32_t kx1, int32_t acc[4])
{
    const int32_t c_in = p->in_c;
    const int32_t filter_stride = p->k_h * p->k_w * c_in; /* one output channel */
    for (int32_t ky = ky0; ky < ky1; ++ky) {
        const int32_t iy = iy0 + ky * p->dilation_h;
        const int8_t *w_row = filter + oc * filter_stride + ky * p->k_w * c_in;
        if (p->dilation_w == 1) {
            const int8_t *x = input + (iy * p->in_w + ix0 + kx0) * c_in;
            ek_dot4_s8(x, w_row + kx0 * c_in, filter_stride, (kx1 - kx0) * c_in,
                       p->input_offset, acc);
        } else {
            for (int32_t kx = kx0; kx < kx1; ++kx) {
                const int8_t *x = input + (iy * p->in_w + ix0 + kx * p->dilation_w) * c_in;
                ek_dot4_s8(x, w_row + kx * c_in, filter_stride, c_in, p->input_offset, acc);
            }
        }
    }
}

static int32_t conv_acc1_dsp(const ek_conv2d_params *p, const int8_t *input,
                             const int8_t *filter, int32_t oc, int32_t iy0, int32_t ix0,
                             int32_t ky0, int32_t ky1, int32_t kx0, int32_t kx1, int32_t acc)
{
    const int32_t c_in = p->in_c;
    for (int32_t ky = ky0; ky < ky1; ++ky) {
        const int32_t iy = iy0 + ky * p->dilation_h;
        const int8_t *w_row = filter + ((oc * p->k_h + ky) * p->k_w) * c_in;
        if (p->dilation_w == 1) { /* the taps of a kernel row are one contiguous run */
            const int8_t *x = input + (iy * p->in_w + ix0 + kx0) * c_in;
            acc = ek_dot1_s8(x, w_row + kx0 * c_in, (kx1 - kx0) * c_in, p->input_offset, acc);
            continue;
        }
        for (int32_t kx = kx0; kx < kx1; ++kx) {
            const int8_t *x = input + (iy * p->in_w + ix0 + kx * p->dilation_w) * c_in;
            acc = ek_dot1_s8(x, w_row + kx * c_in, c_in, p->input_offset, acc);
        }
    }
    return acc;
}
#endif

/* The residual ADD fused after the convolution (planner mode conv_add_skip), or none. */
typedef struct {
    const ek_add_params *add; /* 0: plain convolution */
    const int8_t *skip;       /* the ADD's other input, same NHWC layout as the output */
    int32_t conv_input_position; /* which ADD input (0 or 1) the conv result is */
} conv_epilogue;

/* Stores output element i: the conv's int8 result y, or the fused ADD of y and skip[i]
 * (skip[i] is read before out[i] is written: skip may be the output buffer). */
static inline void conv_store(const conv_epilogue *e, int8_t *output, int32_t i, int32_t y)
{
    if (e->add == 0) {
        output[i] = (int8_t)y;
    } else {
        const int32_t s = e->skip[i];
        output[i] = (int8_t)(e->conv_input_position == 0 ? ek_add_element(e->add, y, s)
                                                         : ek_add_element(e->add, s, y));
    }
}

static void conv2d_run(const ek_conv2d_params *params, const int8_t *input, const int8_t *filter,
                       const int32_t *bias, int8_t *output, const conv_epilogue *e)
{
    /* A private copy: int8 stores to `output` may alias anything the compiler cannot prove
     * apart, and would otherwise force every field to be reloaded after each output byte. */
    const ek_conv2d_params local = *params;
    const ek_conv2d_params *p = &local;
    const int32_t c_out = p->out_c;
#if EK_USE_DSP
    const int use_dsp = p->filter_offset == 0;
#endif
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_top;
        int32_t ky0, ky1;
        ek_conv_valid_taps(iy0, p->in_h, p->k_h, p->dilation_h, &ky0, &ky1);
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t ix0 = ox * p->stride_w - p->pad_left;
            const int32_t base = (oy * p->out_w + ox) * c_out; /* first output element */
            int32_t kx0, kx1;
            int32_t oc = 0;
            ek_conv_valid_taps(ix0, p->in_w, p->k_w, p->dilation_w, &kx0, &kx1);
#if EK_USE_DSP
            if (use_dsp) {
                for (; oc + 4 <= c_out; oc += 4) {
                    int32_t acc[4] = {bias_of(bias, oc), bias_of(bias, oc + 1),
                                      bias_of(bias, oc + 2), bias_of(bias, oc + 3)};
                    conv_acc4_dsp(p, input, filter, oc, iy0, ix0, ky0, ky1, kx0, kx1, acc);
                    for (int32_t r = 0; r < 4; ++r) {
                        conv_store(e, output, base + oc + r,
                                   ek_conv_requantize(acc[r], p->multipliers[oc + r],
                                                      p->shifts[oc + r], p->output_offset,
                                                      p->act_min, p->act_max));
                    }
                }
                for (; oc < c_out; ++oc) {
                    int32_t acc = conv_acc1_dsp(p, input, filter, oc, iy0, ix0, ky0, ky1, kx0,
                                                kx1, bias_of(bias, oc));
                    conv_store(e, output, base + oc,
                               ek_conv_requantize(acc, p->multipliers[oc], p->shifts[oc],
                                                  p->output_offset, p->act_min, p->act_max));
                }
            }
#endif
            for (; oc < c_out; ++oc) {
                int32_t acc = conv_acc_portable(p, input, filter, oc, iy0, ix0, ky0, ky1, kx0,
                                                kx1, (uint32_t)bias_of(bias, oc));
                conv_store(e, output, base + oc,
                           ek_conv_requantize(acc, p->multipliers[oc], p->shifts[oc],
                                              p->output_offset, p->act_min, p->act_max));
            }
        }
    }
}

void ek_conv2d_s8(const ek_conv2d_params *params, const int8_t *input, const int8_t *filter,
                  const int32_t *bias, int8_t *output)
{
    const conv_epilogue none = {0, 0, 0};
    conv2d_run(params, input, filter, bias, output, &none);
}

void ek_conv2d_add_s8(const ek_conv2d_params *params, const ek_add_params *add_params,
                      const int8_t *input, const int8_t *filter, const int32_t *bias,
                      const int8_t *skip, int8_t *output, int32_t conv_input_position)
{
    /* private copy of the ADD's params, for the same reason as the conv's */
    const ek_add_params add = *add_params;
    const conv_epilogue fused = {&add, skip, conv_input_position};
    conv2d_run(params, input, filter, bias, output, &fused);
}

void ek_conv2d_s8_pointwise_inplace(const ek_conv2d_params *params, int8_t *input,
                                    const int8_t *filter, const int32_t *bias, int8_t *output,
                                    int8_t *scratch)
{
    const ek_conv2d_params local = *params; /* see ek_conv2d_s8 */
    const ek_conv2d_params *p = &local;
    const int32_t c_in = p->in_c, c_out = p->out_c;
    for (int32_t pixel = 0; pixel < p->out_h * p->out_w; ++pixel) {
        /* src(p): the input pixel this output pixel reads (1x1 window, no padding) */
        const int32_t oy = pixel / p->out_w, ox = pixel % p->out_w;
        const int32_t src = oy * p->stride_h * p->in_w + ox * p->stride_w;
        int8_t *out = output + pixel * c_out;
        int32_t oc = 0;
        /* Save the input pixel first: the outputs below may overwrite it. */
        for (int32_t i = 0; i < c_in; ++i) {
            scratch[i] = input[src * c_in + i];
        }
#if EK_USE_DSP
        if (p->filter_offset == 0) {
            for (; oc + 4 <= c_out; oc += 4) {
                int32_t acc[4] = {bias_of(bias, oc), bias_of(bias, oc + 1),
                                  bias_of(bias, oc + 2), bias_of(bias, oc + 3)};
                ek_dot4_s8(scratch, filter + oc * c_in, c_in, c_in, p->input_offset, acc);
                for (int32_t r = 0; r < 4; ++r) {
                    out[oc + r] = ek_conv_requantize(acc[r], p->multipliers[oc + r],
                                                     p->shifts[oc + r], p->output_offset,
                                                     p->act_min, p->act_max);
                }
            }
        }
#endif
        for (; oc < c_out; ++oc) {
            const int8_t *w = filter + oc * c_in;
            uint32_t acc = (uint32_t)bias_of(bias, oc);
            for (int32_t i = 0; i < c_in; ++i) {
                acc += (uint32_t)((scratch[i] + p->input_offset) * (w[i] + p->filter_offset));
            }
            out[oc] = ek_conv_requantize((int32_t)acc, p->multipliers[oc], p->shifts[oc],
                                         p->output_offset, p->act_min, p->act_max);
        }
    }
}

void ek_fully_connected_s8(const ek_fully_connected_params *p, const int8_t *input, const int8_t *filter,
                           const int32_t *bias, int8_t *output)
{
    const int32_t depth = p->depth, units = p->units;
    for (int32_t row = 0; row < p->rows; ++row) {
        const int8_t *x = input + row * depth;
        int8_t *out = output + row * units;
        int32_t u = 0;
#if EK_USE_DSP
        if (p->filter_offset == 0) {
            for (; u + 4 <= units; u += 4) {
                int32_t acc[4] = {bias_of(bias, u), bias_of(bias, u + 1), bias_of(bias, u + 2),
                                  bias_of(bias, u + 3)};
                ek_dot4_s8(x, filter + u * depth, depth, depth, p->input_offset, acc);
                for (int32_t r = 0; r < 4; ++r) {
                    out[u + r] = ek_conv_requantize(acc[r], p->multipliers[u + r],
                                                    p->shifts[u + r], p->output_offset,
                                                    p->act_min, p->act_max);
                }
            }
            for (; u < units; ++u) {
                int32_t acc = ek_dot1_s8(x, filter + u * depth, depth, p->input_offset,
                                         bias_of(bias, u));
                out[u] = ek_conv_requantize(acc, p->multipliers[u], p->shifts[u],
                                            p->output_offset, p->act_min, p->act_max);
            }
        }
#endif
        for (; u < units; ++u) {
            const int8_t *w = filter + u * depth;
            uint32_t acc = (uint32_t)bias_of(bias, u);
            for (int32_t i = 0; i < depth; ++i) {
                acc += (uint32_t)((x[i] + p->input_offset) * (w[i] + p->filter_offset));
            }
            out[u] = ek_conv_requantize((int32_t)acc, p->multipliers[u], p->shifts[u],
                                        p->output_offset, p->act_min, p->act_max);
        }
    }
}
