/* Arm PL011 UART: the Stellaris UART of the LM3S6965 and UART0 of the RP2040 share this layout. */
#include "edgekit_bsp.h"

#define UART_REG(offset) (*(volatile uint32_t *)(EDGEKIT_CONSOLE_BASE + (offset)))
#define UART_DR UART_REG(0x000)
#define UART_FR UART_REG(0x018)   /* bit 5 TXFF, bit 3 BUSY */
#define UART_CTL UART_REG(0x030)  /* bit 0 UARTEN, bit 8 TXE, bit 9 RXE */

void edgekit_console_init(void) {
    UART_CTL = (1u << 0) | (1u << 8) | (1u << 9);
}

void edgekit_console_putc(char c) {
    while (UART_FR & (1u << 5)) {}
    UART_DR = (uint8_t)c;
}

void edgekit_console_flush(void) {
    while (UART_FR & (1u << 3)) {}
}
