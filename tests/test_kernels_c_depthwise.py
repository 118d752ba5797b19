"""The in-place depthwise kernel's ring path (firmware/c/kernels/ek_conv_depthwise.c) against the
reference, byte for byte: where the ring lives (scratch plane, stack buffer, or the plane-copy
fallback), the order check, padding through zero-point bytes, and the one-multiply-add
requantisation on the multipliers, shifts and accumulators where its proof is tight.

The C library, its ctypes mirror and the random-graph checks are those of
tests/test_kernels_c_conv.py (portable and emulated-DSP builds).
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

import graph_builders as gb
from edgekit import fixedpoint
from test_kernels_c_conv import ConvParamsC, _i32, _ptr, check_graph, libs  # noqa: F401

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


@pytest.mark.parametrize("hw", [(1, 1), (2, 2), (3, 3), (2, 5), (4, 3), (6, 6), (25, 5),
                                (5, 25), (2, 40), (13, 12)])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("channels", [5, 8])
def test_ring_3x3_shapes(libs, hw, stride, padding, channels):
    """3x3 windows on planes whose ring fits the scratch plane (6x6, 25x5, 13x12), only the stack
    buffer (3x3, 2x2), or neither (2x40: the plane kernel), odd and even widths (SIMD tails);
    8 channels take the four-channel ring (inplace_quad) on DSP cores."""
    if padding == "VALID" and min(hw) < 3:
        pytest.skip("VALID needs the 3x3 window inside the input")
    rng = np.random.default_rng(hw[0] * 100 + hw[1] + 7 * stride + channels)
    graph = gb.depthwise_conv2d(rng, in_shape=(1, *hw, channels), kernel=(3, 3),
                                stride=(stride, stride), padding=padding)
    _, oh, ow, _ = graph["y"].shape
    if oh * ow > hw[0] * hw[1]:
        pytest.skip("not an in-place shape")
    check_graph(libs, graph, rng, inplace=True)


@pytest.mark.parametrize("activation", ["NONE", "RELU", "RELU6"])
@pytest.mark.parametrize("kernel, stride", [((3, 3), (1, 1)), ((3, 3), (2, 2)), ((3, 3), (1, 2)),
                                            ((3, 3), (2, 1)), ((5, 5), (1, 1)), ((2, 4), (3, 2)),
                                            ((1, 1), (1, 1))])
@pytest.mark.parametrize("channels", [6, 12])
def test_ring_windows_and_clamps(libs, activation, kernel, stride, channels):
    """Generic ring rows (any window up to 25 taps, any stride) and the 3x3 rows, with the clamp
    at the int8 range (ssat) or at an activation's bounds; 12 channels: the four-channel ring
    for 3x3 windows clamped at the int8 range."""
    rng = np.random.default_rng(sum(kernel) * 10 + sum(stride) + len(activation) + channels)
    graph = gb.depthwise_conv2d(rng, in_shape=(1, 10, 9, channels), kernel=kernel,
                                stride=stride, padding="SAME", activation=activation)
    check_graph(libs, graph, rng, inplace=True)


def _run_pointwise(lib, x, weights, bias, multipliers, shifts, input_offset, output_offset,
                   act_min, act_max, k=1) -> np.ndarray:
    """The in-place kernel as a 1x1 depthwise layer on x [h, w, c] with explicit params; k=3: a
    3x3 SAME layer whose weights are 0 but the centre tap's (`weights`), the same results."""
    h, w, c = x.shape
    m, s = _i32(multipliers), _i32(shifts)
    if k == 3:
        centre = np.asarray(weights, np.int8)
        weights = np.zeros((3, 3, c), np.int8)
        weights[1, 1] = centre
    params = ConvParamsC(in_h=h, in_w=w, in_c=c, out_h=h, out_w=w, out_c=c, k_h=k, k_w=k,
                         stride_h=1, stride_w=1, dilation_h=1, dilation_w=1, pad_top=k // 2,
                         pad_left=k // 2, depth_multiplier=1, input_offset=input_offset,
                         filter_offset=0, output_offset=output_offset, act_min=act_min,
                         act_max=act_max, multipliers=_ptr(m, ctypes.c_int32),
                         shifts=_ptr(s, ctypes.c_int32))
    data = np.ascontiguousarray(x, dtype=np.int8).copy()
    wt = np.ascontiguousarray(weights, dtype=np.int8)
    b = _i32(bias)
    scratch = np.zeros(h * w + 8, np.int8)
    lib.ek_depthwise_conv2d_s8_inplace(ctypes.byref(params), _ptr(data, ctypes.c_int8),
                                       _ptr(wt, ctypes.c_int8), _ptr(b, ctypes.c_int32),
                                       _ptr(data, ctypes.c_int8),
                                       _ptr(scratch, ctypes.c_int8))
    return data


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("act", [(-128, 127), (-5, 100)])
def test_requantisation_edges(libs, act, k):
    """Accumulators over the whole int32 range (bias near the limits, acc = -1, 0, 1) through
    multipliers 0, at and around 2^30, at 2^31 - 1, and shifts -1, -23 (the fast form's
    limits), -24, -31, 0 and left shifts (k=3: through the 3x3 rows): each output equals
    clamp(MultiplyByQuantizedMultiplier(acc) + output_offset) computed by edgekit.fixedpoint."""
    rng = np.random.default_rng(41)
    multipliers = [1 << 30, (1 << 30) + 1, (1 << 31) - 1, 1518500250, 1102250035, 0]
    shifts = [-1, -2, -23, -24, -31, 0, 3, -8]
    pairs = [(m, s) for m in multipliers for s in shifts]
    channels = len(pairs)
    h, w = 6, 7
    # acc = bias + (x + 0) * 1: the pixel values sweep acc around each channel's bias
    x = rng.integers(-128, 128, size=(h, w, channels)).astype(np.int8)
    x[0, 0, :], x[0, 1, :], x[0, 2, :] = -1, 0, 1
    weights = np.ones(channels, np.int8)
    for output_offset in (-128, 0, 127):
        biases = rng.choice([0, 0, INT32_MAX - 127, INT32_MIN + 128, 1 << 24, -(1 << 24), 1000],
                            size=channels)
        if output_offset == 0:
            biases[:] = 0  # small accumulators: every tie of both roundings at M = 2^30
        acc = x.astype(np.int64) + biases.astype(np.int64)
        scaled = fixedpoint.multiply_by_quantized_multiplier(
            acc, np.array([m for m, _ in pairs], np.int64), np.array([s for _, s in pairs]))
        expected = np.clip(np.asarray(scaled, np.int64) + output_offset, *act).astype(np.int8)
        for variant, lib in libs.items():
            got = _run_pointwise(lib, x, weights, biases, [m for m, _ in pairs],
                                 [s for _, s in pairs], 0, output_offset, *act, k=k)
            bad = np.argwhere(got != expected)
            assert bad.size == 0, (variant, output_offset, [
                (pairs[c], int(acc[i, j, c]), int(got[i, j, c]), int(expected[i, j, c]))
                for i, j, c in bad[:5]])


