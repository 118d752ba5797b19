/* nRF52840 DK: the CPU runs at 64 MHz from reset; the board set-up starts the 32 MHz crystal
 * oscillator (HFXO) so that HFCLK, and with it the UART's baud rate, has crystal accuracy
 * (the internal HFINT is +-1.5%). nRF52840 Product Specification v1.7, CLOCK (6.4). */
#include "edgekit_bsp.h"

#define REG(addr) (*(volatile uint32_t *)(addr))
#define CLOCK_TASKS_HFCLKSTART REG(0x40000000u)
#define CLOCK_EVENTS_HFCLKSTARTED REG(0x40000100u)
#define CLOCK_HFCLKSTAT REG(0x4000040Cu)  /* SRC 0 (1: HFXO), STATE 16 */
#define CORE_HZ 64000000u

void edgekit_board_init(void) {
    CLOCK_EVENTS_HFCLKSTARTED = 0;
    CLOCK_TASKS_HFCLKSTART = 1;
    edgekit_wait_bits(&CLOCK_EVENTS_HFCLKSTARTED, 1u, 1u, "CLOCK.EVENTS_HFCLKSTARTED");
    CLOCK_EVENTS_HFCLKSTARTED = 0;
}

uint32_t edgekit_core_clock_hz(void) { return CORE_HZ; }
uint32_t edgekit_console_clock_hz(void) { return CORE_HZ; }
