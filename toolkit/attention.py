"""Fused row-wise attention: the graph rewrite that replaces BATCH_MATMUL(q, k, adj_y) -> SOFTMAX
-> BATCH_MATMUL(p, v) by one ATTENTION op.

Unfused, the scores and the probabilities ``[..., Tq, Tk]`` are whole arena tensors: at 196
tokens and 4 heads that is 153,664 B, the largest tensor of an MCUFormer by far. Softmax is
row-wise, so ``softmax(q_i k^T) v`` can be computed one query row at a time: the fused kernel
(`edgekit.reference.attention`, ``ek_attention_s8``) keeps one row of ``Tk`` scores in scratch and
its results are bit-exact with the three unfused ops (each row goes through the same int8
arithmetic; nothing is summed across rows).

The rewrite is for the firmware and the planner only: the ``.tflite`` keeps the TFLite builtins,
which TFLite Micro runs. `edgekit build`, `edgekit plan` and the searches' memory figures apply
`fuse_attention` by default (``--no-fuse-attention`` keeps the unfused ops, for comparison).

Pattern (static conditions): ``s = BATCH_MATMUL(q, k)`` with adj_x false and adj_y true, read
only by ``p = SOFTMAX(s)`` (or by ``m = ADD(s, mask)``, read only by ``p = SOFTMAX(m)``: a
key-padding mask, one row ``[1, ..., 1, Tk]`` of additive bias for every query row and head),
read only by ``o = BATCH_MATMUL(p, v)`` as its first operand with adj_x and adj_y false; ``s``,
``m`` and ``p`` are not graph outputs; all int8 per tensor; q, k and v have the same batch
dimensions (no broadcast). A scale between the matmul and the softmax is expected folded
into q (MCUFormer and EmbBERT-Q do), so a MUL there is not matched. The ATTENTION op takes the
second matmul's place in the op list (q, k and v are all written before it).
"""

from __future__ import annotations

from edgekit.ir import DType, Graph, Op


def _int8_per_tensor(graph: Graph, *names: str) -> bool:
    for name in names:
        t = graph[name]
        if t.dtype != DType.INT8 or t.quant is None or t.quant.per_channel or t.is_constant:
            return False
    return True


def _mask_add(graph: Graph, add: Op, scores: str) -> str | None:
    """The mask operand of ``add`` when it is ADD(scores, mask) with a one-row mask."""
    if add.kind != "ADD" or len(add.present_inputs()) != 2 or add.inputs[0] != scores:
        return None
    mask, rows = add.inputs[1], graph[scores].shape
    if (mask == scores or add.attrs.get("activation", "NONE") != "NONE"
            or graph[mask].shape != (1,) * (len(rows) - 1) + rows[-1:]
            or graph[add.outputs[0]].shape != rows or not _int8_per_tensor(graph, mask)):
        return None
    return mask


def _match(graph: Graph, index: int, consumers, outputs: set[str]) -> tuple | None:
    """(mask ADD index or None, softmax index, second matmul index) when op ``index`` starts
    the pattern."""
    qk = graph.ops[index]
    if (qk.kind != "BATCH_MATMUL" or qk.attrs.get("adj_x", False)
            or not qk.attrs.get("adj_y", False)):
        return None
    scores = qk.outputs[0]
    readers = consumers.get(scores, [])
    if scores in outputs or len(readers) != 1:
        return None
    add_index = None
    if _mask_add(graph, graph.ops[readers[0]], scores) is not None:
        add_index, scores = readers[0], graph.ops[readers[0]].outputs[0]
        readers = consumers.get(scores, [])
        if scores in outputs or len(readers) != 1:
            return None
    if graph.ops[readers[0]].kind != "SOFTMAX":
        return None
    sm_index = readers[0]
    probs = graph.ops[sm_index].outputs[0]
    readers = consumers.get(probs, [])
    if probs in outputs or len(readers) != 1:
        return None
    pv = graph.ops[readers[0]]
    if (pv.kind != "BATCH_MATMUL" or pv.inputs[0] != probs or pv.inputs[1] == probs
            or pv.attrs.get("adj_x", False) or pv.attrs.get("adj_y", False)):
        return None
    q, k, v = qk.inputs[0], qk.inputs[1], pv.inputs[1]
    if not _int8_per_tensor(graph, q, k, v, qk.outputs[0], scores, probs, pv.outputs[0]):
        return None
    batch = graph[q].shape[:-2]
    if graph[k].shape[:-2] != batch or graph[v].shape[:-2] != batch or len(graph[q].shape) < 3:
        return None
    return add_index, sm_index, readers[0]


def attention_matches(graph: Graph) -> list[tuple]:
    """(first matmul, mask ADD or None, softmax, second matmul) op indices of every fusable
    attention."""
    consumers = graph.consumers()
    outputs = set(graph.outputs)
    found = []
    for index in range(len(graph.ops)):
        m = _match(graph, index, consumers, outputs)
        if m is not None:
            found.append((index, *m))
    return found


def fuse_attention(graph: Graph) -> Graph:
    """``graph`` with every matched attention as one ATTENTION op (the same graph object when
    nothing matches). The scores, masked scores and probabilities tensors are dropped; their
    quantization travels in the op's attributes."""
    matches = attention_matches(graph)
    if not matches:
        return graph
    dropped_ops: set[int] = set()
    dropped_tensors: set[str] = set()
    replacement: dict[int, Op] = {}
    for qk_i, add_i, sm_i, pv_i in matches:
        qk, sm, pv = graph.ops[qk_i], graph.ops[sm_i], graph.ops[pv_i]
        scores, probs = graph[qk.outputs[0]], graph[sm.outputs[0]]
        inputs = [qk.inputs[0], qk.inputs[1], pv.inputs[1]]
        attrs = {}
        if add_i is not None:
            masked = graph[graph.ops[add_i].outputs[0]]
            inputs.append(graph.ops[add_i].inputs[1])
            attrs = {"masked_scale": float(masked.quant.scale[0]),
                     "masked_zero_point": int(masked.quant.zero_point[0])}
            dropped_ops.add(add_i)
            dropped_tensors.add(masked.name)
        attrs.update({"scores_scale": float(scores.quant.scale[0]),
                      "scores_zero_point": int(scores.quant.zero_point[0]),
                      "beta": float(sm.attrs.get("beta", 1.0)),
                      "probs_scale": float(probs.quant.scale[0]),
                      "probs_zero_point": int(probs.quant.zero_point[0])})
        name = pv.name or pv.outputs[0]
        replacement[pv_i] = Op("ATTENTION", inputs, list(pv.outputs), attrs,
                               name=f"{name}/attention")
        dropped_ops |= {qk_i, sm_i}
        dropped_tensors |= {scores.name, probs.name}
    ops = [replacement.get(i, op) for i, op in enumerate(graph.ops) if i not in dropped_ops]
    tensors = [t for t in graph.tensors.values() if t.name not in dropped_tensors]
    return Graph(tensors, ops, graph.inputs, graph.outputs, name=graph.name)
