"""Constant folding of TFLite shape arithmetic at import.

TensorFlow's converter often leaves small integer computations in a model (``SHAPE`` ->
``STRIDED_SLICE`` -> ``PACK`` -> ``RESHAPE``, ``GATHER`` or ``CONCATENATION`` on constants, ...)
whose result is known once shapes are static. Rather than refusing such a model we evaluate
those ops with numpy at import; only ops whose inputs are all known (or, for ``SHAPE``, whose
input has a static shape) and whose output is not quantized are folded.

`fold_op` returns the folded value, or ``None`` when the op is not something we fold; it raises
`FoldError` when the op is foldable but its operands are inconsistent (the importer turns that
into a `ModelFormatError` naming the op and file).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

#: ops whose result `fold_op` can compute from constant operands
FOLDABLE_OPS = frozenset({
    "SHAPE", "STRIDED_SLICE", "PACK", "GATHER", "CONCATENATION", "RESHAPE", "SQUEEZE",
    "EXPAND_DIMS", "CAST", "ADD", "SUB", "MUL", "FLOOR_DIV", "REDUCE_PROD", "SLICE",
})


class FoldError(ValueError):
    """A foldable op whose constant operands do not make sense (bad index, bad shapes)."""


def fold_op(op_name: str, options: dict[str, Any], inputs: Sequence[np.ndarray | None],
            input_shapes: Sequence[tuple[int, ...] | None], out_shape: tuple[int, ...],
            out_dtype: np.dtype) -> np.ndarray | None:
    """Evaluate one constant op; ``inputs[i]`` is None where that operand is not constant."""
    if op_name == "SHAPE":
        if not input_shapes or input_shapes[0] is None:
            return None
        return np.asarray(input_shapes[0], dtype=out_dtype)
    if op_name not in FOLDABLE_OPS or any(x is None for x in inputs) or not inputs:
        return None
    if options.get("fused_activation_function", 0) != 0:
        return None
    try:
        with np.errstate(all="raise"):
            result = _EVALUATORS[op_name](list(inputs), options, out_shape)
    except (ValueError, IndexError, TypeError, FloatingPointError, ZeroDivisionError,
            OverflowError) as err:
        raise FoldError(str(err)) from None
    return np.asarray(result).astype(out_dtype, copy=False)


def _strided_slice(inputs: list[np.ndarray], options: dict[str, Any], out_shape) -> np.ndarray:
    x, begin, end = inputs[0], inputs[1].ravel(), inputs[2].ravel()
    strides = inputs[3].ravel() if len(inputs) > 3 else np.ones_like(begin)
    if options.get("ellipsis_mask", 0) or options.get("new_axis_mask", 0):
        raise ValueError("ellipsis and new-axis masks are not folded")
    if not len(begin) == len(end) == len(strides) <= x.ndim:
        raise ValueError(f"begin/end/strides lengths {len(begin)}/{len(end)}/{len(strides)}"
                         f" do not fit a rank-{x.ndim} input")
    index: list[Any] = []
    for axis in range(len(begin)):
        bit = 1 << axis
        b, e, s = int(begin[axis]), int(end[axis]), int(strides[axis])
        if s == 0:
            raise ValueError("stride 0")
        if options.get("offset", 0):
            e = b + e
        if options.get("shrink_axis_mask", 0) & bit:
            dim = x.shape[axis]
            if not -dim <= b < dim:
                raise ValueError(f"index {b} out of range for dimension {dim}")
            index.append(b)  # an integer index drops the axis, as shrink does
            continue
        start = None if options.get("begin_mask", 0) & bit else b
        stop = None if options.get("end_mask", 0) & bit else e
        index.append(slice(start, stop, s))
    return x[tuple(index)]


def _slice(inputs: list[np.ndarray], options: dict[str, Any], out_shape) -> np.ndarray:
    x, begin, size = inputs[0], inputs[1].ravel(), inputs[2].ravel()
    if len(begin) != x.ndim or len(size) != x.ndim:
        raise ValueError("begin/size length differs from the input rank")
    index = []
    for b, n, dim in zip(begin, size, x.shape):
        b, n = int(b), int(n)
        n = dim - b if n == -1 else n
        if b < 0 or n < 0 or b + n > dim:
            raise ValueError(f"slice {b}:{b + n} outside dimension {dim}")
        index.append(slice(b, b + n))
    return x[tuple(index)]


def _pack(inputs: list[np.ndarray], options: dict[str, Any], out_shape) -> np.ndarray:
    return np.stack(inputs, axis=int(options.get("axis", 0)))


def _gather(inputs: list[np.ndarray], options: dict[str, Any], out_shape) -> np.ndarray:
    if options.get("batch_dims", 0):
        raise ValueError("batch_dims is not folded")
    params, indices = inputs
    axis = int(options.get("axis", 0))
    axis = axis + params.ndim if axis < 0 else axis
    if not 0 <= axis < params.ndim:
        raise ValueError(f"axis {axis} out of range")
    if indices.size and (indices.min() < 0 or indices.max() >= params.shape[axis]):
        raise ValueError(f"gather index outside [0, {params.shape[axis]})")
    return np.take(params, indices, axis=axis)


def _concat(inputs: list[np.ndarray], options: dict[str, Any], out_shape) -> np.ndarray:
    return np.concatenate(inputs, axis=int(options.get("axis", 0)))


def _reshape_to_output(inputs: list[np.ndarray], options: dict[str, Any], out_shape) -> np.ndarray:
    return inputs[0].reshape(out_shape)


def _cast(inputs: list[np.ndarray], options: dict[str, Any], out_shape) -> np.ndarray:
    return inputs[0]


def _binary(fn: Callable) -> Callable:
    def evaluate(inputs: list[np.ndarray], options: dict[str, Any], out_shape) -> np.ndarray:
        a, b = inputs
        return fn(a, b)
    return evaluate


def _reduce_prod(inputs: list[np.ndarray], options: dict[str, Any], out_shape) -> np.ndarray:
    axes = tuple(int(a) for a in inputs[1].ravel())
    return np.prod(inputs[0], axis=axes, keepdims=bool(options.get("keep_dims", 0)))


_EVALUATORS: dict[str, Callable] = {
    "STRIDED_SLICE": _strided_slice, "SLICE": _slice, "PACK": _pack, "GATHER": _gather,
    "CONCATENATION": _concat, "RESHAPE": _reshape_to_output, "SQUEEZE": _reshape_to_output,
    "EXPAND_DIMS": _reshape_to_output, "CAST": _cast,
    "ADD": _binary(np.add), "SUB": _binary(np.subtract), "MUL": _binary(np.multiply),
    "FLOOR_DIV": _binary(np.floor_divide), "REDUCE_PROD": _reduce_prod,
}
