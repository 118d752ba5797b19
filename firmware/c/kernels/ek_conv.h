/* CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED for int8 activations and int8 weights
 * or packed int4 weights (the _s4 kernels), batch 1 for the convolutions.
 *
 * Semantics: TFLite (Micro)'s reference_integer_ops ConvPerChannel, DepthwiseConvPerChannel and
 * FullyConnected, as edgekit.reference.conv implements them:
 *     acc = bias[c] + sum((x + input_offset) * (w + filter_offset))   (int32, wrapping)
 *     y   = clamp(MultiplyByQuantizedMultiplier(acc, multipliers[c], shifts[c]) + output_offset,
 *                 act_min, act_max)
 * Taps outside the input are skipped (padding with the input zero point). The numbers in the
 * params structs are exactly those of edgekit.reference.prepare(op, graph).
 *
 * Layouts: input/output NHWC (N = 1), conv filter OHWI, depthwise filter 1HW(C*M) (output
 * channel c*M + m reads input channel c), fully-connected filter [units, depth].
 *
 * Paths: portable C99 everywhere; on ARMv7E-M and later (__ARM_FEATURE_DSP) an SXTB16/SMLAD
 * path, bit-exact with the portable one (see ek_arm_dsp.h; EDGEKIT_PORTABLE_KERNELS forces the
 * portable path, EDGEKIT_EMULATE_DSP runs the DSP path's C emulation on a host).
 *
 * Aliasing: the out-of-place kernels need output not to overlap input. The *_inplace kernels
 * implement the planner's in-place modes (edgekit.planner docstring) exactly. */
#ifndef EK_CONV_H
#define EK_CONV_H

#include <stdint.h>

#include "ek_elementwise.h" /* ek_add_params (the fused residual ADD) */

/* CONV_2D and DEPTHWISE_CONV_2D (depth_multiplier is 1 for CONV_2D). Fields named as the
 * edgekit.reference ConvParams fields where one exists (stride -> stride_h/stride_w, dilation ->
 * dilation_h/dilation_w, pad (top, bottom, left, right) -> pad_top/pad_left). */
typedef struct {
    int32_t in_h, in_w, in_c;    /* input [1, in_h, in_w, in_c] */
    int32_t out_h, out_w, out_c; /* output [1, out_h, out_w, out_c] */
    int32_t k_h, k_w;            /* filter window */
    int32_t stride_h, stride_w;
    int32_t dilation_h, dilation_w;
    int32_t pad_top, pad_left; /* bottom/right padding follows from the output shape */
    int32_t depth_multiplier;  /* DEPTHWISE_CONV_2D only; out_c == in_c * depth_multiplier */
    int32_t input_offset;      /* -input zero point */
    int32_t filter_offset;     /* -filter zero point (0 for TFLite's symmetric weights) */
    int32_t output_offset;     /* output zero point */
    int32_t act_min, act_max;
    const int32_t *multipliers; /* [out_c] Q0.31 */
    const int32_t *shifts;      /* [out_c] > 0: left shift */
    /* Optional (NULL: absent; CONV_2D only, depthwise ignores it): [out_c] int32
     *     effective_bias[c] = bias[c] + input_offset * sum(filter[c, :, :, :])
     * (bias[c] = 0 without a bias; int32 arithmetic wrapping mod 2^32, as the accumulator).
     * The DSP path starts the pixels whose window lies wholly inside the input from it and
     * multiplies raw input bytes, so the input offset costs nothing in the inner loop; the
     * other pixels still use `bias`. The result is identical either way (the accumulator
     * wraps mod 2^32 in both). Ignored when filter_offset != 0 and on the portable path. */
    const int32_t *effective_bias;
    /* The pointwise in-place kernels only: 1 when their scratch holds 4 * in_c bytes (the
     * planner's figure for a 1x1 CONV_2D), so the DSP path may widen two pixels into it; 0 (a
     * token FULLY_CONNECTED's 2 * in_c) keeps them to one int8 pixel at a time. */
    int32_t wide_scratch;
    /* The pointwise in-place kernels, int8 filters only: 1 when the filter is in the paired
     * layout the two-pixel DSP loop reads, rows 2j and 2j + 1 word by word (out_c even,
     * in_c % 4 == 0, filter_offset 0, effective_bias set, word aligned):
     *     for k in 0, 4, .., in_c - 4: row 2j's bytes k..k+3, then row 2j + 1's
     * at byte 2 * j * in_c; 0: OHWI. Same bytes, same results: only their order changes. */
    int32_t paired_filter;
} ek_conv2d_params;

