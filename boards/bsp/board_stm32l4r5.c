/* NUCLEO-L4R5ZI: 120 MHz in range 1 boost mode from the HSI16 through the main PLL, 5 flash
 * wait states, LPUART1 on the ST-LINK virtual COM port (PG7 TX, PG8 RX).
 *
 * Register addresses and sequences from RM0432 (STM32L4+ reference manual): range 1 boost mode
 * and the AHB /2 step when going above 80 MHz (5.1.8), flash wait states by HCLK in
 * range 1 boost (3.3.3: 5 WS up to 120 MHz), main PLL (6.4.4), PG[15:2] on the VDDIO2 supply
 * that PWR_CR2.IOSV must declare valid (5.4.2). Board facts from UM2179 (VCP on PG7/PG8, AF8). */
#include "edgekit_bsp.h"
#include "stm32_gpio.h"

#define REG(addr) (*(volatile uint32_t *)(addr))

#define RCC 0x40021000u
#define RCC_CR REG(RCC + 0x00)        /* HSION 8, HSIRDY 10, PLLON 24, PLLRDY 25 */
#define RCC_CFGR REG(RCC + 0x08)      /* SW 1:0, SWS 3:2, HPRE 7:4 */
#define RCC_PLLCFGR REG(RCC + 0x0C)   /* PLLSRC 1:0, PLLM 7:4, PLLN 14:8, PLLREN 24, PLLR 26:25 */
#define RCC_AHB2ENR REG(RCC + 0x4C)   /* GPIOGEN 6 */
#define RCC_APB1ENR1 REG(RCC + 0x58)  /* PWREN 28 */
#define RCC_APB1ENR2 REG(RCC + 0x5C)  /* LPUART1EN 0 */
#define PWR_CR1 REG(0x40007000u)      /* VOS 10:9 */
#define PWR_CR2 REG(0x40007004u)      /* IOSV 9 */
#define PWR_SR2 REG(0x40007014u)      /* VOSF 10 */
#define PWR_CR5 REG(0x40007080u)      /* R1MODE 8: 0 = boost */
#define FLASH_ACR REG(0x40022000u)    /* LATENCY 3:0 */
#define GPIOG 0x48001800u

#define HSI16_HZ 16000000u
#define PLL_N 15u  /* 240 MHz VCO from 16 MHz (PLLM /1) */
#define SYSCLK_HZ (HSI16_HZ * PLL_N / 2u)

void edgekit_board_init(void) {
    /* range 1 normal to boost mode (RM0432 5.1.8): HCLK /2 first, then R1MODE cleared, wait
     * states, the switch, at least 1 us, and HCLK /1 */
    RCC_CFGR = (RCC_CFGR & ~(0xFu << 4)) | (8u << 4);
    RCC_APB1ENR1 |= 1u << 28;
    (void)RCC_APB1ENR1;
    PWR_CR1 = (PWR_CR1 & ~(3u << 9)) | (1u << 9);  /* range 1 (the reset value) */
    edgekit_wait_bits(&PWR_SR2, 1u << 10, 0, "PWR_SR2.VOSF");
    PWR_CR5 &= ~(1u << 8);

    RCC_CR |= 1u << 8;
    edgekit_wait_bits(&RCC_CR, 1u << 10, 1u << 10, "RCC_CR.HSIRDY");
    RCC_PLLCFGR = 2u | (0u << 4) | (PLL_N << 8) | (1u << 24) | (0u << 25);  /* HSI16, R /2 */
    RCC_CR |= 1u << 24;
    edgekit_wait_bits(&RCC_CR, 1u << 25, 1u << 25, "RCC_CR.PLLRDY");

    FLASH_ACR = (FLASH_ACR & ~0xFu) | 5u;
    edgekit_wait_bits(&FLASH_ACR, 0xFu, 5u, "FLASH_ACR.LATENCY");

    RCC_CFGR = (RCC_CFGR & ~3u) | 3u;
    edgekit_wait_bits(&RCC_CFGR, 3u << 2, 3u << 2, "RCC_CFGR.SWS=PLL");
    for (volatile uint32_t i = 0; i < 120u; ++i) {}  /* >= 1 us at 60 MHz HCLK */
    RCC_CFGR &= ~(0xFu << 4);

    /* LPUART1 (clock: PCLK1 = 120 MHz, RCC_CCIPR reset value) on PG7/PG8, AF8, VDDIO2 valid */
    PWR_CR2 |= 1u << 9;
    RCC_AHB2ENR |= 1u << 6;
    RCC_APB1ENR2 |= 1u;
    (void)RCC_APB1ENR2;
    stm32_pin_alternate(GPIOG, 7, 8);
    stm32_pin_alternate(GPIOG, 8, 8);
}

uint32_t edgekit_core_clock_hz(void) { return SYSCLK_HZ; }
uint32_t edgekit_console_clock_hz(void) { return SYSCLK_HZ; }
