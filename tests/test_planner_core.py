"""Planner on hand-built graphs: lifetimes, hand-computed offsets, lower bound, greedy vs the
stronger strategies, alignment, and the overlap check catching bad plans."""

from __future__ import annotations

import dataclasses

import pytest

from edgekit.errors import PlanError
from edgekit.ir import DType
from edgekit.planner import STRATEGIES, plan
from edgekit.planner.offsets import arena_of, branch_and_bound, greedy_by_size, multi_order
from edgekit.planner.problem import Block, Rect, lifetimes_for, live_profile

from planner_graphs import act, chain, graph, op


def test_lifetimes_follow_the_schedule():
    g = chain([100, 200, 50, 10])
    assert lifetimes_for(g, [0, 1, 2]) == {"x0": (0, 0), "x1": (0, 1), "x2": (1, 2), "x3": (2, 2)}


def test_graph_output_lives_to_the_end_and_dead_output_only_at_its_step():
    tensors = [act("x", 1, 8), act("a", 1, 8), act("dead", 1, 8), act("y", 1, 8)]
    ops = [op("FULLY_CONNECTED", ["x", None, None], ["a"]),
           op("FULLY_CONNECTED", ["x", None, None], ["dead"]),
           op("FULLY_CONNECTED", ["x", None, None], ["y"])]
    g = graph(tensors, ops, ["x"], ["a", "y"])
    assert lifetimes_for(g, [0, 1, 2]) == {"x": (0, 2), "a": (0, 2), "dead": (1, 1), "y": (2, 2)}


def test_greedy_chain_hand_computed_offsets():
    # x0 (100) [0,0], x1 (200) [0,1], x2 (50) [1,1]; TFLM greedy: x1 first at 0, then x0 and x2
    # both above it (each overlaps x1 in time) at 200.
    p = plan(chain([100, 200, 50]), strategy="greedy", alignment=1, inplace=False, reorder=False)
    assert {n: b.offset for n, b in p.buffers.items()} == {"x0": 200, "x1": 0, "x2": 200}
    assert p.arena_bytes == 300
    assert [s.live_bytes for s in p.profile] == [300, 250]
    assert p.lower_bound_bytes == 300


def test_greedy_reuses_memory_of_dead_tensors():
    # x0 100 [0,0], x1 60 [0,1], x2 80 [1,2], x3 40 [2,2]: x1 at 0 after x0 (100 > 80 > 60?)
    p = plan(chain([100, 60, 80, 40]), strategy="greedy", alignment=1, inplace=False,
             reorder=False)
    # sorted by size: x0 (100) at 0; x2 (80) overlaps neither x0 -> 0; x1 (60) overlaps x0 and
    # x2 -> 100; x3 (40) overlaps x2 only -> 80.
    assert {n: b.offset for n, b in p.buffers.items()} == {"x0": 0, "x1": 100, "x2": 0, "x3": 80}
    assert p.arena_bytes == 160 == p.lower_bound_bytes


def _blocks(spec):
    return [Block(f"t{i}", (f"t{i}",), (Rect(size, first, last),), 1)
            for i, (size, first, last) in enumerate(spec)]


def test_greedy_is_beaten_by_the_stronger_strategies_hand_computed():
    # (size, first step, last step). Busiest step 3: 2 + 4 + 2 + 3 = 11 bytes.
    blocks = _blocks([(4, 2, 2), (2, 1, 3), (4, 2, 3), (2, 3, 3), (3, 3, 3)])
    assert max(live_profile(blocks, 4)) == 11
    # TFLM greedy: t0 -> 0, t2 -> 4 (above t0), t4 -> 0 (t0 is dead at step 3), t1 -> 8 (above
    # t0, t2 and t4), t3 -> 10: the 1-byte hole at [3, 4) is too small. Arena 12.
    assert greedy_by_size(blocks) == [0, 8, 4, 10, 0]
    assert arena_of(blocks, greedy_by_size(blocks)) == 12
    for strategy in (multi_order, branch_and_bound):
        assert arena_of(blocks, strategy(blocks, 11)) == 11


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_yields_a_checked_plan_no_smaller_than_the_bound(strategy):
    p = plan(chain([100, 60, 80, 40, 120, 8]), strategy=strategy)
    p.check()
    assert p.arena_bytes >= p.lower_bound_bytes


def test_unknown_strategy_and_bad_alignment_are_plan_errors():
    with pytest.raises(PlanError, match="strategy 'nope'"):
        plan(chain([4, 4]), strategy="nope")
    with pytest.raises(PlanError, match="power of two"):
        plan(chain([4, 4]), alignment=3)


