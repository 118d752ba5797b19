/* RP2040 second-stage boot loader for the Raspberry Pi Pico's QSPI flash (W25Q16JV).
 *
 * The boot ROM copies the first 256 bytes of flash to SRAM at 0x20041F00, checks their CRC-32
 * (polynomial 0x04C11DB7, initial value 0xFFFFFFFF, no reflection, no final XOR) against the
 * last 4, and runs them. This stage sets the XIP SSI to serial reads with the 03h command
 * (every SPI NOR flash supports it; fine up to 50 MHz, and the SSI runs at clk_sys / 4, so at
 * most 31.25 MHz at 125 MHz), then enters the firmware through its vector table at
 * 0x10000100. RP2040 datasheet 2.8.1 (boot sequence), 4.10 (SSI). The CRC word is written
 * after linking (edgekit.firmware.boot2; the Makefile runs it as its last step).
 * Position-independent: linked at 0x10000000, run at 0x20041F00. */
    .syntax unified
    .cpu cortex-m0plus
    .thumb

    .section .boot2, "ax", %progbits
    .global edgekit_boot2
    .thumb_func
edgekit_boot2:
    ldr r3, =0x18000000        /* XIP_SSI */
    movs r1, #0
    str r1, [r3, #0x08]        /* SSIENR = 0: configuration needs the SSI disabled */
    movs r1, #4
    str r1, [r3, #0x14]        /* BAUDR = 4: SCK = clk_sys / 4 */
    ldr r1, =((31 << 16) | (3 << 8))
    str r1, [r3, #0x00]        /* CTRLR0: 32-bit frames, EEPROM read mode, standard SPI */
    movs r1, #0
    str r1, [r3, #0x04]        /* CTRLR1: NDF = 0, one frame per XIP access */
    ldr r1, =((0x03 << 24) | (2 << 8) | (6 << 2))
    ldr r2, =0xF4
    str r1, [r3, r2]           /* SPI_CTRLR0: command 03h, 8-bit command, 24-bit address */
    movs r1, #1
    str r1, [r3, #0x08]        /* SSIENR = 1: XIP on */

    ldr r0, =0x10000100        /* the firmware's vector table, after this stage */
    ldr r1, =0xE000ED08
    str r0, [r1]               /* VTOR */
    ldmia r0!, {r1, r2}
    msr msp, r1
    bx r2
    .pool

    .balign 4
    .space 252 - (. - edgekit_boot2), 0
    .word 0                    /* CRC-32 of the 252 bytes above, written after linking */
