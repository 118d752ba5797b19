"""The memory plan of one MCUFormer attention block at small sizes, computed by hand: the peak
bytes step by step, which tensors share memory, and the no-overlap check. The planner only reads
shapes, dtypes and attributes, so the graph needs no reference kernel for the new kinds."""

from __future__ import annotations

import numpy as np
import pytest

import graph_builders as gb
from transformer_builders import _bmm_out_quant
from edgekit.ir import DType, Graph, Op, Quantization, Tensor
from edgekit.planner import plan, scratch_bytes

T, D, H = 16, 8, 2  # tokens, model dim, heads
DH = D // H
TOKENS = T * D  # bytes of one [1, T, D] int8 tensor: 128
SCORES = H * T * T  # bytes of the attention scores [1, H, T, T]: 512
FC_SCRATCH = 2 * D  # two tokens of the in-place FC's input: 16


def _fc(rng, tensors, ops, x: Tensor, name: str) -> Tensor:
    w = gb.weights_tensor(rng, f"{name}_w", (D, D), 0)
    w.quant = Quantization(w.quant.scale[:1], np.array([0]))  # per-tensor, as MCUFormer's
    b = gb.bias_tensor(rng, f"{name}_b", x, w, D)
    y = gb.activation_tensor(rng, name, (1, T, D))
    tensors += [w, b, y]
    ops.append(Op("FULLY_CONNECTED", [x.name, w.name, b.name], [name],
                  {"activation": "NONE", "keep_num_dims": True}, name=name))
    return y


def _act(rng, tensors, name, shape, quant=None) -> Tensor:
    t = gb.activation_tensor(rng, name, shape, quant=quant)
    tensors.append(t)
    return t


def attention_block(seed: int = 0, norm: bool = True) -> Graph:
    """x[1,T,D] -> LAYER_NORM -> FC q, k, v -> RESHAPE [1,T,H,dh] -> TRANSPOSE [1,H,T,dh] ->
    BATCH_MATMUL(q, k, adj_y) [1,H,T,T] -> SOFTMAX -> BATCH_MATMUL(p, v) [1,H,T,dh] ->
    TRANSPOSE [1,T,H,dh] -> RESHAPE [1,T,D] -> FC proj -> ADD(x, proj). ``norm=False``
    leaves out the LAYER_NORM (the FCs read x)."""
    rng = np.random.default_rng(seed)
    x = gb.activation_tensor(rng, "x", (1, T, D))
    # gamma and beta stay float32 constants, as the quantizer leaves them (flash, not planned)
    gamma = Tensor("ln_gamma", (D,), DType.FLOAT32, None,
                   rng.uniform(0.5, 1.5, size=D).astype(np.float32))
    beta = Tensor("ln_beta", (D,), DType.FLOAT32, None,
                  rng.uniform(-0.1, 0.1, size=D).astype(np.float32))
    tensors, ops = [x], []
    ln = x
    if norm:
        tensors += [gamma, beta]
        ln = _act(rng, tensors, "ln", (1, T, D))
        ops.append(Op("LAYER_NORM", ["x", "ln_gamma", "ln_beta"], ["ln"], {"epsilon": 1e-5},
                      name="ln"))
    heads = {}
    for name in ("q", "k", "v"):
        y = _fc(rng, tensors, ops, ln, name)
        r = _act(rng, tensors, f"{name}4", (1, T, H, DH), y.quant)
        ops.append(Op("RESHAPE", [y.name], [r.name], {}, name=r.name))
        heads[name] = r
    for name in ("q", "k", "v"):
        t = _act(rng, tensors, f"{name}t", (1, H, T, DH), heads[name].quant)
        ops.append(Op("TRANSPOSE", [heads[name].name], [t.name], {"perm": (0, 2, 1, 3)},
                      name=t.name))
    _act(rng, tensors, "s", (1, H, T, T), _bmm_out_quant(rng, tensors[-3], tensors[-2], DH))
    ops.append(Op("BATCH_MATMUL", ["qt", "kt"], ["s"], {"adj_x": False, "adj_y": True},
                  name="s"))
    _act(rng, tensors, "p", (1, H, T, T), Quantization.per_tensor(1 / 256, -128))
    ops.append(Op("SOFTMAX", ["s"], ["p"], {"beta": 1.0}, name="p"))
    o = _act(rng, tensors, "o", (1, H, T, DH), _bmm_out_quant(rng, tensors[-1], heads["v"], T))
    ops.append(Op("BATCH_MATMUL", ["p", "vt"], ["o"], {"adj_x": False, "adj_y": False},
                  name="o"))
    _act(rng, tensors, "ot", (1, T, H, DH), o.quant)
    ops.append(Op("TRANSPOSE", ["o"], ["ot"], {"perm": (0, 2, 1, 3)}, name="ot"))
    o2 = _act(rng, tensors, "o2", (1, T, D), o.quant)
    ops.append(Op("RESHAPE", ["ot"], ["o2"], {}, name="o2"))
    _fc(rng, tensors, ops, o2, "proj")
    _act(rng, tensors, "y", (1, T, D))
    ops.append(Op("ADD", ["x", "proj"], ["y"], {"activation": "NONE"}, name="y"))
    return Graph(tensors, ops, ["x"], ["y"], name="attention_block")


