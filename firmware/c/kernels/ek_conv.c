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

#include <stddef.h>
#include <string.h>

#include "ek_arm_dsp.h"
#include "ek_conv_common.h"
#include "ek_conv_dot.h"
#include "ek_conv_weights.h"
#if EK_S4_DSP
#include "ek_conv_s4_dsp.h"
#endif
#include "ek_elementwise.h"

/* The model's kernel configuration (EK_CONV_WIDE_TAPS, the int4 window): generated with each
 * model build (edgekit.firmware.op_emitters.model_config_header). */
#if defined(__has_include)
#if __has_include("ek_model_config.h")
#include "ek_model_config.h"
#endif
#endif
/* The longest window (k_h * k_w * in_c taps) of the widened two-pixel path; its stack buffer
 * is 4 bytes per tap (int4: whole groups of 8 taps, wide_s4_words). Without a
 * model build: a 3x3 conv over 64 channels. */
#ifndef EK_CONV_WIDE_TAPS
#define EK_CONV_WIDE_TAPS 576
#endif
/* 1 when some int8 call on the widened path has a window of k_h * k_w * in_c % 4 != 0 taps
 * whose channels the C loop may take (edgekit.firmware.op_emitters.wide_tail: an odd last one,
 * a clamped activation, no bias, the fused kernel); a model build leaves dot2x2_wide_tail out
 * (0) when none has. */
#ifndef EK_CONV_WIDE_TAIL
#define EK_CONV_WIDE_TAIL 1
#endif
/* 1 when some call may take the short-window byte path (conv_pairs_apply); a model build
 * leaves it out (0) when none of its layers does. */
#ifndef EK_CONV_PAIRS_PATH
#define EK_CONV_PAIRS_PATH 1
#endif
/* 1 when every in-place pointwise call of the model surely takes the two-pixel loop on a DSP
 * core (pw_pairs_apply; edgekit.firmware.op_emitters.pointwise_surely_pairs): the one-pixel loop
 * is then compiled out of DSP builds. */
#ifndef EK_PW_ONLY_PAIRS
#define EK_PW_ONLY_PAIRS 0
#endif
#define EK_PW_PIXEL_LOOP (!(EK_FILTER_DSP || EK_S4_DSP) || !EK_PW_ONLY_PAIRS)
/* Which int8 in-place pointwise filters are paired (ek_conv.h `paired_filter`;
 * edgekit.firmware.op_emitters.pointwise_paired): 0 none (that code is compiled out), 1 every
 * one the two-pixel loop reads, 2 some (the loop checks the flag per channel pair). */
#ifndef EK_PW_PAIRED
#define EK_PW_PAIRED 2
#endif
/* 1 when some in-place int4 pointwise call has an odd out_c (op_emitters.CallConfig
 * pw_odd_s4): the int4 loop's odd last channel (pw_odd_last_channel) is compiled in only then. */
#ifndef EK_PW_ODD_S4
#define EK_PW_ODD_S4 1
#endif
/* The two-pixel pointwise path's channel loops in C for the clamped requantisation modes
 * (pw_channels_of), one bit each: those no in-place pointwise call of the model is in are left
 * out (edgekit.firmware.op_emitters.pointwise_loops; flash: a model whose 1x1 layers all
 * clamp to the whole int8 range runs them in assembly). */
#define EK_PW_LOOP_FAST 1
#define EK_PW_LOOP_EXACT 2
#define EK_PW_LOOP_WIDE 4
#ifndef EK_PW_LOOPS
#define EK_PW_LOOPS 7
#endif
/* 1 when some int8 in-place pointwise call has a pair of channels whose multipliers are both 0
 * (edgekit.constant_channels; op_emitters.pointwise_skips_pairs): the channel loops
 * in assembly that skip such pairs' MAC loops are compiled in. */
#ifndef EK_PW_SKIP_PAIRS
#define EK_PW_SKIP_PAIRS 1
#endif
/* int8 kernels: 1 when some CONV_2D call may take the one-pixel DSP loop (conv_acc4_dsp,
 * conv_acc1_dsp: neither two-pixel path takes it); a model build leaves it out (0) when none
 * does. A call that reached it anyway would run the portable loop: the same bytes, slower. */
#ifndef EK_CONV_PIXELS
#define EK_CONV_PIXELS 1
#endif
/* Which readers of two windows straight from their rows the build keeps (the widened path,
 * dilation_w 1): bit 0 the plan (short windows, in_c % 4 != 0, whose rows are no whole words),
 * bit 1 rows of whole words (edgekit.firmware.op_emitters.short_rows_readers); the pixels of a
 * layer whose reader is compiled out are widened one at a time. */
#ifndef EK_CONV_SHORT_ROWS
#define EK_CONV_SHORT_ROWS 3
#endif
/* 1 when some FULLY_CONNECTED call may have the interleaved filter (ek_conv.h `interleaved`);
 * a model build leaves its code out (0) when none has. */
#ifndef EK_FC_INTERLEAVED
#define EK_FC_INTERLEAVED 1
#endif
/* 1 when some layer's channels all take the wide fast requantisation (ek_requant_wide_applies)
 * but not all the fast one: the two-pixel paths' wide modes (PW_WIDE, PW_WIDE_FULL); a model
 * build leaves them out (0) when no layer needs them. */
#ifndef EK_REQUANT_WIDE
#define EK_REQUANT_WIDE 1
#endif
/* Where some call is ek_conv2d_s8_via_s4 (an int8 CONV_2D run by this translation unit
 * compiled for int4 filters, below): 2 where ek_conv2d_s4 is called too (the two share one
 * out-of-line convolution), 1 where it is not; a model build leaves it out (0) otherwise. */
#ifndef EK_CONV_S8_VIA_S4
#define EK_CONV_S8_VIA_S4 2
#endif
#define EK_S8_ROWS (EK_CONV_S4 && EK_CONV_S8_VIA_S4)
/* conv2d_run's and conv2d_wide_plain's int8-rows flag: an argument only where EK_S8_ROWS (the
 * other builds' calls keep their registers) */
#if EK_S8_ROWS
#define EK_S8_ROWS_PARAM , int s8
#define EK_S8_ROWS_ARG(v) , (v)
#define EK_S8_ROWS_FLAG s8
#else
#define EK_S8_ROWS_PARAM
#define EK_S8_ROWS_ARG(v)
#define EK_S8_ROWS_FLAG 0
#endif

#if defined(__GNUC__)
#define EK_CONV_NOINLINE __attribute__((noinline))
/* helpers of the two-pixel paths that a model build may compile out of every caller */
#define EK_CONV_MAYBE_UNUSED __attribute__((unused))
#else
#define EK_CONV_NOINLINE
#define EK_CONV_MAYBE_UNUSED
#endif

static int32_t bias_of(const int32_t *bias, int32_t c)
{
    return bias != 0 ? bias[c] : 0;
}

/* 1 when every output channel's requantisation takes the fast form (ek_requant_fast): checked
 * once per call, so the per-output path has no test of its own. P: a conv or FC params. */
#define REQUANT_FAST_LAYER(P, channels)                                                      \
    requant_all((P)->multipliers, (P)->shifts, (channels), 23)

/* REQUANT_FAST_LAYER of a FULLY_CONNECTED, skipped where the generator has already checked
 * every unit (ek_fully_connected_params.requant_fast): the check costs a loop over the units
 * per call, as much as a few outputs' dot products in a small layer. */
#define FC_REQUANT_FAST(P) ((P)->requant_fast || REQUANT_FAST_LAYER(P, (P)->units))

/* 1 when every channel takes a fast form whose right shift may be up to `longest`
 * (ek_requant_right_within: 23 the fast form, 31 the wide one). */
static int requant_all(const int32_t *multipliers, const int32_t *shifts, int32_t channels,
                       int32_t longest)
{
    for (int32_t c = 0; c < channels; ++c) {
        if (!ek_requant_right_within(multipliers[c], shifts[c], longest)) {
            return 0;
        }
    }
    return 1;
}

/* Output channel oc's int8 value of acc: ek_conv_requantize, in its fast form where `fast`.
 * P: a conv or FC params (the same requantisation fields). */
#define CONV_REQUANTIZE(P, acc, oc, fast)                                                       \
    requantize_channel((P)->multipliers, (P)->shifts, (oc), (P)->output_offset, (P)->act_min, \
                       (P)->act_max, (acc), (fast))

static inline int8_t requantize_channel(const int32_t *multipliers, const int32_t *shifts,
                                        int32_t oc, int32_t output_offset, int32_t act_min,
                                        int32_t act_max, int32_t acc, int fast)
{
    if (fast) {
        const int32_t shift = shifts[oc];
        const int32_t v = ek_requant_fast(acc, multipliers[oc],
                                          ek_requant_fast_k(shift, output_offset), -shift - 1);
        return (int8_t)ek_clamp(v, act_min, act_max);
    }
    return ek_conv_requantize(acc, multipliers[oc], shifts[oc], output_offset, act_min, act_max);
}

/* acc of output channel oc at the pixel whose window starts at (iy0, ix0), valid taps only;
 * channel oc's filter row starts at element oc * row (padded int4 rows: ek_s4_rows_padded). */
static int32_t conv_acc_portable(const ek_conv2d_params *p, const int8_t *input,
                                 const int8_t *filter, int32_t oc, int32_t row, int32_t iy0,
                                 int32_t ix0, int32_t ky0, int32_t ky1, int32_t kx0, int32_t kx1,
                                 uint32_t acc)
{
    const int32_t c_in = p->in_c;
    for (int32_t ky = ky0; ky < ky1; ++ky) {
        const int32_t iy = iy0 + ky * p->dilation_h;
        for (int32_t kx = kx0; kx < kx1; ++kx) {
            const int32_t ix = ix0 + kx * p->dilation_w;
            const int8_t *x = input + ((int32_t)iy * p->in_w + ix) * c_in;
            acc = ek_filter_dot(x, p->input_offset, filter,
                                oc * row + (ky * p->k_w + kx) * c_in, c_in, p->filter_offset, acc);
        }
    }
    return (int32_t)acc;
}

#if defined(__GNUC__)
/* conv2d_run is instantiated once per epilogue (plain store / fused ADD), each with its
 * constant folded in, so the plain convolution pays nothing for the fused variant. */
#define EK_CONV_FORCE_INLINE static inline __attribute__((always_inline))
#else
#define EK_CONV_FORCE_INLINE static inline
#endif

#if EK_FILTER_DSP
#if EK_CONV_PIXELS
/* Four output channels oc..oc+3 at one pixel (filter offset 0), input offset added in the
 * loop: the pixels whose window leaves the input, or layers without an effective bias. */
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
#endif

/* acc[r] += sum_i x[i] * w[r*stride + i], r = 0..3, raw int8 x (the input offset is in the
 * effective bias). Without the offset register the loop's state fits the 13 free registers
 * (4 accumulators, x, end, two row pointers w0/w2 with rows 1/3 at +stride, stride, 4
 * temporaries), so nothing is spilled to the stack. Out of line: inlined into a loop nest,
 * the asm's 13 registers plus the caller's live values cannot be allocated (gcc 12 with
 * -mfpu=fpv4-sp-d16: "asm operand has impossible constraints"). */