def test_requantisation_random_accumulators(libs):
    """Random int32 accumulators (bias uniform over int32) with random multipliers in
    [2^30, 2^31) and shifts in [-23, -1]: the fast form over its whole domain."""
    rng = np.random.default_rng(43)
    channels = 64
    multipliers = rng.integers(1 << 30, 1 << 31, size=channels)
    shifts = rng.integers(-23, 0, size=channels)
    x = rng.integers(-128, 128, size=(5, 9, channels)).astype(np.int8)
    weights = rng.integers(-127, 128, size=channels).astype(np.int8)
    for trial in range(4):
        biases = rng.integers(INT32_MIN, INT32_MAX + 1, size=channels)
        if trial == 0:
            biases[:] = 0  # small accumulators: signs and ties near zero
        output_offset = int(rng.integers(-128, 128))
        acc = (x.astype(np.int64) * weights + biases) & 0xFFFFFFFF
        acc = np.where(acc >= 1 << 31, acc - (1 << 32), acc)  # the int32 accumulator wraps
        expected = np.clip(np.asarray(fixedpoint.multiply_by_quantized_multiplier(
            acc, multipliers, shifts), np.int64) + output_offset, -128, 127).astype(np.int8)
        for variant, lib in libs.items():
            got = _run_pointwise(lib, x, weights, biases, multipliers, shifts, 0, output_offset,
                                 -128, 127)
            assert (got == expected).all(), (variant, trial, int((got != expected).sum()))