# Live bytes (tensors + scratch) at each step in the graph's order, by hand (alignment 4 changes
# nothing: every size is a multiple of 4). x lives throughout (the residual ADD reads it).
IN_PLACE_PROFILE = [
    2 * TOKENS,                   # 0 LAYER_NORM: x, ln (x is still needed: not in place)
    3 * TOKENS,                   # 1 FC q: x, ln, q (ln is read again: not in place)
    3 * TOKENS,                   # 2 RESHAPE q view: x, ln, q=q4
    4 * TOKENS,                   # 3 FC k: x, ln, q4, k
    4 * TOKENS,                   # 4 RESHAPE k view
    4 * TOKENS + FC_SCRATCH,      # 5 FC v over ln (ln dies): x, ln=v, q4, k4 + scratch
    4 * TOKENS,                   # 6 RESHAPE v view
    5 * TOKENS,                   # 7 TRANSPOSE q: x, q4, k4, v4, qt (never in place)
    5 * TOKENS,                   # 8 TRANSPOSE k: x, k4, v4, qt, kt
    5 * TOKENS,                   # 9 TRANSPOSE v: x, v4, qt, kt, vt
    4 * TOKENS + SCORES,          # 10 BATCH_MATMUL q k^T: x, qt, kt, vt, s  <- the peak
    2 * TOKENS + SCORES,          # 11 SOFTMAX over s (rows in place): x, vt, s=p
    3 * TOKENS + SCORES,          # 12 BATCH_MATMUL p v: x, p, vt, o
    3 * TOKENS,                   # 13 TRANSPOSE o: x, o, ot
    2 * TOKENS,                   # 14 RESHAPE view: x, ot=o2
    2 * TOKENS + FC_SCRATCH,      # 15 FC proj over o2: x, o2=proj + scratch
    2 * TOKENS,                   # 16 ADD over x (or proj): x, proj -> y
]

LAYER_BY_LAYER_PROFILE = [
    2 * TOKENS, 3 * TOKENS,
    4 * TOKENS,                   # 2 RESHAPE q copy: x, ln, q, q4
    4 * TOKENS,                   # 3 FC k: x, ln, q4, k
    5 * TOKENS,                   # 4 RESHAPE k copy: x, ln, q4, k, k4
    5 * TOKENS,                   # 5 FC v: x, ln, q4, k4, v
    5 * TOKENS,                   # 6 RESHAPE v copy: x, q4, k4, v, v4
    5 * TOKENS, 5 * TOKENS, 5 * TOKENS,  # 7-9 TRANSPOSE
    4 * TOKENS + SCORES,          # 10 BATCH_MATMUL q k^T
    2 * TOKENS + 2 * SCORES,      # 11 SOFTMAX: x, vt, s, p  <- the peak
    3 * TOKENS + SCORES,          # 12
    3 * TOKENS, 3 * TOKENS, 3 * TOKENS, 3 * TOKENS,  # 13-16: x + input + output
]


def test_hand_computed_attention_plan():
    g = attention_block()
    p = plan(g, alignment=4, reorder=False)
    p.check()  # no two live buffers overlap
    assert [m.live_bytes for m in p.profile] == IN_PLACE_PROFILE
    assert p.lower_bound_bytes == p.arena_bytes == 4 * TOKENS + SCORES == 1024

    aliases = {name: (b.alias_of, b.inplace_mode) for name, b in p.buffers.items()
               if b.alias_of is not None}
    assert {k: v for k, v in aliases.items() if k != "y"} == {
        "v": ("ln", "pointwise_inplace"),      # token-level FC over the dying LAYER_NORM output
        "q4": ("q", "reshape_view"), "k4": ("k", "reshape_view"), "v4": ("v", "reshape_view"),
        "p": ("s", "elementwise"),             # SOFTMAX rows over the scores
        "o2": ("ot", "reshape_view"),
        "proj": ("o2", "pointwise_inplace"),
    }
    assert aliases["y"] in (("x", "elementwise"), ("proj", "elementwise"))
    # TRANSPOSE and BATCH_MATMUL never share memory with an input
    for name in ("qt", "kt", "vt", "s", "o", "ot"):
        assert p.buffers[name].alias_of is None, name
    for index, o in enumerate(g.ops):
        expected = FC_SCRATCH if o.outputs[0] in ("v", "proj") else 0
        assert (p.scratch[index].size if index in p.scratch else 0) == expected, o.name
        assert scratch_bytes(o, g) == 0  # no new kind needs out-of-place scratch


