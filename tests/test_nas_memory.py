"""Memory evaluation of candidates: `graph_from_spec` has the converter's layout, the fast
evaluator equals the real planner's arena exactly, and the patched bound never exceeds the
patched arena."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from edgekit.nas.graph import block_outputs, converted_block_outputs, graph_from_spec
from edgekit.nas.mcunet import mobilenet_v2_spec, sample
from edgekit.nas.memory import peak_sram, peak_sram_bound, peak_sram_fast, segment_keys
from edgekit.planner import plan


def _layer_by_layer(spec):
    return dataclasses.replace(spec, patch_split=None, patch_n=1)


def test_fast_evaluator_equals_the_planners_bound_on_random_specs(record_property):
    rng = random.Random(2024)
    specs = [_layer_by_layer(sample(rng)) for _ in range(32)] + [mobilenet_v2_spec(0.35, 144)]
    fast = [peak_sram_fast(s) for s in specs]
    plans = [plan(graph_from_spec(s)) for s in specs]
    assert fast == [p.lower_bound_bytes for p in plans]
    assert len(set(fast)) > 10  # the specs differ in memory, so agreement means something
    # the arena meets the bound but where a widened 1x1 scratch finds no gap: a few bytes over
    over = [p.arena_bytes - f for p, f in zip(plans, fast)]
    assert min(over) == 0 and sum(o == 0 for o in over) >= 0.75 * len(over)
    assert max(over) <= 64, over
    record_property("arena_over_fast_bytes", max(over))
    # the relation the search prunes with: the firmware's modes never plan smaller
    assert all(f <= peak_sram(s) for f, s in zip(fast, specs[:12]))


def test_graph_from_spec_matches_the_converted_model():
    torch = pytest.importorskip("torch")
    from edgekit.nas.convert import int8_graph
    from edgekit.nas.mcunet import to_torch
    from edgekit.nas.torch_model import recalibrate_bn

    for seed in (4, 9):
        spec = _layer_by_layer(sample(seed))
        torch.manual_seed(seed)
        calib = np.random.default_rng(seed).standard_normal(
            (4, 1, spec.resolution, spec.resolution)).astype(np.float32)
        converted = int8_graph(recalibrate_bn(to_torch(spec), calib), calib)
        direct = graph_from_spec(spec)
        assert [op.kind for op in converted.ops] == [op.kind for op in direct.ops]
        assert [converted[op.outputs[0]].shape for op in converted.ops] == \
            [direct[op.outputs[0]].shape for op in direct.ops]
        assert [op.attrs for op in converted.ops] == [op.attrs for op in direct.ops]
        assert converted.weights_bytes == direct.weights_bytes
        assert plan(converted).lower_bound_bytes == peak_sram_fast(spec) <= plan(converted).arena_bytes
        names = converted_block_outputs(converted, spec)
        assert len(names) == len(block_outputs(spec)) == len(spec.blocks())


def test_segments_cover_every_op():
    spec = sample(3)
    keys = segment_keys(spec)
    assert len(keys) == len(spec.blocks()) + 2


def test_patched_bound_is_below_the_patched_arena():
    pytest.importorskip("edgekit.patching")
    rng = random.Random(5)
    checked = 0
    while checked < 2:
        spec = sample(rng)
        if spec.patch_split is None or spec.resolution > 40:
            continue
        assert peak_sram_bound(spec) <= peak_sram(spec)
        checked += 1


def test_the_screen_strategy_bounds_the_build_arena_from_above():
    """The search screens with `SCREEN_STRATEGY` (faster): a candidate it admits must fit, so
    its arena is never below the build's; on these draws, layer by layer and patched, it is
    the same arena (what makes the screen's figure worth reporting)."""
    from edgekit.nas.memory import SCREEN_STRATEGY, firmware_memory

    rng = random.Random(11)
    specs = [sample(rng) for _ in range(8)]
    specs = [s for s in specs if s.resolution <= 48][:5]
    assert any(s.patch_split is not None for s in specs)
    screened = [firmware_memory(s, strategy=SCREEN_STRATEGY)[0] for s in specs]
    built = [peak_sram(s) for s in specs]
    assert all(a >= b for a, b in zip(screened, built))
    assert screened == built
