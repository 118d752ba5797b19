"""`--objective memory|speed|balanced`: the kernel cost model, the planner's exclusions, the
objectives' guarantees on the MLPerf Tiny models, and the CLI's flags and JSON."""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import pytest

import graph_builders as gb
from conftest import mlperf_path
from edgekit.cli import main
from edgekit.converters.int4_requant import requantize_weights
from edgekit.errors import PlanError, UsageError
from edgekit.kernel_costs import (COSTS_FILE, INT4_SUFFIX, cost_table, core_family, mode_penalty,
                                  variant)
from edgekit.planner import plan
from edgekit.planner.objective import (costly_modes, fastest_instructions, objective_plan,
                                      plan_costs, sram_budget)

MODELS = ("ad01", "kws", "resnet", "vww")
M4 = "cortex-m4"


@lru_cache(maxsize=None)
def _graph(name: str):
    from edgekit.converters.tflite_reader import load_tflite

    return load_tflite(mlperf_path(name))


@lru_cache(maxsize=None)
def _planned(name: str, objective: str, budget: int | None = None):
    from edgekit.firmware.codegen import firmware_plan

    return objective_plan(_graph(name), objective, cpu=M4, budget_bytes=budget,
                          planner=firmware_plan)


def test_the_cost_table_has_every_variant_fitted_with_its_error() -> None:
    data = json.loads(COSTS_FILE.read_text())
    assert data["generated_by"] == "bench/fit_kernel_costs.py"
    for family in ("dsp", "portable"):
        variants = data["families"][family]["variants"]
        int8 = ("conv", "conv_1x1", "conv_pointwise_inplace", "depthwise",
                "depthwise_channelwise", "conv_add", "fully_connected")
        for name in (*int8, "add", *(name + INT4_SUFFIX for name in int8)):
            model = variants[name]
            assert len(model["coefficients"]) == len(model["features"]) <= model["samples"]
            assert 0 <= model["mean_relative_error"] <= model["max_relative_error"]


def test_core_families() -> None:
    assert core_family("cortex-m4") == core_family("cortex-m7") == "dsp"
    assert core_family("cortex-m0plus") == core_family("cortex-m3") == "portable"
    assert core_family(None) == "dsp"
    with pytest.raises(UsageError, match="cortex-a53"):
        core_family("cortex-a53")


def test_variants_follow_the_kernel_each_mode_runs() -> None:
    rng = np.random.default_rng(0)
    dw = gb.depthwise_conv2d(rng, in_shape=(1, 20, 1, 32), kernel=(9, 1))
    conv = gb.conv2d(rng, in_shape=(1, 6, 6, 16), out_channels=8, kernel=(1, 1))
    assert variant(dw.ops[0], dw, None) == variant(dw.ops[0], dw, "conv_sliding") == "depthwise"
    assert variant(dw.ops[0], dw, "depthwise_channelwise") == "depthwise_channelwise"
    assert variant(conv.ops[0], conv, None) == "conv_1x1"
    assert variant(conv.ops[0], conv, "pointwise_inplace") == "conv_pointwise_inplace"
    packed = requantize_weights(conv, "4")  # the _s4 kernels: variants of their own
    assert variant(packed.ops[0], packed, "pointwise_inplace") == "conv_pointwise_inplace_s4"
    table = cost_table("dsp")
    assert mode_penalty(dw, 0, "conv_sliding", table) == 0  # the plain kernel, shifted


