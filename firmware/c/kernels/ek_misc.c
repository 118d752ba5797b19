/* PAD, CONCATENATION, RESHAPE and the box copy of SLICE / INSERT_TILE (see ek_misc.h). */
#include "ek_misc.h"

#include <string.h>

/* Walk the padded output row by row (the last dimension is one row); rows outside the input
 * in an outer dimension are all padding, the others are padding, an input row, padding. */
#define EK_DEFINE_PAD(SUFFIX, T)                                                              \
    void ek_pad_##SUFFIX(const ek_pad_params *p, const T *in, T *out)                         \
    {                                                                                         \
        const T value = (T)p->pad_value;                                                      \
        const int32_t row = p->out_shape[3], in_row = p->in_shape[3];                         \
        const int32_t left = p->before[3], right = row - left - in_row;                       \
        for (int32_t d0 = 0; d0 < p->out_shape[0]; ++d0) {                                    \
            const int32_t i0 = d0 - p->before[0];                                             \
            for (int32_t d1 = 0; d1 < p->out_shape[1]; ++d1) {                                \
                const int32_t i1 = d1 - p->before[1];                                         \
                for (int32_t d2 = 0; d2 < p->out_shape[2]; ++d2) {                            \
                    const int32_t i2 = d2 - p->before[2];                                     \
                    const int inside = i0 >= 0 && i0 < p->in_shape[0] && i1 >= 0              \
                                       && i1 < p->in_shape[1] && i2 >= 0                      \
                                       && i2 < p->in_shape[2];                                \
                    if (!inside) {                                                            \
                        for (int32_t x = 0; x < row; ++x) {                                   \
                            out[x] = value;                                                   \
                        }                                                                     \
                    } else {                                                                  \
                        const T *src = in + ((i0 * p->in_shape[1] + i1) * p->in_shape[2]      \
                                             + i2) * in_row;                                  \
                        for (int32_t x = 0; x < left; ++x) {                                  \
                            out[x] = value;                                                   \
                        }                                                                     \
                        memcpy(out + left, src, (size_t)in_row * sizeof(T));                  \
                        for (int32_t x = left + in_row; x < left + in_row + right; ++x) {     \
                            out[x] = value;                                                   \
                        }                                                                     \
                    }                                                                         \
                    out += row;                                                               \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
    }

EK_DEFINE_PAD(s8, int8_t)
EK_DEFINE_PAD(s16, int16_t)

void ek_concatenation_copy(const ek_concatenation_params *p, const void *in, void *out)
{
    const uint8_t *src = (const uint8_t *)in;
    uint8_t *dst = (uint8_t *)out + p->out_offset;
    for (int32_t o = 0; o < p->outer; ++o) {
        memcpy(dst, src, (size_t)p->in_block);
        src += p->in_block;
        dst += p->out_block;
    }
}

void ek_reshape(const ek_reshape_params *p, const void *in, void *out)
{
    if (in != out) {
        memmove(out, in, (size_t)p->nbytes);
    }
}

/* A byte loop, not memcpy: on the VWW model in 6x6 patches, newlib's memcpy (its path for
 * lengths that are not a multiple of 4) gave wrong bytes under the Unicorn runner while QEMU and
 * the host agreed with the reference (hil_tests/test_patched_emulated.py reproduces it). The
 * rows copied here are a few hundred bytes, next to convolutions over the same pixels. */
void ek_copy_rows(const ek_copy_rows_params *p, const void *src, void *dst)
{
    const uint8_t *from = (const uint8_t *)src + p->src_offset;
    uint8_t *to = (uint8_t *)dst + p->dst_offset;
    for (int32_t r = 0; r < p->rows; ++r) {
        for (int32_t b = 0; b < p->row_bytes; ++b) {
            to[b] = from[b];
        }
        from += p->src_stride;
        to += p->dst_stride;
    }
}
