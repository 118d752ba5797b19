/* The report library: writes one report in the format of docs/report-protocol.md.
 *
 * Every byte from the start of the @@EDGEKIT-BEGIN line up to the newline before @@EDGEKIT-END
 * runs through a CRC-32 (zlib's); the end line carries it and the record count. */
#ifndef EDGEKIT_REPORT_H
#define EDGEKIT_REPORT_H

#include <stddef.h>
#include <stdint.h>

uint32_t edgekit_crc32(uint32_t crc, const uint8_t *data, size_t len);

void edgekit_report_open(void);
void edgekit_report_str(const char *key, const char *value);
void edgekit_report_u32(const char *key, uint32_t value);
/* `key`=hex bytes, then `key`_crc32=CRC of the bytes */
void edgekit_report_bytes(const char *key, const uint8_t *data, size_t len);
void edgekit_report_close(void);

#endif
