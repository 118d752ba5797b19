"""What TFLite Micro's Prepare would refuse (or silently mis-run) in an imported model.

The reader (`tflite_reader`) already refuses what no runtime could mean (indices out of range,
buffers that disagree with shapes, zero points outside their type, scales that are not positive
finite numbers). This module checks the quantization parameters the way TFLite Micro's
``Prepare`` functions turn them into fixed-point multipliers, and lists every op whose
parameters TFLite Micro cannot represent:

- ``QuantizeMultiplier`` keeps shifts in [-31, 30]: a rescale factor below 2^-32 becomes 0 (an
  op whose factors all do outputs a constant), one of 2^30 or more is saturated. Checked for CONV_2D,
  DEPTHWISE_CONV_2D, FULLY_CONNECTED (per channel: input x filter / output), MUL (a x b /
  output), QUANTIZE, RELU and MEAN (input / output). TFLite Micro's kernels then shift int32
  values by 31 or more bits (undefined behaviour in C): its host build and our interpreter
  were seen to disagree on MEAN, MUL, QUANTIZE and RELU with such factors.
- ADD: its output factor ``2 max(s_a, s_b) / (2^20 s_out)`` goes through
  ``QuantizeMultiplierSmallerThanOneExp``, which aborts the process unless it is below 1.
- SOFTMAX (int8): ``beta s_in 2^26`` goes through ``QuantizeMultiplierGreaterThanOne``, which
  aborts unless it is above 1 (an input scale under about 1.5e-8); the int8 output of SOFTMAX
  and LOGISTIC must have scale 1/256 and zero point -128 (``TF_LITE_ENSURE``); LOGISTIC's input
  scale must be at least 2^-28 (below, ``CalculateInputRadius`` shifts by a negative amount).
- AVERAGE_POOL_2D, MAX_POOL_2D: output quantization equal to the input's.

On such a model "bit-exact with TFLite Micro" has no meaning, so `run`, `build`, `plan` and
`inspect` refuse it unless ``--allow-tflm-incompatible`` is given (then they warn).
"""

from __future__ import annotations

import numpy as np

from edgekit import fixedpoint as fp
from edgekit.ir import DType, Graph, Op, Tensor

#: QuantizeMultiplier's shift range in TFLite Micro (below: the multiplier becomes 0; above:
#: it is saturated)
MIN_SHIFT, MAX_SHIFT = -31, 30
#: ADD's inputs are shifted left by this many bits before rescaling (int8)
ADD_LEFT_SHIFT = 20
#: SOFTMAX's input integer bits (the 2^(31 - 5) factor of PreprocessSoftmaxScaling)
SOFTMAX_INPUT_INTEGER_BITS = 5
#: LOGISTIC's input integer bits (the 2^(31 - 4) factor of its input multiplier)
LOGISTIC_INPUT_INTEGER_BITS = 4

_QUANTIZED = (DType.INT8, DType.INT16)


def _scales(t: Tensor | None) -> np.ndarray | None:
    """The float32 scales TFLite Micro reads (as float64 for the arithmetic)."""
    if t is None or t.quant is None or t.dtype not in _QUANTIZED + (DType.INT4,):
        return None
    return t.quant.scale.astype(np.float32).astype(np.float64)


def _multiplier_problem(real: np.ndarray, what: str) -> str | None:
    """Why `real` (one or more rescale factors) cannot be a TFLite Micro multiplier, or None."""
    real = np.atleast_1d(real)
    q, shift = fp.quantize_multiplier(real)
    huge = shift > MAX_SHIFT
    # Some channels rounding to 0 is normal (dead channels of real models: MLPerf VWW has
    # them); all of them means the op outputs a constant, which is a damaged scale.
    if np.all(q == 0):
        return (f"{what} {float(real.max()):.3g} is below 2^{MIN_SHIFT - 1}: TFLite Micro's"
                " QuantizeMultiplier rounds it to 0 (the op would output a constant)")
    if huge.any():
        value = float(real[huge][0])
        return (f"{what} {value:.3g} is 2^{MAX_SHIFT} or more: TFLite Micro's QuantizeMultiplier"
                " saturates it")
    return None


