"""LAYER_NORM, RMS_NORM and SILU C kernels (firmware/c/kernels/ek_norm.c), compiled with the
host gcc (UBSan on), against the reference interpreter (`edgekit.reference.norm`) byte for
byte: many random shapes (C = 8..256, rows 1..64, plus C = 1 and up to the 4096 limit),
quantizations, epsilons (0 included: constant rows hit T == 0), gammas (negative, zero, tiny,
large), inputs (uniform, constant rows, realistic transformer rows, all min / all max), each run
out of place and in place (output pointer == input pointer, what the planner may assign)."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

import norm_cases as nc
from c_kernels import assert_no_undefined_behaviour, build_library, carray, fill_struct
from edgekit import reference
from edgekit.ir import Quantization

KINDS = ("LAYER_NORM", "RMS_NORM", "SILU")


@pytest.fixture(scope="module")
def lib():
    return build_library(["ek_norm.c"])


def _run(lib, graph, p, x: np.ndarray, in_place: bool) -> np.ndarray:
    (function, params, _, _), = nc.kernel_calls(graph, p, fill_struct)
    buf = np.ascontiguousarray(x.copy())
    out = buf if in_place else np.full(x.shape, 0x5A, dtype=np.int8)
    fn = getattr(lib, function)
    fn.restype = None
    fn(ctypes.byref(params), carray(buf), carray(out))
    assert_no_undefined_behaviour()
    return out


def _graph(rng, kind: str, rows: int, c: int):
    """Random constants; in a quarter of the cases the output scale is a power of two and
    beta / scale a half-integer, so a row's mean element (n = 0) lands exactly on a rounding
    tie of the final shift (ties away from zero: random scales almost never tie)."""
    roll = rng.random()
    gamma = beta = y_quant = None
    if kind != "SILU" and roll < 0.3:
        gamma = rng.normal(0, 1, c) * rng.choice([1e-6, 1e-2, 1.0, 30.0], size=c)
    elif roll < 0.55:
        scale = 2.0 ** -int(rng.integers(3, 8))
        y_quant = Quantization.per_tensor(scale, int(rng.integers(-20, 21)))
        beta = (rng.integers(-40, 40, size=c) + 0.5) * scale
    return nc.norm_graph(rng, kind, (rows, c), gamma=gamma, beta=beta, y_quant=y_quant)


def _inputs(rng, graph, variant: int) -> np.ndarray:
    shape = graph["x"].shape
    if variant == 0:
        return rng.integers(-128, 128, size=shape).astype(np.int8)
    if variant == 1:  # narrow rows around a random level: small variances, rounding matters
        centre = rng.integers(-120, 120, size=(shape[0], 1))
        return np.clip(centre + rng.integers(-3, 4, size=shape), -128, 127).astype(np.int8)
    if variant == 2:  # constant rows (T == 0 when epsilon is 0)
        return np.repeat(rng.integers(-128, 128, size=(shape[0], 1)), shape[1], 1).astype(np.int8)
    return np.full(shape, rng.choice([-128, 127]), np.int8)


@pytest.mark.parametrize("kind", KINDS)
def test_kernel_bit_exact_with_reference(lib, kind):
    rng = np.random.default_rng(sum(map(ord, kind)) * 31)
    compared = 0
    for case in range(120):
        rows = int(rng.integers(1, 65))
        c = int(rng.integers(8, 257)) if case % 10 else int(rng.choice([1, 2, 3, 1024, 4096]))
        if c > 256:
            rows = int(rng.integers(1, 4))
        graph = _graph(rng, kind, rows, c)
        p = reference.prepare(graph.ops[0], graph)
        for variant in range(4):
            x = _inputs(rng, graph, variant)
            want = reference.run_op(p, [x, None, None])
            for in_place in (False, True):
                got = _run(lib, graph, p, x, in_place)
                assert got.tobytes() == want.tobytes(), (
                    f"{kind} case {case} variant {variant} in_place={in_place} shape"
                    f" {x.shape}: first difference at"
                    f" {np.flatnonzero(got.reshape(-1) != want.reshape(-1))[:5]}; {p}")
                compared += 1
    assert compared == 120 * 4 * 2


@pytest.mark.parametrize("kind", ("LAYER_NORM", "RMS_NORM"))
def test_kernel_on_realistic_rows(lib, kind):
    """Transformer-like activations with calibrated quantization (the accuracy test's inputs)."""
    rng = np.random.default_rng(17 + len(kind))
    for c in (8, 32, 64, 128, 192, 256):
        graph, _, q = nc.realistic_norm(rng, kind, int(rng.integers(1, 65)), c)
        p = reference.prepare(graph.ops[0], graph)
        want = reference.run_op(p, [q, None, None])
        for in_place in (False, True):
            assert _run(lib, graph, p, q, in_place).tobytes() == want.tobytes(), (c, in_place)


def test_silu_on_every_input_value(lib):
    rng = np.random.default_rng(8)
    x = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)
    for _ in range(100):
        graph = nc.norm_graph(rng, "SILU", (1, 256))
        p = reference.prepare(graph.ops[0], graph)
        for in_place in (False, True):
            assert _run(lib, graph, p, x, in_place).tobytes() == p.table.tobytes()


@pytest.mark.parametrize("kind", KINDS)
def test_flash_estimate_counts_the_emitted_arrays(kind):
    """The estimate's constants (firmware and NAS code-size model) are the arrays the generator
    emits for these ops, not the float gamma/beta, which stay in the graph only."""
    from edgekit.firmware.codegen import generate
    from edgekit.firmware.estimate import _constants_bytes
    from edgekit.firmware.op_emitters import EMITTERS, EmitContext
    from edgekit.nas.codesize import graph_features
    graph = nc.norm_graph(np.random.default_rng(4), kind, (1, 3, 40))
    gen = generate(graph, test_inputs=[np.zeros((1, 3, 40), np.int8)])
    ctx = EmitContext(graph, graph.ops[0], lambda n: n, lambda s: s, None, None)
    call = EMITTERS[kind](ctx, reference.prepare(graph.ops[0], graph))
    sizes = {"int8_t": 1, "int32_t": 4, "int64_t": 8}
    emitted = sum(sizes[ctype] * np.asarray(v).size for ctype, _, v in call.arrays)
    assert _constants_bytes(gen) == emitted == graph_features(graph)["constants"]
    assert "const float" not in gen.files["model.c"]