typedef ek_conv2d_params ek_depthwise_conv2d_params;

/* FULLY_CONNECTED: input [rows, depth] (any shape of rows*depth elements), filter
 * [units, depth], output [rows, units]. */
typedef struct {
    int32_t rows, depth, units;
    int32_t input_offset, filter_offset, output_offset;
    int32_t act_min, act_max;
    const int32_t *multipliers; /* [units] (a per-tensor layer repeats its one multiplier) */
    const int32_t *shifts;      /* [units] */
    /* 0: filter [units, depth] row-major. 1 (int8 filters only, depth % 4 == 0, input_offset
     * and filter_offset 0: the generator folds the input offset into the bias; the _s4 kernel
     * must not be given it): the generator's build-time layout for the DSP loop, which reads
     * four units' words with one load-multiple. Units in groups of four, group g (units
     * 4g..4g+3, the first units / 4 * 4 units) at byte 4 * g * depth:
     *     for k in 0, 4, .., depth - 4: unit 4g's bytes k..k+3, 4g+1's, 4g+2's, 4g+3's
     * then the units % 4 last units row-major. The array must be word aligned. Same size, same
     * results: only the order of the bytes changes. */
    int32_t interleaved;
    /* 1: the generator found that every unit's requantisation takes the fast form
     * (multipliers[u] >= 0, -23 <= shifts[u] <= -1), so the kernel need not check; 0: the
     * kernel checks the units itself. The result is the same either way. */
    int32_t requant_fast;
} ek_fully_connected_params;

/* In all four: bias may be NULL (no bias); scratch is used only where named. */
void ek_conv2d_s8(const ek_conv2d_params *p, const int8_t *input, const int8_t *filter,
                  const int32_t *bias, int8_t *output);

/* The planner's `conv_add_skip` mode: CONV_2D fused with the residual ADD that reads its output.
 * For every output element i (NHWC, the conv output's shape == skip's == output's):
 *     y = the conv's int8 result exactly as ek_conv2d_s8 stores it (its own requantisation,
 *         output offset and act_min/act_max clamp)
 *     output[i] = conv_input_position == 0 ? ADD(y, skip[i]) : ADD(skip[i], y)
 * with ADD = ek_add_element(add_params, input1, input2): add_params are exactly ek_add_s8's for
 * the ADD op with its inputs in the ADD's order. skip may be output (the planner passes the
 * same buffer): skip[i] is read before output[i] is written and never after. input must not
 * overlap skip/output. No scratch. */
void ek_conv2d_add_s8(const ek_conv2d_params *p, const ek_add_params *add_params,
                      const int8_t *input, const int8_t *filter, const int32_t *bias,
                      const int8_t *skip, int8_t *output, int32_t conv_input_position);

/* The planner's `pointwise_inplace` mode (CONV_2D 1x1, no padding): output == input (one
 * buffer). Pixels in increasing order, one or two at a time; each pixel's input is copied to
 * scratch (4*in_c bytes, word aligned: on DSP cores two pixels widened to int16) before any of
 * its outputs is written. */
void ek_conv2d_s8_pointwise_inplace(const ek_conv2d_params *p, int8_t *input,
                                    const int8_t *filter, const int32_t *bias, int8_t *output,
                                    int8_t *scratch);

