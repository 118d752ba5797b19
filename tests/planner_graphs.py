"""Small hand-built IR graphs for the planner tests (no weights: the planner never reads them)."""

from __future__ import annotations

import random

from edgekit.ir import DType, Graph, Op, Tensor


def act(name: str, *shape: int, dtype: DType = DType.INT8) -> Tensor:
    """An activation tensor."""
    return Tensor(name, tuple(shape), dtype)


def op(kind: str, inputs, outputs, **attrs) -> Op:
    return Op(kind, list(inputs), list(outputs), dict(attrs), name=outputs[0])


def graph(tensors, ops, inputs, outputs) -> Graph:
    return Graph(tensors, ops, inputs, outputs, name="hand")


def chain(sizes: list[int], kind: str = "FULLY_CONNECTED") -> Graph:
    """x0 -> op0 -> x1 -> op1 -> ... with tensor i of ``sizes[i]`` int8 bytes (shape (1, n))."""
    tensors = [act(f"x{i}", 1, n) for i, n in enumerate(sizes)]
    ops = [op(kind, [f"x{i}", None, None], [f"x{i + 1}"]) for i in range(len(sizes) - 1)]
    return graph(tensors, ops, ["x0"], [f"x{len(sizes) - 1}"])


def random_dag(seed: int, n_ops: int = 7) -> Graph:
    """A random graph of FULLY_CONNECTED, ADD, RELU, RESHAPE and CONCATENATION ops over int8
    tensors of a few sizes, with fan-out and joins, so in-place and reordering both matter."""
    rng = random.Random(seed)
    widths = [16, 32, 48, 64, 100]
    tensors = [act("in", 1, rng.choice(widths))]
    ops: list[Op] = []
    for i in range(n_ops):
        pool = list(tensors)
        kind = rng.choice(["FULLY_CONNECTED", "ADD", "RELU", "RESHAPE", "CONCATENATION"])
        out = f"t{i}"
        if kind == "FULLY_CONNECTED":
            x = rng.choice(pool)
            tensors.append(act(out, 1, rng.choice(widths)))
            ops.append(op(kind, [x.name, None, None], [out]))
        elif kind == "ADD":
            a = rng.choice(pool)
            same = [t for t in pool if t.shape == a.shape]
            b = rng.choice(same)
            tensors.append(act(out, *a.shape))
            ops.append(op(kind, [a.name, b.name], [out], activation="NONE"))
        elif kind in ("RELU", "RESHAPE"):
            x = rng.choice(pool)
            shape = x.shape if kind == "RELU" else (1, x.size) if x.shape[0] != 1 else (x.size, 1)
            tensors.append(act(out, *shape))
            ops.append(op(kind, [x.name], [out]))
        else:
            a, b = rng.choice(pool), rng.choice(pool)
            tensors.append(act(out, 1, a.size + b.size))
            ops.append(op(kind, [a.name, b.name], [out], axis=1))
    consumed = {n for o in ops for n in o.present_inputs()}
    outputs = [t.name for t in tensors[1:] if t.name not in consumed] or [tensors[-1].name]
    return graph(tensors, ops, ["in"], outputs)
