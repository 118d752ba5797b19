"""`plan()` and the `MemoryPlan` it returns; `check_plan()` verifies any plan from scratch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Collection, Mapping

from edgekit.errors import PlanError
from edgekit.ir import Graph
from edgekit.planner.fusion import CONV_ADD_MODE, FusedConvAdd, fusion_candidates
from edgekit.planner.inplace import MODES_BY_NAME, SLIDING_MODE, inplace_candidates
from edgekit.planner.offsets import STRATEGIES, arena_of, place
from edgekit.planner.problem import (
    InplaceSetting, Problem, activation_names, build_problem, check_schedule,
    enabled_modes, inplace_lead, inplace_table, lifetimes_for, scratch_extent, tensor_alignment,
    tensor_bytes,
)
from edgekit.planner.schedule import best_schedule, default_order

DEFAULT_STRATEGY = "best"
DEFAULT_ALIGNMENT = 4


@dataclass(frozen=True)
class TensorBuffer:
    """Where one arena tensor lives: ``offset`` and ``size`` (its ``nbytes``) in the arena, live
    over schedule steps ``first..last``. ``alias_of`` names the input whose bytes it overwrites
    in place (under ``inplace_mode``) at step ``first``."""

    name: str
    offset: int
    size: int
    first: int
    last: int
    alias_of: str | None = None
    inplace_mode: str | None = None


@dataclass(frozen=True)
class ScratchBuffer:
    """Temporary memory of the op at schedule step ``step`` (graph op index ``op``)."""

    op: int
    step: int
    offset: int
    size: int
    alignment: int


@dataclass(frozen=True)
class OpMemory:
    """Live memory during one schedule step: the bar of the MCUNetV2-style profile."""

    step: int
    op: int
    kind: str
    name: str
    live_bytes: int
    live_tensors: tuple[str, ...]
    scratch_bytes: int


@dataclass
class MemoryPlan:
    """A static arena layout for one graph. The code generator puts every tensor at exactly its
    ``offset`` in one arena of ``arena_bytes`` (placed with at least ``alignment``) and runs the
    ops in ``schedule`` order, in place where ``buffers[name].alias_of`` says so."""

    graph: Graph = field(repr=False)
    strategy: str
    alignment: int
    inplace: InplaceSetting
    reorder: bool
    schedule: list[int]
    buffers: dict[str, TensorBuffer]
    scratch: dict[int, ScratchBuffer]  # by graph op index
    arena_bytes: int
    lower_bound_bytes: int
    profile: list[OpMemory]
    #: convs fused with their residual ADD, by the conv's op index (mode ``conv_add_skip``)
    fusions: dict[int, FusedConvAdd] = field(default_factory=dict)

    def fusion_of(self, index: int) -> FusedConvAdd | None:
        """The fusion op ``index`` (a conv or an ADD) belongs to, if any."""
        for f in self.fusions.values():
            if index in (f.conv, f.add):
                return f
        return None

    @property
    def weights_bytes(self) -> int:
        return self.graph.weights_bytes

    @property
    def reordered(self) -> bool:
        return self.schedule != list(range(len(self.graph.ops)))

    def check(self) -> None:
        """Raise `PlanError` if the plan is unsafe (see `check_plan`)."""
        check_plan(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: figures, schedule, buffers, scratch, profile."""
        return {
            "model": self.graph.name,
            "strategy": self.strategy,
            "alignment": self.alignment,
            "inplace": (self.inplace if isinstance(self.inplace, bool)
                        else sorted(self.inplace)),
            "reorder": self.reorder,
            "arena_bytes": self.arena_bytes,
            "lower_bound_bytes": self.lower_bound_bytes,
            "weights_bytes": self.weights_bytes,
            "schedule": list(self.schedule),
            "reordered": self.reordered,
            "buffers": [vars(b) for b in self.buffers.values()],
            "scratch": [vars(s) for s in self.scratch.values()],
            "profile": [{**vars(p), "live_tensors": list(p.live_tensors)} for p in self.profile],
            "fusions": [vars(f) for f in self.fusions.values()],
        }


#: per op index, the in-place modes that op must not take (``conv_add_skip`` at a conv: no
#: fusion with its ADD): how `edgekit.planner.objective` keeps a slower kernel out of a plan
Exclusions = Mapping[int, Collection[str]]


