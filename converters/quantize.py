"""Post-training quantization of a float IR graph to TFLite-style int8 (W8A8) and W4A8.

Following the TFLite quantization spec:

- activations: int8, asymmetric per tensor, the range widened to hold 0 so that zero is exact;
  ops that cannot rescale (pools, reshape, concatenation, transpose) share one quantization
  between their inputs and output; SOFTMAX/LOGISTIC outputs are fixed at scale 1/256, zero
  point -128; BATCH_MATMUL and GELU outputs are calibrated like any other;
- GATHER: the (constant) table is int8 per tensor over its values and its output's calibrated
  range, and the output carries exactly that quantization; the int32 indices (token ids, a
  graph input) stay int32 and unquantized (calibration data for them are integer ids);
- a constant operand of ADD, MUL or BATCH_MATMUL (a positional-embedding table) is int8 per
  tensor, asymmetric, over its own values (zero included), like an activation;
- weights: symmetric (zero point 0), per output channel for CONV_2D and DEPTHWISE_CONV_2D,
  per tensor for FULLY_CONNECTED (what TFLite Micro accepts for int4 and LiteRT everywhere);
  int8 in [-127, 127], int4 in [-7, 7] (stored unpacked in the IR, packed by the writer);
- biases: int32, scale = input scale * weight scale (in float32, as TFLite computes it), zp 0.

Bit widths: ``bits=8``, ``bits=4`` (every CONV_2D/DEPTHWISE_CONV_2D/FULLY_CONNECTED) or a
``"mixed:SPEC"`` string, SPEC a comma-separated list of ``KEY=BITS`` where KEY is an op name, a
glob over op names, ``#i`` (the i-th weighted layer, from 0), an op kind (``CONV_2D``,
``DEPTHWISE_CONV_2D``, ``FULLY_CONNECTED``: every layer of that kind) or ``default``:
``mixed:default=4,#0=8,fc*=8``. Later entries win. A kind left in both widths links both kernel
families into the firmware (`split_kinds`).

Accuracy recovery for int4 (``recover=True``), on int4 layers only: per-channel weight clipping
that minimises the rounding MSE (a grid search over the clip ratio), GPTQ rounding of CONV_2D
and FULLY_CONNECTED weights (`edgekit.converters.gptq`: each input column's rounding error is
fed forward to the columns not yet rounded, weighted by the calibration inputs' inverse
Hessian), then empirical bias correction (Nagel et al., "Data-Free Quantization", section 4.2,
with calibration data): the mean output shift that the rounded weights cause on the
calibration inputs is subtracted from the bias.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgekit.converters.calibrate import batches, collect_ranges, to_ir_layout
from edgekit.converters.float_exec import KERNELS, windows, is_float_graph, run_float
from edgekit.converters.gptq import HessianAccumulator, gptq_round
from edgekit.errors import CalibrationError, UnsupportedError, UsageError
from edgekit.ir import DType, Graph, Op, Quantization, Tensor

WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
#: layers whose int4 rounding GPTQ chooses under ``recover`` (depthwise mixes no inputs)
GPTQ_KINDS = ("CONV_2D", "FULLY_CONNECTED")
#: ops whose output must carry the input's quantization (TFLite Micro does not rescale)
_SAME_QUANT = ("MAX_POOL_2D", "AVERAGE_POOL_2D", "RESHAPE", "CONCATENATION", "PAD", "TRANSPOSE")
#: ops that may read a constant as an activation-like operand (a positional-embedding table
#: added to the tokens, a fixed matrix): it is quantized int8 per tensor from its own values
_CONSTANT_OPERAND_OPS = ("ADD", "MUL", "BATCH_MATMUL")
_FIXED_OUTPUT = {"SOFTMAX": (1.0 / 256.0, -128), "LOGISTIC": (1.0 / 256.0, -128)}
#: ops whose constant inputs stay float32 (gamma, beta: their kernels derive the integers)
_FLOAT_CONSTANT_INPUTS = ("LAYER_NORM", "RMS_NORM")
_CLIP_RATIOS = np.linspace(0.5, 1.0, 26)


@dataclass(frozen=True)
class LayerBits:
    """One weighted layer of a quantized graph."""

    index: int
    name: str
    kind: str
    bits: int
    weights_bytes: int


def parse_bits(bits: int | str, graph: Graph) -> dict[int, int]:
    """Op index -> weight bits (4 or 8) for every weighted op of ``graph``."""
    weighted = [(i, op) for i, op in enumerate(graph.ops) if op.kind in WEIGHTED]
    if isinstance(bits, str) and bits.strip() in ("4", "8"):
        bits = int(bits)
    if isinstance(bits, int) and not isinstance(bits, bool):
        if bits not in (4, 8):
            raise UsageError(f"--bits {bits}: weight bits must be 8, 4 or mixed:SPEC")
        return {i: bits for i, _ in weighted}
    if not isinstance(bits, str) or not bits.startswith("mixed:"):
        raise UsageError(f"--bits {bits!r}: expected 8, 4 or mixed:SPEC (e.g. mixed:default=4,#0=8)")
    chosen = {i: 8 for i, _ in weighted}
    entries = [e.strip() for e in bits[len("mixed:"):].split(",") if e.strip()]
    if not entries:
        raise UsageError(f"--bits {bits!r}: the mixed spec is empty; give KEY=4|8 entries,"
                         " e.g. mixed:default=4,#0=8")
    seen: set[str] = set()
    for entry in entries:
        key, sep, value = entry.partition("=")
        key = key.strip()
        if not sep or value.strip() not in ("4", "8"):
            raise UsageError(f"--bits {bits!r}: entry {entry!r} must be KEY=4 or KEY=8")
        if key in seen:
            raise UsageError(f"--bits {bits!r}: key {key!r} is given twice")
        seen.add(key)
        width = int(value)
        if key == "default":
            hits = [i for i, _ in weighted]
        elif key in WEIGHTED:  # a kind the model lacks is no typo: one spec serves many models
            hits = [i for i, op in weighted if op.kind == key]
        elif key.startswith("#"):
            try:
                hits = [weighted[int(key[1:])][0]]
            except (ValueError, IndexError):
                raise UsageError(f"--bits {bits!r}: {key!r} is not a weighted layer index"
                                 f" (the model has {len(weighted)}: #0..#{len(weighted) - 1})") from None
        else:
            hits = [i for i, op in weighted if fnmatch.fnmatchcase(op.name, key)]
            if not hits:
                names = ", ".join(op.name for _, op in weighted[:8])
                raise UsageError(f"--bits {bits!r}: no weighted layer named {key!r} (layers: {names})")
        for i in hits:
            chosen[i] = width
    return chosen


def split_kinds(rows: list[LayerBits]) -> dict[str, tuple[list[int], list[int]]]:
    """The weighted op kinds with layers in both widths: kind -> (its int8 layers, its int4
    layers), by weighted-layer index. A build links the int8 and the int4 kernels of such a kind
    (two copies of its code), which an int4 layer's halved weights may not pay for."""
    split = {}
    for kind in WEIGHTED:
        eights = [r.index for r in rows if r.kind == kind and r.bits == 8]
        fours = [r.index for r in rows if r.kind == kind and r.bits == 4]
        if eights and fours:
            split[kind] = (eights, fours)
    return split


