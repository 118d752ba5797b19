/* The DSP path of the packed int4 convolution kernels (internal: included by ek_conv.c when it
 * is compiled as ek_conv_s4.c on a core with the DSP extension, or with EDGEKIT_EMULATE_DSP).
 *
 * Per output pixel, the window's inputs plus the input offset (0 for a padding tap, which the
 * reference skips) are widened once to int16 and laid out in lane pairs that meet the filter's
 * nibbles where they already lie. The eight taps 8g..8g+7 of a channel are the eight nibbles
 * of one filter word v (nibble j = tap 8g+j, TFLite's low-nibble-first order); for k = 0..3,
 * (v << (12 - 4k)) & 0xF000F000 has nibble k in the top of its low 16-bit lane and nibble k+4
 * in the top of its high lane: the weights times 4096 as int16, with no sign extension at all.
 * The window holds {x[8g+k], x[8g+k+4]} as word k of group g, so one SMLAD per mask adds
 * 4096 * (x_k w_k + x_k+4 w_k+4). Per 8 MACs and channel: one filter load, four AND-with-shift,
 * four window loads (shared by two channels), four SMLAD.
 *
 * Exactness: |x + input_offset| <= 255 and |w| <= 8, so a product times 4096 is below 2^23 in
 * magnitude and a run of 256 taps (EK_S4_RUN_GROUPS groups) sums below 2^31: the run's int32
 * holds 4096 times its exact sum. Each run's sum is shifted down and added to the accumulator
 * with int32 wrap-around, as the reference's accumulator wraps: bit-exact for any window.
 *
 * Conditions (ek_s4_dsp_applies): filter offset 0 (TFLite's symmetric int4 weights), an even
 * window length (every channel starts on a byte) and a window of at most EK_S4_WINDOW_TAPS
 * (the stack buffer). A window whose length is not a multiple of 8 is zero-filled to the next
 * group; the filter nibbles read past a channel's end meet those zeros, and the generator's
 * EK_S4_FILTER_PAD bytes keep the last channel's reads inside the array. */
#ifndef EK_CONV_S4_DSP_H
#define EK_CONV_S4_DSP_H

#include <stdint.h>
#include <string.h>

#include "ek_arm_dsp.h"
#include "ek_conv_common.h"

/* The window buffer (2 bytes per tap, on the stack) and so the largest window (k_h*k_w*in_c
 * taps, or FULLY_CONNECTED depth) on the DSP path; odd CONV_2D windows use half each. A model
 * build sizes it to its own layers (the generator's ek_model_config.h, see
 * edgekit.firmware.op_emitters.s4_window_taps: a multiple of 16); without one, a 3x3 conv over
 * 64 channels. */
#if defined(__has_include)
#if __has_include("ek_model_config.h")
#include "ek_model_config.h"
#endif
#endif
#ifndef EK_S4_WINDOW_TAPS
#define EK_S4_WINDOW_TAPS 576
#endif
/* 1 when some CONV_2D call may take the one-pixel path (ek_conv.c's conv2d_s4_pixels, which
 * alone calls ek_s4_conv_window); a model build leaves it out (0) when none does. */
#ifndef EK_S4_CONV_PIXELS
#define EK_S4_CONV_PIXELS 1
#endif
#define EK_S4_RUN_GROUPS 32

static inline int ek_s4_dsp_applies(int32_t filter_offset, int32_t len)
{
    return filter_offset == 0 && (len & 1) == 0 && len <= EK_S4_WINDOW_TAPS;
}

/* CONV_2D also takes odd windows (a first layer over 3 input channels): channel oc then
 * starts on the high nibble of a byte when oc is odd. Those channels read the window built one
 * tap later (a zero tap first, meeting the previous channel's last nibble), kept in the second
 * half of the buffer; even and odd channels are paired with their own kind. */
static inline int ek_s4_conv_dsp_applies(int32_t filter_offset, int32_t len)
{
    return ek_s4_dsp_applies(filter_offset, len)
           || (filter_offset == 0 && len + 1 <= EK_S4_WINDOW_TAPS / 2);
}

