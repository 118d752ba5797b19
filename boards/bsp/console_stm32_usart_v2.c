/* STM32 F7/H7/L4 USART and LPUART (CR1/BRR/ISR/TDR layout), 115200 8N1, transmit only.
 * Clocks and pins are the board's (board_<bsp>.c); the baud divider comes from the clock it
 * feeds the peripheral. The LPUART divides by 256 more finely (RM0432 "LPUART baud rate"). */
#include "edgekit_bsp.h"

#define USART_REG(offset) (*(volatile uint32_t *)(EDGEKIT_CONSOLE_BASE + (offset)))
#define USART_CR1 USART_REG(0x00)  /* bit 0 UE, bit 3 TE */
#define USART_BRR USART_REG(0x0C)
#define USART_ISR USART_REG(0x1C)  /* bit 7 TXE, bit 6 TC */
#define USART_TDR USART_REG(0x28)
#define BAUD 115200u

void edgekit_console_init(void) {
    const uint32_t clock = edgekit_console_clock_hz();
    USART_CR1 = 0;  /* BRR is only written with the USART disabled */
#ifdef EDGEKIT_CONSOLE_LPUART
    USART_BRR = (uint32_t)(((uint64_t)clock * 256u + BAUD / 2u) / BAUD);
#else
    USART_BRR = (clock + BAUD / 2u) / BAUD;  /* oversampling by 16 */
#endif
    USART_CR1 = (1u << 3) | 1u;
}

void edgekit_console_putc(char c) {
    while (!(USART_ISR & (1u << 7))) {}
    USART_TDR = (uint8_t)c;
}

void edgekit_console_flush(void) {
    while (!(USART_ISR & (1u << 6))) {}
}
