"""Run each MLPerf model INSIDE one numpy byte arena at the planned offsets, in the planned
schedule, and compare with the plain reference interpreter byte for byte: proof that the plan
never clobbers data that is still live.

The arena starts filled with noise, every op reads its inputs from arena views and writes its
output into the arena, scratch regions are overwritten with noise while their op runs, and
in-place depthwise steps follow the channel-by-channel access order of the documented kernel
(read plane c into the scratch, then write output channel c), checking that every plane read is
still the original input.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgekit import reference
from edgekit.converters.tflite_reader import load_tflite
from edgekit.interpreter import Interpreter
from edgekit.planner import MemoryPlan, plan
from edgekit.planner.inplace import pointwise_shape

from conftest import mlperf_path
from planner_graphs import act, graph, op


def _view(arena: np.ndarray, p: MemoryPlan, name: str) -> np.ndarray:
    t = p.graph[name]
    b = p.buffers[name]
    raw = arena[b.offset:b.offset + t.nbytes]
    return raw.view(t.dtype.numpy).reshape(t.shape)


def _depthwise_channelwise(arena, p, index, prepared, args, noise):
    """Write the op's output channel by channel over its input, as the in-place kernel does."""
    o = p.graph.ops[index]
    x_name, y_name = o.inputs[0], o.outputs[0]
    x_before = _view(arena, p, x_name).copy()
    expected = reference.run_op(prepared, args)  # each output channel depends on one plane only
    s = p.scratch[index]
    scratch = arena[s.offset:s.offset + s.size]
    scratch[:] = noise[:s.size]
    x_flat = lambda: _view(arena, p, x_name).reshape(-1)  # noqa: E731 - re-read every time
    channels = x_before.shape[-1]
    plane = x_before.shape[1] * x_before.shape[2]
    for c in range(channels):
        taken = x_flat()[c::channels].copy()
        scratch[:plane * taken.itemsize] = taken.view(np.uint8)
        assert np.array_equal(taken, x_before.reshape(-1)[c::channels]), (
            f"op {index}: input plane {c} was clobbered before the kernel read it")
        y = _view(arena, p, y_name).reshape(-1)
        y[c::channels] = expected.reshape(-1)[c::channels]


def _pointwise_inplace(arena, p, index, prepared, args, noise, group: int = 2,
                       backward: bool = False):
    """Write a 1x1 convolution's output over its input pixel by pixel, in increasing (or, with
    ``backward``, decreasing) order and in groups of ``group`` pixels, as the in-place kernel
    does: copy the group's input pixels into the scratch (checking they are still the original
    input), then write the group's output pixels."""
    o = p.graph.ops[index]
    x_name, y_name = o.inputs[0], o.outputs[0]
    x_before = _view(arena, p, x_name).copy()
    expected = reference.run_op(prepared, args).reshape(-1)  # pixel p depends on src(p) only
    # a FULLY_CONNECTED over tokens is a 1x1 convolution over its rows
    out_h, out_w, out_c, in_w, in_c, stride_h, stride_w = pointwise_shape(o, p.graph)
    s = p.scratch[index]
    scratch = arena[s.offset:s.offset + s.size]
    scratch[:] = noise[:s.size]
    x_offset, y_offset = p.buffers[x_name].offset, p.buffers[y_name].offset
    pixels = out_h * out_w
    starts = range(0, pixels, group)
    for first in (reversed(starts) if backward else starts):
        members = range(first, min(first + group, pixels))
        members = reversed(members) if backward else members
        members = list(members)
        for slot, pixel in enumerate(members):
            row, col = divmod(pixel, out_w)
            src = row * stride_h * in_w + col * stride_w
            taken = arena[x_offset + src * in_c:x_offset + (src + 1) * in_c].copy()
            assert taken.tobytes() == x_before.reshape(-1)[src * in_c:(src + 1) * in_c].tobytes(), (
                f"op {index}: input pixel {src} was clobbered before output pixel {pixel} read it")
            scratch[slot * in_c:(slot + 1) * in_c] = taken
        for pixel in members:
            arena[y_offset + pixel * out_c:y_offset + (pixel + 1) * out_c] = (
                expected[pixel * out_c:(pixel + 1) * out_c].view(np.uint8))


