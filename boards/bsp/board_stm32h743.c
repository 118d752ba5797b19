/* NUCLEO-H743ZI: 480 MHz (revision V silicon, VOS0) or 400 MHz (revision Y, VOS1) from the
 * 64 MHz HSI through PLL1, flash wait states for the AXI clock, L1 caches on, USART3 on the
 * ST-LINK virtual COM port (PD8 TX, PD9 RX).
 *
 * The HSI needs nothing from the board (the NUCLEO's 8 MHz HSE comes from the ST-LINK's MCO,
 * which solder bridges can remove). Register addresses and sequences from RM0433 (STM32H742/
 * 743/753/750 reference manual): power supply configuration and VOS0 entry (6.8.6, 6.6.2),
 * RCC PLL1 and kernel clocks (8.7), FLASH_ACR wait states by AXI clock and VOS (4.3.8 table 17),
 * DBGMCU_IDCODE revision (62.5.8). Board facts from UM2407 (VCP on PD8/PD9, AF7). */
#include "edgekit_bsp.h"
#include "stm32_gpio.h"
#include "cortex_m7_cache.h"

#define REG(addr) (*(volatile uint32_t *)(addr))

#define RCC 0x58024400u
#define RCC_CR REG(RCC + 0x000)         /* HSIRDY 2, PLL1ON 24, PLL1RDY 25 */
#define RCC_CFGR REG(RCC + 0x010)       /* SW 2:0, SWS 5:3 */
#define RCC_D1CFGR REG(RCC + 0x018)     /* HPRE 3:0, D1PPRE 6:4, D1CPRE 11:8 */
#define RCC_D2CFGR REG(RCC + 0x01C)     /* D2PPRE1 6:4, D2PPRE2 10:8 */
#define RCC_D3CFGR REG(RCC + 0x020)     /* D3PPRE 6:4 */
#define RCC_PLLCKSELR REG(RCC + 0x028)  /* PLLSRC 1:0, DIVM1 9:4 */
#define RCC_PLLCFGR REG(RCC + 0x02C)    /* PLL1VCOSEL 1, PLL1RGE 3:2, DIVP1EN 16 */
#define RCC_PLL1DIVR REG(RCC + 0x030)   /* DIVN1 8:0, DIVP1 15:9, DIVQ1 22:16, DIVR1 30:24 */
#define RCC_AHB4ENR REG(RCC + 0x0E0)    /* GPIODEN 3 */
#define RCC_APB1LENR REG(RCC + 0x0E8)   /* USART3EN 18 */
#define RCC_APB4ENR REG(RCC + 0x0F4)    /* SYSCFGEN 1 */
#define PWR_CSR1 REG(0x58024804u)       /* ACTVOSRDY 13 */
#define PWR_CR3 REG(0x5802480Cu)        /* BYPASS 0, LDOEN 1, SCUEN 2 */
#define PWR_D3CR REG(0x58024818u)       /* VOS 15:14, VOSRDY 13 */
#define SYSCFG_PWRCR REG(0x5800042Cu)   /* ODEN 0: VOS0 */
#define FLASH_ACR REG(0x52002000u)      /* LATENCY 3:0, WRHIGHFREQ 5:4 */
#define DBGMCU_IDCODE REG(0x5C001000u)  /* REV_ID 31:16: 0x1003 Y, 0x2003 V */
#define GPIOD 0x58020C00u

#define HSI_HZ 64000000u
#define PLL_M 4u   /* 16 MHz reference: PLL1RGE = 3 (8-16 MHz), wide VCO */
#define REV_Y 0x1003u

static uint32_t core_hz;

void edgekit_board_init(void) {
    const int rev_y = (DBGMCU_IDCODE >> 16) == REV_Y;
    /* PLL1: VCO = 16 MHz x N; P divides by 2. Revision Y tops out at 400 MHz (VOS1). */
    const uint32_t pll_n = rev_y ? 50u : 60u;
    core_hz = HSI_HZ / PLL_M * pll_n / 2u;

    /* supply: the LDO (the NUCLEO's default; this register is written once after reset) */
    PWR_CR3 = (PWR_CR3 & ~1u) | (1u << 1) | (1u << 2);
    edgekit_wait_bits(&PWR_CSR1, 1u << 13, 1u << 13, "PWR_CSR1.ACTVOSRDY");
    PWR_D3CR = (PWR_D3CR & ~(3u << 14)) | (3u << 14);  /* VOS1 */
    edgekit_wait_bits(&PWR_D3CR, 1u << 13, 1u << 13, "PWR_D3CR.VOSRDY");
    if (!rev_y) {
        RCC_APB4ENR |= 1u << 1;
        (void)RCC_APB4ENR;
        SYSCFG_PWRCR |= 1u;  /* VOS0: over-drive for 480 MHz */
        edgekit_wait_bits(&PWR_D3CR, 1u << 13, 1u << 13, "PWR_D3CR.VOSRDY (VOS0)");
    }

    edgekit_wait_bits(&RCC_CR, 1u << 2, 1u << 2, "RCC_CR.HSIRDY");
    RCC_PLLCKSELR = (RCC_PLLCKSELR & ~((0x3Fu << 4) | 3u)) | (PLL_M << 4);  /* source HSI */
    RCC_PLLCFGR = (RCC_PLLCFGR & ~(0xFu)) | (3u << 2) | (1u << 16);
    RCC_PLL1DIVR = (pll_n - 1u) | ((2u - 1u) << 9) | ((4u - 1u) << 16) | ((2u - 1u) << 24);
    RCC_CR |= 1u << 24;
    edgekit_wait_bits(&RCC_CR, 1u << 25, 1u << 25, "RCC_CR.PLL1RDY");

    /* AXI/AHB at half the core clock (240 or 200 MHz): 4 wait states (rev V, VOS0) or 3
     * (rev Y, VOS1), programming delay 2; read back before the switch */
    const uint32_t acr = rev_y ? (3u | (2u << 4)) : (4u | (2u << 4));
    FLASH_ACR = acr;
    edgekit_wait_bits(&FLASH_ACR, 0x3Fu, acr, "FLASH_ACR.LATENCY");

    /* D1CPRE /1, HPRE /2, every APB /2 (120 or 100 MHz) */
    RCC_D1CFGR = (8u << 0) | (4u << 4);
    RCC_D2CFGR = (4u << 4) | (4u << 8);
    RCC_D3CFGR = 4u << 4;
    RCC_CFGR = (RCC_CFGR & ~7u) | 3u;
    edgekit_wait_bits(&RCC_CFGR, 7u << 3, 3u << 3, "RCC_CFGR.SWS=PLL1");

    cortex_m7_caches_enable();

    /* USART3 (kernel clock: PCLK1, the RCC_D2CCIP2R reset value) on PD8/PD9, AF7 */
    RCC_AHB4ENR |= 1u << 3;
    RCC_APB1LENR |= 1u << 18;
    (void)RCC_APB1LENR;
    stm32_pin_alternate(GPIOD, 8, 7);
    stm32_pin_alternate(GPIOD, 9, 7);
}

uint32_t edgekit_core_clock_hz(void) { return core_hz; }
uint32_t edgekit_console_clock_hz(void) { return core_hz / 4u; }
