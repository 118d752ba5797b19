"""Peak SRAM of a candidate: the planner's arena, and a fast evaluator that agrees with it.

Two real figures, both from `edgekit.planner` on `graph_from_spec(spec)` (the converter's
layout; inputs and outputs counted, they live in SRAM):

- `planner_arena(spec)`: ``plan(graph).arena_bytes`` with every in-place mode;
- `peak_sram(spec)`: what the firmware will have, ``firmware_plan(graph)``: the same planner
  restricted to the in-place modes the code generator implements today (it lacks
  ``pointwise_inplace_backward``, so this can be larger; the two agree once it has them all),
  and with a patch schedule the plan of `edgekit.patching`'s rewritten graph. It takes a few
  hundred ms; the search computes it for every candidate it trains, and its constraint uses it.

`peak_sram_fast(spec)` equals the planner's lower bound of `planner_arena(spec)` exactly for
layer-by-layer candidates, thousands of times faster; the arena meets that bound on most
chains and exceeds it by a few bytes where a pointwise conv's widened scratch (4 x C_in) finds
no gap (4 of the 33 specs of tests/test_nas_memory.py, by 24-48 B). Why it can: the network is
a chain (a residual block reads only its own input again), so every step of the schedule touches the tensors of one *segment* (the
stem, one block, or the head): the live bytes of a step, the in-place mode each op takes (a
static table plus "does the input die here", which is local) and the conv+ADD fusion of a
block depend on that segment's shapes alone, so the lower bound (the most bytes live at one
step) is the largest segment peak. Each segment's peak comes from the real planner run on that
segment alone, memoised by its shape key (resolution, channels, kernel, stride, expansion): a search space
has about a thousand distinct segments, and a candidate is then ~15 dictionary look-ups.
tests/test_nas_memory.py checks the equality on random specs and MobileNetV2;
bench/nas_memory_throughput.py measures the rate, cold cache included. With only the
firmware's modes the decomposition does not hold (chains placed with conv_sliding leads drift,
and the arena exceeds the bound), which is why the firmware figure is planned for real.

The search prunes with the fast figure: on every spec the tests and the benchmark drew,
``peak_sram_fast <= peak_sram`` (fewer in-place modes never planned smaller), so a candidate
whose fast figure is over the board's budget is dropped untrained. That relation is measured,
not proven; no candidate is ever *accepted* on the fast figure.

Patch schedules: the patched arena is not decomposable that way (the tiles of the stage share
the arena with the whole split tensor and the input), so `peak_sram_bound` is what the search
prunes patched candidates with: for a patched spec a lower bound (the unchanged segments after
the split, and the input and the split tensor, both live at the last tile). Every patched
candidate that passes is planned for real with `peak_sram`.
"""

from __future__ import annotations

from functools import lru_cache

from edgekit.ir import Graph
from edgekit.nas.graph import _Builder, add_block, add_head, add_stem, block_outputs, graph_from_spec
from edgekit.nas.mcunet import Block, MCUNetSpec
from edgekit.firmware.codegen import available_inplace_modes, firmware_plan
from edgekit.planner import plan