def plan(graph: Graph, *, strategy: str = DEFAULT_STRATEGY, alignment: int = DEFAULT_ALIGNMENT,
         inplace: InplaceSetting = True, reorder: bool = True,
         exclude: Exclusions | None = None) -> MemoryPlan:
    """Plan the arena of ``graph``.

    ``strategy`` picks the offset algorithm (`edgekit.planner.offsets.STRATEGIES`: ``greedy`` is
    TFLite Micro's greedy-by-size, ``multi``, ``search``/``best`` are stronger); ``alignment`` is
    the minimum alignment of every offset in bytes (a power of two; tensors of wider elements and
    int32 scratch are aligned to their element size at least); ``inplace`` enables the in-place
    modes: True for all (conv+ADD fusion ``conv_add_skip`` included), False for none, or a
    collection of mode names; ``reorder`` lets the planner run independent branches in the order
    with the lowest peak; ``exclude`` keeps given modes off given ops (`Exclusions`). The
    returned plan has been checked with `check_plan`.
    """
    if alignment < 1 or alignment & (alignment - 1):
        raise PlanError(f"alignment must be a power of two >= 1, got {alignment}")
    if strategy not in STRATEGIES:
        raise PlanError(f"unknown planner strategy {strategy!r};"
                        f" choose one of {', '.join(STRATEGIES)}")
    modes = enabled_modes(inplace)
    exclude = {i: frozenset(m) for i, m in (exclude or {}).items() if m}

    def table(modes, **kwargs):
        return _without(inplace_table(graph, modes, alignment, **kwargs), exclude)

    settings = dict(alignment=alignment, reorder=reorder, strategy=strategy, exclude=exclude)
    first = _plan_variant(graph, modes, table(modes), **settings)
    chosen = first
    if SLIDING_MODE in modes:
        # A lead (conv_sliding) shifts the rest of its in-place chain, and the chain is placed
        # as one block, so its span can outgrow what the lead saved. Also plan: with leads
        # only where they lower the peak, with leads only where no other mode applies, and
        # without them; keep the smallest arena (the later variant on a tie).
        variants = [
            (modes, _leads_where_needed(graph, first[1], table(modes), alignment)),
            (modes, table(modes, lead_last=True)),
            (modes - {SLIDING_MODE}, table(modes - {SLIDING_MODE})),
        ]
        for variant, options in variants:  # the fusions hardly depend on the leads
            candidate = _plan_variant(graph, variant, options, fusions=first[1].fusions,
                                      **settings)
            if candidate[0] <= chosen[0]:
                chosen = candidate
    _, problem, offsets = chosen
    result = _assemble(graph, problem, offsets, strategy=strategy, alignment=alignment,
                       inplace=inplace, reorder=reorder)
    result.check()
    return result


def _without(options, exclude: dict[int, frozenset[str]]):
    """An `inplace_table` less the excluded (op, mode) pairs."""
    return [[(m, n) for m, n in row if m not in exclude.get(index, ())]
            for index, row in enumerate(options)]


def _plan_variant(graph: Graph, modes: frozenset[str], options, *, alignment: int,
                  reorder: bool, strategy: str, exclude: dict[int, frozenset[str]],
                  fusions: dict[int, FusedConvAdd] | None = None
                  ) -> tuple[int, Problem, list[int]]:
    """(arena, problem, offsets) with these modes and in-place options per op (and these
    fusions, or the ones `choose_fusions` picks)."""
    if fusions is None:
        fusions = (choose_fusions(graph, alignment=alignment, inplace=modes, reorder=reorder,
                                  options=options,
                                  banned={i for i, m in exclude.items() if CONV_ADD_MODE in m})
                   if CONV_ADD_MODE in modes else {})
    problem = _problem_for(graph, fusions, alignment=alignment, inplace=modes, reorder=reorder,
                           options=options)
    offsets = place(problem.blocks, strategy, problem.lower_bound)
    return arena_of(problem.blocks, offsets), problem, offsets


