"""Data-movement ops: RESHAPE, PAD, CONCATENATION. No arithmetic, only layout.

- RESHAPE copies the bytes into the output shape.
- PAD fills with the output zero point (TFLite's default pad value for quantized tensors).
- CONCATENATION copies the inputs along the axis. TFLite Micro does not rescale: every input
  must already have the output's quantization (checked here instead of silently differing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekit.errors import UnsupportedError
from edgekit.ir import Graph, Op
from edgekit.reference.common import Prepared, where, zero_point


@dataclass(frozen=True, eq=False)
class ReshapeParams(Prepared):
    out_shape: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class PadParams(Prepared):
    paddings: tuple[tuple[int, int], ...]
    pad_value: int


@dataclass(frozen=True, eq=False)
class ConcatParams(Prepared):
    axis: int


def prepare_reshape(op: Op, graph: Graph) -> ReshapeParams:
    x, out = graph[op.inputs[0]], graph[op.outputs[0]]
    if x.size != out.size or x.dtype != out.dtype:
        raise UnsupportedError(f"{where(op)}: cannot reshape {x.shape} {x.dtype.value} into"
                               f" {out.shape} {out.dtype.value}")
    return ReshapeParams(kind=op.kind, out_dtype=out.dtype, out_shape=out.shape)


def reshape(p: ReshapeParams, inputs: list) -> np.ndarray:
    return inputs[0].reshape(p.out_shape).copy()


def prepare_pad(op: Op, graph: Graph) -> PadParams:
    x, out = graph[op.inputs[0]], graph[op.outputs[0]]
    paddings = tuple((int(b), int(a)) for b, a in op.attrs["paddings"])
    if len(paddings) != len(x.shape) or any(b < 0 or a < 0 for b, a in paddings):
        raise UnsupportedError(f"{where(op)}: paddings {paddings} do not fit input {x.shape}")
    expected = tuple(d + b + a for d, (b, a) in zip(x.shape, paddings))
    if expected != out.shape:
        raise UnsupportedError(f"{where(op)}: padded shape {expected} != output {out.shape}")
    return PadParams(kind=op.kind, out_dtype=out.dtype, paddings=paddings,
                     pad_value=zero_point(out))


def pad(p: PadParams, inputs: list) -> np.ndarray:
    return np.pad(inputs[0], p.paddings, constant_values=p.pad_value).astype(p.out_dtype.numpy)


def prepare_concatenation(op: Op, graph: Graph) -> ConcatParams:
    out = graph[op.outputs[0]]
    xs = [graph[name] for name in op.present_inputs()]
    axis = int(op.attrs.get("axis", 0))
    axis = axis + len(out.shape) if axis < 0 else axis
    if op.attrs.get("activation", "NONE") != "NONE":
        raise UnsupportedError(f"{where(op)}: fused activation on CONCATENATION is not supported")
    for x in xs:
        if x.dtype != out.dtype or x.quant != out.quant:
            raise UnsupportedError(f"{where(op)}: input {x.name!r} has a different dtype or"
                                   f" quantization than output {out.name!r}; TFLite Micro does"
                                   " not rescale in CONCATENATION")
    return ConcatParams(kind=op.kind, out_dtype=out.dtype, axis=axis)


def concatenation(p: ConcatParams, inputs: list) -> np.ndarray:
    return np.concatenate([x for x in inputs if x is not None], axis=p.axis)


PREPARE = {"RESHAPE": prepare_reshape, "PAD": prepare_pad,
           "CONCATENATION": prepare_concatenation}
KERNELS = {"RESHAPE": reshape, "PAD": pad, "CONCATENATION": concatenation}