def layer_bits(graph: Graph) -> list[LayerBits]:
    """The weight bit width and bytes of each weighted layer of a quantized graph."""
    rows = []
    for k, (i, op) in enumerate((i, op) for i, op in enumerate(graph.ops) if op.kind in WEIGHTED):
        w = graph[op.inputs[1]]
        rows.append(LayerBits(k, op.name, op.kind, w.dtype.bits, w.nbytes))
    return rows


def _f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).astype(np.float64)


#: the narrowest activation range quantized: a dead activation (all zeros in calibration) gets
#: this span, so its scale stays >= ~4e-8 and TFLite's fused-activation bounds (6 / scale for
#: RELU6) still fit in int32 (TFLite Micro refuses the model otherwise)
MIN_ACTIVATION_RANGE = 1e-5


def activation_quant(lo: float, hi: float) -> Quantization:
    """Asymmetric int8 quantization of [lo, hi] widened to hold 0 (scale float32-exact)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo < MIN_ACTIVATION_RANGE:
        hi = lo + MIN_ACTIVATION_RANGE
    scale = float(_f32((hi - lo) / 255.0)[()])
    zp = int(np.clip(np.round(-128.0 - lo / scale), -128, 127))
    return Quantization(np.array([scale]), np.array([zp]))


def _weight_axis(kind: str) -> int:
    return 3 if kind == "DEPTHWISE_CONV_2D" else 0


def quantize_weights(w: np.ndarray, kind: str, bits: int, clip_search: bool) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric weights: ``(q, scale)``; scale per output channel for convolutions, one scale
    for FULLY_CONNECTED. ``clip_search`` picks each channel's clip ratio minimising the MSE."""
    qmax = 127 if bits == 8 else 7
    per_channel = kind != "FULLY_CONNECTED"
    axis = _weight_axis(kind)
    moved = np.moveaxis(w.astype(np.float64), axis, 0).reshape(w.shape[axis], -1)
    if not per_channel:
        moved = moved.reshape(1, -1)
    maxabs = np.maximum(np.abs(moved).max(axis=1), 1e-12)
    ratio = np.ones(len(moved))
    if clip_search:
        best = np.full(len(moved), np.inf)
        for r in _CLIP_RATIOS:
            s = maxabs * r / qmax
            err = ((np.clip(np.round(moved / s[:, None]), -qmax - 1, qmax) * s[:, None] - moved) ** 2).sum(1)
            better = err < best
            best[better], ratio[better] = err[better], r
    scale = np.maximum(_f32(maxabs * ratio / qmax), np.finfo(np.float32).tiny)
    shape = [1] * w.ndim
    if per_channel:
        shape[axis] = -1
    low = -qmax - 1 if clip_search else -qmax
    q = np.clip(np.round(w / scale.reshape(shape)), low, qmax).astype(np.int8)
    return q, scale


