/* STM32 F1/F2/F4 USART (SR/DR layout). Emulated boards need no clock or pin set-up. */
#include "edgekit_bsp.h"

#define USART_REG(offset) (*(volatile uint32_t *)(EDGEKIT_CONSOLE_BASE + (offset)))
#define USART_SR USART_REG(0x00)  /* bit 7 TXE, bit 6 TC */
#define USART_DR USART_REG(0x04)
#define USART_BRR USART_REG(0x08)
#define USART_CR1 USART_REG(0x0C) /* bit 13 UE, bit 3 TE */

void edgekit_console_init(void) {
    USART_BRR = 0x2D9;            /* 115200 baud from 84 MHz APB2; ignored by QEMU */
    USART_CR1 = (1u << 13) | (1u << 3);
}

void edgekit_console_putc(char c) {
    while (!(USART_SR & (1u << 7))) {}
    USART_DR = (uint8_t)c;
}

void edgekit_console_flush(void) {
    while (!(USART_SR & (1u << 6))) {}
}
