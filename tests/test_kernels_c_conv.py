"""CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED C kernels (firmware/c/kernels/ek_conv*.c)
against the reference interpreter, byte for byte.

The kernels are compiled on the host twice: the portable C99 path, and the Cortex-M DSP path
with its instructions emulated in C (EDGEKIT_EMULATE_DSP), so the SIMD path's data movement
(lane split, offsets, tails, channel groups) is checked here too; the real instructions run in
the HIL suite and in bench/kernels_conv.py on Unicorn's Cortex-M4.

Cases: randomized single ops (shapes, strides, dilations, padding, activations, bias or not,
depth multipliers, per-tensor FC, a non-zero filter zero point, extreme zero points), the
in-place channel-by-channel depthwise mode, and every conv/depthwise/FC op of the four MLPerf
Tiny models run on the interpreter's own intermediate tensors.
"""

from __future__ import annotations

import ctypes
import dataclasses
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import graph_builders as gb
from edgekit import reference
from edgekit.converters.tflite_reader import load_tflite
from edgekit.interpreter import Interpreter
from edgekit.ir import Graph, Quantization
from edgekit.firmware.op_emitters import kernel_shifts, requant_fast_everywhere, requant_needs_wide
from edgekit.planner.inplace import MODES_BY_NAME

REPO = Path(__file__).resolve().parents[1]
KERNELS = REPO / "firmware" / "c" / "kernels"
MODELS = REPO.parent / "shared" / "models" / "mlperf_tiny"
SOURCES = ("ek_conv.c", "ek_conv_depthwise.c")
#: the two compiled variants: the portable path, and the DSP path with emulated instructions
VARIANTS = {"portable": ["-DEDGEKIT_PORTABLE_KERNELS"], "dsp": ["-DEDGEKIT_EMULATE_DSP"]}

I32P = ctypes.POINTER(ctypes.c_int32)
I8P = ctypes.POINTER(ctypes.c_int8)


class ConvParamsC(ctypes.Structure):
    """Mirror of ek_conv2d_params (ek_conv.h)."""

    _fields_ = [(name, ctypes.c_int32) for name in (
        "in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "k_h", "k_w", "stride_h", "stride_w",
        "dilation_h", "dilation_w", "pad_top", "pad_left", "depth_multiplier", "input_offset",
        "filter_offset", "output_offset", "act_min", "act_max")] + [
        ("multipliers", I32P), ("shifts", I32P), ("effective_bias", I32P),
        ("wide_scratch", ctypes.c_int32), ("paired_filter", ctypes.c_int32)]


class FcParamsC(ctypes.Structure):
    """Mirror of ek_fully_connected_params (ek_conv.h)."""

    _fields_ = [(name, ctypes.c_int32) for name in (
        "rows", "depth", "units", "input_offset", "filter_offset", "output_offset", "act_min",
        "act_max")] + [("multipliers", I32P), ("shifts", I32P), ("interleaved", ctypes.c_int32),
                   ("requant_fast", ctypes.c_int32)]


@pytest.fixture(scope="module")
def libs(tmp_path_factory) -> dict[str, ctypes.CDLL]:
    if shutil.which("gcc") is None:
        pytest.skip("host gcc not found: the C kernels cannot be compiled on this machine")
    out = tmp_path_factory.mktemp("conv_kernels")
    loaded = {}
    for variant, defines in VARIANTS.items():
        lib = out / f"libekconv_{variant}.so"
        cmd = ["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared",
               *defines, *[str(KERNELS / s) for s in SOURCES], "-o", str(lib)]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        loaded[variant] = ctypes.CDLL(str(lib))
    return loaded


def _ptr(array: np.ndarray, ctype):
    return array.ctypes.data_as(ctypes.POINTER(ctype))


def _i32(values) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(values, dtype=np.int64).astype(np.int32))