def _probability_output_problem(out: Tensor) -> str | None:
    """SOFTMAX and LOGISTIC: TFLite Micro's Prepare fixes the int8 output at 1/256, -128."""
    if out.dtype != DType.INT8:
        return None
    scale, zp = float(_scales(out)[0]), int(out.quant.zero_point[0])
    if zp != -128 or abs(scale - 1 / 256) > 0.001 / 256:
        return (f"int8 output {out.name!r} has scale {scale:.6g} and zero point {zp}; TFLite"
                " Micro requires 1/256 and -128")
    return None


def _tensor(graph: Graph, name: str | None) -> Tensor | None:
    return graph[name] if name else None


def _op_findings(op: Op, graph: Graph) -> list[str]:
    inputs = [_tensor(graph, n) for n in op.inputs]
    out = _tensor(graph, op.outputs[0]) if op.outputs else None
    s_out = _scales(out)
    if s_out is None or not inputs:
        return []
    s_in = _scales(inputs[0])
    problems: list[str | None] = []
    if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and len(inputs) > 1:
        s_w = _scales(inputs[1])
        if s_in is not None and s_w is not None:
            problems.append(_multiplier_problem(s_in[0] * s_w / s_out[0],
                                                "the output rescale input x filter / output"))
    elif op.kind == "MUL" and len(inputs) == 2:
        s_b = _scales(inputs[1])
        if s_in is not None and s_b is not None:
            problems.append(_multiplier_problem(s_in[0] * s_b[0] / s_out[0],
                                                "the output rescale a x b / output"))
    elif op.kind in ("QUANTIZE", "MEAN", "RELU") and s_in is not None:
        problems.append(_multiplier_problem(s_in[0] / s_out[0], "the rescale input / output"))
    elif op.kind == "ADD" and len(inputs) == 2 and out.dtype == DType.INT8:
        s_b = _scales(inputs[1])
        if s_in is not None and s_b is not None:
            real = 2.0 * max(s_in[0], s_b[0]) / (float(1 << ADD_LEFT_SHIFT) * s_out[0])
            if not real < 1.0:
                problems.append(f"the output rescale 2 max(scale a, scale b) / (2^{ADD_LEFT_SHIFT}"
                                f" x output scale) = {real:.3g} is not below 1: TFLite Micro's"
                                " QuantizeMultiplierSmallerThanOneExp aborts on it")
    elif op.kind == "SOFTMAX" and s_in is not None and inputs[0].dtype == DType.INT8:
        beta = float(np.float32(op.attrs.get("beta", 1.0)))
        real = beta * s_in[0] * float(1 << (31 - SOFTMAX_INPUT_INTEGER_BITS))
        if not real > 1.0:
            problems.append(f"beta x input scale x 2^{31 - SOFTMAX_INPUT_INTEGER_BITS} = {real:.3g}"
                            f" (input scale {s_in[0]:.3g}) is not above 1: TFLite Micro's"
                            " QuantizeMultiplierGreaterThanOne aborts on it")
        problems.append(_probability_output_problem(out))
    elif op.kind == "LOGISTIC" and s_in is not None and inputs[0].dtype == DType.INT8:
        real = s_in[0] * float(1 << (31 - LOGISTIC_INPUT_INTEGER_BITS))
        if real < 0.5:
            problems.append(f"input scale {s_in[0]:.3g} x 2^{31 - LOGISTIC_INPUT_INTEGER_BITS} is"
                            " below 1/2: TFLite Micro's CalculateInputRadius would shift by a"
                            " negative amount (undefined behaviour)")
        problems.append(_probability_output_problem(out))
    elif op.kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D") and s_in is not None:
        zp_in, zp_out = int(inputs[0].quant.zero_point[0]), int(out.quant.zero_point[0])
        if s_in[0] != s_out[0] or zp_in != zp_out:
            problems.append(f"output quantization (scale {s_out[0]:.6g}, zero point {zp_out})"
                            f" differs from the input's ({s_in[0]:.6g}, {zp_in}); TFLite Micro's"
                            " pooling requires them equal")
    label = f"op {op.name or op.outputs[0]!r} ({op.kind})"
    return [f"{label}: {p}" for p in problems if p]


def tflm_findings(graph: Graph) -> list[str]:
    """One message per op whose quantization TFLite Micro's Prepare cannot represent or
    refuses; empty for a model TFLite Micro runs as written."""
    findings: list[str] = []
    for op in graph.ops:
        findings.extend(_op_findings(op, graph))
    return findings


__all__ = ["MAX_SHIFT", "MIN_SHIFT", "tflm_findings"]
