"""The four MLPerf Tiny models: our arena is at most TFLite Micro's activation arena and within
1.02x of our own lower bound; every strategy's plan passes the overlap check."""

from __future__ import annotations

import pytest

from edgekit.converters.tflite_reader import load_tflite
from edgekit.planner import STRATEGIES, plan

from conftest import mlperf_path

#: TFLite Micro's activation arena for each model, as the host `tflite_micro` package reports it
#: (tensor arena minus the persistent part; see bench/plan_vs_tflm.py, which measures it)
TFLM_ACTIVATION_BYTES = {"vww": 73_728, "kws": 16_000, "resnet": 49_152, "ad01": 768}


@pytest.fixture(scope="module", params=sorted(TFLM_ACTIVATION_BYTES))
def model(request):
    return request.param, load_tflite(mlperf_path(request.param))


def test_arena_meets_tflm_and_the_lower_bound(model):
    short, g = model
    p = plan(g)
    p.check()
    assert p.arena_bytes <= TFLM_ACTIVATION_BYTES[short]
    assert p.arena_bytes <= 1.02 * p.lower_bound_bytes
    # the arena holds the model's input and output
    assert {*g.inputs, *g.outputs} <= set(p.buffers)
    assert p.lower_bound_bytes >= max(g[n].nbytes for n in (*g.inputs, *g.outputs))


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
@pytest.mark.parametrize("inplace", [True, False])
def test_every_strategy_and_setting_is_checked(model, strategy, inplace):
    _, g = model
    p = plan(g, strategy=strategy, inplace=inplace, alignment=16)
    p.check()
    assert p.lower_bound_bytes <= p.arena_bytes


def test_in_place_depthwise_is_used_on_vww_and_kws():
    for short in ("vww", "kws"):
        p = plan(load_tflite(mlperf_path(short)))
        modes = {b.inplace_mode for b in p.buffers.values()}
        assert "depthwise_channelwise" in modes and "reshape_view" in modes
        assert p.scratch  # one channel plane per in-place depthwise step


#: issue 4's peak-SRAM targets (0.65x TFLite Micro's measured peak SRAM: .data + .bss + stack)
#: and the share of them the arena may take, leaving the rest for the firmware's static data
#: and stack (kws <= 14.5 KB, resnet <= 35 KB of arena, as the issue's split puts it)
PEAK_SRAM_TARGET_BYTES = {"vww": 67_140, "kws": 16_554, "resnet": 37_187}
ARENA_BUDGET_BYTES = {"vww": 63_000, "kws": 14_500, "resnet": 35_000}


@pytest.mark.parametrize("short", sorted(ARENA_BUDGET_BYTES))
def test_arena_leaves_room_under_the_peak_sram_target(short):
    g = load_tflite(mlperf_path(short))
    p = plan(g)
    assert p.arena_bytes <= ARENA_BUDGET_BYTES[short] < PEAK_SRAM_TARGET_BYTES[short]
    # the new modes are what get there: without them the arena is TFLM's activation arena
    without = plan(g, inplace={"reshape_view", "elementwise", "depthwise_channelwise"})
    assert p.arena_bytes < without.arena_bytes
    if short == "resnet":
        assert len(p.fusions) == 3 and without.arena_bytes > ARENA_BUDGET_BYTES[short]
    if short == "kws":
        assert without.arena_bytes > ARENA_BUDGET_BYTES[short]
        assert {b.inplace_mode for b in p.buffers.values()} >= {"pointwise_inplace"}