def test_the_four_channel_ring_is_a_variant_of_its_own() -> None:
    """An in-place 3x3 depthwise over whole groups of four channels whose ring fits runs the
    four-channel ring on DSP cores (`depthwise_surely_quad`): its own formula, and the int4
    twin, fitted on too few samples of its own, the mode's general one."""
    from edgekit.kernel_costs import op_instructions

    rng = np.random.default_rng(2)
    ring = gb.depthwise_conv2d(rng, in_shape=(1, 12, 12, 32), kernel=(3, 3))
    assert variant(ring.ops[0], ring, "depthwise_channelwise") == "depthwise_channelwise_quad"
    odd = gb.depthwise_conv2d(rng, in_shape=(1, 12, 12, 30), kernel=(3, 3))  # 30 % 4 != 0
    assert variant(odd.ops[0], odd, "depthwise_channelwise") == "depthwise_channelwise"
    packed = requantize_weights(ring, "4")
    assert variant(packed.ops[0], packed, "depthwise_channelwise") == "depthwise_channelwise_quad_s4"
    for family in ("dsp", "portable"):
        table = cost_table(family)
        assert "depthwise_channelwise_quad" in table
        for graph in (ring, odd, packed):
            assert op_instructions(graph.ops[0], graph, "depthwise_channelwise", table) > 0


def test_the_wake_word_depthwise_in_place_costs_more_than_the_plain_kernel() -> None:
    # the example: a tall, 1-wide depthwise kernel over a streaming window, where the
    # channel-by-channel copy outweighs a window of 9 MACs per output
    rng = np.random.default_rng(1)
    dw = gb.depthwise_conv2d(rng, in_shape=(1, 24, 1, 64), kernel=(9, 1))
    for family in ("dsp", "portable"):
        assert mode_penalty(dw, 0, "depthwise_channelwise", cost_table(family)) > 0
    assert (0, "depthwise_channelwise") in costly_modes(dw, cost_table("dsp"))


def test_excluded_modes_stay_out_of_the_plan() -> None:
    graph = _graph("vww")
    everything = plan(graph)
    used = {(i, everything.buffers[op.outputs[0]].inplace_mode) for i, op in enumerate(graph.ops)}
    used = {(i, m) for i, m in used if m}
    assert used
    index, mode = sorted(used)[0]
    without = plan(graph, exclude={index: {mode}})
    assert without.buffers[graph.ops[index].outputs[0]].inplace_mode != mode
    without.check()


@pytest.mark.parametrize("model", MODELS)
def test_speed_is_never_slower_and_memory_never_larger(model) -> None:
    memory, speed = _planned(model, "memory"), _planned(model, "speed")
    assert speed.costs["instructions"] <= memory.costs["instructions"]
    assert memory.plan.arena_bytes <= speed.plan.arena_bytes
    # no costly mode in the speed plan
    costly = costly_modes(_graph(model), cost_table("dsp"))
    assert not [(r["op"], r["mode"]) for r in speed.costs["ops"]
                if (r["op"], r["mode"]) in costly]
    assert speed.costs == plan_costs(speed.plan, cost_table("dsp"))


@pytest.mark.parametrize("model", MODELS)
def test_the_default_fits_the_board_at_the_fastest_plan(model) -> None:
    from edgekit.boards import load_board

    board = load_board("nucleo-l4r5zi")
    budget = sram_budget(board.region_for("arena").size, 4096)
    balanced = _planned(model, "balanced", budget)
    assert balanced.fits and balanced.plan.arena_bytes <= budget
    # hundreds of KB free: the fastest plan fits, so the default is it
    assert balanced.applied == "speed"
    assert balanced.costs["instructions"] == _planned(model, "speed").costs["instructions"]


def test_a_tight_budget_allows_costly_modes_until_the_arena_fits() -> None:
    memory, speed = _planned("vww", "memory"), _planned("vww", "speed")
    if speed.plan.arena_bytes == memory.plan.arena_bytes:
        pytest.skip("speed and memory plan the same arena for vww with these costs")
    budget = (speed.plan.arena_bytes + memory.plan.arena_bytes) // 2
    balanced = _planned("vww", "balanced", budget)
    assert balanced.plan.arena_bytes <= budget and balanced.fits
    assert balanced.allowed_costly
    assert balanced.costs["instructions"] <= memory.costs["instructions"]
    below = _planned("vww", "balanced", memory.plan.arena_bytes - 1)
    assert below.applied == "memory" and not below.fits and "exceeds" in below.note


