/* STM32 GPIO alternate-function set-up, the same register layout on the F7, H7 and L4+
 * (RM0385 / RM0433 / RM0432, "GPIO registers"): MODER at +0x00 (2 bits a pin, 0b10 alternate),
 * OSPEEDR at +0x08, AFRL/AFRH at +0x20/+0x24 (4 bits a pin). */
#ifndef STM32_GPIO_H
#define STM32_GPIO_H

#include <stdint.h>

#define STM32_GPIO_REG(addr) (*(volatile uint32_t *)(addr))

/* `pin` of the port at `port` to alternate function `af`, high speed (the console's TX/RX) */
static inline void stm32_pin_alternate(uint32_t port, uint32_t pin, uint32_t af) {
    STM32_GPIO_REG(port + 0x00) = (STM32_GPIO_REG(port + 0x00) & ~(3u << (2 * pin))) | (2u << (2 * pin));
    STM32_GPIO_REG(port + 0x08) |= 2u << (2 * pin);
    const uint32_t afr = port + (pin < 8 ? 0x20u : 0x24u);
    const uint32_t shift = 4u * (pin & 7u);
    STM32_GPIO_REG(afr) = (STM32_GPIO_REG(afr) & ~(0xFu << shift)) | (af << shift);
}

#endif