static EK_CONV_NOINLINE void dot4_raw(const int8_t *x, const int8_t *w, int32_t stride,
                                      int32_t len, int32_t acc[4])
{
    const int8_t *w0 = w, *w2 = w + 2 * stride;
    const int8_t *const end = x + (len & ~3);
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
#if defined(__ARM_FEATURE_DSP) && !defined(EDGEKIT_EMULATE_DSP)
    /* The same loop as the C below, register-allocated by hand: gcc 12 spills two of its
     * pointers to the stack (31 instead of 25 instructions per 16 MACs). Per 4 bytes: one
     * input word split into lanes {0,2} (x02) and {1,3} (x13), then per filter row one word,
     * its two lane pairs, two SMLAD. Rows 1 and 3 are read at [row 0/2 + stride]. */
    if (x != end) {
        uint32_t x13, x02, wv, wl;
        __asm__ volatile(
            "1:\n\t"
            "ldr %[x13], [%[x]], #4\n\t"
            "sxtb16 %[x02], %[x13]\n\t"
            "sxtb16 %[x13], %[x13], ror #8\n\t"
            "ldr %[wv], [%[w0], %[s]]\n\t"
            "sxtb16 %[wl], %[wv]\n\t"
            "smlad %[a1], %[wl], %[x02], %[a1]\n\t"
            "sxtb16 %[wv], %[wv], ror #8\n\t"
            "smlad %[a1], %[wv], %[x13], %[a1]\n\t"
            "ldr %[wv], [%[w0]], #4\n\t"
            "sxtb16 %[wl], %[wv]\n\t"
            "smlad %[a0], %[wl], %[x02], %[a0]\n\t"
            "sxtb16 %[wv], %[wv], ror #8\n\t"
            "smlad %[a0], %[wv], %[x13], %[a0]\n\t"
            "ldr %[wv], [%[w2], %[s]]\n\t"
            "sxtb16 %[wl], %[wv]\n\t"
            "smlad %[a3], %[wl], %[x02], %[a3]\n\t"
            "sxtb16 %[wv], %[wv], ror #8\n\t"
            "smlad %[a3], %[wv], %[x13], %[a3]\n\t"
            "ldr %[wv], [%[w2]], #4\n\t"
            "sxtb16 %[wl], %[wv]\n\t"
            "smlad %[a2], %[wl], %[x02], %[a2]\n\t"
            "sxtb16 %[wv], %[wv], ror #8\n\t"
            "smlad %[a2], %[wv], %[x13], %[a2]\n\t"
            "cmp %[x], %[end]\n\t"
            "bne 1b"
            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "+r"(x),
              [w0] "+r"(w0), [w2] "+r"(w2), [x13] "=&r"(x13), [x02] "=&r"(x02),
              [wv] "=&r"(wv), [wl] "=&r"(wl)
            : [end] "r"(end), [s] "r"(stride)
            : "cc", "memory");
    }
#else
    while (x != end) {
        const uint32_t xv = ek_read_u32(x);
        const uint32_t x02 = ek_sxtb16(xv), x13 = ek_sxtb16_ror8(xv);
        uint32_t wv;
        x += 4;
        wv = ek_read_u32(w0);
        a0 = ek_smlad(ek_sxtb16(wv), x02, a0);
        a0 = ek_smlad(ek_sxtb16_ror8(wv), x13, a0);
        wv = ek_read_u32(w0 + stride);
        a1 = ek_smlad(ek_sxtb16(wv), x02, a1);
        a1 = ek_smlad(ek_sxtb16_ror8(wv), x13, a1);
        wv = ek_read_u32(w2);
        a2 = ek_smlad(ek_sxtb16(wv), x02, a2);
        a2 = ek_smlad(ek_sxtb16_ror8(wv), x13, a2);
        wv = ek_read_u32(w2 + stride);
        a3 = ek_smlad(ek_sxtb16(wv), x02, a3);
        a3 = ek_smlad(ek_sxtb16_ror8(wv), x13, a3);
        w0 += 4;
        w2 += 4;
    }
#endif
    for (int32_t n = len & 3; n > 0; --n) {
        const int32_t xi = *x++;
        a0 = (int32_t)((uint32_t)a0 + (uint32_t)(xi * w0[0]));
        a1 = (int32_t)((uint32_t)a1 + (uint32_t)(xi * w0[stride]));
        a2 = (int32_t)((uint32_t)a2 + (uint32_t)(xi * w2[0]));
        a3 = (int32_t)((uint32_t)a3 + (uint32_t)(xi * w2[stride]));
        ++w0;
        ++w2;
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

#if EK_CONV_PIXELS
/* conv_acc4_dsp for a window wholly inside the input, acc starting from the effective bias. */
static void conv_acc4_interior(const ek_conv2d_params *p, const int8_t *input,
                               const int8_t *filter, int32_t oc, int32_t iy0, int32_t ix0,
                               int32_t acc[4])
{
    const int32_t c_in = p->in_c;
    const int32_t row = p->k_w * c_in;
    const int32_t filter_stride = p->k_h * row;
    const int8_t *w_row = filter + oc * filter_stride;
    const int8_t *x_row = input + (iy0 * p->in_w + ix0) * c_in;
    const int32_t x_step = p->dilation_h * p->in_w * c_in;
    if (p->dilation_w == 1) { /* one contiguous run of bytes per kernel row */
        for (int32_t ky = 0; ky < p->k_h; ++ky) {
            dot4_raw(x_row, w_row, filter_stride, row, acc);
            x_row += x_step;
            w_row += row;
        }
        return;
    }
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
        for (int32_t kx = 0; kx < p->k_w; ++kx) {
            dot4_raw(x_row + kx * p->dilation_w * c_in, w_row + kx * c_in, filter_stride, c_in,
                     acc);
        }
        x_row += x_step;
        w_row += row;
    }
}

static int32_t conv_acc1_dsp(const ek_conv2d_params *p, const int8_t *input,
                             const int8_t *filter, int32_t oc, int32_t iy0, int32_t ix0,
                             int32_t ky0, int32_t ky1, int32_t kx0, int32_t kx1,
                             int32_t input_offset, int32_t acc)
{
    const int32_t c_in = p->in_c;
    for (int32_t ky = ky0; ky < ky1; ++ky) {
        const int32_t iy = iy0 + ky * p->dilation_h;
        const int8_t *w_row = filter + ((oc * p->k_h + ky) * p->k_w) * c_in;
        if (p->dilation_w == 1) { /* the taps of a kernel row are one contiguous run */
            const int8_t *x = input + (iy * p->in_w + ix0 + kx0) * c_in;
            acc = ek_dot1_s8(x, w_row + kx0 * c_in, (kx1 - kx0) * c_in, input_offset, acc);
            continue;
        }
        for (int32_t kx = kx0; kx < kx1; ++kx) {
            const int8_t *x = input + (iy * p->in_w + ix0 + kx * p->dilation_w) * c_in;
            acc = ek_dot1_s8(x, w_row + kx * c_in, c_in, input_offset, acc);
        }
    }
    return acc;
}
#endif /* EK_CONV_PIXELS */
#endif

#if EK_FILTER_DSP || (EK_S4_DSP && EK_CONV_WIDE_TAPS > 0)
/* --- Two output pixels at a time, for short windows ------------------------------------------
 * Layers whose whole window is short (len = k_h*k_w*in_c <= EK_PAIR_MAX_LEN: the first
 * convolution with 1-3 input channels, 1x1 convolutions with few input channels) spend most of
 * their instructions per output pixel rather than per MAC: requantisation, loop control, the
 * border checks. This path gathers the windows of two output pixels into a small buffer (padding
 * taps filled with the input zero point, so the effective bias is exact for every pixel), then
 * runs 2 output channels x 2 pixels per inner loop (each filter word is loaded and widened once
 * for both pixels) and requantises each channel's two results with one setup.
 *
 * Buffer layout: pixel A's window at [0, EK_PAIR_MAX_LEN), pixel B's at EK_PAIR_MAX_LEN. A window
 * of len bytes is read as len/4 whole words, then, when len % 4 = t != 0, one word holding
 * 4 - t zero bytes followed by the last t window bytes, paired with the filter word that ENDS at
 * the channel's last byte (filter + len - 4): the zero bytes meet the previous filter bytes and
 * contribute nothing, and no filter byte outside the channel is ever read.
 *
 * The windows are copied before any output of the pair is stored, which keeps the in-place
 * modes exact (pointwise_inplace, conv_sliding: see edgekit.planner).
 *
 * The int4 kernels (ek_conv_s4.c) gather their short windows the same way for the widened
 * two-pixel path (conv2d_wide), so EK_PAIR_MAX_LEN and gather_window are compiled there too. */
/* n bytes from src to dst (short runs: words, then bytes; any alignment). */
static inline void copy_short(int8_t *dst, const int8_t *src, int32_t n)
{
    for (; n >= 4; n -= 4, src += 4, dst += 4) {
        const uint32_t v = ek_read_u32(src);
        memcpy(dst, &v, 4);
    }
    for (; n > 0; --n) {
        *dst++ = *src++;
    }
}

static inline void fill_short(int8_t *dst, int8_t value, int32_t n)
{
    for (; n > 0; --n) {
        *dst++ = value;
    }
}

/* The window of the output pixel whose taps start at (iy0, ix0), len = k_h*k_w*in_c bytes in
 * OHWI tap order (dilation_w == 1), taps outside the input set to the input zero point; then
 * the tail word moved into place (see the layout above), its leading bytes tail_fill (0 for
 * raw-byte arithmetic, the zero point where the input offset is added later). In the int4
 * kernels no tail word is moved: the bytes after the window to the end of its group of 8 are
 * tail_fill (dst holds at least len rounded up to 8 bytes). */
/* Out of line: inlined into its one caller (a build without the byte path), gcc 12 -O2 turned
 * its short copies into memcpy/memset calls whose results were not bit-exact on resnet's
 * first layer (-fno-tree-loop-distribute-patterns restored them); every build so far ran it
 * out of line. */
static EK_CONV_NOINLINE EK_CONV_MAYBE_UNUSED void gather_window(const ek_conv2d_params *p, const int8_t *input,
                                           int32_t iy0, int32_t ix0, int8_t *dst,
                                           int8_t tail_fill)
{
    const int32_t c_in = p->in_c, row = p->k_w * c_in, len = p->k_h * row;
    const int8_t zero_point = (int8_t)(-p->input_offset);
    int32_t kx0, kx1;
    int8_t *d = dst;
    if (iy0 >= 0 && iy0 + (p->k_h - 1) * p->dilation_h < p->in_h && ix0 >= 0
        && ix0 + p->k_w <= p->in_w) {
        /* inside the input (most windows): each row one run of bytes, no border checks */
        const int32_t step = p->dilation_h * p->in_w * c_in;
        const int8_t *src = input + (iy0 * p->in_w + ix0) * c_in;
        for (int32_t ky = 0; ky < p->k_h; ++ky, d += row, src += step) {
            copy_short(d, src, row);
        }
    } else {
        ek_conv_valid_taps(ix0, p->in_w, p->k_w, 1, &kx0, &kx1);
        for (int32_t ky = 0; ky < p->k_h; ++ky, d += row) {
            const int32_t iy = iy0 + ky * p->dilation_h;
            if (iy < 0 || iy >= p->in_h || kx1 <= kx0) {
                fill_short(d, zero_point, row);
                continue;
            }
            fill_short(d, zero_point, kx0 * c_in);
            copy_short(d + kx0 * c_in, input + (iy * p->in_w + ix0 + kx0) * c_in,
                       (kx1 - kx0) * c_in);
            fill_short(d + kx1 * c_in, zero_point, (p->k_w - kx1) * c_in);
        }
    }
#if EK_CONV_S4
    /* the int4 widened path reads whole groups of 8 taps: the window's last group is completed
     * with tail_fill taps (0: they meet the next channel's nibbles), no tail word moved */
    fill_short(dst + len, tail_fill, (8 - (len & 7)) & 7);
#else
    if (len & 3) {
        const int32_t t = len & 3, at = len & ~3;
        for (int32_t i = t - 1; i >= 0; --i) { /* backwards: the ranges overlap */
            dst[at + 4 - t + i] = dst[at + i];
        }
        fill_short(dst + at, tail_fill, 4 - t);
    }
#endif
}
#endif

#if EK_FILTER_DSP

/* The requantisation constants of one output channel (ek_mbqm_nonneg with the shift split
 * once): shared by the pair's two pixels. */
typedef struct {
    int32_t multiplier, left, right, mask, half;
} rq_channel;

static inline rq_channel rq_channel_of(int32_t multiplier, int32_t shift)
{
    rq_channel r;
    r.multiplier = multiplier;
    r.left = shift > 0 ? shift : 0;
    r.right = r.left - shift;
    r.mask = (int32_t)((UINT32_C(1) << r.right) - 1u);
    r.half = r.mask >> 1;
    return r;
}

/* Exactly ek_conv_requantize(acc, multiplier, shift, ...): the same operations as
 * ek_mbqm_nonneg, with the per-channel part precomputed. */
static inline int32_t rq_apply(const rq_channel *r, int32_t acc, int32_t output_offset,
                               int32_t act_min, int32_t act_max)
{
    const int32_t shifted = (int32_t)((uint32_t)acc << r->left);
    const int64_t product = (int64_t)shifted * r->multiplier + (INT64_C(1) << 30);
    const int32_t high = (int32_t)(uint32_t)((uint64_t)product >> 31);
    const int32_t threshold = r->half + (int32_t)((uint32_t)high >> 31);
    const int32_t y = (high >> r->right) + ((high & r->mask) > threshold ? 1 : 0) + output_offset;
    return ek_clamp(y, act_min, act_max);
}

/* One window word of pixels A and B against one word of filter rows 0 and 1. */
#define EK_STEP2X2(xa, xb, wv0, wv1)                                                  \
    do {                                                                                \
        const uint32_t xa02_ = ek_sxtb16(xa), xa13_ = ek_sxtb16_ror8(xa);               \
        const uint32_t xb02_ = ek_sxtb16(xb), xb13_ = ek_sxtb16_ror8(xb);               \
        uint32_t wl_ = ek_sxtb16(wv0), wh_ = ek_sxtb16_ror8(wv0);                       \
        a0 = ek_smlad(wl_, xa02_, a0);                                                  \
        a0 = ek_smlad(wh_, xa13_, a0);                                                  \
        b0 = ek_smlad(wl_, xb02_, b0);                                                  \
        b0 = ek_smlad(wh_, xb13_, b0);                                                  \
        wl_ = ek_sxtb16(wv1);                                                           \
        wh_ = ek_sxtb16_ror8(wv1);                                                      \
        a1 = ek_smlad(wl_, xa02_, a1);                                                  \
        a1 = ek_smlad(wh_, xa13_, a1);                                                  \
        b1 = ek_smlad(wl_, xb02_, b1);                                                  \
        b1 = ek_smlad(wh_, xb13_, b1);                                                  \
    } while (0)

/* acc = {(A, ch0), (A, ch1), (B, ch0), (B, ch1)} += the windows (A at x, B at x +
 * EK_PAIR_MAX_LEN) against filter rows w and w + w1_offset (len, or 0 to repeat row 0 for an
 * odd last channel); see the layout for the tail word. */
static inline void dot2x2(const int8_t *x, const int8_t *w, int32_t len, int32_t w1_offset,
                          int32_t acc[4])
{
    int32_t a0 = acc[0], a1 = acc[1], b0 = acc[2], b1 = acc[3];
    const int8_t *const end = x + (len & ~3);
    while (x != end) {
        const uint32_t xa = ek_read_u32(x), xb = ek_read_u32(x + EK_PAIR_MAX_LEN);
        const uint32_t wv0 = ek_read_u32(w), wv1 = ek_read_u32(w + w1_offset);
        EK_STEP2X2(xa, xb, wv0, wv1);
        x += 4;
        w += 4;
    }
    if (len & 3) {
        const int8_t *wt = w - (4 - (len & 3)); /* the word ending at the row's last byte */
        const uint32_t xa = ek_read_u32(x), xb = ek_read_u32(x + EK_PAIR_MAX_LEN);
        const uint32_t wv0 = ek_read_u32(wt), wv1 = ek_read_u32(wt + w1_offset);
        EK_STEP2X2(xa, xb, wv0, wv1);
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = b0;
    acc[3] = b1;
}
#endif /* EK_USE_DSP */

/* The residual ADD fused after the convolution (planner mode conv_add_skip), or none. */
typedef struct {
    /* the ADD's prepared constants (ek_add_s8_prepare), its inputs exchanged where the conv
     * result is the second (the rescaled inputs' sum is symmetric) */
    const ek_add_s8_consts *add;
    const int8_t *skip;       /* the ADD's other input, same NHWC layout as the output */
} conv_epilogue;

/* Stores output element i: the conv's int8 result y, or the fused ADD of y and skip[i]
 * (skip[i] is read before out[i] is written: skip may be the output buffer). */
EK_CONV_FORCE_INLINE void conv_store(const conv_epilogue *e, int8_t *output, int32_t i,
                                     int32_t y)
{
    if (e == 0) {
        output[i] = (int8_t)y;
    } else {
        /* ek_add_s8_output: ek_add_element's value for int8 inputs, its constants prepared
         * once per call */
        output[i] = ek_add_s8_output(e->add, y, e->skip[i]);
    }
}

#if EK_FILTER_DSP || EK_S4_DSP
/* --- 1x1 convolutions: two pixels x two output channels per inner loop -----------------------
 *
 * The pointwise in-place modes on a layer with in_c % 4 == 0 (int4 filters: % 8) and an
 * effective bias (raw input bytes, the input offset folded into the bias at build time): the
 * two pixels are widened once into the scratch (pw_widen_pair) and the inner loop multiplies
 * them against filter rows oc and oc + 1 (pw_dot2x2_wide). The same loops serve int8 and packed
 * int4 filters (ek_conv_s4.c): only the filter words' unpacking and the widened layout differ.
 * (An out-of-place variant over adjacent raw pixels ran 22 instructions per 16 MACs, but no
 * MLPerf layer took it and its code pushed kws's flash past the +10% budget.) */

#if !EK_CONV_S4
/* acc = {(A, row 0), (A, row 1), (B, row 0), (B, row 1)}, starting from bias2[0] / bias2[1]
 * (rows 0 / 1): the two pixels were widened once into the scratch,
 * four words per four input bytes {A lanes 0,2; A lanes 1,3; B lanes 0,2; B lanes 1,3} (the
 * lanes SXTB16 and SXTB16 ROR #8 give, so the filter words need no shuffle), and are read
 * with one LDM: per 16 MACs one LDM, two LDR, four SXTB16 and eight SMLAD. The LDM's four
 * destinations must ascend, so the callers bind them to registers (EK_PW_WIDE_REGS). */
#if defined(__ARM_FEATURE_DSP) && !defined(EDGEKIT_EMULATE_DSP)
/* The step on registers named by the caller (the asm operands here, fixed registers in the
 * channel loops below): window x (post-incremented), rows at w and w + n, window words p q r t
 * (ascending registers, for the LDM), scratch u v, accumulators a0 a1 b0 b1. */
#define EK_PW_WIDE_STEP_ON(x, w, n, p, q, r, t, u, v, a0, a1, b0, b1)                          \
    "ldmia " x "!, {" p ", " q ", " r ", " t "}\n\t"                                            \
    "ldr " v ", [" w ", " n "]\n\t"                                                            \
    "sxtb16 " u ", " v "\n\t"                                                                  \
    "sxtb16 " v ", " v ", ror #8\n\t"                                                          \
    "smlad " a1 ", " u ", " p ", " a1 "\n\t"                                                   \
    "smlad " a1 ", " v ", " q ", " a1 "\n\t"                                                   \
    "smlad " b1 ", " u ", " r ", " b1 "\n\t"                                                   \
    "smlad " b1 ", " v ", " t ", " b1 "\n\t"                                                   \
    "ldr " v ", [" w "], #4\n\t"                                                               \
    "sxtb16 " u ", " v "\n\t"                                                                  \
    "sxtb16 " v ", " v ", ror #8\n\t"                                                          \
    "smlad " a0 ", " u ", " p ", " a0 "\n\t"                                                   \
    "smlad " a0 ", " v ", " q ", " a0 "\n\t"                                                   \
    "smlad " b0 ", " u ", " r ", " b0 "\n\t"                                                   \
    "smlad " b0 ", " v ", " t ", " b0 "\n\t"
#define EK_PW_WIDE_STEP                                                                        \
    EK_PW_WIDE_STEP_ON("%[x]", "%[w]", "%[n]", "%[p]", "%[q]", "%[r]", "%[t]", "%[u]", "%[v]",   \
                       "%[a0]", "%[a1]", "%[b0]", "%[b1]")
/* The steps of a row pair until w reaches end: one first where the row's 4-byte steps (operand
 * `n`: the row length) are odd, then two per pass. */
#define EK_PW_STEPS(n, STEP)                                                                   \
    "tst %[" n "], #4\n\t"                                                                     \
    "beq 2f\n\t" STEP                                                                          \
    "cmp %[w], %[end]\n\t"                                                                     \
    "beq 3f\n"                                                                                 \
    "2:\n\t" STEP STEP                                                                         \
    "cmp %[w], %[end]\n\t"                                                                     \
    "bne 2b\n"                                                                                 \
    "3:\n"
/* EK_PW_WIDE_STEP's registers: the window words in ascending registers for its LDM (r7 left
 * out: Thumb's frame pointer), the filter word and its other half anywhere. */
#define EK_PW_WIDE_REGS                                                                        \
    register uint32_t p __asm__("r4"), q __asm__("r5"), r __asm__("r6"), t __asm__("r8");     \
    uint32_t u, v
#endif

/* One step in C: window words x[0..3] against the filter words at w and w + stride. */
#define PW_WIDE_STEP_C(x, w, stride)                                                           \
    do {                                                                                       \
        uint32_t wv_ = ek_read_u32((w) + (stride));                                            \
        a1 = ek_smlad(ek_sxtb16(wv_), (x)[0], a1);                                             \
        a1 = ek_smlad(ek_sxtb16_ror8(wv_), (x)[1], a1);                                        \
        b1 = ek_smlad(ek_sxtb16(wv_), (x)[2], b1);                                             \
        b1 = ek_smlad(ek_sxtb16_ror8(wv_), (x)[3], b1);                                        \
        wv_ = ek_read_u32(w);                                                                  \
        a0 = ek_smlad(ek_sxtb16(wv_), (x)[0], a0);                                             \
        a0 = ek_smlad(ek_sxtb16_ror8(wv_), (x)[1], a0);                                        \
        b0 = ek_smlad(ek_sxtb16(wv_), (x)[2], b0);                                             \
        b0 = ek_smlad(ek_sxtb16_ror8(wv_), (x)[3], b0);                                        \
    } while (0)

static EK_CONV_NOINLINE EK_CONV_MAYBE_UNUSED void pw_dot2x2_wide(const uint32_t *x,
                                                                 const int8_t *w, int32_t n,
                                                                 const int32_t *bias2,
                                                                 int32_t acc[4])
{
    int32_t a0 = bias2[0], a1 = bias2[1], b0 = bias2[0], b1 = bias2[1];
#if defined(__ARM_FEATURE_DSP) && !defined(EDGEKIT_EMULATE_DSP)
    const int8_t *const end = w + n; /* the loop ends with row 0 */
    EK_PW_WIDE_REGS;
    __asm__ volatile(EK_PW_STEPS("n", EK_PW_WIDE_STEP)
                     : [x] "+r"(x), [w] "+r"(w), [a0] "+r"(a0), [a1] "+r"(a1), [b0] "+r"(b0),
                       [b1] "+r"(b1), [p] "=&r"(p), [q] "=&r"(q), [r] "=&r"(r), [t] "=&r"(t),
                       [u] "=&r"(u), [v] "=&r"(v)
                     : [n] "r"(n), [end] "r"(end)
                     : "cc", "memory");
#else
    for (const int8_t *const end = w + n; w != end; w += 4, x += 4) {
        PW_WIDE_STEP_C(x, w, n);
    }
#endif
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = b0;
    acc[3] = b1;
}

#if EK_PW_PAIRED
/* pw_dot2x2_wide over a paired filter (ek_conv.h `paired_filter`): both rows' words of a step
 * are adjacent, so one LDRD reads them, and a step is one LDM, one LDRD, four SXTB16 and eight
 * SMLAD: 14 instructions per 16 MACs, from 15. n: the row length (bytes). */
#if defined(__ARM_FEATURE_DSP) && !defined(EDGEKIT_EMULATE_DSP)
/* The paired step on registers named by the caller (as EK_PW_WIDE_STEP_ON; s: the second
 * row's word). */
#define EK_PW_PAIRED_STEP_ON(x, w, p, q, r, t, u, v, s, a0, a1, b0, b1)                        \
    "ldmia " x "!, {" p ", " q ", " r ", " t "}\n\t"                                            \
    "ldrd " v ", " s ", [" w "], #8\n\t"                                                       \
    "sxtb16 " u ", " v "\n\t"                                                                  \
    "sxtb16 " v ", " v ", ror #8\n\t"                                                          \
    "smlad " a0 ", " u ", " p ", " a0 "\n\t"                                                   \
    "smlad " a0 ", " v ", " q ", " a0 "\n\t"                                                   \
    "smlad " b0 ", " u ", " r ", " b0 "\n\t"                                                   \
    "smlad " b0 ", " v ", " t ", " b0 "\n\t"                                                   \
    "sxtb16 " u ", " s "\n\t"                                                                  \
    "sxtb16 " s ", " s ", ror #8\n\t"                                                          \
    "smlad " a1 ", " u ", " p ", " a1 "\n\t"                                                   \
    "smlad " a1 ", " s ", " q ", " a1 "\n\t"                                                   \
    "smlad " b1 ", " u ", " r ", " b1 "\n\t"                                                   \
    "smlad " b1 ", " s ", " t ", " b1 "\n\t"
#define EK_PW_PAIRED_STEP                                                                      \
    EK_PW_PAIRED_STEP_ON("%[x]", "%[w]", "%[p]", "%[q]", "%[r]", "%[t]", "%[u]", "%[v]",         \
                         "%[s]", "%[a0]", "%[a1]", "%[b0]", "%[b1]")
#endif

static EK_CONV_NOINLINE void pw_dot2x2_paired(const uint32_t *x, const int8_t *w, int32_t n,
                                              const int32_t *bias2, int32_t acc[4])
{
    int32_t a0 = bias2[0], a1 = bias2[1], b0 = bias2[0], b1 = bias2[1];
#if defined(__ARM_FEATURE_DSP) && !defined(EDGEKIT_EMULATE_DSP)
    EK_PW_WIDE_REGS;
    /* n's register is the step's second filter word once the loop's end and the parity test
     * have read it: the loop needs all fourteen others */
    uint32_t s = (uint32_t)n;
    const int8_t *end;
    __asm__ volatile("add %[end], %[w], %[s], lsl #1\n\t" EK_PW_STEPS("s", EK_PW_PAIRED_STEP)
                     : [x] "+r"(x), [w] "+r"(w), [a0] "+r"(a0), [a1] "+r"(a1), [b0] "+r"(b0),
                       [b1] "+r"(b1), [p] "=&r"(p), [q] "=&r"(q), [r] "=&r"(r), [t] "=&r"(t),
                       [u] "=&r"(u), [v] "=&r"(v), [s] "+r"(s), [end] "=&r"(end)
                     :
                     : "cc", "memory");
#else
    for (const int8_t *const end = w + 2 * n; w != end; w += 8, x += 4) {
        PW_WIDE_STEP_C(x, w, 4); /* the second row's word right after the first's */
    }
#endif
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = b0;
    acc[3] = b1;
}
#endif

/* pw_dot2x2_wide for a short window whose length n (>= 4) is not a multiple of 4: rows n
 * bytes apart, n / 4 whole steps, then the last window group, which holds 4 - n % 4 zero taps
 * and the last n % 4 taps, against the filter words that END at each row's last byte (the zero
 * taps meet the bytes before them), so no byte past a row is read. */
static EK_CONV_NOINLINE EK_CONV_MAYBE_UNUSED void dot2x2_wide_tail(const uint32_t *x, const int8_t *w, int32_t n,
                                              const int32_t *bias2, int32_t acc[4])
{
    int32_t a0 = bias2[0], a1 = bias2[1], b0 = bias2[0], b1 = bias2[1];
    const int8_t *const end = w + (n & ~3);
#if defined(__ARM_FEATURE_DSP) && !defined(EDGEKIT_EMULATE_DSP)
    EK_PW_WIDE_REGS;
    if (n & 4) { /* an odd number of whole steps: one first, then pairs as pw_dot2x2_wide */
        __asm__ volatile(EK_PW_WIDE_STEP
                         : [x] "+r"(x), [w] "+r"(w), [a0] "+r"(a0), [a1] "+r"(a1),
                           [b0] "+r"(b0), [b1] "+r"(b1), [p] "=&r"(p), [q] "=&r"(q),
                           [r] "=&r"(r), [t] "=&r"(t), [u] "=&r"(u), [v] "=&r"(v)
                         : [n] "r"(n)
                         : "memory");
    }
    if (w != end) {
        __asm__ volatile("2:\n\t" EK_PW_WIDE_STEP EK_PW_WIDE_STEP
                         "cmp %[w], %[end]\n\t"
                         "bne 2b\n"
                         : [x] "+r"(x), [w] "+r"(w), [a0] "+r"(a0), [a1] "+r"(a1),
                           [b0] "+r"(b0), [b1] "+r"(b1), [p] "=&r"(p), [q] "=&r"(q),
                           [r] "=&r"(r), [t] "=&r"(t), [u] "=&r"(u), [v] "=&r"(v)
                         : [n] "r"(n), [end] "r"(end)
                         : "cc", "memory");
    }
#else
    for (; w != end; w += 4, x += 4) {
        PW_WIDE_STEP_C(x, w, n);
    }
#endif
    w -= 4 - (n & 3);
    PW_WIDE_STEP_C(x, w, n);
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = b0;
    acc[3] = b1;
}

/* Pixels a and b (n bytes each, n % 4 == 0) widened into dst in pw_dot2x2_wide's layout. */
static inline void pw_widen_pair(const int8_t *a, const int8_t *b, int32_t n, uint32_t *dst)
{
    for (const int8_t *const end = a + n; a != end; a += 4, b += 4, dst += 4) {
        const uint32_t va = ek_read_u32(a), vb = ek_read_u32(b);
        dst[0] = ek_sxtb16(va);
        dst[1] = ek_sxtb16_ror8(va);
        dst[2] = ek_sxtb16(vb);
        dst[3] = ek_sxtb16_ror8(vb);
    }
}
#else
/* Packed int4 filters: a filter word v holds 8 weights w0..w7 (nibble j = w_j, TFLite's
 * low-nibble-first order). As in ek_conv_s4_dsp.h, (v << (12 - 4k)) & 0xF000F000 holds w_k in
 * the top of its low 16-bit lane and w_k+4 in the top of its high lane: the two weights times
 * 4096, SMLAD-ready in one AND with a shifted operand (no sign extension). The two pixels are
 * widened so that one LDRD gives the matching input lanes of both: per 8 input bytes the
 * scratch holds {A x0,x4; B x0,x4; A x1,x5; B x1,x5; A x2,x6; B x2,x6; A x3,x7; B x3,x7}.
 * Per 32 MACs (8 input bytes, two rows, two pixels): two LDR, four LDRD, eight AND and
 * sixteen SMLAD, fewer than the int8 loop's 32 instructions.
 *
 * Exactness: x raw int8 and w in [-8, 7], so x * 4096 w lies in [-1016 * 2^12, 1024 * 2^12]: over
 * at most PW_S4_MAX_C_IN taps the loop's sum from 0 stays inside int32 and is 4096 times the
 * exact sum. The arithmetic shift by 12 loses nothing, and acc = bias + sum wraps as the
 * reference's accumulator does (the effective bias carries the input offset). */
#define PW_S4_MAX_C_IN 504
#if defined(__ARM_FEATURE_DSP) && !defined(EDGEKIT_EMULATE_DSP)
/* On registers named by the caller (the asm operands here, fixed registers in the channel
 * loops below): window x, rows at w and w + n, window words p q, nibbles t, filter words v0
 * (row 0) and v1 (row 1), the mask m, accumulators a0 a1 b0 b1. */
#define EK_PW_S4_LANES_ON(shift, address, p, q, t, m, v0, v1, a0, a1, b0, b1)                  \
    "ldrd " p ", " q ", " address "\n\t"                                                       \
    "and " t ", " m ", " v0 ", lsl #" shift "\n\t"                                             \
    "smlad " a0 ", " t ", " p ", " a0 "\n\t"                                                   \
    "smlad " b0 ", " t ", " q ", " b0 "\n\t"                                                   \
    "and " t ", " m ", " v1 ", lsl #" shift "\n\t"                                             \
    "smlad " a1 ", " t ", " p ", " a1 "\n\t"                                                   \
    "smlad " b1 ", " t ", " q ", " b1 "\n\t"
#define EK_PW_S4_STEP_ON(x, w, n, p, q, t, m, v0, v1, a0, a1, b0, b1)                         \
    "ldr " v1 ", [" w ", " n "]\n\t"                                                           \
    "ldr " v0 ", [" w "], #4\n\t"                                                              \
    EK_PW_S4_LANES_ON("12", "[" x "], #32", p, q, t, m, v0, v1, a0, a1, b0, b1)                 \
    EK_PW_S4_LANES_ON("8", "[" x ", #-24]", p, q, t, m, v0, v1, a0, a1, b0, b1)                 \
    EK_PW_S4_LANES_ON("4", "[" x ", #-16]", p, q, t, m, v0, v1, a0, a1, b0, b1)                 \
    EK_PW_S4_LANES_ON("0", "[" x ", #-8]", p, q, t, m, v0, v1, a0, a1, b0, b1)
#define EK_PW_S4_STEP                                                                           \
    EK_PW_S4_STEP_ON("%[x]", "%[w]", "%[n]", "%[p]", "%[q]", "%[t]", "%[m]", "%[v0]", "%[v1]",  \
                     "%[a0]", "%[a1]", "%[b0]", "%[b1]")
#endif

#if !(defined(__ARM_FEATURE_DSP) && !defined(EDGEKIT_EMULATE_DSP))
/* EK_PW_S4_STEP in C, over the filter bytes w .. end of two rows `stride` bytes apart against
 * interleaved pixel pairs x: nibble k of each byte in the top of its lane (x4096, no sign
 * extension), SMLAD against the pixels. Returns x past the pairs read. */
static const uint32_t *s4_dot2x2_portable(const uint32_t *x, const int8_t *w, const int8_t *end,
                                          int32_t stride, int32_t *a0, int32_t *a1, int32_t *b0,
                                          int32_t *b1)
{
    for (; w != end; w += 4, x += 8) {
        const uint32_t v0 = ek_read_u32(w), v1 = ek_read_u32(w + stride);
        for (int32_t k = 0; k < 4; ++k) {
            const uint32_t shift = (uint32_t)(12 - 4 * k);
            const uint32_t m0 = (v0 << shift) & 0xF000F000u, m1 = (v1 << shift) & 0xF000F000u;
            *a0 = ek_smlad(m0, x[2 * k], *a0);
            *b0 = ek_smlad(m0, x[2 * k + 1], *b0);
            *a1 = ek_smlad(m1, x[2 * k], *a1);
            *b1 = ek_smlad(m1, x[2 * k + 1], *b1);
        }
    }
    return x;
}
#endif

/* acc = {(A, row 0), (A, row 1), (B, row 0), (B, row 1)} from bias2[0] / bias2[1]; the
 * filter rows are n = in_c / 2 bytes apart (n % 4 == 0). */
static EK_CONV_NOINLINE void pw_dot2x2_wide(const uint32_t *x, const int8_t *w, int32_t n,
                                            const int32_t *bias2, int32_t acc[4])
{
    int32_t a0 = 0, a1 = 0, b0 = 0, b1 = 0;
#if defined(__ARM_FEATURE_DSP) && !defined(EDGEKIT_EMULATE_DSP)
    const int8_t *const end = w + n; /* the loop ends with row 0 */
    const uint32_t mask = 0xF000F000u;
    uint32_t p, q, t, v0, v1;
    __asm__ volatile("tst %[n], #4\n\t" /* an odd number of 4-byte steps: one, then pairs */
                     "beq 2f\n\t" EK_PW_S4_STEP
                     "cmp %[w], %[end]\n\t"
                     "beq 3f\n"
                     "2:\n\t" EK_PW_S4_STEP EK_PW_S4_STEP
                     "cmp %[w], %[end]\n\t"
                     "bne 2b\n"
                     "3:\n"
                     : [x] "+r"(x), [w] "+r"(w), [a0] "+r"(a0), [a1] "+r"(a1), [b0] "+r"(b0),
                       [b1] "+r"(b1), [p] "=&r"(p), [q] "=&r"(q), [t] "=&r"(t),
                       [v0] "=&r"(v0), [v1] "=&r"(v1)
                     : [n] "r"(n), [end] "r"(end), [m] "r"(mask)
                     : "cc", "memory");
#else
    x = s4_dot2x2_portable(x, w, w + n, n, &a0, &a1, &b0, &b1);
#endif
    /* exact multiples of 4096: the arithmetic shift loses nothing */
    acc[0] = (int32_t)((uint32_t)bias2[0] + (uint32_t)(a0 >> 12));
    acc[1] = (int32_t)((uint32_t)bias2[1] + (uint32_t)(a1 >> 12));
    acc[2] = (int32_t)((uint32_t)bias2[0] + (uint32_t)(b0 >> 12));
    acc[3] = (int32_t)((uint32_t)bias2[1] + (uint32_t)(b1 >> 12));
}

/* pw_dot2x2_wide for windows longer than PW_S4_MAX_C_IN taps (a 3x3 conv over 64 channels):
 * rows `stride` bytes apart, the n bytes (n % 4 == 0) in runs of at most PW_S4_MAX_C_IN taps,
 * each run's x4096 sums exact in int32 and shifted down before the next. */
#define PW_S4_RUN_BYTES (PW_S4_MAX_C_IN / 2)
static EK_CONV_NOINLINE EK_CONV_MAYBE_UNUSED void pw_dot2x2_wide_runs(const uint32_t *x, const int8_t *w,
                                                 int32_t stride, int32_t n,
                                                 const int32_t *bias2, int32_t acc[4])
{
    uint32_t t0 = (uint32_t)bias2[0], t1 = (uint32_t)bias2[1];
    uint32_t u0 = (uint32_t)bias2[0], u1 = (uint32_t)bias2[1];
    while (n > 0) {
        const int32_t run = n < PW_S4_RUN_BYTES ? n : PW_S4_RUN_BYTES;
        const int8_t *const end = w + run;
        int32_t a0 = 0, a1 = 0, b0 = 0, b1 = 0;
        n -= run;
#if defined(__ARM_FEATURE_DSP) && !defined(EDGEKIT_EMULATE_DSP)
        const uint32_t mask = 0xF000F000u;
        uint32_t p, q, t, v0, v1;
        while (w != end) { /* pw_dot2x2_wide's step, its row offset the stride */
            __asm__ volatile(EK_PW_S4_STEP
                             : [x] "+r"(x), [w] "+r"(w), [a0] "+r"(a0), [a1] "+r"(a1),
                               [b0] "+r"(b0), [b1] "+r"(b1), [p] "=&r"(p), [q] "=&r"(q),
                               [t] "=&r"(t), [v0] "=&r"(v0), [v1] "=&r"(v1)
                             : [n] "r"(stride), [m] "r"(mask)
                             : "memory");
        }
#else
        x = s4_dot2x2_portable(x, w, end, stride, &a0, &a1, &b0, &b1);
        w = end;
#endif
        t0 += (uint32_t)(a0 >> 12); /* exact multiples of 4096 */
        t1 += (uint32_t)(a1 >> 12);
        u0 += (uint32_t)(b0 >> 12);
        u1 += (uint32_t)(b1 >> 12);
    }
    acc[0] = (int32_t)t0;
    acc[1] = (int32_t)t1;
    acc[2] = (int32_t)u0;
    acc[3] = (int32_t)u1;
}

/* Words {x0,x4}, {x1,x5}, {x2,x6}, {x3,x7} of the 8 bytes at src, at dst[0], [2], [4], [6]
 * (the other pixel's words interleave). */
static inline void pw_widen8_s4(const int8_t *src, uint32_t *dst)
{
    const uint32_t lo = ek_read_u32(src), hi = ek_read_u32(src + 4);
    const uint32_t l02 = ek_sxtb16(lo), l13 = ek_sxtb16_ror8(lo);
    const uint32_t h46 = ek_sxtb16(hi), h57 = ek_sxtb16_ror8(hi);
    dst[0] = (l02 & 0xFFFFu) | (h46 << 16);
    dst[2] = (l13 & 0xFFFFu) | (h57 << 16);
    dst[4] = (l02 >> 16) | (h46 & 0xFFFF0000u);
    dst[6] = (l13 >> 16) | (h57 & 0xFFFF0000u);
}

/* The n bytes at src (n % 8 == 0) widened into one pixel's words of the int4 layout at dst.
 * Out of line, called per pixel: one copy of the widening (flash) for a loop over channels. */
static EK_CONV_NOINLINE void pw_widen_s4(const int8_t *src, int32_t n, uint32_t *dst)
{
    for (const int8_t *const end = src + n; src != end; src += 8, dst += 8) {
        pw_widen8_s4(src, dst);
    }
}

/* Pixels a and b (n bytes each, n % 8 == 0) widened into dst in the int4 layout. */
static inline void pw_widen_pair(const int8_t *a, const int8_t *b, int32_t n, uint32_t *dst)
{
    pw_widen_s4(a, n, dst);
    pw_widen_s4(b, n, dst + 1);
}
#endif

/* Whether a 1x1 layer (the caller checked the window) takes the two-pixel path: DSP arithmetic
 * on raw bytes (filter offset 0, an effective bias), whole words per pixel, two channels. */
static inline int pw_pairs_apply(const ek_conv2d_params *p)
{
    if (!p->wide_scratch) {
        return 0;
    }
#if EK_CONV_S4
    return p->filter_offset == 0 && p->effective_bias != 0 && (p->in_c & 7) == 0
           && p->in_c > 0 && p->in_c <= PW_S4_MAX_C_IN && p->out_c >= 2;
#else
    return p->filter_offset == 0 && p->effective_bias != 0 && (p->in_c & 3) == 0
           && p->in_c > 0 && p->out_c >= 2;
#endif
}

/* What the two-pixel path reads per channel, in a local the output's int8 stores cannot alias
 * (through the params pointer they could, and every field would be reloaded after a store). */
typedef struct {
    const int8_t *filter;
    const int32_t *bias; /* the effective bias */
    const int32_t *multipliers, *shifts;
    int32_t c_in, c_out, output_offset, act_min, act_max;
    int32_t paired; /* ek_conv.h `paired_filter` */
    uint32_t k_hi_unit; /* 1 + 2 * output_offset: ek_requant_fast_k's factor */
    int32_t skips; /* some pair of channels 2j, 2j + 1 has both multipliers 0 (pw_inplace_pairs) */
} pw_layer;

EK_CONV_FORCE_INLINE pw_layer pw_layer_of(const ek_conv2d_params *p, const int8_t *filter)
{
    pw_layer l;
    l.filter = filter;
    l.bias = p->effective_bias;
    l.multipliers = p->multipliers;
    l.shifts = p->shifts;
    l.c_in = p->in_c;
    l.c_out = p->out_c;
    l.output_offset = p->output_offset;
    l.act_min = p->act_min;
    l.act_max = p->act_max;
    l.paired = p->paired_filter;
    l.k_hi_unit = 1u + 2u * (uint32_t)p->output_offset;
    l.skips = 0;
    return l;
}

/* How the two-pixel path requantises a layer (a constant in each instantiation): every
 * channel's ek_requant_fast, clamped to the activation range or, where that range is all of
 * int8, by one SSAT; where some channel's right shift is too long for it, the wide fast form
 * (the offset added after the shift: one instruction more per output), clamped either way;
 * else ek_conv_requantize. */
enum { PW_EXACT, PW_FAST, PW_FAST_FULL, PW_WIDE, PW_WIDE_FULL };

static inline int pw_requant_mode(const ek_conv2d_params *p)
{
    const int full = p->act_min == -128 && p->act_max == 127;
    if (REQUANT_FAST_LAYER(p, p->out_c)) {
        return full ? PW_FAST_FULL : PW_FAST;
    }
#if EK_REQUANT_WIDE
    if (requant_all(p->multipliers, p->shifts, p->out_c, 31)) {
        return full ? PW_WIDE_FULL : PW_WIDE;
    }
#endif
    return PW_EXACT;
}

/* Channel oc's results for pixels A and B (*ya, *yb), requantised with one load of its
 * constants. */
EK_CONV_FORCE_INLINE void pw_requant_channel(const pw_layer *l, int32_t oc, int32_t acc_a,
                                             int32_t acc_b, int mode, int32_t *ya, int32_t *yb)
{
    const int32_t multiplier = l->multipliers[oc], shift = l->shifts[oc];
    if (mode == PW_WIDE || mode == PW_WIDE_FULL) {
        const int32_t k_hi = ek_requant_wide_k(shift);
        *ya = ek_requant_fast(acc_a, multiplier, k_hi, -shift - 1) + l->output_offset;
        *yb = ek_requant_fast(acc_b, multiplier, k_hi, -shift - 1) + l->output_offset;
        if (mode == PW_WIDE_FULL) {
            *ya = ek_ssat8(*ya);
            *yb = ek_ssat8(*yb);
        } else {
            *ya = ek_clamp(*ya, l->act_min, l->act_max);
            *yb = ek_clamp(*yb, l->act_min, l->act_max);
        }
    } else if (mode != PW_EXACT) {
        /* ek_requant_fast_k(shift, output_offset) from the right shift ~shift = -shift - 1:
         * one instruction a channel fewer than from the shift */
        int32_t right_m1 = ~shift;
#if defined(__GNUC__)
        __asm__("" : "+r"(right_m1)); /* else GCC folds the shift below back into -2 - shift */
#endif
        const int32_t k_hi = (int32_t)(l->k_hi_unit << (right_m1 + 1 - EK_REQUANT_SHORTEST));
        *ya = ek_requant_fast(acc_a, multiplier, k_hi, right_m1);
        *yb = ek_requant_fast(acc_b, multiplier, k_hi, right_m1);
        if (mode == PW_FAST_FULL) {
            *ya = ek_ssat8(*ya);
            *yb = ek_ssat8(*yb);
        } else {
            *ya = ek_clamp(*ya, l->act_min, l->act_max);
            *yb = ek_clamp(*yb, l->act_min, l->act_max);
        }
    } else {
        *ya = ek_conv_requantize(acc_a, multiplier, shift, l->output_offset, l->act_min,
                                 l->act_max);
        *yb = ek_conv_requantize(acc_b, multiplier, shift, l->output_offset, l->act_min,
                                 l->act_max);
    }
}

/* pw_requant_channel stored at out_a[oc] and out_b[oc] (plain stores: no fused ADD here). */
EK_CONV_FORCE_INLINE void pw_store_channel(const pw_layer *l, int8_t *out_a, int8_t *out_b,
                                           int32_t oc, int32_t acc_a, int32_t acc_b, int mode)
{
    int32_t ya, yb;
    pw_requant_channel(l, oc, acc_a, acc_b, mode, &ya, &yb);
    out_a[oc] = (int8_t)ya;
    out_b[oc] = (int8_t)yb;
}

/* One channel pair's dot products from the widened pair (paired: the filter's layout). */
static inline void pw_dot_pair(const uint32_t *x, const int8_t *w, int32_t c_in,
                               const int32_t *bias2, int32_t acc[4], int32_t paired)
{
#if !EK_CONV_S4 && EK_PW_PAIRED == 1
    (void)paired;
    pw_dot2x2_paired(x, w, c_in, bias2, acc);
#elif !EK_CONV_S4 && EK_PW_PAIRED == 2
    if (paired) {
        pw_dot2x2_paired(x, w, c_in, bias2, acc);
    } else {
        pw_dot2x2_wide(x, w, c_in, bias2, acc);
    }
#else
    (void)paired;
    pw_dot2x2_wide(x, w, EK_CONV_S4 ? c_in / 2 : c_in, bias2, acc);
#endif
}

/* Bytes of one filter row (in_c weights). */
#define PW_ROW_BYTES(c_in) (EK_CONV_S4 ? (c_in) / 2 : (c_in))

/* Every output channel of the pair widened in x, stored at out_a and out_b (the same row for a
 * lone pixel: two stores of one value). An odd last channel is computed as the second row of
 * the pair ending at it. Out of line once per requantisation mode, with the layer copied into a
 * local the output's stores cannot alias. */
EK_CONV_FORCE_INLINE void pw_channels(const pw_layer *layer, const uint32_t *x, int8_t *out_a,
                                      int8_t *out_b, int mode)
{
    const pw_layer l = *layer;
    const int32_t c_in = l.c_in, c_out = l.c_out, row = PW_ROW_BYTES(c_in);
    const int8_t *w = l.filter;
    int32_t oc = 0;
    for (; oc + 2 <= c_out; oc += 2, w += 2 * row) {
        int32_t acc[4];
        pw_dot_pair(x, w, c_in, l.bias + oc, acc, l.paired);
        pw_store_channel(&l, out_a, out_b, oc, acc[0], acc[2], mode);
        pw_store_channel(&l, out_a, out_b, oc + 1, acc[1], acc[3], mode);
    }
    if (oc < c_out) { /* rows oc - 1 and oc (an odd out_c: never a paired filter) */
        int32_t acc[4];
        pw_dot_pair(x, w - row, c_in, l.bias + oc - 1, acc, 0);
        pw_store_channel(&l, out_a, out_b, oc, acc[1], acc[3], mode);
    }
}

static EK_CONV_NOINLINE EK_CONV_MAYBE_UNUSED void pw_channels_fast(const pw_layer *l,
                                                                   const uint32_t *x, int8_t *out_a,
                                                                   int8_t *out_b)
{
    pw_channels(l, x, out_a, out_b, PW_FAST);
}

static EK_CONV_NOINLINE EK_CONV_MAYBE_UNUSED void pw_channels_full(const pw_layer *l, const uint32_t *x,
                                              int8_t *out_a, int8_t *out_b)
{
    pw_channels(l, x, out_a, out_b, PW_FAST_FULL);
}

static EK_CONV_NOINLINE EK_CONV_MAYBE_UNUSED void pw_channels_exact(const pw_layer *l,
                                                                    const uint32_t *x, int8_t *out_a,
                                                                    int8_t *out_b)
{
    pw_channels(l, x, out_a, out_b, PW_EXACT);
}

#if EK_REQUANT_WIDE
static EK_CONV_NOINLINE EK_CONV_MAYBE_UNUSED void pw_channels_wide(const pw_layer *l,
                                                                   const uint32_t *x, int8_t *out_a,
                                                                   int8_t *out_b)
{
    pw_channels(l, x, out_a, out_b, PW_WIDE);
}

static EK_CONV_NOINLINE EK_CONV_MAYBE_UNUSED void pw_channels_wide_full(const pw_layer *l, const uint32_t *x,
                                                   int8_t *out_a, int8_t *out_b)
{
    pw_channels(l, x, out_a, out_b, PW_WIDE_FULL);
}
#endif

#if defined(__ARM_FEATURE_DSP) && !defined(EDGEKIT_EMULATE_DSP) && defined(__GNUC__)
#define EK_CHANNELS_ASM 1
/* The channel loop of the two-pixel paths (pw_channels, conv_wide_channels) with the int8-range
 * clamp (PW_FAST_FULL, PW_WIDE_FULL) in assembly: in C, the loop state, the four accumulators
 * and the 14 registers of the MAC loop do not fit the core's registers together, and GCC
 * passed the accumulators through memory and reloaded the layer per pair (78 instructions a
 * channel pair outside the MAC loop). Here the MAC loop keeps all 14 (four steps a pass), the
 * loop state lives in a 40-byte frame read with LDRD/LDM, and each output is ek_requant_fast,
 * SSAT and a post-indexed STRB: 7 instructions (the wide form 8), the channel's constants 4
 * more (about 50 a pair in all). The pairs of rows only: an odd last channel stays in C.
 *
 * r0: the widened pair, r1: out_a, r2: out_b, r3: the pw_layer (its field offsets are checked
 * below), the row length (conv: fifth argument). Frame: 0 out_a, 4 out_b, 8 multipliers, 12
 * shifts, 16 k_hi_unit (the wide form: the output offset), 20 out_a's end, 24 the widened
 * pair, 28 the next row pair, 32 the next bias pair, 36 the pair's row bytes (paired: both
 * rows; else one row). */
_Static_assert(offsetof(pw_layer, filter) == 0 && offsetof(pw_layer, bias) == 4
                   && offsetof(pw_layer, multipliers) == 8 && offsetof(pw_layer, shifts) == 12
                   && offsetof(pw_layer, c_in) == 16 && offsetof(pw_layer, c_out) == 20
                   && offsetof(pw_layer, output_offset) == 24
                   && offsetof(pw_layer, k_hi_unit) == 40,
               "the channel loops in assembly read pw_layer by these offsets");

/* T's starting value (ek_requant_fast) in r2 (low) and r3 (high) from acc and k. */
#if EK_REQUANT_SHORTEST == 1
#define EK_ASM_REQUANT_START(acc, k)                                                           \
    "add r3, " k ", " acc ", asr #31\n\t"                                                      \
    "lsl r2, r3, #31\n\t"                                                                      \
    "orr r2, r2, #0x40000000\n\t"                                                              \
    "asr r3, r3, #1\n\t"
#else
#define EK_ASM_REQUANT_START(acc, k)                                                           \
    "and r2, " acc ", #0x80000000\n\t"                                                         \
    "orr r2, r2, #0x40000000\n\t"                                                              \
    "add r3, " k ", " acc ", asr #31\n\t"
#endif

/* One output: acc (register) requantised with multiplier m, k (ek_requant_fast_k) and right
 * shift - 1 rm, then `post` (the wide form adds the output offset), saturated and stored through out
 * (post-incremented); r2, r3 scratch. */
#define EK_ASM_REQUANT_STORE(acc, m, k, rm, out, post)                                         \
    EK_ASM_REQUANT_START(acc, k)                                                               \
    "smlal r2, r3, " acc ", " m "\n\t"                                                         \
    "asr r3, r3, " rm "\n\t" post                                                              \
    "ssat r3, #8, r3\n\t"                                                                      \
    "strb r3, [" out "], #1\n\t"

/* The MAC loops' steps on fixed registers: x r0, w r1, the row offset r3 (the paired step: its
 * second word), window words r4-r7, a0 r8, a1 r9, b0 r10, b1 r11, scratch r12 and lr. */
#define EK_ASM_PAIRED_STEP                                                                     \
    EK_PW_PAIRED_STEP_ON("r0", "r1", "r4", "r5", "r6", "r7", "r12", "lr", "r3", "r8", "r9",      \
                         "r10", "r11")
#define EK_ASM_ROWS_STEP                                                                       \
    EK_PW_WIDE_STEP_ON("r0", "r1", "r3", "r4", "r5", "r6", "r7", "r12", "lr", "r8", "r9", "r10",  \
                       "r11")

/* The frame from the arguments; r8 holds the frame's word 36, `k_unit` is the pw_layer field
 * kept at word 16; then (label 1) each pair's accumulators from the bias. */
#define EK_ASM_CHANNELS_ENTER(k_unit, row_bytes)                                               \
    EK_ASM_CHANNELS_FRAME(k_unit, row_bytes)                                                   \
    "1:\n\t" /* a channel pair: the accumulators from the bias */                              \
    "ldrd r0, r1, [sp, #24]\n\t"                                                               \
    "ldrd r2, r3, [sp, #32]\n\t"                                                               \
    "ldrd r8, r9, [r2]\n\t"                                                                    \
    "ldrd r10, r11, [r2], #8\n\t"                                                              \
    "str r2, [sp, #32]\n\t"

#define EK_ASM_CHANNELS_FRAME(k_unit, row_bytes)                                               \
    "push {r4-r11, lr}\n\t"                                                                    \
    "sub sp, sp, #40\n\t"                                                                      \
    "ldm r3, {r4, r5, r6, r7, r8, r9}\n\t" /* filter, bias, multipliers, shifts, c_in, c_out */ \
    "ldr r10, [r3, #" k_unit "]\n\t"                                                           \
    "bic r9, r9, #1\n\t"                                                                       \
    "add r9, r1, r9\n\t" row_bytes                                                             \
    "strd r1, r2, [sp]\n\t"                                                                    \
    "strd r6, r7, [sp, #8]\n\t"                                                                \
    "strd r10, r9, [sp, #16]\n\t"                                                              \
    "strd r0, r4, [sp, #24]\n\t"                                                               \
    "strd r5, r8, [sp, #32]\n\t"

/* The MAC loop of `step` to r2: first the steps beyond a multiple of four, then four a pass.
 * Which: bits of r3 (the frame's word 36) moved into the flags by one LSLS by `to_flags`, N the
 * odd step, C two more; a step sets no flags (the paired step overwrites r3). */
#define EK_ASM_MAC_LOOP(step, to_flags)                                                        \
    "lsls r12, r3, #" to_flags "\n\t"                                                          \
    "bpl 4f\n\t" step                                                                          \
    "4:\n\t"                                                                                   \
    "bcc 5f\n\t" step step                                                                     \
    "5:\n\t"                                                                                   \
    "cmp r1, r2\n\t"                                                                           \
    "beq 3f\n"                                                                                 \
    "2:\n\t" step step step step                                                               \
    "cmp r1, r2\n\t"                                                                           \
    "bne 2b\n"                                                                                 \
    "3:\n\t"

/* Requantise and store the pair's four outputs (r1: the next row pair), then the next pair or
 * return; `k_hi(rm)` sets lr to the channel's k_hi from its right shift - 1 in rm (r4: the
 * frame's word 16; r2 free). */
#define EK_ASM_CHANNELS_STORE(k_hi, post)                                                      \
    "str r1, [sp, #28]\n\t"                                                                    \
    "ldm sp, {r0, r1, r2, r3, r4}\n\t" /* out_a, out_b, multipliers, shifts, frame word 16 */ \
    "ldrd r5, r6, [r2], #8\n\t"                                                                \
    "ldrd r7, r12, [r3], #8\n\t"                                                               \
    "strd r2, r3, [sp, #8]\n\t"                                                                \
    "mvn r7, r7\n\t" /* channel 0 */                                                           \
    k_hi("r7")                                                                                 \
    EK_ASM_REQUANT_STORE("r8", "r5", "lr", "r7", "r0", post)                                   \
    EK_ASM_REQUANT_STORE("r10", "r5", "lr", "r7", "r1", post)                                  \
    "mvn r12, r12\n\t" /* channel 1 */                                                         \
    k_hi("r12")                                                                                \
    EK_ASM_REQUANT_STORE("r9", "r6", "lr", "r12", "r0", post)                                  \
    EK_ASM_REQUANT_STORE("r11", "r6", "lr", "r12", "r1", post)                                 \
    "strd r0, r1, [sp]\n\t"                                                                    \
    "ldr r2, [sp, #20]\n\t"                                                                    \
    "cmp r0, r2\n\t"                                                                           \
    "bne 1b\n\t"                                                                               \
    "add sp, sp, #40\n\t"                                                                      \
    "pop {r4-r11, pc}\n\t"

/* A paired filter (the in-place 1x1 layers): both rows' words of a step adjacent, a row pair
 * 2 * c_in bytes; `skip`: nothing, or EK_ASM_SKIP_CONSTANT_PAIR. */
#define EK_ASM_PAIRED_CHANNELS(k_unit, k_hi, post, skip)                                       \
    EK_ASM_CHANNELS_ENTER(k_unit, "lsl r8, r8, #1\n\t")                                        \
    skip "add r2, r1, r3\n\t" EK_ASM_MAC_LOOP(EK_ASM_PAIRED_STEP, "28")                   \
    EK_ASM_CHANNELS_STORE(k_hi, post)

/* A pair of channels whose multipliers are both 0 (edgekit.constant_channels: their
 * output is the clamped offset for every input) skips its MAC loop: w past its rows, the
 * accumulators the bias, which the requantisation maps to the offset (4 instructions a pair
 * that is computed). */
#define EK_ASM_SKIP_CONSTANT_PAIR                                                              \
    "ldr r12, [sp, #8]\n\t"                                                                   \
    "ldrd r4, r5, [r12]\n\t"                                                                  \
    "orrs r4, r4, r5\n\t"                                                                     \
    "bne 6f\n\t"                                                                              \
    "add r1, r1, r3\n\t"                                                                      \
    "b 3f\n"                                                                                  \
    "6:\n\t"

/* OHWI rows of `len` bytes (the fifth argument; conv2d_wide): the whole steps, then where len
 * % 4 != 0 the window's last group against the words ending at each row's last byte (as
 * dot2x2_wide_tail), then w past the second row. */
#define EK_ASM_ROWS_CHANNELS(k_unit, k_hi, post)                                               \
    EK_ASM_CHANNELS_ENTER(k_unit, "ldr r8, [sp, #76]\n\t")                                     \
    "bic r2, r3, #3\n\t"                                                                       \
    "add r2, r1, r2\n\t" EK_ASM_MAC_LOOP(EK_ASM_ROWS_STEP, "29")                           \
    "ands r2, r3, #3\n\t"                                                                      \
    "beq 6f\n\t"                                                                               \
    "rsb r2, r2, #4\n\t"                                                                       \
    "sub r1, r1, r2\n\t" EK_ASM_ROWS_STEP                                                      \
    "6:\n\t"                                                                                   \
    "add r1, r1, r3\n\t" EK_ASM_CHANNELS_STORE(k_hi, post)

/* ek_requant_fast_k from the right shift - 1 in rm: k_hi_unit << rm (r >= 1), or << (rm - 1) */
#if EK_REQUANT_SHORTEST == 1
#define EK_ASM_FAST_K_HI(rm) "lsl lr, r4, " rm "\n\t"
/* ek_requant_wide_k: 1 << rm; the output offset added after the shift */
#define EK_ASM_WIDE_K_HI(rm) "mov lr, #1\n\t" "lsl lr, lr, " rm "\n\t"
#else
#define EK_ASM_FAST_K_HI(rm) "sub lr, " rm ", #1\n\t" "lsl lr, r4, lr\n\t"
/* ek_requant_wide_k: 1 << (rm - 1); the output offset added after the shift */
#define EK_ASM_WIDE_K_HI(rm) "sub r2, " rm ", #1\n\t" "mov lr, #1\n\t" "lsl lr, lr, r2\n\t"
#endif
#define EK_ASM_WIDE_POST "add r3, r3, r4\n\t"
#define EK_ASM_NAKED static __attribute__((naked, noinline, unused)) void

#if !EK_CONV_S4
#define EK_S4_CHANNELS_ASM 0
#if EK_PW_PAIRED
#define EK_PW_PAIRED_ASM 1
EK_ASM_NAKED pw_paired_full_asm(const uint32_t *x, int8_t *out_a, int8_t *out_b,
                                const pw_layer *l)
{
    __asm__ volatile(EK_ASM_PAIRED_CHANNELS("40", EK_ASM_FAST_K_HI, "", ""));
}

#if EK_REQUANT_WIDE
EK_ASM_NAKED pw_paired_wide_full_asm(const uint32_t *x, int8_t *out_a, int8_t *out_b,
                                     const pw_layer *l)
{
    __asm__ volatile(EK_ASM_PAIRED_CHANNELS("24", EK_ASM_WIDE_K_HI, EK_ASM_WIDE_POST, ""));
}
#endif

#if EK_PW_SKIP_PAIRS
/* The same loops for a layer with pairs of constant channels (pw_layer `skips`). */
EK_ASM_NAKED pw_paired_full_skip_asm(const uint32_t *x, int8_t *out_a, int8_t *out_b,
                                     const pw_layer *l)
{
    __asm__ volatile(EK_ASM_PAIRED_CHANNELS("40", EK_ASM_FAST_K_HI, "",
                                            EK_ASM_SKIP_CONSTANT_PAIR));
}

#if EK_REQUANT_WIDE
EK_ASM_NAKED pw_paired_wide_full_skip_asm(const uint32_t *x, int8_t *out_a, int8_t *out_b,
                                          const pw_layer *l)
{
    __asm__ volatile(EK_ASM_PAIRED_CHANNELS("24", EK_ASM_WIDE_K_HI, EK_ASM_WIDE_POST,
                                            EK_ASM_SKIP_CONSTANT_PAIR));
}
#endif
#endif
#else
#define EK_PW_PAIRED_ASM 0
#endif

#if EK_CONV_WIDE_TAPS > 0
#define EK_CONV_WIDE_ASM 1
EK_ASM_NAKED conv_wide_full_asm(const uint32_t *x, int8_t *out_a, int8_t *out_b,
                                const pw_layer *l, int32_t len)
{
    __asm__ volatile(EK_ASM_ROWS_CHANNELS("40", EK_ASM_FAST_K_HI, ""));
}

#if EK_REQUANT_WIDE
EK_ASM_NAKED conv_wide_wide_full_asm(const uint32_t *x, int8_t *out_a, int8_t *out_b,
                                     const pw_layer *l, int32_t len)
{
    __asm__ volatile(EK_ASM_ROWS_CHANNELS("24", EK_ASM_WIDE_K_HI, EK_ASM_WIDE_POST));
}
#endif
#else
#define EK_CONV_WIDE_ASM 0
#endif
#else /* EK_CONV_S4 */
/* EK_PW_S4_STEP on fixed registers: x r0, w r1, rows r3 bytes apart, the window words r4 and
 * r5, the nibbles r6, the filter words r7 (row 0) and r12 (row 1), the mask in lr. */
#define EK_ASM_S4_STEP                                                                         \
    EK_PW_S4_STEP_ON("r0", "r1", "r3", "r4", "r5", "r6", "lr", "r7", "r12", "r8", "r9", "r10",   \
                     "r11")

/* Packed int4 rows `n` bytes apart (the fifth argument: a 1x1 layer's c_in / 2, a widened
 * window's taps / 2; n % 4 == 0, at most PW_S4_MAX_C_IN taps): pw_dot2x2_wide's int4 loop from
 * zero accumulators (x4096), then each shifted down and added to its effective bias. */
#define EK_ASM_S4_CHANNELS(k_unit, k_hi, post)                                                 \
    EK_ASM_CHANNELS_FRAME(k_unit, "ldr r8, [sp, #76]\n\t")                                     \
    "1:\n\t"                                                                                   \
    "ldrd r0, r1, [sp, #24]\n\t"                                                               \
    "ldr r3, [sp, #36]\n\t"                                                                    \
    "add r2, r1, r3\n\t"                                                                       \
    "mov r8, #0\n\t"                                                                           \
    "mov r9, #0\n\t"                                                                           \
    "mov r10, #0\n\t"                                                                          \
    "mov r11, #0\n\t"                                                                          \
    "mov lr, #0xF000F000\n\t" EK_ASM_MAC_LOOP(EK_ASM_S4_STEP, "29")                           \
    "ldr r2, [sp, #32]\n\t"                                                                    \
    "ldrd r4, r5, [r2], #8\n\t"                                                                \
    "str r2, [sp, #32]\n\t"                                                                    \
    "add r8, r4, r8, asr #12\n\t"                                                              \
    "add r9, r5, r9, asr #12\n\t"                                                              \
    "add r10, r4, r10, asr #12\n\t"                                                            \
    "add r11, r5, r11, asr #12\n\t"                                                            \
    "add r1, r1, r3\n\t" EK_ASM_CHANNELS_STORE(k_hi, post)

#define EK_S4_CHANNELS_ASM 1
#define EK_PW_PAIRED_ASM 0
#define EK_CONV_WIDE_ASM (EK_CONV_WIDE_TAPS > 0)
EK_ASM_NAKED s4_channels_full_asm(const uint32_t *x, int8_t *out_a, int8_t *out_b,
                                  const pw_layer *l, int32_t n)
{
    __asm__ volatile(EK_ASM_S4_CHANNELS("40", EK_ASM_FAST_K_HI, ""));
}

#if EK_REQUANT_WIDE
EK_ASM_NAKED s4_channels_wide_full_asm(const uint32_t *x, int8_t *out_a, int8_t *out_b,
                                       const pw_layer *l, int32_t n)
{
    __asm__ volatile(EK_ASM_S4_CHANNELS("24", EK_ASM_WIDE_K_HI, EK_ASM_WIDE_POST));
}
#endif

#if EK_S8_ROWS
/* --- int8 filters on the int4 widened path (ek_conv2d_s8_via_s4) ------------------------------
 * A model whose convolutions are int4 but for an int8 layer or two (the first layer kept int8,
 * the usual mixed precision) would otherwise link ek_conv.c's int8 convolution beside this
 * one: about 6 kB of code for one layer. So the int8 layer runs here, on the same widened
 * windows (raw bytes, padding taps the zero point, the effective bias carrying the input
 * offset), its rows int8: whole groups of 8 taps (a short window's padded with zeros, as
 * ek_s4_rows_padded), each group's bytes in the order {w0, w1, w4, w5, w2, w3, w6, w7}
 * (edgekit.firmware.op_emitters.s8_lane_rows), so that SXTB16 and SXTB16 ROR #8 of a filter
 * word give the lanes {w0, w4}, {w1, w5} (then {w2, w6}, {w3, w7}) that meet the window's
 * words. Exactness: int16 lanes' products summed into the accumulator, any length. On DSP
 * cores only the channel loops in assembly run them: the generator picks the kernel only
 * where those take every channel (an even out_c, a clamp-free fast or wide requantisation), so
 * the widened path's C loops have no int8 variant (the other cores run conv_s8_rows_portable).
 *
 * One step: four bytes of each row, on the fixed registers of EK_ASM_S4_STEP (lr free), 16
 * instructions per 16 MACs. */
#define EK_ASM_S8_ROWS_STEP                                                                    \
    "ldr r12, [r1, r3]\n\t"                                                                   \
    "ldr r7, [r1], #4\n\t"                                                                    \
    "ldrd r4, r5, [r0], #16\n\t"                                                              \
    "sxtb16 r6, r7\n\t"                                                                       \
    "smlad r8, r6, r4, r8\n\t"                                                                \
    "smlad r10, r6, r5, r10\n\t"                                                              \
    "sxtb16 r6, r12\n\t"                                                                      \
    "smlad r9, r6, r4, r9\n\t"                                                                \
    "smlad r11, r6, r5, r11\n\t"                                                              \
    "ldrd r4, r5, [r0, #-8]\n\t"                                                              \
    "sxtb16 r6, r7, ror #8\n\t"                                                               \
    "smlad r8, r6, r4, r8\n\t"                                                                \
    "smlad r10, r6, r5, r10\n\t"                                                              \
    "sxtb16 r6, r12, ror #8\n\t"                                                              \
    "smlad r9, r6, r4, r9\n\t"                                                                \
    "smlad r11, r6, r5, r11\n\t"

/* int8 rows `n` bytes apart (the fifth argument: the window's taps, n % 8 == 0), the
 * accumulators from the bias: two steps (a group) a pass. */
#define EK_ASM_S8_ROWS_CHANNELS(k_unit, k_hi, post)                                            \
    EK_ASM_CHANNELS_ENTER(k_unit, "ldr r8, [sp, #76]\n\t")                                     \
    "add r2, r1, r3\n"                                                                         \
    "2:\n\t" EK_ASM_S8_ROWS_STEP EK_ASM_S8_ROWS_STEP                                          \
    "cmp r1, r2\n\t"                                                                          \
    "bne 2b\n\t"                                                                              \
    "add r1, r1, r3\n\t" EK_ASM_CHANNELS_STORE(k_hi, post)

EK_ASM_NAKED s8_rows_full_asm(const uint32_t *x, int8_t *out_a, int8_t *out_b,
                              const pw_layer *l, int32_t n)
{
    __asm__ volatile(EK_ASM_S8_ROWS_CHANNELS("40", EK_ASM_FAST_K_HI, ""));
}

#if EK_REQUANT_WIDE
EK_ASM_NAKED s8_rows_wide_full_asm(const uint32_t *x, int8_t *out_a, int8_t *out_b,
                                   const pw_layer *l, int32_t n)
{
    __asm__ volatile(EK_ASM_S8_ROWS_CHANNELS("24", EK_ASM_WIDE_K_HI, EK_ASM_WIDE_POST));
}
#endif
#endif
#endif /* EK_CONV_S4 */
#else
#define EK_CHANNELS_ASM 0
#define EK_PW_PAIRED_ASM 0
#define EK_CONV_WIDE_ASM 0
#define EK_S4_CHANNELS_ASM 0
#endif

#if EK_S4_CHANNELS_ASM
/* After the assembly's pairs of rows (int4 filters are never paired, so out_c may be odd): an
 * odd last channel, as pw_channels computes it (compiled in where some in-place int4 pointwise
 * call has one: EK_PW_ODD_S4). */
EK_CONV_FORCE_INLINE void pw_odd_last_channel(const pw_layer *l, const uint32_t *x, int8_t *out_a,
                                              int8_t *out_b, int mode)
{
    if (EK_PW_ODD_S4 && (l->c_out & 1)) {
        const int32_t oc = l->c_out - 1;
        int32_t acc[4];
        pw_dot_pair(x, l->filter + (oc - 1) * PW_ROW_BYTES(l->c_in), l->c_in, l->bias + oc - 1,
                    acc, 0);
        pw_store_channel(l, out_a, out_b, oc, acc[1], acc[3], mode);
    }
}
#endif

static inline void pw_channels_of(const pw_layer *l, const uint32_t *x, int8_t *out_a,
                                  int8_t *out_b, int mode)
{
#if EK_REQUANT_WIDE
    if (mode == PW_WIDE_FULL) {
#if EK_PW_PAIRED_ASM
        if (EK_PW_PAIRED == 1 || l->paired) {
#if EK_PW_SKIP_PAIRS
            if (l->skips) {
                pw_paired_wide_full_skip_asm(x, out_a, out_b, l);
                return;
            }
#endif
            pw_paired_wide_full_asm(x, out_a, out_b, l);
            return;
        }
#elif EK_S4_CHANNELS_ASM
        s4_channels_wide_full_asm(x, out_a, out_b, l, l->c_in / 2);
        pw_odd_last_channel(l, x, out_a, out_b, PW_WIDE_FULL);
        return;
#endif
        pw_channels_wide_full(l, x, out_a, out_b);
        return;
    }
#if EK_PW_LOOPS & EK_PW_LOOP_WIDE
    if (mode == PW_WIDE) {
        pw_channels_wide(l, x, out_a, out_b);
        return;
    }
#endif
#endif
    if (mode == PW_FAST_FULL) {
#if EK_PW_PAIRED_ASM
        if (EK_PW_PAIRED == 1 || l->paired) {
#if EK_PW_SKIP_PAIRS
            if (l->skips) {
                pw_paired_full_skip_asm(x, out_a, out_b, l);
                return;
            }
#endif
            pw_paired_full_asm(x, out_a, out_b, l);
            return;
        }
#elif EK_S4_CHANNELS_ASM
        s4_channels_full_asm(x, out_a, out_b, l, l->c_in / 2);
        pw_odd_last_channel(l, x, out_a, out_b, PW_FAST_FULL);
        return;
#endif
        pw_channels_full(l, x, out_a, out_b);
    }
#if EK_PW_LOOPS & EK_PW_LOOP_FAST
    else if (mode == PW_FAST) {
        pw_channels_fast(l, x, out_a, out_b);
    }
#endif
#if EK_PW_LOOPS & EK_PW_LOOP_EXACT
    else if (mode == PW_EXACT) {
        pw_channels_exact(l, x, out_a, out_b);
    }
#endif
}

/* The input pixel output pixel `pixel` of a 1x1 unpadded layer reads. */
static inline int32_t pw_source(int32_t pixel, int32_t out_w, int32_t row_step,
                                int32_t col_step)
{
    const int32_t oy = pixel / out_w;
    return oy * row_step + (pixel - oy * out_w) * col_step;
}

/* The pointwise in-place modes, two pixels at a time: both input pixels are widened into the
 * scratch (4 * in_c bytes, the planner's size, word aligned) before any of their outputs is
 * stored. Moving a pixel's reads earlier keeps every write of the one-pixel order safe (it
 * clobbers no input pixel still to be read then, and none is left unread now that was not
 * then). step: +1 forward (pixels increasing), -1 backward. */
static EK_CONV_NOINLINE void pw_inplace_pairs(const ek_conv2d_params *p, const int8_t *input,
                                              const int8_t *filter, int8_t *output,
                                              int8_t *scratch, int32_t step)
{
    pw_layer l = pw_layer_of(p, filter);
    const int mode = pw_requant_mode(p);
    uint32_t *const wide = (uint32_t *)(void *)scratch;
#if EK_PW_SKIP_PAIRS && EK_PW_PAIRED_ASM
    for (int32_t oc = 0; oc + 2 <= l.c_out && !l.skips; oc += 2) {
        l.skips = (l.multipliers[oc] | l.multipliers[oc + 1]) == 0;
    }
#endif
    const int32_t c_in = l.c_in, c_out = l.c_out, pixels = p->out_h * p->out_w;
    const int32_t out_w = p->out_w, row_step = p->stride_h * p->in_w, col_step = p->stride_w;
    int32_t pixel = step > 0 ? 0 : pixels - 1;
    int32_t left = pixels;
    for (; left >= 2; left -= 2, pixel += 2 * step) {
        pw_widen_pair(input + pw_source(pixel, out_w, row_step, col_step) * c_in,
                      input + pw_source(pixel + step, out_w, row_step, col_step) * c_in, c_in,
                      wide);
        pw_channels_of(&l, wide, output + pixel * c_out, output + (pixel + step) * c_out, mode);
    }
    if (left == 1) { /* a lone last pixel, in both halves */
        const int8_t *a = input + pw_source(pixel, out_w, row_step, col_step) * c_in;
        pw_widen_pair(a, a, c_in, wide);
        pw_channels_of(&l, wide, output + pixel * c_out, output + pixel * c_out, mode);
    }
}
#endif

#if EK_FILTER_DSP && EK_CONV_PAIRS_PATH
/* Whether the two-pixel path takes the layer: DSP arithmetic (filter offset 0), an effective
 * bias (padding taps become zero-point bytes, exact for every pixel), rows of taps contiguous,
 * and a window that fits the buffer. */
static inline int conv_pairs_apply(const ek_conv2d_params *p)
{
    return p->filter_offset == 0 && p->effective_bias != 0 && p->dilation_w == 1
           && p->k_h * p->k_w * p->in_c <= EK_PAIR_MAX_LEN;
}

/* All output channels of the pair of pixels whose windows are in buf, stored at base_a and
 * base_b; with_b == 0 (a constant): a lone last pixel, B's results are not stored (under the
 * fused ADD a second store would add the skip twice). */
EK_CONV_FORCE_INLINE void conv_pair_channels(const ek_conv2d_params *p, const int8_t *filter,
                                             const int8_t *buf, int8_t *output,
                                             const conv_epilogue *e, int32_t base_a,
                                             int32_t base_b, int with_b)
{
    const int32_t c_out = p->out_c, len = p->k_h * p->k_w * p->in_c;
    const int32_t *const eb = p->effective_bias;
    for (int32_t oc = 0; oc < c_out; oc += 2) {
        /* an odd last channel runs its filter row twice and stores one of the results */
        const int two = oc + 1 < c_out;
        int32_t acc[4];
        rq_channel r;
        acc[0] = acc[2] = eb[oc];
        acc[1] = acc[3] = eb[two ? oc + 1 : oc];
        dot2x2(buf, filter + oc * len, len, two ? len : 0, acc);
        r = rq_channel_of(p->multipliers[oc], p->shifts[oc]);
        conv_store(e, output, base_a + oc,
                   rq_apply(&r, acc[0], p->output_offset, p->act_min, p->act_max));
        if (with_b) {
            conv_store(e, output, base_b + oc,
                       rq_apply(&r, acc[2], p->output_offset, p->act_min, p->act_max));
        }
        if (two) {
            r = rq_channel_of(p->multipliers[oc + 1], p->shifts[oc + 1]);
            conv_store(e, output, base_a + oc + 1,
                       rq_apply(&r, acc[1], p->output_offset, p->act_min, p->act_max));
            if (with_b) {
                conv_store(e, output, base_b + oc + 1,
                           rq_apply(&r, acc[3], p->output_offset, p->act_min, p->act_max));
            }
        }
    }
}

/* Every output pixel of the layer, two at a time (conv_pairs_apply holds); buf: 2 *
 * EK_PAIR_MAX_LEN bytes, 4-byte aligned. Pixels in increasing order, each pair's windows
 * gathered before any of its outputs is stored. */
EK_CONV_FORCE_INLINE void conv2d_pairs(const ek_conv2d_params *p, const int8_t *input,
                                       const int8_t *filter, int8_t *output,
                                       const conv_epilogue *e, int8_t *buf)
{
    const int32_t c_out = p->out_c, pixels = p->out_h * p->out_w;
    int32_t oy = 0, ox = 0, pixel = 0;
    for (; pixel + 2 <= pixels; pixel += 2) {
        gather_window(p, input, oy * p->stride_h - p->pad_top, ox * p->stride_w - p->pad_left,
                      buf, 0);
        if (++ox == p->out_w) {
            ox = 0;
            ++oy;
        }
        gather_window(p, input, oy * p->stride_h - p->pad_top, ox * p->stride_w - p->pad_left,
                      buf + EK_PAIR_MAX_LEN, 0);
        if (++ox == p->out_w) {
            ox = 0;
            ++oy;
        }
        conv_pair_channels(p, filter, buf, output, e, pixel * c_out, (pixel + 1) * c_out, 1);
    }
    if (pixel < pixels) { /* a lone last pixel: window A in both slots */
        gather_window(p, input, oy * p->stride_h - p->pad_top, ox * p->stride_w - p->pad_left,
                      buf, 0);
        copy_short(buf + EK_PAIR_MAX_LEN, buf, (p->k_h * p->k_w * p->in_c + 3) & ~3);
        conv_pair_channels(p, filter, buf, output, e, pixel * c_out, pixel * c_out, 0);
    }
}
#endif

#if (EK_FILTER_DSP || EK_S4_DSP) && EK_CONV_WIDE_TAPS > 0
#if EK_CONV_S4 /* the int4 TU's helpers by their own names (edgekit.firmware.stack_paths) */
#define conv2d_wide_plain conv2d_wide_s4_plain
#define conv2d_wide_fused conv2d_wide_s4_fused
#endif
/* --- Longer windows: two pixels x two output channels on widened windows ----------------------
 * Layers whose window is longer than the short path's (a 3x3 convolution over 16-64 channels:
 * most of a ResNet's MACs) widen the windows of two output pixels once to int16, the input
 * offset added (a padding tap is 0: the reference skips it, so no effective bias is needed and
 * border pixels run the same loop), in pw_dot2x2_wide's layout: per 4 taps the words {A lanes
 * 0,2; A lanes 1,3; B lanes 0,2; B lanes 1,3}. Then every pair of filter rows runs the 1x1
 * path's inner loop over the whole window (16 instructions per 16 MACs), each filter word
 * loaded and widened once for both pixels, each window word once for both channels.
 * Exactness: |x + input_offset| <= 255 fits an int16 lane and SMLAD's products and sums wrap
 * mod 2^32 as the reference's accumulator does.
 *
 * Conditions (conv_wide_apply, mirrored by edgekit.firmware.op_emitters.wide_path_applies):
 * filter offset 0, at least two output channels, a window of 4 taps or more, and either
 * in_c % 4 == 0 (every tap's channels are whole words, padding or not: widened straight from
 * the input) or a short window (dilation_w == 1, at most EK_PAIR_MAX_LEN taps: a first layer
 * over 1-3 channels) in the layout gather_window gives (padding and the tail's leading taps
 * the zero point, so they widen to 0; pw_dot2x2_wide's tail meets them): read straight from
 * the input's rows for two pixels inside it (wide_windows), gathered as bytes first at the
 * border. Short windows
 * over whole words take this path too: the byte path above widens the window again for every
 * pair of channels and requantises in the exact two-rounding form, which made MobileNetV2's
 * expanding 1x1 layers (8-24 channels in, 6x out) run 4-6.5 instructions per MAC; it keeps the
 * layers this one cannot take (fewer than 4 taps, one output channel). The stack buffer
 * holds two windows of 2 bytes per tap (the length rounded up to 4; int4: see below; a short
 * window's rows that are no whole words add their plan: wide_short_words),
 * EK_CONV_WIDE_TAPS words, sized by the model's build (ek_model_config.h) to its longest such
 * window, 0 (no path) when it has none.
 *
 * Both windows are widened before any output of the pair is stored and pixels run in
 * increasing order, which keeps the in-place modes exact (conv_sliding, see edgekit.planner). */
#if EK_CONV_S4
/* Packed int4 filters (ek_conv_s4.c): the 1x1 path's int4 loop (pw_dot2x2_wide, 30
 * instructions per 32 MACs) over two windows widened from raw bytes in its layout, padding taps
 * the input zero point (the effective bias carries the input offset, as on the 1x1 path). Its
 * exactness bound holds for at most PW_S4_MAX_C_IN taps, longer windows run in runs
 * (pw_dot2x2_wide_runs); in_c % 8 == 0 keeps every tap's channels whole groups of 8.
 *
 * Short windows over other channel counts (a first layer over 1-3 channels: dilation_w == 1,
 * len <= EK_PAIR_MAX_LEN), in the plain kernel (a first layer is no residual block's conv: the
 * fused kernel keeps the one-pixel path), are gathered as bytes first (gather_window, padding
 * taps the zero point), their last group of 8 completed with zero taps, and widened whole. Their
 * filter rows are padded to whole groups (ek_s4_rows_padded: the generator emits them so), so
 * every row starts on a word and the channels run as on the long path; the zero taps meet zero
 * nibbles. Each window's sum stays far inside the exactness bound (64 taps).
 *
 * Mirrored by edgekit.firmware.op_emitters.wide_s4_path_applies and wide_window_taps. */

/* Groups of 8 taps (and 4 filter bytes) that a row is read in. */
#define S4_GROUPS(len) (((len) + 7) >> 3)

/* Words of the stack buffer a window of len taps takes, both pixels: 4 per tap (8 per group
 * of 8). */
static inline int32_t wide_s4_words(int32_t len)
{
    return 8 * S4_GROUPS(len);
}

static inline int conv_wide_apply(const ek_conv2d_params *p, int fused)
{
    const int32_t len = p->k_h * p->k_w * p->in_c;
    if (p->filter_offset != 0 || p->effective_bias == 0 || p->out_c < 2 || len <= 0) {
        return 0;
    }
    if ((p->in_c & 7) == 0) {
        return len <= EK_CONV_WIDE_TAPS;
    }
    return !fused && ek_s4_rows_padded(p->in_c, len, p->out_c, p->dilation_w, p->filter_offset,
                                       p->effective_bias)
           && wide_s4_words(len) <= EK_CONV_WIDE_TAPS;
}

/* A short window (in_c % 8 != 0) into the pixel's slot dst, as whole groups of 8 taps. */
static EK_CONV_NOINLINE void wide_window_short(const ek_conv2d_params *p, const int8_t *input,
                                               int32_t iy0, int32_t ix0, uint32_t *dst)
{
    int32_t bytes[EK_PAIR_MAX_LEN / 4]; /* word aligned; the last group completed with zeros */
    int8_t *const window = (int8_t *)bytes;
    gather_window(p, input, iy0, ix0, window, 0);
    pw_widen_s4(window, EK_S4_ROW_TAPS(p->k_h * p->k_w * p->in_c), dst);
}

/* The raw window (OHWI tap order) of the output pixel whose taps start at (iy0, ix0) into the
 * pixel's slot dst (buf for pixel A, buf + 1 for pixel B), padding taps the zero point; in_c %
 * 8 == 0 (wide_window_short for the others). */
static void wide_window(const ek_conv2d_params *p, const int8_t *input, int32_t iy0,
                        int32_t ix0, uint32_t *dst)
{
    const int32_t c_in = p->in_c;
    const uint32_t zero2 = ek_dup16(-p->input_offset);
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = iy0 + ky * p->dilation_h;
        for (int32_t kx = 0; kx < p->k_w; ++kx) {
            const int32_t ix = ix0 + kx * p->dilation_w;
            const int inside = iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w;
            const int8_t *x = input + (iy * p->in_w + ix) * c_in;
            for (int32_t g = 0; g < c_in; g += 8, dst += 8) {
                if (inside) {
                    pw_widen8_s4(x + g, dst);
                } else {
                    dst[0] = dst[2] = dst[4] = dst[6] = zero2;
                }
            }
        }
    }
}

/* One pair of filter rows len / 2 bytes apart (len % 8 == 0: the row's taps, padded or whole
 * groups) against the widened windows; the runs only where the build's longest window (len
 * <= EK_CONV_WIDE_TAPS) may need them. */
#define CONV_WIDE_DOT(x, w, len, bias2, acc)                                                   \
    (EK_CONV_WIDE_TAPS <= PW_S4_MAX_C_IN || (len) <= PW_S4_MAX_C_IN                             \
         ? pw_dot2x2_wide((x), (w), (len) / 2, (bias2), (acc))                                  \
         : pw_dot2x2_wide_runs((x), (w), (len) / 2, (len) / 2, (bias2), (acc)))
#define CONV_WIDE_ROW_BYTES(len) ((len) / 2)
#define CONV_WIDE_SLOT_B 1 /* pixel B's words interleave with A's */
/* The channel loop in assembly: windows within the exactness bound of one run. */
#define CONV_WIDE_ASM_APPLIES(len) (EK_CONV_WIDE_TAPS <= PW_S4_MAX_C_IN || (len) <= PW_S4_MAX_C_IN)
#define CONV_WIDE_ASM(s8_loop, s4_loop, x, out_a, out_b, l, len)                               \
    s4_loop((x), (out_a), (out_b), (l), (len) / 2)
/* A pixel's window: a short one (in_c % 8 != 0) in the plain kernel only (conv_wide_apply), so
 * the fused kernel's code never calls wide_window_short (the stack bound follows the calls). */
#define CONV_WIDE_WINDOW(p, input, iy0, ix0, dst, e)                                            \
    ((e) == 0 && ((p)->in_c & 7) != 0 ? wide_window_short((p), (input), (iy0), (ix0), (dst))    \
                                       : wide_window((p), (input), (iy0), (ix0), (dst)))
#define CONV_WIDE_WINDOWS(p, input, iy_a, ix_a, iy_b, ix_b, buf, e, plan)                       \
    do {                                                                                        \
        CONV_WIDE_WINDOW((p), (input), (iy_a), (ix_a), (buf), (e));                             \
        CONV_WIDE_WINDOW((p), (input), (iy_b), (ix_b), (buf) + CONV_WIDE_SLOT_B, (e));          \
    } while (0)
#else
#define CONV_WIDE_ROW_BYTES(len) (len)
#define CONV_WIDE_SLOT_B 2
#define CONV_WIDE_ASM_APPLIES(len) 1
#define CONV_WIDE_ASM(s8_loop, s4_loop, x, out_a, out_b, l, len)                               \
    s8_loop((x), (out_a), (out_b), (l), (len))
#define CONV_WIDE_WINDOW(p, input, iy0, ix0, dst, e) wide_window((p), (input), (iy0), (ix0), (dst))
#define CONV_WIDE_WINDOWS(p, input, iy_a, ix_a, iy_b, ix_b, buf, e, plan)                       \
    wide_windows((p), (input), (iy_a), (ix_a), (iy_b), (ix_b), (buf), (plan))

/* Words of the stack buffer the widened path needs for a short window of len taps (in_c % 4
 * != 0): both pixels' windows (4 words per group of four), and where its rows are no whole
 * words, the plan (wide_group: 3 words per group). */
static inline int32_t wide_short_words(const ek_conv2d_params *p, int32_t len)
{
    return ((p->k_w * p->in_c) & 3) != 0 ? 7 * ((len + 3) >> 2) : (len + 3) & ~3;
}

static inline int conv_wide_apply(const ek_conv2d_params *p)
{
    const int32_t len = p->k_h * p->k_w * p->in_c;
    if (p->filter_offset != 0 || p->out_c < 2 || len < 4) {
        return 0;
    }
    if ((p->in_c & 3) == 0) {
        return len <= EK_CONV_WIDE_TAPS;
    }
    return p->dilation_w == 1 && len <= EK_PAIR_MAX_LEN
           && wide_short_words(p, len) <= EK_CONV_WIDE_TAPS;
}

/* n taps (n % 4 == 0) of one pixel from x plus the input offset into its two words of each
 * group of four at dst; returns the next group. */
static inline uint32_t *wide_put(uint32_t *dst, const int8_t *x, int32_t n, uint32_t offset2)
{
#if defined(__ARM_FEATURE_DSP) && !defined(EDGEKIT_EMULATE_DSP)
    /* gcc 12 keeps an index and two single stores per group (8 instructions); by hand one
     * STRD with write-back: 5 per group in pairs, an odd group first */
    const int8_t *const end = x + n;
    uint32_t v, a, b;
    if (n > 0) {
        __asm__ volatile("tst %[n], #4\n\t"
                         "beq 2f\n\t"
                         "ldr %[v], [%[x]], #4\n\t"
                         "sxtab16 %[a], %[o], %[v]\n\t"
                         "sxtab16 %[b], %[o], %[v], ror #8\n\t"
                         "strd %[a], %[b], [%[d]], #16\n\t"
                         "cmp %[x], %[end]\n\t"
                         "beq 3f\n"
                         "2:\n\t"
                         "ldr %[v], [%[x]], #4\n\t"
                         "sxtab16 %[a], %[o], %[v]\n\t"
                         "sxtab16 %[b], %[o], %[v], ror #8\n\t"
                         "strd %[a], %[b], [%[d]], #16\n\t"
                         "ldr %[v], [%[x]], #4\n\t"
                         "sxtab16 %[a], %[o], %[v]\n\t"
                         "sxtab16 %[b], %[o], %[v], ror #8\n\t"
                         "strd %[a], %[b], [%[d]], #16\n\t"
                         "cmp %[x], %[end]\n\t"
                         "bne 2b\n"
                         "3:\n"
                         : [x] "+r"(x), [d] "+r"(dst), [v] "=&r"(v), [a] "=&r"(a), [b] "=&r"(b)
                         : [n] "r"(n), [end] "r"(end), [o] "r"(offset2)
                         : "cc", "memory");
    }
#else
    for (const int8_t *const end = x + n; x != end; x += 4, dst += 4) {
        const uint32_t v = ek_read_u32(x);
        dst[0] = ek_sxtab16(offset2, v);
        dst[1] = ek_sxtab16_ror8(offset2, v);
    }
#endif
    return dst;
}

/* n padding taps (n % 4 == 0): zero words. */
static inline uint32_t *wide_zero(uint32_t *dst, int32_t n)
{
    for (; n > 0; n -= 4, dst += 4) {
        dst[0] = 0;
        dst[1] = 0;
    }
    return dst;
}

/* The low n bytes of a word (n in 1..3). */
#define WIDE_LOW_BYTES(n) (0xFFFFFFFFu >> (32 - 8 * (n)))

/* Short windows (in_c % 4 != 0, dilation_w == 1) of pixels inside the input are widened
 * straight from their k_h rows (row = k_w * in_c >= 3 bytes each, `pitch` bytes apart) in the
 * layout gather_window + wide_put give, following a plan made once per layer: for each group
 * of four taps of the rows laid end to end, a word load at `lo` (relative to the window's first
 * byte), and for a group that straddles two rows a second at `hi`, whose bytes the mask `keep`
 * does not select; the last part group, moved as gather_window moves it (zero points, then the
 * window's last taps), from the word ending at the window's last byte. The loads stay inside
 * the input: at most 3 bytes past a row that is not the last, 3 before one that is not the first
 * (pitch >= 3). Gathering the window as bytes first cost 240 instructions a pixel on vww's first
 * layer (3x3 over RGB), and a generic row-by-row loop 230. */
typedef struct {
    int32_t lo, hi;
    uint32_t keep;
} wide_group;

/* Whether a short window's pixels inside the input take the plan: rows of 3 bytes or more
 * that are no whole words (rows of whole words are read as words: wide_pair_rows). */
static inline int wide_plan_applies(const ek_conv2d_params *p)
{
    const int32_t row = p->k_w * p->in_c;
    return (EK_CONV_SHORT_ROWS & 1) && (row & 3) != 0 && row >= 3
           && p->dilation_h * p->in_w * p->in_c >= 3;
}

/* The plan of a layer's short windows into plan[0 .. ceil(len / 4)). */
static void wide_plan_make(const ek_conv2d_params *p, wide_group *plan)
{
    const int32_t row = p->k_w * p->in_c, pitch = p->dilation_h * p->in_w * p->in_c;
    const int32_t len = p->k_h * row;
    for (int32_t at = 0; at + 4 <= len; at += 4, ++plan) {
        const int32_t r = at / row, c = at - r * row, left = row - c;
        plan->lo = r * pitch + c;
        plan->hi = left >= 4 ? plan->lo : (r + 1) * pitch - left;
        plan->keep = left >= 4 ? 0xFFFFFFFFu : WIDE_LOW_BYTES(left);
    }
    if (len & 3) { /* the tail: the word ending at the last byte, its first 4 - t bytes zp */
        plan->lo = (p->k_h - 1) * pitch + row - 4;
        plan->hi = plan->lo;
        plan->keep = WIDE_LOW_BYTES(4 - (len & 3));
    }
}

/* Group `g` of the window whose first byte is src, by its plan entry. */
static inline uint32_t wide_planned_word(const int8_t *src, const wide_group *g)
{
    return (ek_read_u32(src + g->lo) & g->keep) | (ek_read_u32(src + g->hi) & ~g->keep);
}

/* The windows of pixels A and B (first bytes a and b, both inside the input), widened by the
 * plan into buf: per group the four words {A lanes 0,2; A lanes 1,3; B lanes 0,2; B lanes 1,3}.
 * Out of line: the per-pixel window code's frame and checks stay off this loop. */
static EK_CONV_NOINLINE void wide_pair_planned(const int8_t *a, const int8_t *b,
                                               const wide_group *plan, int32_t len,
                                               uint32_t zero4, uint32_t offset2, uint32_t *dst)
{
    for (const wide_group *const end = plan + (len >> 2); plan != end; ++plan, dst += 4) {
        const uint32_t va = wide_planned_word(a, plan), vb = wide_planned_word(b, plan);
        dst[0] = ek_sxtab16(offset2, va);
        dst[1] = ek_sxtab16_ror8(offset2, va);
        dst[2] = ek_sxtab16(offset2, vb);
        dst[3] = ek_sxtab16_ror8(offset2, vb);
    }
    if (len & 3) {
        const uint32_t keep = plan->keep, zero = zero4 & keep;
        const uint32_t va = (ek_read_u32(a + plan->lo) & ~keep) | zero;
        const uint32_t vb = (ek_read_u32(b + plan->lo) & ~keep) | zero;
        dst[0] = ek_sxtab16(offset2, va);
        dst[1] = ek_sxtab16_ror8(offset2, va);
        dst[2] = ek_sxtab16(offset2, vb);
        dst[3] = ek_sxtab16_ror8(offset2, vb);
    }
}

/* Whether the window whose taps start at (iy0, ix0) lies inside the input (dilation_w == 1). */
static inline int wide_inside(const ek_conv2d_params *p, int32_t iy0, int32_t ix0)
{
    return iy0 >= 0 && iy0 + (p->k_h - 1) * p->dilation_h < p->in_h && ix0 >= 0
           && ix0 + p->k_w <= p->in_w;
}

/* A short window (in_c % 4 != 0) that wide_windows does not read from its rows (a border
 * pixel, a layer without a row reader): gathered as bytes first, widened whole. Out of line,
 * so that the stack bound can leave its frames out of a layer whose every window lies inside
 * the input and is read from its rows (edgekit.firmware.stack_paths). */
static EK_CONV_NOINLINE void wide_window_gathered(const ek_conv2d_params *p,
                                                  const int8_t *input, int32_t iy0, int32_t ix0,
                                                  uint32_t *dst)
{
    int32_t bytes[EK_PAIR_MAX_LEN / 4];
    const int32_t len = p->k_h * p->k_w * p->in_c;
    gather_window(p, input, iy0, ix0, (int8_t *)bytes, (int8_t)(-p->input_offset));
    wide_put(dst, (const int8_t *)bytes, (len + 3) & ~3, ek_dup16(p->input_offset));
}

/* The widened window (OHWI tap order) of the output pixel whose taps start at (iy0, ix0),
 * into the pixel's slot dst (buf for pixel A, buf + 2 for pixel B). */
static void wide_window(const ek_conv2d_params *p, const int8_t *input, int32_t iy0,
                        int32_t ix0, uint32_t *dst)
{
    const int32_t c_in = p->in_c;
    const uint32_t offset2 = ek_dup16(p->input_offset);
    int32_t kx0, kx1;
    if (c_in & 3) {
        wide_window_gathered(p, input, iy0, ix0, dst);
        return;
    }
    ek_conv_valid_taps(ix0, p->in_w, p->k_w, p->dilation_w, &kx0, &kx1);
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = iy0 + ky * p->dilation_h;
        if (iy < 0 || iy >= p->in_h || kx1 <= kx0) {
            dst = wide_zero(dst, p->k_w * c_in);
            continue;
        }
        dst = wide_zero(dst, kx0 * c_in);
        if (p->dilation_w == 1) { /* the row's valid taps are one run of bytes */
            dst = wide_put(dst, input + (iy * p->in_w + ix0 + kx0) * c_in, (kx1 - kx0) * c_in,
                           offset2);
        } else {
            for (int32_t kx = kx0; kx < kx1; ++kx) {
                dst = wide_put(dst, input + (iy * p->in_w + ix0 + kx * p->dilation_w) * c_in,
                               c_in, offset2);
            }
        }
        dst = wide_zero(dst, (p->k_w - kx1) * c_in);
    }
}

