"""Op reordering: the topological order with the smallest peak of live bytes.

Branches (resnet's residual shortcut and main path, inception-style fans) can run in any order;
running the branch that frees more memory first can lower the peak. We search the orders exactly
by dynamic programming over the set of ops already run (a state is a downward-closed set of ops;
two orders reaching the same set leave the same tensors live, so only the lower peak so far
matters). The cost of a step is the same live-byte count as the plan's profile: live tensors,
the op's outputs, its scratch, minus the bytes an in-place output shares with its input.

The number of states grows with the graph's width; past ``max_states`` we keep the order the
graph came in (always valid) rather than guess.
"""

from __future__ import annotations

from edgekit.ir import Graph
from edgekit.planner.problem import activation_names, choose_inplace, scratch_extent, tensor_bytes

#: DP states explored before falling back to the graph's own order
MAX_STATES = 50000


def best_schedule(graph: Graph, *, alignment: int, inplace: bool,
                  max_states: int = MAX_STATES) -> list[int]:
    """A topological op order minimising the peak live bytes; ties keep the graph's order.

    Returns the graph's own order when the search would exceed ``max_states`` states.
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

    def live_after(done: int) -> int:
        total = 0
        for name in names:
            written = name not in producer or done >> producer[name] & 1
            if written and (name in outputs or consumers[name] & ~done):
                total += size[name]
        return total

    def step_cost(done: int, index: int) -> int:
        op = graph.ops[index]
        after = done | 1 << index
        mode = None
        shared = 0
        if inplace:
            choice = choose_inplace(op, graph, lambda name: not consumers[name] & ~after)
            if choice:
                mode = choice[0]
                shared = min(size[choice[1]], size[op.outputs[0]])
        scratch = scratch_extent(op, graph, mode, alignment)[0]
        unread_inputs = idle_inputs if done == 0 else 0  # in the arena at step 0 all the same
        return (live_after(done) + unread_inputs + sum(size[name] for name in op.outputs)
                - shared + scratch)

    # states of one layer (same number of ops run): done-mask -> (peak so far, order)
    layer: dict[int, tuple[int, tuple[int, ...]]] = {0: (0, ())}
    explored = 0
    for _ in range(n):
        nxt: dict[int, tuple[int, tuple[int, ...]]] = {}
        for done, (peak, order) in layer.items():
            for index in range(n):
                if done >> index & 1 or (needs[index] & ~done):
                    continue
                candidate = (max(peak, step_cost(done, index)), order + (index,))
                after = done | 1 << index
                if after not in nxt or candidate < nxt[after]:
                    nxt[after] = candidate
        explored += len(nxt)
        if explored > max_states:
            return list(range(n))
        layer = nxt
    (_, order), = layer.values()
    return list(order)
