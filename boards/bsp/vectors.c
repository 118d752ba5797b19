/* The vector table and the fault handlers.
 *
 * A fault prints its stacked registers and the fault status registers as the report protocol
 * says (@@EDGEKIT-FAULT ... @@EDGEKIT-END status=fault) and exits with a non-zero status, so a
 * crash is a clear failure on every runner instead of a silent hang. */
#include "edgekit_bsp.h"

void Reset_Handler(void);
void edgekit_fault_entry_hard(void);
void edgekit_fault_entry_memmanage(void);
void edgekit_fault_entry_bus(void);
void edgekit_fault_entry_usage(void);

static void default_handler(void) { edgekit_exit(4); }
/* runtime.c defines it where SysTick counts cycles (EDGEKIT_HAS_SYSTICK) */
void edgekit_systick_handler(void) __attribute__((weak, alias("default_handler")));

typedef void (*vector_t)(void);

__attribute__((section(".vectors"), used))
const vector_t edgekit_vectors[16 + 16] = {
    (vector_t)(uintptr_t)__stack_top,
    Reset_Handler,
    default_handler,                 /* NMI */
    edgekit_fault_entry_hard,
    edgekit_fault_entry_memmanage,   /* reserved on ARMv6-M: never taken there */
    edgekit_fault_entry_bus,
    edgekit_fault_entry_usage,
    0, 0, 0, 0,
    default_handler,                 /* SVCall */
    default_handler,                 /* DebugMonitor */
    0,
    default_handler,                 /* PendSV */
    edgekit_systick_handler,         /* SysTick */
    /* no interrupts are enabled; the first 16 IRQs point at the default handler anyway */
    default_handler, default_handler, default_handler, default_handler,
    default_handler, default_handler, default_handler, default_handler,
    default_handler, default_handler, default_handler, default_handler,
    default_handler, default_handler, default_handler, default_handler,
};

/* Each entry passes the stacked exception frame (MSP or PSP, from EXC_RETURN bit 2) and its
 * kind to edgekit_fault_report. Thumb-1 instructions only, for ARMv6-M. */
#define FAULT_ENTRY(name, kind)                                   \
    __attribute__((naked)) void name(void) {                      \
        __asm volatile("movs r0, #4\n"                            \
                       "mov r1, lr\n"                             \
                       "tst r0, r1\n"                             \
                       "beq 1f\n"                                 \
                       "mrs r0, psp\n"                            \
                       "b 2f\n"                                   \
                       "1: mrs r0, msp\n"                         \
                       "2: movs r1, #" #kind "\n"                 \
                       "ldr r2, =edgekit_fault_report\n"          \
                       "bx r2\n"                                  \
                       ".pool\n");                                \
    }

FAULT_ENTRY(edgekit_fault_entry_hard, 0)
FAULT_ENTRY(edgekit_fault_entry_memmanage, 1)
FAULT_ENTRY(edgekit_fault_entry_bus, 2)
FAULT_ENTRY(edgekit_fault_entry_usage, 3)

static void put_hex32(const char *key, uint32_t value, char sep) {
    static const char digits[] = "0123456789abcdef";
    edgekit_console_write(key);
    edgekit_console_write("=0x");
    for (int shift = 28; shift >= 0; shift -= 4) edgekit_console_putc(digits[(value >> shift) & 0xFu]);
    edgekit_console_putc(sep);
}

#define SCB_REG(offset) (*(volatile uint32_t *)(0xE000ED00u + (offset)))

__attribute__((used, noreturn)) void edgekit_fault_report(const uint32_t *frame, uint32_t kind) {
    static const char *const kinds[] = {"hardfault", "memmanage", "busfault", "usagefault"};
#if defined(__ARM_ARCH_6M__)
    /* ARMv6-M has no configurable fault status registers */
    uint32_t cfsr = 0, hfsr = 0, mmfar = 0, bfar = 0;
#else
    uint32_t cfsr = SCB_REG(0x28), hfsr = SCB_REG(0x2C), mmfar = SCB_REG(0x34), bfar = SCB_REG(0x38);
    /* HFSR.DEBUGEVT: a bkpt (semihosting without a debugger/-semihosting) escalated here; the
     * console already has the report, and exiting would bkpt again: just stop. */
    if (hfsr & 0x80000000u) {
        for (;;) __asm volatile("wfi");
    }
#endif
    edgekit_console_write("\n@@EDGEKIT-FAULT kind=");
    edgekit_console_write(kinds[kind & 3u]);
    edgekit_console_putc('\n');
    static const char *const names[] = {"r0", "r1", "r2", "r3", "r12", "lr", "pc", "xpsr"};
    for (int i = 0; i < 8; ++i) put_hex32(names[i], frame[i], ' ');
    put_hex32("cfsr", cfsr, ' ');
    put_hex32("hfsr", hfsr, ' ');
    put_hex32("mmfar", mmfar, ' ');
    put_hex32("bfar", bfar, '\n');
    edgekit_console_write("@@EDGEKIT-END status=fault\n");
    edgekit_exit(3);
}
