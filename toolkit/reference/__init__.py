"""The int8 reference kernels: one module per op family, each a pair of

- ``prepare(op, graph) -> Prepared``: everything derived from the IR op and its tensors'
  quantization (multipliers, shifts, clamp bounds, zero-point offsets), a pure function, so the
  C code generator emits exactly the numbers the interpreter uses;
- ``kernel(prepared, input_arrays) -> output_array``: TFLite (Micro)'s reference arithmetic,
  vectorised with numpy, bit-exact.

`prepare` and `run_op` dispatch on ``op.kind``; every kind in `edgekit.ir.OP_KINDS` has both.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from edgekit.errors import UnsupportedError
from edgekit.ir import Graph, Op
from edgekit.reference import (attention, conv, elementwise, norm, pooling, shape, softmax,
                               transformer)
from edgekit.reference.common import Prepared, where

_PREPARE: dict[str, Callable[[Op, Graph], Prepared]] = {}
_KERNELS: dict[str, Callable[[Prepared, list], np.ndarray]] = {}
for _module in (conv, elementwise, pooling, shape, softmax, transformer, norm, attention):
    _PREPARE.update(_module.PREPARE)
    _KERNELS.update(_module.KERNELS)

__all__ = ["Prepared", "prepare", "run_op", "supported_kinds"]


def supported_kinds() -> frozenset[str]:
    return frozenset(_KERNELS)


def prepare(op: Op, graph: Graph) -> Prepared:
    """Prepared parameters of ``op`` in ``graph``; raises `UnsupportedError` naming the op."""
    try:
        preparer = _PREPARE[op.kind]
    except KeyError:
        raise UnsupportedError(f"{where(op)}: no reference kernel for op kind {op.kind!r}") from None
    return preparer(op, graph)


def run_op(prepared: Prepared, inputs: list) -> np.ndarray:
    """Run one op's kernel on its input arrays (None for absent optional inputs)."""
    return _KERNELS[prepared.kind](prepared, inputs)
