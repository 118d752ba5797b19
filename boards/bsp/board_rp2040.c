/* Raspberry Pi Pico (RP2040): clk_sys 125 MHz from the 12 MHz crystal through PLL_SYS
 * (VCO 1500 MHz / 6 / 2), clk_peri = clk_sys, UART0 on GPIO0 (TX) and GPIO1 (RX).
 * The boot stage for the QSPI flash is boot2_rp2040.S.
 *
 * Register addresses and sequences from the RP2040 datasheet: RESETS (2.14), clocks and their
 * glitchless muxes (2.15), XOSC start-up delay (2.16), PLL programming (2.18.2), IO_BANK0
 * function select (2.19: UART0 is function 2 on GPIO0/1). Peripheral registers have atomic
 * aliases: +0x2000 sets, +0x3000 clears the written bits. */
#include "edgekit_bsp.h"

#define REG(addr) (*(volatile uint32_t *)(addr))
#define SET(addr) REG((addr) + 0x2000u)
#define CLR(addr) REG((addr) + 0x3000u)

#define RESETS_RESET 0x4000C000u
#define RESETS_DONE REG(0x4000C008u)
#define RESET_IO_BANK0 (1u << 5)
#define RESET_PADS_BANK0 (1u << 8)
#define RESET_PLL_SYS (1u << 12)
#define RESET_UART0 (1u << 22)

#define XOSC_CTRL REG(0x40024000u)     /* FREQ_RANGE 11:0 (0xAA0: 1-15 MHz), ENABLE 23:12 (0xFAB) */
#define XOSC_STATUS REG(0x40024004u)   /* STABLE 31 */
#define XOSC_STARTUP REG(0x4002400Cu)  /* DELAY 13:0, in 256-cycle units */

#define CLOCKS 0x40008000u
#define CLK_REF_CTRL REG(CLOCKS + 0x30)      /* SRC 1:0 (2: xosc) */
#define CLK_REF_SELECTED REG(CLOCKS + 0x38)
#define CLK_SYS_CTRL REG(CLOCKS + 0x3C)      /* SRC 0 (1: aux), AUXSRC 7:5 (0: pll_sys) */
#define CLK_SYS_SELECTED REG(CLOCKS + 0x44)
#define CLK_PERI_CTRL REG(CLOCKS + 0x48)     /* ENABLE 11, AUXSRC 7:5 (0: clk_sys) */

#define PLL_SYS 0x40028000u
#define PLL_CS REG(PLL_SYS + 0x0)            /* LOCK 31, REFDIV 5:0 */
#define PLL_PWR (PLL_SYS + 0x4)              /* PD 0, POSTDIVPD 3, VCOPD 5 */
#define PLL_FBDIV_INT REG(PLL_SYS + 0x8)
#define PLL_PRIM REG(PLL_SYS + 0xC)          /* POSTDIV1 18:16, POSTDIV2 14:12 */

#define IO_BANK0_GPIO_CTRL(pin) REG(0x40014004u + 8u * (pin))

#define XOSC_HZ 12000000u
#define FBDIV 125u                           /* 12 MHz x 125 = 1500 MHz VCO */
#define SYS_HZ (XOSC_HZ * FBDIV / 6u / 2u)

static void unreset(uint32_t bits) {
    CLR(RESETS_RESET) = bits;
    edgekit_wait_bits(&RESETS_DONE, bits, bits, "RESETS.RESET_DONE");
}

void edgekit_board_init(void) {
    XOSC_STARTUP = (XOSC_HZ / 1000u + 128u) / 256u;  /* about 1 ms */
    XOSC_CTRL = 0xAA0u | (0xFABu << 12);
    edgekit_wait_bits(&XOSC_STATUS, 1u << 31, 1u << 31, "XOSC_STATUS.STABLE");

    /* clk_sys off the PLL's aux path while it is programmed, clk_ref from the crystal */
    CLR(CLOCKS + 0x3C) = 1u;
    edgekit_wait_bits(&CLK_SYS_SELECTED, 1u, 1u, "CLK_SYS_SELECTED=clk_ref");
    CLK_REF_CTRL = 2u;
    edgekit_wait_bits(&CLK_REF_SELECTED, 1u << 2, 1u << 2, "CLK_REF_SELECTED=xosc");

    REG(RESETS_RESET + 0x2000u) = RESET_PLL_SYS;     /* a known state */
    unreset(RESET_PLL_SYS);
    PLL_CS = 1u;                                     /* REFDIV 1 */
    PLL_FBDIV_INT = FBDIV;
    CLR(PLL_PWR) = (1u << 0) | (1u << 5);            /* power up the PLL and its VCO */
    edgekit_wait_bits(&PLL_CS, 1u << 31, 1u << 31, "PLL_SYS_CS.LOCK");
    PLL_PRIM = (6u << 16) | (2u << 12);
    CLR(PLL_PWR) = 1u << 3;                          /* post dividers on */

    CLK_SYS_CTRL = (CLK_SYS_CTRL & ~(7u << 5)) | (0u << 5);  /* aux = pll_sys */
    SET(CLOCKS + 0x3C) = 1u;
    edgekit_wait_bits(&CLK_SYS_SELECTED, 1u << 1, 1u << 1, "CLK_SYS_SELECTED=aux");
    CLK_PERI_CTRL = (1u << 11) | (0u << 5);

    unreset(RESET_IO_BANK0 | RESET_PADS_BANK0 | RESET_UART0);
    IO_BANK0_GPIO_CTRL(0) = 2u;  /* UART0 TX */
    IO_BANK0_GPIO_CTRL(1) = 2u;  /* UART0 RX */
}

uint32_t edgekit_core_clock_hz(void) { return SYS_HZ; }
uint32_t edgekit_console_clock_hz(void) { return SYS_HZ; }
