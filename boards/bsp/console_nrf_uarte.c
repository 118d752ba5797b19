/* nRF52840 UARTE (UART with EasyDMA), 115200 8N1, transmit only (nRF52840 PS v1.7, 6.34).
 *
 * EasyDMA reads only from RAM, so characters are gathered in a RAM buffer and sent a line (or
 * a full buffer) at a time: one STARTTX per line instead of per byte. The pins are the
 * nRF52840 DK's (the only board with this console kind). */
#include "edgekit_bsp.h"

#define UARTE_REG(offset) (*(volatile uint32_t *)(EDGEKIT_CONSOLE_BASE + (offset)))
#define UARTE_TASKS_STARTTX UARTE_REG(0x008)
#define UARTE_EVENTS_ENDTX UARTE_REG(0x120)
#define UARTE_ENABLE UARTE_REG(0x500)     /* 8: UARTE enabled */
#define UARTE_PSEL_TXD UARTE_REG(0x50C)
#define UARTE_PSEL_RXD UARTE_REG(0x514)
#define UARTE_BAUDRATE UARTE_REG(0x524)
#define UARTE_TXD_PTR UARTE_REG(0x544)
#define UARTE_TXD_MAXCNT UARTE_REG(0x548)
#define UARTE_CONFIG UARTE_REG(0x56C)
#define BAUD_115200 0x01D7E000u
#define PSEL_DISCONNECTED 0x80000000u

/* nRF52840 DK: the J-Link VCP is on P0.06 (TX) and P0.08 (RX) */
#define TX_PIN 6u
#define RX_PIN 8u
#define GPIO_P0 0x50000000u

static uint8_t tx_buffer[64];
static uint32_t tx_count;

void edgekit_console_init(void) {
    /* TX pin: output, high (idle) before the UARTE takes it */
    *(volatile uint32_t *)(GPIO_P0 + 0x508) = 1u << TX_PIN;              /* OUTSET */
    *(volatile uint32_t *)(GPIO_P0 + 0x700 + 4u * TX_PIN) = 1u;          /* PIN_CNF: output */
    UARTE_ENABLE = 0;
    UARTE_PSEL_TXD = TX_PIN;
    UARTE_PSEL_RXD = PSEL_DISCONNECTED;  /* transmit only: RX (P0.08) stays free */
    UARTE_BAUDRATE = BAUD_115200;
    UARTE_CONFIG = 0;                    /* 8N1, no flow control */
    UARTE_ENABLE = 8;
    tx_count = 0;
    (void)RX_PIN;
}

void edgekit_console_flush(void) {
    if (tx_count == 0) return;
    UARTE_EVENTS_ENDTX = 0;
    UARTE_TXD_PTR = (uint32_t)(uintptr_t)tx_buffer;
    UARTE_TXD_MAXCNT = tx_count;
    UARTE_TASKS_STARTTX = 1;
    /* ENDTX: EasyDMA has read the whole buffer, which may then be refilled; the transmitter
     * stays started (the next STARTTX needs no TXSTOPPED handshake) */
    while (UARTE_EVENTS_ENDTX == 0) {}
    UARTE_EVENTS_ENDTX = 0;
    tx_count = 0;
}

void edgekit_console_putc(char c) {
    tx_buffer[tx_count++] = (uint8_t)c;
    if (c == '\n' || tx_count == sizeof tx_buffer) edgekit_console_flush();
}
