"""Compute cost of a graph: multiply-accumulates per op, the figure patch schedules and the
benchmarks report (instructions per MAC, recomputation overhead)."""

from __future__ import annotations

from edgekit.ir import Graph, Op


def op_macs(op: Op, graph: Graph) -> int:
    """Multiply-accumulates of one conv, depthwise or fully-connected op: one per weight tap per
    output element, padding taps included (as TFLite Micro's and CMSIS-NN's tables count);
    BATCH_MATMUL: one per inner-dimension step per output element; ATTENTION: its two matmuls';
    0 for every other kind."""
    if op.kind == "BATCH_MATMUL":
        a = graph[op.inputs[0]].shape
        depth = a[-2] if op.attrs.get("adj_x", False) else a[-1]
        return graph[op.outputs[0]].size * depth
    if op.kind == "ATTENTION":  # q k^T and p v: Tk * d + Tk * dv per output row
        k, v = graph[op.inputs[1]].shape, graph[op.inputs[2]].shape
        rows = graph[op.inputs[0]].size // graph[op.inputs[0]].shape[-1]
        return rows * k[-2] * (k[-1] + v[-1])
    if op.kind not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
        return 0
    out, w = graph[op.outputs[0]], graph[op.inputs[1]]
    if op.kind == "CONV_2D":
        return out.size * w.shape[1] * w.shape[2] * w.shape[3]
    if op.kind == "DEPTHWISE_CONV_2D":
        return out.size * w.shape[1] * w.shape[2]
    return out.size * w.shape[1]


def graph_macs(graph: Graph) -> int:
    """Multiply-accumulates of one inference."""
    return sum(op_macs(op, graph) for op in graph.ops)
