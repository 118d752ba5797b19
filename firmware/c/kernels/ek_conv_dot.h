/* Dot products of int8 vectors for the DSP path of the convolution kernels (internal).
 *
 * ek_dot4_s8 accumulates four filter rows against one input segment at once, so each input word
 * is loaded and widened once per four output channels:
 *     acc[r] += sum_i (x[i] + input_offset) * w[r*w_stride + i],  r = 0..3
 * Per four input bytes: one load and two SXTAB16 (widen and add the offset) for x; per row one
 * load, two SXTB16 and two SMLAD. SXTB16 and SXTB16 ROR #8 give lanes {0,2} and {1,3}; x and w
 * are split the same way, so SMLAD pairs element i with element i. The filter offset must be 0
 * (callers take the portable path otherwise). Tails shorter than 4 bytes are done in C. */
#ifndef EK_CONV_DOT_H
#define EK_CONV_DOT_H

#include <stdint.h>

#include "ek_arm_dsp.h"

#if EK_USE_DSP

static inline void ek_dot4_s8(const int8_t *x, const int8_t *w, int32_t w_stride, int32_t len,
                              int32_t input_offset, int32_t acc[4])
{
    const int8_t *w0 = w, *w1 = w + w_stride, *w2 = w + 2 * w_stride, *w3 = w + 3 * w_stride;
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    const uint32_t offset2 = ek_dup16(input_offset);
    int32_t n = len >> 2;
    while (n-- > 0) {
        uint32_t xv = ek_read_u32(x);
        uint32_t x02 = ek_sxtab16(offset2, xv);
        uint32_t x13 = ek_sxtab16_ror8(offset2, xv);
        uint32_t wv;
        x += 4;
        wv = ek_read_u32(w0);
        w0 += 4;
        a0 = ek_smlad(ek_sxtb16(wv), x02, a0);
        a0 = ek_smlad(ek_sxtb16_ror8(wv), x13, a0);
        wv = ek_read_u32(w1);
        w1 += 4;
        a1 = ek_smlad(ek_sxtb16(wv), x02, a1);
        a1 = ek_smlad(ek_sxtb16_ror8(wv), x13, a1);
        wv = ek_read_u32(w2);
        w2 += 4;
        a2 = ek_smlad(ek_sxtb16(wv), x02, a2);
        a2 = ek_smlad(ek_sxtb16_ror8(wv), x13, a2);
        wv = ek_read_u32(w3);
        w3 += 4;
        a3 = ek_smlad(ek_sxtb16(wv), x02, a3);
        a3 = ek_smlad(ek_sxtb16_ror8(wv), x13, a3);
    }
    for (n = len & 3; n > 0; --n) {
        int32_t xi = *x++ + input_offset;
        a0 = (int32_t)((uint32_t)a0 + (uint32_t)(xi * *w0++));
        a1 = (int32_t)((uint32_t)a1 + (uint32_t)(xi * *w1++));
        a2 = (int32_t)((uint32_t)a2 + (uint32_t)(xi * *w2++));
        a3 = (int32_t)((uint32_t)a3 + (uint32_t)(xi * *w3++));
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* One filter row: acc + sum_i (x[i] + input_offset) * w[i]. */
static inline int32_t ek_dot1_s8(const int8_t *x, const int8_t *w, int32_t len,
                                 int32_t input_offset, int32_t acc)
{
    const uint32_t offset2 = ek_dup16(input_offset);
    int32_t n = len >> 2;
    while (n-- > 0) {
        uint32_t xv = ek_read_u32(x);
        uint32_t wv = ek_read_u32(w);
        x += 4;
        w += 4;
        acc = ek_smlad(ek_sxtb16(wv), ek_sxtab16(offset2, xv), acc);
        acc = ek_smlad(ek_sxtb16_ror8(wv), ek_sxtab16_ror8(offset2, xv), acc);
    }
    for (n = len & 3; n > 0; --n) {
        acc = (int32_t)((uint32_t)acc + (uint32_t)((*x++ + input_offset) * *w++));
    }
    return acc;
}

#endif

#endif