/* Window slot (int16 index) of tap t: word k = t mod 4 of its group, high lane for t mod 8 >= 4. */
static inline int32_t ek_s4_slot(int32_t t)
{
    return (t & ~7) + ((t & 3) << 1) + ((t >> 2) & 1);
}

/* n zero taps from tap t on; returns the next tap. */
static inline int32_t ek_s4_put_zeros(int16_t *win, int32_t t, int32_t n)
{
    for (; n > 0; --n, ++t) {
        win[ek_s4_slot(t)] = 0;
    }
    return t;
}

/* Taps t.. t+n-1 from n input bytes x (plus the offset); whole groups take two word loads and
 * four packed stores. Returns the next tap. */
static inline int32_t ek_s4_put_run(int16_t *win, int32_t t, const int8_t *x, int32_t n,
                                    int32_t input_offset)
{
    const uint32_t offset2 = ek_dup16(input_offset);
    for (; n > 0 && (t & 7) != 0; --n, ++t) {
        win[ek_s4_slot(t)] = (int16_t)(*x++ + input_offset);
    }
    for (; n >= 8; n -= 8, t += 8, x += 8) {
        const uint32_t lo = ek_read_u32(x), hi = ek_read_u32(x + 4);
        const uint32_t a02 = ek_sxtab16(offset2, lo), a13 = ek_sxtab16_ror8(offset2, lo);
        const uint32_t b02 = ek_sxtab16(offset2, hi), b13 = ek_sxtab16_ror8(offset2, hi);
        uint32_t words[4];
        words[0] = (a02 & 0xFFFFu) | (b02 << 16);         /* {x0, x4} */
        words[1] = (a13 & 0xFFFFu) | (b13 << 16);         /* {x1, x5} */
        words[2] = (a02 >> 16) | (b02 & 0xFFFF0000u);     /* {x2, x6} */
        words[3] = (a13 >> 16) | (b13 & 0xFFFF0000u);     /* {x3, x7} */
        memcpy(win + t, words, sizeof words);
    }
    for (; n > 0; --n, ++t) {
        win[ek_s4_slot(t)] = (int16_t)(*x++ + input_offset);
    }
    return t;
}

/* Zero-fills the window from tap t to the end of its group; returns the number of groups. */
static inline int32_t ek_s4_finish(int16_t *win, int32_t t)
{
    return ek_s4_put_zeros(win, t, (8 - (t & 7)) & 7) >> 3;
}

#if EK_S4_CONV_PIXELS
/* The window of the conv output pixel whose taps start at (iy0, ix0), OHWI tap order, from
 * slot `first` on (0, or 1 behind a zero tap: the odd channels' window). */
static int32_t ek_s4_conv_window(const ek_conv2d_params *p, const int8_t *input, int32_t iy0,
                                 int32_t ix0, int16_t *win, int32_t first)
{
    const int32_t c_in = p->in_c;
    int32_t kx0, kx1, t = ek_s4_put_zeros(win, 0, first);
    ek_conv_valid_taps(ix0, p->in_w, p->k_w, p->dilation_w, &kx0, &kx1);
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = iy0 + ky * p->dilation_h;
        if (iy < 0 || iy >= p->in_h || kx1 <= kx0) {
            t = ek_s4_put_zeros(win, t, p->k_w * c_in);
            continue;
        }
        t = ek_s4_put_zeros(win, t, kx0 * c_in);
        if (p->dilation_w == 1) { /* the row's valid taps are one run of bytes */
            t = ek_s4_put_run(win, t, input + (iy * p->in_w + ix0 + kx0) * c_in,
                              (kx1 - kx0) * c_in, p->input_offset);
        } else {
            for (int32_t kx = kx0; kx < kx1; ++kx) {
                t = ek_s4_put_run(win, t, input + (iy * p->in_w + ix0 + kx * p->dilation_w) * c_in,
                                  c_in, p->input_offset);
            }
        }
        t = ek_s4_put_zeros(win, t, (p->k_w - kx1) * c_in);
    }
    return ek_s4_finish(win, t);
}
#endif