def _leads_where_needed(graph: Graph, problem: Problem, options, alignment: int):
    """``options`` without the lead modes at every op where dropping them does not raise the
    peak of ``problem`` (same schedule and fusions): leads only where they pay at the peak."""
    options = [list(o) for o in options]
    bound = problem.lower_bound
    for name, alias in sorted(problem.aliases.items(), key=lambda item: item[1].step):
        if not alias.lead:
            continue
        index = problem.schedule[alias.step]
        trial = list(options)
        trial[index] = [(m, n) for m, n in options[index]
                        if not inplace_lead(graph.ops[index], graph, m, alignment)]
        attempt = build_problem(graph, problem.schedule, alignment=alignment, inplace=True,
                                fusions=problem.fusions, options=trial)
        if attempt.lower_bound <= bound:
            options = trial
    return options


def _problem_for(graph: Graph, fusions: dict[int, FusedConvAdd], *, alignment: int,
                 inplace: InplaceSetting, reorder: bool, options=None) -> Problem:
    schedule = (best_schedule(graph, alignment=alignment, inplace=inplace, fusions=fusions,
                              options=options)
                if reorder else default_order(graph, fusions))
    return build_problem(graph, schedule, alignment=alignment, inplace=inplace, fusions=fusions,
                         options=options)


def choose_fusions(graph: Graph, *, alignment: int, inplace: InplaceSetting,
                   reorder: bool, options=None,
                   banned: Collection[int] = ()) -> dict[int, FusedConvAdd]:
    """Which conv to fuse into each residual ADD (by conv op index).

    Cost of a choice: the peak of live bytes, then the live bytes summed over the steps (less
    memory traffic, room under the peak). Coordinate descent with the cheap graph-order
    schedule (`default_order`): start with every ADD fused with its first candidate, then for
    each ADD in turn keep the option (each candidate, or no fusion) that lowers the cost, until
    a pass changes nothing. Then the descent's result, the all-first start and no fusion at all
    are compared under the real schedule (the reordering search when ``reorder``); ties keep
    the fusion (it also saves the intermediate's writes and reads). Convs in ``banned`` are
    never fused.
    """
    candidates = {add: kept for add, fusable in fusion_candidates(graph).items()
                  if (kept := [f for f in fusable if f.conv not in banned])}
    if not candidates:
        return {}
    if options is None:
        options = inplace_table(graph, enabled_modes(inplace), alignment)
    invalid = (1 << 62, 0)

    def cost(choice: dict[int, FusedConvAdd | None], searched: bool) -> tuple[int, int]:
        chosen = {f.conv: f for f in choice.values() if f is not None}
        try:
            problem = _problem_for(graph, chosen, alignment=alignment, inplace=inplace,
                                   reorder=searched, options=options)
        except (PlanError, ValueError):  # no valid order, or the skip is read later
            return invalid
        return problem.lower_bound, sum(problem.profile)

    start: dict[int, FusedConvAdd | None] = {add: fusable[0]
                                            for add, fusable in candidates.items()}
    choice, best = start, cost(start, False)
    for _ in range(3):
        changed = False
        for add, fusable in candidates.items():
            for option in [*fusable, None]:
                if option == choice[add]:
                    continue
                trial = {**choice, add: option}
                trial_cost = cost(trial, False)
                if trial_cost < best:
                    choice, best, changed = trial, trial_cost, True
        if not changed:
            break
    finalists = [choice, start, {add: None for add in candidates}]
    costs = [cost(c, reorder) for c in finalists]
    winner = finalists[costs.index(min(costs))]
    return {f.conv: f for f in winner.values() if f is not None}


def _assemble(graph: Graph, problem: Problem, offsets: list[int], **settings) -> MemoryPlan:
    block_offset = {}
    scratch: dict[int, ScratchBuffer] = {}
    for block, offset in zip(problem.blocks, offsets):
        for member, rect in zip(block.members, block.rects):
            block_offset[member] = offset + rect.start
        if not block.members:  # scratch block: live during exactly one step
            step = block.first
            index = problem.schedule[step]
            scratch[index] = ScratchBuffer(index, step, offset, block.size, block.alignment)
    buffers = {}
    for name, (first, last) in problem.lifetimes.items():
        alias = problem.aliases.get(name)
        buffers[name] = TensorBuffer(
            name=name, offset=block_offset.get(name, 0), size=graph[name].nbytes,
            first=first, last=last,
            alias_of=alias.input if alias else None, inplace_mode=alias.mode if alias else None)
    profile = []
    for step, index in enumerate(problem.schedule):
        op = graph.ops[index]
        live = tuple(n for n, (f, l) in problem.lifetimes.items() if f <= step <= l)
        profile.append(OpMemory(step, index, op.kind, op.name, problem.profile[step], live,
                                scratch[index].size if index in scratch else 0))
    return MemoryPlan(graph=graph, schedule=list(problem.schedule), buffers=buffers,
                      scratch=scratch, arena_bytes=arena_of(problem.blocks, offsets),
                      lower_bound_bytes=problem.lower_bound, profile=profile,
                      fusions=dict(problem.fusions), **settings)