def test_alignment_parameter_and_natural_alignment_of_int32():
    tensors = [act("x", 1, 5), act("a", 1, 3), act("w", 1, 3, dtype=DType.INT32),
               act("y", 1, 7)]
    ops = [op("FULLY_CONNECTED", ["x", None, None], ["a"]),
           op("FULLY_CONNECTED", ["a", None, None], ["w"]),
           op("FULLY_CONNECTED", ["w", "x", None], ["y"])]
    g = graph(tensors, ops, ["x"], ["y"])
    p16 = plan(g, alignment=16)
    assert all(b.offset % 16 == 0 for b in p16.buffers.values())
    assert p16.arena_bytes % 16 == 0
    p1 = plan(g, alignment=1)
    assert p1.buffers["w"].offset % 4 == 0  # int32 elements stay naturally aligned
    assert p1.arena_bytes <= p16.arena_bytes


def test_empty_tensor_and_single_op_graph():
    p = plan(chain([0, 4]))
    assert p.arena_bytes == 4 and p.lower_bound_bytes == 4


# --- the overlap check catches bad plans -----------------------------------------------------

def _valid_plan():
    p = plan(chain([100, 60, 80, 40]), strategy="greedy", alignment=4, inplace=False,
             reorder=False)
    p.check()
    return p


def _with_buffer(p, name, **changes):
    buffers = dict(p.buffers)
    buffers[name] = dataclasses.replace(buffers[name], **changes)
    return dataclasses.replace(p, buffers=buffers)


def test_check_catches_overlapping_live_buffers():
    p = _valid_plan()  # x1 and x2 are both live at step 1
    bad = _with_buffer(p, "x1", offset=p.buffers["x2"].offset + 4)
    with pytest.raises(PlanError, match="overlap"):
        bad.check()


def test_check_catches_misalignment_and_arena_overflow():
    p = _valid_plan()
    with pytest.raises(PlanError, match="aligned"):
        _with_buffer(p, "x3", offset=p.buffers["x3"].offset + 2).check()
    with pytest.raises(PlanError, match="past"):
        dataclasses.replace(p, arena_bytes=p.arena_bytes - 4).check()


def test_check_catches_an_undeclared_alias_and_a_wrong_schedule():
    p = _valid_plan()
    # x2 at x1's offset: legal only as a declared in-place alias, and FC has no in-place mode
    moved = _with_buffer(dataclasses.replace(p, arena_bytes=400), "x2",
                         offset=p.buffers["x1"].offset)
    with pytest.raises(PlanError, match="overlap"):
        moved.check()
    aliased = _with_buffer(moved, "x2", alias_of="x1", inplace_mode="elementwise")
    with pytest.raises(PlanError, match="does not allow"):
        aliased.check()
    with pytest.raises(PlanError, match="before op"):
        dataclasses.replace(p, schedule=[1, 0, 2]).check()


def test_check_catches_a_lifetime_the_schedule_does_not_give():
    p = _valid_plan()
    with pytest.raises(PlanError, match="claims steps"):
        _with_buffer(p, "x1", last=0).check()


def _blocks_overlap(blocks, offsets):
    for i, a in enumerate(blocks):
        for j in range(i + 1, len(blocks)):
            b = blocks[j]
            for ra in a.rects:
                for rb in b.rects:
                    if (ra.overlaps_in_time(rb) and offsets[i] < offsets[j] + rb.size
                            and offsets[j] < offsets[i] + ra.size):
                        return True
    return False


def test_branch_and_bound_beats_every_multi_order_heuristic():
    # found by random search; steps 1 (6 + 5) and 4 (2 + 5 + 4) both hold 11 bytes: every
    # heuristic ordering leaves a 1-byte hole, the search finds a packing without one
    blocks = _blocks([(2, 3, 4), (5, 4, 4), (4, 2, 4), (5, 0, 0), (6, 1, 2), (5, 1, 1)])
    assert max(live_profile(blocks, 5)) == 11
    multi = multi_order(blocks, 11)
    assert arena_of(blocks, multi) == 12 and not _blocks_overlap(blocks, multi)
    found = branch_and_bound(blocks, 11)
    assert arena_of(blocks, found) == 11 and not _blocks_overlap(blocks, found)
    assert arena_of(blocks, greedy_by_size(blocks)) >= 12


def test_check_catches_a_missing_scratch_buffer():
    tensors = [act("x", 1, 4, 4, 3), act("m", 1, 1, 1, 3)]
    g = graph(tensors, [op("MEAN", ["x"], ["m"], axes=(1, 2), keep_dims=True)], ["x"], ["m"])
    p = plan(g)
    assert p.scratch
    with pytest.raises(PlanError, match="scratch"):
        dataclasses.replace(p, scratch={}).check()
