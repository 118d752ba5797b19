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

from typing import Mapping

from edgekit.ir import Graph
from edgekit.planner.fusion import FusedConvAdd
from edgekit.planner.problem import (
    InplaceSetting, activation_names, choose_inplace, enabled_modes, inplace_lead, inplace_table,
    scratch_extent, shared_bytes, tensor_bytes,
)

#: most states kept per layer; wider graphs are searched as a beam, not exhaustively
BEAM_WIDTH = 256


def _units(graph: Graph, fusions: Mapping[int, FusedConvAdd]) -> tuple[dict[int, tuple[int, ...]],
                                                                       list[int]]:
    """Schedulable units by their first op (a fused conv runs with its ADD right after it) and
    every unit's dependency mask: the ops whose outputs it reads, and for a fused pair also the
    skip tensor's other readers (the ADD must be the skip's last reader)."""
    producer = graph.producer()
    consumers = graph.consumers()
    fused_adds = {f.add for f in fusions.values()}
    units: dict[int, tuple[int, ...]] = {}
    needs = [0] * len(graph.ops)
    for i in range(len(graph.ops)):
        if i in fused_adds:
            continue
        members = (i, fusions[i].add) if i in fusions else (i,)
        units[i] = members
        mask = 0
        for m in members:
            for name in graph.ops[m].present_inputs():
                if name in producer:
                    mask |= 1 << producer[name]
        if i in fusions:
            for reader in consumers.get(fusions[i].skip, []):
                mask |= 1 << reader
        for m in members:
            mask &= ~(1 << m)
        needs[i] = mask
    return units, needs


def default_order(graph: Graph, fusions: Mapping[int, FusedConvAdd] | None = None) -> list[int]:
    """The graph's own op order, except that each fused ADD runs right after its conv (units
    taken in graph order, each as soon as its dependencies have run)."""
    units, needs = _units(graph, fusions or {})
    order: list[int] = []
    done = 0
    pending = sorted(units)
    while pending:
        ready = next((u for u in pending if not needs[u] & ~done), None)
        if ready is None:
            raise ValueError(f"graph {graph.name!r}: fusions leave no valid op order")
        pending.remove(ready)
        order.extend(units[ready])
        for m in units[ready]:
            done |= 1 << m
    return order


def best_schedule(graph: Graph, *, alignment: int, inplace: InplaceSetting,
                  beam_width: int = BEAM_WIDTH,
                  fusions: Mapping[int, FusedConvAdd] | None = None,
                  options: list[list[tuple[str, str]]] | None = None) -> list[int]:
    """A topological op order minimising the peak live bytes; ties keep the graph's order.

    Exact while no layer of the search holds more than ``beam_width`` states (chains, and graphs
    with a few parallel branches such as resnet's); past that, the states with the lowest peak
    so far (then fewest live bytes) are kept. Never worse than `default_order`. Each conv in
    ``fusions`` (by conv op index) is followed immediately by its ADD. ``options``: the
    `inplace_table` for these settings, when the caller has it.
    """
    fusions = dict(fusions or {})
    n = len(graph.ops)
    if n <= 1:
        return list(range(n))
    modes = enabled_modes(inplace)
    units, needs = _units(graph, fusions)
    names = activation_names(graph)
    size = {name: tensor_bytes(graph, name, alignment) for name in names}
    for f in fusions.values():  # the fused conv's output has no bytes
        size[f.intermediate] = 0
    consumers = {name: 0 for name in names}  # bitmask of ops reading each tensor
    for i, op in enumerate(graph.ops):
        for name in op.present_inputs():
            if not graph[name].is_constant:
                consumers[name] |= 1 << i
    outputs = set(graph.outputs)
    idle_inputs = sum(size[name] for name in graph.inputs
                      if not consumers[name] and name not in outputs)

    if options is None:
        options = inplace_table(graph, modes, alignment)
    scratch = {(i, mode): scratch_extent(op, graph, mode, alignment)[0]
               for i, op in enumerate(graph.ops) for mode in {None, *(m for m, _ in options[i])}}
    out_bytes = [sum(size[name] for name in op.outputs) for op in graph.ops]
    in_names = [[n for n in dict.fromkeys(op.present_inputs()) if n in size] for op in graph.ops]

    def still_needed(name: str, done: int) -> bool:
        return name in outputs or bool(consumers[name] & ~done)

    def step(done: int, live: int, index: int) -> tuple[int, int]:
        """(bytes live during unit ``index`` run after ``done``, bytes live after it)."""
        members = units[index]
        after = done
        for m in members:
            after |= 1 << m
        unread_inputs = idle_inputs if done == 0 else 0  # in the arena at step 0 all the same
        if index in fusions:
            # conv + ADD in one kernel: the conv's output has no bytes and the ADD's output
            # takes the skip's, so only the conv's scratch comes on top of what is live
            add = fusions[index].add
            during = live + unread_inputs + scratch[index, None]
            reads = dict.fromkeys(in_names[index] + in_names[add])
            freed = sum(size[n] for n in reads if not still_needed(n, after))
            kept = sum(size[n] for n in graph.ops[add].outputs if still_needed(n, after))
            return during, live - freed + kept
        op = graph.ops[index]
        mode = None
        shared = 0
        choice = choose_inplace(options[index], lambda name: not still_needed(name, after))
        if choice:
            mode = choice[0]
            shared = shared_bytes(size[choice[1]], size[op.outputs[0]],
                                  inplace_lead(op, graph, mode, alignment))
        during = live + unread_inputs + out_bytes[index] - shared + scratch[index, mode]
        freed = sum(size[n] for n in in_names[index] if not still_needed(n, after))
        kept = sum(size[n] for n in op.outputs if still_needed(n, after))
        return during, live - freed + kept

    def peak_of(order: list[int]) -> int:
        done, live, peak = 0, start_live, 0
        for index in order:
            if index not in units:
                continue  # a fused ADD, run with its conv
            during, live = step(done, live, index)
            peak = max(peak, during)
            for m in units[index]:
                done |= 1 << m
        return peak

    # one layer of states (same number of units run): done-mask -> (peak so far, order, live)
    start_live = sum(size[n] for n in graph.inputs if still_needed(n, 0))
    layer: dict[int, tuple[int, tuple[int, ...], int]] = {0: (0, (), start_live)}
    for _ in range(len(units)):
        nxt: dict[int, tuple[int, tuple[int, ...], int]] = {}
        for done, (peak, order, live) in layer.items():
            for index, members in units.items():
                if done >> index & 1 or (needs[index] & ~done):
                    continue
                during, live_next = step(done, live, index)
                candidate = (max(peak, during), order + members, live_next)
                after = done
                for m in members:
                    after |= 1 << m
                if after not in nxt or candidate[:2] < nxt[after][:2]:
                    nxt[after] = candidate
        if len(nxt) > beam_width:  # too wide to be exact: keep the most promising states
            kept = sorted(nxt.items(), key=lambda item: (item[1][0], item[1][2], item[1][1]))
            nxt = dict(kept[:beam_width])
        layer = nxt
    peak, order, _ = min(layer.values())
    fallback = default_order(graph, fusions)
    return list(order) if peak < peak_of(fallback) else fallback
