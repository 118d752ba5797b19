"""Patch-based inference (MCUNetV2): run the memory-heavy first stage of a CNN tile by tile.

The first layers of an image CNN hold the largest feature maps. A patch schedule computes the
*split* tensor (the output of the patched stage) in ``n x n`` tiles: for each tile, every op of
the stage runs on just the region of its input that the tile's receptive field needs, so only
one tile's intermediates are ever live. Neighbouring tiles' regions overlap (the halo), and
those overlaps are computed more than once: that is the MAC overhead the schedule pays.

`apply_patches` is a graph rewrite, so everything downstream (reference interpreter, memory
planner, code generator) runs the patched schedule with no special case:

- receptive-field tracing, backwards from each tile of the split tensor through the stage: a
  window op (conv, depthwise conv, pool, PAD) needs ``[a*s - p, (b-1)*s - p + (k-1)*d + 1)`` of
  its input for output rows ``[a, b)`` (columns alike), clipped to the tensor; an element-wise
  op needs what it produces; a tensor read by several ops (a residual skip) is computed over
  the bounding box of what they need;
- each tile then runs a copy of every stage op on its region, with *local* padding: the rows a
  window needs beyond the tensor's edge are the original padding, those inside come from the
  neighbouring data in the region, so the arithmetic (and every byte) equals the whole-tensor
  op's (out-of-bounds taps are skipped, as TFLite's kernels do);
- a ``SLICE`` cuts a region out of the graph input, or out of a larger computed region where a
  reader needs less (the skip operand of a residual ADD);
- ``INSERT_TILE`` copies each tile into the split tensor, which lives whole from the first tile
  on; the planner's ``tile_insert`` mode makes every insert write into the same buffer.

The graph after the rewrite computes the same split tensor (same name) and the same outputs,
byte for byte; the tests check that against the unpatched graph and TFLite Micro.

    schedule = PatchSchedule("sequential/block_3_add/Add", 4)   # or parse_patch("12:4x4", g)
    patched = apply_patches(graph, schedule)
    result = plan_patched(graph, schedule)                       # PatchPlan: plan + overhead
    best = auto_patch(graph)                                     # searches split and n
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from edgekit.costs import graph_macs
from edgekit.errors import PatchError
from edgekit.ir import Graph, Op, Tensor
from edgekit.planner import CONV_ADD_MODE, DEFAULT_ALIGNMENT, MemoryPlan, plan
from edgekit.planner.inplace import ELEMENTWISE_KINDS
from edgekit.planner.problem import build_problem, enabled_modes

#: ops whose output window comes from an input window (kernel, stride, dilation, padding)
WINDOW_KINDS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D",
                          "PAD"})
#: every op kind a patched stage may hold
PATCHABLE_KINDS = WINDOW_KINDS | ELEMENTWISE_KINDS

#: tile counts per side `auto_patch` tries by default
AUTO_TILE_COUNTS = (2, 3, 4, 5, 6, 8)

#: a region of a 4-D NHWC tensor: rows [y0, y1), columns [x0, x1), every channel
Region = tuple[int, int, int, int]


@dataclass(frozen=True)
class PatchSchedule:
    """Compute tensor ``split`` (the end of the patched stage) in ``n x n`` tiles."""

    split: str
    n: int

    def __str__(self) -> str:
        return f"{self.split}:{self.n}x{self.n}"

    def to_dict(self) -> dict:
        return {"split": self.split, "n": self.n}


@dataclass
class PatchPlan:
    """A patched graph's memory plan and what the schedule costs in recomputation."""

    schedule: PatchSchedule
    graph: Graph  # the patched graph
    plan: MemoryPlan
    macs: int
    base_macs: int  # the unpatched graph's

    @property
    def mac_overhead(self) -> float:
        """Extra MACs of the recomputed halos, as a fraction of the layer-by-layer MACs."""
        return self.macs / self.base_macs - 1.0 if self.base_macs else 0.0

    def to_dict(self) -> dict:
        return {"schedule": str(self.schedule), **self.schedule.to_dict(),
                "arena_bytes": self.plan.arena_bytes,
                "peak_bytes_without_input": peak_without_inputs(self.plan),
                "ops": len(self.graph.ops), "macs": self.macs, "base_macs": self.base_macs,
                "mac_overhead": self.mac_overhead}