def _tie_groups(graph: Graph) -> dict[str, str]:
    """Union-find over activations that must share one quantization; name -> group root."""
    parent: dict[str, str] = {}

    def find(a: str) -> str:
        while parent.setdefault(a, a) != a:
            parent[a] = parent.setdefault(parent[a], parent[a])
            a = parent[a]
        return a

    for op in graph.ops:
        if op.kind in _SAME_QUANT:
            root = find(op.outputs[0])
            for name in op.present_inputs():
                parent[find(name)] = root
    return {name: find(name) for name in (t.name for t in graph.activations())}


def _activation_quants(graph: Graph, ranges: dict[str, tuple[float, float]]
                       ) -> dict[str, Quantization]:
    """One int8 quantization per activation: tied tensors (pools, reshape, concatenation, pad)
    share the union of their ranges; softmax/logistic outputs get TFLite's fixed one."""
    groups = _tie_groups(graph)
    span: dict[str, tuple[float, float]] = {}
    for name, root in groups.items():
        lo, hi = ranges.get(name, (0.0, 0.0))
        a, b = span.get(root, (np.inf, -np.inf))
        span[root] = (min(a, lo), max(b, hi))
    fixed = {op.outputs[0]: _FIXED_OUTPUT[op.kind] for op in graph.ops if op.kind in _FIXED_OUTPUT}
    fixed_roots: dict[str, tuple[float, int]] = {}
    for name, value in fixed.items():
        root = groups[name]
        lo, hi = span[root]
        if root in fixed_roots or lo < 0.0 or hi > 1.0:
            raise UnsupportedError(f"tensor {name!r}: a softmax/logistic output (fixed scale 1/256)"
                                   " shares its quantization, through a pool, reshape, pad or"
                                   f" concatenation, with values in [{lo:.3g}, {hi:.3g}]")
        fixed_roots[root] = value
    for op in graph.ops:
        if op.kind == "GATHER":
            root = groups[op.outputs[0]]
            if root in fixed_roots:
                raise UnsupportedError(f"tensor {op.outputs[0]!r}: a GATHER output shares its"
                                       " quantization with a softmax/logistic output")
            table = graph[op.inputs[0]].data
            lo, hi = span[root]
            span[root] = (min(lo, float(table.min())), max(hi, float(table.max())))
    aq: dict[str, Quantization] = {}
    for name, root in groups.items():
        if root in fixed_roots:
            scale, zp = fixed_roots[root]
            aq[name] = Quantization(np.array([scale]), np.array([zp]))
        else:
            if not all(np.isfinite(span[root])):
                raise CalibrationError(
                    f"tensor {name!r}: the float model's values on the calibration data reach"
                    f" {span[root]}, not a finite range (a weight is inf/NaN or so large that the"
                    " float arithmetic overflows); it cannot be quantized")
            aq[name] = activation_quant(*span[root])
    return aq


