"""Plans that weigh speed against memory: ``--objective memory|speed|balanced``.

Each in-place mode runs a kernel of its own, and some cost instructions (`edgekit.kernel_costs`:
a depthwise conv channel by channel copies every input plane to a scratch first; a 1x1 conv in
place copies each input pixel). The objective decides which of them the planner may use:

- ``memory``: every mode (the smallest arena; what `edgekit.planner.plan` does alone);
- ``speed``: at each op, no mode whose estimated instructions exceed the op's fastest option
  (the out-of-place kernel, or an in-place mode whose kernel is faster still); free modes
  (``conv_sliding``, ``elementwise``, ``reshape_view`` run the plain kernel or none) stay where
  nothing is faster, saving bytes for nothing, so the plan runs the fewest estimated
  instructions;
- ``balanced`` (the default): the ``speed`` plan when its arena fits the board's SRAM budget
  (`sram_budget`: the arena's region less the stack and a margin); else the costly modes are
  allowed back, cheapest first, until the arena fits (the fewest ones that do, found by
  bisection over that order); else the ``memory`` plan. With no board there is no budget, and
  ``balanced`` plans for memory (the result says so).

The chosen plan's per-op modes and estimated instructions (`plan_costs`) go into ``--json``.
The arena is whatever the chosen plan says: the firmware is built from that same plan, so the
estimate still equals the measurement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from edgekit.errors import PlanError
from edgekit.ir import Graph
from edgekit.kernel_costs import (FUSED_MODE, core_family, cost_table, features,
                                  graph_instructions, mode_penalty, variant,
                                  variant_instructions)
from edgekit.planner.fusion import fusion_candidates
from edgekit.planner.inplace import INPLACE_MODES, inplace_candidates
from edgekit.planner.plan import MemoryPlan, plan

OBJECTIVES = ("memory", "speed", "balanced")
DEFAULT_OBJECTIVE = "balanced"
#: what ``balanced`` leaves free in the arena's region besides the stack: static data (.data,
#: .bss outside the arena) and headroom, the larger of a fixed amount and a share of the region
MARGIN_BYTES = 2048
MARGIN_FRACTION = 0.05


def sram_budget(region_bytes: int, stack_bytes: int) -> int:
    """The arena ``balanced`` may use in a region of ``region_bytes`` with this stack."""
    margin = max(MARGIN_BYTES, int(region_bytes * MARGIN_FRACTION))
    return region_bytes - stack_bytes - margin


def costly_modes(graph: Graph, table: dict) -> dict[tuple[int, str], float]:
    """(op index, mode) -> the instructions the mode adds over the op's fastest option, for
    every mode the op may statically take that costs more than that option: the plain kernel,
    or a mode whose kernel is faster than it (a 1x1 conv in place runs the two-pixel kernel),
    in which case the free modes (``conv_sliding``: the plain kernel) count as costly too.
    Fusions at the conv's index, against running the conv and its ADD apart."""
    costly = {}
    for index, op in enumerate(graph.ops):
        penalties = {mode.name: mode_penalty(graph, index, mode.name, table)
                     for mode, _ in inplace_candidates(op, graph)}
        best = min([0.0, *penalties.values()])
        for name, penalty in penalties.items():
            if penalty > best:
                costly[(index, name)] = penalty - best
    for fusable in fusion_candidates(graph).values():
        for f in fusable:
            extra = mode_penalty(graph, f.conv, FUSED_MODE, table, add_index=f.add)
            if extra > 0:
                costly[(f.conv, FUSED_MODE)] = extra
    return costly


def fastest_instructions(graph: Graph, cpu: str | None) -> int:
    """The search's latency figure: estimated instructions of ``graph`` with every op on its
    cheapest kernel among the out-of-place one and the in-place modes it may statically take
    (and each residual ADD fused where that is cheaper): what ``--objective speed`` runs
    when every such input dies at its op, as in the search's chains. No planning: a few
    milliseconds per candidate."""
    table = cost_table(core_family(cpu))
    total, values = 0.0, {}
    for index, op in enumerate(graph.ops):
        plain = variant(op, graph, None)
        if plain not in table:
            continue
        values[index] = features(op, graph)
        # only the modes that change the kernel can change the cost (not conv_sliding's)
        kernels = {variant(op, graph, mode.name) for mode in INPLACE_MODES
                   if op.kind in mode.kinds and variant(op, graph, mode.name) != plain
                   and mode.inputs(op, graph)}
        costs = (variant_instructions(op, graph, name, values[index], table)
                 for name in kernels | {plain})
        total += min(cost for cost in costs if cost is not None)
    for fusable in fusion_candidates(graph).values():
        total += min([0.0, *(mode_penalty(graph, f.conv, FUSED_MODE, table, add_index=f.add)
                             for f in fusable)])
    return int(round(total))


def _exclusions(pairs) -> dict[int, set[str]]:
    exclude: dict[int, set[str]] = {}
    for index, mode in pairs:
        exclude.setdefault(index, set()).add(mode)
    return exclude


def plan_modes(memory_plan: MemoryPlan) -> tuple[dict[int, str | None], dict[int, int]]:
    """(in-place mode per op index, fused ADD index -> its conv) of a plan."""
    graph = memory_plan.graph
    modes = {}
    for index, op in enumerate(graph.ops):
        buf = memory_plan.buffers.get(op.outputs[0]) if len(op.outputs) == 1 else None
        modes[index] = buf.inplace_mode if buf is not None else None
    for f in memory_plan.fusions.values():
        modes[f.conv] = FUSED_MODE
    return modes, {f.add: f.conv for f in memory_plan.fusions.values()}


