"""Peak SRAM of a candidate: the real planner's arena, and a fast evaluator that agrees with it.

`peak_sram(spec)` is ``edgekit.planner.plan(graph_from_spec(spec)).arena_bytes`` (inputs and
outputs included), the figure the firmware will have; with a patch schedule it plans the
rewritten graph of `edgekit.patching` where that module exists. It takes a few hundred ms.

`peak_sram_fast(spec)` gives the same number for layer-by-layer candidates thousands of times
faster. Why it can: the network is a chain (residual blocks read only their own input again),
so every step of the schedule touches the tensors of one *segment* only (the stem, one block,
or the head): the live bytes of a step, the in-place mode each op takes (a static table plus
"does the input die here", which is local) and the conv+ADD fusion of a block depend on that
segment's shapes alone. The arena of these chains equals the planner's lower bound (the most
bytes live at one step: the test checks it), so the arena is the largest segment peak.
Each segment's peak comes from the real planner run on that segment alone, memoised by its
shape key (resolution, channels, kernel, stride, expansion): a search space has a few thousand
distinct segments, and a candidate is then ~15 dictionary look-ups. The agreement is exact and
tested on random specs (tests/test_nas_memory.py); bench/nas_memory_throughput.py measures
the rate, cold cache included.

Patch schedules: the patched arena is not decomposable that way (the tiles of the stage share
the arena with the whole split tensor and the input), so `peak_sram_fast` stays exact only
without a patch. `peak_sram_bound` is what the search prunes with: exact without a patch, and
for a patched spec a lower bound (the unchanged segments after the split, and the input and
the split tensor, both live at the last tile); a candidate whose bound exceeds the board is
dropped untrained, every other patched candidate is planned for real with `peak_sram`.
"""

from __future__ import annotations

from functools import lru_cache

from edgekit.ir import Graph
from edgekit.nas.graph import _Builder, add_block, add_head, add_stem, block_outputs, graph_from_spec
from edgekit.nas.mcunet import Block, MCUNetSpec
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
    """The planner's peak over the steps of one segment (memoised)."""
    return plan(segment_graph(key), reorder=False).lower_bound_bytes


def peak_sram_fast(spec: MCUNetSpec) -> int:
    """The layer-by-layer arena of ``spec`` in bytes (== `peak_sram` without a patch)."""
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


def peak_sram(spec: MCUNetSpec, graph: Graph | None = None) -> int:
    """The real arena (bytes) of ``spec`` from the planner, patch schedule included when
    ``edgekit.patching`` is there; ``graph`` defaults to `graph_from_spec(spec)`."""
    graph = graph_from_spec(spec) if graph is None else graph
    if spec.patch_split is not None and patching_available():
        from edgekit.patching import plan_patched

        return plan_patched(graph, patch_schedule(spec, graph)).plan.arena_bytes
    return plan(graph).arena_bytes