def _conv_sliding(arena, p, index, prepared, args):
    """Run a convolution whose output starts before its input (``conv_sliding``) as the plain
    kernel does: output pixels in increasing row-major order, each pixel's window read from
    the arena (checked against the original input) and its outputs written right away."""
    o = p.graph.ops[index]
    x_name, y_name = o.inputs[0], o.outputs[0]
    x_before = _view(arena, p, x_name).copy()
    expected = reference.run_op(prepared, args).reshape(-1).view(np.uint8)
    _, in_h, in_w, in_c = x_before.shape
    _, out_h, out_w, out_c = p.graph[y_name].shape
    _, k_h, k_w, _ = p.graph[o.inputs[1]].shape
    (s_h, s_w), (d_h, d_w) = o.attrs["stride"], o.attrs.get("dilation", (1, 1))
    pad_top, pad_left = o.attrs["pad"][0], o.attrs["pad"][2]
    x_offset, y_offset = p.buffers[x_name].offset, p.buffers[y_name].offset
    assert y_offset <= x_offset  # the output leads its input
    original = x_before.reshape(-1).view(np.uint8)
    for pixel in range(out_h * out_w):
        oy, ox = divmod(pixel, out_w)
        rows = [r for r in range(oy * s_h - pad_top, oy * s_h - pad_top + k_h * d_h, d_h)
                if 0 <= r < in_h]
        cols = [c for c in range(ox * s_w - pad_left, ox * s_w - pad_left + k_w * d_w, d_w)
                if 0 <= c < in_w]
        def check_window(when):
            for r in rows:
                for c in cols:
                    lo = (r * in_w + c) * in_c
                    assert (arena[x_offset + lo:x_offset + lo + in_c].tobytes()
                            == original[lo:lo + in_c].tobytes()), (
                        f"op {index}: input pixel ({r}, {c}) clobbered {when} output pixel"
                        f" {pixel} was written")

        check_window("before")
        arena[y_offset + pixel * out_c:y_offset + (pixel + 1) * out_c] = (
            expected[pixel * out_c:(pixel + 1) * out_c])
        check_window("as")  # the kernel may read its window again after storing a channel


def _conv_add_fused(arena, p, fusion, conv_prepared, add_prepared, args, chunk: int):
    """Run a conv fused with its residual ADD: each conv output element is added to the skip
    element at the same index and written over it, ``chunk`` elements at a time in increasing
    order (each skip chunk read just before it is overwritten); the conv input must survive."""
    g = p.graph
    x_name = g.ops[fusion.conv].inputs[0]
    x_before = _view(arena, p, x_name).copy()
    y = reference.run_op(conv_prepared, args)
    skip_before = _view(arena, p, fusion.skip).copy()
    pair = [y, skip_before] if fusion.conv_input_position == 0 else [skip_before, y]
    z = reference.run_op(add_prepared, pair).reshape(-1).view(np.uint8)
    offset = p.buffers[fusion.output].offset
    assert offset == p.buffers[fusion.skip].offset
    flat_skip = skip_before.reshape(-1).view(np.uint8)
    for start in range(0, z.size, chunk):
        end = min(start + chunk, z.size)
        assert arena[offset + start:offset + end].tobytes() == flat_skip[start:end].tobytes(), (
            f"conv op {fusion.conv}: skip elements {start}..{end} clobbered before the fused ADD")
        arena[offset + start:offset + end] = z[start:end]
    assert _view(arena, p, x_name).tobytes() == x_before.tobytes(), (
        f"conv op {fusion.conv}: its input {x_name!r} was clobbered by the fused ADD's output")


def run_in_arena(p: MemoryPlan, inputs: list[np.ndarray], reference_values: dict, seed: int = 0,
                 chunk: int = 64):
    """Execute the plan's schedule in one arena; check every op input against the reference."""
    g = p.graph
    rng = np.random.default_rng(seed)
    arena = rng.integers(0, 256, size=p.arena_bytes, dtype=np.uint8)
    noise = rng.integers(0, 256, size=max(p.arena_bytes, 1), dtype=np.uint8)
    interpreter = Interpreter(g)
    for name, value in zip(g.inputs, inputs):
        _view(arena, p, name)[...] = value
    for step, index in enumerate(p.schedule):
        o = g.ops[index]
        fusion = p.fusion_of(index)
        if fusion is not None and fusion.add == index:
            continue  # ran with its conv at the previous step
        args = []
        for name in o.inputs:
            if name is None:
                args.append(None)
            elif g[name].is_constant:
                args.append(g[name].data)
            else:
                value = _view(arena, p, name)
                assert np.array_equal(value, reference_values[name]), (
                    f"step {step}: input {name!r} of op {index} ({o.kind}) was clobbered")
                args.append(value.copy())
        out = o.outputs[0]
        if fusion is not None:
            _conv_add_fused(arena, p, fusion, interpreter.prepared[index],
                            interpreter.prepared[fusion.add], args, chunk)
            continue
        if p.buffers[out].inplace_mode == "depthwise_channelwise":
            _depthwise_channelwise(arena, p, index, interpreter.prepared[index], args, noise)
            continue
        if p.buffers[out].inplace_mode == "conv_sliding":
            _conv_sliding(arena, p, index, interpreter.prepared[index], args)
            continue
        if p.buffers[out].inplace_mode in ("pointwise_inplace", "pointwise_inplace_backward"):
            _pointwise_inplace(arena, p, index, interpreter.prepared[index], args, noise,
                               backward=p.buffers[out].inplace_mode.endswith("backward"))
            continue
        if index in p.scratch:  # the kernel may scribble anywhere in its scratch
            s = p.scratch[index]
            arena[s.offset:s.offset + s.size] = noise[:s.size]
        _view(arena, p, out)[...] = reference.run_op(interpreter.prepared[index], args)
    return [_view(arena, p, name).copy() for name in g.outputs]


