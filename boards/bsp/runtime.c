/* Measurement markers, exit, painted-region scans, DWT cycles. */
#include "edgekit_bsp.h"

volatile uint32_t edgekit_stack_peak_bytes;

/* The markers must stay real calls: the Unicorn runner hooks their addresses. The asm barrier
 * keeps the compiler from merging or dropping them. */
#define MARKER(name) \
    __attribute__((noinline, used)) void name(void) { __asm volatile("" ::: "memory"); }

MARKER(edgekit_measure_begin)
MARKER(edgekit_measure_end)
MARKER(edgekit_stack_paint_done)
MARKER(edgekit_report_begin)

uint32_t edgekit_arena_scan(void) {
    const volatile uint8_t *start = __arena_start;
    const volatile uint8_t *p = __arena_end;
    while (p > start && p[-1] == EDGEKIT_PAINT_BYTE) --p;
    return (uint32_t)(p - start);
}

#ifdef EDGEKIT_SEMIHOSTING
/* Semihosting call: r0 = operation, r1 = argument; bkpt 0xAB traps to the host. */
static int semihost(int op, const void *arg) {
    register int r0 __asm("r0") = op;
    register const void *r1 __asm("r1") = arg;
    __asm volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}
#endif

void edgekit_exit(int status) {
    edgekit_console_flush();
#ifdef EDGEKIT_SEMIHOSTING
    /* SYS_EXIT_EXTENDED (0x20): {ADP_Stopped_ApplicationExit, status} carries the exit code */
    const uint32_t block[2] = {0x20026u, (uint32_t)status};
    semihost(0x20, block);
#else
    (void)status;
#endif
    for (;;) __asm volatile("wfi");
}

#ifdef EDGEKIT_HAS_DWT
#define DEMCR (*(volatile uint32_t *)0xE000EDFCu)
#define DWT_CTRL (*(volatile uint32_t *)0xE0001000u)
#define DWT_CYCCNT (*(volatile uint32_t *)0xE0001004u)
#define DWT_LAR (*(volatile uint32_t *)0xE0001FB0u)
void edgekit_cycles_start(void) {
    DEMCR |= 1u << 24;      /* TRCENA */
    DWT_LAR = 0xC5ACCE55u;  /* unlock (Cortex-M7 needs it; ignored elsewhere) */
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u;         /* CYCCNTENA */
}
uint32_t edgekit_cycles_read(void) { return DWT_CYCCNT; }
#elif defined(EDGEKIT_HAS_SYSTICK)
/* SysTick, 24 bits, counting down at the core clock; its exception counts the wraps */
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)  /* ENABLE 0, TICKINT 1, CLKSOURCE 2 */
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
static volatile uint32_t systick_wraps;
void edgekit_systick_handler(void) { systick_wraps = systick_wraps + 1u; }
void edgekit_cycles_start(void) {
    SYST_CSR = 0;
    SYST_RVR = 0xFFFFFFu;
    SYST_CVR = 0;  /* any write clears it: the count starts from the reload value */
    systick_wraps = 0;
    SYST_CSR = 7u;
}
uint32_t edgekit_cycles_read(void) {
    uint32_t wraps, value;
    do {  /* a wrap between the two reads shows as a changed wrap count: read again */
        wraps = systick_wraps;
        value = SYST_CVR;
    } while (wraps != systick_wraps);
    return wraps * 0x1000000u + (0xFFFFFFu - value);
}
#else
void edgekit_cycles_start(void) {}
uint32_t edgekit_cycles_read(void) { return 0; }
#endif

/* Emulated builds set nothing up; board_<bsp>.c replaces these on the hardware. */
__attribute__((weak)) void edgekit_board_init(void) {}
__attribute__((weak)) uint32_t edgekit_core_clock_hz(void) { return 0; }

void edgekit_wait_bits(const volatile uint32_t *reg, uint32_t mask, uint32_t want, const char *what) {
    /* far more polls than any clock or regulator of these chips needs (microseconds to ~2 ms) */
    for (uint32_t polls = 0; polls < 50000000u; ++polls) {
        if ((*reg & mask) == want) return;
    }
    /* the console may not be up yet: its init is harmless to repeat */
    edgekit_console_init();
    edgekit_console_write("\n@@EDGEKIT-FAULT kind=board_init\nwaiting_for=");
    edgekit_console_write(what);
    edgekit_console_write("\n@@EDGEKIT-END status=fault\n");
    edgekit_exit(5);
}

void edgekit_console_write(const char *s) {
    while (*s) edgekit_console_putc(*s++);
}
