/* The self-test payload: one int8 2-D convolution with per-channel requantisation and a fused
 * ReLU, in TFLite's reference arithmetic, on a fixed input whose expected output the build
 * computed in Python (edgekit.firmware.selftest) and stored in the build manifest.
 *
 * Data (shapes, input, weights, bias, multipliers) come from the generated selftest_data.h. */
#include <stdint.h>
#include <string.h>

#include "edgekit_payload.h"
#include "selftest_data.h"

#define IN_BYTES (ST_IN_H * ST_IN_W * ST_IN_C)
#define OUT_BYTES (ST_OUT_H * ST_OUT_W * ST_OUT_C)
#define OUT_OFFSET ((IN_BYTES + 15) / 16 * 16)

#ifndef ST_EXTRA_ARENA
#define ST_EXTRA_ARENA 0 /* builds that test the memory limits make the arena bigger */
#endif

EDGEKIT_ARENA(edgekit_selftest_arena, OUT_OFFSET + OUT_BYTES + ST_EXTRA_ARENA);

const char edgekit_payload_name[] = "selftest";

/* gemmlowp's SaturatingRoundingDoublingHighMul: round(a*b / 2^31), saturating the one
 * overflow case. Division truncates toward zero, as in C++. */
static int32_t sat_rounding_doubling_high_mul(int32_t a, int32_t b) {
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    const int64_t ab = (int64_t)a * (int64_t)b;
    const int64_t nudge = ab >= 0 ? (1ll << 30) : (1 - (1ll << 30));
    return (int32_t)((ab + nudge) / (1ll << 31));
}

/* gemmlowp's RoundingDivideByPOT: x / 2^exponent, rounding half away from zero. */
static int32_t rounding_divide_by_pot(int32_t x, int exponent) {
    const int32_t mask = (int32_t)((1u << exponent) - 1u);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

static int32_t multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int shift) {
    const int left = shift > 0 ? shift : 0;
    const int right = shift > 0 ? 0 : -shift;
    return rounding_divide_by_pot(sat_rounding_doubling_high_mul((int32_t)((uint32_t)x << left), multiplier),
                                  right);
}

/* NHWC input, OHWI filter, zero padding skipped as TFLite does (padded taps add nothing). */
static void conv_int8(const int8_t *input, int8_t *output) {
    for (int oy = 0; oy < ST_OUT_H; ++oy) {
        for (int ox = 0; ox < ST_OUT_W; ++ox) {
            for (int oc = 0; oc < ST_OUT_C; ++oc) {
                int32_t acc = 0;
                for (int ky = 0; ky < ST_K; ++ky) {
                    const int iy = oy * ST_STRIDE + ky - ST_PAD;
                    if (iy < 0 || iy >= ST_IN_H) continue;
                    for (int kx = 0; kx < ST_K; ++kx) {
                        const int ix = ox * ST_STRIDE + kx - ST_PAD;
                        if (ix < 0 || ix >= ST_IN_W) continue;
                        const int8_t *in = &input[(iy * ST_IN_W + ix) * ST_IN_C];
                        const int8_t *w = &st_filter[((oc * ST_K + ky) * ST_K + kx) * ST_IN_C];
                        for (int ic = 0; ic < ST_IN_C; ++ic) acc += (in[ic] + ST_INPUT_OFFSET) * w[ic];
                    }
                }
                acc += st_bias[oc];
                acc = multiply_by_quantized_multiplier(acc, st_multiplier[oc], st_shift[oc]);
                acc += ST_OUTPUT_OFFSET;
                if (acc < ST_ACT_MIN) acc = ST_ACT_MIN;
                if (acc > ST_ACT_MAX) acc = ST_ACT_MAX;
                output[(oy * ST_OUT_W + ox) * ST_OUT_C + oc] = (int8_t)acc;
            }
        }
    }
}

void edgekit_payload_setup(void) {
    memcpy(edgekit_selftest_arena, st_input, IN_BYTES);
}

int edgekit_payload_run(void) {
    conv_int8((const int8_t *)edgekit_selftest_arena, (int8_t *)(edgekit_selftest_arena + OUT_OFFSET));
    return 0;
}

uint32_t edgekit_payload_output_count(void) { return 1; }

const uint8_t *edgekit_payload_output(uint32_t index, uint32_t *len) {
    (void)index;
    *len = OUT_BYTES;
    return edgekit_selftest_arena + OUT_OFFSET;
}
