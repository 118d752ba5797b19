/* STM32F746G-DISCO: 216 MHz from the 25 MHz HSE crystal, over-drive, 7 flash wait states with
 * ART and prefetch, L1 caches on, USART1 on the ST-LINK virtual COM port (PA9 TX, PB7 RX).
 *
 * Register addresses and sequences from RM0385 (STM32F75xxx/F74xxx reference manual):
 * "Entering Over-drive mode" (5.1.4), "Relation between CPU clock frequency and flash memory
 * read time" (3.3.2, 2.7-3.6 V: 7 WS above 210 MHz), RCC (5.3), GPIO alternate function AF7
 * for USART1 (datasheet table 12). Board facts from UM1907 (25 MHz X2, VCP on PA9/PB7). */
#include "edgekit_bsp.h"
#include "stm32_gpio.h"
#include "cortex_m7_cache.h"

#define REG(addr) (*(volatile uint32_t *)(addr))

#define RCC 0x40023800u
#define RCC_CR REG(RCC + 0x00)        /* HSEON 16, HSERDY 17, PLLON 24, PLLRDY 25 */
#define RCC_PLLCFGR REG(RCC + 0x04)
#define RCC_CFGR REG(RCC + 0x08)      /* SW 1:0, SWS 3:2, PPRE1 12:10, PPRE2 15:13 */
#define RCC_AHB1ENR REG(RCC + 0x30)   /* GPIOAEN 0, GPIOBEN 1 */
#define RCC_APB1ENR REG(RCC + 0x40)   /* PWREN 28 */
#define RCC_APB2ENR REG(RCC + 0x44)   /* USART1EN 4 */
#define PWR_CR1 REG(0x40007000u)      /* VOS 15:14, ODEN 16, ODSWEN 17 */
#define PWR_CSR1 REG(0x40007004u)     /* ODRDY 16, ODSWRDY 17 */
#define FLASH_ACR REG(0x40023C00u)    /* LATENCY 3:0, PRFTEN 8, ARTEN 9 */
#define GPIOA 0x40020000u
#define GPIOB 0x40020400u

#define HSE_HZ 25000000u
#define PLL_M 25u   /* 1 MHz VCO input */
#define PLL_N 432u  /* 432 MHz VCO */
#define PLL_P 2u    /* 216 MHz SYSCLK */
#define PLL_Q 9u    /* 48 MHz USB/SDMMC clock */
#define SYSCLK_HZ (HSE_HZ / PLL_M * PLL_N / PLL_P)
#define APB2_HZ (SYSCLK_HZ / 2u)  /* 108 MHz: USART1's clock (max 108 MHz) */

void edgekit_board_init(void) {
    /* regulator scale 1 (needed above 180 MHz, with over-drive) */
    RCC_APB1ENR |= 1u << 28;
    (void)RCC_APB1ENR;  /* read back: the clock is on before PWR is written */
    PWR_CR1 = (PWR_CR1 & ~(3u << 14)) | (3u << 14);

    RCC_CR |= 1u << 16;
    edgekit_wait_bits(&RCC_CR, 1u << 17, 1u << 17, "RCC_CR.HSERDY");
    /* PLLM 5:0, PLLN 14:6, PLLP 17:16, PLLSRC 22, PLLQ 27:24; reserved bits keep their reset value */
    RCC_PLLCFGR = (RCC_PLLCFGR & ~0x0F437FFFu) | PLL_M | (PLL_N << 6) | (((PLL_P / 2u) - 1u) << 16) |
                  (1u << 22) | (PLL_Q << 24);
    RCC_CR |= 1u << 24;

    /* over-drive on while the PLL locks (RM0385 5.1.4) */
    PWR_CR1 |= 1u << 16;
    edgekit_wait_bits(&PWR_CSR1, 1u << 16, 1u << 16, "PWR_CSR1.ODRDY");
    PWR_CR1 |= 1u << 17;
    edgekit_wait_bits(&PWR_CSR1, 1u << 17, 1u << 17, "PWR_CSR1.ODSWRDY");
    edgekit_wait_bits(&RCC_CR, 1u << 25, 1u << 25, "RCC_CR.PLLRDY");

    /* wait states before the faster clock; the read-back makes sure they took effect */
    FLASH_ACR = 7u | (1u << 8) | (1u << 9);
    edgekit_wait_bits(&FLASH_ACR, 0xFu, 7u, "FLASH_ACR.LATENCY");

    /* AHB /1, APB1 /4 (54 MHz, max 54), APB2 /2 (108 MHz, max 108), then SYSCLK = PLL */
    RCC_CFGR = (RCC_CFGR & ~((7u << 10) | (7u << 13) | (0xFu << 4))) | (5u << 10) | (4u << 13);
    RCC_CFGR = (RCC_CFGR & ~3u) | 2u;
    edgekit_wait_bits(&RCC_CFGR, 3u << 2, 2u << 2, "RCC_CFGR.SWS=PLL");

    cortex_m7_caches_enable();

    /* USART1: PA9 TX, PB7 RX, AF7; the USART clock is PCLK2 (RCC_DCKCFGR2 reset value) */
    RCC_AHB1ENR |= (1u << 0) | (1u << 1);
    RCC_APB2ENR |= 1u << 4;
    (void)RCC_APB2ENR;
    stm32_pin_alternate(GPIOA, 9, 7);
    stm32_pin_alternate(GPIOB, 7, 7);
}

uint32_t edgekit_core_clock_hz(void) { return SYSCLK_HZ; }
uint32_t edgekit_console_clock_hz(void) { return APB2_HZ; }