/* The windows of pixels A and B (first bytes a and b, both inside the input, dilation_w 1)
 * whose k_h rows are whole words (row % 4 == 0, `pitch` bytes apart), widened into buf as
 * wide_pair_planned lays them out: per group of four taps two loads, four SXTAB16 and one
 * STM for both pixels (the one-pixel wide_window spent 363 instructions on a window of 144
 * taps, 3x3 over 16 channels, this about 160). */
static EK_CONV_NOINLINE void wide_pair_rows(const int8_t *a, const int8_t *b, int32_t k_h,
                                            int32_t row, int32_t pitch, uint32_t offset2,
                                            uint32_t *dst)
{
    for (int32_t ky = 0; ky < k_h; ++ky, a += pitch, b += pitch) {
#if defined(__ARM_FEATURE_DSP) && !defined(EDGEKIT_EMULATE_DSP)
        /* the STM's four sources bound to ascending registers (r7 left out, as EK_PW_WIDE_REGS) */
        register uint32_t p __asm__("r4"), q __asm__("r5"), r __asm__("r6"), t __asm__("r8");
        const int8_t *x = a, *y = b;
        const int8_t *const end = a + row;
        __asm__ volatile("1:\n\t"
                         "ldr %[p], [%[x]], #4\n\t"
                         "ldr %[r], [%[y]], #4\n\t"
                         "sxtab16 %[q], %[o], %[p], ror #8\n\t"
                         "sxtab16 %[p], %[o], %[p]\n\t"
                         "sxtab16 %[t], %[o], %[r], ror #8\n\t"
                         "sxtab16 %[r], %[o], %[r]\n\t"
                         "stmia %[d]!, {%[p], %[q], %[r], %[t]}\n\t"
                         "cmp %[x], %[end]\n\t"
                         "bne 1b\n"
                         : [x] "+r"(x), [y] "+r"(y), [d] "+r"(dst), [p] "=&r"(p), [q] "=&r"(q),
                           [r] "=&r"(r), [t] "=&r"(t)
                         : [end] "r"(end), [o] "r"(offset2)
                         : "cc", "memory");
#else
        for (int32_t i = 0; i < row; i += 4, dst += 4) {
            const uint32_t va = ek_read_u32(a + i), vb = ek_read_u32(b + i);
            dst[0] = ek_sxtab16(offset2, va);
            dst[1] = ek_sxtab16_ror8(offset2, va);
            dst[2] = ek_sxtab16(offset2, vb);
            dst[3] = ek_sxtab16_ror8(offset2, vb);
        }
#endif
    }
}

