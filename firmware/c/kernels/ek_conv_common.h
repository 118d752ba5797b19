/* Helpers shared by the convolution-family kernels (ek_conv*.c): requantisation of one
 * accumulator and the range of kernel taps that fall inside the input. Internal: the generated
 * code includes ek_conv.h, not this. */
#ifndef EK_CONV_COMMON_H
#define EK_CONV_COMMON_H

#include <stdint.h>

#include "ek_fixedpoint.h"

/* int32 accumulator -> int8 output, TFLite's per-channel requantisation (double rounding).
 * Multipliers come from QuantizeMultiplier, so they are never negative (ek_mbqm_nonneg). */
static inline int8_t ek_conv_requantize(int32_t acc, int32_t multiplier, int32_t shift,
                                        int32_t output_offset, int32_t act_min, int32_t act_max)
{
    int32_t y = ek_mbqm_nonneg(acc, multiplier, (int)shift) + output_offset;
    return (int8_t)ek_clamp(y, act_min, act_max);
}

/* Kernel taps k in [*first, *end) with 0 <= origin + k*dilation < size (the taps a window
 * starting at `origin` reads inside the input); the others are padding and are skipped. */
static inline void ek_conv_valid_taps(int32_t origin, int32_t size, int32_t kernel,
                                      int32_t dilation, int32_t *first, int32_t *end)
{
    int32_t f = origin < 0 ? (-origin + dilation - 1) / dilation : 0;
    int32_t room = size - origin; /* taps with k*dilation < room are inside */
    int32_t e = room <= 0 ? 0 : (room + dilation - 1) / dilation;
    if (e > kernel) {
        e = kernel;
    }
    if (f > e) {
        f = e;
    }
    *first = f;
    *end = e;
}

#endif
