/* SOFTMAX and LOGISTIC on int8, with gemmlowp's fixed-point exp, logistic and reciprocal.
 *
 * Semantics: edgekit.reference.softmax, i.e. TFLite Micro's reference_ops::Softmax (int8 in,
 * int8 out at scale 1/256, zero point -128; differences below diff_min dropped; exps summed in
 * Q12.19) and reference_integer_ops::Logistic (input scaled into Q4.27, saturated beyond the
 * input radius, output at scale 1/256, zero point -128).
 *
 * In place: LOGISTIC is element-wise (reads element i before writing it) and may alias its
 * input. SOFTMAX reads a whole row twice (the maximum, then the exps) before writing any element
 * of it, then writes element i right after reading it: out may be in (the planner's elementwise
 * mode, row contract), but must not overlap it any other way.
 */
#ifndef EK_SOFTMAX_H
#define EK_SOFTMAX_H

#include <stdint.h>

#include "ek_fixedpoint.h"

typedef struct {
    int32_t input_multiplier;
    int32_t input_left_shift;
    int32_t diff_min;
    int32_t rows;    /* elements / depth */
    int32_t depth;   /* last dimension */
} ek_softmax_params;

typedef struct {
    int32_t input_zero_point;
    int32_t input_range_radius;
    int32_t input_multiplier;
    int32_t input_left_shift;
    int32_t size;
} ek_logistic_params;

void ek_softmax_s8(const ek_softmax_params *p, const int8_t *in, int8_t *out);
void ek_logistic_s8(const ek_logistic_params *p, const int8_t *in, int8_t *out);

#endif
