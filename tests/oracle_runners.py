"""Run a .tflite model in the two oracles: TFLite Micro's Python interpreter (reference kernels,
what microcontrollers run) and LiteRT (reference op resolver, or its default XNNPACK path).

Both take the model as bytes or a path and a list of input arrays in graph-input order and
return the list of output arrays. Tests import these; they skip when the package is missing.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest


def _model_bytes(model: bytes | str | os.PathLike) -> bytes:
    return model if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()


class TflmRunner:
    """A TFLite Micro interpreter kept open for many invocations."""

    def __init__(self, model: bytes | str | os.PathLike, num_outputs: int = 1):
        runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime",
                                      reason="tflite_micro is not installed")
        self._interp = runtime.Interpreter.from_bytes(_model_bytes(model))
        self.num_outputs = num_outputs

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        for i, value in enumerate(inputs):
            self._interp.set_input(value, i)
        self._interp.invoke()
        return [np.array(self._interp.get_output(i)) for i in range(self.num_outputs)]


class LiteRTRunner:
    """A LiteRT interpreter: ``reference=True`` uses the BUILTIN_REF op resolver (reference
    kernels), ``reference=False`` the default resolver (XNNPACK and optimized kernels)."""

    def __init__(self, model: bytes | str | os.PathLike, *, reference: bool = True,
                 keep_all_tensors: bool = False):
        litert = pytest.importorskip("ai_edge_litert.interpreter",
                                     reason="ai_edge_litert is not installed")
        kwargs = {"model_content": _model_bytes(model),
                  "experimental_preserve_all_tensors": keep_all_tensors}
        if reference:
            kwargs["experimental_op_resolver_type"] = litert.OpResolverType.BUILTIN_REF
        self._interp = litert.Interpreter(**kwargs)
        self._interp.allocate_tensors()
        self._inputs = [d["index"] for d in self._interp.get_input_details()]
        self._outputs = [d["index"] for d in self._interp.get_output_details()]

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        for index, value in zip(self._inputs, inputs):
            self._interp.set_tensor(index, value)
        self._interp.invoke()
        return [self._interp.get_tensor(i).copy() for i in self._outputs]

    def tensor(self, name: str) -> np.ndarray:
        """Value of a tensor by TFLite name after the last invoke (needs keep_all_tensors)."""
        for d in self._interp.get_tensor_details():
            if d["name"] == name:
                return self._interp.get_tensor(d["index"]).copy()
        raise KeyError(name)
