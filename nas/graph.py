"""The int8 IR graph of an `MCUNetSpec` built directly, without torch: the same ops, shapes,
attributes and dtypes as the converter makes from the trained model (`edgekit.nas.convert`),
with random int8 weights and plausible TFLite quantization. Memory planning looks only at
shapes and op attributes, so ``plan(graph_from_spec(spec))`` is the arena of the real model.

Tensor names: ``input``, ``stem``, ``b{i}/expand``, ``b{i}/dw``, ``b{i}/project``, ``b{i}/add``
(residual blocks), ``head``, ``pool``, ``flatten``, ``logits``; `block_outputs` gives each
block's output name (what a patch schedule's ``split`` names).
"""

from __future__ import annotations

import numpy as np

from edgekit.errors import UsageError
from edgekit.ir import DType, Graph, Op, Quantization, Tensor
from edgekit.nas.mcunet import Block, MCUNetSpec, same_pads


class _Builder:
    def __init__(self, seed: int, bits: dict[str, int] | None = None):
        self.rng = np.random.default_rng(seed)
        #: weight bits by layer name (`MCUNetSpec.weighted_layer_names`); absent: 8
        self.bits = bits or {}
        self.tensors: list[Tensor] = []
        self.ops: list[Op] = []

    def _f32(self, v) -> np.ndarray:
        return np.asarray(v, dtype=np.float32).astype(np.float64)

    def activation(self, name: str, shape) -> str:
        q = Quantization(self._f32([self.rng.uniform(0.02, 0.05)]),
                         np.array([int(self.rng.integers(-128, -100))]))
        self.tensors.append(Tensor(name, tuple(shape), DType.INT8, q))
        return name

    def _weighted(self, kind: str, x: Tensor, w_shape, axis: int, out: str, out_shape,
                  attrs: dict) -> str:
        channels = w_shape[axis]
        wq = Quantization(self._f32(self.rng.uniform(0.002, 0.02, channels)),
                          np.zeros(channels, np.int64), axis)
        int4 = self.bits.get(out, 8) == 4
        if int4 and kind == "FULLY_CONNECTED":
            # int4 FULLY_CONNECTED weights are per tensor (what the converter writes and
            # TFLite Micro takes)
            wq = Quantization(wq.scale[:1], np.zeros(1, np.int64))
        limit = 7 if int4 else 127
        data = self.rng.integers(-limit, limit + 1, size=tuple(w_shape)).astype(np.int8)
        dtype = DType.INT4 if int4 else DType.INT8
        self.tensors.append(Tensor(f"{out}/weights", tuple(w_shape), dtype, wq, data))
        bscale = self._f32(np.float32(x.quant.scale[0]) * wq.scale.astype(np.float32))
        bquant = (Quantization(bscale, np.zeros(channels, np.int64), 0) if bscale.size > 1
                  else Quantization(bscale, np.zeros(1, np.int64)))
        self.tensors.append(Tensor(f"{out}/bias", (channels,), DType.INT32, bquant,
                                   self.rng.integers(-500, 501, channels).astype(np.int32)))
        self.activation(out, out_shape)
        self.ops.append(Op(kind, [x.name, f"{out}/weights", f"{out}/bias"], [out], attrs,
                           name=out))
        return out

    def tensor(self, name: str) -> Tensor:
        return next(t for t in reversed(self.tensors) if t.name == name)

    def conv(self, x: str, out: str, channels: int, kernel: int, stride: int, act: str,
             depthwise: bool = False) -> str:
        t = self.tensor(x)
        n, h, w, c = t.shape
        oh, top, bottom = same_pads(h, kernel, stride)
        ow, left, right = same_pads(w, kernel, stride)
        attrs = {"stride": (stride, stride), "dilation": (1, 1), "pad": (top, bottom, left, right),
                 "activation": act}
        if depthwise:
            return self._weighted("DEPTHWISE_CONV_2D", t, (1, kernel, kernel, c), 3, out,
                                  (n, oh, ow, c), {**attrs, "depth_multiplier": 1})
        return self._weighted("CONV_2D", t, (channels, kernel, kernel, c), 0, out,
                              (n, oh, ow, channels), attrs)

    def op(self, kind: str, inputs: list[str], out: str, shape, attrs: dict) -> str:
        self.activation(out, shape)
        self.ops.append(Op(kind, inputs, [out], attrs, name=out))
        return out


def block_outputs(spec: MCUNetSpec) -> list[str]:
    """Name of each block's output tensor in `graph_from_spec` (``b{i}/add`` or ``b{i}/project``)."""
    return [f"b{i}/add" if b.residual else f"b{i}/project" for i, b in enumerate(spec.blocks())]


def add_stem(b: _Builder, x: str, spec: MCUNetSpec) -> str:
    return b.conv(x, "stem", spec.stem_out, 3, 2, "RELU6")


def add_block(b: _Builder, x: str, i: int, block: Block) -> str:
    """Block ``i``: [1x1 expand] depthwise [1x1 project] [+ residual ADD (skip first, as the
    converter orders x + f(x))]."""
    h = x
    if block.expansion != 1:
        h = b.conv(h, f"b{i}/expand", block.hidden, 1, 1, "RELU6")
    h = b.conv(h, f"b{i}/dw", block.hidden, block.kernel, block.stride, "RELU6", depthwise=True)
    h = b.conv(h, f"b{i}/project", block.out_channels, 1, 1, "NONE")
    if block.residual:
        h = b.op("ADD", [x, h], f"b{i}/add", b.tensor(h).shape, {"activation": "NONE"})
    return h


def add_head(b: _Builder, x: str, last_channels: int, num_classes: int) -> str:
    x = b.conv(x, "head", last_channels, 1, 1, "RELU6")
    x = b.op("MEAN", [x], "pool", (1, 1, 1, last_channels), {"axes": (1, 2), "keep_dims": True})
    x = b.op("RESHAPE", [x], "flatten", (1, last_channels), {})
    return b._weighted("FULLY_CONNECTED", b.tensor(x), (num_classes, last_channels), 0, "logits",
                       (1, num_classes), {"activation": "NONE", "keep_num_dims": False})


def graph_from_spec(spec: MCUNetSpec, seed: int = 0) -> Graph:
    """The int8 graph of ``spec`` (input (1, R, R, C_in) int8, output (1, classes) int8); the
    layers ``spec.weight_bits`` makes int4 have int4 weights."""
    b = _Builder(seed, dict(zip(spec.weighted_layer_names(), spec.layer_bits())))
    x = b.activation("input", (1, spec.resolution, spec.resolution, spec.in_channels))
    x = add_stem(b, x, spec)
    for i, block in enumerate(spec.blocks()):
        x = add_block(b, x, i, block)
    out = add_head(b, x, spec.last_channels, spec.num_classes)
    return Graph(b.tensors, b.ops, ["input"], [out], name="mcunet")


def converted_block_outputs(graph: Graph, spec: MCUNetSpec) -> list[str]:
    """Each block's output tensor name in a graph converted from the trained model: the ops
    come in `graph_from_spec`'s order (BN folded, ReLU6 fused), so they are found by counting."""
    ops, i, names = graph.ops, 1, []
    for block in spec.blocks():
        i += (3 if block.expansion != 1 else 2) + (1 if block.residual else 0)
        if i > len(ops) or ops[i - 1].kind != ("ADD" if block.residual else "CONV_2D"):
            raise UsageError(f"graph {graph.name!r} does not have the layout of the spec")
        names.append(ops[i - 1].outputs[0])
    return names
