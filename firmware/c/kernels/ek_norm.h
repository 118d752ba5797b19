/* LAYER_NORM, RMS_NORM and SILU on int8: edgekit's own ops (TFLite has no int8 kernel for
 * them). Semantics: edgekit.reference.norm, whose module docstring is the specification; the
 * generator emits the numbers its prepare() derives (per-channel multipliers, right shifts and
 * int64 offsets from gamma/beta; the SILU table), so the integers here are the interpreter's.
 *
 * Per row of `channels` values: the int32 sums of d = x - input_zero_point and d^2, one 64-bit
 * integer square root and one 64-bit division (the row's reciprocal square root), then per
 * element a 32x32->64 multiply and rounding shift (the Q.24 normalised value), one
 * SaturatingRoundingDoublingHighMul by the channel's multiplier, the int64 offset added and one
 * rounding right shift. No floating point. Cortex-M4 (Unicorn): about 80 instructions per
 * element at C = 256 (88 at C = 64); SILU 11.
 *
 * In place: all three may alias output and input. The norms read a whole row for its
 * statistics before writing any of it, then write each element after reading it; SILU reads
 * element i before writing it.
 */
#ifndef EK_NORM_H
#define EK_NORM_H

#include <stdint.h>

#include "ek_fixedpoint.h"

typedef struct {
    int32_t rows;             /* elements / channels */
    int32_t channels;         /* the normalised (last) axis, 1..4096 */
    int32_t input_zero_point;
    int32_t subtract_mean;    /* 1: LAYER_NORM, 0: RMS_NORM */
    int64_t eps_term;         /* round(C^2 * epsilon / input_scale^2), capped at 2^44 */
    const int32_t *multipliers; /* [channels] signed Q0.31: gamma / output_scale * 2^-24 */
    const int32_t *shifts;      /* [channels] right shifts, 0..31 */
    const int64_t *offsets;     /* [channels] (beta / output_scale + zero point) << shift */
} ek_norm_params;

typedef struct {
    int32_t size;
    const int8_t *table;      /* [256]: output for input q at table[q + 128] */
} ek_silu_params;

void ek_layer_norm_s8(const ek_norm_params *p, const int8_t *in, int8_t *out);
void ek_rms_norm_s8(const ek_norm_params *p, const int8_t *in, int8_t *out);
void ek_silu_s8(const ek_silu_params *p, const int8_t *in, int8_t *out);

#endif
