/* Pooling and reduction kernels: AVERAGE_POOL_2D, MAX_POOL_2D, MEAN.
 *
 * Semantics: TFLite Micro's reference kernels as edgekit.reference.pooling computes them.
 * Pools clip each window to the input (padding is never counted); the average divides the sum
 * by the number of valid taps rounding half away from zero. MEAN follows QuantizedMeanOrSum:
 * int32 sums (wrapping), minus zp_in * n, rescaled with 1/n folded into the multiplier.
 *
 * In place: none. A pooling output pixel reads a window that may start before its own slot,
 * and MEAN reads every input element before the first output is final; outputs must not alias
 * inputs. MEAN needs an int32 scratch of one accumulator per output element
 * (edgekit.planner.scratch: 4 * output elements, 4-byte aligned).
 */
#ifndef EK_POOL_H
#define EK_POOL_H

#include <stdint.h>

#include "ek_fixedpoint.h"

/* NHWC, batch 1. */
typedef struct {
    int32_t in_h, in_w, channels;
    int32_t out_h, out_w;
    int32_t filter_h, filter_w;
    int32_t stride_h, stride_w;
    int32_t pad_top, pad_left;
    int32_t act_min, act_max;
} ek_pool_params;

#define EK_MEAN_DIMS 4

/* The input right-aligned into EK_MEAN_DIMS dimensions (leading 1s). out_strides[d] is the
 * output-element stride of input dimension d: 0 for a reduced dimension. */
typedef struct {
    int32_t in_shape[EK_MEAN_DIMS];
    int32_t out_strides[EK_MEAN_DIMS];
    int32_t out_size;           /* output elements */
    int32_t num_elements;       /* input elements averaged into each output */
    int32_t input_zero_point;
    int32_t output_zero_point;
    int32_t multiplier;         /* includes 1/num_elements */
    int32_t shift;
} ek_mean_params;

void ek_avg_pool_s8(const ek_pool_params *p, const int8_t *in, int8_t *out);
void ek_avg_pool_s16(const ek_pool_params *p, const int16_t *in, int16_t *out);
void ek_max_pool_s8(const ek_pool_params *p, const int8_t *in, int8_t *out);
void ek_max_pool_s16(const ek_pool_params *p, const int16_t *in, int16_t *out);

void ek_mean_s8(const ek_mean_params *p, const int8_t *in, int8_t *out, int32_t *scratch);
void ek_mean_s16(const ek_mean_params *p, const int16_t *in, int16_t *out, int32_t *scratch);

#endif