/* One run of n (>= 1) groups: {a0, a1} += 4096 * the window against filter words w0 and w1. */
#if defined(__ARM_FEATURE_DSP) && !defined(EDGEKIT_EMULATE_DSP)
/* One group: two filter words, four window words (the first load steps the window on), eight
 * AND-with-shift, eight SMLAD. */
#define EK_S4_GROUP                                                                            \
    "ldr %[v0], [%[w0]], #4\n\t"                                                               \
    "ldr %[v1], [%[w1]], #4\n\t"                                                               \
    "ldr %[x], [%[win]], #16\n\t"                                                              \
    "and %[t], %[m], %[v0], lsl #12\n\t"                                                       \
    "smlad %[a0], %[t], %[x], %[a0]\n\t"                                                       \
    "and %[t], %[m], %[v1], lsl #12\n\t"                                                       \
    "smlad %[a1], %[t], %[x], %[a1]\n\t"                                                       \
    "ldr %[x], [%[win], #-12]\n\t"                                                             \
    "and %[t], %[m], %[v0], lsl #8\n\t"                                                        \
    "smlad %[a0], %[t], %[x], %[a0]\n\t"                                                       \
    "and %[t], %[m], %[v1], lsl #8\n\t"                                                        \
    "smlad %[a1], %[t], %[x], %[a1]\n\t"                                                       \
    "ldr %[x], [%[win], #-8]\n\t"                                                              \
    "and %[t], %[m], %[v0], lsl #4\n\t"                                                        \
    "smlad %[a0], %[t], %[x], %[a0]\n\t"                                                       \
    "and %[t], %[m], %[v1], lsl #4\n\t"                                                        \
    "smlad %[a1], %[t], %[x], %[a1]\n\t"                                                       \
    "ldr %[x], [%[win], #-4]\n\t"                                                              \
    "and %[t], %[m], %[v0]\n\t"                                                                \
    "smlad %[a0], %[t], %[x], %[a0]\n\t"                                                       \
    "and %[t], %[m], %[v1]\n\t"                                                                \
    "smlad %[a1], %[t], %[x], %[a1]\n\t"
#define EK_S4_RUN(win, w0, w1, n, a0, a1)                                                      \
    do {                                                                                       \
        const int16_t *const end_ = (win) + 8 * (n);                                           \
        uint32_t v0_, v1_, x_, t_;                                                             \
        const uint32_t mask_ = 0xF000F000u;                                                    \
        /* an odd group count: one group, then pairs (22 instructions per 16 MACs, plus the   \
         * loop's two per pair) */                                                             \
        __asm__ volatile(                                                                      \
            "tst %[n], #1\n\t"                                                                 \
            "beq 2f\n\t" EK_S4_GROUP                                                           \
            "cmp %[win], %[end]\n\t"                                                           \
            "beq 3f\n"                                                                         \
            "2:\n\t" EK_S4_GROUP EK_S4_GROUP                                                    \
            "cmp %[win], %[end]\n\t"                                                           \
            "bne 2b\n"                                                                         \
            "3:\n"                                                                             \
            : [a0] "+r"(a0), [a1] "+r"(a1), [win] "+r"(win), [w0] "+r"(w0), [w1] "+r"(w1),    \
              [v0] "=&r"(v0_), [v1] "=&r"(v1_), [x] "=&r"(x_), [t] "=&r"(t_)                 \
            : [m] "r"(mask_), [end] "r"(end_), [n] "r"(n)                                      \
            : "cc", "memory");                                                                 \
    } while (0)
