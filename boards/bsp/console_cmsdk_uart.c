/* Arm CMSDK APB UART (MPS2 / MPS3 FPGA images). QEMU only transmits with CTRL.TX_EN set. */
#include "edgekit_bsp.h"

#define UART_REG(offset) (*(volatile uint32_t *)(EDGEKIT_CONSOLE_BASE + (offset)))
#define UART_DATA UART_REG(0x00)
#define UART_STATE UART_REG(0x04)   /* bit 0: TX buffer full */
#define UART_CTRL UART_REG(0x08)    /* bit 0: TX enable */
#define UART_BAUDDIV UART_REG(0x10) /* >= 16 */

void edgekit_console_init(void) {
    UART_BAUDDIV = 16;
    UART_CTRL = 1u;
}

void edgekit_console_putc(char c) {
    while (UART_STATE & 1u) {}
    UART_DATA = (uint8_t)c;
}

void edgekit_console_flush(void) {
    while (UART_STATE & 1u) {}
}
