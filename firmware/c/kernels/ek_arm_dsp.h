/* The few ARMv7E-M DSP (SIMD32) instructions the convolution kernels use, as static inline
 * functions with the instructions' exact semantics.
 *
 * Which implementation:
 *   - on a core with the DSP extension (__ARM_FEATURE_DSP: Cortex-M4/M7/M33/M55) each wrapper is
 *     the instruction itself (ACLE intrinsics or one line of inline assembly);
 *   - with EDGEKIT_EMULATE_DSP (host tests) each wrapper is plain C doing what the instruction
 *     does, lane by lane, so the DSP kernels' data movement runs, and is checked bit-exact
 *     against the portable kernels, on the host.
 * EK_USE_DSP is 1 when the kernels should take their DSP path: the core has it (or it is
 * emulated) and EDGEKIT_PORTABLE_KERNELS is not defined.
 *
 * Semantics (ARMv7-M Architecture Reference Manual, A7.7):
 *   SXTB16 x       lanes {sign_extend(x[7:0]), sign_extend(x[23:16])} as two int16 halves
 *   SXTB16 x,ROR#8 the same on x rotated right by 8: {x[15:8], x[31:24]}
 *   SADD16 a, b    two independent 16-bit wrap-around additions (the GE flags are not used)
 *   SXTAB16 a, x   SADD16(a, SXTB16 x) in one instruction (also with ROR #8)
 *   SMLAD a, b, c  c + a.lo*b.lo + a.hi*b.hi, wrapping mod 2^32 (the Q flag is not used)
 *   SMLABB/SMLATB/SMLATT  c + a.lo*b.lo / a.hi*b.lo / a.hi*b.hi, wrapping mod 2^32
 *   SMLADX a, b, c c + a.lo*b.hi + a.hi*b.lo, wrapping mod 2^32
 *   PKHBT a, b, LSL #16 / PKHTB b, a, ASR #16   {a.lo, b.lo} / {a.hi, b.hi} (ek_pack_lo16/hi16)
 * Wrap-around is what the reference's int32 accumulator does too, so results are identical. */
#ifndef EK_ARM_DSP_H
#define EK_ARM_DSP_H

#include <stdint.h>
#include <string.h>

#if (defined(__ARM_FEATURE_DSP) || defined(EDGEKIT_EMULATE_DSP)) \
    && !defined(EDGEKIT_PORTABLE_KERNELS)
#define EK_USE_DSP 1
#else
#define EK_USE_DSP 0
#endif

/* Four int8 (or one uint32) from any address: unaligned word loads are legal on ARMv7-M, and
 * memcpy compiles to a single LDR there. */
static inline uint32_t ek_read_u32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Both 16-bit lanes set to v (an int16 value). */
static inline uint32_t ek_dup16(int32_t v)
{
    uint32_t lo = (uint32_t)v & 0xFFFFu;
    return lo | (lo << 16);
}

#if defined(__ARM_FEATURE_DSP) && !defined(EDGEKIT_EMULATE_DSP)

static inline uint32_t ek_sxtb16(uint32_t x)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1" : "=r"(r) : "r"(x));
    return r;
}

static inline uint32_t ek_sxtb16_ror8(uint32_t x)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}

static inline uint32_t ek_sxtab16(uint32_t a, uint32_t x)
{
    uint32_t r;
    __asm__("sxtab16 %0, %1, %2" : "=r"(r) : "r"(a), "r"(x));
    return r;
}

static inline uint32_t ek_sxtab16_ror8(uint32_t a, uint32_t x)
{
    uint32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
    return r;
}