def quantize(graph: Graph, calib, *, bits: int | str = 8, method: str = "minmax",
             percentile: float = 99.99, recover: bool = False,
             on_batch: Callable[[int], None] | None = None) -> Graph:
    """Quantize a float graph (from `import_onnx`/`import_torch`) with calibration data.

    ``calib``: an array (N, ...) in the source layout (NCHW for images) or an iterable of such
    batches. Returns an int8-activation `Graph` that the interpreter, the `.tflite` writer and
    the firmware generator accept; its input and output are int8 (use `quantize_input` /
    `dequantize_output`).
    """
    if not is_float_graph(graph):
        raise UsageError(f"graph {graph.name!r} is already quantized; quantize takes a float graph")
    widths = parse_bits(bits, graph)
    if recover and not isinstance(calib, np.ndarray):
        calib = [np.asarray(b[0] if isinstance(b, (tuple, list)) else b) for b in batches(calib)]
    ranges, _ = collect_ranges(graph, calib, method=method, percentile=percentile,
                               on_batch=on_batch)

    aq = _activation_quants(graph, ranges)

    # weights and biases
    tensors: dict[str, Tensor] = {name: Tensor(name, graph[name].shape, DType.INT8, q)
                                  for name, q in aq.items()}
    tensors.update(_integer_activations(graph))
    tensors.update(_activation_like_constants(graph, aq))
    float_biases = {}
    qweights = {}
    hessians = _collect_hessians(graph, calib, [i for i, width in widths.items()
                                                if width == 4 and graph.ops[i].kind in GPTQ_KINDS]
                                 ) if recover else {}
    for i, op in enumerate(graph.ops):
        if op.kind not in WEIGHTED:
            continue
        w = graph[op.inputs[1]]
        width = widths[i]
        q, wscale = quantize_weights(w.data, op.kind, width, clip_search=recover and width == 4)
        if i in hessians:
            q = _gptq_weights(op, w.data, wscale, hessians[i].h)
        qweights[i] = (q, wscale)
        b = graph[op.inputs[2]].data if len(op.inputs) > 2 and op.inputs[2] else None
        float_biases[i] = np.zeros(q.shape[_weight_axis(op.kind)], np.float64) if b is None \
            else b.astype(np.float64)
    if recover:
        _correct_biases(graph, calib, widths, qweights, float_biases)
    for i, op in enumerate(graph.ops):
        if op.kind not in WEIGHTED:
            continue
        q, wscale = qweights[i]
        w = graph[op.inputs[1]]
        axis = _weight_axis(op.kind) if wscale.size > 1 else None
        dtype = DType.INT4 if widths[i] == 4 else DType.INT8
        wq = Quantization(wscale, np.zeros(wscale.size, np.int64), axis)
        tensors[w.name] = Tensor(w.name, w.shape, dtype, wq, q)
        in_scale = np.float32(aq[op.inputs[0]].scale[0])
        bscale = _f32(in_scale * wscale.astype(np.float32))
        n = float_biases[i].size
        bias_q = np.clip(np.round(float_biases[i] / np.broadcast_to(bscale, (n,))),
                         -2**31, 2**31 - 1).astype(np.int32)
        bname = op.inputs[2] if len(op.inputs) > 2 and op.inputs[2] else f"{op.outputs[0]}/bias"
        tensors[bname] = Tensor(bname, (n,), DType.INT32,
                                Quantization(bscale, np.zeros(bscale.size, np.int64),
                                             0 if bscale.size > 1 else None), bias_q)
    ops = []
    for i, op in enumerate(graph.ops):
        inputs = list(op.inputs)
        if op.kind in WEIGHTED:
            inputs = inputs[:2] + [inputs[2] if len(inputs) > 2 and inputs[2]
                                   else f"{op.outputs[0]}/bias"]
        ops.append(Op(op.kind, inputs, list(op.outputs), dict(op.attrs), name=op.name))
    for op in ops:
        if op.kind in _FLOAT_CONSTANT_INPUTS:
            tensors.update({n: graph[n] for n in op.inputs[1:] if n and graph[n].is_constant})
    for t in graph.constants():
        if t.name not in tensors and any(t.name in op.inputs for op in ops):
            raise UnsupportedError(f"constant {t.name!r} read by a non-weighted op cannot be"
                                   " quantized")
    return Graph(tensors.values(), ops, graph.inputs, graph.outputs, name=graph.name)


def _integer_activations(graph: Graph) -> dict[str, Tensor]:
    """int32 activations (token ids and what only moves them) stay int32, unquantized."""
    return {t.name: Tensor(t.name, t.shape, DType.INT32) for t in graph.activations()
            if t.dtype == DType.INT32}


