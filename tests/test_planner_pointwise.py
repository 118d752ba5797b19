"""In-place 1x1 convolution (``pointwise_inplace`` forward, ``pointwise_inplace_backward``):
the static condition equals a byte-level simulation of the kernel's access order, plans use it
only when exact, and hand graphs run bit-exact inside the planned arena."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgekit.interpreter import Interpreter
from edgekit.ir import Quantization, Tensor
from edgekit.planner import plan, scratch_bytes
from edgekit.planner.inplace import inplace_candidates, pointwise_fits_in_place

from planner_graphs import act, graph, op
from test_planner_arena import run_in_arena


def _kernel_order_is_safe(out_h, out_w, out_c, in_w, in_c, stride_h, stride_w, *, backward,
                          group) -> bool:
    """Simulate the kernel on bytes: the buffer starts with input pixel ids; pixels are
    processed in groups (read every input pixel of the group, then write its outputs); any
    read of a byte no longer holding its input pixel is a failure."""
    in_h = (out_h - 1) * stride_h + 1
    pixels = out_h * out_w
    memory = np.full(max(in_h * in_w * in_c, pixels * out_c), -1, dtype=np.int64)
    memory[:in_h * in_w * in_c] = np.repeat(np.arange(in_h * in_w), in_c)
    starts = list(range(0, pixels, group))
    for first in (reversed(starts) if backward else starts):
        members = list(range(first, min(first + group, pixels)))
        for p in members:
            row, col = divmod(p, out_w)
            src = row * stride_h * in_w + col * stride_w
            if not np.all(memory[src * in_c:(src + 1) * in_c] == src):
                return False
        for p in members:
            memory[p * out_c:(p + 1) * out_c] = -2  # output bytes
    return True


SHAPES = list(itertools.product((1, 2, 3), (1, 3, 4), (1, 2, 3, 5), (1, 2, 3, 5), (1, 2)))


@pytest.mark.parametrize("backward", [False, True])
def test_condition_is_exactly_the_kernel_access_order(backward):
    seen = set()
    for out_h, out_w, in_c, out_c, stride in SHAPES:
        in_w = (out_w - 1) * stride + 1 + (stride - 1)  # includes a column the kernel skips
        args = (out_h, out_w, out_c, in_w, in_c, stride, stride)
        fits = pointwise_fits_in_place(*args, backward=backward)
        seen.add(fits)
        # the condition is exactly "one pixel at a time never reads a clobbered byte" ...
        assert fits == _kernel_order_is_safe(*args, backward=backward, group=1), args
        # ... and it also covers the two-pixel groups the DSP path uses
        if fits:
            assert _kernel_order_is_safe(*args, backward=backward, group=2), args
    assert seen == {True, False}


def test_no_wider_output_always_fits_forward_and_wider_fits_backward_at_stride_one():
    for in_c, out_c in itertools.product((1, 3, 8, 16), repeat=2):
        assert pointwise_fits_in_place(5, 7, out_c, 7, in_c, 1, 1) == (out_c <= in_c)
        assert pointwise_fits_in_place(5, 7, out_c, 7, in_c, 1, 1, backward=True) == (
            out_c >= in_c)
    # resnet's 1x1 stride-2 16->32 widens, yet fits forward: it skips three input pixels in four
    assert pointwise_fits_in_place(16, 16, 32, 32, 16, 2, 2)


def _pw_graph(h=8, w=8, in_c=16, out_c=8, stride=1, pad=(0, 0, 0, 0), k=1, keep_input=False):
    out_h, out_w = (h - 1) // stride + 1, (w - 1) // stride + 1
    tensors = [act("x", 1, h, w, in_c), act("y", 1, out_h, out_w, out_c),
               Tensor("w", (out_c, k, k, in_c), "int8",
                      data=np.zeros((out_c, k, k, in_c), dtype=np.int8))]
    outputs = ["y", "x"] if keep_input else ["y"]
    ops = [op("CONV_2D", ["x", "w", None], ["y"], stride=(stride, stride), dilation=(1, 1),
              pad=pad, activation="NONE")]
    return graph(tensors, ops, ["x"], outputs)


POINTWISE = {"pointwise_inplace", "pointwise_inplace_backward"}


def _modes(g):
    o = g.ops[0]
    return [(m.name, o.inputs[p]) for m, p in inplace_candidates(o, g) if m.name in POINTWISE]


def test_pointwise_conditions():
    assert _modes(_pw_graph()) == [("pointwise_inplace", "x")]
    assert _modes(_pw_graph(in_c=8, out_c=16)) == [("pointwise_inplace_backward", "x")]
    assert _modes(_pw_graph(in_c=8, out_c=8)) == [("pointwise_inplace", "x"),
                                                 ("pointwise_inplace_backward", "x")]
    assert _modes(_pw_graph(in_c=16, out_c=32, stride=2)) == [("pointwise_inplace", "x")]
    assert _modes(_pw_graph(pad=(1, 1, 1, 1))) == []  # padded taps read the zero point
    assert _modes(_pw_graph(k=3)) == []  # a 3x3 window reads pixels the output overwrote


def test_pointwise_plan_shares_the_input_and_gets_its_scratch():
    g = _pw_graph()
    p = plan(g, alignment=1, inplace=POINTWISE)
    assert p.buffers["y"].alias_of == "x" and p.buffers["y"].inplace_mode == "pointwise_inplace"
    assert p.buffers["y"].offset == p.buffers["x"].offset
    assert p.scratch[0].size == scratch_bytes(g.ops[0], g, "pointwise_inplace") == 4 * 16
    assert p.scratch[0].offset % 4 == 0  # word loads, even with alignment=1
    assert p.arena_bytes == 8 * 8 * 16 + 64  # two pixels widened to int16
    wide = plan(_pw_graph(in_c=8, out_c=16), alignment=1, inplace=POINTWISE)
    assert wide.buffers["y"].inplace_mode == "pointwise_inplace_backward"
    assert wide.arena_bytes == 8 * 8 * 16 + 32  # the output's size, not input + output
    # still needed afterwards: out of place
    assert plan(_pw_graph(keep_input=True)).buffers["y"].alias_of is None
    # only the modes asked for
    only = plan(_pw_graph(), inplace={"elementwise"})
    assert only.buffers["y"].alias_of is None and only.inplace == {"elementwise"}


def _conv(name, x, y, in_c, out_c, rng, stride=1, k=1, activation="NONE"):
    w = Tensor(f"{name}_w", (out_c, k, k, in_c), "int8",
               Quantization(np.full(out_c, 0.02), np.zeros(out_c, dtype=np.int64), axis=0),
               rng.integers(-127, 128, size=(out_c, k, k, in_c), dtype=np.int8))
    b = Tensor(f"{name}_b", (out_c,), "int32",
               Quantization(np.full(out_c, 0.001), np.zeros(out_c, dtype=np.int64), axis=0),
               rng.integers(-800, 800, size=out_c, dtype=np.int32))
    pad = (k // 2,) * 4
    o = op("CONV_2D", [x, w.name, b.name], [y], stride=(stride, stride), dilation=(1, 1),
           pad=pad, activation=activation)
    return [w, b], o


def test_pointwise_chain_runs_bit_exact_in_the_arena():
    # forward (narrowing), backward (widening), forward strided (widening within the stride)
    rng = np.random.default_rng(5)
    q = Quantization.per_tensor(0.05, -3)
    acts = [Tensor("x", (1, 9, 9, 12), "int8", q), Tensor("a", (1, 9, 9, 5), "int8", q),
            Tensor("b", (1, 9, 9, 11), "int8", q), Tensor("c", (1, 5, 5, 20), "int8", q)]
    consts, ops = [], []
    for name, x, y, ci, co, s in [("p0", "x", "a", 12, 5, 1), ("p1", "a", "b", 5, 11, 1),
                                  ("p2", "b", "c", 11, 20, 2)]:
        t, o = _conv(name, x, y, ci, co, rng, stride=s)
        consts += t
        ops.append(o)
    g = graph(acts + consts, ops, ["x"], ["c"])
    p = plan(g, alignment=1, inplace=POINTWISE)
    modes = [p.buffers[n].inplace_mode for n in ("a", "b", "c")]
    assert modes == ["pointwise_inplace", "pointwise_inplace_backward", "pointwise_inplace"]
    for trial in range(3):
        x = [rng.integers(-128, 128, size=(1, 9, 9, 12), dtype=np.int8)]
        expected, values = Interpreter(g).run(x, intermediates=True)
        assert run_in_arena(p, x, values, seed=trial)[0].tobytes() == expected[0].tobytes()


def test_the_arena_run_catches_a_pointwise_order_that_is_not_exact():
    # widening 5->11 forward is not exact: force it and the simulated kernel must notice
    import dataclasses

    rng = np.random.default_rng(2)
    q = Quantization.per_tensor(0.05, 0)
    t, o = _conv("p", "x", "y", 5, 11, rng)
    g = graph([Tensor("x", (1, 4, 4, 5), "int8", q), Tensor("y", (1, 4, 4, 11), "int8", q), *t],
              [o], ["x"], ["y"])
    p = plan(g, alignment=1, inplace=POINTWISE)
    assert p.buffers["y"].inplace_mode == "pointwise_inplace_backward"
    buffers = dict(p.buffers)
    buffers["y"] = dataclasses.replace(buffers["y"], inplace_mode="pointwise_inplace")
    bad = dataclasses.replace(p, buffers=buffers)
    x = [rng.integers(-128, 128, size=(1, 4, 4, 5), dtype=np.int8)]
    _, values = Interpreter(g).run(x, intermediates=True)
    with pytest.raises(AssertionError, match="clobbered"):
        run_in_arena(bad, x, values)