# --- the stage --------------------------------------------------------------------------------

def stage_ops(graph: Graph, split: str) -> list[int]:
    """Indices (graph order) of the ops the patched stage ending at ``split`` holds: every op
    ``split`` depends on. `PatchError` unless they are all patchable, batch-1 NHWC ops whose
    intermediate tensors nothing outside the stage reads."""
    if split not in graph.tensors:
        raise PatchError(f"patch split {split!r} is not a tensor of graph {graph.name!r}")
    producer = graph.producer()
    if split not in producer:
        raise PatchError(f"patch split {split!r} is not computed by an op (a graph input or a"
                         " constant)")
    stage: set[int] = set()
    pending = [producer[split]]
    while pending:
        index = pending.pop()
        if index in stage:
            continue
        stage.add(index)
        pending.extend(producer[n] for n in graph.ops[index].present_inputs() if n in producer)
    consumers = graph.consumers()
    for index in sorted(stage):
        op = graph.ops[index]
        label = f"op {index} ({op.kind}{' ' + op.name if op.name else ''})"
        if op.kind not in PATCHABLE_KINDS:
            raise PatchError(f"patch split {split!r}: {label} cannot run by patches (patchable:"
                             f" {', '.join(sorted(PATCHABLE_KINDS))})")
        for name in [*op.outputs, *op.present_inputs()]:
            t = graph[name]
            if not t.is_constant and (len(t.shape) != 4 or t.shape[0] != 1):
                raise PatchError(f"patch split {split!r}: {label} tensor {name!r} has shape"
                                 f" {t.shape}; patches need batch-1 NHWC tensors")
        if op.kind in ELEMENTWISE_KINDS:
            _check_elementwise(graph, op, label, split)
        if op.kind == "PAD" and tuple(op.attrs["paddings"][0]) != (0, 0):
            raise PatchError(f"patch split {split!r}: {label} pads the batch axis")
        out = op.outputs[0]
        if out != split:
            outside = [c for c in consumers[out] if c not in stage]
            if outside or out in graph.outputs:
                raise PatchError(f"patch split {split!r}: {label} output {out!r} is also read"
                                 " outside the stage; split at a later tensor")
    return sorted(stage)


def _check_elementwise(graph: Graph, op: Op, label: str, split: str) -> None:
    out = graph[op.outputs[0]]
    for name in op.present_inputs():
        t = graph[name]
        if t.is_constant:
            spatial = t.shape[-3:-1] if len(t.shape) >= 3 else ()
            if any(d != 1 for d in spatial):
                raise PatchError(f"patch split {split!r}: {label} constant {name!r} varies over"
                                 " the image; only per-channel constants can be patched")
        elif t.shape != out.shape:
            raise PatchError(f"patch split {split!r}: {label} broadcasts {name!r} {t.shape} to"
                             f" {out.shape}")


def split_candidates(graph: Graph) -> list[str]:
    """Tensors a patch schedule can end at, in graph order: outputs of patchable ops whose whole
    stage is patchable, with more than one row and column."""
    found = []
    for op in graph.ops:
        out = graph[op.outputs[0]]
        if op.kind not in PATCHABLE_KINDS or len(out.shape) != 4 or min(out.shape[1:3]) < 2:
            continue
        try:
            stage_ops(graph, out.name)
        except PatchError:
            continue
        found.append(out.name)
    return found


# --- receptive fields ---------------------------------------------------------------------------