/* The planner's `pointwise_inplace_backward` mode: as above with the pixels in DECREASING order;
 * the output starts at the input and may run past its end (outputs wider than the input). */
void ek_conv2d_s8_pointwise_inplace_backward(const ek_conv2d_params *p, int8_t *input,
                                             const int8_t *filter, const int32_t *bias,
                                             int8_t *output, int8_t *scratch);

void ek_depthwise_conv2d_s8(const ek_depthwise_conv2d_params *p, const int8_t *input,
                            const int8_t *filter, const int32_t *bias, int8_t *output);

/* The planner's `depthwise_channelwise` in-place mode: output == input (the same buffer, which
 * holds the input and receives the output); depth_multiplier 1, out_h*out_w <= in_h*in_w.
 * scratch: in_h*in_w bytes (one channel plane, edgekit.planner.scratch_bytes). */
void ek_depthwise_conv2d_s8_inplace(const ek_depthwise_conv2d_params *p, int8_t *input,
                                    const int8_t *filter, const int32_t *bias, int8_t *output,
                                    int8_t *scratch);

void ek_fully_connected_s8(const ek_fully_connected_params *p, const int8_t *input,
                           const int8_t *filter, const int32_t *bias, int8_t *output);

/* Packed int4 filters (TFLite INT4: element i in the low nibble of byte i/2 when i is even,
 * the high nibble when odd; the generator appends EK_S4_FILTER_PAD = 4 zero bytes). Same
 * params, semantics, aliasing and scratch as the _s8 kernel of the same name; the filter
 * pointer is the packed array. Bit-exact with TFLite Micro, which unpacks int4 filters to int8
 * before its int8 kernels run. */
void ek_conv2d_s4(const ek_conv2d_params *p, const int8_t *input, const int8_t *filter,
                  const int32_t *bias, int8_t *output);
void ek_conv2d_add_s4(const ek_conv2d_params *p, const ek_add_params *add_params,
                      const int8_t *input, const int8_t *filter, const int32_t *bias,
                      const int8_t *skip, int8_t *output, int32_t conv_input_position);
void ek_conv2d_s4_pointwise_inplace(const ek_conv2d_params *p, int8_t *input,
                                    const int8_t *filter, const int32_t *bias, int8_t *output,
                                    int8_t *scratch);
void ek_conv2d_s4_pointwise_inplace_backward(const ek_conv2d_params *p, int8_t *input,
                                             const int8_t *filter, const int32_t *bias,
                                             int8_t *output, int8_t *scratch);
void ek_depthwise_conv2d_s4(const ek_depthwise_conv2d_params *p, const int8_t *input,
                            const int8_t *filter, const int32_t *bias, int8_t *output);
void ek_depthwise_conv2d_s4_inplace(const ek_depthwise_conv2d_params *p, int8_t *input,
                                    const int8_t *filter, const int32_t *bias, int8_t *output,
                                    int8_t *scratch);
void ek_fully_connected_s4(const ek_fully_connected_params *p, const int8_t *input,
                           const int8_t *filter, const int32_t *bias, int8_t *output);

/* An int8 CONV_2D run by the int4 kernels' translation unit (ek_conv_s4.c), so that a mixed
 * model whose other convolutions are int4 links one convolution: the generator picks it for a
 * plain CONV_2D (out of place or conv_sliding) with filter offset 0 and an effective bias that
 * ek_conv2d_s4's widened two-pixel path would take. Its filter is the op's own array: each
 * output channel's row padded with zeros to whole groups of 8 taps (as ek_s4_rows_padded), each
 * group's bytes in the order {w0, w1, w4, w5, w2, w3, w6, w7} (op_emitters.s8_lane_rows). Same
 * params, semantics and aliasing as ek_conv2d_s8. */
void ek_conv2d_s8_via_s4(const ek_conv2d_params *p, const int8_t *input, const int8_t *filter,
                         const int32_t *bias, int8_t *output);

#endif
