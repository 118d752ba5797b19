"""Offset strategies: place blocks in one arena so that blocks live at the same time never share
bytes, keeping the arena small.

Interface: a strategy is ``place(blocks, lower_bound) -> list[int]`` (one aligned offset per
block). ``lower_bound`` lets a strategy stop searching once it has reached it (no arena can be
smaller than the bytes live at the busiest step).

Strategies:

- ``greedy``: TFLite Micro's greedy-by-size, our own implementation of its algorithm: blocks in
  descending size (stable, so ties keep the order they were added in), each placed at the lowest
  offset where it fits among the already-placed blocks it overlaps in time ("first fit"). It is
  the baseline: what a TFLM user gets.
- ``multi``: first fit and best fit (the smallest free gap that holds the block) over several
  orderings (size, size x lifetime, lifetime, start step, end step, conflict weight); the
  smallest arena wins.
- ``search``: ``multi``, then a depth-first branch and bound over the order in which blocks are
  placed (each at its lowest feasible offset), pruned by the best arena so far and by the lower
  bound, with a node budget. When it reaches the lower bound the plan is provably optimal.
- ``best``: ``search`` (the default).

Blocks are staircases in time (an in-place chain shrinks or grows at the step where the output
takes over the input's bytes); two blocks conflict when any of their members overlap in time, and
each conflicting pair is kept apart by the extents of the members that actually overlap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from edgekit.errors import PlanError
from edgekit.planner.problem import Block, align_up

#: branch-and-bound nodes before ``search`` settles for its best arena so far
SEARCH_NODE_BUDGET = 20000


@dataclass(frozen=True)
class Conflict:
    """Block ``other`` overlaps in time: while placed at ``o``, this block must avoid offsets in
    the open interval ``(o - mine, o + theirs)``."""

    other: int
    mine: int  # this block's extent over the overlapping members
    theirs: int  # the other block's extent over the overlapping members


def conflicts(blocks: Sequence[Block]) -> list[list[Conflict]]:
    """For every block, the blocks it overlaps in time and the extents that must stay apart."""
    table: list[list[Conflict]] = [[] for _ in blocks]
    for i, a in enumerate(blocks):
        for j in range(i + 1, len(blocks)):
            b = blocks[j]
            if a.first > b.last or b.first > a.last:
                continue
            # members at a + ra.start and b + rb.start must not share a byte: a is forbidden
            # in (b - (ra.end - rb.start), b + (rb.end - ra.start)); keep the hull
            pairs = [(ra.end - rb.start, rb.end - ra.start) for ra in a.rects for rb in b.rects
                     if ra.overlaps_in_time(rb)]
            if pairs:
                ea = max(p[0] for p in pairs)
                eb = max(p[1] for p in pairs)
                table[i].append(Conflict(j, ea, eb))
                table[j].append(Conflict(i, eb, ea))
    return table


def _free_gaps(index: int, blocks, table, offsets) -> list[tuple[int, int | None]]:
    """Feasible offsets for block ``index`` as (start, end) ranges, aligned; end None = open."""
    align = blocks[index].alignment
    forbidden = sorted((offsets[c.other] - c.mine, offsets[c.other] + c.theirs)
                       for c in table[index] if offsets[c.other] is not None)
    gaps: list[tuple[int, int | None]] = []
    x = 0
    for lo, hi in forbidden:
        if x <= lo:  # x + size <= other's offset: the range [x, lo] is feasible
            end = lo - lo % align
            if end >= x:
                gaps.append((x, end))
        x = max(x, align_up(hi, align))
    gaps.append((x, None))
    return gaps


def _lowest_offset(index, blocks, table, offsets) -> int:
    return _free_gaps(index, blocks, table, offsets)[0][0]


def _best_fit_offset(index, blocks, table, offsets) -> int:
    gaps = _free_gaps(index, blocks, table, offsets)
    bounded = [g for g in gaps if g[1] is not None]
    if bounded:
        return min(bounded, key=lambda g: (g[1] - g[0], g[0]))[0]
    return gaps[-1][0]


def _place_in_order(order, blocks, table, fit) -> list[int]:
    offsets: list[int | None] = [None] * len(blocks)
    for index in order:
        offsets[index] = fit(index, blocks, table, offsets)
    return offsets  # type: ignore[return-value]


def arena_of(blocks: Sequence[Block], offsets: Sequence[int]) -> int:
    """Arena bytes needed by ``blocks`` at ``offsets``."""
    return max((o + b.size for b, o in zip(blocks, offsets)), default=0)


def greedy_by_size(blocks: Sequence[Block], lower_bound: int = 0) -> list[int]:
    """TFLite Micro's greedy-by-size: descending size (stable), lowest offset that fits."""
    order = sorted(range(len(blocks)), key=lambda i: -blocks[i].size)
    return _place_in_order(order, blocks, conflicts(blocks), _lowest_offset)