def _window(op: Op, graph: Graph, axis: int) -> tuple[int, int, int, int]:
    """(kernel, stride, dilation, padding before) of ``op`` along spatial ``axis`` (0: rows)."""
    if op.kind == "PAD":
        return 1, 1, 1, int(op.attrs["paddings"][1 + axis][0])
    if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        kernel = graph[op.inputs[1]].shape[1 + axis]
        dilation = op.attrs.get("dilation", (1, 1))[axis]
    elif op.kind in WINDOW_KINDS:
        kernel, dilation = op.attrs["filter"][axis], 1
    else:  # element-wise
        return 1, 1, 1, 0
    return (int(kernel), int(op.attrs.get("stride", (1, 1))[axis]), int(dilation),
            int(op.attrs.get("pad", (0, 0, 0, 0))[2 * axis]))


def _needed(op: Op, graph: Graph, out: Region, in_shape) -> tuple[Region, tuple[int, ...]]:
    """The input region ``op`` reads to produce region ``out`` of its output, and the local
    padding (top, bottom, left, right) that makes the op on that region exact."""
    region, pads = [], []
    for axis in (0, 1):
        k, s, d, p = _window(op, graph, axis)
        a, b = out[2 * axis], out[2 * axis + 1]
        start, end = a * s - p, (b - 1) * s - p + (k - 1) * d + 1
        lo, hi = max(0, start), min(in_shape[1 + axis], end)
        if hi <= lo:
            raise PatchError(f"{op.kind} {op.name!r}: a tile's rows/columns [{a}, {b}) of its"
                             " output lie wholly in its padding; use fewer tiles")
        region += [lo, hi]
        pads += [lo - start, end - hi]
    return (region[0], region[1], region[2], region[3]), tuple(pads)


def _union(a: Region | None, b: Region) -> Region:
    if a is None:
        return b
    return (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))


