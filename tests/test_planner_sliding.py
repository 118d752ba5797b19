"""``conv_sliding``: a convolution whose output starts ``lead`` bytes before its input, run by
the plain kernel in increasing pixel order. The lead is exactly the smallest one a byte-level
simulation of that order survives; plans use it where it pays; check_plan and the arena run
catch a lead that is too short."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from edgekit.converters.tflite_reader import load_tflite
from edgekit.errors import PlanError
from edgekit.interpreter import Interpreter
from edgekit.ir import Quantization, Tensor
from edgekit.planner import check_plan, plan
from edgekit.planner.inplace import SLIDING_MODE, sliding_lead_bytes

from conftest import mlperf_path
from planner_graphs import graph, op
from test_planner_arena import run_in_arena


def _conv_graph(in_h, in_w, in_c, out_c, k, stride, dilation, pad, rng=None):
    rng = rng or np.random.default_rng(0)
    eff = (k - 1) * dilation + 1
    out_h = (in_h + pad[0] + pad[1] - eff) // stride + 1
    out_w = (in_w + pad[2] + pad[3] - eff) // stride + 1
    q = Quantization.per_tensor(0.05, 1)
    w = Tensor("w", (out_c, k, k, in_c), "int8",
               Quantization(np.full(out_c, 0.03), np.zeros(out_c, dtype=np.int64), axis=0),
               rng.integers(-127, 128, size=(out_c, k, k, in_c), dtype=np.int8))
    tensors = [Tensor("x", (1, in_h, in_w, in_c), "int8", q), w,
               Tensor("y", (1, out_h, out_w, out_c), "int8", q)]
    o = op("CONV_2D", ["x", "w", None], ["y"], stride=(stride, stride),
           dilation=(dilation, dilation), pad=pad, activation="NONE")
    return graph(tensors, [o], ["x"], ["y"])


def _survives(g, lead: int) -> bool:
    """Byte simulation of the plain kernel with the output ``lead`` bytes before the input:
    each pixel's window must be intact before AND after its outputs are written (the channel
    loop may read the input again after storing a channel)."""
    x, y = g["x"], g["y"]
    _, in_h, in_w, in_c = x.shape
    _, out_h, out_w, out_c = y.shape
    o = g.ops[0]
    k = g["w"].shape[1]
    (s, _), (d, _) = o.attrs["stride"], o.attrs["dilation"]
    pad_top, pad_left = o.attrs["pad"][0], o.attrs["pad"][2]
    base = lead  # input at [lead, lead + in bytes), output from 0
    memory = np.full(lead + max(x.nbytes, y.nbytes) + 1, -1, dtype=np.int64)
    memory[base:base + x.nbytes] = np.repeat(np.arange(in_h * in_w), in_c)
    for pixel in range(out_h * out_w):
        oy, ox = divmod(pixel, out_w)
        window = [r * in_w + c
                  for r in range(oy * s - pad_top, oy * s - pad_top + k * d, d) if 0 <= r < in_h
                  for c in range(ox * s - pad_left, ox * s - pad_left + k * d, d)
                  if 0 <= c < in_w]

        def intact():
            return all(np.all(memory[base + i * in_c:base + (i + 1) * in_c] == i) for i in window)

        if not intact():
            return False
        memory[pixel * out_c:(pixel + 1) * out_c] = -2
        if not intact():
            return False
    return True


CASES = [c for c in itertools.product((3, 5), (1, 2, 4), (1, 3, 6), (1, 2, 3), (1, 2), (1, 2),
                                      (0, 1))]


@pytest.mark.parametrize("chunk", range(4))
def test_lead_is_the_smallest_the_kernel_order_survives(chunk):
    rng = np.random.default_rng(chunk)
    cases = CASES[chunk::4]
    for size, in_c, out_c, k, stride, dilation, padded in cases:
        p = (k - 1) * dilation // 2 if padded else 0
        if size + 2 * p < (k - 1) * dilation + 1:
            continue  # the window does not fit
        g = _conv_graph(size + 2, size, in_c, out_c, k, stride, dilation, (p, p, p, p), rng)
        lead = sliding_lead_bytes(g.ops[0], g)
        assert _survives(g, lead), (size, in_c, out_c, k, stride, dilation, padded)
        if lead > 0:
            assert not _survives(g, lead - 1), (size, in_c, out_c, k, stride, dilation, padded)


def test_vww_first_convolution_slides_over_the_camera_frame():
    g = load_tflite(mlperf_path("vww"))
    p = plan(g)
    first = g.ops[0]
    y = p.buffers[first.outputs[0]]
    assert y.inplace_mode == SLIDING_MODE and y.alias_of == first.inputs[0]
    lead = p.buffers[first.inputs[0]].offset - y.offset
    assert sliding_lead_bytes(first, g) == 102 and lead >= 102 and lead % 4 == 0
    # the 96x96x3 frame + 104 bytes instead of frame + 48x48x8 output
    assert p.profile[0].live_bytes == 27_648 + 104
    # the peak is now the widening 1x1 (8 -> 16 channels at 48x48) with its 32-byte scratch
    # (two input pixels widened to int16)
    assert p.lower_bound_bytes == 36_864 + 32 and p.arena_bytes <= p.lower_bound_bytes + 16
    kinds = {g.ops[i].kind for i in p.schedule
             if p.buffers.get(g.ops[i].outputs[0]) is not None
             and p.buffers[g.ops[i].outputs[0]].inplace_mode == SLIDING_MODE}
    assert kinds == {"CONV_2D", "DEPTHWISE_CONV_2D"}


def test_check_plan_and_the_arena_run_catch_a_short_lead():
    rng = np.random.default_rng(9)
    g = _conv_graph(9, 9, 3, 4, 3, 1, 1, (1, 1, 1, 1), rng)
    p = plan(g, alignment=1)
    assert p.buffers["y"].inplace_mode == SLIDING_MODE
    need = sliding_lead_bytes(g.ops[0], g)
    assert p.buffers["x"].offset - p.buffers["y"].offset >= need > 0
    x = [rng.integers(-128, 128, size=(1, 9, 9, 3), dtype=np.int8)]
    expected, values = Interpreter(g).run(x, intermediates=True)
    assert run_in_arena(p, x, values)[0].tobytes() == expected[0].tobytes()
    buffers = dict(p.buffers)
    buffers["y"] = dataclasses.replace(buffers["y"], offset=buffers["x"].offset - need + 1)
    short = dataclasses.replace(p, buffers=buffers)
    with pytest.raises(PlanError, match="needs at least"):
        check_plan(short)
    with pytest.raises(AssertionError, match="clobbered"):
        run_in_arena(short, x, values)


# --- the contract against the real C kernel -------------------------------------------------

def _sliding_layers():
    """(name, graph, op index) of convolutions the planner runs as conv_sliding: MLPerf layers
    and small random ones (padding, stride, dilation, narrowing and widening)."""
    layers = []
    for short in ("vww", "kws"):
        g = load_tflite(mlperf_path(short))
        p = plan(g)
        for index in p.schedule:
            out = g.ops[index].outputs[0]
            if out in p.buffers and p.buffers[out].inplace_mode == SLIDING_MODE:
                layers.append((f"{short}-op{index}", g, index))
    rng = np.random.default_rng(11)
    for i in range(8):
        k, stride, dilation = int(rng.choice([1, 3, 5])), int(rng.choice([1, 2])), int(
            rng.choice([1, 1, 2]))
        pad = (k - 1) * dilation // 2
        g = _conv_graph(int(rng.integers(7, 12)), int(rng.integers(7, 12)),
                        int(rng.integers(1, 9)), int(rng.integers(1, 17)), k, stride, dilation,
                        (pad, pad, pad, pad), rng)
        layers.append((f"random{i}", g, 0))
    return layers


@pytest.mark.parametrize("variant", ["portable", "dsp"])
def test_plain_c_kernel_runs_bit_exact_over_its_own_input_at_the_lead(variant):
    import ctypes

    from c_kernels import assert_no_undefined_behaviour, build_library
    from test_kernels_c_conv import SOURCES, VARIANTS, conv_params, effective_bias

    from edgekit import reference
    from edgekit.planner.problem import align_up

    lib = build_library(list(SOURCES), defines=[d[2:] for d in VARIANTS[variant]])
    rng = np.random.default_rng(3)
    layers = _sliding_layers()
    assert {name.split("-")[0] for name, _, _ in layers} >= {"vww", "kws"}
    for name, g, index in layers:
        o = g.ops[index]
        x_t, w_t, y_t = g[o.inputs[0]], g[o.inputs[1]], g[o.outputs[0]]
        bias = g[o.inputs[2]].data if len(o.inputs) > 2 and o.inputs[2] else None
        prepared = reference.prepare(o, g)
        lead = align_up(sliding_lead_bytes(o, g), 4)
        x = rng.integers(-128, 128, size=x_t.shape, dtype=np.int8)
        expected = reference.run_op(prepared, [x, w_t.data, bias])
        for with_eb in (False, True):
            if with_eb and prepared.filter_offset != 0:
                continue
            eb = effective_bias(prepared, w_t.data, bias) if with_eb else None
            params, keep = conv_params(prepared, x_t.shape, w_t.shape, eb)
            guard = 32
            buf = np.full(guard + max(lead + x_t.nbytes, y_t.nbytes) + guard, 0x5A, np.int8)
            buf[guard + lead:guard + lead + x_t.nbytes] = x.reshape(-1)
            w = np.ascontiguousarray(w_t.data, dtype=np.int8)
            b = None if bias is None else np.ascontiguousarray(bias, dtype=np.int32)
            base = buf.ctypes.data
            kernel = (lib.ek_conv2d_s8 if o.kind == "CONV_2D" else lib.ek_depthwise_conv2d_s8)
            kernel(ctypes.byref(params),
                             ctypes.cast(base + guard + lead, ctypes.POINTER(ctypes.c_int8)),
                             w.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)),
                             None if b is None else b.ctypes.data_as(
                                 ctypes.POINTER(ctypes.c_int32)),
                             ctypes.cast(base + guard, ctypes.POINTER(ctypes.c_int8)))
            assert_no_undefined_behaviour()
            got = buf[guard:guard + y_t.nbytes]
            assert got.tobytes() == expected.reshape(-1).tobytes(), (name, variant, with_eb)
            assert (buf[:guard] == 0x5A).all(), name  # nothing written before the output
