"""Reordering branches, and properties over random graphs: the DP finds the best topological
order (checked against brute force), every plan passes the overlap check, and the stronger
strategies never lose to greedy."""

from __future__ import annotations

import itertools

import pytest

from edgekit.planner import plan
from edgekit.planner.problem import build_problem, tensor_bytes
from edgekit.planner.schedule import best_schedule

from planner_graphs import act, graph, op, random_dag


def _two_branches():
    # x -> a (100) waits for the join while branch b runs a 200-byte intermediate. Running the
    # b branch first holds only x and the 10-byte b during the big step.
    tensors = [act("x", 1, 10), act("a", 1, 100), act("b1", 1, 200), act("b", 1, 10),
               act("y", 1, 110)]
    ops = [op("FULLY_CONNECTED", ["x", None, None], ["a"]),
           op("FULLY_CONNECTED", ["x", None, None], ["b1"]),
           op("FULLY_CONNECTED", ["b1", None, None], ["b"]),
           op("CONCATENATION", ["a", "b"], ["y"], axis=1)]
    return graph(tensors, ops, ["x"], ["y"])


def test_reordering_runs_the_memory_hungry_branch_first():
    g = _two_branches()
    fixed = plan(g, alignment=1, reorder=False)
    assert fixed.schedule == [0, 1, 2, 3] and fixed.lower_bound_bytes == 310
    moved = plan(g, alignment=1)
    assert moved.schedule == [1, 2, 0, 3] and moved.reordered
    # steps: x+b1 = 210, x+b1+b = 220, x+b+a = 120, a+b+y = 220
    assert [s.live_bytes for s in moved.profile] == [210, 220, 120, 220]
    assert moved.lower_bound_bytes == moved.arena_bytes == 220


def test_reordering_keeps_the_graph_order_on_ties():
    g = graph([act("x", 1, 8), act("a", 1, 8), act("b", 1, 8), act("y", 1, 16)],
              [op("FULLY_CONNECTED", ["x", None, None], ["a"]),
               op("FULLY_CONNECTED", ["x", None, None], ["b"]),
               op("CONCATENATION", ["a", "b"], ["y"], axis=1)], ["x"], ["y"])
    assert plan(g).schedule == [0, 1, 2]


def test_a_narrow_beam_still_finds_an_order_no_worse_than_the_graph_order():
    g = _two_branches()
    for width in (1, 2):
        order = best_schedule(g, alignment=1, inplace=True, beam_width=width)
        peak = build_problem(g, order, alignment=1, inplace=True).lower_bound
        assert peak <= build_problem(g, [0, 1, 2, 3], alignment=1, inplace=True).lower_bound


def _topological_orders(g):
    producer = g.producer()
    for order in itertools.permutations(range(len(g.ops))):
        seen = set()
        ok = True
        for index in order:
            if any(producer.get(n, -1) not in seen and n in producer
                   for n in g.ops[index].present_inputs()):
                ok = False
                break
            seen.add(index)
        if ok:
            yield list(order)


@pytest.mark.parametrize("seed", range(12))
def test_dp_schedule_matches_brute_force_over_all_orders(seed):
    g = random_dag(seed, n_ops=6)
    for inplace in (True, False):
        chosen = best_schedule(g, alignment=4, inplace=inplace)
        peak = build_problem(g, chosen, alignment=4, inplace=inplace).lower_bound
        brute = min(build_problem(g, o, alignment=4, inplace=inplace).lower_bound
                    for o in _topological_orders(g))
        assert peak == brute


@pytest.mark.parametrize("seed", range(40))
def test_random_graphs_every_strategy_checked_and_never_worse_than_greedy(seed):
    g = random_dag(seed, n_ops=9)
    greedy = plan(g, strategy="greedy")
    for strategy in ("multi", "search"):
        p = plan(g, strategy=strategy)
        p.check()
        assert p.lower_bound_bytes <= p.arena_bytes <= greedy.arena_bytes
    for inplace, reorder in itertools.product((True, False), repeat=2):
        p = plan(g, inplace=inplace, reorder=reorder, alignment=1 << (seed % 5))
        p.check()
        assert p.arena_bytes >= p.lower_bound_bytes
        # the profile is what the buffers occupy: the union of live byte ranges at each step
        for step in p.profile:
            covered = set()
            for name in step.live_tensors:
                b = p.buffers[name]
                covered.update(range(b.offset, b.offset + tensor_bytes(g, name, p.alignment)))
            if step.op in p.scratch:
                s = p.scratch[step.op]
                covered.update(range(s.offset, s.offset + s.size))
            assert step.live_bytes == len(covered)