def check_plan(plan: MemoryPlan) -> None:
    """Verify a plan against its graph, recomputing lifetimes independently; raise `PlanError`.

    Checks: the schedule is a topological order of all ops; every arena tensor has a buffer of
    its size, inside the arena and aligned; every alias is a legal in-place mode at the step
    where its input dies, at the input's offset; and no two buffers (tensors or scratch) that are
    live at the same step share a byte, except an in-place output and the input it overwrites.
    """
    graph = plan.graph
    check_schedule(graph, plan.schedule)
    lifetimes = lifetimes_for(graph, plan.schedule)
    step_of = {index: step for step, index in enumerate(plan.schedule)}
    fused_away = _check_fusions(plan, step_of)
    for name in fused_away:
        lifetimes.pop(name, None)
    names = [n for n in activation_names(graph) if n not in fused_away]
    # (name, offset, end, first, last) of every byte range the arena must hold
    ranges: list[tuple[str, int, int, int, int]] = []
    for name in names:
        buf = plan.buffers.get(name)
        if buf is None:
            raise PlanError(f"plan has no buffer for tensor {name!r}")
        if buf.size != graph[name].nbytes:
            raise PlanError(f"buffer of {name!r} is {buf.size} bytes, tensor has {graph[name].nbytes}")
        if (buf.first, buf.last) != lifetimes[name]:
            raise PlanError(f"buffer of {name!r} claims steps {buf.first}..{buf.last}, the schedule"
                            f" gives {lifetimes[name][0]}..{lifetimes[name][1]}")
        align = tensor_alignment(graph, name, plan.alignment)
        span = tensor_bytes(graph, name, plan.alignment)
        _check_placement(name, buf.offset, span, align, plan.arena_bytes)
        if buf.alias_of is not None:
            _check_alias(plan, buf, lifetimes)
        if span:
            ranges.append((name, buf.offset, buf.offset + span, *lifetimes[name]))
    for index, s in plan.scratch.items():
        if step_of.get(index) != s.step:
            raise PlanError(f"scratch of op {index} claims step {s.step}, the schedule runs it at"
                            f" step {step_of.get(index)}")
        mode = _mode_at(plan, index)
        need, align = scratch_extent(graph.ops[index], graph, mode, plan.alignment)
        if s.size < need:
            raise PlanError(f"scratch of op {index} is {s.size} bytes, its kernel needs {need}")
        _check_placement(f"scratch of op {index}", s.offset, s.size, align, plan.arena_bytes)
        ranges.append((f"scratch@op{index}", s.offset, s.offset + s.size, s.step, s.step))
    for index in plan.schedule:
        mode = _mode_at(plan, index)
        need = scratch_extent(graph.ops[index], graph, mode, plan.alignment)[0]
        if need and index not in plan.scratch:
            raise PlanError(f"op {index} ({graph.ops[index].kind}) needs {need} bytes of scratch"
                            " and the plan gives it none")
    _check_no_overlap(plan, ranges)


