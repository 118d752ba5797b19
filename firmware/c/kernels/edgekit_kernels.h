/* edgekit kernels: the one header generated firmware includes.
 *
 * Conventions shared by every kernel (ek_*.c in this folder):
 *   - C99, <stdint.h>/<stddef.h> only; no malloc, no libc beyond memcpy/memset; no floats
 *     except in QUANTIZE / DEQUANTIZE and float ops.
 *   - Names ek_<op>_<dtype>, e.g. ek_add_s8, ek_conv2d_s8, ek_softmax_s8.
 *   - Arguments: (const <op>_params *p, inputs..., outputs..., scratch...). The params struct
 *     holds shapes, strides, pads, zero-point offsets, clamp bounds and multipliers/shifts as
 *     edgekit.reference.prepare(op, graph) computes them; the generator emits it static const.
 *     Field names follow the Python Prepared dataclass fields where one exists.
 *   - Tensors are NHWC with batch 1 (the generator rejects other batch sizes). Shapes in
 *     params are int32_t; element counts are int32_t (an MCU arena is far below 2^31 bytes).
 *   - Requantisation only through ek_fixedpoint.h (bit-exact with edgekit.fixedpoint).
 *   - Pointers: arena tensors are 4-byte aligned (the planner guarantees it), weights may be
 *     emitted 4-byte aligned; kernels assume nothing beyond that. Whether an output may alias
 *     an input (in-place) is stated at the top of each kernel header, per function.
 *   - Kernels return void: every user error is caught by the generator, in Python.
 */
#ifndef EDGEKIT_KERNELS_H
#define EDGEKIT_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "ek_fixedpoint.h"

/* Element-wise (ADD, MUL, RELU, RELU6, HARD_SWISH, QUANTIZE, DEQUANTIZE). */
#include "ek_elementwise.h"
/* AVERAGE_POOL_2D, MAX_POOL_2D, MEAN. */
#include "ek_pool.h"
/* SOFTMAX, LOGISTIC (gemmlowp fixed-point exp / logistic). */
#include "ek_softmax.h"
/* PAD, CONCATENATION, RESHAPE (copy). */
#include "ek_misc.h"
/* LAYER_NORM, RMS_NORM, SILU (edgekit's own ops). */
#include "ek_norm.h"
/* CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED (engineer F2). */
#include "ek_conv.h"
/* BATCH_MATMUL, TRANSPOSE, GATHER, GELU (lookup table). */
#include "ek_transformer.h"

#endif