/* Both pixels' windows into buf. The windows of two pixels inside the input (dilation_w 1)
 * are read from their rows: as words where the rows are whole words (in_c % 4 == 0, or a
 * short window's rows), else by the plan; the others are widened one pixel at a time (a
 * short one gathered as bytes first). */
EK_CONV_FORCE_INLINE void wide_windows(const ek_conv2d_params *p, const int8_t *input,
                                      int32_t iy_a, int32_t ix_a, int32_t iy_b, int32_t ix_b,
                                      uint32_t *buf, const wide_group *plan)
{
    const int32_t c_in = p->in_c, row = p->k_w * c_in;
    if (p->dilation_w == 1 && (plan != 0 || ((EK_CONV_SHORT_ROWS & 2) && (row & 3) == 0))
        && wide_inside(p, iy_a, ix_a) && wide_inside(p, iy_b, ix_b)) {
        const int8_t *const a = input + (iy_a * p->in_w + ix_a) * c_in;
        const int8_t *const b = input + (iy_b * p->in_w + ix_b) * c_in;
        if ((EK_CONV_SHORT_ROWS & 1) && plan != 0) {
            wide_pair_planned(a, b, plan, p->k_h * row,
                              (uint32_t)(uint8_t)(-p->input_offset) * 0x01010101u,
                              ek_dup16(p->input_offset), buf);
        } else if (EK_CONV_SHORT_ROWS & 2) {
            wide_pair_rows(a, b, p->k_h, row, p->dilation_h * p->in_w * c_in,
                           ek_dup16(p->input_offset), buf);
        }
        return;
    }
    wide_window(p, input, iy_a, ix_a, buf);
    wide_window(p, input, iy_b, ix_b, buf + 2);
}