def _activation_like_constants(graph: Graph, aq: dict[str, Quantization]) -> dict[str, Tensor]:
    """GATHER tables take their output's quantization; a constant operand of ADD, MUL or
    BATCH_MATMUL is quantized int8 per tensor over its own value range (zero included)."""
    out: dict[str, Tensor] = {}
    for op in graph.ops:
        if op.kind == "GATHER":
            names = [(op.inputs[0], aq[op.outputs[0]])]
        elif op.kind in _CONSTANT_OPERAND_OPS:
            names = [(n, None) for n in op.present_inputs() if graph[n].is_constant]
        else:
            continue
        for name, q in names:
            t = graph[name]
            if not t.is_constant or t.dtype != DType.FLOAT32:
                raise UnsupportedError(f"op {op.kind} {op.name!r}: operand {name!r} must be a"
                                       " float32 constant to be quantized")
            q = q or activation_quant(float(t.data.min()), float(t.data.max()))
            if name in out and out[name].quant != q:
                raise UnsupportedError(f"constant {name!r} is read by ops that need different"
                                       " quantizations")
            values = np.round(t.data.astype(np.float64) / q.scale[0]) + q.zero_point[0]
            out[name] = Tensor(name, t.shape, DType.INT8, q,
                               np.clip(values, -128, 127).astype(np.int8))
    return out


def _collect_hessians(graph: Graph, calib, layers: list[int]) -> dict[int, HessianAccumulator]:
    """``X^T X`` of each layer's float input rows (im2col windows for convolutions)."""
    acc: dict[int, HessianAccumulator] = {}
    by_input: dict[str, list[int]] = {}
    for i in layers:
        w = graph[graph.ops[i].inputs[1]]
        acc[i] = HessianAccumulator(int(np.prod(w.shape[1:])))
        by_input.setdefault(graph.ops[i].inputs[0], []).append(i)

    def observe(name: str, value: np.ndarray) -> None:
        for i in by_input.get(name, ()):
            op = graph.ops[i]
            if op.kind == "CONV_2D":
                kh, kw = graph[op.inputs[1]].shape[1:3]
                out = graph[op.outputs[0]].shape
                value = windows(value, (kh, kw), op.attrs.get("stride", (1, 1)),
                                 op.attrs.get("dilation", (1, 1)), op.attrs.get("pad", (0, 0, 0, 0)),
                                 (out[1], out[2]), 0.0)
            acc[i].add(np.ascontiguousarray(value))

    if layers:
        for batch in batches(calib):
            run_float(graph, [to_ir_layout(graph, batch)], observe=observe)
    return acc


def _gptq_weights(op: Op, w: np.ndarray, scale: np.ndarray, hessian: np.ndarray) -> np.ndarray:
    """GPTQ rounding of a CONV_2D ([O, KH, KW, C]) or FULLY_CONNECTED ([N, K]) int4 weight."""
    q = gptq_round(w.reshape(w.shape[0], -1), scale, hessian, -8, 7)
    return q.reshape(w.shape)


def _correct_biases(graph: Graph, calib, widths: dict[int, int], qweights, float_biases) -> None:
    """Empirical bias correction: subtract the mean output change caused by weight rounding,
    measured on the float inputs each layer sees over the calibration data."""
    sums: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    wanted: dict[str, list[int]] = {}
    for i in qweights:
        wanted.setdefault(graph.ops[i].inputs[0], []).append(i)

    def observe(name: str, value: np.ndarray) -> None:
        for i in wanted.get(name, ()):
            op = graph.ops[i]
            q, scale = qweights[i]
            axis = _weight_axis(op.kind)
            shape = [1] * q.ndim
            if scale.size > 1:
                shape[axis] = -1
            delta_w = (q * scale.reshape(shape) - graph[op.inputs[1]].data).astype(np.float32)
            probe = Op(op.kind, [op.inputs[0], "dw"], op.outputs, {**op.attrs, "activation": "NONE"})
            shift = KERNELS[op.kind](probe, [value, delta_w], graph)
            per_channel = shift.reshape(-1, shift.shape[-1])
            sums[i] = sums.get(i, 0) + per_channel.sum(axis=0, dtype=np.float64)
            counts[i] = counts.get(i, 0) + per_channel.shape[0]

    for batch in batches(calib):
        run_float(graph, [to_ir_layout(graph, batch)], observe=observe)
    for i, total in sums.items():
        if widths[i] == 4:
            float_biases[i] = float_biases[i] - total / counts[i]


def quantize_input(graph: Graph, x: np.ndarray, input_index: int = 0) -> np.ndarray:
    """Float samples in the source layout -> the quantized graph's int8 input (NHWC)."""
    name = graph.inputs[input_index]
    q = graph[name].quant
    xs = to_ir_layout(graph, x, input_index)
    if graph[name].dtype == DType.INT32:
        return xs
    return np.clip(np.round(xs / q.scale[0]) + q.zero_point[0], -128, 127).astype(np.int8)


def dequantize_output(graph: Graph, y: np.ndarray, output_index: int = 0) -> np.ndarray:
    """The quantized graph's int8 output -> float values."""
    q = graph[graph.outputs[output_index]].quant
    return (y.astype(np.float64) - q.zero_point[0]) * q.scale[0]
