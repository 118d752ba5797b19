/* Transformer kernels with TFLite builtins: BATCH_MATMUL, TRANSPOSE, GATHER, GELU (int8).
 *
 * Semantics: edgekit.reference.transformer (bit-exact with TFLite Micro's reference kernels;
 * GELU with LiteRT's, TFLite Micro has none).
 *
 *   ek_batch_matmul_s8  out[b, i, j] = clamp(mbqm(sum_k (a[b, i, k] + lhs_offset) *
 *                       (b[b, k, j] + rhs_offset), multiplier, shift) + output_offset) with
 *                       adj_x / adj_y reading a as [K, M] / b as [N, K]; up to three batch
 *                       dimensions, each operand's batch strides 0 where it broadcasts.
 *   ek_transpose        out[o] = in[sum_d idx_d(o) * in_strides[d]] for elements of elem_bytes
 *                       (1, 2 or 4) bytes; the output shape right-aligned in EK_TRANSPOSE_DIMS.
 *   ek_gather           out[o, i, :] = params[o, idx[i], :] (rows of inner_bytes bytes); an index
 *                       outside [0, axis_size) gives a row of `fill` bytes (the reference raises;
 *                       TFLite Micro fails the invoke) instead of reading outside the table.
 *   ek_lut_s8           out[i] = lut[in[i] + 128]: GELU's table, computed by the generator.
 *   ek_attention_s8     ATTENTION (edgekit.reference.attention): for each batch b (heads) and
 *                       query row i: scores = ek_batch_matmul_s8(qk, q row i, k) into `scratch`
 *                       (kv_rows bytes), ek_add_s8(add, scratch, mask) in place where
 *                       `masked` (one row of key biases for every row and head), then
 *                       ek_softmax_s8(softmax) over it in place, then
 *                       ek_batch_matmul_s8(pv, scratch, v) into out row i. qk, add, softmax, pv
 *                       are the unfused ops' params for ONE row (rows 1, batch 1), so the
 *                       result is theirs byte for byte; the [T, T] scores never exist.
 *
 * In place: ek_lut_s8 may run with out == in. The other outputs must not alias their inputs.
 */
#ifndef EK_TRANSFORMER_H
#define EK_TRANSFORMER_H

#include <stdint.h>

#include "ek_elementwise.h"
#include "ek_softmax.h"

#define EK_BMM_BATCH_DIMS 3
#define EK_TRANSPOSE_DIMS 6

typedef struct {
    int32_t lhs_offset;     /* -a zero point */
    int32_t rhs_offset;     /* -b zero point */
    int32_t output_offset;
    int32_t multiplier;
    int32_t shift;
    int32_t adj_x;
    int32_t adj_y;
    int32_t rows;           /* M */
    int32_t cols;           /* N */
    int32_t depth;          /* K */
    int32_t out_batch[EK_BMM_BATCH_DIMS];     /* right-aligned, leading 1s */
    int32_t lhs_batch_strides[EK_BMM_BATCH_DIMS];  /* elements; 0 where a broadcasts */
    int32_t rhs_batch_strides[EK_BMM_BATCH_DIMS];
} ek_batch_matmul_params;

typedef struct {
    int32_t out_shape[EK_TRANSPOSE_DIMS];   /* right-aligned, leading 1s */
    int32_t in_strides[EK_TRANSPOSE_DIMS];  /* input element stride of each output dimension */
    int32_t size;
    int32_t elem_bytes;
} ek_transpose_params;

typedef struct {
    int32_t outer;          /* product of the table's dimensions before the axis */
    int32_t axis_size;
    int32_t inner_bytes;    /* bytes of one slice after the axis */
    int32_t num_indices;
    int32_t fill;           /* byte written for an out-of-range index (the zero point) */
} ek_gather_params;

typedef struct {
    int32_t size;
    int8_t lut[256];        /* output for input q at lut[q + 128] */
} ek_lut_params;

typedef struct {
    int32_t batch;          /* product of the batch dimensions (heads) */
    int32_t q_rows;         /* Tq */
    int32_t kv_rows;        /* Tk: the scratch row's length */
    int32_t depth;          /* d of q and k */
    int32_t v_cols;         /* dv */
    int32_t masked;         /* 1 where the call passes a mask (the stack bound reads it) */
} ek_attention_params;

void ek_batch_matmul_s8(const ek_batch_matmul_params *p, const int8_t *a, const int8_t *b,
                        int8_t *out);
void ek_transpose(const ek_transpose_params *p, const void *in, void *out);
void ek_gather(const ek_gather_params *p, const void *params, const int32_t *idx, void *out);
void ek_lut_s8(const ek_lut_params *p, const int8_t *in, int8_t *out);
void ek_attention_s8(const ek_attention_params *p, const ek_batch_matmul_params *qk,
                     const ek_add_params *add, const ek_softmax_params *softmax,
                     const ek_batch_matmul_params *pv, const int8_t *q, const int8_t *k,
                     const int8_t *mask, const int8_t *v, int8_t *out, int8_t *scratch);

#endif
