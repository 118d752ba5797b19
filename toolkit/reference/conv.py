"""CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED: TFLite's integer reference kernels.

Arithmetic (``reference_integer_ops::ConvPerChannel`` / ``DepthwiseConvPerChannel`` /
``FullyConnected``): ``acc = sum((x - x_zp) * (w - w_zp)) + bias``, then
``MultiplyByQuantizedMultiplier(acc, multiplier[c], shift[c]) + y_zp``, clamped to the fused
activation range. Out-of-bounds taps are skipped (equivalent to padding with the input zero
point); only the top/left padding matters, the output shape fixes the rest, as in TFLite.

int8 and int4 weights (int4 unpacked in the IR) share the int8 kernel, as TFLite Micro unpacks
int4 filters before running it. 16x8 (int16 activations, int8 weights): the accumulator type is
the bias type; an int64 bias selects the int64 ``MultiplyByQuantizedMultiplier`` (16-bit
reduced multiplier), an int32 or absent bias the int32 one.

Multipliers (``prepare_*``): ``double(in_scale) * double(w_scale[c]) / double(out_scale)`` per
output channel, the float32 scales widened to double before any arithmetic. This holds for the
per-tensor fully connected too: some TFLite sources multiply the two scales in float32 there,
but the TFLite Micro we test against does not (tests/test_interpreter_ops.py has crafted cases
where the two derivations give different bytes).

The sums are computed as float64 matrix products: every partial sum is an integer far below
2^53, so they are exact, and BLAS makes a VWW inference take milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekit import fixedpoint as fp
from edgekit.errors import UnsupportedError
from edgekit.ir import DType, Graph, Op
from edgekit.reference.common import (Prepared, activation_range, require_dtype, require_quant,
                                      scale_f32, scales_f32, tensor, where, zero_point)

_ACTIVATION_TYPES = (DType.INT8, DType.INT16)
_WEIGHT_TYPES = (DType.INT8, DType.INT4)
_BIAS_TYPES = (DType.INT32, DType.INT64)


@dataclass(frozen=True, eq=False)
class ConvParams(Prepared):
    """Prepared parameters of a (depthwise) convolution or a fully-connected layer."""

    input_offset: int  # -input zero point
    filter_offset: int  # -filter zero point (0: TFLite weights are symmetric)
    output_offset: int  # output zero point
    multipliers: np.ndarray  # int64 [O] Q0.31 multipliers (one per output channel)
    shifts: np.ndarray  # int64 [O] exponents (> 0: left shift)
    act_min: int
    act_max: int
    accumulator: str  # "int32" or "int64": which MultiplyByQuantizedMultiplier
    out_shape: tuple[int, ...]
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, bottom, left, right
    depth_multiplier: int = 1
    #: "double": TFLite Micro's MultiplyByQuantizedMultiplier (rounding doubling high multiply,
    #: then rounding shift). "single": the TFLITE_SINGLE_ROUNDING formula, which reproduces
    #: LiteRT's reference FULLY_CONNECTED (see docs/oracles.md); never the default.
    rounding: str = "double"


def _check_common(op: Op, graph: Graph):
    x, w = graph[op.inputs[0]], graph[op.inputs[1]]
    bias = tensor(graph, op.inputs[2] if len(op.inputs) > 2 else None)
    out = graph[op.outputs[0]]
    require_dtype(op, x, _ACTIVATION_TYPES, "input")
    require_dtype(op, out, (x.dtype,), "output")
    require_dtype(op, w, _WEIGHT_TYPES, "filter")
    for t, role in ((x, "input"), (w, "filter"), (out, "output")):
        require_quant(op, t, role)
    if not w.is_constant:
        raise UnsupportedError(f"{where(op)}: filter {w.name!r} must be a constant")
    if bias is not None:
        require_dtype(op, bias, _BIAS_TYPES, "bias")
        if not bias.is_constant:
            raise UnsupportedError(f"{where(op)}: bias {bias.name!r} must be a constant")
    if x.dtype == DType.INT16 and zero_point(x) != 0:
        raise UnsupportedError(f"{where(op)}: int16 input {x.name!r} must have zero point 0")
    accumulator = "int64" if bias is not None and bias.dtype == DType.INT64 else "int32"
    return x, w, bias, out, accumulator


def _per_channel_multipliers(op: Op, graph: Graph, channels: int):
    """``PopulateConvolutionQuantizationParams``: double(in) * double(w[c]) / double(out)."""
    x, w, out = graph[op.inputs[0]], graph[op.inputs[1]], graph[op.outputs[0]]
    w_scales = scales_f32(w).astype(np.float64)
    if w_scales.size not in (1, channels):
        raise UnsupportedError(f"{where(op)}: filter {w.name!r} has {w_scales.size} scales for"
                               f" {channels} output channels")
    w_scales = np.broadcast_to(w_scales, (channels,))
    real = float(scale_f32(x)) * w_scales / float(scale_f32(out))
    return fp.quantize_multiplier(real)


def prepare_conv(op: Op, graph: Graph) -> ConvParams:
    x, w, bias, out, accumulator = _check_common(op, graph)
    depthwise = op.kind == "DEPTHWISE_CONV_2D"
    if len(x.shape) != 4 or len(w.shape) != 4 or len(out.shape) != 4:
        raise UnsupportedError(f"{where(op)}: expects 4-D input/filter/output, got {x.shape},"
                               f" {w.shape}, {out.shape}")
    channels = out.shape[3]
    if depthwise:
        multiplier = int(op.attrs.get("depth_multiplier", 1) or 1)
        if w.shape[3] != channels or x.shape[3] * multiplier != channels:
            raise UnsupportedError(f"{where(op)}: filter {w.shape} / depth_multiplier {multiplier}"
                                   f" do not match input {x.shape} and output {out.shape}")
    else:
        multiplier = 1
        if w.shape[0] != channels or w.shape[3] != x.shape[3]:
            raise UnsupportedError(f"{where(op)}: filter {w.shape} does not match input {x.shape}"
                                   f" and output {out.shape}")
    multipliers, shifts = _per_channel_multipliers(op, graph, channels)
    act_min, act_max = activation_range(op.attrs.get("activation", "NONE"), out)
    return ConvParams(
        kind=op.kind, out_dtype=out.dtype, input_offset=-zero_point(x),
        filter_offset=-zero_point(w), output_offset=zero_point(out), multipliers=multipliers,
        shifts=shifts, act_min=act_min, act_max=act_max, accumulator=accumulator,
        out_shape=out.shape, stride=tuple(op.attrs.get("stride", (1, 1))),
        dilation=tuple(op.attrs.get("dilation", (1, 1))),
        pad=tuple(op.attrs.get("pad", (0, 0, 0, 0))), depth_multiplier=multiplier)


def prepare_fully_connected(op: Op, graph: Graph) -> ConvParams:
    x, w, bias, out, accumulator = _check_common(op, graph)
    if len(w.shape) != 2:
        raise UnsupportedError(f"{where(op)}: filter {w.name!r} must be 2-D [N, K], got {w.shape}")
    units, depth = w.shape
    if x.size % depth or out.size != (x.size // depth) * units:
        raise UnsupportedError(f"{where(op)}: input {x.shape} / filter {w.shape} / output"
                               f" {out.shape} do not match")
    if w.quant.per_channel and (w.dtype == DType.INT4 or x.dtype != DType.INT8):
        raise UnsupportedError(f"{where(op)}: per-channel weights need int8 input and int8"
                               " weights (as in TFLite Micro)")
    multipliers, shifts = _per_channel_multipliers(op, graph, units)
    act_min, act_max = activation_range(op.attrs.get("activation", "NONE"), out)
    return ConvParams(
        kind=op.kind, out_dtype=out.dtype, input_offset=-zero_point(x),
        filter_offset=-zero_point(w), output_offset=zero_point(out), multipliers=multipliers,
        shifts=shifts, act_min=act_min, act_max=act_max, accumulator=accumulator,
        out_shape=out.shape)


# --- kernels ------------------------------------------------------------------------------------

def _requantize(acc: np.ndarray, p: ConvParams) -> np.ndarray:
    """Accumulator -> output integers: multiplier/shift per channel (last axis), offset, clamp."""
    if p.accumulator == "int64":
        scaled = fp.multiply_by_quantized_multiplier_int64(acc, p.multipliers, p.shifts)
    elif p.rounding == "single":
        scaled = fp.multiply_by_quantized_multiplier_single_rounding(
            fp.wrap_int32(acc), p.multipliers, p.shifts)
    else:
        scaled = fp.multiply_by_quantized_multiplier(fp.wrap_int32(acc), p.multipliers, p.shifts)
    return np.clip(scaled + p.output_offset, p.act_min, p.act_max).astype(p.out_dtype.numpy)


def window_view(x: np.ndarray, kernel: tuple[int, int], stride, dilation, pad_top: int,
                pad_left: int, out_hw: tuple[int, int], fill) -> np.ndarray:
    """[N, OH, OW, KH, KW, C] view of the NHWC input under every output position's window.

    Pads with ``fill`` on the top/left by the given amounts and on the bottom/right by whatever
    the output size needs (TFLite derives the bottom/right from the output shape).
    """
    n, h, w, c = x.shape
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    need_h = (oh - 1) * sh + (kh - 1) * dh + 1
    need_w = (ow - 1) * sw + (kw - 1) * dw + 1
    bottom = max(0, need_h - h - pad_top)
    right = max(0, need_w - w - pad_left)
    xp = np.pad(x, ((0, 0), (pad_top, bottom), (pad_left, right), (0, 0)), constant_values=fill)
    sn, shh, sww, sc = xp.strides
    return np.lib.stride_tricks.as_strided(
        xp, shape=(n, oh, ow, kh, kw, c),
        strides=(sn, shh * sh, sww * sw, shh * dh, sww * dw, sc), writeable=False)


def _with_bias(acc: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    acc = np.rint(acc).astype(np.int64)
    return acc if bias is None else acc + bias.astype(np.int64)


def conv2d(p: ConvParams, inputs: list) -> np.ndarray:
    """CONV_2D: inputs [x NHWC, w OHWI, bias or None]."""
    x, w, bias = (list(inputs) + [None])[:3]
    o, kh, kw, ci = w.shape
    _, oh, ow, _ = p.out_shape
    xz = x.astype(np.float64) + p.input_offset
    win = window_view(xz, (kh, kw), p.stride, p.dilation, p.pad[0], p.pad[2], (oh, ow), 0.0)
    cols = win.reshape(-1, kh * kw * ci)
    wf = (w.astype(np.float64) + p.filter_offset).reshape(o, -1)
    acc = _with_bias((cols @ wf.T).reshape(p.out_shape), bias)
    return _requantize(acc, p)


def depthwise_conv2d(p: ConvParams, inputs: list) -> np.ndarray:
    """DEPTHWISE_CONV_2D: inputs [x NHWC, w 1HW(C*m), bias or None]; out channel = c*m + j."""
    x, w, bias = (list(inputs) + [None])[:3]
    _, kh, kw, _ = w.shape
    _, oh, ow, _ = p.out_shape
    xz = x.astype(np.float64) + p.input_offset
    if p.depth_multiplier > 1:
        xz = np.repeat(xz, p.depth_multiplier, axis=3)
    win = window_view(xz, (kh, kw), p.stride, p.dilation, p.pad[0], p.pad[2], (oh, ow), 0.0)
    wf = w[0].astype(np.float64) + p.filter_offset
    acc = np.einsum("nyxijc,ijc->nyxc", win, wf, optimize=True)
    return _requantize(_with_bias(acc, bias), p)


def fully_connected(p: ConvParams, inputs: list) -> np.ndarray:
    """FULLY_CONNECTED: inputs [x (..., K), w [N, K], bias or None]."""
    x, w, bias = (list(inputs) + [None])[:3]
    units, depth = w.shape
    xz = x.astype(np.float64).reshape(-1, depth) + p.input_offset
    wf = w.astype(np.float64) + p.filter_offset
    acc = _with_bias(xz @ wf.T, bias)
    return _requantize(acc, p).reshape(p.out_shape)


PREPARE = {"CONV_2D": prepare_conv, "DEPTHWISE_CONV_2D": prepare_conv,
           "FULLY_CONNECTED": prepare_fully_connected}
KERNELS = {"CONV_2D": conv2d, "DEPTHWISE_CONV_2D": depthwise_conv2d,
           "FULLY_CONNECTED": fully_connected}
