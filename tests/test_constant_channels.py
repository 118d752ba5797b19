"""Constant output channels (toolkit/constant_channels.py): which channels it finds, that their
output is the clamped offset for every input (the reference interpreter over random inputs and
the input range's corners), and that the generated firmware, whose multipliers are 0 there,
runs bit-exact (the host's emulated DSP loops, with the MAC loops skipped for pairs of such
channels, and the portable ones)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import graph_builders as gb
from conftest import HOST_KERNEL_DEFINES, mlperf_path
from generated_c import assert_matches_interpreter
from edgekit.converters.tflite_reader import load_tflite
from edgekit.firmware.codegen import generate
from edgekit.constant_channels import constant_channels
from edgekit.firmware.host_run import run_on_host
from edgekit.interpreter import Interpreter
from edgekit.ir import Graph

#: channels whose weight scale (and so the bias scale) shrinks by 2**20: every sum they reach
#: rounds to the zero point
DEAD = (0, 1, 4, 6, 7)


def _outputs_over_inputs(graph: Graph, rng) -> np.ndarray:
    """The op's outputs, [inputs, ..., channels], over random inputs and the range's corners."""
    shape = graph[graph.inputs[0]].shape
    inputs = [np.full(shape, -128, np.int8), np.full(shape, 127, np.int8),
              np.where(np.indices(shape).sum(axis=0) % 2 == 0, 127, -128).astype(np.int8)]
    inputs += [rng.integers(-128, 128, shape, dtype=np.int8) for _ in range(40)]
    interpreter = Interpreter(graph)
    return np.stack([interpreter.run([x])[0] for x in inputs])


@pytest.mark.parametrize("kind", ["conv", "pointwise", "depthwise"])
def test_the_shrunk_channels_and_only_they_are_constant(kind):
    rng = np.random.default_rng(3)
    if kind == "depthwise":
        graph = gb.depthwise_conv2d(rng, in_shape=(1, 6, 6, 8))
    else:
        k = 3 if kind == "conv" else 1
        graph = gb.conv2d(rng, in_shape=(1, 6, 6, 12), out_channels=8, kernel=(k, k))
    graph = gb.shrink_channels(graph, DEAD)
    op = graph.ops[0]
    found = constant_channels(op, graph, Interpreter(graph).prepared[0])
    assert sorted(np.flatnonzero(found)) == list(DEAD)
    y = _outputs_over_inputs(graph, rng)
    zero_point = int(graph["y"].quant.zero_point[0])
    assert (y[..., list(DEAD)] == zero_point).all()
    live = [c for c in range(8) if c not in DEAD]
    assert all(len(np.unique(y[..., c])) > 1 for c in live)  # the others vary


def test_a_relu_channel_that_never_turns_positive_is_constant():
    """A bias so negative that no input lifts the sum over zero: ReLU outputs the zero point
    for every input. A channel that always saturates high is constant too, but not at its
    offset: it keeps its multiplier."""
    rng = np.random.default_rng(4)
    graph = gb.conv2d(rng, in_shape=(1, 5, 5, 8), out_channels=4, kernel=(1, 1),
                      activation="RELU")
    bias = graph["bias"].data.copy()
    bias[1], bias[2] = -(1 << 29), 1 << 29
    graph = Graph([dataclasses.replace(t, data=bias) if t.name == "bias" else t
                   for t in graph.tensors.values()], graph.ops, graph.inputs, graph.outputs)
    found = constant_channels(graph.ops[0], graph, Interpreter(graph).prepared[0])
    assert list(found) == [False, True, False, False]
    y = _outputs_over_inputs(graph, rng)
    assert (y[..., 1] == int(graph["y"].quant.zero_point[0])).all()
    assert len(np.unique(y[..., 2])) == 1  # saturated, yet not at the offset: not folded


def test_a_sum_that_may_wrap_is_not_folded():
    rng = np.random.default_rng(5)
    graph = gb.shrink_channels(gb.conv2d(rng, in_shape=(1, 4, 4, 8), out_channels=8,
                                             kernel=(1, 1)), DEAD)
    bias = graph["bias"].data.copy()
    bias[0] = (1 << 31) - 100  # the int32 accumulator can wrap for channel 0
    graph = Graph([dataclasses.replace(t, data=bias) if t.name == "bias" else t
                   for t in graph.tensors.values()], graph.ops, graph.inputs, graph.outputs)
    found = constant_channels(graph.ops[0], graph, Interpreter(graph).prepared[0])
    assert not found[0] and found[1]


def test_vww_has_many_and_kws_none():
    """vww's MobileNet carries 818 CONV_2D channels (of 1,496) constant at their offset; kws
    none."""
    for name, expected in (("vww", 818), ("kws", 0)):
        graph = load_tflite(mlperf_path(name))
        prepared = Interpreter(graph).prepared
        count = sum(int(constant_channels(op, graph, p).sum())
                    for op, p in zip(graph.ops, prepared) if op.kind == "CONV_2D")
        assert count == expected, name


#: the pointwise layer's constant channels: three pairs (2, 3), (8, 9), (12, 13) and half of (6, 7)
POINTWISE_DEAD = (2, 3, 6, 8, 9, 12, 13)


def constant_pairs_graph(seed: int = 6) -> Graph:
    """A 3x3 CONV_2D, then a 1x1 one (16 -> 16, planned in place: the two-pixel loop) with the
    constant channels POINTWISE_DEAD."""
    rng = np.random.default_rng(seed)
    return gb.chain((1, 6, 6, 8), [
        lambda shape: gb.conv2d(rng, in_shape=shape, out_channels=16, kernel=(3, 3)),
        lambda shape: gb.shrink_channels(gb.conv2d(rng, in_shape=shape, out_channels=16,
                                                   kernel=(1, 1), padding="VALID"),
                                         POINTWISE_DEAD)], name="constant_pairs")


@pytest.mark.parametrize("variant", ["portable", "dsp"])
def test_firmware_with_constant_pairs_runs_bit_exact(variant, tmp_path):
    """The firmware's multipliers are 0 exactly on the constant channels, the build compiles the
    loops that skip pairs of them in, and the model runs bit-exact (on the host: the C loops,
    whose requantisation gives the offset for a multiplier of 0; the skipping assembly runs on
    the emulated boards, hil_tests/test_constant_channels_emulated.py)."""
    graph = constant_pairs_graph()
    gen = generate(graph, seed=1)
    pointwise = [(k, f) for k, f in gen.kernel_calls if "_pointwise_inplace" in k]
    assert len(pointwise) == 1
    multipliers = np.asarray(pointwise[0][1]["multipliers"])
    assert list(np.flatnonzero(multipliers == 0)) == list(POINTWISE_DEAD)
    assert "#define EK_PW_SKIP_PAIRS 1 " in gen.files["ek_model_config.h"]
    run = run_on_host(gen, tmp_path, defines=HOST_KERNEL_DEFINES[variant])
    assert_matches_interpreter(graph, gen, run)


def test_a_model_without_constant_pairs_leaves_the_skipping_loops_out():
    gen = generate(load_tflite(mlperf_path("kws")), seed=0)
    assert "#define EK_PW_SKIP_PAIRS 0 " in gen.files["ek_model_config.h"]
