/* Cortex-M7 L1 caches on (ARMv7-M ARM B3.5 / Cortex-M7 TRM "Cache maintenance operations").
 *
 * Both caches must be invalidated before they are enabled: their contents are undefined after
 * reset. The D-cache is invalidated by set/way, from the geometry CCSIDR gives for the level-1
 * data cache. The firmware does no DMA into cached memory (UART transmit is by CPU writes on the
 * STM32s), so write-back caching needs no maintenance afterwards. */
#ifndef CORTEX_M7_CACHE_H
#define CORTEX_M7_CACHE_H

#include <stdint.h>

#define M7_SCB_CCR (*(volatile uint32_t *)0xE000ED14u)    /* bit 16 DC, bit 17 IC */
#define M7_SCB_CCSIDR (*(volatile uint32_t *)0xE000ED80u)
#define M7_SCB_CSSELR (*(volatile uint32_t *)0xE000ED84u)
#define M7_SCB_ICIALLU (*(volatile uint32_t *)0xE000EF50u)
#define M7_SCB_DCISW (*(volatile uint32_t *)0xE000EF60u)

static inline void m7_barriers(void) { __asm volatile("dsb 0xF\n isb 0xF" ::: "memory"); }

static inline void cortex_m7_caches_enable(void) {
    m7_barriers();
    M7_SCB_ICIALLU = 0;
    m7_barriers();
    M7_SCB_CCR |= 1u << 17;

    M7_SCB_CSSELR = 0;  /* level 1, data cache */
    m7_barriers();
    const uint32_t geometry = M7_SCB_CCSIDR;
    const uint32_t sets = ((geometry >> 13) & 0x7FFFu) + 1u;
    const uint32_t ways = ((geometry >> 3) & 0x3FFu) + 1u;
    const uint32_t line_shift = (geometry & 7u) + 4u;
    const uint32_t way_shift = ways > 1u ? (uint32_t)__builtin_clz(ways - 1u) : 0u;
    for (uint32_t set = 0; set < sets; ++set) {
        for (uint32_t way = 0; way < ways; ++way) {
            M7_SCB_DCISW = (way << way_shift) | (set << line_shift);
        }
    }
    m7_barriers();
    M7_SCB_CCR |= 1u << 16;
    m7_barriers();
}

#endif
