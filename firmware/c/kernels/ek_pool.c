/* Pooling and MEAN kernels (see ek_pool.h for the semantics). */
#include "ek_pool.h"

/* The window of output coordinate `o` clipped to [0, in): [*start, *end). */
static inline void ek_window(int32_t o, int32_t stride, int32_t pad, int32_t filter, int32_t in,
                             int32_t *start, int32_t *end)
{
    int32_t origin = o * stride - pad;
    int32_t s = origin < 0 ? 0 : origin;
    int32_t e = origin + filter;
    *start = s;
    *end = e > in ? in : e;
}

#define EK_DEFINE_AVG_POOL(SUFFIX, T)                                                         \
    void ek_avg_pool_##SUFFIX(const ek_pool_params *p, const T *in, T *out)                   \
    {                                                                                         \
        const int32_t c_count = p->channels;                                                  \
        for (int32_t oy = 0; oy < p->out_h; ++oy) {                                           \
            int32_t y0, y1;                                                                   \
            ek_window(oy, p->stride_h, p->pad_top, p->filter_h, p->in_h, &y0, &y1);           \
            for (int32_t ox = 0; ox < p->out_w; ++ox) {                                       \
                int32_t x0, x1;                                                               \
                ek_window(ox, p->stride_w, p->pad_left, p->filter_w, p->in_w, &x0, &x1);      \
                /* The generator rejects windows entirely in the padding (count 0). */        \
                const int32_t count = (y1 - y0) * (x1 - x0);                                  \
                T *dst = out + (oy * p->out_w + ox) * c_count;                                \
                for (int32_t c = 0; c < c_count; ++c) {                                       \
                    int32_t sum = 0;                                                          \
                    for (int32_t y = y0; y < y1; ++y) {                                       \
                        const T *row = in + (y * p->in_w) * c_count + c;                      \
                        for (int32_t x = x0; x < x1; ++x) {                                   \
                            sum += row[x * c_count];                                          \
                        }                                                                     \
                    }                                                                         \
                    /* Round half away from zero, then C's truncating division. */            \
                    sum += sum > 0 ? count / 2 : -(count / 2);                                \
                    dst[c] = (T)ek_clamp(sum / count, p->act_min, p->act_max);                \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
    }

EK_DEFINE_AVG_POOL(s8, int8_t)
EK_DEFINE_AVG_POOL(s16, int16_t)

#define EK_DEFINE_MAX_POOL(SUFFIX, T, LOWEST)                                                 \
    void ek_max_pool_##SUFFIX(const ek_pool_params *p, const T *in, T *out)                   \
    {                                                                                         \
        const int32_t c_count = p->channels;                                                  \
        for (int32_t oy = 0; oy < p->out_h; ++oy) {                                           \
            int32_t y0, y1;                                                                   \
            ek_window(oy, p->stride_h, p->pad_top, p->filter_h, p->in_h, &y0, &y1);           \
            for (int32_t ox = 0; ox < p->out_w; ++ox) {                                       \
                int32_t x0, x1;                                                               \
                ek_window(ox, p->stride_w, p->pad_left, p->filter_w, p->in_w, &x0, &x1);      \
                T *dst = out + (oy * p->out_w + ox) * c_count;                                \
                for (int32_t c = 0; c < c_count; ++c) {                                       \
                    int32_t best = (LOWEST);                                                  \
                    for (int32_t y = y0; y < y1; ++y) {                                       \
                        const T *row = in + (y * p->in_w) * c_count + c;                      \
                        for (int32_t x = x0; x < x1; ++x) {                                   \
                            int32_t v = row[x * c_count];                                     \
                            best = v > best ? v : best;                                       \
                        }                                                                     \
                    }                                                                         \
                    dst[c] = (T)ek_clamp(best, p->act_min, p->act_max);                       \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
    }

EK_DEFINE_MAX_POOL(s8, int8_t, INT32_MIN)
EK_DEFINE_MAX_POOL(s16, int16_t, INT32_MIN)

#define EK_DEFINE_MEAN(SUFFIX, T, QMIN, QMAX)                                                 \
    void ek_mean_##SUFFIX(const ek_mean_params *p, const T *in, T *out, int32_t *scratch)     \
    {                                                                                         \
        for (int32_t o = 0; o < p->out_size; ++o) {                                           \
            scratch[o] = 0;                                                                   \
        }                                                                                     \
        const int32_t *shape = p->in_shape, *stride = p->out_strides;                         \
        int32_t i = 0;                                                                        \
        for (int32_t d0 = 0; d0 < shape[0]; ++d0) {                                           \
        for (int32_t d1 = 0; d1 < shape[1]; ++d1) {                                           \
        for (int32_t d2 = 0; d2 < shape[2]; ++d2) {                                           \
            int32_t o = d0 * stride[0] + d1 * stride[1] + d2 * stride[2];                     \
            for (int32_t d3 = 0; d3 < shape[3]; ++d3, ++i, o += stride[3]) {                  \
                /* Wrapping int32 sum, as the reference's int32 accumulator. */               \
                scratch[o] = (int32_t)((uint32_t)scratch[o] + (uint32_t)(int32_t)in[i]);      \
            }                                                                                 \
        }}}                                                                                   \
        const uint32_t zp_total = (uint32_t)p->input_zero_point * (uint32_t)p->num_elements;  \
        for (int32_t o = 0; o < p->out_size; ++o) {                                           \
            int32_t shifted = (int32_t)((uint32_t)scratch[o] - zp_total);                     \
            int64_t y = (int64_t)ek_mbqm(shifted, p->multiplier, p->shift)                    \
                      + p->output_zero_point;                                                 \
            out[o] = (T)(y < (QMIN) ? (QMIN) : (y > (QMAX) ? (QMAX) : y));                    \
        }                                                                                     \
    }

EK_DEFINE_MEAN(s8, int8_t, INT8_MIN, INT8_MAX)
EK_DEFINE_MEAN(s16, int16_t, INT16_MIN, INT16_MAX)
