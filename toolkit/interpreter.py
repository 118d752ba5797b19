"""The host reference interpreter: runs a Graph IR with the bit-exact int8 reference kernels.

Prepare once, invoke many times (TFLite Micro's split): `Interpreter(graph)` checks every op
and derives its parameters (`edgekit.reference.prepare`), so an unsupported op fails before any
input is read; `Interpreter.run(inputs)` checks the inputs against the graph's input tensors
(count, shape, dtype) and executes the ops in order.

    outputs = run(graph, [x])                         # list of output arrays
    outputs, tensors = Interpreter(graph).run([x], intermediates=True)   # every tensor value
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from edgekit import reference
from edgekit.errors import InterpreterError
from edgekit.ir import Graph, Tensor


class Interpreter:
    """A prepared graph. ``prepared[i]`` holds op i's parameters (multipliers, shifts, ...)."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.prepared = [reference.prepare(op, graph) for op in graph.ops]

    @property
    def input_tensors(self) -> list[Tensor]:
        return [self.graph[name] for name in self.graph.inputs]

    @property
    def output_tensors(self) -> list[Tensor]:
        return [self.graph[name] for name in self.graph.outputs]

    def check_inputs(self, inputs: Sequence[np.ndarray] | Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Match ``inputs`` (a list in graph order, or a dict by tensor name) to the graph's
        inputs; raise `InterpreterError` naming the tensor and the expected shape and dtype."""
        expected = self.input_tensors
        if isinstance(inputs, Mapping):
            unknown = sorted(set(inputs) - {t.name for t in expected})
            if unknown:
                raise InterpreterError(f"graph {self.graph.name!r} has no input named"
                                       f" {unknown[0]!r}; its inputs are"
                                       f" {[t.name for t in expected]}")
            missing = [t.name for t in expected if t.name not in inputs]
            if missing:
                raise InterpreterError(f"missing value for input tensor {missing[0]!r}")
            values = [inputs[t.name] for t in expected]
        else:
            values = list(inputs)
            if len(values) != len(expected):
                raise InterpreterError(f"graph {self.graph.name!r} takes {len(expected)} input(s)"
                                       f" {[t.name for t in expected]}, got {len(values)}")
        checked = []
        for t, value in zip(expected, values):
            value = np.asarray(value)
            if value.dtype != t.dtype.numpy:
                raise InterpreterError(f"input tensor {t.name!r}: expected dtype"
                                       f" {t.dtype.numpy.name}, got {value.dtype.name}")
            if value.shape != t.shape:
                raise InterpreterError(f"input tensor {t.name!r}: expected shape {t.shape},"
                                       f" got {value.shape}")
            checked.append(value)
        return checked

    def run(self, inputs: Sequence[np.ndarray] | Mapping[str, np.ndarray], *,
            intermediates: bool = False):
        """Execute the graph. Returns the list of output arrays, or ``(outputs, tensors)`` with
        ``tensors`` mapping every activation tensor name to its value when ``intermediates``."""
        values: dict[str, np.ndarray] = {t.name: t.data for t in self.graph.constants()}
        for t, value in zip(self.input_tensors, self.check_inputs(inputs)):
            values[t.name] = value
        for op, prepared in zip(self.graph.ops, self.prepared):
            args = [None if name is None else values[name] for name in op.inputs]
            values[op.outputs[0]] = reference.run_op(prepared, args)
        outputs = [values[name] for name in self.graph.outputs]
        if not intermediates:
            return outputs
        activations = {name: value for name, value in values.items()
                       if not self.graph[name].is_constant}
        return outputs, activations


def run(graph: Graph, inputs: Sequence[np.ndarray] | Mapping[str, np.ndarray], *,
        intermediates: bool = False):
    """Prepare ``graph`` and run it once (see `Interpreter.run`)."""
    return Interpreter(graph).run(inputs, intermediates=intermediates)