def test_balanced_without_a_board_plans_for_memory() -> None:
    result = _planned("kws", "balanced")
    assert result.applied == "memory" and "no --board" in result.note
    assert result.plan.arena_bytes == _planned("kws", "memory").plan.arena_bytes
    with pytest.raises(PlanError, match="fastest"):
        objective_plan(_graph("kws"), "fastest")


@pytest.mark.parametrize("model", MODELS)
def test_the_search_figure_bounds_the_speed_plan(model) -> None:
    # every op on its cheapest kernel: never above the speed plan, and equal to it where each
    # op's input dies at it (these chains)
    figure = fastest_instructions(_graph(model), M4)
    speed = _planned(model, "speed").costs["instructions"]
    assert 0 < figure <= speed + len(_graph(model).ops)
    assert figure >= 0.98 * speed


def test_cli_plan_objective_json_and_text(capsys) -> None:
    model = str(mlperf_path("kws"))
    assert main(["plan", model, "--objective", "speed", "--board", "nucleo-l4r5zi",
                 "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    objective = payload["objective"]
    assert objective["objective"] == objective["applied"] == "speed"
    assert objective["core_family"] == "dsp" and objective["fits_budget"] is True
    assert objective["arena_bytes"] == payload["arena_bytes"]
    modelled = [r["instructions"] for r in objective["ops"] if r["instructions"] is not None]
    assert objective["estimated_instructions"] == pytest.approx(sum(modelled), abs=len(modelled))
    assert main(["plan", model]) == 0
    text = capsys.readouterr().out
    assert "objective      balanced -> memory" in text and "est. instr" in text
    assert main(["plan", model, "--objective", "fast"]) != 0
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.skipif(__import__("shutil").which("arm-none-eabi-gcc") is None,
                    reason="arm-none-eabi-gcc not installed")
def test_cli_build_records_the_objective(tmp_path, capsys) -> None:
    out = tmp_path / "kws"
    assert main(["build", str(mlperf_path("kws")), "--board", "nucleo-l4r5zi", "-o", str(out),
                 "--objective", "speed", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    manifest = json.loads((out / "edgekit-build.json").read_text())
    assert manifest["objective"]["objective"] == payload["objective"]["objective"] == "speed"
    assert manifest["objective"]["arena_bytes"] == manifest["plan_arena_bytes"]
    assert manifest["objective"]["estimated_instructions"] == (
        _planned("kws", "speed").costs["instructions"])


def test_the_search_reports_each_planned_candidates_latency() -> None:
    import dataclasses
    import random
    import time

    from edgekit.boards import load_board
    from edgekit.nas.family import get_family
    from edgekit.nas.graph import graph_from_spec
    from edgekit.nas.mcunet import sample

    rng = random.Random(3)
    specs = [dataclasses.replace(sample(rng), patch_split=None, patch_n=1) for _ in range(3)]
    board = load_board("nucleo-l4r5zi")
    figures = [get_family("mcunet").memory(spec, board) for spec in specs]
    assert all(f["planned"] and f["instructions"] > 0 for f in figures)
    # wider or larger candidates cost more: the figures tell candidates apart
    assert len({f["instructions"] for f in figures}) == 3
    graph = graph_from_spec(specs[0])
    start = time.perf_counter()
    assert fastest_instructions(graph, board.cpu) == figures[0]["instructions"]
    assert time.perf_counter() - start < 0.5  # cheap beside the planner run it follows


def test_the_pareto_front_weighs_latency() -> None:
    from edgekit.nas.search import pareto_front

    rows = [{"trial": 0, "accuracy": 0.8, "peak_sram": 100, "flash": 300, "instructions": 9e6},
            {"trial": 1, "accuracy": 0.8, "peak_sram": 100, "flash": 300, "instructions": 7e6},
            {"trial": 2, "accuracy": 0.7, "peak_sram": 100, "flash": 300, "instructions": 5e6}]
    assert [r["trial"] for r in pareto_front(rows)] == [1, 2]
