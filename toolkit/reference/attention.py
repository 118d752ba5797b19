"""ATTENTION (edgekit op, `edgekit.attention`): ``softmax(q_i k^T) v`` one query row at a time,
with exactly the int8 arithmetic of the three ops it replaces.

prepare: the unfused BATCH_MATMUL(q, k, adj_y) -> (ADD(scores, mask) where the op has a fourth
input, a key-padding mask row) -> SOFTMAX -> BATCH_MATMUL(p, v) rebuilt from the op's
attributes (the intermediate tensors' quantization) and prepared by their own
reference functions, so the multipliers, shifts and softmax scaling are theirs by construction.
kernel: for each query row i, the ``[..., 1, Tk]`` scores of that row (every head at once), plus
the mask row, the row softmax, and that row times v. Each output row depends on its query row
only, and softmax normalises each row on its own, so the result is the unfused graph's byte for
byte.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from edgekit.errors import GraphError, UnsupportedError
from edgekit.ir import DType, Graph, Op, Quantization, Tensor
from edgekit.reference import elementwise
from edgekit.reference import softmax as softmax_ref
from edgekit.reference import transformer
from edgekit.reference.common import Prepared, require_dtype, where


@dataclass(frozen=True, eq=False)
class AttentionParams(Prepared):
    qk: transformer.BatchMatMulParams  # out_shape [..., 1, Tk]: one query row
    mask: Prepared | None  # ADD(scores row, mask row), None without a mask
    softmax: softmax_ref.SoftmaxParams
    pv: transformer.BatchMatMulParams  # out_shape [..., 1, dv]
    out_shape: tuple[int, ...]


def unfused_ops(op: Op, graph: Graph) -> Graph:
    """The three ops ``op`` stands for, as a graph over its q, k, v and output tensors."""
    if len(op.inputs) not in (3, 4) or any(n is None for n in op.inputs):
        raise UnsupportedError(f"{where(op)}: takes q, k, v and an optional mask, got"
                               f" {op.inputs}")
    q, k, v = (graph[n] for n in op.inputs[:3])
    mask = graph[op.inputs[3]] if len(op.inputs) == 4 else None
    out = graph[op.outputs[0]]
    for t, role in ((q, "query"), (k, "key"), (v, "value"), (out, "output")):
        require_dtype(op, t, (DType.INT8,), role)
    if len(q.shape) < 3 or not q.shape[:-2] == k.shape[:-2] == v.shape[:-2]:
        raise UnsupportedError(f"{where(op)}: q {q.shape}, k {k.shape} and v {v.shape} must have"
                               " the same batch dimensions (rank >= 3)")
    shape = q.shape[:-1] + (k.shape[-2],)
    if mask is not None and mask.shape != (1,) * (len(shape) - 1) + shape[-1:]:
        raise UnsupportedError(f"{where(op)}: mask {mask.name!r} has shape {mask.shape}; one row"
                               f" {(1,) * (len(shape) - 1) + shape[-1:]} of key biases expected")
    try:
        scores = Tensor(f"{op.name}/scores", shape, DType.INT8, Quantization.per_tensor(
            op.attrs["scores_scale"], op.attrs["scores_zero_point"]))
        probs = Tensor(f"{op.name}/probs", shape, DType.INT8, Quantization.per_tensor(
            op.attrs["probs_scale"], op.attrs["probs_zero_point"]))
        beta = float(op.attrs["beta"])
        masked = None if mask is None else Tensor(
            f"{op.name}/masked", shape, DType.INT8, Quantization.per_tensor(
                op.attrs["masked_scale"], op.attrs["masked_zero_point"]))
    except (KeyError, GraphError, TypeError, ValueError) as err:
        raise UnsupportedError(f"{where(op)}: bad scores/probs attributes: {err}") from None
    ops = [Op("BATCH_MATMUL", [q.name, k.name], [scores.name], {"adj_x": False, "adj_y": True},
              name=scores.name)]
    extra = [scores, probs]
    if masked is not None:
        ops.append(Op("ADD", [scores.name, mask.name], [masked.name], {"activation": "NONE"},
                      name=masked.name))
        extra.append(masked)
        scores = masked
    ops += [Op("SOFTMAX", [scores.name], [probs.name], {"beta": beta}, name=probs.name),
           Op("BATCH_MATMUL", [probs.name, v.name], [out.name], {"adj_x": False, "adj_y": False},
              name=f"{op.name}/attend")]
    operands = (q, k, v, out) if mask is None else (q, k, v, mask, out)
    tensors = {t.name: Tensor(t.name, t.shape, t.dtype, t.quant) for t in operands}
    try:
        return Graph([*tensors.values(), *extra], ops, list(dict.fromkeys(op.inputs)),
                     [out.name], name=op.name)
    except GraphError as err:
        raise UnsupportedError(f"{where(op)}: {err}") from None


def prepare_attention(op: Op, graph: Graph) -> AttentionParams:
    g = unfused_ops(op, graph)
    qk = transformer.prepare_batch_matmul(g.ops[0], g)
    mask = elementwise.prepare_add(g.ops[1], g) if len(g.ops) == 4 else None
    sm = softmax_ref.prepare_softmax(g.ops[-2], g)
    pv = transformer.prepare_batch_matmul(g.ops[-1], g)
    out = graph[op.outputs[0]]
    row = out.shape[:-2] + (1,)
    scores_row = row + (graph[op.inputs[1]].shape[-2],)
    return AttentionParams(kind=op.kind, out_dtype=out.dtype,
                           qk=replace(qk, out_shape=scores_row),
                           mask=None if mask is None else replace(mask, out_shape=scores_row),
                           softmax=sm, pv=replace(pv, out_shape=row + (out.shape[-1],)),
                           out_shape=out.shape)


def attention(p: AttentionParams, inputs: list) -> np.ndarray:
    q, k, v = inputs[:3]
    out = np.empty(p.out_shape, dtype=np.int8)
    for i in range(q.shape[-2]):
        scores = transformer.batch_matmul(p.qk, [q[..., i:i + 1, :], k])  # one row per head
        if p.mask is not None:
            scores = elementwise.add(p.mask, [scores, inputs[3]])
        probs = softmax_ref.softmax(p.softmax, [scores])
        out[..., i:i + 1, :] = transformer.batch_matmul(p.pv, [probs, v])
    return out


PREPARE = {"ATTENTION": prepare_attention}
KERNELS = {"ATTENTION": attention}
