"""Data-movement ops: RESHAPE, PAD, CONCATENATION, SLICE, INSERT_TILE. No arithmetic, only layout.

- RESHAPE copies the bytes into the output shape.
- PAD fills with the output zero point (TFLite's default pad value for quantized tensors).
- CONCATENATION copies the inputs along the axis. TFLite Micro does not rescale: every input
  must already have the output's quantization (checked here instead of silently differing).
- SLICE copies the box ``[begin, begin + out.shape)`` of its input (TFLite's SLICE).
- INSERT_TILE (patch-based schedules, `edgekit.patching`) returns its base with the tile copied
  into the box at ``origin``; without a base the rest of the output is the zero point (the
  schedule's later tiles overwrite it). Tile, base and output share one dtype and quantization.
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


@dataclass(frozen=True, eq=False)
class BoxParams(Prepared):
    """SLICE's ``begin`` or INSERT_TILE's ``origin``: the box's first index on every axis."""

    corner: tuple[int, ...]
    out_shape: tuple[int, ...]
    fill: int = 0


def _box(op: Op, corner, box_shape, whole_shape) -> tuple[int, ...]:
    corner = tuple(int(c) for c in corner)
    if (len(corner) != len(whole_shape) or len(box_shape) != len(whole_shape)
            or any(c < 0 or c + b > w for c, b, w in zip(corner, box_shape, whole_shape))):
        raise UnsupportedError(f"{where(op)}: box at {corner} of shape {tuple(box_shape)} does"
                               f" not fit in {tuple(whole_shape)}")
    return corner


def prepare_slice(op: Op, graph: Graph) -> BoxParams:
    x, out = graph[op.inputs[0]], graph[op.outputs[0]]
    if x.dtype != out.dtype or x.quant != out.quant:
        raise UnsupportedError(f"{where(op)}: SLICE output {out.name!r} must keep the input's"
                               " dtype and quantization")
    corner = _box(op, op.attrs.get("begin", ()), out.shape, x.shape)
    return BoxParams(kind=op.kind, out_dtype=out.dtype, corner=corner, out_shape=out.shape)


def slice_box(p: BoxParams, inputs: list) -> np.ndarray:
    index = tuple(slice(c, c + s) for c, s in zip(p.corner, p.out_shape))
    return inputs[0][index].copy()


def prepare_insert_tile(op: Op, graph: Graph) -> BoxParams:
    base_name, tile_name = op.inputs[0], op.inputs[1]
    tile, out = graph[tile_name], graph[op.outputs[0]]
    for t in (tile, *(() if base_name is None else (graph[base_name],))):
        if t.dtype != out.dtype or t.quant != out.quant:
            raise UnsupportedError(f"{where(op)}: {t.name!r} and output {out.name!r} must share"
                                   " one dtype and quantization")
    if base_name is not None and graph[base_name].shape != out.shape:
        raise UnsupportedError(f"{where(op)}: base {base_name!r} has shape"
                               f" {graph[base_name].shape}, output {out.shape}")
    corner = _box(op, op.attrs.get("origin", ()), tile.shape, out.shape)
    return BoxParams(kind=op.kind, out_dtype=out.dtype, corner=corner, out_shape=out.shape,
                     fill=zero_point(out))


def insert_tile(p: BoxParams, inputs: list) -> np.ndarray:
    base, tile = inputs
    out = (np.full(p.out_shape, p.fill, dtype=p.out_dtype.numpy) if base is None
           else base.copy())
    out[tuple(slice(c, c + s) for c, s in zip(p.corner, tile.shape))] = tile
    return out


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
           "CONCATENATION": prepare_concatenation, "SLICE": prepare_slice,
           "INSERT_TILE": prepare_insert_tile}
KERNELS = {"RESHAPE": reshape, "PAD": pad, "CONCATENATION": concatenation,
           "SLICE": slice_box, "INSERT_TILE": insert_tile}