def test_attention_layer_by_layer_versus_in_place():
    g = attention_block()
    layer = plan(g, alignment=4, reorder=False, inplace=False)
    layer.check()
    assert [m.live_bytes for m in layer.profile] == LAYER_BY_LAYER_PROFILE
    assert layer.arena_bytes == 2 * TOKENS + 2 * SCORES == 1280
    # Reordering cannot lower either peak: at BATCH_MATMUL q k^T, x, qt, kt, s and one of
    # ln / v / v4 / vt (v is still to come) are live, 4*128 + 512; out of place the SOFTMAX
    # step holds x, s, p and ln or vt in the same way.
    for inplace, peak in ((True, 1024), (False, 1280)):
        best = plan(g, alignment=4, inplace=inplace)
        best.check()
        assert best.lower_bound_bytes == best.arena_bytes == peak


@pytest.mark.parametrize("kind", ["LAYER_NORM", "RMS_NORM", "GELU", "SILU", "SOFTMAX"])
def test_row_and_lut_ops_run_in_place_over_a_dying_input(kind):
    rng = np.random.default_rng(0)
    x = gb.activation_tensor(rng, "x", (1, T, D))
    h = gb.activation_tensor(rng, "h", (1, T, D))
    y = gb.activation_tensor(rng, "y", (1, T, D))
    tensors, inputs = [x, h, y], ["h"]
    if kind in ("LAYER_NORM", "RMS_NORM"):
        tensors.append(Tensor("gamma", (D,), DType.FLOAT32, None, np.ones(D, np.float32)))
        inputs.append("gamma")
    if kind == "LAYER_NORM":
        tensors.append(Tensor("beta", (D,), DType.FLOAT32, None, np.zeros(D, np.float32)))
        inputs.append("beta")
    ops = [Op("RELU", ["x"], ["h"], {}, name="h"), Op(kind, inputs, ["y"], {}, name="y")]
    g = Graph(tensors, ops, ["x"], ["y"], name=kind.lower())
    p = plan(g, alignment=4)
    p.check()
    assert (p.buffers["y"].alias_of, p.buffers["y"].inplace_mode) == ("h", "elementwise")
    # an int8 -> int16 variant would not share bytes element for element
    y.dtype = DType.INT16
    p16 = plan(g, alignment=4)
    assert p16.buffers["y"].alias_of is None


def test_attention_block_runs_bit_exact_inside_its_arena():
    """The in-place plan executed in one byte arena (the FCs token by token over their dying
    input, checking every token is intact when read; scratch overwritten with noise) gives the
    reference interpreter's output: no live byte is clobbered."""
    from edgekit.interpreter import Interpreter
    from test_planner_arena import run_in_arena

    g = attention_block(seed=4)
    p = plan(g, alignment=4)
    assert p.buffers["v"].inplace_mode == "pointwise_inplace"
    rng = np.random.default_rng(4)
    for trial in range(2):
        x = [gb.random_input(rng, g["x"])]
        expected, values = Interpreter(g).run(x, intermediates=True)
        assert run_in_arena(p, x, values, seed=trial)[0].tobytes() == expected[0].tobytes()


@pytest.mark.skipif(__import__("shutil").which("gcc") is None, reason="no host gcc")
def test_attention_block_generated_in_place_is_bit_exact(tmp_path):
    """The whole block generated with the firmware's plan (FC v over the LAYER_NORM output,
    proj FC, SOFTMAX and ADD in place) and run on the host, portable and DSP paths, equals the
    reference interpreter byte for byte; so does the block without its LAYER_NORM."""
    from edgekit.firmware.codegen import firmware_plan, generate
    from edgekit.firmware.host_run import run_on_host
    from edgekit.interpreter import Interpreter

    for norm in (True, False):
        g = attention_block(seed=5, norm=norm)
        p = firmware_plan(g)
        assert (p.buffers["proj"].alias_of, p.buffers["proj"].inplace_mode) == (
            "o2", "pointwise_inplace")
        assert (p.buffers["p"].alias_of, p.buffers["p"].inplace_mode) == ("s", "elementwise")
        if norm:  # the last of q, k, v to run overwrites the LAYER_NORM output
            assert [b.name for b in p.buffers.values() if b.alias_of == "ln"] in (
                ["q"], ["k"], ["v"])
        rng = np.random.default_rng(5)
        x = [gb.random_input(rng, g["x"])]
        gen = generate(g, test_inputs=x)
        expected = [np.ascontiguousarray(o).tobytes() for o in Interpreter(g).run(x)]
        assert gen.expected_outputs == expected
        assert "ek_conv2d_s8_pointwise_inplace" in gen.kernels
        for path in ("EDGEKIT_PORTABLE_KERNELS", "EDGEKIT_EMULATE_DSP"):
            run = run_on_host(gen, tmp_path / f"{norm}-{path}", defines=(path,))
            assert run.outputs == expected, f"norm={norm} {path}"
