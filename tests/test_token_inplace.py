"""Token-level in-place updates (MCUFormer's token overwriting): a FULLY_CONNECTED over tokens,
x [1, T, K] -> [1, T, N], is a 1x1 convolution over T pixels and takes the pointwise in-place
modes (forward for N <= K, backward for N > K). The generated C runs it through the in-place
pointwise conv kernel; these tests check that it equals the reference interpreter's FC byte for
byte (portable and DSP paths), and that a token MLP shares its buffers."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import graph_builders as gb
from conftest import HOST_KERNEL_DEFINES as DEFINES
from edgekit.firmware.codegen import firmware_plan, generate
from edgekit.firmware.host_run import run_on_host
from edgekit.interpreter import Interpreter
from edgekit.ir import DType, Graph, Op, Quantization, Tensor
from edgekit.planner import plan, scratch_bytes
from edgekit.planner.inplace import inplace_candidates

from planner_graphs import act, graph, op

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="no host gcc")


def _fc(rng, name: str, x: Tensor, units: int, *, per_channel: bool = False, bias: bool = True,
        filter_zero_point: int = 0, activation: str = "NONE"):
    """FULLY_CONNECTED over tokens (keep_num_dims): x [1, T, K] -> [1, T, units]."""
    depth = x.shape[-1]
    w = gb.weights_tensor(rng, f"{name}_w", (units, depth), 0)
    if not per_channel:
        w.quant = Quantization(w.quant.scale[:1], np.array([filter_zero_point]))
    y = Tensor(name, (*x.shape[:-1], units), DType.INT8,
               gb._output_quant(rng, x, w, depth))
    tensors = [w, y]
    b_name = None
    if bias:
        tensors.append(gb.bias_tensor(rng, f"{name}_b", x, w, units))
        b_name = f"{name}_b"
    fc = Op("FULLY_CONNECTED", [x.name, w.name, b_name], [name],
            {"activation": activation, "keep_num_dims": True}, name=name)
    return tensors, fc, y


def token_fc_graph(rng, tokens: int, depth: int, units: int, **options) -> Graph:
    x = gb.activation_tensor(rng, "x", (1, tokens, depth))
    tensors, fc, _ = _fc(rng, "y", x, units, **options)
    return Graph([x, *tensors], [fc], ["x"], ["y"], name="token_fc")


def token_mlp_graph(rng, tokens: int, dim: int) -> Graph:
    """x -> FC dim->4dim -> FC 4dim->dim -> ADD(x, .): a transformer block's MLP with its
    residual."""
    x = gb.activation_tensor(rng, "x", (1, tokens, dim))
    t1, fc1, h = _fc(rng, "h", x, 4 * dim, activation="RELU")
    t2, fc2, m = _fc(rng, "m", h, dim)
    y = Tensor("y", x.shape, DType.INT8, gb.act_quant(rng))
    add = Op("ADD", ["x", "m"], ["y"], {"activation": "NONE"}, name="y")
    return Graph([x, *t1, *t2, y], [fc1, fc2, add], ["x"], ["y"], name="token_mlp")


# --- planner -------------------------------------------------------------------------------------

def test_token_fc_takes_the_pointwise_modes():
    def modes(k, n, **kw):
        g = token_fc_graph(np.random.default_rng(0), 5, k, n, **kw)
        return [m.name for m, _ in inplace_candidates(g.ops[0], g)]

    assert modes(16, 8) == ["pointwise_inplace"]
    assert modes(8, 8) == ["pointwise_inplace", "pointwise_inplace_backward"]
    assert modes(8, 32) == ["pointwise_inplace_backward"]
    g = token_fc_graph(np.random.default_rng(0), 5, 16, 8)
    assert scratch_bytes(g.ops[0], g, "pointwise_inplace") == 2 * 16  # two tokens of K bytes


def test_fc_without_weights_or_with_int4_weights_is_not_in_place():
    g = graph([act("a", 1, 4, 8), act("b", 1, 4, 8)],
              [op("FULLY_CONNECTED", ["a", None, None], ["b"])], ["a"], ["b"])
    assert inplace_candidates(g.ops[0], g) == []
    g4 = token_fc_graph(np.random.default_rng(0), 5, 16, 8)
    w = g4["y_w"]
    w.dtype, w.data = DType.INT4, np.clip(w.data, -8, 7)
    assert inplace_candidates(g4.ops[0], g4) == []


def test_token_mlp_shares_its_buffers():
    """T=6, D=8 (K -> 4K -> K), alignment 4: x 48, h 192, m 48, y 48 bytes.
    In place: h = FC1(x) cannot overwrite x (the residual reads it); FC2 overwrites h
    (pointwise_inplace, N=8 <= K=32, scratch 2*32 = 64); the ADD overwrites x or m.
    Peak: step 0 x + h = 240; step 1 x + h(=m) + scratch 64 = 304; step 2 x + m = 96.
    Out of place: step 1 x + h + m = 288 (no scratch); in place saves the 48-byte m but pays
    64 bytes of scratch, so the planner keeps FC2 out of place there; with T=12 it pays."""
    g = token_mlp_graph(np.random.default_rng(1), 6, 8)
    small = plan(g, alignment=4)
    assert small.buffers["m"].inplace_mode is None
    assert small.lower_bound_bytes == 288
    small.check()

    # T=12: x 96, h 384, m 96; in place at FC2: 96 + 384 + 64 = 544 < 96 + 384 + 96 = 576
    g = token_mlp_graph(np.random.default_rng(1), 12, 8)
    p = plan(g, alignment=4)
    p.check()
    assert p.buffers["m"].alias_of == "h"
    assert p.buffers["m"].inplace_mode == "pointwise_inplace"
    assert p.buffers["y"].alias_of in ("x", "m") and p.buffers["y"].inplace_mode == "elementwise"
    assert p.lower_bound_bytes == p.arena_bytes == 96 + 384 + 64
    layer = plan(g, alignment=4, inplace=False)
    assert layer.arena_bytes == 96 + 384 + 96


# --- generated C, bit-exact with the reference FC --------------------------------------------------


#: (id, tokens, K, N, options, the mode the FC must take)
FC_CASES = [
    ("narrowing", 7, 24, 10, {}, "pointwise_inplace"),
    ("square_nobias", 9, 16, 16, {"bias": False}, "pointwise_inplace"),
    ("widening", 6, 8, 21, {}, "pointwise_inplace_backward"),
    ("per_channel_relu", 5, 12, 40, {"per_channel": True, "activation": "RELU"},
     "pointwise_inplace_backward"),
    # a filter zero point takes the kernels' exact (non-DSP) accumulation
    ("filter_zero_point", 8, 20, 6, {"filter_zero_point": 3}, "pointwise_inplace"),
]


def _check_on_host(g: Graph, rng, kernel_objects, tmp_path, label: str):
    inputs = [gb.random_input(rng, g[name]) for name in g.inputs]
    gen = generate(g, test_inputs=inputs)
    expected = [np.ascontiguousarray(o).tobytes() for o in Interpreter(g).run(inputs)]
    assert gen.expected_outputs == expected
    for path, defines in DEFINES.items():
        run = run_on_host(gen, tmp_path / path, defines=defines,
                          kernel_objects=kernel_objects[path])
        assert run.outputs == expected, f"{label} ({path}) differs from the reference"
    return gen


@needs_gcc
@pytest.mark.parametrize("case", [c[0] for c in FC_CASES])
def test_token_fc_in_place_is_bit_exact(case, kernel_objects, tmp_path):
    _, tokens, depth, units, options, mode = next(c for c in FC_CASES if c[0] == case)
    for seed in (0, 1):
        rng = np.random.default_rng([seed, tokens, depth, units])
        g = token_fc_graph(rng, tokens, depth, units, **options)
        p = firmware_plan(g)
        assert p.buffers["y"].inplace_mode == mode and p.buffers["y"].alias_of == "x"
        gen = _check_on_host(g, rng, kernel_objects, tmp_path / f"{seed}", case)
        assert gen.kernels == [f"ek_conv2d_s8_{mode}"]


@needs_gcc
def test_token_mlp_in_place_is_bit_exact(kernel_objects, tmp_path):
    rng = np.random.default_rng(7)
    g = token_mlp_graph(rng, 12, 8)
    p = firmware_plan(g)
    assert p.buffers["m"].inplace_mode == "pointwise_inplace"
    gen = _check_on_host(g, rng, kernel_objects, tmp_path, "token mlp")
    assert "ek_conv2d_s8_pointwise_inplace" in gen.kernels


def test_token_mlp_runs_bit_exact_inside_its_arena():
    """The plan of the token MLP executed in one byte arena, FC2 writing token by token over h
    (checking each token of h is intact when read), equals the reference."""
    from test_planner_arena import run_in_arena

    rng = np.random.default_rng(3)
    g = token_mlp_graph(rng, 12, 8)
    p = plan(g, alignment=4)
    assert p.buffers["m"].inplace_mode == "pointwise_inplace"
    x = [gb.random_input(rng, g["x"])]
    expected, values = Interpreter(g).run(x, intermediates=True)
    assert run_in_arena(p, x, values)[0].tobytes() == expected[0].tobytes()


def test_one_row_fc_is_not_in_place():
    # a classifier head [1, K] -> [1, N]: its 2*K scratch never pays for the bytes it shares
    g = token_fc_graph(np.random.default_rng(0), 1, 16, 8)
    assert inplace_candidates(g.ops[0], g) == []


@needs_gcc
def test_softmax_rows_in_place_are_bit_exact(kernel_objects, tmp_path):
    """SOFTMAX over attention scores [1, H, T, T], in place (elementwise mode, row contract):
    ek_softmax_s8 reads a row's maximum and sum of exps before writing it."""
    rng = np.random.default_rng(11)
    g = gb.softmax(rng, shape=(1, 2, 7, 7))
    p = firmware_plan(g)
    assert p.buffers["y"].alias_of == "x" and p.buffers["y"].inplace_mode == "elementwise"
    for seed in range(3):
        _check_on_host(g, np.random.default_rng(seed), kernel_objects, tmp_path / f"{seed}",
                       "softmax in place")
