/* Transformer kernels: see ek_transformer.h. */
#include "ek_transformer.h"

#include <string.h>

#include "ek_fixedpoint.h"

void ek_batch_matmul_s8(const ek_batch_matmul_params *p, const int8_t *a, const int8_t *b,
                        int8_t *out)
{
    const int32_t m = p->rows, n = p->cols, k = p->depth;
    /* element steps along i / k in a, and along k / j in b */
    const int32_t a_i = p->adj_x ? 1 : k, a_k = p->adj_x ? m : 1;
    const int32_t b_k = p->adj_y ? 1 : n, b_j = p->adj_y ? k : 1;
    for (int32_t b0 = 0; b0 < p->out_batch[0]; ++b0) {
        for (int32_t b1 = 0; b1 < p->out_batch[1]; ++b1) {
            for (int32_t b2 = 0; b2 < p->out_batch[2]; ++b2) {
                const int8_t *lhs = a + b0 * p->lhs_batch_strides[0]
                                      + b1 * p->lhs_batch_strides[1]
                                      + b2 * p->lhs_batch_strides[2];
                const int8_t *rhs = b + b0 * p->rhs_batch_strides[0]
                                      + b1 * p->rhs_batch_strides[1]
                                      + b2 * p->rhs_batch_strides[2];
                for (int32_t i = 0; i < m; ++i) {
                    for (int32_t j = 0; j < n; ++j) {
                        /* unsigned: a sum past int32 wraps as the reference's does, defined */
                        uint32_t acc = 0;
                        for (int32_t t = 0; t < k; ++t) {
                            int32_t x = lhs[i * a_i + t * a_k] + p->lhs_offset;
                            int32_t y = rhs[t * b_k + j * b_j] + p->rhs_offset;
                            acc += (uint32_t)(x * y);
                        }
                        int32_t v = ek_mbqm((int32_t)acc, p->multiplier, p->shift)
                                    + p->output_offset;
                        *out++ = (int8_t)ek_clamp(v, -128, 127);
                    }
                }
            }
        }
    }
}

void ek_transpose(const ek_transpose_params *p, const void *in, void *out)
{
    int32_t index[EK_TRANSPOSE_DIMS] = {0};
    int32_t offset = 0; /* input element of the current output element */
    const uint8_t *src8 = (const uint8_t *)in;
    uint8_t *dst8 = (uint8_t *)out;
    for (int32_t o = 0; o < p->size; ++o) {
        switch (p->elem_bytes) {
        case 1: dst8[o] = src8[offset]; break;
        case 2: ((int16_t *)out)[o] = ((const int16_t *)in)[offset]; break;
        default: ((int32_t *)out)[o] = ((const int32_t *)in)[offset]; break;
        }
        /* odometer over the output index, last dimension fastest */
        for (int d = EK_TRANSPOSE_DIMS - 1; d >= 0; --d) {
            offset += p->in_strides[d];
            if (++index[d] < p->out_shape[d]) {
                break;
            }
            offset -= index[d] * p->in_strides[d];
            index[d] = 0;
        }
    }
}

/* The fill of an index outside the table, as a loop rather than memset: the ids are runtime
 * data, so the stack bound counts this path for every model, and memset's frame would make it
 * the kernel's deepest (16 bytes over the memcpy path on the M4). The empty asm keeps gcc from
 * turning the loop back into a memset call. */
static void ek_fill_bytes(uint8_t *dst, uint8_t value, int32_t n)
{
    for (int32_t i = 0; i < n; ++i) {
        dst[i] = value;
#if defined(__GNUC__)
        __asm__ volatile("" ::: "memory");
#endif
    }
}

void ek_gather(const ek_gather_params *p, const void *params, const int32_t *idx, void *out)
{
    const uint8_t *table = (const uint8_t *)params;
    uint8_t *dst = (uint8_t *)out;
    const int32_t row = p->inner_bytes;
    for (int32_t o = 0; o < p->outer; ++o) {
        const uint8_t *block = table + o * p->axis_size * row;
        for (int32_t i = 0; i < p->num_indices; ++i) {
            int32_t v = idx[i];
            if (v >= 0 && v < p->axis_size) {
                memcpy(dst, block + v * row, (size_t)row);
            } else {
                ek_fill_bytes(dst, (uint8_t)(p->fill & 0xFF), row);
            }
            dst += row;
        }
    }
}

void ek_lut_s8(const ek_lut_params *p, const int8_t *in, int8_t *out)
{
    for (int32_t i = 0; i < p->size; ++i) {
        out[i] = p->lut[in[i] + 128];
    }
}

/* The mask's ADD, out of line so that the stack bound can leave the ADD's frames out of an
 * attention without a mask (edgekit.firmware.stack_paths); a tail call, no frame of its own. */
static EK_NOINLINE void attention_mask_add(const ek_add_params *add, int8_t *scores,
                                           const int8_t *mask)
{
    ek_add_s8(add, scores, mask, scores);
}

void ek_attention_s8(const ek_attention_params *p, const ek_batch_matmul_params *qk,
                     const ek_add_params *add, const ek_softmax_params *softmax,
                     const ek_batch_matmul_params *pv, const int8_t *q, const int8_t *k,
                     const int8_t *mask, const int8_t *v, int8_t *out, int8_t *scratch)
{
    const int32_t q_head = p->q_rows * p->depth, k_head = p->kv_rows * p->depth;
    const int32_t v_head = p->kv_rows * p->v_cols;
    for (int32_t b = 0; b < p->batch; ++b) {
        for (int32_t i = 0; i < p->q_rows; ++i) {
            ek_batch_matmul_s8(qk, q + b * q_head + i * p->depth, k + b * k_head, scratch);
            if (p->masked) {
                attention_mask_add(add, scratch, mask);
            }
            ek_softmax_s8(softmax, scratch, scratch);
            ek_batch_matmul_s8(pv, scratch, v + b * v_head, out);
            out += p->v_cols;
        }
    }
}