def tiles(shape, n: int) -> list[Region]:
    """The ``n x n`` tiles of a (1, H, W, C) tensor, row-major; sides differ by at most one."""
    h, w = shape[1], shape[2]
    rows = [(i * h // n, (i + 1) * h // n) for i in range(n)]
    cols = [(j * w // n, (j + 1) * w // n) for j in range(n)]
    return [(y0, y1, x0, x1) for y0, y1 in rows for x0, x1 in cols]


# --- the rewrite ------------------------------------------------------------------------------

def apply_patches(graph: Graph, schedule: PatchSchedule) -> Graph:
    """``graph`` with its stage up to ``schedule.split`` computed tile by tile (see the module
    docstring). The split tensor and everything after it keep their names."""
    stage = stage_ops(graph, schedule.split)
    split = graph[schedule.split]
    n = schedule.n
    if n < 1 or n > min(split.shape[1], split.shape[2]):
        raise PatchError(f"patch split {schedule.split!r} is {split.shape[1]}x{split.shape[2]}:"
                         f" cannot cut it into {n}x{n} tiles")
    stage_set = set(stage)
    produced = {graph.ops[i].outputs[0] for i in stage}
    tensors = {name: t for name, t in graph.tensors.items()
               if name not in produced or name == schedule.split}
    patch_ops: list[Op] = []
    full_map: str | None = None
    tile_list = tiles(split.shape, n)
    for number, tile in enumerate(tile_list):
        suffix = f"@p{number // n}_{number % n}"
        need = _trace(graph, stage, schedule.split, tile)
        local: dict[str, tuple[str, Region]] = {}  # global tensor -> (local name, its region)
        for index in stage:
            op = graph.ops[index]
            out = op.outputs[0]
            region = need[out]
            inputs: list[str | None] = []
            pads = None
            for position, name in enumerate(op.inputs):
                if name is None or graph[name].is_constant:
                    inputs.append(name)
                    continue
                wanted, op_pads = _needed(op, graph, region, graph[name].shape)
                if op.kind in WINDOW_KINDS and pads is None:
                    pads = op_pads
                inputs.append(_region_of(graph, name, wanted, local, tensors, patch_ops, suffix))
            local_name = out + suffix
            tensors[local_name] = _local_tensor(graph[out], local_name, region)
            local[out] = (local_name, region)
            patch_ops.append(Op(op.kind, inputs, [local_name], _local_attrs(op, pads),
                                name=(op.name or op.kind) + suffix))
        tile_name, _ = local[schedule.split]
        final = number == len(tile_list) - 1
        target = schedule.split if final else f"{schedule.split}@tiles{number}"
        if not final:
            tensors[target] = Tensor(target, split.shape, split.dtype, split.quant)
        patch_ops.append(Op("INSERT_TILE", [full_map, tile_name], [target],
                            {"origin": (0, tile[0], tile[2], 0)},
                            name=f"insert tile {number} of {schedule.split}"))
        full_map = target
    ops: list[Op] = []
    last = stage[-1]
    for index, op in enumerate(graph.ops):
        if index == last:
            ops.extend(patch_ops)
        elif index not in stage_set:
            ops.append(op)
    return Graph(tensors.values(), ops, graph.inputs, graph.outputs, name=graph.name)


def _trace(graph: Graph, stage: list[int], split: str, tile: Region) -> dict[str, Region]:
    """Backwards from one tile of ``split``: the region of every stage tensor it needs."""
    need: dict[str, Region] = {split: tile}
    for index in reversed(stage):
        op = graph.ops[index]
        region = need[op.outputs[0]]
        for name in op.present_inputs():
            if not graph[name].is_constant:
                wanted, _ = _needed(op, graph, region, graph[name].shape)
                need[name] = _union(need.get(name), wanted)
    return need


def _region_of(graph: Graph, name: str, wanted: Region, local, tensors, patch_ops,
               suffix: str) -> str:
    """The local tensor holding exactly region ``wanted`` of ``name``: the tile's own copy, or
    a SLICE of it (or of the whole graph input) when it covers more."""
    if name in local:
        source, have = local[name]
    else:  # a graph input: whole
        t = graph[name]
        source, have = name, (0, t.shape[1], 0, t.shape[2])
    if have == wanted:
        return source
    sliced = f"{name}{suffix}/{wanted[0]}_{wanted[2]}_{wanted[1] - wanted[0]}x{wanted[3] - wanted[2]}"
    if sliced not in tensors:
        tensors[sliced] = _local_tensor(graph[name], sliced, wanted)
        begin = (0, wanted[0] - have[0], wanted[2] - have[2], 0)
        patch_ops.append(Op("SLICE", [source], [sliced], {"begin": begin},
                            name=f"slice {name}{suffix}"))
    return sliced


def _local_tensor(t: Tensor, name: str, region: Region) -> Tensor:
    shape = (1, region[1] - region[0], region[3] - region[2], t.shape[3])
    return Tensor(name, shape, t.dtype, t.quant)


def _local_attrs(op: Op, pads) -> dict:
    attrs = dict(op.attrs)
    if pads is None:
        return attrs
    top, bottom, left, right = pads
    if op.kind == "PAD":
        paddings = [tuple(p) for p in op.attrs["paddings"]]
        paddings[1], paddings[2] = (top, bottom), (left, right)
        attrs["paddings"] = tuple(paddings)
    else:
        attrs["pad"] = (top, bottom, left, right)
    return attrs


# --- planning -----------------------------------------------------------------------------------

_PATCH_TEXT = re.compile(r"^(?P<split>.+):(?P<n>\d+)x(?P<m>\d+)$")


def parse_patch(text: str, graph: Graph) -> PatchSchedule | None:
    """``SPLIT:NxN`` (SPLIT an op index, whose output ends the stage, or a tensor name) as a
    schedule; ``none`` as None. `PatchError` naming the value otherwise (``auto`` is the
    caller's: see `auto_patch`)."""
    if text.strip().lower() == "none":
        return None
    match = _PATCH_TEXT.match(text.strip())
    if not match:
        raise PatchError(f"--patch {text!r}: expected auto, none or SPLIT:NxN (SPLIT an op index"
                         " or a tensor name, e.g. 8:4x4)")
    n, m = int(match["n"]), int(match["m"])
    if n != m:
        raise PatchError(f"--patch {text!r}: tiles are n x n (got {n}x{m})")
    split = match["split"]
    if split.isdigit():
        index = int(split)
        if index >= len(graph.ops):
            raise PatchError(f"--patch {text!r}: op index {index} out of range (graph"
                             f" {graph.name!r} has {len(graph.ops)} ops)")
        split = graph.ops[index].outputs[0]
    schedule = PatchSchedule(split, n)
    stage_ops(graph, split)
    return schedule


def plan_patched(graph: Graph, schedule: PatchSchedule, **plan_options) -> PatchPlan:
    """Plan ``graph`` under ``schedule``. The patched graph runs in its own order (tile after
    tile: ``reorder`` is off, reordering cannot beat it and the search over its many ops is
    slow); other options go to `edgekit.planner.plan`."""
    patched = apply_patches(graph, schedule)
    plan_options = {**plan_options, "reorder": False}
    return PatchPlan(schedule, patched, plan(patched, **plan_options), graph_macs(patched),
                     graph_macs(graph))


def peak_without_inputs(memory: MemoryPlan) -> int:
    """The peak as MCUNetV2's papers count it, without the input image: the most bytes live at
    any step after taking away the graph inputs' bytes while they are live."""
    graph = memory.graph
    inputs = set(graph.inputs)
    return max((p.live_bytes - sum(graph[n].nbytes for n in p.live_tensors if n in inputs)
                for p in memory.profile), default=0)


@dataclass
class AutoPatch:
    """`auto_patch`'s answer: the best schedule (None: layer by layer is best), its plan, the
    layer-by-layer plan, and every schedule tried."""

    schedule: PatchSchedule | None
    best: PatchPlan | None
    layer_by_layer: MemoryPlan
    tried: list[PatchPlan] = field(default_factory=list)

    @property
    def arena_bytes(self) -> int:
        return self.best.plan.arena_bytes if self.best else self.layer_by_layer.arena_bytes


#: schedules `auto_patch` plans in full after ranking them all by their quick peak
AUTO_FINALISTS = 3


#: what `auto_patch` minimises: the peak with the graph inputs in SRAM (a camera frame is), or
#: without them (MCUNetV2's figure)
OBJECTIVES = ("peak", "peak-without-input")


def quick_peak(graph: Graph, *, alignment: int = DEFAULT_ALIGNMENT, inplace=True,
               without_inputs: bool = False, **_) -> int:
    """The most bytes live at any step of ``graph`` run in its own order with the in-place
    modes but no conv+ADD fusion (``without_inputs``: not counting the graph inputs' bytes
    while they are live): a cheap (tens of milliseconds) ranking figure for schedules."""
    modes = enabled_modes(inplace) - {CONV_ADD_MODE}
    problem = build_problem(graph, list(range(len(graph.ops))), alignment=alignment,
                            inplace=modes)
    if not without_inputs:
        return problem.lower_bound
    spans = [problem.lifetimes[n] for n in graph.inputs if n in problem.lifetimes]
    return max((live - sum(problem.sizes[n] for n, (first, last)
                           in zip(graph.inputs, spans) if first <= step <= last)
                for step, live in enumerate(problem.profile)), default=0)


def auto_patch(graph: Graph, *, tile_counts=AUTO_TILE_COUNTS, max_mac_overhead: float = 1.0,
               planner=plan, progress=None, finalists: int = AUTO_FINALISTS,
               objective: str = "peak", **plan_options) -> AutoPatch:
    """Search the split tensor and the tile count for the smallest peak (``objective``, one of
    `OBJECTIVES`), against the layer-by-layer plan: every schedule that recomputes at most
    ``max_mac_overhead`` (a fraction of the MACs) is ranked by `quick_peak`, the best
    ``finalists`` are planned in full, and the smallest figure wins (ties: the smaller arena,
    then fewer MACs); a schedule is kept only if its arena is smaller than the layer-by-layer
    one. ``planner`` plans the unpatched graph
    (`edgekit.firmware.codegen.firmware_plan` for a build); ``progress(iterable, total)``
    wraps the loop over the schedules (a progress bar)."""
    if objective not in OBJECTIVES:
        raise PatchError(f"unknown patch objective {objective!r}; choose one of"
                         f" {', '.join(OBJECTIVES)}")
    without = objective == "peak-without-input"
    baseline = planner(graph, **plan_options)
    base_macs = graph_macs(graph)
    schedules = [PatchSchedule(split, n) for split in split_candidates(graph) for n in tile_counts
                 if n <= min(graph[split].shape[1:3])]
    ranked = []
    for schedule in (progress(schedules, len(schedules)) if progress else schedules):
        try:
            patched = apply_patches(graph, schedule)
        except PatchError:  # a tile wholly in a PAD's padding: not this tile count
            continue
        macs = graph_macs(patched)
        if base_macs and macs / base_macs - 1.0 > max_mac_overhead:
            continue
        ranked.append((quick_peak(patched, without_inputs=without, **plan_options), macs,
                       len(ranked), schedule))
    ranked.sort()
    tried = [plan_patched(graph, schedule, **plan_options)
             for *_, schedule in ranked[:finalists]]

    def figure(c: PatchPlan):
        return peak_without_inputs(c.plan) if without else c.plan.arena_bytes

    best = min(tried, key=lambda c: (figure(c), c.plan.arena_bytes, c.macs), default=None)
    if best is not None and best.plan.arena_bytes >= baseline.arena_bytes:
        best = None
    return AutoPatch(best.schedule if best else None, best, baseline, tried)


def resolve_patch(graph: Graph, option: str | PatchSchedule | None, *, planner=plan,
                  progress=None, objective: str = "peak", **plan_options) -> AutoPatch:
    """What a ``--patch`` option asks for, planned: ``auto`` searches (`auto_patch`), ``none`` or
    None plans layer by layer, ``SPLIT:NxN`` (or a `PatchSchedule`) plans that schedule even
    where it is worse than layer by layer (the user asked for it). The layer-by-layer plan
    always comes along, for the comparison."""
    if isinstance(option, str) and option.strip().lower() == "auto":
        return auto_patch(graph, planner=planner, progress=progress, objective=objective,
                          **plan_options)
    schedule = (option if isinstance(option, PatchSchedule) or option is None
                else parse_patch(option, graph))
    baseline = planner(graph, **plan_options)
    if schedule is None:
        return AutoPatch(None, None, baseline)
    best = plan_patched(graph, schedule, **plan_options)  # apply_patches checks the stage
    return AutoPatch(schedule, best, baseline, [best])


def patch_summary(result: AutoPatch) -> dict:
    """JSON-ready figures of a resolved ``--patch``: the schedule, arenas with and without the
    input, MACs, and the reduction against layer by layer."""
    base = result.layer_by_layer.arena_bytes
    base_without = peak_without_inputs(result.layer_by_layer)
    summary = {"schedule": None, "layer_by_layer_arena_bytes": base,
               "layer_by_layer_peak_bytes_without_input": base_without,
               "tried": len(result.tried)}
    if result.best is not None:
        best = result.best.to_dict()
        summary.update(best)
        summary["reduction"] = base / max(best["arena_bytes"], 1)
        summary["reduction_without_input"] = base_without / max(best["peak_bytes_without_input"], 1)
    return summary
