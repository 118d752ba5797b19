"""A convolution fused with the residual ADD that consumes it: mode ``conv_add_skip``.

In a residual block ``z = ADD(conv(x), skip)`` the conv's output ``y`` is read once, by the ADD,
element by element. A fused kernel computes each conv output element, adds the skip element at
the same index with the ADD's arithmetic and writes the result over that skip element. ``y``
never exists (no arena bytes), and ``z`` takes the skip tensor's buffer, so the step needs only
``x`` and ``skip`` instead of ``x``, ``skip`` and ``y``.

Static conditions (`fusion_candidates`): an ADD whose two inputs are non-constant, int8 and of
the output's exact shape (no broadcast), batch 1; one input ``y`` is the only output of a CONV_2D
that nobody else reads and that is not a graph output; the other input ``skip`` is not a graph
output, is not read by the conv, and none of its other readers depends on the conv (so it can
die at the ADD). The planner runs the ADD immediately after the conv, which makes the ADD the
skip's last reader.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekit.ir import Graph

#: the in-place mode name of a fused ADD's output (it overwrites the skip tensor)
CONV_ADD_MODE = "conv_add_skip"

#: conv kinds that may be fused with a following residual ADD
FUSABLE_CONV_KINDS = frozenset({"CONV_2D"})


@dataclass(frozen=True)
class FusedConvAdd:
    """The conv at op index ``conv`` and the ADD at op index ``add`` run as one kernel call.

    ``intermediate`` (the conv's output, ADD input number ``conv_input_position``) has no
    buffer; ``output`` (the ADD's) is written over ``skip`` (the ADD's other input). In the
    schedule the ADD comes right after the conv."""

    conv: int
    add: int
    intermediate: str
    skip: str
    output: str
    conv_input_position: int


def _descendants(graph: Graph, start: int) -> set[int]:
    """Op indices that (transitively) read an output of op ``start``."""
    consumers = graph.consumers()
    seen: set[int] = set()
    stack = [start]
    while stack:
        for name in graph.ops[stack.pop()].outputs:
            for reader in consumers.get(name, []):
                if reader not in seen:
                    seen.add(reader)
                    stack.append(reader)
    return seen


def fusion_candidates(graph: Graph) -> dict[int, list[FusedConvAdd]]:
    """For every ADD that may fuse with a conv producing one of its inputs: the possible
    fusions (one per fusable input), in input order. Static conditions only."""
    producer = graph.producer()
    consumers = graph.consumers()
    found: dict[int, list[FusedConvAdd]] = {}
    for add_index, add in enumerate(graph.ops):
        if add.kind != "ADD" or len(add.outputs) != 1 or len(add.present_inputs()) != 2:
            continue
        a, b = add.inputs[0], add.inputs[1]
        out = graph[add.outputs[0]]
        if a == b or out.dtype.bits != 8 or len(out.shape) != 4 or out.shape[0] != 1:
            continue
        if any(graph[n].is_constant or graph[n].shape != out.shape or graph[n].dtype != out.dtype
               for n in (a, b)):
            continue
        options = []
        for position, (y, skip) in enumerate(((a, b), (b, a))):
            conv_index = producer.get(y)
            if conv_index is None:
                continue
            conv = graph.ops[conv_index]
            if (conv.kind not in FUSABLE_CONV_KINDS or conv.outputs != [y]
                    or consumers.get(y, []) != [add_index] or y in graph.outputs
                    or skip in graph.outputs or skip in conv.present_inputs()):
                continue
            downstream = _descendants(graph, conv_index)
            if any(r in downstream for r in consumers.get(skip, []) if r != add_index):
                continue
            options.append(FusedConvAdd(conv_index, add_index, y, skip, add.outputs[0], position))
        if options:
            found[add_index] = options
    return found
