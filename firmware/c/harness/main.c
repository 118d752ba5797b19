/* The edgekit harness: set up the payload, run it between the measurement markers, then report
 * (docs/report-protocol.md) and exit with the payload's status.
 *
 * Board settings come from the generated edgekit_config.h (forced in with -include). */
#include "edgekit_bsp.h"
#include "edgekit_payload.h"
#include "report.h"

static void report_outputs(void) {
    const uint32_t count = edgekit_payload_output_count();
    uint32_t len = 0;
    if (count == 1) {
        const uint8_t *bytes = edgekit_payload_output(0, &len);
        edgekit_report_u32("output_bytes", len);
        edgekit_report_bytes("output", bytes, len);
        return;
    }
    edgekit_report_u32("output_count", count);
    for (uint32_t i = 0; i < count && i < 10; ++i) {
        char key[] = "output0";
        key[6] = (char)('0' + i);
        const uint8_t *bytes = edgekit_payload_output(i, &len);
        edgekit_report_bytes(key, bytes, len);
    }
}

int main(void) {
    edgekit_console_init();
    edgekit_payload_setup();
    edgekit_cycles_start();
    const uint32_t cycles_before = edgekit_cycles_read();
    edgekit_measure_begin();
    const int status = edgekit_payload_run();
    edgekit_measure_end();
    const uint32_t cycles = edgekit_cycles_read() - cycles_before;

    /* The stack figure covers everything up to here: freeze it (Unicorn hooks stop at this
     * marker) and scan at once with the stack-free assembly scanner. */
    edgekit_report_begin();
    edgekit_stack_scan();
    const uint32_t arena_used = edgekit_arena_scan();

    edgekit_report_open();
    edgekit_report_str("board", EDGEKIT_BOARD_ID);
    edgekit_report_str("payload", edgekit_payload_name);
    edgekit_report_u32("stack_size_bytes", (uint32_t)(__stack_top - __stack_bottom));
    edgekit_report_u32("stack_peak_bytes", edgekit_stack_peak_bytes);
    edgekit_report_u32("arena_bytes", (uint32_t)(__arena_end - __arena_start));
    edgekit_report_u32("arena_used_bytes", arena_used);
    edgekit_report_u32("instructions_marker", 1);
#ifdef EDGEKIT_HARDWARE
    edgekit_report_u32("clock_hz", edgekit_core_clock_hz());
#endif
#if defined(EDGEKIT_HAS_DWT) || defined(EDGEKIT_HAS_SYSTICK)
    edgekit_report_u32("cycles", cycles);
#else
    (void)cycles;
#endif
    if (status != 0) edgekit_report_u32("payload_status", (uint32_t)status);
    report_outputs();
    edgekit_report_close();
    return status;
}
