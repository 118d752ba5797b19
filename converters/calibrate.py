"""Activation ranges from calibration data, for post-training quantization.

Calibration data come in the source model's layout (NCHW for images, as PyTorch and ONNX use):
one array of shape (N, ...) or an iterable of such batches. 4-D batches are moved to the IR's
NHWC here. Two range estimators:

- ``minmax``: the smallest and largest value seen (TFLite's converter default);
- ``percentile``: the ``percentile``-th and ``100 - percentile``-th percentiles of a bounded
  random sample of every tensor's values, which ignores rare outliers that would otherwise
  stretch the int8 grid (a better resolution for the bulk of the values).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from edgekit.converters.float_exec import run_float
from edgekit.errors import CalibrationError, UnsupportedError, UsageError
from edgekit.ir import DType, Graph

METHODS = ("minmax", "percentile")
#: values kept per tensor for the percentile estimator
SAMPLE_CAP = 200_000


def to_ir_layout(graph: Graph, batch: np.ndarray, input_index: int = 0) -> np.ndarray:
    """Check one calibration/eval batch against graph input ``input_index`` and return it as
    float32 in the IR's layout (NCHW -> NHWC for 4-D inputs)."""
    name = graph.inputs[input_index]
    expected = graph[name].shape
    x = np.asarray(batch)
    if graph[name].dtype == DType.INT32:
        return _token_ids(name, expected, x)
    if x.dtype.kind != "f":
        raise CalibrationError(f"calibration data for input {name!r}: dtype {x.dtype.name}, expected"
                               " float32 (values as the float model takes them)")
    if len(expected) == 4:
        want = (expected[3], expected[1], expected[2])
        if x.ndim == 3 and x.shape == want:
            x = x[None]
        if x.ndim != 4 or x.shape[1:] != want:
            raise CalibrationError(f"calibration data for input {name!r}: shape {x.shape},"
                                   f" expected (N, {', '.join(map(str, want))}) (NCHW)")
        x = x.transpose(0, 2, 3, 1)
    elif x.shape[1:] != expected[1:]:
        if x.shape == expected[1:]:
            x = x[None]
        else:
            raise CalibrationError(f"calibration data for input {name!r}: shape {x.shape},"
                                   f" expected (N, {', '.join(map(str, expected[1:]))})")
    if x.shape[0] == 0:
        raise CalibrationError(f"calibration data for input {name!r} is empty")
    if not np.all(np.isfinite(x)):
        raise CalibrationError(f"calibration data for input {name!r} holds NaN or infinity")
    return np.ascontiguousarray(x, dtype=np.float32)


def _token_ids(name: str, expected: tuple[int, ...], x: np.ndarray) -> np.ndarray:
    """An int32 graph input (token ids feeding GATHER): integers, shape (N, ...) or one sample."""
    if x.dtype.kind not in "iu":
        raise CalibrationError(f"calibration data for int32 input {name!r}: dtype {x.dtype.name},"
                               " expected integers (token ids)")
    if x.shape == expected[1:]:
        x = x[None]
    if x.shape[1:] != expected[1:] or x.shape[0] == 0:
        raise CalibrationError(f"calibration data for input {name!r}: shape {x.shape},"
                               f" expected (N, {', '.join(map(str, expected[1:]))})")
    if x.min() < np.iinfo(np.int32).min or x.max() > np.iinfo(np.int32).max:
        raise CalibrationError(f"calibration data for input {name!r}: ids outside int32")
    return np.ascontiguousarray(x, dtype=np.int32)


def batches(calib, batch_size: int = 32) -> Iterable[np.ndarray]:
    """An array is split into batches of ``batch_size``; an iterable is passed through."""
    if isinstance(calib, np.ndarray):
        if calib.ndim == 0:
            raise CalibrationError("calibration data is a scalar, expected a batch of samples")
        return (calib[i:i + batch_size] for i in range(0, len(calib), batch_size))
    if isinstance(calib, (str, bytes)) or not hasattr(calib, "__iter__"):
        raise CalibrationError(f"calibration data must be an array or an iterable of arrays,"
                               f" got {type(calib).__name__}")
    return iter(calib)


@dataclass
class _Observer:
    method: str
    rng: np.random.Generator
    lo: dict[str, float] = field(default_factory=dict)
    hi: dict[str, float] = field(default_factory=dict)
    samples: dict[str, list[np.ndarray]] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)

    def __call__(self, name: str, value: np.ndarray) -> None:
        v = value.reshape(-1)
        self.lo[name] = min(self.lo.get(name, np.inf), float(v.min()))
        self.hi[name] = max(self.hi.get(name, -np.inf), float(v.max()))
        if self.method == "percentile" and self.kept.get(name, 0) < SAMPLE_CAP:
            take = min(v.size, SAMPLE_CAP // 8, SAMPLE_CAP - self.kept.get(name, 0))
            pick = v if take == v.size else v[self.rng.choice(v.size, take, replace=False)]
            self.samples.setdefault(name, []).append(pick.copy())
            self.kept[name] = self.kept.get(name, 0) + take


def collect_ranges(graph: Graph, calib, *, method: str = "minmax", percentile: float = 99.99,
                   on_batch: Callable[[int], None] | None = None,
                   seed: int = 0) -> tuple[dict[str, tuple[float, float]], int]:
    """Run the float graph over the calibration data; return ``({tensor: (lo, hi)}, samples)``.

    ``on_batch(n)`` is called after each batch with its sample count (progress bars).
    """
    if method not in METHODS:
        raise UsageError(f"unknown calibration method {method!r}; choose one of {METHODS}")
    if not 50.0 < percentile <= 100.0:
        raise UsageError(f"percentile must be in (50, 100], got {percentile}")
    if len(graph.inputs) != 1:
        raise UnsupportedError(f"graph {graph.name!r} has {len(graph.inputs)} inputs; calibration"
                               " supports single-input models")
    observer = _Observer(method, np.random.default_rng(seed))
    seen = 0
    for batch in batches(calib):
        if isinstance(batch, (tuple, list)):
            batch = batch[0]
        x = to_ir_layout(graph, batch)
        run_float(graph, [x], observe=observer)
        seen += len(x)
        if on_batch:
            on_batch(len(x))
    if seen == 0:
        raise CalibrationError("calibration data is empty: it holds no samples")
    ranges = {name: (observer.lo[name], observer.hi[name]) for name in observer.lo}
    if method == "percentile":
        for name, parts in observer.samples.items():
            values = np.concatenate(parts)
            ranges[name] = (float(np.percentile(values, 100.0 - percentile)),
                            float(np.percentile(values, percentile)))
    return ranges, seen