def _check_fusions(plan: MemoryPlan, step_of: dict[int, int]) -> set[str]:
    """Verify every fusion against the static conditions and the schedule; return the fused
    intermediates (tensors that must have no buffer)."""
    candidates = fusion_candidates(plan.graph)
    fused_away = set()
    for conv, f in plan.fusions.items():
        where = f"fusion of conv op {f.conv} with ADD op {f.add}"
        if conv != f.conv or f not in candidates.get(f.add, []):
            raise PlanError(f"{where}: not a legal conv + residual ADD fusion")
        if step_of[f.add] != step_of[f.conv] + 1:
            raise PlanError(f"{where}: the ADD runs at step {step_of[f.add]}, not right after"
                            f" the conv (step {step_of[f.conv]})")
        if f.intermediate in plan.buffers:
            raise PlanError(f"{where}: the fused intermediate {f.intermediate!r} has a buffer")
        out = plan.buffers.get(f.output)
        if out is None or out.inplace_mode != CONV_ADD_MODE or out.alias_of != f.skip:
            raise PlanError(f"{where}: output {f.output!r} must overwrite skip {f.skip!r}"
                            f" in mode {CONV_ADD_MODE}")
        fused_away.add(f.intermediate)
    if len({f.add for f in plan.fusions.values()}) != len(plan.fusions):
        raise PlanError("two fusions share one ADD")
    return fused_away


def _mode_at(plan: MemoryPlan, index: int) -> str | None:
    out = plan.graph.ops[index].outputs
    buf = plan.buffers.get(out[0]) if len(out) == 1 else None
    return buf.inplace_mode if buf is not None else None


def _check_placement(what: str, offset: int, span: int, align: int, arena: int) -> None:
    if offset < 0 or offset % align:
        raise PlanError(f"{what} at offset {offset} is not {align}-byte aligned")
    if offset + span > arena:
        raise PlanError(f"{what} at offset {offset} + {span} bytes runs past the"
                        f" {arena}-byte arena")


def _check_alias(plan: MemoryPlan, buf: TensorBuffer, lifetimes) -> None:
    graph = plan.graph
    index = plan.schedule[buf.first]
    op = graph.ops[index]
    where = f"in-place output {buf.name!r} of op {index} ({op.kind})"
    if buf.inplace_mode == CONV_ADD_MODE:
        fused = plan.fusion_of(index)
        if fused is None or fused.add != index or fused.skip != buf.alias_of:
            raise PlanError(f"{where}: mode {CONV_ADD_MODE} without a matching fusion")
    else:
        mode = MODES_BY_NAME.get(buf.inplace_mode or "")
        if mode is None:
            raise PlanError(f"{where}: unknown in-place mode {buf.inplace_mode!r}")
        legal = {op.inputs[p] for m, p in inplace_candidates(op, graph) if m is mode}
        if op.outputs != [buf.name] or buf.alias_of not in legal:
            raise PlanError(f"{where}: mode {mode.name} does not allow overwriting"
                            f" {buf.alias_of!r}")
    if buf.alias_of in graph.outputs or lifetimes[buf.alias_of][1] != buf.first:
        raise PlanError(f"{where}: input {buf.alias_of!r} is still needed after step {buf.first}")
    input_offset = plan.buffers[buf.alias_of].offset
    spec = MODES_BY_NAME.get(buf.inplace_mode or "")
    if spec is not None and spec.lead_bytes is not None:
        # the output may start further before its input than needed, never less
        need = spec.lead_bytes(op, graph)
        if input_offset - buf.offset < need:
            raise PlanError(f"{where}: starts {input_offset - buf.offset} bytes before input"
                            f" {buf.alias_of!r}, mode {spec.name} needs at least {need}")
    elif input_offset != buf.offset:
        raise PlanError(f"{where}: offset {buf.offset} differs from input {buf.alias_of!r}'s"
                        f" offset {input_offset}")


def _check_no_overlap(plan: MemoryPlan, ranges) -> None:
    allowed = {frozenset((b.name, b.alias_of)) for b in plan.buffers.values() if b.alias_of}
    ranges = sorted(ranges, key=lambda r: r[1])
    for i, (name_a, lo_a, hi_a, first_a, last_a) in enumerate(ranges):
        for name_b, lo_b, hi_b, first_b, last_b in ranges[i + 1:]:
            if lo_b >= hi_a:
                break
            if first_a <= last_b and first_b <= last_a and frozenset((name_a, name_b)) not in allowed:
                raise PlanError(
                    f"{name_a!r} [{lo_a}, {hi_a}) and {name_b!r} [{lo_b}, {hi_b}) overlap in the"
                    f" arena while both are live (steps {max(first_a, first_b)}.."
                    f"{min(last_a, last_b)})")