/* One filter row pair against the widened windows: the whole-word loop, or the short one
 * with its tail group (only where some call's window needs it: EK_CONV_WIDE_TAIL). */
#define CONV_WIDE_DOT(x, w, len, bias2, acc)                                                   \
    (!EK_CONV_WIDE_TAIL || ((len) & 3) == 0                                                    \
         ? pw_dot2x2_wide((x), (w), (len), (bias2), (acc))                                      \
         : dot2x2_wide_tail((x), (w), (len), (bias2), (acc)))
#endif /* EK_CONV_S4 */

/* Channel oc's results for pixels A and B requantised and stored at out_a[oc] and out_b[oc]
 * (with_b == 0: a lone last pixel, whose B result is not stored: under the fused ADD a second
 * store would add the skip twice). */
EK_CONV_FORCE_INLINE void conv_wide_store(const pw_layer *l, const conv_epilogue *e,
                                          int8_t *output, int32_t base_a, int32_t base_b,
                                          int32_t oc, int32_t acc_a, int32_t acc_b, int with_b,
                                          int mode)
{
    int32_t ya, yb;
    pw_requant_channel(l, oc, acc_a, acc_b, mode, &ya, &yb);
    conv_store(e, output, base_a + oc, ya);
    if (with_b) {
        conv_store(e, output, base_b + oc, yb);
    }
}

