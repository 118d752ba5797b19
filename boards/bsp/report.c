#include "report.h"

#include "edgekit_bsp.h"

static uint32_t report_crc;
static uint32_t report_records;

/* Bitwise CRC-32/ISO-HDLC (reflected 0xEDB88320): no 1 KB table in flash. Pass 0 to start. */
uint32_t edgekit_crc32(uint32_t crc, const uint8_t *data, size_t len) {
    crc = ~crc;
    for (size_t i = 0; i < len; ++i) {
        crc ^= data[i];
        for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static void out_char(char c) {
    const uint8_t byte = (uint8_t)c;
    report_crc = edgekit_crc32(report_crc, &byte, 1);
    edgekit_console_putc(c);
}

static void out_str(const char *s) {
    while (*s) out_char(*s++);
}

static void out_hex8(uint8_t v) {
    static const char digits[] = "0123456789abcdef";
    out_char(digits[v >> 4]);
    out_char(digits[v & 0xFu]);
}

static void out_hex32(uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out_hex8((uint8_t)(v >> shift));
}

static void out_dec(uint32_t v) {
    char buf[10];
    int n = 0;
    do {
        buf[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    while (n) out_char(buf[--n]);
}

void edgekit_report_open(void) {
    report_crc = 0;
    report_records = 0;
    out_str("@@EDGEKIT-BEGIN v1\n");
}

static void key_eq(const char *key) {
    out_str(key);
    out_char('=');
    ++report_records;
}

void edgekit_report_str(const char *key, const char *value) {
    key_eq(key);
    out_str(value);
    out_char('\n');
}

void edgekit_report_u32(const char *key, uint32_t value) {
    key_eq(key);
    out_dec(value);
    out_char('\n');
}

void edgekit_report_bytes(const char *key, const uint8_t *data, size_t len) {
    key_eq(key);
    for (size_t i = 0; i < len; ++i) out_hex8(data[i]);
    out_char('\n');
    out_str(key);
    out_str("_crc32=");
    ++report_records;
    out_hex32(edgekit_crc32(0, data, len));
    out_char('\n');
}

void edgekit_report_close(void) {
    /* the end line is outside the CRC: write it straight to the console */
    static const char digits[] = "0123456789abcdef";
    const uint32_t crc = report_crc;
    edgekit_console_write("@@EDGEKIT-END records=");
    char buf[10];
    int n = 0;
    uint32_t v = report_records;
    do {
        buf[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    while (n) edgekit_console_putc(buf[--n]);
    edgekit_console_write(" crc32=");
    for (int shift = 28; shift >= 0; shift -= 4) edgekit_console_putc(digits[(crc >> shift) & 0xFu]);
    edgekit_console_putc('\n');
}