def _orderings(blocks: Sequence[Block], table) -> list[list[int]]:
    idx = range(len(blocks))
    duration = [b.last - b.first + 1 for b in blocks]
    weight = [sum(c.theirs for c in table[i]) for i in idx]
    keys: list[Callable[[int], tuple]] = [
        lambda i: (-blocks[i].size,),
        lambda i: (-blocks[i].size * duration[i], -blocks[i].size),
        lambda i: (-duration[i], -blocks[i].size),
        lambda i: (blocks[i].first, -blocks[i].size),
        lambda i: (-blocks[i].last, -blocks[i].size),
        lambda i: (-weight[i], -blocks[i].size),
        lambda i: (-(blocks[i].size + weight[i]), -blocks[i].size),
    ]
    return [sorted(idx, key=key) for key in keys]


def multi_order(blocks: Sequence[Block], lower_bound: int = 0) -> list[int]:
    """First fit and best fit over several orderings; the smallest arena (first on ties)."""
    table = conflicts(blocks)
    best: list[int] | None = None
    for order in _orderings(blocks, table):
        for fit in (_lowest_offset, _best_fit_offset):
            offsets = _place_in_order(order, blocks, table, fit)
            if best is None or arena_of(blocks, offsets) < arena_of(blocks, best):
                best = offsets
            if arena_of(blocks, best) <= lower_bound:
                return best
    return best or []


def branch_and_bound(blocks: Sequence[Block], lower_bound: int = 0,
                     node_budget: int = SEARCH_NODE_BUDGET) -> list[int]:
    """Depth-first search over placement orders, seeded with `multi_order`.

    At each node every unplaced block is tried next at its lowest feasible offset, largest
    first; a branch is cut when its arena so far cannot beat the best one found. Stops at the
    lower bound or after ``node_budget`` nodes.
    """
    best = multi_order(blocks, lower_bound)
    best_arena = arena_of(blocks, best)
    if best_arena <= lower_bound or not blocks:
        return best
    table = conflicts(blocks)
    by_size = sorted(range(len(blocks)), key=lambda i: -blocks[i].size)
    offsets: list[int | None] = [None] * len(blocks)
    nodes = 0

    def visit(placed: int, arena: int) -> bool:
        nonlocal best, best_arena, nodes
        if placed == len(blocks):
            best, best_arena = list(offsets), arena  # type: ignore[arg-type]
            return best_arena <= lower_bound
        for index in by_size:
            if offsets[index] is not None:
                continue
            nodes += 1
            if nodes > node_budget:
                return True
            offset = _lowest_offset(index, blocks, table, offsets)
            new_arena = max(arena, offset + blocks[index].size)
            if new_arena >= best_arena:
                continue
            offsets[index] = offset
            stop = visit(placed + 1, new_arena)
            offsets[index] = None
            if stop:
                return True
        return False

    visit(0, 0)
    return best


STRATEGIES: dict[str, Callable[[Sequence[Block], int], list[int]]] = {
    "greedy": greedy_by_size,
    "multi": multi_order,
    "search": branch_and_bound,
    "best": branch_and_bound,
}


def place(blocks: Sequence[Block], strategy: str, lower_bound: int = 0) -> list[int]:
    """Offsets for ``blocks`` by the named strategy (one of `STRATEGIES`)."""
    try:
        fn = STRATEGIES[strategy]
    except KeyError:
        raise PlanError(f"unknown planner strategy {strategy!r};"
                        f" choose one of {', '.join(STRATEGIES)}") from None
    return fn(blocks, lower_bound)
