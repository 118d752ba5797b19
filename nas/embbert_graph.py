"""The float IR of a trained `EmbBERT` module, mapped op by op (no ONNX), and its int8 graph.

Layout (tensor names in brackets)::

    ids int32 [1, T]  -> GATHER(embed table) [embed] -> FULLY_CONNECTED keep_num_dims [project]
      -> ADD(positional constant [1, T, H]) [embedded]
    with spec.mask: GATHER(ids, table [V]: -MASK_BIAS at the [PAD] id, 0 elsewhere) [pad_bias]
      -> RESHAPE [1, 1, T] [pad_bias_row]: the key-padding mask, computed from the ids with
      TFLite builtins (no extra input; TFLite Micro runs it as it is)
    block i: LAYER_NORM|RMS_NORM [b{i}/norm] -> FULLY_CONNECTED [b{i}/query] (1/sqrt(H) folded
      into its weights and bias) -> BATCH_MATMUL(query, norm, adj_y) [b{i}/scores]
      (-> ADD(scores, pad_bias_row) [b{i}/masked] with spec.mask) -> SOFTMAX
      [b{i}/probs] -> BATCH_MATMUL(probs, norm) [b{i}/attn];
      RESHAPE(norm) [1, 1, T, H] -> DEPTHWISE_CONV_2D pad=(0, 0, k-1, 0) (causal) [b{i}/conv]
      -> SILU -> RESHAPE [1, T, H] [b{i}/branch]; ADD|MUL(attn, branch) [b{i}/mix]
      -> FULLY_CONNECTED [b{i}/out] -> ADD(x, out) [b{i}/residual]
    norm [norm] -> MEAN over tokens [pool] -> FULLY_CONNECTED [logits]

`int8_graph` quantizes it with `edgekit.converters.quantize` on token-id calibration batches.
"""

from __future__ import annotations

import math

import numpy as np

from edgekit.ir import DType, Graph, Op, Tensor
from edgekit.nas.embbert import MASK_BIAS, EmbBERTSpec
from edgekit.nas.tokenizer import PAD_ID


def _f32(t) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)


class _Builder:
    def __init__(self):
        self.tensors: list[Tensor] = []
        self.ops: list[Op] = []

    def const(self, name: str, data: np.ndarray) -> str:
        self.tensors.append(Tensor(name, data.shape, DType.FLOAT32, data=data))
        return name

    def op(self, kind: str, inputs: list, out: str, shape, **attrs) -> str:
        self.tensors.append(Tensor(out, tuple(shape), DType.FLOAT32))
        self.ops.append(Op(kind, list(inputs), [out], attrs, name=out))
        return out

    def linear(self, x: str, layer, out: str, shape, scale: float = 1.0, keep: bool = True) -> str:
        w = self.const(f"{out}/weights", _f32(layer.weight) * np.float32(scale))
        b = self.const(f"{out}/bias", _f32(layer.bias) * np.float32(scale))
        return self.op("FULLY_CONNECTED", [x, w, b], out, shape, activation="NONE",
                       keep_num_dims=keep)

    def norm(self, x: str, module, spec: EmbBERTSpec, out: str, shape) -> str:
        gamma = self.const(f"{out}/gamma", _f32(module.weight))
        if spec.norm == "rms":
            return self.op("RMS_NORM", [x, gamma], out, shape, epsilon=float(spec.epsilon))
        beta = self.const(f"{out}/beta", _f32(module.bias))
        return self.op("LAYER_NORM", [x, gamma, beta], out, shape, epsilon=float(spec.epsilon))


def float_graph(module, spec: EmbBERTSpec | None = None, name: str = "embbert") -> Graph:
    """The float32 IR of a trained (or freshly initialised) `EmbBERT` ``module``."""
    spec = module.spec if spec is None else spec
    t, h, k = spec.seq_len, spec.hidden, spec.kernel
    seq = (1, t, h)
    b = _Builder()
    b.tensors.append(Tensor("ids", (1, t), DType.INT32))
    table = b.const("embed/table", _f32(module.embed.weight))
    x = b.op("GATHER", [table, "ids"], "embed", (1, t, spec.embed_dim), axis=0)
    x = b.linear(x, module.project, "project", seq)
    pos = b.const("position", _f32(module.position)[None])
    x = b.op("ADD", [x, pos], "embedded", seq, activation="NONE")
    key_bias = None
    if spec.mask:
        bias = np.zeros(spec.vocab_size, np.float32)
        bias[PAD_ID] = -MASK_BIAS
        key_bias = b.op("GATHER", [b.const("pad_bias/table", bias), "ids"], "pad_bias", (1, t),
                        axis=0)
        key_bias = b.op("RESHAPE", [key_bias], "pad_bias_row", (1, 1, t))
    for i, block in enumerate(module.blocks):
        p = f"b{i}"
        n = b.norm(x, block.norm, spec, f"{p}/norm", seq)
        q = b.linear(n, block.query, f"{p}/query", seq, scale=1.0 / math.sqrt(h))
        s = b.op("BATCH_MATMUL", [q, n], f"{p}/scores", (1, t, t), adj_x=False, adj_y=True)
        if key_bias is not None:
            s = b.op("ADD", [s, key_bias], f"{p}/masked", (1, t, t), activation="NONE")
        s = b.op("SOFTMAX", [s], f"{p}/probs", (1, t, t), beta=1.0)
        a = b.op("BATCH_MATMUL", [s, n], f"{p}/attn", seq, adj_x=False, adj_y=False)
        c = b.op("RESHAPE", [n], f"{p}/tokens", (1, 1, t, h))
        # torch's Conv1d weight [H, 1, k] is the depthwise [1, 1, k, H] over the width (tokens)
        w = b.const(f"{p}/conv/weights", np.ascontiguousarray(
            _f32(block.conv.weight)[:, 0, :].T[None, None]))
        bias = b.const(f"{p}/conv/bias", _f32(block.conv.bias))
        c = b.op("DEPTHWISE_CONV_2D", [c, w, bias], f"{p}/conv", (1, 1, t, h), stride=(1, 1),
                 dilation=(1, 1), pad=(0, 0, k - 1, 0), depth_multiplier=1, activation="NONE")
        c = b.op("SILU", [c], f"{p}/silu", (1, 1, t, h))
        c = b.op("RESHAPE", [c], f"{p}/branch", seq)
        m = b.op("ADD" if spec.combine == "add" else "MUL", [a, c], f"{p}/mix", seq,
                 activation="NONE")
        o = b.linear(m, block.out, f"{p}/out", seq)
        x = b.op("ADD", [x, o], f"{p}/residual", seq, activation="NONE")
    x = b.norm(x, module.norm, spec, "norm", seq)
    x = b.op("MEAN", [x], "pool", (1, h), axes=(1,), keep_dims=False)
    out = b.linear(x, module.head, "logits", (1, spec.num_classes), keep=False)
    return Graph(b.tensors, b.ops, ["ids"], [out], name=name)


def int8_graph(module, calib: np.ndarray, spec: EmbBERTSpec | None = None,
               name: str = "embbert") -> Graph:
    """The int8 graph of ``module`` calibrated on token ids ``calib`` int32 ``[N, T]``."""
    from edgekit.converters.quantize import quantize

    return quantize(float_graph(module, spec, name), np.asarray(calib, dtype=np.int32), bits=8)