@pytest.fixture(scope="module", params=["vww", "kws", "resnet", "ad01"])
def mlperf_graph(request):
    return load_tflite(mlperf_path(request.param))


@pytest.mark.parametrize("settings", [
    dict(strategy="best"),
    dict(strategy="greedy", inplace=False, reorder=False),
    dict(strategy="multi", alignment=16),
])
def test_mlperf_runs_bit_exact_inside_the_planned_arena(mlperf_graph, settings):
    g = mlperf_graph
    p = plan(g, **settings)
    rng = np.random.default_rng(7)
    for trial in range(2):
        x = [rng.integers(-128, 128, size=g[n].shape, dtype=np.int8) for n in g.inputs]
        expected, values = Interpreter(g).run(x, intermediates=True)
        got = run_in_arena(p, x, values, seed=trial)
        for e, o in zip(expected, got):
            assert o.dtype == e.dtype and o.tobytes() == e.tobytes()


def test_a_clobbering_plan_is_caught_by_the_arena_run():
    # the harness must fail on a bad layout: resnet's first output (the skip tensor) is live
    # until the first ADD; put the next convolution's output on top of it
    g = load_tflite(mlperf_path("resnet"))
    p = plan(g)
    skip, clobber = g.ops[0].outputs[0], g.ops[1].outputs[0]
    buffers = dict(p.buffers)
    buffers[clobber] = dataclasses.replace(buffers[clobber], offset=buffers[skip].offset)
    bad = dataclasses.replace(p, buffers=buffers)
    x = [np.random.default_rng(3).integers(-128, 128, size=g[g.inputs[0]].shape, dtype=np.int8)]
    _, values = Interpreter(g).run(x, intermediates=True)
    with pytest.raises(AssertionError, match="clobbered"):
        run_in_arena(bad, x, values)


def test_in_place_depthwise_stride_two_in_arena():
    # a hand graph with an in-place stride-2 depthwise and an in-place ADD after it
    from edgekit.ir import Quantization, Tensor

    q = Quantization.per_tensor(0.05, 3)
    rng = np.random.default_rng(1)
    w = Tensor("w", (1, 3, 3, 4), "int8", Quantization(np.full(4, 0.02), np.zeros(4), axis=3),
               rng.integers(-127, 128, size=(1, 3, 3, 4), dtype=np.int8))
    bias = Tensor("bias", (4,), "int32", Quantization(np.full(4, 0.001), np.zeros(4), axis=0),
                  rng.integers(-500, 500, size=4, dtype=np.int32))
    tensors = [Tensor("x", (1, 7, 7, 4), "int8", q), w, bias,
               Tensor("d", (1, 4, 4, 4), "int8", q), Tensor("e", (1, 4, 4, 4), "int8", q),
               Tensor("y", (1, 4, 4, 4), "int8", q)]
    ops = [op("DEPTHWISE_CONV_2D", ["x", "w", "bias"], ["d"], stride=(2, 2), dilation=(1, 1),
              pad=(1, 1, 1, 1), depth_multiplier=1, activation="NONE"),
           op("DEPTHWISE_CONV_2D", ["x", "w", "bias"], ["e"], stride=(2, 2), dilation=(1, 1),
              pad=(1, 1, 1, 1), depth_multiplier=1, activation="RELU"),
           op("ADD", ["d", "e"], ["y"], activation="NONE")]
    g = graph(tensors, ops, ["x"], ["y"])
    p = plan(g, alignment=1, inplace={"depthwise_channelwise", "elementwise"})
    assert p.buffers["e"].inplace_mode == "depthwise_channelwise"  # x dies at the second one
    assert p.buffers["y"].alias_of in ("d", "e")
    x = [rng.integers(-128, 128, size=(1, 7, 7, 4), dtype=np.int8)]
    expected, values = Interpreter(g).run(x, intermediates=True)
    assert run_in_arena(p, x, values)[0].tobytes() == expected[0].tobytes()
    # with every mode the depthwise slides instead (a 4-byte lead beats a 49-byte plane)
    sliding = plan(g, alignment=1)
    assert sliding.buffers["e"].inplace_mode == "conv_sliding"
    assert run_in_arena(sliding, x, values)[0].tobytes() == expected[0].tobytes()


def test_depthwise_with_a_larger_output_plane_is_not_in_place():
    # why "output plane no larger than the input plane": with OH*OW > H*W, output channel 0's
    # slot p*C for p >= H*W lies beyond the input buffer, i.e. over someone else's bytes
    tensors = [act("x", 1, 2, 2, 4), act("y", 1, 3, 3, 4)]
    g = graph(tensors, [op("DEPTHWISE_CONV_2D", ["x", None, None], ["y"], stride=(1, 1),
                           pad=(1, 1, 1, 1), depth_multiplier=1)], ["x"], ["y"])
    assert plan(g).buffers["y"].alias_of is None
