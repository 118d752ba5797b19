"""Op reordering: the topological order with the smallest peak of live bytes.

Branches (resnet's residual shortcut and main path, inception-style fans) can run in any order;
running the branch that frees more memory first can lower the peak. We search the orders exactly
by dynamic programming over the set of ops already run (a state is a downward-closed set of ops;
two orders reaching the same set leave the same tensors live, so only the lower peak so far
matters). The cost of a step is the same live-byte count as the plan's profile: live tensors,
the op's outputs, its scratch, minus the bytes an in-place output shares with its input.

The number of states grows with the graph's width; where one layer (sets of the same size)
holds more than ``beam_width`` states we keep the most promising ones (a beam search), and we
return the graph's own order unless the found order has a strictly lower peak.
"""

from __future__ import annotations

from edgekit.ir import Graph
from edgekit.planner.problem import (
    activation_names, choose_inplace, inplace_options, scratch_extent, tensor_bytes,
)

#: most states kept per layer; wider graphs are searched as a beam, not exhaustively
BEAM_WIDTH = 256


def best_schedule(graph: Graph, *, alignment: int, inplace: bool,
                  beam_width: int = BEAM_WIDTH) -> list[int]:
    """A topological op order minimising the peak live bytes; ties keep the graph's order.

    Exact while no layer of the search holds more than ``beam_width`` states (chains, and graphs
    with a few parallel branches such as resnet's); past that, the states with the lowest peak
    so far (then fewest live bytes) are kept. Never worse than the graph's own order.
    """
    n = len(graph.ops)
    if n <= 1:
        return list(range(n))
    names = activation_names(graph)
    size = {name: tensor_bytes(graph, name, alignment) for name in names}
    producer = graph.producer()
    consumers = {name: 0 for name in names}  # bitmask of ops reading each tensor
    needs = [0] * n  # bitmask of ops whose outputs op i reads
    for i, op in enumerate(graph.ops):
        for name in op.present_inputs():
            if graph[name].is_constant:
                continue
            consumers[name] |= 1 << i
            if name in producer:
                needs[i] |= 1 << producer[name]
    outputs = set(graph.outputs)
    idle_inputs = sum(size[name] for name in graph.inputs
                      if not consumers[name] and name not in outputs)

    options = [inplace_options(op, graph) if inplace else [] for op in graph.ops]
    scratch = {(i, mode): scratch_extent(op, graph, mode, alignment)[0]
               for i, op in enumerate(graph.ops) for mode in {None, *(m for m, _ in options[i])}}
    out_bytes = [sum(size[name] for name in op.outputs) for op in graph.ops]
    in_names = [[n for n in dict.fromkeys(op.present_inputs()) if n in size] for op in graph.ops]

    def still_needed(name: str, done: int) -> bool:
        return name in outputs or bool(consumers[name] & ~done)

    def step(done: int, live: int, index: int) -> tuple[int, int]:
        """(bytes live during op ``index`` run after ``done``, bytes live after it)."""
        op = graph.ops[index]
        after = done | 1 << index
        mode = None
        shared = 0
        choice = choose_inplace(options[index], lambda name: not still_needed(name, after))
        if choice:
            mode = choice[0]
            shared = min(size[choice[1]], size[op.outputs[0]])
        unread_inputs = idle_inputs if done == 0 else 0  # in the arena at step 0 all the same
        during = live + unread_inputs + out_bytes[index] - shared + scratch[index, mode]
        freed = sum(size[n] for n in in_names[index] if not still_needed(n, after))
        kept = sum(size[n] for n in op.outputs if still_needed(n, after))
        return during, live - freed + kept

    def peak_of(order: list[int]) -> int:
        done, live, peak = 0, start_live, 0
        for index in order:
            during, live = step(done, live, index)
            peak, done = max(peak, during), done | 1 << index
        return peak

    # one layer of states (same number of ops run): done-mask -> (peak so far, order, live bytes)
    start_live = sum(size[n] for n in graph.inputs if still_needed(n, 0))
    layer: dict[int, tuple[int, tuple[int, ...], int]] = {0: (0, (), start_live)}
    for _ in range(n):
        nxt: dict[int, tuple[int, tuple[int, ...], int]] = {}
        for done, (peak, order, live) in layer.items():
            for index in range(n):
                if done >> index & 1 or (needs[index] & ~done):
                    continue
                during, live_next = step(done, live, index)
                candidate = (max(peak, during), order + (index,), live_next)
                after = done | 1 << index
                if after not in nxt or candidate[:2] < nxt[after][:2]:
                    nxt[after] = candidate
        if len(nxt) > beam_width:  # too wide to be exact: keep the most promising states
            kept = sorted(nxt.items(), key=lambda item: (item[1][0], item[1][2], item[1][1]))
            nxt = dict(kept[:beam_width])
        layer = nxt
    peak, order, _ = min(layer.values())
    graph_order = list(range(n))
    return list(order) if peak < peak_of(graph_order) else graph_order
