"""From a graph and a schedule to the allocation problem: lifetimes, in-place aliases, scratch,
placement blocks, the per-step live-memory profile and the lower bound.

Time is the *step*: the position of an op in the schedule. A tensor is live from the step that
writes it (step 0 for graph inputs, which are in the arena before the first op) to the last step
that reads it (the last step for graph outputs, which the caller reads afterwards), inclusive. A
scratch buffer is live during its op's step only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Collection, Mapping, Sequence, Union

from edgekit.errors import PlanError
from edgekit.ir import Graph, Op
from edgekit.planner.fusion import CONV_ADD_MODE, FusedConvAdd
from edgekit.planner.inplace import INPLACE_MODES, MODES_BY_NAME, inplace_candidates
from edgekit.planner.scratch import scratch_alignment, scratch_bytes


#: ``inplace`` settings: True (every mode, conv+ADD fusion included), False (none), or the names
#: of the modes to use (`edgekit.planner.inplace.INPLACE_MODES` names and ``conv_add_skip``)
InplaceSetting = Union[bool, Collection[str]]

#: every mode name ``inplace=True`` enables
ALL_MODES = frozenset({m.name for m in INPLACE_MODES} | {CONV_ADD_MODE})


def enabled_modes(inplace: InplaceSetting) -> frozenset[str]:
    """The mode names an ``inplace`` setting enables; `PlanError` on an unknown name."""
    if inplace is True:
        return ALL_MODES
    if inplace is False:
        return frozenset()
    if isinstance(inplace, str):
        inplace = [inplace]
    modes = frozenset(inplace)
    unknown = sorted(modes - ALL_MODES)
    if unknown:
        raise PlanError(f"unknown in-place mode(s) {', '.join(map(repr, unknown))};"
                        f" known: {', '.join(sorted(ALL_MODES))}")
    return modes


def align_up(value: int, alignment: int) -> int:
    """``value`` rounded up to a multiple of ``alignment``."""
    return -(-value // alignment) * alignment


def tensor_alignment(graph: Graph, name: str, alignment: int) -> int:
    """Plan alignment, raised to the element size so int16/int32/float32 tensors stay aligned."""
    t = graph[name]
    natural = t.dtype.numpy.itemsize if t.dtype.bits >= 8 else 1
    return max(alignment, natural)


def tensor_bytes(graph: Graph, name: str, alignment: int) -> int:
    """Bytes a tensor takes in the arena: its size rounded up to its alignment."""
    return align_up(graph[name].nbytes, tensor_alignment(graph, name, alignment))


@dataclass(frozen=True)
class Rect:
    """``size`` bytes from ``start`` bytes past the block's offset, live over steps
    ``first..last`` (inclusive)."""

    size: int
    first: int
    last: int
    start: int = 0

    @property
    def end(self) -> int:
        return self.start + self.size

    def overlaps_in_time(self, other: "Rect") -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass
class Block:
    """One placement unit: all members share one offset (an in-place alias chain, a single
    tensor, or one op's scratch). ``rects`` are the members' extents over time."""

    name: str
    members: tuple[str, ...]
    rects: tuple[Rect, ...]
    alignment: int

    @property
    def size(self) -> int:
        return max(r.end for r in self.rects)

    @property
    def first(self) -> int:
        return min(r.first for r in self.rects)

    @property
    def last(self) -> int:
        return max(r.last for r in self.rects)


@dataclass
class Alias:
    """The output of the op at ``step`` overwrites ``input`` under in-place mode ``mode``,
    starting ``lead`` bytes before it (0: at the input's offset)."""

    input: str
    mode: str
    step: int
    lead: int = 0


@dataclass
class Problem:
    """Everything the offset strategies and `MemoryPlan` need for one schedule."""

    schedule: list[int]
    lifetimes: dict[str, tuple[int, int]]
    sizes: dict[str, int]
    aliases: dict[str, Alias]
    scratch: dict[int, tuple[int, int]]  # step -> (bytes, alignment)
    blocks: list[Block]
    profile: list[int] = field(default_factory=list)  # live bytes per step
    fusions: dict[int, FusedConvAdd] = field(default_factory=dict)  # by conv op index

    @property
    def lower_bound(self) -> int:
        return max(self.profile, default=0)


def activation_names(graph: Graph) -> list[str]:
    """Tensors that live in the arena: graph inputs and every op output, in first-use order."""
    names = list(dict.fromkeys(graph.inputs))
    for op in graph.ops:
        names.extend(n for n in op.outputs if n not in names)
    return names


def check_schedule(graph: Graph, schedule: Sequence[int]) -> None:
    """Raise `PlanError` unless ``schedule`` runs every op once, each after its producers."""
    if sorted(schedule) != list(range(len(graph.ops))):
        raise PlanError(f"schedule {list(schedule)} is not a permutation of the"
                        f" {len(graph.ops)} ops of graph {graph.name!r}")
    producer = graph.producer()
    done: set[int] = set()
    for step, index in enumerate(schedule):
        for name in graph.ops[index].present_inputs():
            if name in producer and producer[name] not in done:
                raise PlanError(f"schedule step {step} runs op {index} ({graph.ops[index].kind})"
                                f" before op {producer[name]} that writes its input {name!r}")
        done.add(index)


def lifetimes_for(graph: Graph, schedule: Sequence[int]) -> dict[str, tuple[int, int]]:
    """(first step, last step) of every arena tensor under ``schedule``."""
    steps = max(len(schedule), 1)
    first: dict[str, int] = {name: 0 for name in graph.inputs}
    last: dict[str, int] = {}
    for step, index in enumerate(schedule):
        op = graph.ops[index]
        for name in op.present_inputs():
            if not graph[name].is_constant:
                last[name] = step
        for name in op.outputs:
            first[name] = step
    for name in graph.outputs:
        last[name] = steps - 1
    return {name: (f, max(last.get(name, f), f)) for name, f in first.items()}


def inplace_lead(op: Op, graph: Graph, mode: str, alignment: int) -> int:
    """Bytes the output of ``op`` starts before the input it overwrites under ``mode``,
    rounded up so that both stay aligned."""
    spec = MODES_BY_NAME.get(mode)
    if spec is None or spec.lead_bytes is None:
        return 0
    align = max(tensor_alignment(graph, n, alignment) for n in (op.inputs[0], op.outputs[0]))
    return align_up(spec.lead_bytes(op, graph), align)


def shared_bytes(in_bytes: int, out_bytes: int, lead: int) -> int:
    """Bytes an in-place output shares with its input: input and output alone take
    ``in + out``, together (the output ``lead`` bytes before the input) their union."""
    return in_bytes + out_bytes - max(lead + in_bytes, out_bytes)


def inplace_options(op: Op, graph: Graph, modes: Collection[str] = ALL_MODES, *,
                    alignment: int = 1, lead_last: bool = False) -> list[tuple[str, str]]:
    """(mode name, input name) pairs ``op`` may run in place under, the largest saving first
    (shared bytes - extra scratch - lead; ties: the mode table's order; with ``lead_last``,
    modes without a lead before any with one), before the schedule-dependent condition (the input dies
    here): static conditions from the mode table, the mode is among ``modes``, the input is
    not a graph output and not empty, and the mode pays: the bytes the output shares with the
    input are positive and at least the extra scratch its kernel needs (a one-channel plane
    can outweigh a tiny tensor). Running in place changes the live bytes of this op's step
    only, so a mode that pays never raises the peak."""
    found = []
    plain_scratch = scratch_extent(op, graph, None, alignment)[0]
    for mode, position in inplace_candidates(op, graph):
        name = op.inputs[position]
        if mode.name not in modes or name in graph.outputs or graph[name].nbytes == 0:
            continue
        lead = inplace_lead(op, graph, mode.name, alignment)
        shared = shared_bytes(tensor_bytes(graph, name, alignment),
                              tensor_bytes(graph, op.outputs[0], alignment), lead)
        extra = scratch_extent(op, graph, mode.name, alignment)[0] - plain_scratch
        if shared > 0 and shared >= extra:  # a tie: the same bytes either way
            # a lead shifts the rest of the in-place chain down for good (the chain is placed
            # as one block), so it counts against the saving when modes are ranked
            found.append((lead_last and lead > 0, -(shared - extra - lead), len(found),
                          mode.name, name))
    found.sort(key=lambda item: item[:3])
    return [(mode, name) for *_, mode, name in found]


def inplace_table(graph: Graph, modes: Collection[str], alignment: int, *,
                  lead_last: bool = False) -> list[list[tuple[str, str]]]:
    """`inplace_options` of every op (by op index): static, so planned once per graph."""
    if not modes:
        return [[] for _ in graph.ops]
    return [inplace_options(op, graph, modes, alignment=alignment, lead_last=lead_last)
            for op in graph.ops]


def choose_inplace(options: list[tuple[str, str]],
                   dies_here: Callable[[str], bool]) -> tuple[str, str] | None:
    """The (mode name, input name) the op runs under: the first of its `inplace_options` whose
    input dies at this op; None to run out of place."""
    for mode, name in options:
        if dies_here(name):
            return mode, name
    return None


def scratch_extent(op: Op, graph: Graph, mode: str | None, alignment: int) -> tuple[int, int]:
    """(arena bytes, alignment) of the scratch ``op`` needs under in-place ``mode`` (or none)."""
    align = max(alignment, scratch_alignment(op, mode))
    return align_up(scratch_bytes(op, graph, mode), align), align


def build_problem(graph: Graph, schedule: Sequence[int], *, alignment: int,
                  inplace: InplaceSetting,
                  fusions: Mapping[int, FusedConvAdd] | None = None,
                  options: list[list[tuple[str, str]]] | None = None) -> Problem:
    """Lifetimes, in-place decisions, scratch, blocks and profile for ``schedule``, with the
    convs in ``fusions`` (by conv op index) fused with their ADDs: each ADD must come right
    after its conv and be its skip tensor's last reader (`PlanError` otherwise). ``options``
    is `inplace_table` for these settings when the caller has it already."""
    schedule = list(schedule)
    modes = enabled_modes(inplace)
    if options is None:
        options = inplace_table(graph, modes, alignment)
    fusions = dict(fusions or {})
    fused_adds = {f.add: f for f in fusions.values()}
    lifetimes = lifetimes_for(graph, schedule)
    for f in fusions.values():  # the conv's output never exists
        lifetimes.pop(f.intermediate, None)
    names = [n for n in activation_names(graph) if n in lifetimes]
    sizes = {n: tensor_bytes(graph, n, alignment) for n in names}

    aliases: dict[str, Alias] = {}
    scratch: dict[int, tuple[int, int]] = {}
    for step, index in enumerate(schedule):
        op = graph.ops[index]
        choice = None
        if index in fused_adds:
            choice = _fused_choice(fused_adds[index], schedule, step, lifetimes)
        elif modes and index not in fusions:
            choice = choose_inplace(options[index], lambda n: lifetimes[n][1] == step)
        mode = choice[0] if choice else None
        if choice:
            aliases[op.outputs[0]] = Alias(input=choice[1], mode=mode, step=step,
                                           lead=inplace_lead(op, graph, mode, alignment))
        nbytes, align = scratch_extent(op, graph, mode, alignment)
        if nbytes:
            scratch[step] = (nbytes, align)

    blocks = _blocks(graph, names, lifetimes, sizes, aliases, scratch, alignment)
    problem = Problem(schedule, lifetimes, sizes, aliases, scratch, blocks, fusions=fusions)
    problem.profile = live_profile(blocks, len(schedule))
    return problem


def _fused_choice(f: FusedConvAdd, schedule: list[int], step: int,
                  lifetimes) -> tuple[str, str]:
    # The fused kernel runs at the conv's step; the ADD's step only marks where the output
    # takes over the skip tensor's bytes, so the two must be adjacent.
    if step == 0 or schedule[step - 1] != f.conv:
        raise PlanError(f"fused ADD (op {f.add}) must run right after its conv (op {f.conv})")
    if lifetimes[f.skip][1] != step:
        raise PlanError(f"fused ADD (op {f.add}): skip tensor {f.skip!r} is still read after it")
    return CONV_ADD_MODE, f.skip


def alias_root(name: str, aliases: dict[str, Alias]) -> str:
    """The first tensor of the in-place chain ``name`` belongs to (it owns the offset)."""
    while name in aliases:
        name = aliases[name].input
    return name


def _blocks(graph: Graph, names: list[str], lifetimes, sizes, aliases, scratch,
            alignment: int) -> list[Block]:
    chains: dict[str, list[str]] = {}
    for name in names:
        if sizes[name] > 0:
            chains.setdefault(alias_root(name, aliases), []).append(name)
    blocks = []
    for root, members in chains.items():
        # an output with a lead starts before its input: place members relative to the root,
        # then shift so the lowest starts at the block's offset
        start = {root: 0}
        for m in members[1:]:
            alias = aliases[m]
            start[m] = start.get(alias.input, 0) - alias.lead
        low = min(start[m] for m in members)
        rects = tuple(Rect(sizes[m], *lifetimes[m], start=start[m] - low) for m in members)
        align = max(tensor_alignment(graph, m, alignment) for m in members)
        blocks.append(Block(root, tuple(members), rects, align))
    for step, (nbytes, align) in scratch.items():
        blocks.append(Block(f"scratch@{step}", (), (Rect(nbytes, step, step),), align))
    return blocks


def live_profile(blocks: Sequence[Block], steps: int) -> list[int]:
    """Bytes live during each step: per block, the span of its members live at that step
    (in-place members share bytes)."""
    profile = [0] * max(steps, 1)
    for block in blocks:
        for step in range(block.first, block.last + 1):
            live = [r for r in block.rects if r.first <= step <= r.last]
            if live:
                profile[step] += max(r.end for r in live) - min(r.start for r in live)
    return profile