/* Every output channel of the pair widened in x, two filter rows at a time; an odd last
 * channel is the second row of the pair ending at it. */
EK_CONV_FORCE_INLINE void conv_wide_channels(const pw_layer *l, const uint32_t *x, int32_t len,
                                             int8_t *output, const conv_epilogue *e,
                                             int32_t base_a, int32_t base_b, int with_b,
                                             int mode)
{
    static const int32_t no_bias[2] = {0, 0};
    const int32_t c_out = l->c_out;
    const int32_t bias_step = l->bias != 0 ? 2 : 0;
    const int32_t *bias2 = l->bias != 0 ? l->bias : no_bias;
    const int8_t *w = l->filter;
    int32_t oc = 0, acc[4];
#if EK_CONV_WIDE_ASM
    if (e == 0 && l->bias != 0 && (mode == PW_FAST_FULL || mode == PW_WIDE_FULL) && c_out >= 2
        && CONV_WIDE_ASM_APPLIES(len)) {
        /* the pairs of rows in assembly (with_b: the plain kernel stores B always) */
#if EK_REQUANT_WIDE
        if (mode == PW_WIDE_FULL) {
            CONV_WIDE_ASM(conv_wide_wide_full_asm, s4_channels_wide_full_asm, x, output + base_a,
                          output + base_b, l, len);
        } else
#endif
        {
            CONV_WIDE_ASM(conv_wide_full_asm, s4_channels_full_asm, x, output + base_a,
                          output + base_b, l, len);
        }
        oc = c_out & ~1;
        w += oc * CONV_WIDE_ROW_BYTES(len);
        bias2 += oc;
    }
#endif
    for (; oc + 2 <= c_out; oc += 2, w += 2 * CONV_WIDE_ROW_BYTES(len), bias2 += bias_step) {
        CONV_WIDE_DOT(x, w, len, bias2, acc);
        conv_wide_store(l, e, output, base_a, base_b, oc, acc[0], acc[2], with_b, mode);
        conv_wide_store(l, e, output, base_a, base_b, oc + 1, acc[1], acc[3], with_b, mode);
    }
    if (oc < c_out) { /* rows oc - 1 and oc */
        CONV_WIDE_DOT(x, w - CONV_WIDE_ROW_BYTES(len), len,
                      l->bias != 0 ? l->bias + oc - 1 : no_bias, acc);
        conv_wide_store(l, e, output, base_a, base_b, oc, acc[1], acc[3], with_b, mode);
    }
}

