"""Specs convert to int8 through edgekit's converter, with SAME convolutions and no PAD op,
and TFLite Micro runs the int8 .tflite bit-exact with edgekit's interpreter."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from oracle_runners import TflmRunner  # noqa: E402

from edgekit.converters.tflite_writer import to_bytes  # noqa: E402
from edgekit.interpreter import Interpreter  # noqa: E402
from edgekit.nas.convert import int8_graph  # noqa: E402
from edgekit.nas.mcunet import mobilenet_v2_spec, sample, to_torch  # noqa: E402
from edgekit.nas.torch_model import recalibrate_bn  # noqa: E402


def _convert(spec, seed=0):
    torch.manual_seed(seed)
    calib = np.random.default_rng(seed).standard_normal(
        (8, spec.in_channels, spec.resolution, spec.resolution)).astype(np.float32)
    net = recalibrate_bn(to_torch(spec), calib)
    return int8_graph(net, calib)


@pytest.mark.parametrize("which", ["sampled", "mobilenet_v2_035_144"])
def test_int8_graph_is_bit_exact_in_tflite_micro(which):
    spec = sample(11) if which == "sampled" else mobilenet_v2_spec(0.35, 144)
    graph = _convert(spec)
    kinds = {op.kind for op in graph.ops}
    assert "PAD" not in kinds
    assert kinds <= {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "RESHAPE", "FULLY_CONNECTED"}
    convs = [op for op in graph.ops if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert len(convs) == 2 + sum(3 if b.expansion != 1 else 2 for b in spec.blocks())
    tflm, ours = TflmRunner(to_bytes(graph)), Interpreter(graph)
    shape = graph[graph.inputs[0]].shape
    assert shape == (1, spec.resolution, spec.resolution, spec.in_channels)
    rng = np.random.default_rng(5)
    for _ in range(3):
        x = rng.integers(-128, 128, size=shape, dtype=np.int8)
        np.testing.assert_array_equal(ours.run([x])[0], tflm([x])[0])
