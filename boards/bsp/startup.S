/* Reset handler: FPU on, .data copied, .bss zeroed, board set up, stack and arena painted,
 * then main().
 *
 * Written in assembly so that nothing here uses the stack before it is painted and no
 * compiler-generated FP/MVE instruction runs before the FPU is enabled. Thumb-1 only, so the
 * same file serves ARMv6-M (Cortex-M0+) and ARMv7-M/ARMv8-M. */
    .syntax unified
    .thumb

    .section .text.Reset_Handler, "ax", %progbits
    .global Reset_Handler
    .type Reset_Handler, %function
    .thumb_func
Reset_Handler:
    ldr r0, =__stack_top
    mov sp, r0
#ifdef EDGEKIT_HAS_FPU
    /* CPACR: full access to CP10/CP11 (FPU, and MVE on the M55) */
    ldr r0, =0xE000ED88
    ldr r1, [r0]
    ldr r2, =0x00F00000
    orrs r1, r2
    str r1, [r0]
    dsb
    isb
#endif
    /* copy .data from its load address in flash */
    ldr r0, =__data_start
    ldr r1, =__data_end
    ldr r2, =__data_load
1:  cmp r0, r1
    bhs 2f
    ldr r3, [r2]
    str r3, [r0]
    adds r0, #4
    adds r2, #4
    b 1b
2:  /* zero .bss (the arena included, when it lives there) */
    ldr r0, =__bss_start
    ldr r1, =__bss_end
    movs r3, #0
3:  cmp r0, r1
    bhs 4f
    str r3, [r0]
    adds r0, #4
    b 3b
4:  /* clocks, caches and console pins (board_<bsp>.c on hardware builds; a no-op otherwise).
     * It runs before the painting, so the stack it uses is painted over and never measured. */
    bl edgekit_board_init
    /* paint the arena and then the whole stack (word-aligned, 8-byte multiples by the linker) */
    ldr r3, =0xA5A5A5A5
    ldr r0, =__arena_start
    ldr r1, =__arena_end
5:  cmp r0, r1
    bhs 6f
    str r3, [r0]
    adds r0, #4
    b 5b
6:  ldr r0, =__stack_bottom
    ldr r1, =__stack_top
7:  cmp r0, r1
    bhs 8f
    str r3, [r0]
    adds r0, #4
    b 7b
8:  bl edgekit_stack_paint_done
    bl main
    bl edgekit_exit
    .size Reset_Handler, . - Reset_Handler
    .pool

/* void edgekit_stack_scan(void): leaf, r0-r3 only, no memory writes but the result. */
    .section .text.edgekit_stack_scan, "ax", %progbits
    .global edgekit_stack_scan
    .type edgekit_stack_scan, %function
    .thumb_func
edgekit_stack_scan:
    ldr r0, =__stack_bottom
    ldr r1, =__stack_top
    movs r3, #0xA5
1:  cmp r0, r1
    bhs 2f
    ldrb r2, [r0]
    cmp r2, r3
    bne 2f
    adds r0, #1
    b 1b
2:  subs r0, r1, r0
    ldr r1, =edgekit_stack_peak_bytes
    str r0, [r1]
    bx lr
    .size edgekit_stack_scan, . - edgekit_stack_scan
    .pool
