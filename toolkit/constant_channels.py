"""Output channels whose value is the same for every input, found from the constant weights.

A convolution channel whose requantisation maps every accumulator it can reach to one output
value computes nothing: its output is that constant. Quantized models carry such channels
(vww's MobileNet: 818 of its 1,496 CONV_2D channels, dead channels whose scale is so small
that every sum rounds to the zero point). The accumulator of output channel o is
``bias[o] + sum((x + input_offset) * (w + filter_offset))`` over its taps with every x in
[-128, 127] (a padding tap adds 0, which that range holds since the input offset is a negated
int8 zero point), so it lies between the sums of each term's smaller and larger end. The
requantisation (TFLite's MultiplyByQuantizedMultiplier, the output offset, the clamp) never
decreases with the accumulator for a non-negative multiplier, so where it gives the same value
at both ends it gives it for every input.

Such a channel whose constant is its clamped output offset gets a multiplier of 0 in the
firmware: every requantisation the kernels have (the fast forms with any right shift of 1 or
more, `edgekit.firmware.op_emitters.kernel_shifts` gives it 2; the exact one) then outputs the
clamped offset whatever the accumulator, and the kernels that see a pair of such channels skip
their multiply-accumulates (ek_conv.c). Bit-exact for every input; the reference interpreter
keeps the model's own multipliers.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edgekit import fixedpoint
from edgekit.ir import Graph, Op

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1

#: the ops whose channels are folded: ConvParams with per-output-channel requantisation
FOLDED_KINDS = ("CONV_2D", "DEPTHWISE_CONV_2D")


def _channel_weights(op: Op, graph: Graph, p) -> np.ndarray:
    """Each output channel's weights (plus the filter offset) as rows: [channels, taps]."""
    w = np.asarray(graph[op.inputs[1]].data, dtype=np.int64) + int(p.filter_offset)
    if op.kind == "CONV_2D":  # OHWI
        return w.reshape(w.shape[0], -1)
    return w.reshape(-1, w.shape[-1]).T  # [1, H, W, C * M]: channel c's taps


def constant_channels(op: Op, graph: Graph, p) -> np.ndarray:
    """Whether each output channel of ``op`` outputs its clamped output offset for every int8
    input (all False for an op this does not cover)."""
    if (op.kind not in FOLDED_KINDS or p.accumulator != "int32"
            or getattr(p, "rounding", "double") != "double"):
        return np.zeros(0, dtype=bool)
    rows = _channel_weights(op, graph, p)
    bias = op.inputs[2] if len(op.inputs) > 2 else None
    b = (np.zeros(rows.shape[0], dtype=np.int64) if bias is None
         else np.asarray(graph[bias].data, dtype=np.int64))
    # x_lo <= 0 <= x_hi (the offset negates an int8 zero point): a positive weight's term is
    # largest at x_hi, a negative one's at x_lo
    x_lo, x_hi = -128 + int(p.input_offset), 127 + int(p.input_offset)
    positive, negative = np.maximum(rows, 0).sum(axis=1), np.minimum(rows, 0).sum(axis=1)
    low = b + positive * x_lo + negative * x_hi
    high = b + positive * x_hi + negative * x_lo
    inside = (low >= INT32_MIN) & (high <= INT32_MAX)  # no wrap-around in the accumulator
    multipliers = np.asarray(p.multipliers, dtype=np.int64)
    shifts = np.asarray(p.shifts, dtype=np.int64)

    def output(acc):
        y = fixedpoint.multiply_by_quantized_multiplier(np.clip(acc, INT32_MIN, INT32_MAX),
                                                        multipliers, shifts)
        return np.clip(np.asarray(y, dtype=np.int64) + p.output_offset, p.act_min, p.act_max)

    at_low, at_high = output(low), output(high)
    offset = int(np.clip(p.output_offset, p.act_min, p.act_max))
    return inside & (multipliers >= 0) & (at_low == at_high) & (at_low == offset)


def constant_pair_macs(op: Op, graph: Graph, p) -> int:
    """The MACs of a 1x1 CONV_2D's pairs of output channels 2j, 2j + 1 that are both constant:
    the in-place 1x1 loops in assembly skip them (edgekit.kernel_costs prices that)."""
    constant = constant_channels(op, graph, p)
    if constant.size < 2:
        return 0
    pairs = constant[:constant.size // 2 * 2].reshape(-1, 2).all(axis=1)
    out = graph[op.outputs[0]]
    per_channel = int(np.prod(out.shape[:-1])) * int(np.prod(graph[op.inputs[1]].shape[1:]))
    return 2 * int(pairs.sum()) * per_channel


def fold_constant_channels(op: Op, graph: Graph, p):
    """``p`` with a multiplier of 0 on every `constant_channels` channel (``p`` itself when
    there is none)."""
    constant = constant_channels(op, graph, p)
    if not constant.any():
        return p
    multipliers = np.where(constant, 0, np.asarray(p.multipliers, dtype=np.int64))
    return dataclasses.replace(p, multipliers=multipliers)