#if EK_S8_ROWS && EK_CONV_WIDE_ASM
/* conv_wide_channels for int8 rows: every pair in assembly (ek_conv2d_s8_via_s4's contract). */
EK_CONV_FORCE_INLINE void conv_wide_s8_rows(const pw_layer *l, const uint32_t *x, int32_t len,
                                            int8_t *out_a, int8_t *out_b, int mode)
{
#if EK_REQUANT_WIDE
    if (mode == PW_WIDE_FULL) {
        s8_rows_wide_full_asm(x, out_a, out_b, l, len);
        return;
    }
#endif
    (void)mode;
    s8_rows_full_asm(x, out_a, out_b, l, len);
}
#else /* (off the assembly, ek_conv2d_s8_via_s4 runs its portable loop and never gets here) */
#define conv_wide_s8_rows(l, x, len, out_a, out_b, mode) ((void)0)
#endif

/* Every output pixel, two at a time (conv_wide_apply holds); buf: EK_CONV_WIDE_TAPS words;
 * s8: the filter's rows are int8 (EK_S8_ROWS). */
EK_CONV_FORCE_INLINE void conv2d_wide(const ek_conv2d_params *p, const int8_t *input,
                                      const int8_t *filter, const int32_t *bias, int8_t *output,
                                      const conv_epilogue *e, uint32_t *buf, int s8)
{
    pw_layer l = pw_layer_of(p, filter);
    const int mode = pw_requant_mode(p);
    const int32_t c_out = p->out_c, pixels = p->out_h * p->out_w;
    int32_t oy = 0, ox = 0, pixel = 0;
#if EK_CONV_S4
    /* a row's taps: whole groups (a short window's rows are padded: ek_s4_rows_padded) */
    const int32_t len = EK_S4_ROW_TAPS(p->k_h * p->k_w * p->in_c);
    (void)bias; /* the effective bias (pw_layer_of): raw windows */
#else
    const int32_t len = p->k_h * p->k_w * p->in_c;
    /* a short window's plan, after the two windows in buf (conv_wide_apply: wide_short_words) */
    wide_group *const plan = (p->in_c & 3) != 0 && wide_plan_applies(p)
                                 ? (wide_group *)(void *)(buf + ((len + 3) & ~3))
                                 : 0;
    if (plan != 0) {
        wide_plan_make(p, plan);
    }
    l.bias = bias; /* the raw bias: the windows carry the input offset */
#endif
    for (; pixel + 2 <= pixels; pixel += 2) {
        const int32_t iy_a = oy * p->stride_h - p->pad_top;
        const int32_t ix_a = ox * p->stride_w - p->pad_left;
        if (++ox == p->out_w) {
            ox = 0;
            ++oy;
        }
        CONV_WIDE_WINDOWS(p, input, iy_a, ix_a, oy * p->stride_h - p->pad_top,
                          ox * p->stride_w - p->pad_left, buf, e, plan);
        if (++ox == p->out_w) {
            ox = 0;
            ++oy;
        }
        if (s8) {
            conv_wide_s8_rows(&l, buf, len, output + pixel * c_out, output + (pixel + 1) * c_out,
                              mode);
        } else if (mode == PW_FAST_FULL) { /* the common case, its requantisation inlined alone */
            conv_wide_channels(&l, buf, len, output, e, pixel * c_out, (pixel + 1) * c_out, 1,
                               PW_FAST_FULL);
        } else {
            conv_wide_channels(&l, buf, len, output, e, pixel * c_out, (pixel + 1) * c_out, 1,
                               mode);
        }
    }
    if (pixel < pixels) { /* a lone last pixel: its window in both slots */
        const int32_t iy0 = oy * p->stride_h - p->pad_top, ix0 = ox * p->stride_w - p->pad_left;
        CONV_WIDE_WINDOWS(p, input, iy0, ix0, iy0, ix0, buf, e, plan);
        /* the plain kernel may store B too (the same value at the same place) */
        if (s8) {
            conv_wide_s8_rows(&l, buf, len, output + pixel * c_out, output + pixel * c_out, mode);
        } else {
            conv_wide_channels(&l, buf, len, output, e, pixel * c_out, pixel * c_out, e == 0,
                               mode);
        }
    }
}

/* Out of line once per epilogue, with the two windows on its own stack frame (s8: int8 rows,
 * ek_conv2d_s8_via_s4). */
static EK_CONV_NOINLINE void conv2d_wide_plain(const ek_conv2d_params *p, const int8_t *input,
                                               const int8_t *filter, const int32_t *bias,
                                               int8_t *output EK_S8_ROWS_PARAM)
{
    uint32_t buf[EK_CONV_WIDE_TAPS]; /* two windows of EK_CONV_WIDE_TAPS int16 taps */
    conv2d_wide(p, input, filter, bias, output, 0, buf, EK_S8_ROWS_FLAG);
}

static EK_CONV_NOINLINE void conv2d_wide_fused(const ek_conv2d_params *p, const int8_t *input,
                                               const int8_t *filter, const int32_t *bias,
                                               int8_t *output, const conv_epilogue *e)
{
    uint32_t buf[EK_CONV_WIDE_TAPS];
#if defined(__GNUC__)
    if (e == 0) { /* never: so the plain kernel's channel loops in assembly are not linked here */
        __builtin_unreachable();
    }
#endif
    conv2d_wide(p, input, filter, bias, output, e, buf, 0);
}
#endif

#if EK_FILTER_DSP && EK_CONV_PAIRS_PATH
/* The two-pixel path out of line, once per epilogue: its registers and its window buffer stay
 * out of conv2d_run's frame (the hand-allocated SMLAD asm there needs 13 free registers). */
static EK_CONV_NOINLINE void conv2d_pairs_plain(const ek_conv2d_params *p, const int8_t *input,
                                                const int8_t *filter, int8_t *output)
{
    int32_t buf[2 * EK_PAIR_MAX_LEN / 4]; /* two windows, word aligned */
    conv2d_pairs(p, input, filter, output, 0, (int8_t *)buf);
}

static EK_CONV_NOINLINE void conv2d_pairs_fused(const ek_conv2d_params *p, const int8_t *input,
                                                const int8_t *filter, int8_t *output,
                                                const conv_epilogue *e)
{
    int32_t buf[2 * EK_PAIR_MAX_LEN / 4];
    conv2d_pairs(p, input, filter, output, e, (int8_t *)buf);
}
#endif

#if EK_S4_DSP && EK_S4_CONV_PIXELS
/* Packed int4 filters on the DSP path (ek_conv_s4_dsp.h): every output pixel, in increasing
 * order, its window gathered before any of its outputs is stored (the in-place modes). */
EK_CONV_FORCE_INLINE void conv2d_s4_pixels(const ek_conv2d_params *p, const int8_t *input,
                                           const int8_t *filter, const int32_t *bias,
                                           int8_t *output, const conv_epilogue *e)
{
    int16_t win[EK_S4_WINDOW_TAPS];
    int16_t *const win_odd = win + EK_S4_WINDOW_TAPS / 2; /* odd windows only */
    const int32_t len = p->k_h * p->k_w * p->in_c, c_out = p->out_c;
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t iy0 = oy * p->stride_h - p->pad_top, ix0 = ox * p->stride_w - p->pad_left;
            const int32_t groups = ek_s4_conv_window(p, input, iy0, ix0, win, 0);
            const int32_t groups_odd = (len & 1) ? ek_s4_conv_window(p, input, iy0, ix0, win_odd, 1)
                                                 : 0;
            const int32_t base = (oy * p->out_w + ox) * c_out;
#define EK_S4_STORE_CONV(oc, y) conv_store(e, output, base + (oc), (y))
            EK_S4_CHANNELS(win, win_odd, groups, groups_odd, filter, len, bias, c_out,
                           p->multipliers, p->shifts, p->output_offset, p->act_min, p->act_max,
                           EK_S4_STORE_CONV);
#undef EK_S4_STORE_CONV
        }
    }
}
#endif

#if EK_S8_ROWS
/* Byte of tap t of an int8 row in ek_conv2d_s8_via_s4's layout: within each group of 8 taps,
 * taps 2, 3 and 4, 5 trade places. */
static inline int32_t s8_lane_byte(int32_t t)
{
    return (t & ~6) | ((t & 2) << 1) | ((t & 4) >> 1);
}

#define EK_S8_ROWS_WIDE (EK_S4_DSP && EK_CONV_WIDE_TAPS > 0 && EK_CONV_WIDE_ASM)
#if !EK_S8_ROWS_WIDE
/* ek_conv2d_s8_via_s4 off the widened path (cores without the DSP extension, the host's
 * emulation of it): each output, its valid taps only, in TFLite's reference order of outputs
 * (the in-place modes). */
static void conv_s8_rows_portable(const ek_conv2d_params *p, const int8_t *input,
                                  const int8_t *filter, const int32_t *bias, int8_t *output)
{
    const int32_t c_in = p->in_c, row = EK_S4_ROW_TAPS(p->k_h * p->k_w * c_in);
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_top;
        int32_t ky0, ky1;
        ek_conv_valid_taps(iy0, p->in_h, p->k_h, p->dilation_h, &ky0, &ky1);
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t ix0 = ox * p->stride_w - p->pad_left;
            int32_t kx0, kx1;
            ek_conv_valid_taps(ix0, p->in_w, p->k_w, p->dilation_w, &kx0, &kx1);
            for (int32_t oc = 0; oc < p->out_c; ++oc) {
                const int8_t *const w = filter + oc * row;
                uint32_t acc = (uint32_t)bias_of(bias, oc);
                for (int32_t ky = ky0; ky < ky1; ++ky) {
                    for (int32_t kx = kx0; kx < kx1; ++kx) {
                        const int32_t iy = iy0 + ky * p->dilation_h, ix = ix0 + kx * p->dilation_w;
                        const int8_t *x = input + (iy * p->in_w + ix) * c_in;
                        const int32_t t = (ky * p->k_w + kx) * c_in;
                        for (int32_t c = 0; c < c_in; ++c) {
                            acc += (uint32_t)((x[c] + p->input_offset) * w[s8_lane_byte(t + c)]);
                        }
                    }
                }
                output[(oy * p->out_w + ox) * p->out_c + oc] = ek_conv_requantize(
                    (int32_t)acc, p->multipliers[oc], p->shifts[oc], p->output_offset,
                    p->act_min, p->act_max);
            }
        }
    }
}

#endif

/* ek_conv2d_s8_via_s4's layer (conv2d_run with s8). */
static inline void conv2d_s8_rows(const ek_conv2d_params *p, const int8_t *input,
                                  const int8_t *filter, const int32_t *bias, int8_t *output)
{
#if EK_S8_ROWS_WIDE
    const int mode = pw_requant_mode(p);
    if (!conv_wide_apply(p, 0) || (p->out_c & 1) != 0
        || (mode != PW_FAST_FULL && mode != PW_WIDE_FULL)) {
        /* the generator picks this kernel only where the widened path's channel loops in
         * assembly take every channel (op_emitters.s8_via_s4_pays): a build that breaks
         * that contract faults here */
        __builtin_trap();
    }
    conv2d_wide_plain(p, input, filter, bias, output EK_S8_ROWS_ARG(1));
#else
    conv_s8_rows_portable(p, input, filter, bias, output);
#endif
}
#endif

/* The convolution; e == 0 for the plain kernel (a constant after inlining). */
EK_CONV_FORCE_INLINE void conv2d_run(const ek_conv2d_params *params, const int8_t *input,
                                     const int8_t *filter, const int32_t *bias, int8_t *output,
                                     const conv_epilogue *e EK_S8_ROWS_PARAM)
{
    /* A private copy: int8 stores to `output` may alias anything the compiler cannot prove
     * apart, and would otherwise force every field to be reloaded after each output byte. */
    const ek_conv2d_params local = *params;
    const ek_conv2d_params *p = &local;
#if EK_S8_ROWS
    if (s8) { /* int8 rows (ek_conv2d_s8_via_s4) */
        conv2d_s8_rows(p, input, filter, bias, output);
        return;
    }
#endif
    const int32_t c_out = p->out_c, len = p->k_h * p->k_w * p->in_c;
#if EK_CONV_S4
    /* a padded filter's rows (the plain kernel: ek_s4_rows_padded) are read on every path */
    const int padded = e == 0 && ek_s4_rows_padded(p->in_c, len, c_out, p->dilation_w,
                                                   p->filter_offset, p->effective_bias);
    const int32_t row = padded ? EK_S4_ROW_TAPS(len) : len;
#else
    const int32_t row = len;
#endif
#if EK_S4_DSP && EK_CONV_WIDE_TAPS > 0
    if (conv_wide_apply(p, e != 0)) {
        if (e == 0) {
            conv2d_wide_plain(p, input, filter, bias, output EK_S8_ROWS_ARG(0));
        } else {
            conv2d_wide_fused(p, input, filter, bias, output, e);
        }
        return;
    }
#endif
#if EK_S4_DSP && EK_S4_CONV_PIXELS
    if (!padded && ek_s4_conv_dsp_applies(p->filter_offset, len)) {
        conv2d_s4_pixels(p, input, filter, bias, output, e);
        return;
    }
#endif
#if EK_FILTER_DSP
#if EK_CONV_PIXELS
    const int use_dsp = p->filter_offset == 0;
    const int32_t *effective_bias = p->effective_bias;
#endif
#if EK_CONV_WIDE_TAPS > 0
    if (conv_wide_apply(p)) {
        if (e == 0) {
            conv2d_wide_plain(p, input, filter, bias, output EK_S8_ROWS_ARG(0));
        } else {
            conv2d_wide_fused(p, input, filter, bias, output, e);
        }
        return;
    }
#endif
#if EK_CONV_PAIRS_PATH
    if (conv_pairs_apply(p)) {
        if (e == 0) {
            conv2d_pairs_plain(p, input, filter, output);
        } else {
            conv2d_pairs_fused(p, input, filter, output, e);
        }
        return;
    }
#endif
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
#if EK_FILTER_DSP && EK_CONV_PIXELS
            if (use_dsp) {
                /* effective bias only where every tap is inside: padding taps contribute
                 * nothing in the reference, but the folded sum counts them */
                const int interior = effective_bias != 0 && ky0 == 0 && ky1 == p->k_h
                                     && kx0 == 0 && kx1 == p->k_w;
                for (; oc + 4 <= c_out; oc += 4) {
                    int32_t acc[4];
                    if (interior) {
                        acc[0] = effective_bias[oc];
                        acc[1] = effective_bias[oc + 1];
                        acc[2] = effective_bias[oc + 2];
                        acc[3] = effective_bias[oc + 3];
                        conv_acc4_interior(p, input, filter, oc, iy0, ix0, acc);
                    } else {
                        acc[0] = bias_of(bias, oc);
                        acc[1] = bias_of(bias, oc + 1);
                        acc[2] = bias_of(bias, oc + 2);
                        acc[3] = bias_of(bias, oc + 3);
                        conv_acc4_dsp(p, input, filter, oc, iy0, ix0, ky0, ky1, kx0, kx1, acc);
                    }
                    for (int32_t r = 0; r < 4; ++r) {
                        conv_store(e, output, base + oc + r,
                                   ek_conv_requantize(acc[r], p->multipliers[oc + r],
                                                      p->shifts[oc + r], p->output_offset,
                                                      p->act_min, p->act_max));
                    }
                }
                for (; oc < c_out; ++oc) {
                    int32_t acc = interior
                        ? conv_acc1_dsp(p, input, filter, oc, iy0, ix0, 0, p->k_h, 0, p->k_w, 0,
                                        effective_bias[oc])
                        : conv_acc1_dsp(p, input, filter, oc, iy0, ix0, ky0, ky1, kx0, kx1,
                                        p->input_offset, bias_of(bias, oc));
                    conv_store(e, output, base + oc,
                               ek_conv_requantize(acc, p->multipliers[oc], p->shifts[oc],
                                                  p->output_offset, p->act_min, p->act_max));
                }
            }
#endif
            for (; oc < c_out; ++oc) {
                int32_t acc = conv_acc_portable(p, input, filter, oc, row, iy0, ix0, ky0, ky1,
                                                kx0, kx1, (uint32_t)bias_of(bias, oc));
                conv_store(e, output, base + oc,
                           ek_conv_requantize(acc, p->multipliers[oc], p->shifts[oc],
                                              p->output_offset, p->act_min, p->act_max));
            }
        }
    }
}

#if EK_S8_ROWS && EK_CONV_S8_VIA_S4 == 2
/* ek_conv2d_s4 and ek_conv2d_s8_via_s4 both called: they share one out-of-line convolution, one
 * copy of its code and one frame under the widened path's helpers (the static stack bound
 * follows calls, not which kernel made them: with two frames it would add ek_conv2d_s4's to
 * the short windows only ek_conv2d_s8_via_s4 gathers). */
static EK_CONV_NOINLINE void conv2d_run_plain(const ek_conv2d_params *params,
                                              const int8_t *input, const int8_t *filter,
                                              const int32_t *bias, int8_t *output, int s8)
{
    conv2d_run(params, input, filter, bias, output, 0, s8);
}

void ek_conv2d_s8(const ek_conv2d_params *params, const int8_t *input, const int8_t *filter,
                  const int32_t *bias, int8_t *output)
{
    conv2d_run_plain(params, input, filter, bias, output, 0);
}

void ek_conv2d_s8_via_s4(const ek_conv2d_params *params, const int8_t *input,
                         const int8_t *filter, const int32_t *bias, int8_t *output)
{
    conv2d_run_plain(params, input, filter, bias, output, 1);
}
#else
void ek_conv2d_s8(const ek_conv2d_params *params, const int8_t *input, const int8_t *filter,
                  const int32_t *bias, int8_t *output)
{
    conv2d_run(params, input, filter, bias, output, 0 EK_S8_ROWS_ARG(0));
}

#if EK_S8_ROWS
/* Without ek_conv2d_s4 calls: the int8 rows' path alone (ek_conv2d_s4's other paths unlinked). */
void ek_conv2d_s8_via_s4(const ek_conv2d_params *params, const int8_t *input,
                         const int8_t *filter, const int32_t *bias, int8_t *output)
{
    const ek_conv2d_params local = *params; /* as conv2d_run */
    conv2d_s8_rows(&local, input, filter, bias, output);
}
#endif
#endif

void ek_conv2d_add_s8(const ek_conv2d_params *params, const ek_add_params *add_params,
                      const int8_t *input, const int8_t *filter, const int32_t *bias,
                      const int8_t *skip, int8_t *output, int32_t conv_input_position)
{
    /* the ADD's constants in a local, for the same reason as the conv's params copy */
    const ek_add_s8_consts prepared = ek_add_s8_prepare(add_params);
    const ek_add_s8_consts add = conv_input_position == 0 ? prepared
                                                          : ek_add_s8_swapped(&prepared);
    const conv_epilogue fused = {&add, skip};
    conv2d_run(params, input, filter, bias, output, &fused EK_S8_ROWS_ARG(0));
}

