"""In-place modes: exactly when each applies, the scratch it brings, and how the plan shares
bytes."""

from __future__ import annotations

from edgekit.ir import DType
from edgekit.planner import plan, scratch_bytes
from edgekit.planner.inplace import inplace_candidates

from planner_graphs import act, graph, op


def _modes(g, index=0):
    o = g.ops[index]
    return [(m.name, o.inputs[p]) for m, p in inplace_candidates(o, g)]


def _dw_graph(h=8, w=8, c=4, oh=8, ow=8, oc=4, n=1, multiplier=1, out_dtype=DType.INT8):
    tensors = [act("x", n, h, w, c), act("y", n, oh, ow, oc, dtype=out_dtype)]
    ops = [op("DEPTHWISE_CONV_2D", ["x", None, None], ["y"], stride=(1, 1), dilation=(1, 1),
              pad=(1, 1, 1, 1), depth_multiplier=multiplier, activation="NONE")]
    return graph(tensors, ops, ["x"], ["y"])


def test_depthwise_in_place_conditions():
    assert _modes(_dw_graph()) == [("depthwise_channelwise", "x")]
    assert _modes(_dw_graph(oh=4, ow=4)) == [("depthwise_channelwise", "x")]  # stride 2
    assert _modes(_dw_graph(oh=10, ow=10)) == []  # output plane larger than the input plane
    assert _modes(_dw_graph(oc=8, multiplier=2)) == []  # channel c feeds two outputs
    assert _modes(_dw_graph(n=2)) == []
    assert _modes(_dw_graph(out_dtype=DType.INT16)) == []  # element sizes differ


def test_depthwise_in_place_plan_shares_bytes_and_gets_a_one_channel_scratch():
    tensors = [act("x", 1, 6, 6, 4), act("a", 1, 6, 6, 4), act("b", 1, 3, 3, 4),
               act("y", 1, 3, 3, 8)]
    ops = [op("CONV_2D", ["x", None, None], ["a"]),
           op("DEPTHWISE_CONV_2D", ["a", None, None], ["b"], stride=(2, 2), depth_multiplier=1),
           op("CONV_2D", ["b", None, None], ["y"])]
    g = graph(tensors, ops, ["x"], ["y"])
    p = plan(g, alignment=1)
    assert p.buffers["b"].alias_of == "a" and p.buffers["b"].offset == p.buffers["a"].offset
    assert p.buffers["b"].inplace_mode == "depthwise_channelwise"
    assert p.scratch[1].size == 36 == scratch_bytes(g.ops[1], g, "depthwise_channelwise")
    # step 1 holds a (144, shared with b) and the 36-byte plane; step 0: x + a = 288
    assert [s.live_bytes for s in p.profile] == [288, 180, 36 + 72]
    off = plan(g, alignment=1, inplace=False)
    assert off.buffers["b"].alias_of is None and not off.scratch
    assert off.profile[1].live_bytes == 144 + 36


def test_elementwise_in_place_conditions():
    tensors = [act("a", 1, 4, 4, 8), act("b", 1, 4, 4, 8), act("row", 1, 1, 1, 8),
               act("s", 1, 4, 4, 8), act("t", 1, 4, 4, 8)]
    ops = [op("ADD", ["a", "b"], ["s"]), op("ADD", ["row", "s"], ["t"])]
    g = graph(tensors, ops, ["a", "b", "row"], ["t"])
    assert _modes(g, 0) == [("elementwise", "a"), ("elementwise", "b")]
    assert _modes(g, 1) == [("elementwise", "s")]  # the broadcast operand is never overwritten
    p = plan(g, alignment=1)
    assert p.buffers["s"].alias_of == "a" and p.buffers["t"].alias_of == "s"
    assert p.arena_bytes == p.lower_bound_bytes == 128 + 128 + 8


def test_elementwise_needs_equal_element_sizes():
    tensors = [act("x", 1, 16), act("q", 1, 16, dtype=DType.INT16), act("r", 1, 16)]
    ops = [op("QUANTIZE", ["x"], ["q"]), op("QUANTIZE", ["q"], ["r"])]
    g = graph(tensors, ops, ["x"], ["r"])
    assert _modes(g, 0) == [] and _modes(g, 1) == []


def test_no_in_place_when_the_input_is_still_needed_or_is_a_graph_output():
    tensors = [act("x", 1, 16), act("r", 1, 16), act("y", 1, 16)]
    ops = [op("RELU", ["x"], ["r"]), op("ADD", ["x", "r"], ["y"])]
    g = graph(tensors, ops, ["x"], ["y"])
    p = plan(g)
    assert p.buffers["r"].alias_of is None  # x is read again by the ADD
    assert p.buffers["y"].alias_of in ("x", "r")  # both die at the ADD
    g2 = graph([act("x", 1, 16), act("r", 1, 16)], [op("RELU", ["x"], ["r"])], ["x"], ["x", "r"])
    assert plan(g2).buffers["r"].alias_of is None


def test_reshape_is_a_view_and_chains_of_aliases_share_one_offset():
    tensors = [act("x", 1, 4, 4, 2), act("a", 1, 4, 4, 2), act("f", 1, 32), act("r", 1, 32)]
    ops = [op("CONV_2D", ["x", None, None], ["a"]), op("RESHAPE", ["a"], ["f"]),
           op("RELU", ["f"], ["r"])]
    g = graph(tensors, ops, ["x"], ["r"])
    p = plan(g)
    assert p.buffers["f"].inplace_mode == "reshape_view"
    assert p.buffers["r"].inplace_mode == "elementwise"
    assert p.buffers["a"].offset == p.buffers["f"].offset == p.buffers["r"].offset
    assert p.arena_bytes == 64


def test_int4_tensors_are_never_elementwise_in_place():
    tensors = [act("x", 1, 16, dtype=DType.INT4), act("r", 1, 16, dtype=DType.INT4)]
    g = graph(tensors, [op("RELU", ["x"], ["r"])], ["x"], ["r"])
    assert _modes(g) == []


def test_mean_scratch_is_int32_accumulators_aligned_to_four():
    tensors = [act("x", 1, 4, 4, 3), act("m", 1, 1, 1, 3)]
    g = graph(tensors, [op("MEAN", ["x"], ["m"], axes=(1, 2), keep_dims=True)], ["x"], ["m"])
    p = plan(g, alignment=1)
    assert p.scratch[0].size == 12 and p.scratch[0].offset % 4 == 0
    assert p.lower_bound_bytes == 48 + 3 + 12
