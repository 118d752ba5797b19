/* The payload API: what the harness (main.c) needs from the work it measures.
 *
 * A payload is the self-test kernel today and a generated model later. It owns one static
 * arena (declared with EDGEKIT_ARENA so the linker script can bound and paint it), copies its
 * embedded test input from flash into the arena in setup, does the measured work in run, and
 * hands out its output tensors (which live in the arena). */
#ifndef EDGEKIT_PAYLOAD_H
#define EDGEKIT_PAYLOAD_H

#include <stdint.h>

/* Declare the payload's arena: bounded by __arena_start/__arena_end in the linker script. */
#define EDGEKIT_ARENA(name, bytes) \
    uint8_t name[(bytes)] __attribute__((section(".bss.edgekit_arena"), aligned(16), used))

/* Short name printed as the report's `payload` record ([a-z0-9_-], no spaces). */
extern const char edgekit_payload_name[];

/* Copy the embedded test input into the input tensor (not measured). */
void edgekit_payload_setup(void);

/* The measured work; 0 on success, else a status the harness exits with. */
int edgekit_payload_run(void);

uint32_t edgekit_payload_output_count(void);

/* Output tensor `index`: its bytes in memory order and their count. */
const uint8_t *edgekit_payload_output(uint32_t index, uint32_t *len);

#endif
