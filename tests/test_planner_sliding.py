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
    assert p.arena_bytes == p.lower_bound_bytes == 36_864 + 48 * 48


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
