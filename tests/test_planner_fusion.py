"""A conv fused with its residual ADD (``conv_add_skip``): when it is legal, how the plan shows
it (no buffer for the conv output, the ADD right after the conv, the output over the skip),
that `check_plan` rejects broken fusions, and that fused plans run bit-exact in the arena."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgekit.converters.tflite_reader import load_tflite
from edgekit.errors import PlanError
from edgekit.interpreter import Interpreter
from edgekit.ir import Quantization, Tensor
from edgekit.planner import CONV_ADD_MODE, check_plan, fusion_candidates, plan

from conftest import mlperf_path
from planner_graphs import graph, op
from test_planner_arena import run_in_arena
from test_planner_pointwise import _conv

Q = Quantization.per_tensor(0.05, -2)
Q_SUM = Quantization.per_tensor(0.08, 4)


def _t(name, *shape, q=Q):
    return Tensor(name, tuple(shape), "int8", q)


def _residual(rng, *, skip_is_conv_input=False, extra_reader=False, broadcast=False,
              skip_is_output=False):
    """x -> conv0 -> s ; s -> conv1 -> a ; a -> conv2 -> y ; z = ADD(y, s) [-> conv3 -> out]."""
    c = 6
    tensors = [_t("x", 1, 7, 7, 3), _t("s", 1, 7, 7, c), _t("a", 1, 7, 7, c),
               _t("y", 1, 7, 7, c), _t("z", 1, 7, 7, c, q=Q_SUM), _t("out", 1, 7, 7, 4)]
    ops = []
    for name, x, out, ci, co, k in [("c0", "x", "s", 3, c, 3), ("c1", "s", "a", c, c, 3),
                                    ("c2", "s" if skip_is_conv_input else "a", "y", c, c, 3)]:
        consts, o = _conv(name, x, out, ci, co, rng, k=k, activation="RELU")
        tensors += consts
        ops.append(o)
    skip = "s"
    if broadcast:
        tensors.append(_t("s1", 1, 1, 1, c))
        ops.append(op("MEAN", ["s", None], ["s1"], axis=(1, 2), keep_dims=True))
        skip = "s1"
    ops.append(op("ADD", ["y", skip], ["z"], activation="RELU"))
    consts, o = _conv("c3", "z", "out", c, 4, rng, k=1)
    tensors += consts
    ops.append(o)
    outputs = ["out"]
    if extra_reader:
        outputs.append("y")
    if skip_is_output:
        outputs.append("s")
    return graph(tensors, ops, ["x"], outputs)


def test_fusion_candidates_follow_the_static_conditions():
    rng = np.random.default_rng(0)
    found = fusion_candidates(_residual(rng))
    assert list(found) == [3]
    (f,) = found[3]
    assert (f.conv, f.add, f.intermediate, f.skip, f.output, f.conv_input_position) == (
        2, 3, "y", "s", "z", 0)
    assert fusion_candidates(_residual(rng, skip_is_conv_input=True)) == {}  # z = conv(s) + s
    assert fusion_candidates(_residual(rng, extra_reader=True)) == {}  # y is a graph output
    assert fusion_candidates(_residual(rng, skip_is_output=True)) == {}  # s must survive
    assert fusion_candidates(_residual(rng, broadcast=True)) == {}  # the skip is broadcast


def test_fused_plan_shape_and_bit_exact_arena_run():
    rng = np.random.default_rng(1)
    g = _residual(rng)
    p = plan(g, alignment=1)
    assert list(p.fusions) == [2]
    f = p.fusions[2]
    assert p.fusion_of(3) is f and p.fusion_of(2) is f and p.fusion_of(1) is None
    assert "y" not in p.buffers  # the conv's output never exists
    assert p.buffers["z"].alias_of == "s" and p.buffers["z"].inplace_mode == CONV_ADD_MODE
    assert p.buffers["z"].offset == p.buffers["s"].offset
    step = p.schedule.index(2)
    assert p.schedule[step + 1] == 3
    unfused = plan(g, alignment=1, inplace={"elementwise", "pointwise_inplace"})
    assert not unfused.fusions and "y" in unfused.buffers
    # the fused step needs a and s only; unfused it needs a, s and y
    assert p.lower_bound_bytes < unfused.lower_bound_bytes
    for trial in range(3):
        x = [rng.integers(-128, 128, size=(1, 7, 7, 3), dtype=np.int8)]
        expected, values = Interpreter(g).run(x, intermediates=True)
        for chunk in (1, 6, 1000):
            got = run_in_arena(p, x, values, seed=trial, chunk=chunk)
            assert got[0].tobytes() == expected[0].tobytes()


def test_check_plan_rejects_broken_fusions():
    g = load_tflite(mlperf_path("resnet"))
    p = plan(g)
    assert len(p.fusions) == 3
    conv, f = next(iter(p.fusions.items()))
    # the ADD moved away from its conv
    schedule = list(p.schedule)
    schedule.remove(f.add)
    schedule.append(f.add)
    with pytest.raises(PlanError):
        check_plan(dataclasses.replace(p, schedule=schedule))
    # the intermediate given a buffer
    buffers = dict(p.buffers)
    buffers[f.intermediate] = dataclasses.replace(buffers[f.output], name=f.intermediate,
                                                  alias_of=None, inplace_mode=None)
    with pytest.raises(PlanError, match="has a buffer"):
        check_plan(dataclasses.replace(p, buffers=buffers))
    # the output not over the skip
    buffers = dict(p.buffers)
    buffers[f.output] = dataclasses.replace(buffers[f.output], alias_of=None, inplace_mode=None)
    with pytest.raises(PlanError, match="must overwrite skip"):
        check_plan(dataclasses.replace(p, buffers=buffers))
    # a fusion the graph does not allow (the ADD's other input as the skip's conv)
    bogus = dataclasses.replace(f, conv_input_position=1 - f.conv_input_position)
    with pytest.raises(PlanError, match="not a legal"):
        check_plan(dataclasses.replace(p, fusions={**p.fusions, conv: bogus}))


def test_arena_run_catches_a_conv_input_placed_over_the_skip():
    rng = np.random.default_rng(4)
    g = _residual(rng)
    p = plan(g, alignment=1)
    f = p.fusions[2]
    buffers = dict(p.buffers)
    buffers["a"] = dataclasses.replace(buffers["a"], offset=buffers[f.skip].offset)
    bad = dataclasses.replace(p, buffers=buffers)
    with pytest.raises(PlanError):
        check_plan(bad)
    x = [rng.integers(-128, 128, size=(1, 7, 7, 3), dtype=np.int8)]
    _, values = Interpreter(g).run(x, intermediates=True)
    with pytest.raises(AssertionError, match="clobbered"):
        run_in_arena(bad, x, values)


def test_resnet_fuses_every_residual_add_into_its_main_path_conv():
    g = load_tflite(mlperf_path("resnet"))
    p = plan(g)
    # the 3x3 conv of each block's main path is fused; the 1x1 shortcut conv runs first, in place
    assert {(f.conv, f.add) for f in p.fusions.values()} == {(2, 3), (5, 7), (9, 11)}
    assert p.buffers[g.ops[6].outputs[0]].inplace_mode == "pointwise_inplace"
    assert p.arena_bytes == p.lower_bound_bytes == 32 * 32 * 16 * 2


def test_unknown_mode_names_are_rejected():
    g = load_tflite(mlperf_path("ad01"))
    with pytest.raises(PlanError, match="unknown in-place mode"):
        plan(g, inplace={"elementwise", "sideways"})


def _random_conv_net(seed: int):
    """A random small CNN: plain convs (1x1/3x3, stride 1/2, narrowing or widening), depthwise
    convs and residual blocks (identity or 1x1 shortcut), so every new mode meets every other."""
    rng = np.random.default_rng(seed)
    h = w = int(rng.integers(4, 9))
    c = int(rng.integers(1, 9))
    tensors = [_t("in", 1, h, w, c)]
    ops = []
    counter = iter(range(1000))

    def conv(x, shape, out_c, k, stride, depthwise=False):
        nonlocal tensors
        _, ih, iw, ic = shape
        oh, ow = -(-ih // stride), -(-iw // stride)
        pad_h = max((oh - 1) * stride + k - ih, 0)
        pad_w = max((ow - 1) * stride + k - iw, 0)
        pad = (pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2)
        i = next(counter)
        y = f"t{i}"
        if depthwise:
            out_c = ic
            wt = Tensor(f"w{i}", (1, k, k, ic), "int8",
                        Quantization(np.full(ic, 0.02), np.zeros(ic, dtype=np.int64), axis=3),
                        rng.integers(-127, 128, size=(1, k, k, ic), dtype=np.int8))
        else:
            wt = Tensor(f"w{i}", (out_c, k, k, ic), "int8",
                        Quantization(np.full(out_c, 0.02), np.zeros(out_c, dtype=np.int64),
                                     axis=0),
                        rng.integers(-127, 128, size=(out_c, k, k, ic), dtype=np.int8))
        b = Tensor(f"b{i}", (out_c,), "int32",
                   Quantization(np.full(out_c, 0.001), np.zeros(out_c, dtype=np.int64), axis=0),
                   rng.integers(-800, 800, size=out_c, dtype=np.int32))
        tensors += [wt, b, _t(y, 1, oh, ow, out_c)]
        kind = "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"
        extra = {"depth_multiplier": 1} if depthwise else {}
        ops.append(op(kind, [x, wt.name, b.name], [y], stride=(stride, stride), dilation=(1, 1),
                      pad=pad, activation=str(rng.choice(["NONE", "RELU"])), **extra))
        return y, (1, oh, ow, out_c)

    x, shape = "in", (1, h, w, c)
    for _ in range(int(rng.integers(2, 6))):
        kind = rng.choice(["conv", "dw", "residual", "residual"])
        if kind == "conv":
            x, shape = conv(x, shape, int(rng.integers(1, 13)), int(rng.choice([1, 3])),
                            int(rng.choice([1, 1, 2])))
        elif kind == "dw":
            x, shape = conv(x, shape, 0, 3, int(rng.choice([1, 2])), depthwise=True)
        else:
            out_c = int(rng.integers(2, 13))
            stride = int(rng.choice([1, 2]))
            a, a_shape = conv(x, shape, out_c, int(rng.choice([1, 3])), stride)
            if rng.random() < 0.5:
                a, a_shape = conv(a, a_shape, out_c, 3, 1)
            if stride == 1 and shape[3] == out_c and rng.random() < 0.5:
                skip = x  # identity shortcut
            else:
                skip, _ = conv(x, shape, out_c, 1, stride)
            y = f"t{next(counter)}"
            tensors.append(_t(y, *a_shape, q=Q_SUM))
            inputs = [a, skip] if rng.random() < 0.5 else [skip, a]
            ops.append(op("ADD", inputs, [y], activation="NONE"))
            x, shape = y, a_shape
    return graph(tensors, ops, ["in"], [x])


@pytest.mark.parametrize("seed", range(60))
def test_random_conv_nets_run_bit_exact_in_the_planned_arena(seed):
    g = _random_conv_net(seed)
    rng = np.random.default_rng(seed)
    x = [rng.integers(-128, 128, size=g[g.inputs[0]].shape, dtype=np.int8)]
    expected, values = Interpreter(g).run(x, intermediates=True)
    for settings in (dict(), dict(reorder=False, alignment=1)):
        p = plan(g, **settings)
        got = run_in_arena(p, x, values, seed=seed, chunk=int(rng.integers(1, 40)))
        assert got[0].tobytes() == expected[0].tobytes()
        assert p.lower_bound_bytes <= plan(g, inplace=False, **settings).lower_bound_bytes