#else
#define EK_S4_RUN(win, w0, w1, n, a0, a1)                                                      \
    do {                                                                                       \
        const uint32_t mask_ = 0xF000F000u;                                                    \
        for (int32_t g_ = 0; g_ < (n); ++g_) {                                                 \
            const uint32_t v0_ = ek_read_u32(w0), v1_ = ek_read_u32(w1);                       \
            for (int32_t k_ = 0; k_ < 4; ++k_) {                                               \
                const uint32_t x_ = ek_read_u32((win) + 2 * k_);                               \
                const uint32_t shift_ = (uint32_t)(12 - 4 * k_);                               \
                a0 = ek_smlad((v0_ << shift_) & mask_, x_, a0);                                \
                a1 = ek_smlad((v1_ << shift_) & mask_, x_, a1);                                \
            }                                                                                  \
            (win) += 8;                                                                        \
            (w0) += 4;                                                                         \
            (w1) += 4;                                                                         \
        }                                                                                      \
    } while (0)
#endif

/* acc[r] += the window against the channel whose nibbles start at n_r (even), r = 0, 1. */
#if defined(__GNUC__)
#define EK_S4_INLINE static inline __attribute__((always_inline))
#define EK_S4_NOINLINE static __attribute__((noinline))
#else
#define EK_S4_INLINE static inline
#define EK_S4_NOINLINE static
#endif

EK_S4_NOINLINE void ek_s4_dot2(const int16_t *win,
                                                              const int8_t *filter, int32_t n0,
                                                              int32_t n1, int32_t groups,
                                                              int32_t acc[2])
{
    const uint8_t *w0 = (const uint8_t *)filter + (n0 >> 1);
    const uint8_t *w1 = (const uint8_t *)filter + (n1 >> 1);
    uint32_t total0 = (uint32_t)acc[0], total1 = (uint32_t)acc[1];
    while (groups > 0) {
        const int32_t n = groups < EK_S4_RUN_GROUPS ? groups : EK_S4_RUN_GROUPS;
        int32_t a0 = 0, a1 = 0;
        groups -= n;
        EK_S4_RUN(win, w0, w1, n, a0, a1);
        /* exact multiples of 4096: the arithmetic shift loses nothing */
        total0 += (uint32_t)(a0 >> 12);
        total1 += (uint32_t)(a1 >> 12);
    }
    acc[0] = (int32_t)total0;
    acc[1] = (int32_t)total1;
}

/* Every output channel of one pixel: channel oc's nibbles start at oc * len; STORE(i, y)
 * stores output channel i's int8 result y. Even len: pairs (oc, oc+1) on `win`. Odd len: the
 * even channels in pairs (oc, oc+2) on `win`, then the odd ones on `win_odd` (their nibbles
 * from byte (oc*len)/2 on, one tap early). A channel without a partner runs twice. */
#define EK_S4_CHANNELS(win, win_odd, groups, groups_odd, filter, len, bias, c_out, mult, shifts, \
                       out_off, lo, hi, STORE)                                                \
    do {                                                                                      \
        const int32_t odd_ = (len) & 1, gap_ = 1 + odd_;                                      \
        for (int32_t par_ = 0; par_ <= odd_; ++par_) {                                        \
            const int16_t *const w_ = par_ ? (win_odd) : (win);                               \
            const int32_t g_ = par_ ? (groups_odd) : (groups);                                \
            for (int32_t oc_ = par_; oc_ < (c_out); oc_ += 2 * gap_) {                        \
                const int32_t oc1_ = oc_ + gap_ < (c_out) ? oc_ + gap_ : oc_;                 \
                int32_t acc_[2];                                                              \
                acc_[0] = (bias) != 0 ? (bias)[oc_] : 0;                                      \
                acc_[1] = (bias) != 0 ? (bias)[oc1_] : 0;                                     \
                ek_s4_dot2(w_, (filter), (oc_ * (len)) & ~1, (oc1_ * (len)) & ~1, g_, acc_);  \
                STORE(oc_, ek_conv_requantize(acc_[0], (mult)[oc_], (shifts)[oc_], (out_off), \
                                              (lo), (hi)));                                   \
                if (oc1_ != oc_) {                                                            \
                    STORE(oc1_, ek_conv_requantize(acc_[1], (mult)[oc1_], (shifts)[oc1_],     \
                                                   (out_off), (lo), (hi)));                   \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
    } while (0)

#endif
