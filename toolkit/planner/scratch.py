"""Per-op scratch memory: the one definition the planner and the code generator share.

A scratch buffer is temporary memory a kernel needs while it runs (an accumulator row, one
channel plane for in-place depthwise convolution). It lives only during its op's step, in the
arena, at the offset the plan gives it. The code generator must ask `scratch_bytes` for the size
and must not use more; if a kernel changes what it needs, change it here so the plan stays true.
"""

from __future__ import annotations

from edgekit.ir import Graph, Op
from edgekit.planner.fusion import CONV_ADD_MODE
from edgekit.planner.inplace import MODES_BY_NAME

#: int32 accumulators need 4-byte alignment whatever the plan's alignment parameter
INT32_ALIGNMENT = 4


def _mean_scratch(op: Op, graph: Graph) -> int:
    # Our MEAN kernel (like TFLite Micro's reference reduce) sums into one int32 per output
    # element before rescaling.
    return 4 * graph[op.outputs[0]].size


def _attention_scratch(op: Op, graph: Graph) -> int:
    # the fused attention kernel holds one query row's int8 scores (then probabilities) for one
    # head at a time: Tk bytes (edgekit.attention)
    return graph[op.inputs[1]].shape[-2]


#: scratch of the out-of-place kernels, by op kind (kinds not listed need none)
_OUT_OF_PLACE_SCRATCH = {
    "MEAN": _mean_scratch,
    "ATTENTION": _attention_scratch,
}

#: minimum alignment of each kind's out-of-place scratch
_OUT_OF_PLACE_ALIGNMENT = {
    "MEAN": INT32_ALIGNMENT,
}


def scratch_bytes(op: Op, graph: Graph, inplace_mode: str | None = None) -> int:
    """Bytes of scratch ``op`` needs when run out of place (``inplace_mode=None``) or under the
    named in-place mode from `edgekit.planner.inplace.INPLACE_MODES`. A fused conv+ADD
    (``conv_add_skip``) needs its conv's out-of-place scratch, counted at the conv's step; the
    ADD's own step needs none."""
    if inplace_mode == CONV_ADD_MODE:
        return 0
    if inplace_mode is not None:
        return MODES_BY_NAME[inplace_mode].scratch_bytes(op, graph)
    size_of = _OUT_OF_PLACE_SCRATCH.get(op.kind)
    return size_of(op, graph) if size_of else 0


def scratch_alignment(op: Op, inplace_mode: str | None = None) -> int:
    """The minimum alignment the scratch of ``op`` needs (the plan may align it more)."""
    if inplace_mode == CONV_ADD_MODE:
        return 1
    if inplace_mode is not None:
        return MODES_BY_NAME[inplace_mode].scratch_alignment
    return _OUT_OF_PLACE_ALIGNMENT.get(op.kind, 1)
