"""The four MLPerf Tiny int8 models, 100 random inputs each: our reference interpreter is
byte-for-byte equal to TFLite Micro. LiteRT's reference resolver is byte-for-byte equal to our
interpreter run with single rounding in FULLY_CONNECTED, on every input of every model; so every
byte where LiteRT differs from TFLite Micro is explained (docs/oracles.md). With these seeds that
is 0 inputs on vww, 1 on kws, 2 on resnet and 99 of 100 on ad01."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conftest import mlperf_path
from oracle_runners import LiteRTRunner, TflmRunner
from edgekit.converters.tflite_reader import load_tflite
from edgekit.interpreter import Interpreter

INPUTS_PER_MODEL = 100
MODELS = ("vww", "kws", "resnet", "ad01")


def _random_inputs(graph, seed: int, count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    x = graph[graph.inputs[0]]
    return [rng.integers(-128, 128, size=x.shape, dtype=np.int8) for _ in range(count)]


def _single_rounding_fc(interp: Interpreter) -> Interpreter:
    """The same prepared graph with FULLY_CONNECTED switched to single rounding."""
    interp.prepared = [dataclasses.replace(p, rounding="single") if p.kind == "FULLY_CONNECTED"
                       else p for p in interp.prepared]
    return interp


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_bit_exact_with_tflite_micro(model):
    path = mlperf_path(model)
    graph = load_tflite(path)
    ours, tflm = Interpreter(graph), TflmRunner(path)
    inputs = _random_inputs(graph, seed=MODELS.index(model),
                            count=INPUTS_PER_MODEL)
    equal = 0
    for i, x in enumerate(inputs):
        expected, got = tflm([x])[0], ours.run([x])[0]
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert got.tobytes() == expected.tobytes(), f"{model} input {i}"
        equal += 1
    assert equal == INPUTS_PER_MODEL


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_litert_reference_differs_only_by_single_rounding_in_fc(model):
    path = mlperf_path(model)
    graph = load_tflite(path)
    ours = Interpreter(graph)
    single = _single_rounding_fc(Interpreter(graph))
    litert = LiteRTRunner(path, reference=True)
    differing_bytes = differing_inputs = 0
    for i, x in enumerate(_random_inputs(graph, seed=20 + MODELS.index(model),
                                         count=INPUTS_PER_MODEL)):
        expected = litert([x])[0]
        double_out, single_out = ours.run([x])[0], single.run([x])[0]
        # the single-rounding reproduction matches LiteRT byte for byte ...
        assert single_out.tobytes() == expected.tobytes(), f"{model} input {i}"
        # ... so the bytes where TFLite Micro's arithmetic differs from LiteRT are exactly the
        # bytes where double and single rounding disagree
        diff = np.flatnonzero(double_out != expected)
        assert np.array_equal(diff, np.flatnonzero(double_out != single_out))
        differing_bytes += diff.size
        differing_inputs += bool(diff.size)
    print(f"{model}: LiteRT reference differs from TFLite Micro arithmetic on {differing_inputs}"
          f" of {INPUTS_PER_MODEL} inputs, {differing_bytes} bytes")
    if model == "ad01":  # the difference is real there, not vacuous: most inputs show it
        assert differing_inputs > INPUTS_PER_MODEL // 2


@pytest.mark.parametrize("model", ("kws", "resnet"))
def test_intermediates_match_litert_layer_by_layer(model):
    """``intermediates=True`` returns every activation tensor; each layer before the first
    FULLY_CONNECTED equals LiteRT's preserved tensor of the same name (the FC and what follows
    may differ by the rounding of docs/oracles.md)."""
    path = mlperf_path(model)
    graph = load_tflite(path)
    x = _random_inputs(graph, seed=40, count=1)[0]
    outputs, tensors = Interpreter(graph).run([x], intermediates=True)
    assert set(tensors) == {t.name for t in graph.activations()}
    assert outputs[0] is tensors[graph.outputs[0]]
    litert = LiteRTRunner(path, reference=True, keep_all_tensors=True)
    litert([x])
    compared = 0
    for op in graph.ops:
        if op.kind == "FULLY_CONNECTED":
            break
        name = op.outputs[0]
        expected = litert.tensor(name)
        assert tensors[name].tobytes() == expected.tobytes(), f"{model}: {op.kind} {name}"
        compared += 1
    assert compared >= 10