def segment_keys(spec: MCUNetSpec) -> list[tuple]:
    """One hashable key per segment: what its peak depends on."""
    size = spec.resolution
    keys = [("stem", size, spec.in_channels, spec.stem_out)]
    size = -(-size // 2)
    for block in spec.blocks():
        keys.append(("block", size, block.in_channels, block.out_channels, block.expansion,
                     block.kernel, block.stride))
        size = -(-size // block.stride)
    keys.append(("head", size, spec.blocks()[-1].out_channels, spec.last_channels,
                 spec.num_classes))
    return keys


def segment_graph(key: tuple) -> Graph:
    """The segment alone: its input is a graph input, its last tensor the graph output."""
    b = _Builder(0)
    kind, size, channels = key[:3]
    x = b.activation("x", (1, size, size, channels))
    if kind == "stem":
        out = add_stem(b, x, _StemSpec(key[3]))
    elif kind == "block":
        out = add_block(b, x, 0, Block(channels, key[3], key[4], key[5], key[6]))
    else:
        out = add_head(b, x, key[3], key[4])
    return Graph(b.tensors, b.ops, [x], [out], name=f"segment {key}")


class _StemSpec:
    def __init__(self, stem_out: int):
        self.stem_out = stem_out


@lru_cache(maxsize=None)
def segment_peak(key: tuple) -> int:
    """The planner's peak (every in-place mode) over the steps of one segment, memoised."""
    return plan(segment_graph(key), reorder=False).lower_bound_bytes


@lru_cache(maxsize=1)
def firmware_modes() -> frozenset[str]:
    """The in-place modes the code generator implements (read once per process)."""
    return available_inplace_modes()


def peak_sram_fast(spec: MCUNetSpec) -> int:
    """The layer-by-layer arena of ``spec`` in bytes (== `planner_arena`)."""
    return max(segment_peak(key) for key in segment_keys(spec))


def _bytes(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return -(-n // 4) * 4  # the planner's 4-byte alignment


def peak_sram_bound(spec: MCUNetSpec) -> int:
    """`peak_sram_fast` without a patch; with one, a lower bound of the patched arena."""
    keys = segment_keys(spec)
    if spec.patch_split is None:
        return max(segment_peak(key) for key in keys)
    rest = max(segment_peak(key) for key in keys[spec.patch_split + 2:])
    split = keys[spec.patch_split + 2]  # the segment reading the split tensor: its input
    frame = _bytes((spec.resolution, spec.resolution, spec.in_channels))
    return max(rest, frame + _bytes((split[1], split[1], split[2])))


def patch_schedule(spec: MCUNetSpec, graph: Graph | None = None):
    """The ``edgekit.patching.PatchSchedule`` of ``spec`` (None without a patch split); tensor
    names from ``graph`` when it is a converted graph, else `graph_from_spec`'s."""
    if spec.patch_split is None:
        return None
    from edgekit.nas.graph import converted_block_outputs
    from edgekit.patching import PatchSchedule  # the other half of issue 6

    names = block_outputs(spec) if graph is None or "b0/dw" in graph.tensors \
        else converted_block_outputs(graph, spec)
    return PatchSchedule(split=names[spec.patch_split], n=spec.patch_n)


def patching_available() -> bool:
    try:
        import edgekit.patching  # noqa: F401
    except ImportError:
        return False
    return True


def planner_arena(spec: MCUNetSpec, graph: Graph | None = None) -> int:
    """``plan(graph).arena_bytes`` (every in-place mode, layer by layer)."""
    return plan(graph_from_spec(spec) if graph is None else graph).arena_bytes


#: the offset strategy the search's screen plans candidates with: the multi-order first and best
#: fit that the build's branch and bound starts from and only improves on, so its arena is never
#: below the build's (an upper bound: a candidate it admits fits); equal to it on every
#: candidate tests/test_nas_memory.py draws, in about half the time
SCREEN_STRATEGY = "multi"


def firmware_memory(spec: MCUNetSpec, graph: Graph | None = None, *,
                    strategy: str | None = None) -> tuple[int, Graph, float]:
    """(the firmware's arena in bytes, the graph the firmware runs, the MACs the patches
    recompute as a fraction of the layer-by-layer MACs): the planner with the code generator's
    in-place modes, on the patched graph when ``spec`` has a patch schedule (and
    ``edgekit.patching`` is there). ``graph`` defaults to `graph_from_spec(spec)` (or pass the
    converted graph). ``strategy``: the planner's offset strategy (default: the build's);
    `SCREEN_STRATEGY` gives an upper bound of the build's arena, faster."""
    graph = graph_from_spec(spec) if graph is None else graph
    options = {"inplace": firmware_modes()}
    if strategy is not None:
        options["strategy"] = strategy
    if spec.patch_split is not None and patching_available():
        from edgekit.patching import plan_patched

        patched = plan_patched(graph, patch_schedule(spec, graph), **options)
        return patched.plan.arena_bytes, patched.graph, patched.mac_overhead
    return firmware_plan(graph, **options).arena_bytes, graph, 0.0


def peak_sram(spec: MCUNetSpec, graph: Graph | None = None) -> int:
    """The firmware's arena (bytes) of ``spec`` (`firmware_memory`)."""
    return firmware_memory(spec, graph)[0]