static inline uint32_t ek_sadd16(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm__("sadd16 %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

static inline int32_t ek_smlad(uint32_t a, uint32_t b, int32_t acc)
{
    int32_t r;
    __asm__("smlad %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
}

static inline int32_t ek_smlabb(uint32_t a, uint32_t b, int32_t acc)
{
    int32_t r;
    __asm__("smlabb %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
}

static inline int32_t ek_smlatb(uint32_t a, uint32_t b, int32_t acc)
{
    int32_t r;
    __asm__("smlatb %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
}

static inline int32_t ek_smlatt(uint32_t a, uint32_t b, int32_t acc)
{
    int32_t r;
    __asm__("smlatt %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
}

static inline int32_t ek_smladx(uint32_t a, uint32_t b, int32_t acc)
{
    int32_t r;
    __asm__("smladx %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
}

/* {a.lo, b.lo} and {a.hi, b.hi} as int16 lanes (PKHBT, PKHTB) */
static inline uint32_t ek_pack_lo16(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

static inline uint32_t ek_pack_hi16(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(r) : "r"(b), "r"(a));
    return r;
}

#else /* portable emulation of the same instructions */

static inline int32_t ek__lo16(uint32_t x) { return (int32_t)(int16_t)(uint16_t)(x & 0xFFFFu); }
static inline int32_t ek__hi16(uint32_t x) { return (int32_t)(int16_t)(uint16_t)(x >> 16); }

static inline uint32_t ek__pack16(int32_t lo, int32_t hi)
{
    return ((uint32_t)lo & 0xFFFFu) | (((uint32_t)hi & 0xFFFFu) << 16);
}

static inline uint32_t ek_sxtb16(uint32_t x)
{
    return ek__pack16((int8_t)(uint8_t)(x & 0xFFu), (int8_t)(uint8_t)((x >> 16) & 0xFFu));
}

static inline uint32_t ek_sxtb16_ror8(uint32_t x)
{
    return ek_sxtb16((x >> 8) | (x << 24));
}

static inline uint32_t ek_sadd16(uint32_t a, uint32_t b)
{
    return ek__pack16(ek__lo16(a) + ek__lo16(b), ek__hi16(a) + ek__hi16(b));
}

static inline uint32_t ek_sxtab16(uint32_t a, uint32_t x)
{
    return ek_sadd16(a, ek_sxtb16(x));
}

static inline uint32_t ek_sxtab16_ror8(uint32_t a, uint32_t x)
{
    return ek_sadd16(a, ek_sxtb16_ror8(x));
}

/* Products of two int16 fit int32; the sums wrap as the 32-bit register does. */
static inline int32_t ek_smlad(uint32_t a, uint32_t b, int32_t acc)
{
    uint32_t sum = (uint32_t)acc + (uint32_t)(ek__lo16(a) * ek__lo16(b))
                   + (uint32_t)(ek__hi16(a) * ek__hi16(b));
    return (int32_t)sum;
}

static inline int32_t ek_smlabb(uint32_t a, uint32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)(ek__lo16(a) * ek__lo16(b)));
}

static inline int32_t ek_smlatb(uint32_t a, uint32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)(ek__hi16(a) * ek__lo16(b)));
}

static inline int32_t ek_smlatt(uint32_t a, uint32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)(ek__hi16(a) * ek__hi16(b)));
}

/* {a.lo, b.lo} and {a.hi, b.hi} as int16 lanes (PKHBT, PKHTB) */
static inline uint32_t ek_pack_lo16(uint32_t a, uint32_t b)
{
    return (a & 0xFFFFu) | (b << 16);
}

static inline uint32_t ek_pack_hi16(uint32_t a, uint32_t b)
{
    return (a >> 16) | (b & 0xFFFF0000u);
}

/* SMLAD with b's halves exchanged: a.lo * b.hi + a.hi * b.lo */
static inline int32_t ek_smladx(uint32_t a, uint32_t b, int32_t acc)
{
    uint32_t sum = (uint32_t)acc + (uint32_t)(ek__lo16(a) * ek__hi16(b))
                   + (uint32_t)(ek__hi16(a) * ek__lo16(b));
    return (int32_t)sum;
}

#endif

#endif
