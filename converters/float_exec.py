"""A float32 executor for float IR graphs (what the ONNX/torch importers produce).

Calibration runs it to see every activation's range, and `edgekit convert --eval` runs it for
the float accuracy. Semantics follow the IR table in `edgekit.ir` with float tensors: NHWC
activations, OHWI conv weights, ``1HWO`` depthwise weights; pools never count padding (as
TFLite). Weights may be replaced per call (``weights=``) so the quantizer can measure the effect
of rounded weights without building a second graph.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import numpy as np

from edgekit.errors import InterpreterError, UnsupportedError
from edgekit.ir import DType, Graph, Op


def run_float(graph: Graph, inputs: Sequence[np.ndarray], *,
              weights: Mapping[str, np.ndarray] | None = None,
              observe: Callable[[str, np.ndarray], None] | None = None) -> list[np.ndarray]:
    """Run a float graph on ``inputs`` (one array per graph input, any batch size N).

    ``weights`` overrides constant tensors by name; ``observe(name, value)`` is called for every
    graph input and op output as it is computed (calibration hooks in here).
    """
    if len(inputs) != len(graph.inputs):
        raise InterpreterError(f"graph {graph.name!r} takes {len(graph.inputs)} input(s),"
                               f" got {len(inputs)}")
    values: dict[str, np.ndarray] = {t.name: t.data for t in graph.constants()}
    if weights:
        values.update(weights)
    for name, x in zip(graph.inputs, inputs):
        # token ids (GATHER indices) stay integers; everything else is float32
        x = np.asarray(x, dtype=np.int32 if graph[name].dtype == DType.INT32 else np.float32)
        expected = graph[name].shape
        if x.shape[1:] != expected[1:]:
            raise InterpreterError(f"input tensor {name!r}: expected shape (N, {expected[1:]}),"
                                   f" got {x.shape}")
        values[name] = x
        if observe:
            observe(name, x)
    for op in graph.ops:
        args = [None if n is None else values[n] for n in op.inputs]
        kernel = KERNELS.get(op.kind)
        if kernel is None:
            raise UnsupportedError(f"float executor: op {op.name or op.kind!r} of kind {op.kind}"
                                   " is not supported")
        # an overflow in a broken or hostile model shows up as a non-finite calibration range,
        # reported with the tensor's name; numpy's console warnings would only be noise
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            out = kernel(op, args, graph)
            out = _activation(op.attrs.get("activation", "NONE"), out)
        out = out.astype(np.int32 if graph[op.outputs[0]].dtype == DType.INT32 else np.float32)
        values[op.outputs[0]] = out
        if observe:
            observe(op.outputs[0], out)
    return [values[n] for n in graph.outputs]


def _activation(kind: str, x: np.ndarray) -> np.ndarray:
    if kind == "RELU":
        return np.maximum(x, 0)
    if kind == "RELU6":
        return np.clip(x, 0, 6)
    if kind == "RELU_N1_TO_1":
        return np.clip(x, -1, 1)
    return x


def windows(x: np.ndarray, kernel, stride, dilation, pad, out_hw, fill: float) -> np.ndarray:
    """[N, OH, OW, KH, KW, C] windows of an NHWC input (explicit top/left padding)."""
    n, h, w, c = x.shape
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    top, _, left, _ = pad
    need_h = (oh - 1) * sh + (kh - 1) * dh + 1
    need_w = (ow - 1) * sw + (kw - 1) * dw + 1
    xp = np.pad(x, ((0, 0), (top, max(0, need_h - h - top)), (left, max(0, need_w - w - left)),
                    (0, 0)), constant_values=fill)
    sn, shh, sww, sc = xp.strides
    return np.lib.stride_tricks.as_strided(
        xp, shape=(n, oh, ow, kh, kw, c),
        strides=(sn, shh * sh, sww * sw, shh * dh, sww * dw, sc), writeable=False)


def _out_hw(op: Op, graph: Graph) -> tuple[int, int]:
    shape = graph[op.outputs[0]].shape
    return shape[1], shape[2]


def _conv(op: Op, args, graph: Graph) -> np.ndarray:
    x, w, b = args[0], args[1], args[2] if len(args) > 2 else None
    win = windows(x, w.shape[1:3], op.attrs.get("stride", (1, 1)),
                   op.attrs.get("dilation", (1, 1)), op.attrs.get("pad", (0, 0, 0, 0)),
                   _out_hw(op, graph), 0.0)
    out = np.tensordot(win, w, axes=([3, 4, 5], [1, 2, 3]))
    return out if b is None else out + b


def _depthwise(op: Op, args, graph: Graph) -> np.ndarray:
    x, w, b = args[0], args[1], args[2] if len(args) > 2 else None
    m = int(op.attrs.get("depth_multiplier", 1))
    win = windows(x, w.shape[1:3], op.attrs.get("stride", (1, 1)),
                   op.attrs.get("dilation", (1, 1)), op.attrs.get("pad", (0, 0, 0, 0)),
                   _out_hw(op, graph), 0.0)
    if m != 1:
        win = np.repeat(win, m, axis=5)
    out = np.einsum("nhwijc,ijc->nhwc", win, w[0], optimize=True)
    return out if b is None else out + b


def _fully_connected(op: Op, args, graph: Graph) -> np.ndarray:
    x, w, b = args[0], args[1], args[2] if len(args) > 2 else None
    out = x.reshape(-1, w.shape[1]) @ w.T
    if op.attrs.get("keep_num_dims", False):  # tokens: [N, T, K] -> [N, T, units]
        out = out.reshape(x.shape[:-1] + (w.shape[0],))
    return out if b is None else out + b


def _pool(op: Op, args, graph: Graph) -> np.ndarray:
    x = args[0]
    is_max = op.kind == "MAX_POOL_2D"
    fill = -np.inf if is_max else np.nan
    win = windows(x, op.attrs["filter"], op.attrs.get("stride", (1, 1)), (1, 1),
                   op.attrs.get("pad", (0, 0, 0, 0)), _out_hw(op, graph), fill)
    return win.max(axis=(3, 4)) if is_max else np.nanmean(win, axis=(3, 4))


def _mean(op: Op, args, graph: Graph) -> np.ndarray:
    return args[0].mean(axis=tuple(op.attrs["axes"]), keepdims=bool(op.attrs.get("keep_dims")))


def _reshape(op: Op, args, graph: Graph) -> np.ndarray:
    shape = graph[op.outputs[0]].shape
    return args[0].reshape((args[0].shape[0],) + shape[1:])


def _softmax(op: Op, args, graph: Graph) -> np.ndarray:
    z = args[0] * float(op.attrs.get("beta", 1.0))
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _concat(op: Op, args, graph: Graph) -> np.ndarray:
    return np.concatenate([a for a in args if a is not None], axis=int(op.attrs.get("axis", 0)))


def _batch_matmul(op: Op, args, graph: Graph) -> np.ndarray:
    a, b = args[0], args[1]
    if op.attrs.get("adj_x", False):
        a = np.swapaxes(a, -1, -2)
    if op.attrs.get("adj_y", False):
        b = np.swapaxes(b, -1, -2)
    return np.matmul(a, b)


_erf = np.vectorize(math.erf, otypes=[np.float64])


def _gelu(op: Op, args, graph: Graph) -> np.ndarray:
    x = args[0].astype(np.float64)
    if op.attrs.get("approximate", False):
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _norm(op: Op, args, graph: Graph) -> np.ndarray:
    """LAYER_NORM (beta given) and RMS_NORM over the last axis, in float64; a constant row
    with epsilon 0 normalises to 0 (as the int8 kernel defines it), not 0/0."""
    x, eps = args[0].astype(np.float64), float(op.attrs.get("epsilon", 1e-5))
    if op.kind == "LAYER_NORM":
        x = x - x.mean(axis=-1, keepdims=True)
    den = np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps)
    y = np.divide(x, den, out=np.zeros_like(x), where=den > 0) * args[1]
    return y + args[2] if op.kind == "LAYER_NORM" else y


KERNELS = {
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _depthwise,
    "FULLY_CONNECTED": _fully_connected,
    "ADD": lambda op, a, g: a[0] + a[1],
    "MUL": lambda op, a, g: a[0] * a[1],
    "AVERAGE_POOL_2D": _pool,
    "MAX_POOL_2D": _pool,
    "MEAN": _mean,
    "RESHAPE": _reshape,
    "SOFTMAX": _softmax,
    "PAD": lambda op, a, g: np.pad(a[0], op.attrs["paddings"]),
    "CONCATENATION": _concat,
    "RELU": lambda op, a, g: np.maximum(a[0], 0),
    "RELU6": lambda op, a, g: np.clip(a[0], 0, 6),
    "HARD_SWISH": lambda op, a, g: a[0] * np.clip(a[0] + 3, 0, 6) / 6,
    "LOGISTIC": lambda op, a, g: 1 / (1 + np.exp(-a[0])),
    "BATCH_MATMUL": _batch_matmul,
    "TRANSPOSE": lambda op, a, g: np.transpose(a[0], tuple(op.attrs["perm"])),
    "GATHER": lambda op, a, g: np.take(a[0], a[1].astype(np.int64), axis=int(op.attrs.get("axis", 0))),
    "GELU": _gelu,
    "LAYER_NORM": _norm, "RMS_NORM": _norm, "SILU": lambda op, a, g: a[0] * (0.5 + 0.5 * np.tanh(a[0] / 2)),
}


def is_float_graph(graph: Graph) -> bool:
    """True when every activation is FLOAT32 (what the importers produce), int32 token ids
    (GATHER indices) aside."""
    return all(t.dtype == DType.FLOAT32 or (t.dtype == DType.INT32 and t.quant is None)
               for t in graph.activations())
