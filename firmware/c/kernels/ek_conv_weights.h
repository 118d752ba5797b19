/* How the convolution kernels read their filter (internal to ek_conv*.c).
 *
 * ek_conv.c and ek_conv_depthwise.c are compiled twice: as themselves (int8 filters, the _s8
 * kernels) and through ek_conv_s4.c / ek_conv_depthwise_s4.c with EK_CONV_S4 defined to 1 (the
 * _s4 kernels). An _s4 kernel's filter is TFLite's packed INT4 tensor: element i (in the same
 * OHWI / 1HWO / [units, depth] order as the int8 filter) is the low nibble of byte i/2 when i
 * is even, the high nibble when it is odd, two's complement in [-8, 7]. The generator emits
 * packed arrays with EK_S4_FILTER_PAD zero bytes after the last element, so the DSP path's
 * word reads past a channel's last nibble stay inside the array (those nibbles meet zero
 * inputs: they contribute nothing).
 *
 * EK_FILTER(f, i): filter element i as an int32; EK_FILTER_WORD4(f, i): elements i..i+3 as
 * four int8 bytes of a word; EK_FILTER_DSP: whether the int8 kernels' DSP
 * paths (which read filter bytes as words) are compiled (the _s4 kernels have their own). */
#ifndef EK_CONV_WEIGHTS_H
#define EK_CONV_WEIGHTS_H

#include <stdint.h>

#include "ek_arm_dsp.h"

#ifndef EK_CONV_S4
#define EK_CONV_S4 0
#endif

#define EK_S4_FILTER_PAD 4

/* Element i of a packed int4 array. */
static inline int32_t ek_s4_at(const int8_t *packed, int32_t i)
{
    const uint32_t byte = (uint8_t)packed[i >> 1];
    const uint32_t nibble = (byte >> ((uint32_t)(i & 1) << 2)) & 0xFu;
    return (int32_t)(nibble ^ 8u) - 8;
}

/* Elements i..i+3 of a packed int4 array as four int8 bytes in one word (what an int8 filter's
 * word load gives): nibbles spread to bytes, then each byte's bit 3 copied into bits 4..7. */
static inline uint32_t ek_s4_bytes4(const int8_t *packed, int32_t i)
{
    const uint8_t *b = (const uint8_t *)packed + (i >> 1);
    const uint32_t v = (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16);
    const uint32_t h = (v >> ((uint32_t)(i & 1) << 2)) & 0xFFFFu;
    const uint32_t t = (h & 0xFu) | ((h & 0xF0u) << 4) | ((h & 0xF00u) << 8) | ((h & 0xF000u) << 12);
    return t | ((t & 0x08080808u) * 0x1Eu);
}

/* acc + sum_{i<n} (x[i] + input_offset) * (filter element w+i + filter_offset), wrapping: the
 * portable inner loop. int4: a byte (two weights) per step, so the index arithmetic of
 * ek_s4_at is paid once per two MACs. */
static inline uint32_t ek_filter_dot(const int8_t *x, int32_t input_offset, const int8_t *filter,
                                     int32_t w, int32_t n, int32_t filter_offset, uint32_t acc)
{
#if EK_CONV_S4
    int32_t i = 0;
    const uint8_t *b;
    if ((w & 1) != 0 && n > 0) { /* a channel starting on a high nibble */
        acc += (uint32_t)((x[0] + input_offset) * (ek_s4_at(filter, w) + filter_offset));
        i = 1;
    }
    b = (const uint8_t *)filter + ((w + i) >> 1);
    for (; i + 2 <= n; i += 2, ++b) {
        const int32_t lo = (int32_t)((*b & 0xFu) ^ 8u) - 8;
        const int32_t hi = (int32_t)(((uint32_t)*b >> 4) ^ 8u) - 8;
        acc += (uint32_t)((x[i] + input_offset) * (lo + filter_offset));
        acc += (uint32_t)((x[i + 1] + input_offset) * (hi + filter_offset));
    }
    if (i < n) {
        acc += (uint32_t)((x[i] + input_offset) * (ek_s4_at(filter, w + i) + filter_offset));
    }
#else
    for (int32_t i = 0; i < n; ++i) {
        acc += (uint32_t)((x[i] + input_offset) * (filter[w + i] + filter_offset));
    }
#endif
    return acc;
}

/* The longest window (k_h * k_w * in_c taps) of the short-window paths: gathered as bytes. */
#define EK_PAIR_MAX_LEN 64

/* Whether a plain (not ADD-fused) int4 CONV_2D's filter rows are padded: a short window over
 * channels that are no whole groups of 8 (a first layer over 1-3 channels) has each output
 * channel's row padded with zero nibbles to whole groups of 8 taps, so that every row starts
 * on a word and the widened path (ek_conv.c conv2d_wide) runs it as whole groups; the padding
 * meets window taps past the window and adds nothing. The generator emits the rows padded
 * where this holds, on every core (edgekit.firmware.op_emitters.s4_rows_padded mirrors it),
 * so every path of that layer reads channel oc's taps from oc * EK_S4_ROW_TAPS(len) on. */
static inline int ek_s4_rows_padded(int32_t in_c, int32_t len, int32_t out_c,
                                    int32_t dilation_w, int32_t filter_offset,
                                    const int32_t *effective_bias)
{
    return (in_c & 7) != 0 && filter_offset == 0 && effective_bias != 0 && out_c >= 2
           && dilation_w == 1 && len > 0 && len <= EK_PAIR_MAX_LEN;
}

/* Taps of a padded row: the window rounded up to whole groups of 8. */
#define EK_S4_ROW_TAPS(len) (((len) + 7) & ~7)

#if EK_CONV_S4
#define EK_FILTER_WORD4(f, i) ek_s4_bytes4((f), (i))
#define EK_FILTER(f, i) ek_s4_at((f), (i))
#define EK_FILTER_DSP 0
#define EK_S4_DSP EK_USE_DSP
#else
#define EK_FILTER_WORD4(f, i) ek_read_u32((f) + (i))
#define EK_FILTER(f, i) ((int32_t)(f)[i])
#define EK_FILTER_DSP EK_USE_DSP
#define EK_S4_DSP 0
#endif

#endif
