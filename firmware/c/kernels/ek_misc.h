/* Data-movement kernels: PAD, CONCATENATION, RESHAPE, SLICE, INSERT_TILE. No arithmetic, only
 * layout.
 *
 * Semantics: edgekit.reference.shape: PAD fills with the output zero point (TFLite's default
 * for quantized tensors); CONCATENATION copies without rescaling (the generator has checked
 * that every input has the output's quantization); RESHAPE copies the bytes.
 *
 * In place: RESHAPE may run with out == in (nothing to do) or any overlap (memmove); under the
 * planner's reshape_view mode the generator emits no call at all. PAD and CONCATENATION
 * outputs must not alias their inputs.
 *
 * SLICE and INSERT_TILE (patch schedules) are one box copy, ek_copy_rows: `rows` runs of
 * `row_bytes` contiguous bytes, each `src_stride` apart in the source and `dst_stride` apart in
 * the destination (a box of whole pixels of an NHWC tensor is one run per image row). Under
 * the planner's tile_insert mode the destination is the base feature map itself; the source
 * never overlaps it.
 */
#ifndef EK_MISC_H
#define EK_MISC_H

#include <stdint.h>

#define EK_PAD_DIMS 4

/* Shapes right-aligned into EK_PAD_DIMS dimensions (leading 1s, 0 padding). */
typedef struct {
    int32_t in_shape[EK_PAD_DIMS];
    int32_t out_shape[EK_PAD_DIMS];
    int32_t before[EK_PAD_DIMS];   /* elements of padding before each dimension */
    int32_t pad_value;             /* the output zero point */
} ek_pad_params;

/* One input of a CONCATENATION, viewed as [outer, axis * inner] blocks of bytes: the op is one
 * ek_concatenation_copy call per input, in input order. */
typedef struct {
    int32_t outer;          /* product of the dimensions before the axis */
    int32_t in_block;       /* bytes of this input per outer index: axis_size * inner * elem */
    int32_t out_block;      /* bytes of the output per outer index */
    int32_t out_offset;     /* bytes of the earlier inputs within an output block */
} ek_concatenation_params;

typedef struct {
    int32_t nbytes;
} ek_reshape_params;

typedef struct {
    int32_t rows;
    int32_t row_bytes;
    int32_t src_offset;   /* bytes from the source pointer to the first run */
    int32_t src_stride;
    int32_t dst_offset;   /* bytes from the destination pointer to the first run */
    int32_t dst_stride;
} ek_copy_rows_params;

void ek_pad_s8(const ek_pad_params *p, const int8_t *in, int8_t *out);
void ek_pad_s16(const ek_pad_params *p, const int16_t *in, int16_t *out);
void ek_concatenation_copy(const ek_concatenation_params *p, const void *in, void *out);
void ek_reshape(const ek_reshape_params *p, const void *in, void *out);
void ek_copy_rows(const ek_copy_rows_params *p, const void *src, void *dst);

#endif