def effective_bias(p, w: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """ek_conv2d_params.effective_bias: bias + input_offset * (sum of the channel's weights),
    wrapped to int32 as the kernels' accumulator (the formula ek_conv.h gives the generator)."""
    out_c = w.shape[0]
    total = (np.zeros(out_c, np.int64) if bias is None else np.asarray(bias, np.int64)) + (
        p.input_offset * w.reshape(out_c, -1).astype(np.int64).sum(axis=1))
    return ((total + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32)


def conv_params(p, x_shape, w_shape, eb: np.ndarray | None = None
                ) -> tuple[ConvParamsC, list[np.ndarray]]:
    """ek_conv2d_params from the reference's ConvParams (the arrays must outlive the struct);
    ``eb``: the optional effective bias (None: the field is NULL). The shifts as the generator
    emits them (`kernel_shifts`)."""
    multipliers, shifts = _i32(p.multipliers), _i32(kernel_shifts(p.multipliers, p.shifts))
    _, oh, ow, oc = p.out_shape
    c = ConvParamsC(
        in_h=x_shape[1], in_w=x_shape[2], in_c=x_shape[3], out_h=oh, out_w=ow, out_c=oc,
        k_h=w_shape[1], k_w=w_shape[2], stride_h=p.stride[0], stride_w=p.stride[1],
        dilation_h=p.dilation[0], dilation_w=p.dilation[1], pad_top=p.pad[0], pad_left=p.pad[2],
        depth_multiplier=p.depth_multiplier, input_offset=p.input_offset,
        filter_offset=p.filter_offset, output_offset=p.output_offset, act_min=p.act_min,
        act_max=p.act_max, multipliers=_ptr(multipliers, ctypes.c_int32),
        shifts=_ptr(shifts, ctypes.c_int32),
        effective_bias=None if eb is None else _ptr(eb, ctypes.c_int32))
    return c, [multipliers, shifts, eb]


def fc_params(p, x_size, w_shape) -> tuple[FcParamsC, list[np.ndarray]]:
    multipliers, shifts = _i32(p.multipliers), _i32(kernel_shifts(p.multipliers, p.shifts))
    units, depth = w_shape
    c = FcParamsC(rows=x_size // depth, depth=depth, units=units, input_offset=p.input_offset,
                  filter_offset=p.filter_offset, output_offset=p.output_offset,
                  act_min=p.act_min, act_max=p.act_max,
                  multipliers=_ptr(multipliers, ctypes.c_int32),
                  shifts=_ptr(shifts, ctypes.c_int32),
                  requant_fast=int(requant_fast_everywhere(p.multipliers, shifts)))
    return c, [multipliers, shifts]


def run_c(lib: ctypes.CDLL, prepared, x: np.ndarray, w: np.ndarray, bias: np.ndarray | None,
          inplace: bool = False, with_effective_bias: bool = False,
          scratch_bytes: int | None = None, interleaved: bool = False,
          paired: bool = False) -> np.ndarray:
    """Run one op's C kernel on (x, w, bias); returns the output array (out_shape, int8).
    ``with_effective_bias``: CONV_2D gets ek_conv2d_params.effective_bias too.
    ``interleaved``: a FULLY_CONNECTED's filter in the generator's interleaved layout
    (op_emitters.interleave_fc_filter), as the generator emits it; ``paired``: an in-place 1x1
    CONV_2D's filter in the paired layout (op_emitters.pair_pointwise_filter). In place, the
    kernel gets exactly ``scratch_bytes`` of scratch (the planner's figure for its mode), with
    guard bytes on both sides: a kernel that needs more than the planner gives fails here."""
    x = np.ascontiguousarray(x, dtype=np.int8)
    w = np.ascontiguousarray(w, dtype=np.int8)
    b = None if bias is None else _i32(bias)
    b_ptr = None if b is None else _ptr(b, ctypes.c_int32)
    out = np.zeros(prepared.out_shape, np.int8)
    if prepared.kind == "FULLY_CONNECTED":
        params, keep = fc_params(prepared, x.size, w.shape)
        if interleaved:
            from edgekit.firmware.op_emitters import interleave_fc_filter

            w = np.ascontiguousarray(interleave_fc_filter(w), dtype=np.int8)
            params.interleaved = 1
        lib.ek_fully_connected_s8(ctypes.byref(params), _ptr(x, ctypes.c_int8),
                                  _ptr(w, ctypes.c_int8), b_ptr, _ptr(out, ctypes.c_int8))
        return out
    eb = effective_bias(prepared, w, bias) if with_effective_bias else None
    params, keep = conv_params(prepared, x.shape, w.shape, eb)
    if prepared.kind == "CONV_2D" and inplace:
        # one buffer from the input's offset, as long as the larger of input and output
        # ("backward": outputs wider than the input run past its end)
        guard, size = 16, max(x.size, out.size)
        buf = np.full(size + 2 * guard, 0x5A, np.int8)
        buf[guard:guard + x.size] = x.reshape(-1)
        scratch = np.full(scratch_bytes + 2 * guard, 0x5A, np.int8)
        params.wide_scratch = int(scratch_bytes >= 4 * x.shape[3])  # as the generator sets it
        if paired:
            from edgekit.firmware.op_emitters import pair_pointwise_filter

            w = np.ascontiguousarray(pair_pointwise_filter(w), dtype=np.int8)
            params.paired_filter = 1
        data = _ptr(buf[guard:], ctypes.c_int8)
        kernel = (lib.ek_conv2d_s8_pointwise_inplace_backward if inplace == "backward"
                  else lib.ek_conv2d_s8_pointwise_inplace)
        kernel(ctypes.byref(params), data, _ptr(w, ctypes.c_int8), b_ptr, data,
               _ptr(scratch[guard:], ctypes.c_int8))
        assert (buf[:guard] == 0x5A).all() and (buf[guard + size:] == 0x5A).all()
        assert (scratch[:guard] == 0x5A).all() and (scratch[-guard:] == 0x5A).all()
        return buf[guard:guard + out.size].reshape(prepared.out_shape)
    if prepared.kind == "CONV_2D":
        lib.ek_conv2d_s8(ctypes.byref(params), _ptr(x, ctypes.c_int8), _ptr(w, ctypes.c_int8),
                         b_ptr, _ptr(out, ctypes.c_int8))
        return out
    if not inplace:
        lib.ek_depthwise_conv2d_s8(ctypes.byref(params), _ptr(x, ctypes.c_int8),
                                   _ptr(w, ctypes.c_int8), b_ptr, _ptr(out, ctypes.c_int8))
        return out
    # In place: one buffer that starts as the input; the output is its first out.size bytes.
    # Guard bytes around the buffer and the scratch plane catch writes out of bounds.
    guard = 16
    buf = np.full(x.size + 2 * guard, 0x5A, np.int8)
    buf[guard:guard + x.size] = x.reshape(-1)
    plane = scratch_bytes
    scratch = np.full(plane + 2 * guard, 0x5A, np.int8)
    data = _ptr(buf[guard:], ctypes.c_int8)
    lib.ek_depthwise_conv2d_s8_inplace(ctypes.byref(params), data, _ptr(w, ctypes.c_int8), b_ptr,
                                       data, _ptr(scratch[guard:], ctypes.c_int8))
    assert (buf[:guard] == 0x5A).all() and (buf[guard + x.size:] == 0x5A).all()
    assert (scratch[:guard] == 0x5A).all() and (scratch[guard + plane:] == 0x5A).all()
    return buf[guard:guard + out.size].reshape(prepared.out_shape)


def variants(libs, kind: str):
    """(name, library, with effective bias) to run: CONV_2D also with the effective bias."""
    for name, lib in libs.items():
        yield name, lib, False
        if kind == "CONV_2D":
            yield name, lib, True


def planned_scratch(op, graph: Graph, inplace: bool | str) -> int | None:
    """The planner's scratch for `op` run in place (`edgekit.planner.inplace`): the contract the
    C kernel must keep to."""
    if not inplace:
        return None
    mode = {"DEPTHWISE_CONV_2D": "depthwise_channelwise"}.get(
        op.kind, "pointwise_inplace_backward" if inplace == "backward" else "pointwise_inplace")
    return MODES_BY_NAME[mode].scratch_bytes(op, graph)


def paired_options(prepared, x_shape, w_shape, eb: bool, inplace, scratch_bytes) -> list[bool]:
    """The filter layouts the generator may give this in-place call: also the paired one where
    `op_emitters.pointwise_paired` holds."""
    from edgekit.firmware.op_emitters import pointwise_paired

    if prepared.kind != "CONV_2D" or not inplace or not eb:
        return [False]
    fields = {"in_c": x_shape[3], "out_c": w_shape[0], "filter_offset": prepared.filter_offset,
              "effective_bias": 1, "wide_scratch": int(scratch_bytes >= 4 * x_shape[3])}
    kernel = ("ek_conv2d_s8_pointwise_inplace_backward" if inplace == "backward"
              else "ek_conv2d_s8_pointwise_inplace")
    return [False, True] if pointwise_paired(kernel, fields) else [False]


def check_graph(libs, graph: Graph, rng: np.random.Generator, inputs: int = 2,
                inplace: bool | str = False, scratch_bytes: int | None = None) -> None:
    """The single op of ``graph`` on random inputs: every C variant equals the reference.
    In place, the kernel gets the planner's scratch for the op (or ``scratch_bytes``)."""
    op = graph.ops[0]
    prepared = reference.prepare(op, graph)
    x_t, w_t = graph[op.inputs[0]], graph[op.inputs[1]]
    bias = graph[op.inputs[2]].data if len(op.inputs) > 2 and op.inputs[2] else None
    scratch = planned_scratch(op, graph, inplace) if scratch_bytes is None else scratch_bytes
    for _ in range(inputs):
        x = gb.random_values(rng, x_t.shape, x_t.dtype)
        expected = reference.run_op(prepared, [x, w_t.data, bias])
        for variant, lib, eb in variants(libs, op.kind):
            for paired in paired_options(prepared, x_t.shape, w_t.shape, eb, inplace, scratch):
                got = run_c(lib, prepared, x, w_t.data, bias, inplace=inplace,
                            with_effective_bias=eb, scratch_bytes=scratch, paired=paired)
                assert got.tobytes() == expected.tobytes(), (
                    f"{variant} eb={eb} paired={paired} {op.kind} {x_t.shape} ->"
                    f" {prepared.out_shape} attrs {op.attrs}:"
                    f" {int((got != expected).sum())} of {expected.size} bytes differ")


# --- randomized single ops -----------------------------------------------------------------------

def _random_window(rng, size_max: int = 11):
    kernel = tuple(int(k) for k in rng.integers(1, 6, size=2))
    stride = tuple(int(s) for s in rng.integers(1, 4, size=2))
    dilation = tuple(int(d) for d in rng.choice([1, 1, 2], size=2))
    padding = str(rng.choice(["SAME", "VALID"]))
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    lo = max(span) if padding == "VALID" else 1
    h, w = (int(v) for v in rng.integers(lo, max(lo, size_max) + 1, size=2))
    activation = str(rng.choice(["NONE", "RELU", "RELU6"]))
    return dict(kernel=kernel, stride=stride, dilation=dilation, padding=padding,
                activation=activation), (h, w)


@pytest.mark.parametrize("seed", range(60))
def test_conv2d_random(libs, seed):
    rng = np.random.default_rng(1000 + seed)
    window, (h, w) = _random_window(rng)
    c_in, c_out = int(rng.integers(1, 11)), int(rng.integers(1, 11))
    graph = gb.conv2d(rng, in_shape=(1, h, w, c_in), out_channels=c_out, bias=bool(seed % 5),
                      per_channel=bool(seed % 7), **window)
    check_graph(libs, graph, rng)


@pytest.mark.parametrize("seed", range(60))
def test_depthwise_random(libs, seed):
    rng = np.random.default_rng(2000 + seed)
    window, (h, w) = _random_window(rng)
    multiplier = int(rng.choice([1, 1, 1, 2, 3]))
    graph = gb.depthwise_conv2d(rng, in_shape=(1, h, w, int(rng.integers(1, 11))),
                                multiplier=multiplier, bias=bool(seed % 5), **window)
    check_graph(libs, graph, rng)


@pytest.mark.parametrize("seed", range(40))
def test_depthwise_inplace_random(libs, seed):
    """The planner's depthwise_channelwise mode: output written over the input buffer."""
    rng = np.random.default_rng(3000 + seed)
    while True:
        window, (h, w) = _random_window(rng)
        graph = gb.depthwise_conv2d(rng, in_shape=(1, h, w, int(rng.integers(1, 11))),
                                    bias=bool(seed % 5), **window)
        _, oh, ow, _ = graph["y"].shape
        if oh * ow <= h * w:  # the mode's static condition
            break
    check_graph(libs, graph, rng, inplace=True)


@pytest.mark.parametrize("kernel, stride, padding", [
    ((3, 3), (1, 1), "SAME"), ((3, 3), (2, 2), "SAME"), ((3, 3), (1, 1), "VALID"),
    ((7, 7), (1, 1), "SAME"), ((6, 5), (2, 1), "VALID")])
def test_depthwise_inplace_windows(libs, kernel, stride, padding):
    """The in-place kernel's three loops: the 3x3 interior fast path (offset folded into the
    tap sum), border pixels, and windows too large for the tap table (> 25 taps)."""
    rng = np.random.default_rng(17)
    graph = gb.depthwise_conv2d(rng, in_shape=(1, 11, 9, 6), kernel=kernel, stride=stride,
                                padding=padding)
    check_graph(libs, graph, rng, inplace=True)


def pointwise_inplace_holds(p, x_shape, w_shape) -> bool:
    """The planner's pointwise_inplace static condition: 1x1, no padding, and
    pixel * C_out <= src(pixel) * C_in for every output pixel."""
    _, h, w, c_in = x_shape
    _, oh, ow, c_out = p.out_shape
    if tuple(w_shape[1:3]) != (1, 1) or any(p.pad):
        return False
    return all(pixel * c_out <= ((pixel // ow) * p.stride[0] * w + (pixel % ow) * p.stride[1]) * c_in
               for pixel in range(1, oh * ow))


@pytest.mark.parametrize("c_in, c_out, stride, hw", [
    (8, 8, 1, (5, 7)), (64, 64, 1, (25, 5)), (16, 5, 1, (4, 4)), (16, 32, 2, (8, 8)),
    (12, 3, 3, (7, 5)), (7, 13, 2, (6, 6))])
def test_pointwise_inplace(libs, c_in, c_out, stride, hw):
    """The planner's pointwise_inplace mode (1x1 conv over its own input), where its static
    condition p*C_out <= src(p)*C_in holds for every pixel (checked here first)."""
    rng = np.random.default_rng(29 + c_in * c_out)
    graph = gb.conv2d(rng, in_shape=(1, *hw, c_in), out_channels=c_out, kernel=(1, 1),
                      stride=(stride, stride), padding="VALID")
    _, oh, ow, _ = graph["y"].shape
    for pixel in range(1, oh * ow):
        src = (pixel // ow) * stride * hw[1] + (pixel % ow) * stride
        if pixel * c_out > src * c_in:
            pytest.skip("the mode's static condition does not hold for this shape")
    check_graph(libs, graph, rng, inplace=True)


@pytest.mark.parametrize("rows, depth, units", [(19, 64, 96), (23, 32, 32), (6, 16, 8)])
def test_token_fc_in_place_keeps_to_the_fc_ops_planned_scratch(libs, rows, depth, units):
    """A FULLY_CONNECTED over tokens in place runs the pointwise conv kernel over its rows
    (firmware/op_emitters.py): that kernel must fit in the scratch the planner gives the FC op
    (a 1x1 conv's figure once overran a token FC's, corrupting a live tensor)."""
    rng = np.random.default_rng(rows * depth + units)
    fc = gb.fully_connected(rng, batch=rows, in_features=depth, out_features=units)
    conv = gb.conv2d(rng, in_shape=(1, 1, rows, depth), out_channels=units, kernel=(1, 1),
                     stride=(1, 1), padding="VALID")
    inplace = "backward" if units > depth else True
    check_graph(libs, conv, rng, inplace=inplace,
                scratch_bytes=planned_scratch(fc.ops[0], fc, inplace))


@pytest.mark.parametrize("c_in, c_out, stride, hw", [
    (8, 48, 1, (9, 7)), (16, 96, 1, (6, 6)), (3, 5, 1, (5, 4)), (8, 8, 1, (4, 5)),
    (13, 40, 1, (3, 7)), (24, 144, 2, (6, 6))])
def test_pointwise_inplace_backward(libs, c_in, c_out, stride, hw):
    """pointwise_inplace_backward (MobileNet's expanding 1x1 over its own input, pixels in
    decreasing order), where the planner's backward condition holds (checked first)."""
    from edgekit.planner.inplace import pointwise_fits_in_place

    rng = np.random.default_rng(31 + c_in * c_out)
    graph = gb.conv2d(rng, in_shape=(1, *hw, c_in), out_channels=c_out, kernel=(1, 1),
                      stride=(stride, stride), padding="VALID")
    _, oh, ow, _ = graph["y"].shape
    assert pointwise_fits_in_place(oh, ow, c_out, hw[1], c_in, stride, stride, backward=True)
    check_graph(libs, graph, rng, inplace="backward")


@pytest.mark.parametrize("in_shape, c_out, kernel, stride, padding", [
    ((1, 13, 11, 3), 8, (3, 3), (2, 2), "SAME"),   # vww/resnet first conv: len 27 (tail word)
    ((1, 14, 10, 1), 9, (10, 4), (2, 2), "SAME"),  # kws first conv: len 40, odd c_out
    ((1, 9, 7, 2), 5, (3, 3), (1, 1), "SAME"),     # len 18, odd pixel count
    ((1, 7, 9, 8), 16, (1, 1), (1, 1), "VALID"),   # vww 1x1 8->16, odd pixel count
    ((1, 6, 6, 16), 3, (1, 1), (2, 2), "VALID"),   # 1x1 strided, odd c_out
    ((1, 5, 5, 64), 7, (1, 1), (1, 1), "VALID"),   # the largest window the path takes
    ((1, 5, 5, 13), 6, (1, 1), (1, 1), "VALID"),   # 1x1 with len % 4 == 1
    ((1, 8, 6, 3), 4, (5, 3), (1, 2), "SAME"),     # wide padding on every side
    ((1, 6, 5, 3), 7, (1, 1), (1, 1), "VALID"),    # 3 taps: the byte path (no widened path)
    ((1, 7, 7, 4), 1, (3, 3), (1, 1), "SAME"),     # one output channel: the byte path
])
def test_two_pixel_path(libs, in_shape, c_out, kernel, stride, padding):
    """The DSP paths for windows of at most 64 bytes: the widened two-pixel loop, and the byte
    loop where that one does not apply (fewer than 4 taps, one output channel); gathered windows
    with zero-point padding, the tail word, a lone last pixel, an odd last channel;
    check_graph runs them with and without the effective bias."""
    rng = np.random.default_rng(sum(in_shape) + c_out)
    graph = gb.conv2d(rng, in_shape=in_shape, out_channels=c_out, kernel=kernel, stride=stride,
                      padding=padding, activation="RELU6" if c_out % 2 else "NONE")
    check_graph(libs, graph, rng, inputs=3)


@pytest.mark.parametrize("in_shape, c_out, kernel, stride, padding, dilation", [
    ((1, 12, 12, 3), 8, (3, 3), (2, 2), "SAME", (1, 1)),   # vww's first layer: rows of 9 bytes
    ((1, 9, 8, 1), 6, (3, 3), (1, 1), "VALID", (1, 1)),    # rows of 3: the last pixel's guard
    ((1, 13, 6, 1), 8, (10, 4), (2, 2), "SAME", (1, 1)),   # kws's first layer: whole-word rows
    ((1, 7, 9, 2), 5, (2, 3), (1, 1), "SAME", (2, 1)),     # rows of 6, dilated rows
    ((1, 6, 7, 3), 4, (1, 3), (1, 2), "VALID", (1, 1)),    # one row of 9 bytes
    ((1, 8, 9, 1), 3, (4, 1), (1, 1), "VALID", (1, 1)),    # rows of 1: groups over four rows
    ((1, 8, 9, 2), 7, (3, 1), (2, 1), "SAME", (1, 1)),     # rows of 2
    ((1, 7, 7, 5), 6, (1, 1), (1, 1), "VALID", (1, 1)),    # 1x1 over 5 channels
    ((1, 5, 1, 2), 4, (3, 1), (1, 1), "VALID", (1, 1)),    # a 2-byte pitch: gathered instead
    ((1, 6, 6, 7), 3, (3, 3), (1, 1), "VALID", (1, 1)),    # 63 taps, the longest short window
])
def test_short_windows_widened_from_their_rows(libs, in_shape, c_out, kernel, stride, padding,
                                               dilation):
    """The DSP path's short windows (in_c % 4 != 0) of pixels inside the input, widened
    straight from their rows: groups across rows of 1-9 bytes, the tail group, the word loads
    past a row's end (the last pixels fall back to the gathered window), dilated rows."""
    rng = np.random.default_rng(sum(in_shape) * c_out + kernel[0])
    graph = gb.conv2d(rng, in_shape=in_shape, out_channels=c_out, kernel=kernel, stride=stride,
                      padding=padding, dilation=dilation,
                      activation="RELU" if c_out % 2 else "NONE")
    check_graph(libs, graph, rng, inputs=3)


@pytest.mark.parametrize("in_shape, c_out, kernel, stride, padding, dilation", [
    ((1, 7, 9, 16), 8, (3, 3), (1, 1), "SAME", (1, 1)),   # resnet's 3x3: len 144, odd pixels
    ((1, 8, 8, 32), 7, (3, 3), (2, 2), "SAME", (1, 1)),   # strided, odd c_out
    ((1, 5, 6, 64), 4, (3, 3), (1, 1), "VALID", (1, 1)),  # the longest window: 576 taps
    ((1, 9, 9, 4), 5, (5, 3), (1, 2), "SAME", (1, 1)),    # wide padding on every side
    ((1, 9, 10, 8), 6, (3, 3), (1, 1), "SAME", (2, 2)),   # dilated: one tap at a time
    ((1, 3, 3, 12), 2, (3, 3), (1, 1), "SAME", (1, 1)),   # one pixel's window mostly padding
])
def test_widened_two_pixel_path(libs, in_shape, c_out, kernel, stride, padding, dilation):
    """The DSP path's widened windows (in_c % 4 == 0, up to 576 taps): the input offset added
    while widening, padding taps 0, a lone last pixel, an odd last channel."""
    rng = np.random.default_rng(sum(in_shape) * c_out)
    graph = gb.conv2d(rng, in_shape=in_shape, out_channels=c_out, kernel=kernel, stride=stride,
                      padding=padding, dilation=dilation,
                      activation="RELU6" if c_out % 2 else "RELU")
    check_graph(libs, graph, rng, inputs=3)


@pytest.mark.parametrize("in_shape, c_out, kernel, stride", [
    ((1, 12, 12, 3), 8, (3, 3), (2, 2)), ((1, 7, 9, 8), 16, (1, 1), (1, 1)),
    ((1, 9, 9, 4), 12, (3, 3), (1, 1)), ((1, 6, 6, 32), 16, (1, 1), (1, 1))])
def test_plain_conv_sliding_in_place(libs, in_shape, c_out, kernel, stride):
    """The planner's conv_sliding mode: the plain ek_conv2d_s8 with its output starting the
    planner's lead before its own input, in one buffer (edgekit.planner.inplace)."""
    from edgekit.planner.inplace import sliding_lead_bytes

    rng = np.random.default_rng(in_shape[1] * c_out)
    graph = gb.conv2d(rng, in_shape=in_shape, out_channels=c_out, kernel=kernel, stride=stride)
    op = graph.ops[0]
    lead = sliding_lead_bytes(op, graph)
    assert lead is not None
    prepared = reference.prepare(op, graph)
    w, bias = graph["w"].data, graph["bias"].data
    x = gb.random_values(rng, graph["x"].shape, graph["x"].dtype)
    expected = reference.run_op(prepared, [x, w, bias])
    for variant, lib, with_eb in variants(libs, "CONV_2D"):
        eb = effective_bias(prepared, w, bias) if with_eb else None
        params, keep = conv_params(prepared, x.shape, w.shape, eb)
        size = max(lead + x.size, expected.size)
        buf = np.zeros(size, np.int8)
        buf[lead:lead + x.size] = x.reshape(-1)
        b = _i32(bias)
        base = buf.ctypes.data
        lib.ek_conv2d_s8(ctypes.byref(params), ctypes.cast(base + lead, I8P),
                         _ptr(np.ascontiguousarray(w), ctypes.c_int8), _ptr(b, ctypes.c_int32),
                         ctypes.cast(base, I8P))
        got = buf[:expected.size]
        assert got.tobytes() == expected.reshape(-1).tobytes(), f"{variant} eb={with_eb} lead {lead}"


@pytest.mark.parametrize("seed", range(40))
def test_fully_connected_random(libs, seed):
    rng = np.random.default_rng(4000 + seed)
    graph = gb.fully_connected(rng, batch=int(rng.choice([1, 1, 3])),
                               in_features=int(rng.integers(1, 70)),
                               out_features=int(rng.integers(1, 14)),
                               activation=str(rng.choice(["NONE", "RELU", "RELU6"])),
                               bias=bool(seed % 5), per_channel=bool(seed % 3))
    check_graph(libs, graph, rng)


@pytest.mark.parametrize("seed", range(12))
def test_fully_connected_with_the_input_offset_in_the_bias(libs, seed):
    """What the generator emits for a FULLY_CONNECTED (filter offset 0): input offset 0 and the
    offset folded into the bias (op_emitters.effective_bias), which the DSP path multiplies as
    raw bytes (dot4_raw). Every variant gives the reference's bytes, wrapping included."""
    import dataclasses

    from edgekit.firmware.op_emitters import effective_bias as folded_bias

    rng = np.random.default_rng(4500 + seed)
    graph = gb.fully_connected(rng, batch=int(rng.choice([1, 3])),
                               in_features=int(rng.integers(1, 90)),
                               out_features=int(rng.integers(1, 14)),
                               activation=str(rng.choice(["NONE", "RELU"])), bias=bool(seed % 4))
    op = graph.ops[0]
    prepared = reference.prepare(op, graph)
    w = graph[op.inputs[1]].data
    bias = graph[op.inputs[2]].data if len(op.inputs) > 2 and op.inputs[2] else None
    if seed == 0 and bias is not None:  # a bias near INT32_MAX: the folded sum wraps
        bias = np.full(bias.shape, np.iinfo(np.int32).max - 3, np.int32)
    folded = dataclasses.replace(prepared, input_offset=0)
    b = folded_bias(w, bias, prepared.input_offset).astype(np.int32)
    for _ in range(2):
        x = gb.random_values(rng, graph[op.inputs[0]].shape, graph[op.inputs[0]].dtype)
        expected = reference.run_op(prepared, [x, w, bias])
        for variant, lib in libs.items():
            got = run_c(lib, folded, x, w, b)
            assert got.tobytes() == expected.tobytes(), f"{variant} seed {seed}"


@pytest.mark.parametrize("depth", [4, 8, 12, 16, 20, 36, 68])
@pytest.mark.parametrize("batch", [1, 2])
def test_fully_connected_interleaved_filter(libs, depth, batch):
    """The interleaved filter layout (ek_conv.h `interleaved`), as the generator emits it for an
    int8 FC with depth % 4 == 0: input offset folded into the bias. The DSP loop's four-block
    unrolling entered at every residue of depth / 4, groups of four units, the units % 4
    row-major tail, fast and exact requantisation (per-channel shifts of seed-dependent size),
    every row of a batch: the bytes of the reference."""
    import dataclasses

    from edgekit.firmware.op_emitters import effective_bias as folded_bias
    from edgekit.firmware.op_emitters import fc_interleaves

    rng = np.random.default_rng(4700 + depth + 100 * batch)
    units = int(rng.integers(4, 15))
    assert fc_interleaves("s8", 0, units, depth)
    graph = gb.fully_connected(rng, batch=batch, in_features=depth, out_features=units,
                               activation=str(rng.choice(["NONE", "RELU"])), bias=True,
                               per_channel=bool(depth % 8))
    op = graph.ops[0]
    prepared = reference.prepare(op, graph)
    if batch == 2:  # one unit off the fast requantisation (a right shift of 1): the exact form
        shifts = np.array(prepared.shifts)
        shifts[1] = -1
        prepared = dataclasses.replace(prepared, shifts=shifts)
    w, bias = graph[op.inputs[1]].data, graph[op.inputs[2]].data
    x = gb.random_values(rng, graph[op.inputs[0]].shape, graph[op.inputs[0]].dtype)
    expected = reference.run_op(prepared, [x, w, bias])
    folded = dataclasses.replace(prepared, input_offset=0)
    b = folded_bias(w, bias, prepared.input_offset).astype(np.int32)
    for variant, lib in libs.items():
        got = run_c(lib, folded, x, w, b, interleaved=True)
        assert got.tobytes() == expected.tobytes(), f"{variant} depth {depth} units {units}"


def test_interleave_fc_filter_layout():
    """interleave_fc_filter against ek_conv.h's description, element by element."""
    from edgekit.firmware.op_emitters import interleave_fc_filter

    units, depth = 10, 12
    w = np.arange(units * depth).reshape(units, depth)
    got = interleave_fc_filter(w)
    assert got.shape == (units * depth,)
    for u in range(8):
        for k in range(depth):
            g, r = divmod(u, 4)
            assert got[4 * g * depth + (k // 4) * 16 + r * 4 + k % 4] == w[u, k]
    assert (got[8 * depth:] == w[8:].reshape(-1)).all()


# --- edges: offsets the DSP path must refuse or survive ------------------------------------------

def _with_filter_zero_point(graph: Graph, zp: int) -> Graph:
    w = graph["w"]
    w.quant = Quantization(w.quant.scale, np.full(w.quant.scale.size, zp), w.quant.axis)
    return graph


@pytest.mark.parametrize("kind", ["conv", "depthwise", "fc"])
def test_nonzero_filter_zero_point_takes_exact_path(libs, kind):
    """TFLite's weights are symmetric, but the reference allows a filter zero point: the DSP path
    (which assumes 0) must hand such layers to the portable loop and stay exact."""
    rng = np.random.default_rng(7)
    build = {"conv": lambda: gb.conv2d(rng, in_shape=(1, 7, 6, 8), out_channels=9),
             "depthwise": lambda: gb.depthwise_conv2d(rng, in_shape=(1, 7, 6, 8)),
             "fc": lambda: gb.fully_connected(rng, in_features=37, out_features=9)}[kind]
    check_graph(libs, _with_filter_zero_point(build(), -3), rng)


@pytest.mark.parametrize("zero_point", [-128, 127])
def test_extreme_input_zero_points(libs, zero_point):
    """input_offset of +128 or -127 makes x + offset span [-255, 255]: still exact in int16."""
    rng = np.random.default_rng(11)
    for graph in (gb.conv2d(rng, in_shape=(1, 6, 6, 12), out_channels=8),
                  gb.depthwise_conv2d(rng, in_shape=(1, 6, 6, 12)),
                  gb.fully_connected(rng, in_features=64, out_features=8)):
        x = graph["x"]
        x.quant = Quantization(x.quant.scale, np.array([zero_point]))
        check_graph(libs, graph, rng)


def test_accumulator_wraps_like_the_reference(libs):
    """A bias near INT32_MAX makes the int32 accumulator wrap; the C kernels wrap identically."""
    rng = np.random.default_rng(13)
    graph = gb.fully_connected(rng, in_features=40, out_features=8)
    graph["bias"].data = np.full(8, np.iinfo(np.int32).max - 5, np.int32)
    check_graph(libs, graph, rng)


# --- CONV_2D fused with the residual ADD (planner mode conv_add_skip) -------------------------

class AddParamsC(ctypes.Structure):
    """Mirror of ek_add_params (ek_elementwise.h); the broadcast shape is unused by the fused
    kernel (no broadcasting in conv_add_skip) and left zero."""

    _fields_ = [(name, ctypes.c_int32) for name in (
        "input1_offset", "input2_offset", "output_offset", "left_shift", "input1_multiplier",
        "input1_shift", "input2_multiplier", "input2_shift", "output_multiplier", "output_shift",
        "act_min", "act_max", "size", "broadcast")] + [
        ("out_shape", ctypes.c_int32 * 5), ("in1_strides", ctypes.c_int32 * 5),
        ("in2_strides", ctypes.c_int32 * 5)]


def add_params(p) -> AddParamsC:
    fields = ("input1_offset", "input2_offset", "output_offset", "left_shift",
              "input1_multiplier", "input1_shift", "input2_multiplier", "input2_shift",
              "output_multiplier", "output_shift", "act_min", "act_max")
    return AddParamsC(**{f: getattr(p, f) for f in fields},
                      size=int(np.prod(p.out_shape)))


def run_c_conv_add(lib: ctypes.CDLL, conv_p, add_p, x, w, bias, skip: np.ndarray,
                   position: int, with_effective_bias: bool = False) -> np.ndarray:
    """ek_conv2d_add_s8 as the planner runs it: the output written over the skip buffer (one
    buffer with guard bytes around it)."""
    x = np.ascontiguousarray(x, dtype=np.int8)
    w = np.ascontiguousarray(w, dtype=np.int8)
    b = None if bias is None else _i32(bias)
    b_ptr = None if b is None else _ptr(b, ctypes.c_int32)
    eb = effective_bias(conv_p, w, bias) if with_effective_bias else None
    params, keep = conv_params(conv_p, x.shape, w.shape, eb)
    add = add_params(add_p)
    guard = 16
    buf = np.full(skip.size + 2 * guard, 0x5A, np.int8)
    buf[guard:guard + skip.size] = skip.reshape(-1)
    data = _ptr(buf[guard:], ctypes.c_int8)
    lib.ek_conv2d_add_s8(ctypes.byref(params), ctypes.byref(add), _ptr(x, ctypes.c_int8),
                         _ptr(w, ctypes.c_int8), b_ptr, data, data, ctypes.c_int32(position))
    assert (buf[:guard] == 0x5A).all() and (buf[guard + skip.size:] == 0x5A).all()
    return buf[guard:guard + skip.size].reshape(skip.shape)


def check_conv_add(libs, conv_p, add_p, x, w, bias, skip, position: int, label: str) -> None:
    """Fused kernel == the reference conv, then the reference ADD in the ADD's input order."""
    y = reference.run_op(conv_p, [x, w, bias])
    operands = [y, skip] if position == 0 else [skip, y]
    expected = reference.run_op(add_p, operands)
    for variant, lib, eb in variants(libs, "CONV_2D"):
        got = run_c_conv_add(lib, conv_p, add_p, x, w, bias, skip, position, eb)
        assert got.tobytes() == expected.tobytes(), (
            f"{variant} eb={eb} conv+add {label} position {position}: "
            f"{int((got != expected).sum())} of {expected.size} bytes differ")


@pytest.mark.parametrize("seed", range(30))
def test_conv_add_random(libs, seed):
    """Random conv shapes and windows, the conv result as the ADD's first or second input,
    random ADD quantization (the ADD's input for the conv takes the conv output's)."""
    rng = np.random.default_rng(6000 + seed)
    window, (h, w) = _random_window(rng)
    c_in, c_out = int(rng.integers(1, 11)), int(rng.integers(1, 11))
    conv = gb.conv2d(rng, in_shape=(1, h, w, c_in), out_channels=c_out, bias=bool(seed % 5),
                     per_channel=bool(seed % 7), **window)
    shape = conv["y"].shape
    position = seed % 2
    add = gb.add(rng, shape_a=shape, shape_b=shape,
                 activation=str(rng.choice(["NONE", "RELU", "RELU6"])))
    add["ab"[position]].quant = conv["y"].quant
    conv_p = reference.prepare(conv.ops[0], conv)
    add_p = reference.prepare(add.ops[0], add)
    bias = conv["bias"].data if len(conv.ops[0].inputs) > 2 and conv.ops[0].inputs[2] else None
    for _ in range(2):
        x = gb.random_values(rng, conv["x"].shape, conv["x"].dtype)
        skip = gb.random_values(rng, shape, conv["y"].dtype)
        check_conv_add(libs, conv_p, add_p, x, conv["w"].data, bias, skip, position,
                       f"{conv['x'].shape} {window}")


def test_conv_add_resnet_pairs(libs):
    """resnet's three CONV_2D + ADD pairs, on the interpreter's intermediate tensors, with the
    conv result in the position the ADD really has it."""
    path = MODELS / "pretrainedResnet_quant.tflite"
    if not path.exists():
        pytest.skip(f"{path} not found (the MLPerf Tiny models live in ../shared/models)")
    graph = load_tflite(path)
    interpreter = Interpreter(graph)
    rng = np.random.default_rng(8)
    inputs = [gb.random_values(rng, t.shape, t.dtype) for t in interpreter.input_tensors]
    _, values = interpreter.run(inputs, intermediates=True)
    producer = {out: i for i, op in enumerate(graph.ops) for out in op.outputs}
    pairs = 0
    for add_index, add_op in enumerate(graph.ops):
        if add_op.kind != "ADD":
            continue
        for position, name in enumerate(add_op.inputs):
            conv_index = producer.get(name)
            if conv_index is None or graph.ops[conv_index].kind != "CONV_2D":
                continue
            conv_op = graph.ops[conv_index]
            conv_p, add_p = interpreter.prepared[conv_index], interpreter.prepared[add_index]
            x, w = values[conv_op.inputs[0]], graph[conv_op.inputs[1]].data
            bias = (graph[conv_op.inputs[2]].data
                    if len(conv_op.inputs) > 2 and conv_op.inputs[2] else None)
            skip = values[add_op.inputs[1 - position]]
            check_conv_add(libs, conv_p, add_p, x, w, bias, skip, position, conv_op.name)
            # and the fused kernel's result is the ADD's output the interpreter computed
            got = run_c_conv_add(libs["dsp"], conv_p, add_p, x, w, bias, skip, position)
            assert got.tobytes() == values[add_op.outputs[0]].tobytes()
            pairs += 1
    assert pairs == 6  # every ADD input of resnet's three ADDs is a conv output


# --- the four MLPerf Tiny models -----------------------------------------------------------------

MODEL_FILES = ["vww_96_int8.tflite", "kws_ref_model.tflite", "pretrainedResnet_quant.tflite",
               "ad01_int8.tflite"]
CONV_KINDS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


@pytest.mark.slow
@pytest.mark.parametrize("model", MODEL_FILES)
def test_mlperf_layers(libs, model):
    """Every conv/depthwise/FC op of the model, on the interpreter's intermediate tensors for a
    random input, equals the interpreter's output (depthwise also in place where the mode's
    static conditions hold)."""
    path = MODELS / model
    if not path.exists():
        pytest.skip(f"{path} not found (the MLPerf Tiny models live in ../shared/models)")
    graph = load_tflite(path)
    interpreter = Interpreter(graph)
    rng = np.random.default_rng(5)
    inputs = [gb.random_values(rng, t.shape, t.dtype) for t in interpreter.input_tensors]
    _, values = interpreter.run(inputs, intermediates=True)
    checked = 0
    for op, prepared in zip(graph.ops, interpreter.prepared):
        if op.kind not in CONV_KINDS:
            continue
        x, w = values[op.inputs[0]], graph[op.inputs[1]].data
        bias = graph[op.inputs[2]].data if len(op.inputs) > 2 and op.inputs[2] else None
        expected = values[op.outputs[0]]
        modes = [False]
        if op.kind == "DEPTHWISE_CONV_2D" and prepared.depth_multiplier == 1 and (
                expected.shape[1] * expected.shape[2] <= x.shape[1] * x.shape[2]):
            modes.append(True)
        if op.kind == "CONV_2D" and pointwise_inplace_holds(prepared, x.shape, w.shape):
            modes.append(True)
        for variant, lib, eb in variants(libs, op.kind):
            for inplace in modes:
                scratch = planned_scratch(op, graph, inplace)
                for paired in paired_options(prepared, x.shape, w.shape, eb, inplace, scratch):
                    got = run_c(lib, prepared, x, w, bias, inplace=inplace,
                                with_effective_bias=eb, scratch_bytes=scratch, paired=paired)
                    assert got.tobytes() == expected.tobytes(), (
                        f"{model} {op.kind} {op.name!r} ({variant}, eb={eb}, inplace={inplace},"
                        f" paired={paired})")
        checked += 1
    assert checked > 0


# --- the real DSP instructions, on Unicorn's Cortex-M4 -------------------------------------------

def _bench_module():
    from conftest import bench_module

    return bench_module("kernels_conv")


@pytest.mark.slow
@pytest.mark.parametrize("model", ["ad01_int8.tflite", "kws_ref_model.tflite"])
def test_mlperf_layers_on_cortex_m4(model):
    """Every conv/depthwise/FC layer built with arm-none-eabi-gcc for the Cortex-M4 (the
    SXTB16/SMLAD path) and run on Unicorn: outputs byte-equal to the interpreter's, and the
    instruction counts are real (non-zero, and the portable build runs more of them)."""
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not found: cannot build for the Cortex-M4")
    path = MODELS / model
    if not path.exists():
        pytest.skip(f"{path} not found (the MLPerf Tiny models live in ../shared/models)")
    bench = _bench_module()
    layers = bench.model_layers(load_tflite(path))
    dsp = bench.measure_layers(layers)
    portable = bench.measure_layers(layers, portable=True)
    assert all(row["bit_exact"] for row in dsp + portable), [
        (row["name"], row["bit_exact"]) for row in dsp + portable]
    assert all(row["instructions"] > 0 for row in dsp)
    assert sum(r["instructions"] for r in dsp) < sum(r["instructions"] for r in portable)


def _shim_library(tmp_path, source: str) -> ctypes.CDLL:
    """A host shared library of one C source over the kernel headers."""
    shim = tmp_path / "shim.c"
    shim.write_text(source)
    lib_path = tmp_path / "libshim.so"
    subprocess.run(["gcc", "-std=c99", "-O2", "-fPIC", "-shared", f"-I{KERNELS}", str(shim),
                    "-o", str(lib_path)], check=True, capture_output=True, text=True)
    return ctypes.CDLL(str(lib_path))


def test_mbqm_nonneg_equals_reference(tmp_path):
    """ek_mbqm_nonneg (the conv kernels' requantisation) against edgekit.fixedpoint's
    MultiplyByQuantizedMultiplier on extreme and random accumulators, multipliers and shifts."""
    if shutil.which("gcc") is None:
        pytest.skip("host gcc not found")
    from edgekit import fixedpoint as fp
    lib = _shim_library(tmp_path, '#include "ek_fixedpoint.h"\n'
                        "void run(const int32_t *x, const int32_t *m, const int32_t *s, int32_t *y,"
                        " int n) { for (int i = 0; i < n; ++i) y[i] = ek_mbqm_nonneg(x[i], m[i],"
                        " s[i]); }\n")
    rng = np.random.default_rng(23)
    n = 200_000
    edges = np.array([-(1 << 31), (1 << 31) - 1, -1, 0, 1, 1 << 30, -(1 << 30)], np.int64)
    x = np.concatenate([edges.repeat(40), rng.integers(-(1 << 31), 1 << 31, n)])
    multipliers = np.concatenate([np.tile([0, 1 << 30, (1 << 31) - 1, 1518500250], 70),
                                  rng.integers(1 << 30, 1 << 31, n)])
    shifts = np.concatenate([np.tile(np.arange(-31, 9), 7), rng.integers(-31, 8, n)])
    # a left shift may wrap x (as TFLite's does); keep the cases the reference defines the same way
    x, multipliers, shifts = (_i32(a[:min(x.size, multipliers.size, shifts.size)])
                              for a in (x, multipliers, shifts))
    y = np.zeros_like(x)
    lib.run(_ptr(x, ctypes.c_int32), _ptr(multipliers, ctypes.c_int32),
            _ptr(shifts, ctypes.c_int32), _ptr(y, ctypes.c_int32), ctypes.c_int(x.size))
    expected = fp.multiply_by_quantized_multiplier(x, multipliers, shifts)
    assert np.array_equal(y.astype(np.int64), expected)


@pytest.mark.parametrize("shortest", [2, 1])
def test_requant_fast_forms_equal_reference(tmp_path, shortest):
    """ek_requant_fast in both forms against edgekit.fixedpoint's MultiplyByQuantizedMultiplier
    plus the output offset: the fast form (offset in k) for right shifts `shortest`-23, the
    wide form (offset added after) for `shortest`-31, on extreme and random accumulators,
    multipliers and offsets; `shortest` 1 is the int4 kernels' build (EK_REQUANT_SHORTEST: a
    right shift of 1 is common in int4 layers, whose weight scales are about 18x int8's), 2 the
    others'. Each build refuses the shifts below its shortest."""
    if shutil.which("gcc") is None:
        pytest.skip("host gcc not found")
    from edgekit import fixedpoint as fp
    lib = _shim_library(
        tmp_path, f"#define EK_REQUANT_SHORTEST {shortest}\n" '#include "ek_conv_common.h"\n'
        "void run(const int32_t *x, const int32_t *m, const int32_t *s, const int32_t *o,"
        " int32_t *fast, int32_t *wide, int n) { for (int i = 0; i < n; ++i) {"
        " if (ek_requant_fast_applies(m[i], s[i])) fast[i] = ek_requant_fast(x[i], m[i],"
        " ek_requant_fast_k(s[i], o[i]), -s[i] - 1);"
        " if (ek_requant_wide_applies(m[i], s[i])) wide[i] = ek_requant_fast(x[i], m[i],"
        " ek_requant_wide_k(s[i]), -s[i] - 1) + o[i]; } }\n")
    rng = np.random.default_rng(29)
    n = 300_000
    edges = np.array([-(1 << 31), (1 << 31) - 1, -1, 0, 1, 1 << 30, -(1 << 30)], np.int64)
    x = np.concatenate([np.tile(edges, 31 * 4), rng.integers(-(1 << 31), 1 << 31, n)])
    m = np.concatenate([np.repeat([0, 1 << 30, (1 << 31) - 1, 1518500250], 31 * 7),
                        rng.integers(1 << 30, 1 << 31, n)])
    s = np.concatenate([np.tile(-np.arange(1, 32), 7 * 4), rng.integers(-31, 0, n)])
    o = np.concatenate([np.tile([-128, 127, 0, -5, 3, 100, -77], 31 * 4),
                        rng.integers(-128, 128, n)])
    x, m, s, o = (_i32(a) for a in (x, m, s, o))
    fast, wide = np.full_like(x, 12345), np.full_like(x, 12345)
    lib.run(*(_ptr(a, ctypes.c_int32) for a in (x, m, s, o, fast, wide)), ctypes.c_int(x.size))
    expected = fp.multiply_by_quantized_multiplier(x, m, s) + o.astype(np.int64)
    takes = s <= -shortest
    takes_fast = takes & (s >= -23)
    assert np.array_equal(fast[takes_fast].astype(np.int64), expected[takes_fast])
    assert np.array_equal(wide[takes].astype(np.int64), expected[takes])
    assert (fast[~takes] == 12345).all() and (wide[~takes] == 12345).all()


def _tiny_scale_channels(p, rng, bias: np.ndarray):
    """``p`` (prepared) with channels of tiny scale, as trained models have: right shifts of
    24-31 (a nearly dead channel) and a zero multiplier with TFLite's shift 0, beside ordinary
    ones; and a bias large enough that the tiny channels' outputs are not all their offset."""
    c = len(p.multipliers)
    shifts = np.asarray(p.shifts, np.int64).copy()
    multipliers = np.asarray(p.multipliers, np.int64).copy()
    tiny = rng.permutation(c)[:max(1, c // 2)]
    shifts[tiny] = rng.integers(-31, -23, tiny.size)
    multipliers[tiny[0]], shifts[tiny[0]] = 0, 0
    bias = np.asarray(bias, np.int64).copy()
    bias[tiny] = rng.integers(-(1 << 30), 1 << 30, tiny.size)
    return dataclasses.replace(p, multipliers=multipliers, shifts=shifts), bias


@pytest.mark.parametrize("case", [
    dict(in_shape=(1, 6, 5, 16), c_out=9, kernel=(1, 1), inplace=True, activation="NONE"),
    dict(in_shape=(1, 6, 5, 16), c_out=9, kernel=(1, 1), inplace=True, activation="RELU"),
    dict(in_shape=(1, 5, 6, 8), c_out=24, kernel=(1, 1), inplace="backward", activation="NONE"),
    dict(in_shape=(1, 7, 7, 8), c_out=7, kernel=(3, 3), inplace=False, activation="NONE"),
    dict(in_shape=(1, 7, 7, 8), c_out=6, kernel=(3, 3), inplace=False, activation="RELU6"),
    dict(in_shape=(1, 9, 9, 3), c_out=8, kernel=(3, 3), inplace=False, activation="NONE"),
])
def test_tiny_scale_channels_take_the_wide_requantisation(libs, case):
    """Layers with right shifts over 23 and zero multipliers (vww's later 1x1 layers): the two-
    pixel paths' wide modes (and the generator's shift for a zero multiplier) give the
    reference's bytes, clamped to all of int8 (SSAT) and to a ReLU's range."""
    rng = np.random.default_rng(sum(case["in_shape"]) * case["c_out"])
    graph = gb.conv2d(rng, in_shape=case["in_shape"], out_channels=case["c_out"],
                      kernel=case["kernel"], stride=(1, 1), padding="SAME"
                      if case["kernel"] != (1, 1) else "VALID", activation=case["activation"])
    op = graph.ops[0]
    prepared = reference.prepare(op, graph)
    prepared, bias = _tiny_scale_channels(prepared, rng, graph["bias"].data)
    assert requant_needs_wide(prepared) and not requant_fast_everywhere(
        prepared.multipliers, kernel_shifts(prepared.multipliers, prepared.shifts))
    w = graph["w"].data
    inplace = case["inplace"]
    scratch = planned_scratch(op, graph, inplace)
    for _ in range(3):
        x = gb.random_values(rng, graph["x"].shape, graph["x"].dtype)
        expected = reference.run_op(prepared, [x, w, bias])
        assert len(np.unique(expected)) > 2
        for variant, lib, eb in variants(libs, "CONV_2D"):
            if inplace and not eb:
                continue  # the generator gives an in-place 1x1 its effective bias
            for paired in paired_options(prepared, x.shape, w.shape, eb, inplace, scratch):
                got = run_c(lib, prepared, x, w, bias, inplace=inplace, with_effective_bias=eb,
                            scratch_bytes=scratch, paired=paired)
                assert got.tobytes() == expected.tobytes(), (
                    f"{variant} eb={eb} paired={paired}:"
                    f" {int((got != expected).sum())} of {expected.size} differ")
