"""Re-quantize the weights of an int8 graph to int4 (all weighted layers, or a mixed spec).

    graph4 = requantize_weights(load_tflite("kws.tflite"), "4")
    graph_mixed = requantize_weights(graph, "mixed:default=4,#0=8")

For flash and speed figures of int4 builds (bench/int4_device.py) from models that exist only
as int8 `.tflite` files: each chosen layer's int8 weights are dequantized with their own
scales and rounded to int4 by `edgekit.converters.quantize.quantize_weights` (symmetric, per
channel for convolutions, per tensor for FULLY_CONNECTED: what TFLite Micro runs), and the
int32 bias is rescaled to the new ``input scale * weight scale``. Activations keep their
quantization, so accuracy is that of plain int4 rounding without calibration: convert from the
float model (`edgekit convert --bits 4 --recover`) for a model meant to be accurate.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from edgekit.converters.quantize import parse_bits, quantize_weights
from edgekit.errors import UnsupportedError
from edgekit.ir import DType, Graph, Quantization
from edgekit.reference.common import where


def requantize_weights(graph: Graph, bits: int | str) -> Graph:
    """A copy of int8 ``graph`` whose layers chosen by ``bits`` (``4`` or ``mixed:SPEC``, as
    `edgekit convert --bits`) have int4 weights; the other layers are unchanged."""
    tensors = dict(graph.tensors)
    for index, width in parse_bits(bits, graph).items():
        if width != 4:
            continue
        op = graph.ops[index]
        w = graph[op.inputs[1]]
        if w.dtype != DType.INT8 or w.quant is None or np.any(w.quant.zero_point != 0):
            raise UnsupportedError(f"{where(op)}: weights {w.name!r} are not symmetric int8"
                                   f" ({w.dtype.value}); only int8 weights are re-quantized")
        axis = 3 if op.kind == "DEPTHWISE_CONV_2D" else 0
        shape = [1] * w.data.ndim
        if w.quant.scale.size > 1:
            shape[w.quant.axis] = -1
        real = w.data.astype(np.float64) * w.quant.scale.reshape(shape)
        q, scale = quantize_weights(real, op.kind, 4, clip_search=False)
        quant = (Quantization(scale, np.zeros(scale.size, dtype=np.int64), axis)
                 if scale.size > 1 else Quantization(scale, np.zeros(1, dtype=np.int64)))
        tensors[w.name] = replace(w, dtype=DType.INT4, quant=quant, data=q)
        bias = op.inputs[2] if len(op.inputs) > 2 else None
        if bias is not None:
            tensors[bias] = _rescaled_bias(graph, graph[op.inputs[0]], graph[bias], scale)
    return Graph(list(tensors.values()), graph.ops, graph.inputs, graph.outputs,
                 name=f"{graph.name}-int4" if str(bits).strip() == "4" else f"{graph.name}-mixed")


def _rescaled_bias(graph: Graph, x, bias, weight_scale: np.ndarray):
    """The int32 bias under the new bias scale ``input scale * weight scale`` (float32, as
    TFLite computes it), rounded; its real values are those of the int8 layer's bias."""
    real = bias.data.astype(np.float64) * bias.quant.scale
    new_scale = (np.float32(x.quant.scale[0]) * weight_scale.astype(np.float32)).astype(np.float64)
    new_scale = np.broadcast_to(new_scale, real.shape).copy()
    data = np.clip(np.round(real / new_scale), -2**31, 2**31 - 1).astype(np.int32)
    quant = Quantization(new_scale, np.zeros(new_scale.size, dtype=np.int64),
                         0 if new_scale.size > 1 else None)
    return replace(bias, data=data, quant=quant)