/* The int4 DSP path's store of a pointwise or fully-connected output row `out`. */
#define EK_S4_STORE_OUT(oc, y) out[oc] = (int8_t)(y)

/* The int4 DSP path's window buffer of a pointwise kernel (NULL: the other paths). */
#if EK_S4_DSP
#define EK_POINTWISE_WINDOW(params)                                                          \
    int16_t window_[EK_S4_WINDOW_TAPS];                                                       \
    int16_t *const win = ek_s4_dsp_applies((params).filter_offset, (params).in_c) ? window_ : 0
#else
#define EK_POINTWISE_WINDOW(params) int16_t *const win = 0
#endif

/* One output pixel of a 1x1 unpadded convolution over its own input (the pointwise in-place
 * modes): its input pixel src(p) is saved to the scratch before any output is written. */
/* always inlined: a call per pixel costs about 1% of a DS-CNN's instructions */
static inline __attribute__((always_inline)) void pointwise_pixel(
    const ek_conv2d_params *p, const int8_t *input, const int8_t *filter, const int32_t *bias,
    int8_t *output, int8_t *scratch, int32_t pixel, int16_t *win, int fast)
{
    const int32_t c_in = p->in_c, c_out = p->out_c;
    /* src(p): the input pixel this output pixel reads (1x1 window, no padding) */
    const int32_t oy = pixel / p->out_w, ox = pixel % p->out_w;
    const int32_t src = oy * p->stride_h * p->in_w + ox * p->stride_w;
    int8_t *out = output + pixel * c_out;
    int32_t oc = 0;
#if EK_S4_DSP
    if (win != 0) { /* the window is the saved copy of the input pixel */
        const int32_t groups = ek_s4_finish(win, ek_s4_put_run(win, 0, input + src * c_in, c_in,
                                                               p->input_offset));
        EK_S4_CHANNELS(win, win, groups, groups, filter, c_in, bias, c_out, p->multipliers,
                       p->shifts, p->output_offset, p->act_min, p->act_max, EK_S4_STORE_OUT);
        return;
    }
#else
    (void)win;
#endif
    /* Save the input pixel first: the outputs below may overwrite it. */
    memcpy(scratch, input + src * c_in, (size_t)c_in);
#if EK_FILTER_DSP
    if (p->filter_offset == 0) {
        for (; oc + 4 <= c_out; oc += 4) {
            int32_t acc[4];
            if (p->effective_bias != 0) { /* 1x1, no padding: every pixel is interior */
                acc[0] = p->effective_bias[oc];
                acc[1] = p->effective_bias[oc + 1];
                acc[2] = p->effective_bias[oc + 2];
                acc[3] = p->effective_bias[oc + 3];
                dot4_raw(scratch, filter + oc * c_in, c_in, c_in, acc);
            } else {
                acc[0] = bias_of(bias, oc);
                acc[1] = bias_of(bias, oc + 1);
                acc[2] = bias_of(bias, oc + 2);
                acc[3] = bias_of(bias, oc + 3);
                ek_dot4_s8(scratch, filter + oc * c_in, c_in, c_in, p->input_offset, acc);
            }
            for (int32_t r = 0; r < 4; ++r) {
                out[oc + r] = CONV_REQUANTIZE(p, acc[r], oc + r, fast);
            }
        }
    }
#endif
    for (; oc < c_out; ++oc) {
        const uint32_t acc = ek_filter_dot(scratch, p->input_offset, filter, oc * c_in, c_in,
                                           p->filter_offset, (uint32_t)bias_of(bias, oc));
        out[oc] = CONV_REQUANTIZE(p, (int32_t)acc, oc, fast);
    }
}

#if EK_PW_PIXEL_LOOP && !EK_CONV_S4 && EK_PW_PAIRED
/* pointwise_pixel over a paired filter (ek_conv.h `paired_filter`): raw bytes from the
 * effective bias, as the two-pixel loop, which takes every paired call on DSP cores; this runs
 * on the others. */
static void pointwise_paired_pixel(const ek_conv2d_params *p, const int8_t *input,
                                   const int8_t *filter, int8_t *output, int8_t *scratch,
                                   int32_t pixel, int fast)
{
    const int32_t c_in = p->in_c, c_out = p->out_c;
    const int32_t oy = pixel / p->out_w, ox = pixel % p->out_w;
    const int32_t src = oy * p->stride_h * p->in_w + ox * p->stride_w;
    int8_t *out = output + pixel * c_out;
    memcpy(scratch, input + src * c_in, (size_t)c_in); /* the outputs may overwrite it */
    for (int32_t oc = 0; oc < c_out; ++oc) {
        const int8_t *w = filter + (oc & ~1) * c_in + 4 * (oc & 1);
        uint32_t acc = (uint32_t)p->effective_bias[oc];
        for (int32_t k = 0; k < c_in; k += 4, w += 8) {
            for (int32_t j = 0; j < 4; ++j) {
                acc += (uint32_t)((int32_t)scratch[k + j] * w[j]);
            }
        }
        out[oc] = CONV_REQUANTIZE(p, (int32_t)acc, oc, fast);
    }
}

#define EK_PW_PAIRED_PIXELS(P, first, end, step)                                               \
    if ((P).paired_filter) {                                                                   \
        const int fast_ = REQUANT_FAST_LAYER(&(P), (P).out_c);                                 \
        for (int32_t pixel_ = (first); pixel_ != (end); pixel_ += (step)) {                    \
            pointwise_paired_pixel(&(P), input, filter, output, scratch, pixel_, fast_);       \
        }                                                                                      \
        return;                                                                                \
    }
#else
#define EK_PW_PAIRED_PIXELS(P, first, end, step)
#endif

void ek_conv2d_s8_pointwise_inplace(const ek_conv2d_params *params, int8_t *input,
                                    const int8_t *filter, const int32_t *bias, int8_t *output,
                                    int8_t *scratch)
{
    const ek_conv2d_params local = *params; /* see ek_conv2d_s8 */
#if EK_FILTER_DSP || EK_S4_DSP
    if (pw_pairs_apply(&local)) {
        pw_inplace_pairs(&local, input, filter, output, scratch, 1);
        return;
    }
#endif
#if EK_PW_PIXEL_LOOP
    EK_PW_PAIRED_PIXELS(local, 0, local.out_h * local.out_w, 1)
    EK_POINTWISE_WINDOW(local);
    const int fast = REQUANT_FAST_LAYER(&local, local.out_c);
    for (int32_t pixel = 0; pixel < local.out_h * local.out_w; ++pixel) {
        pointwise_pixel(&local, input, filter, bias, output, scratch, pixel, win, fast);
    }
#else
    (void)bias; /* every call took the two-pixel loop (EK_PW_ONLY_PAIRS) */
#endif
}

/* pointwise_inplace_backward: the same pixels in decreasing order, so an output wider than its
 * input (an expanding 1x1) writes its tail where no input pixel still to be read lies. */
void ek_conv2d_s8_pointwise_inplace_backward(const ek_conv2d_params *params, int8_t *input,
                                             const int8_t *filter, const int32_t *bias,
                                             int8_t *output, int8_t *scratch)
{
    const ek_conv2d_params local = *params;
#if EK_FILTER_DSP || EK_S4_DSP
    if (pw_pairs_apply(&local)) {
        pw_inplace_pairs(&local, input, filter, output, scratch, -1);
        return;
    }
#endif
#if EK_PW_PIXEL_LOOP
    EK_PW_PAIRED_PIXELS(local, local.out_h * local.out_w - 1, -1, -1)
    EK_POINTWISE_WINDOW(local);
    const int fast = REQUANT_FAST_LAYER(&local, local.out_c);
    for (int32_t pixel = local.out_h * local.out_w - 1; pixel >= 0; --pixel) {
        pointwise_pixel(&local, input, filter, bias, output, scratch, pixel, win, fast);
    }
#else
    (void)bias;
#endif
}

#if !EK_CONV_S4 && EK_FC_INTERLEAVED
/* The interleaved FULLY_CONNECTED layout (ek_conv.h `interleaved`): group g of four units. */

#if EK_FILTER_DSP
/* acc[r] += sum_{i < 4 * blocks} x[i] * (unit r's byte i), r = 0..3, over one group of the
 * interleaved layout (blocks >= 1; w word aligned): raw bytes, the input offset being in the
 * bias. Per block of 4 input bytes: one word of x split into lanes {0,2} and {1,3}, the four
 * units' words with one LDM, per unit two SXTB16 and two SMLAD: 20 instructions per 16 MACs
 * (the row-major dot4_raw needs 23: a load per unit), unrolled 4 times so the loop test is
 * paid once per 64 MACs. */
#if defined(__ARM_FEATURE_DSP) && !defined(EDGEKIT_EMULATE_DSP) && defined(__GNUC__)
/* Naked: the loop needs 14 registers (4 accumulators, x, end, w, x's two lane pairs, 4 filter
 * words, 1 temporary), lr included, which inline asm operands cannot name. AAPCS: r0 x, r1 w,
 * r2 blocks, r3 acc; r4-r11 and lr saved (with r3, 40 bytes: an 8-byte aligned frame). */
#define FC_IL_BLOCK                                                                         \
    "ldr r9, [r0], #4\n\t"                                                                  \
    "sxtb16 r8, r9\n\t"                                                                     \
    "sxtb16 r9, r9, ror #8\n\t"                                                             \
    "ldmia r1!, {r3, r10, r11, r12}\n\t"                                                    \
    "sxtb16 lr, r3\n\t"                                                                     \
    "smlad r4, lr, r8, r4\n\t"                                                              \
    "sxtb16 r3, r3, ror #8\n\t"                                                             \
    "smlad r4, r3, r9, r4\n\t"                                                              \
    "sxtb16 lr, r10\n\t"                                                                    \
    "smlad r5, lr, r8, r5\n\t"                                                              \
    "sxtb16 r10, r10, ror #8\n\t"                                                           \
    "smlad r5, r10, r9, r5\n\t"                                                             \
    "sxtb16 lr, r11\n\t"                                                                    \
    "smlad r6, lr, r8, r6\n\t"                                                              \
    "sxtb16 r11, r11, ror #8\n\t"                                                           \
    "smlad r6, r11, r9, r6\n\t"                                                             \
    "sxtb16 lr, r12\n\t"                                                                    \
    "smlad r7, lr, r8, r7\n\t"                                                              \
    "sxtb16 r12, r12, ror #8\n\t"                                                           \
    "smlad r7, r12, r9, r7\n\t"

/* naked: the asm reads the arguments from r0-r3, which -Wextra cannot see */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
__attribute__((naked, noinline)) static void fc_dot4_interleaved(const int8_t *x,
                                                                 const int8_t *w,
                                                                 int32_t blocks,
                                                                 int32_t acc[4])
{
    __asm__ volatile(
        "push {r3, r4, r5, r6, r7, r8, r9, r10, r11, lr}\n\t"
        "ldm r3, {r4, r5, r6, r7}\n\t"
        "and lr, r2, #3\n\t"
        "add r2, r0, r2, lsl #2\n\t" /* r2: the end of x */
        /* enter the 4-block loop so that blocks % 4 blocks run in the first pass */
        "cmp lr, #1\n\t"
        "beq 4f\n\t"
        "cmp lr, #2\n\t"
        "beq 3f\n\t"
        "cmp lr, #3\n\t"
        "beq 2f\n\t"
        "1:\n\t" FC_IL_BLOCK
        "2:\n\t" FC_IL_BLOCK
        "3:\n\t" FC_IL_BLOCK
        "4:\n\t" FC_IL_BLOCK
        "cmp r0, r2\n\t"
        "bne 1b\n\t"
        "ldr r3, [sp]\n\t"
        "stm r3, {r4, r5, r6, r7}\n\t"
        "pop {r3, r4, r5, r6, r7, r8, r9, r10, r11, pc}\n\t");
}
#pragma GCC diagnostic pop
#undef FC_IL_BLOCK
#else
/* The same loop in C (EDGEKIT_EMULATE_DSP: the host tests run it through the emulated
 * instructions). */
static void fc_dot4_interleaved(const int8_t *x, const int8_t *w, int32_t blocks,
                                int32_t acc[4])
{
    int32_t a[4] = {acc[0], acc[1], acc[2], acc[3]};
    for (int32_t b = 0; b < blocks; ++b, x += 4) {
        const uint32_t xv = ek_read_u32(x);
        const uint32_t x02 = ek_sxtb16(xv), x13 = ek_sxtb16_ror8(xv);
        for (int32_t r = 0; r < 4; ++r, w += 4) {
            const uint32_t wv = ek_read_u32(w);
            a[r] = ek_smlad(ek_sxtb16(wv), x02, a[r]);
            a[r] = ek_smlad(ek_sxtb16_ror8(wv), x13, a[r]);
        }
    }
    for (int32_t r = 0; r < 4; ++r) {
        acc[r] = a[r];
    }
}
#endif
#endif

#if EK_FILTER_DSP
/* The four outputs of a group in the fast requantisation, stored as one (unaligned) word: no
 * byte store between them, after which C would reload p's fields for each output, and one SSAT
 * for the clamp where the activation range is all of int8. Little-endian (Cortex-M; the host
 * tests' x86): byte r of the word is out[r]. */
static EK_CONV_NOINLINE void fc_store4_fast(const ek_fully_connected_params *p, const int32_t acc[4],
                                           int32_t u, int8_t *out)
{
    const int32_t *multipliers = p->multipliers + u, *shifts = p->shifts + u;
    const int32_t output_offset = p->output_offset, act_min = p->act_min, act_max = p->act_max;
    const int full = act_min == -128 && act_max == 127;
    uint32_t word = 0;
    for (int32_t r = 0; r < 4; ++r) {
        const int32_t shift = shifts[r];
        const int32_t v = ek_requant_fast(acc[r], multipliers[r],
                                          ek_requant_fast_k(shift, output_offset), -shift - 1);
        const int32_t y = full ? ek_ssat8(v) : ek_clamp(v, act_min, act_max);
        word |= ((uint32_t)y & 0xFFu) << (8 * r);
    }
    memcpy(out, &word, sizeof word);
}
#endif

#if EK_FILTER_DSP
/* CONV_REQUANTIZE out of line: on DSP cores the interleaved path's outputs outside
 * fc_store4_fast (a layer off the fast form, the units % 4 last units) share one copy of it
 * (flash); the portable build keeps it inline (a smaller stack on the M0+). */
static EK_CONV_NOINLINE int8_t fc_requantize(const ek_fully_connected_params *p, int32_t acc,
                                             int32_t unit, int fast)
{
    return CONV_REQUANTIZE(p, acc, unit, fast);
}
#define FC_TAIL_REQUANTIZE fc_requantize
#else
#define FC_TAIL_REQUANTIZE CONV_REQUANTIZE
#endif

#if !EK_FILTER_DSP
/* The portable form, one unit: acc + sum_i x[i] * (w_unit's byte i), w_unit = its group's start
 * + 4 * (unit % 4): 4 bytes, then 12 of the other units. Unrolled by the 4 bytes of a block, so
 * the loop test is paid once per 4 MACs. */
static uint32_t fc_acc1_interleaved(const int8_t *x, const int8_t *w_unit, int32_t depth,
                                    uint32_t acc)
{
    for (const int8_t *const end = x + depth; x != end; x += 4, w_unit += 16) {
        acc += (uint32_t)(x[0] * w_unit[0]);
        acc += (uint32_t)(x[1] * w_unit[1]);
        acc += (uint32_t)(x[2] * w_unit[2]);
        acc += (uint32_t)(x[3] * w_unit[3]);
    }
    return acc;
}
#endif

/* Both offsets are 0 here (ek_conv.h `interleaved`): raw bytes on every path. */
static void fully_connected_interleaved(const ek_fully_connected_params *p, const int8_t *input,
                                        const int8_t *filter, const int32_t *bias,
                                        int8_t *output)
{
    const int32_t depth = p->depth, units = p->units, grouped = units & ~3;
    const int fast = FC_REQUANT_FAST(p);
    for (int32_t row = 0; row < p->rows; ++row) {
        const int8_t *x = input + row * depth;
        int8_t *out = output + row * units;
        int32_t u = 0;
        for (; u < grouped; u += 4) {
            const int8_t *w = filter + u * depth;
#if EK_FILTER_DSP
            int32_t acc[4] = {bias_of(bias, u), bias_of(bias, u + 1), bias_of(bias, u + 2),
                              bias_of(bias, u + 3)};
            fc_dot4_interleaved(x, w, depth >> 2, acc);
            if (fast) {
                fc_store4_fast(p, acc, u, out + u);
                continue;
            }
            for (int32_t r = 0; r < 4; ++r) {
                out[u + r] = fc_requantize(p, acc[r], u + r, fast);
            }
#else
            for (int32_t r = 0; r < 4; ++r) {
                const uint32_t acc = fc_acc1_interleaved(x, w + 4 * r, depth,
                                                         (uint32_t)bias_of(bias, u + r));
                out[u + r] = CONV_REQUANTIZE(p, (int32_t)acc, u + r, fast);
            }
#endif
        }
        for (; u < units; ++u) { /* the units % 4 last units, row-major */
            const uint32_t acc = ek_filter_dot(x, 0, filter, u * depth, depth, 0,
                                               (uint32_t)bias_of(bias, u));
            out[u] = FC_TAIL_REQUANTIZE(p, (int32_t)acc, u, fast);
        }
    }
}
#endif

void ek_fully_connected_s8(const ek_fully_connected_params *p, const int8_t *input, const int8_t *filter,
                           const int32_t *bias, int8_t *output)
{
    const int32_t depth = p->depth, units = p->units;
#if !EK_CONV_S4 && EK_FC_INTERLEAVED
    if (p->interleaved) {
        fully_connected_interleaved(p, input, filter, bias, output);
        return;
    }
#endif
#if EK_S4_DSP
    if (ek_s4_dsp_applies(p->filter_offset, depth)) {
        int16_t win[EK_S4_WINDOW_TAPS];
        for (int32_t row = 0; row < p->rows; ++row) {
            int8_t *out = output + row * units;
            const int32_t groups = ek_s4_finish(win, ek_s4_put_run(win, 0, input + row * depth,
                                                                   depth, p->input_offset));
            EK_S4_CHANNELS(win, win, groups, groups, filter, depth, bias, units,
                           p->multipliers, p->shifts, p->output_offset, p->act_min, p->act_max,
                           EK_S4_STORE_OUT);
        }
        return;
    }
#endif
    const int fast = FC_REQUANT_FAST(p);
    for (int32_t row = 0; row < p->rows; ++row) {
        const int8_t *x = input + row * depth;
        int8_t *out = output + row * units;
        int32_t u = 0;
#if EK_FILTER_DSP
        if (p->filter_offset == 0) {
            for (; u + 4 <= units; u += 4) {
                int32_t acc[4] = {bias_of(bias, u), bias_of(bias, u + 1), bias_of(bias, u + 2),
                                  bias_of(bias, u + 3)};
                if (p->input_offset == 0) { /* the generator folds it into the bias */
                    dot4_raw(x, filter + u * depth, depth, depth, acc);
                } else {
                    ek_dot4_s8(x, filter + u * depth, depth, depth, p->input_offset, acc);
                }
                for (int32_t r = 0; r < 4; ++r) {
                    out[u + r] = CONV_REQUANTIZE(p, acc[r], u + r, fast);
                }
            }
            for (; u < units; ++u) {
                int32_t acc = ek_dot1_s8(x, filter + u * depth, depth, p->input_offset,
                                         bias_of(bias, u));
                out[u] = CONV_REQUANTIZE(p, acc, u, fast);
            }
        }
#endif
        for (; u < units; ++u) {
            const uint32_t acc = ek_filter_dot(x, p->input_offset, filter, u * depth, depth,
                                               p->filter_offset, (uint32_t)bias_of(bias, u));
            out[u] = CONV_REQUANTIZE(p, (int32_t)acc, u, fast);
        }
    }
}
