"""Patch-based inference (`edgekit.patching`): the rewritten graph computes the same bytes as the
layer-by-layer graph (and TFLite Micro), its regions are the receptive fields, the planner's
arena for it is checked, the generated C runs it bit-exact, and bad schedules are refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import graph_builders as gb
from conftest import mlperf_path
from edgekit import interpreter
from edgekit.cli import main
from edgekit.converters.tflite_reader import load_tflite
from edgekit.costs import graph_macs
from edgekit.errors import PatchError
from edgekit.ir import Graph, Op, Tensor
from edgekit.patching import (PatchSchedule, apply_patches, auto_patch, parse_patch,
                              peak_without_inputs, plan_patched, split_candidates, stage_ops,
                              tiles)
from edgekit.planner import plan
from oracle_runners import TflmRunner


class Net:
    """A random int8 CNN built op by op on its current tensor (random quantization, weights)."""

    def __init__(self, rng: np.random.Generator, shape=(1, 17, 15, 3)):
        self.rng = rng
        self.tensors = {"x": gb.activation_tensor(rng, "x", shape)}
        self.ops: list[Op] = []
        self.current = "x"

    def _absorb(self, single: Graph, inputs: dict[str, str]) -> str:
        index = len(self.ops)
        rename = {name: f"{name}{index}" for name in single.tensors if name not in inputs}
        rename.update(inputs)
        for name, t in single.tensors.items():
            if name not in inputs:
                self.tensors[rename[name]] = Tensor(rename[name], t.shape, t.dtype, t.quant, t.data)
        op = single.ops[0]
        self.ops.append(Op(op.kind, [None if n is None else rename[n] for n in op.inputs],
                           [rename[op.outputs[0]]], dict(op.attrs), name=f"{op.kind}{index}"))
        self.current = rename[op.outputs[0]]
        return self.current

    @property
    def shape(self):
        return self.tensors[self.current].shape

    def conv(self, channels: int, **options) -> str:
        return self._absorb(gb.conv2d(self.rng, in_shape=self.shape, out_channels=channels,
                                      **options), {"x": self.current})

    def depthwise(self, **options) -> str:
        return self._absorb(gb.depthwise_conv2d(self.rng, in_shape=self.shape, **options),
                            {"x": self.current})

    def pad(self, paddings) -> str:
        return self._absorb(gb.pad(self.rng, in_shape=self.shape, paddings=paddings),
                            {"x": self.current})

    def pool(self, **options) -> str:
        return self._absorb(gb.pool2d(self.rng, in_shape=self.shape, **options),
                            {"x": self.current})

    def add(self, skip: str) -> str:
        single = gb.add(self.rng, shape_a=self.shape, shape_b=self.shape, activation="RELU")
        return self._absorb(single, {"a": self.current, "b": skip})

    def relu(self) -> str:
        return self._absorb(gb.relu(self.rng, kind="RELU6", shape=self.shape),
                            {"x": self.current})

    def graph(self) -> Graph:
        return Graph(self.tensors.values(), self.ops, ["x"], [self.current], name="net")


def random_net(seed: int) -> Graph:
    """Strided, dilated, padded, SAME and VALID convolutions, depthwise, PAD, pools, a residual
    block and an element-wise op, then a head that cannot be patched (MEAN)."""
    rng = np.random.default_rng(seed)
    net = Net(rng, (1, int(rng.integers(12, 24)), int(rng.integers(12, 24)), 3))
    net.conv(8, stride=(2, 2), padding=str(rng.choice(["SAME", "VALID"])), activation="RELU6")
    skip = net.current
    net.conv(16, kernel=(1, 1))
    net.depthwise(dilation=(int(rng.integers(1, 3)),) * 2)
    net.conv(8, kernel=(1, 1))
    net.add(skip)
    net.pad(((0, 0), (0, 1), (1, 0), (0, 0)))
    net.depthwise(stride=(2, 2), padding="VALID", kernel=(3, 3))
    net.pool(kind=str(rng.choice(["AVERAGE_POOL_2D", "MAX_POOL_2D"])), filter_size=(3, 3),
             stride=(1, 1), padding="SAME")
    net.relu()
    net.conv(12, kernel=(5, 3), padding="SAME")
    tensors = dict(net.tensors)
    out = tensors[net.current]
    mean = Tensor("mean", (1, out.shape[3]), out.dtype, out.quant)
    ops = [*net.ops, Op("MEAN", [net.current], ["mean"], {"axes": (1, 2), "keep_dims": False})]
    return Graph([*tensors.values(), mean], ops, ["x"], ["mean"], name="net")


def _input(graph: Graph, seed: int = 0) -> np.ndarray:
    return gb.random_input(np.random.default_rng(seed), graph[graph.inputs[0]])


@pytest.mark.parametrize("seed", range(6))
def test_every_schedule_of_random_nets_is_bit_exact(seed):
    graph = random_net(seed)
    x = _input(graph, seed)
    expected, values = interpreter.Interpreter(graph).run([x], intermediates=True)
    splits = split_candidates(graph)
    # every op before the MEAN ends a patchable stage, except the three inside the residual
    # block (the skip tensor is read after them)
    assert len(splits) == 7
    checked = 0
    for split in splits:
        for n in (1, 2, 3, 4):
            if n > min(graph[split].shape[1:3]):
                continue
            try:
                patched = apply_patches(graph, PatchSchedule(split, n))
            except PatchError as err:  # small tiles that fall wholly in the PAD's padding
                assert "wholly in its padding" in str(err) and n > 2
                continue
            checked += 1
            got, patched_values = interpreter.Interpreter(patched).run([x], intermediates=True)
            assert got[0].tobytes() == expected[0].tobytes(), (split, n)
            assert patched_values[split].tobytes() == values[split].tobytes(), (split, n)
    assert checked >= 2 * len(splits)


def test_patched_graph_equals_tflite_micro_on_vww():
    graph = load_tflite(mlperf_path("vww"))
    oracle = TflmRunner(mlperf_path("vww"))
    splits = split_candidates(graph)
    rng = np.random.default_rng(3)
    for split, n in ((splits[3], 2), (splits[7], 4), (splits[9], 3)):
        patched = apply_patches(graph, PatchSchedule(split, n))
        runner = interpreter.Interpreter(patched)
        for _ in range(3):
            x = gb.random_input(rng, graph[graph.inputs[0]])
            assert runner.run([x])[0].tobytes() == oracle([x])[0].tobytes()


def test_receptive_field_of_a_hand_traced_chain():
    # 3x3 stride-2 SAME conv (pads 0 top, 1 bottom on 16 rows) then a 3x3 stride-1 SAME conv:
    # output tile rows [0, 4) of the 8-row map need rows [0, 5) of the first conv's output,
    # which need input rows [0, 2*4 + 3) = [0, 11); columns alike.
    net = Net(np.random.default_rng(0), (1, 16, 16, 3))
    first = net.conv(4, stride=(2, 2), padding="SAME")
    net.conv(4, padding="SAME")
    graph = net.graph()
    patched = apply_patches(graph, PatchSchedule(net.current, 2))
    by_name = {op.name: op for op in patched.ops}
    top_left = by_name["CONV_2D0@p0_0"]
    assert patched[top_left.inputs[0]].shape == (1, 11, 11, 3)
    assert top_left.attrs["pad"] == (0, 0, 0, 0)
    assert patched[top_left.outputs[0]].shape == (1, 5, 5, 4)
    second = by_name["CONV_2D1@p0_0"]
    assert second.inputs[0] == f"{first}@p0_0"
    assert second.attrs["pad"] == (1, 0, 1, 0)  # the top/left edge pads, the halo is data
    bottom_right = by_name["CONV_2D0@p1_1"]
    # its tile, rows [4, 8), needs rows [3, 8) of the first output, which need input rows
    # [6, 17): [6, 16) and one padding row below
    assert patched[bottom_right.inputs[0]].shape == (1, 10, 10, 3)
    assert bottom_right.attrs["pad"] == (0, 1, 0, 1)
    assert tiles((1, 8, 7, 4), 2) == [(0, 4, 0, 3), (0, 4, 3, 7), (4, 8, 0, 3), (4, 8, 3, 7)]
    # 4 tiles of a 4x4 output from 5x5 regions recompute the halo rows and columns
    assert graph_macs(patched) > graph_macs(graph)


def test_patches_cut_the_peak_of_a_net_with_a_large_first_map():
    net = Net(np.random.default_rng(1), (1, 64, 64, 3))
    net.conv(16, stride=(2, 2), padding="SAME")
    net.conv(48, kernel=(1, 1))
    net.depthwise(stride=(2, 2), padding="SAME")
    net.conv(8, kernel=(1, 1))
    split = net.current
    net.conv(16, stride=(2, 2), padding="SAME")
    graph = net.graph()
    base = plan(graph)
    patched = plan_patched(graph, PatchSchedule(split, 4))
    patched.plan.check()
    assert patched.plan.arena_bytes < base.arena_bytes / 2
    # the input (64*64*3) stays live through the patches; without it the ratio is larger
    assert peak_without_inputs(patched.plan) == patched.plan.lower_bound_bytes - 64 * 64 * 3
    found = auto_patch(graph, finalists=2)
    assert found.schedule is not None
    assert found.arena_bytes <= patched.plan.arena_bytes
    assert len(found.tried) == 2


def test_bad_schedules_are_refused_with_the_reason():
    graph = random_net(0)
    with pytest.raises(PatchError, match="not a tensor"):
        stage_ops(graph, "nope")
    with pytest.raises(PatchError, match="graph input"):
        stage_ops(graph, "x")
    with pytest.raises(PatchError, match="MEAN"):
        stage_ops(graph, "mean")
    with pytest.raises(PatchError, match="cannot cut it into"):
        apply_patches(graph, PatchSchedule(graph.ops[-2].outputs[0], 99))
    # the first conv's output is also the residual skip, read after the next op
    first = graph.ops[0].outputs[0]
    second = graph.ops[1].outputs[0]
    with pytest.raises(PatchError, match="also read outside the stage"):
        stage_ops(graph, second)
    assert first in split_candidates(graph) and second not in split_candidates(graph)
    with pytest.raises(PatchError, match="SPLIT:NxN"):
        parse_patch("4x4", graph)
    with pytest.raises(PatchError, match="n x n"):
        parse_patch("3:2x3", graph)
    with pytest.raises(PatchError, match="out of range"):
        parse_patch("99:2x2", graph)
    assert parse_patch("0:2x2", graph) == PatchSchedule(first, 2)
    assert parse_patch("none", graph) is None


def test_plan_cli_reports_the_patch_schedule(capsys):
    path = mlperf_path("vww")
    assert main(["plan", str(path), "--patch", "3:2x2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    patch = report["patch"]
    graph = load_tflite(path)
    assert patch["split"] == graph.ops[3].outputs[0] and patch["n"] == 2
    assert report["arena_bytes"] == patch["arena_bytes"]
    assert patch["macs"] > patch["base_macs"] == graph_macs(graph)
    assert patch["layer_by_layer_arena_bytes"] == plan(graph).arena_bytes
    assert patch["reduction"] == pytest.approx(patch["layer_by_layer_arena_bytes"]
                                               / patch["arena_bytes"])
    assert main(["plan", str(path), "--patch", "99:2x2"]) != 0
    assert "op index 99 out of range" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no host gcc")
def test_generated_c_runs_a_patched_net_bit_exact(tmp_path):
    from edgekit.firmware.codegen import firmware_plan, generate
    from edgekit.firmware.host_run import run_on_host

    graph = random_net(2)
    split = graph.ops[5].outputs[0]  # through the residual block and the PAD
    patched = apply_patches(graph, PatchSchedule(split, 3))
    memory = firmware_plan(patched, reorder=False)
    assert any(b.inplace_mode == "tile_insert" for b in memory.buffers.values())
    gen = generate(patched, memory)
    run = run_on_host(gen, tmp_path)
    assert run.outputs[0] == interpreter.run(graph, gen.test_inputs)[0].tobytes()
    _, values = interpreter.Interpreter(patched).run(gen.test_inputs, intermediates=True)
    for (step, name), got in zip(gen.traced, run.op_outputs, strict=True):
        assert got == values[name].tobytes(), (step, name)
