/* Arm PL011 UART: the Stellaris UART of the LM3S6965 and UART0 of the RP2040 share this layout.
 * Emulators need no baud rate; a hardware build (RP2040) sets 115200 8N1 from its UART clock. */
#include "edgekit_bsp.h"

#define UART_REG(offset) (*(volatile uint32_t *)(EDGEKIT_CONSOLE_BASE + (offset)))
#define UART_DR UART_REG(0x000)
#define UART_FR UART_REG(0x018)   /* bit 5 TXFF, bit 3 BUSY */
#define UART_IBRD UART_REG(0x024)
#define UART_FBRD UART_REG(0x028)
#define UART_LCR_H UART_REG(0x02C) /* WLEN 6:5, FEN 4 */
#define UART_CTL UART_REG(0x030)  /* bit 0 UARTEN, bit 8 TXE, bit 9 RXE */

void edgekit_console_init(void) {
#ifdef EDGEKIT_HARDWARE
    /* divisor = clock / (16 x baud) in 16.6 fixed point, rounded (PL011 TRM 3.3.6) */
    const uint32_t scaled = 8u * edgekit_console_clock_hz() / 115200u;
    UART_CTL = 0;
    UART_IBRD = scaled >> 7;
    UART_FBRD = ((scaled & 0x7Fu) + 1u) / 2u;
    UART_LCR_H = (3u << 5) | (1u << 4);  /* 8 bits, FIFOs on; the write latches the divisor */
#endif
    UART_CTL = (1u << 0) | (1u << 8) | (1u << 9);
}

void edgekit_console_putc(char c) {
    while (UART_FR & (1u << 5)) {}
    UART_DR = (uint8_t)c;
}

void edgekit_console_flush(void) {
    while (UART_FR & (1u << 3)) {}
}