def plan_costs(memory_plan: MemoryPlan, table: dict) -> dict:
    """Estimated instructions of a plan, per op and in total (`graph_instructions`)."""
    modes, fused = plan_modes(memory_plan)
    return graph_instructions(memory_plan.graph, table, modes, fused)


@dataclass
class ObjectivePlan:
    """The plan an objective chose, and why."""

    plan: MemoryPlan
    objective: str  # what was asked
    applied: str  # what was planned for (``memory`` for ``balanced`` without a budget)
    family: str
    costs: dict
    budget_bytes: int | None = None
    fits: bool | None = None
    #: costly (op, mode) pairs the chosen plan was allowed
    allowed_costly: list[tuple[int, str]] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict:
        return {"objective": self.objective, "applied": self.applied, "core_family": self.family,
                "budget_bytes": self.budget_bytes, "fits_budget": self.fits,
                "arena_bytes": self.plan.arena_bytes,
                "estimated_instructions": self.costs["instructions"],
                "unmodelled_ops": self.costs["unmodelled_ops"],
                "allowed_costly_modes": [{"op": i, "mode": m} for i, m in self.allowed_costly],
                "note": self.note, "ops": self.costs["ops"]}


def objective_plan(graph: Graph, objective: str = DEFAULT_OBJECTIVE, *, cpu: str | None = None,
                   budget_bytes: int | None = None,
                   planner: Callable[..., MemoryPlan] = plan, **options) -> ObjectivePlan:
    """Plan ``graph`` for ``objective`` (`OBJECTIVES`) with the cost model of ``cpu``'s core
    family; ``budget_bytes`` is the arena ``balanced`` must fit (None: no board, plan for
    memory); ``planner`` is `edgekit.planner.plan` or the firmware's restriction of it, and
    ``options`` go to it."""
    if objective not in OBJECTIVES:
        raise PlanError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    family = core_family(cpu)
    table = cost_table(family)

    def result(chosen: MemoryPlan, applied: str, allowed=(), note="") -> ObjectivePlan:
        fits = None if budget_bytes is None else chosen.arena_bytes <= budget_bytes
        return ObjectivePlan(chosen, objective, applied, family, plan_costs(chosen, table),
                             budget_bytes, fits, sorted(allowed), note)

    if objective == "memory":
        return result(planner(graph, **options), "memory")
    if objective == "balanced" and budget_bytes is None:
        return result(planner(graph, **options), "memory",
                      note="balanced needs a board's SRAM to fit: no --board, so planned for"
                           " memory")
    costly = costly_modes(graph, table)
    fastest = planner(graph, exclude=_exclusions(costly), **options)
    if objective == "speed" or fastest.arena_bytes <= budget_bytes:
        return result(fastest, "speed")
    order = sorted(costly, key=lambda pair: (costly[pair], pair))
    smallest = planner(graph, **options)
    if smallest.arena_bytes > budget_bytes:
        return result(smallest, "memory", order,
                      note="even the smallest arena exceeds the budget: planned for memory")

    def with_first(k: int) -> MemoryPlan:
        return planner(graph, exclude=_exclusions(order[k:]), **options)

    # the fewest costly modes (cheapest first) that bring the arena under the budget; allowing
    # more modes shrinks the arena in practice, not provably, hence the checks
    low, high, best = 0, len(order), (len(order), smallest)
    while low < high:
        middle = (low + high) // 2
        attempt = with_first(middle)
        if attempt.arena_bytes <= budget_bytes:
            best, high = (middle, attempt), middle
        else:
            low = middle + 1
    return result(best[1], "balanced", order[:best[0]],
                  note=f"{best[0]} of {len(order)} costly in-place modes allowed to fit")


def objective_planner(objective: str, board_id: str | None, stack_bytes: int,
                      base: Callable[..., MemoryPlan] = plan):
    """A planner for `edgekit.patching.resolve_patch` that plans for ``objective`` on
    ``board_id``'s core and SRAM; its ``last`` attribute holds the `ObjectivePlan`."""
    cpu, budget = None, None
    if board_id:
        from edgekit.boards import load_board

        board = load_board(board_id)
        cpu, budget = board.cpu, sram_budget(board.region_for("arena").size, stack_bytes)

    def planner(graph, **options):
        planner.last = objective_plan(graph, objective, cpu=cpu, budget_bytes=budget,
                                      planner=base, **options)
        return planner.last.plan
    planner.last = None
    return planner


def objective_summary(chosen_by: ObjectivePlan, chosen: MemoryPlan) -> dict:
    """JSON of the objective behind ``chosen``: ``chosen_by`` (the layer-by-layer plan's
    `ObjectivePlan`) itself, or, when a patch schedule's plan was chosen instead (patched graphs
    are planned for memory), that plan's costs."""
    summary = chosen_by.to_dict()
    if chosen is not chosen_by.plan:
        costs = plan_costs(chosen, cost_table(chosen_by.family))
        summary.update(applied="memory", arena_bytes=chosen.arena_bytes,
                       estimated_instructions=costs["instructions"],
                       unmodelled_ops=costs["unmodelled_ops"], ops=costs["ops"],
                       note="a patch schedule's graph is planned for memory")
    return summary
