"""Fused row-wise attention (`edgekit.attention`): the rewrite matches BATCH_MATMUL(adj_y) ->
SOFTMAX -> BATCH_MATMUL and nothing else, the fused op is bit-exact with the unfused int8 graph
in the reference interpreter and in C (host gcc, ASan + UBSan), and the plan drops the
``[H, T, T]`` scores: at 196 tokens and 4 heads the arena shrinks by more than 140,000 B."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import transformer_builders as tb
from edgekit.attention import attention_matches, fuse_attention
from edgekit.firmware.codegen import firmware_plan, generate
from edgekit.interpreter import Interpreter
from edgekit.ir import DType, Graph, Op, Quantization, Tensor

SPEC = dict(in_channels=1, num_classes=10, embed_dim=32, depth=1, heads=4, mlp_ratio=2.0,
            rank_ratio=0.5)


def _mcuformer(resolution: int, patch: int, depth: int = 1, seed: int = 0) -> Graph:
    from edgekit.nas.mcuformer import MCUFormerSpec
    from edgekit.nas.mcuformer_ir import int8_graph
    from edgekit.nas.mcuformer_torch import to_torch

    spec = MCUFormerSpec(resolution=resolution, patch=patch, **{**SPEC, "depth": depth})
    calib = np.random.default_rng(seed).uniform(0, 255, (8, 28, 28, 1)).astype(np.float32)
    return int8_graph(to_torch(spec, seed=seed).eval(), spec, calib)


def masked_attention(rng, *, heads: int = 2, tokens: int = 6, head_dim: int = 8) -> Graph:
    """`tb.attention` with a key-padding mask: ADD(scores, mask [1, 1, 1, T]) before SOFTMAX,
    the mask a graph input (0 for a kept key, a large negative bias for a padded one)."""
    g = tb.attention(rng, heads=heads, tokens=tokens, head_dim=head_dim)
    s = g["s"]
    mask = Tensor("mask", (1, 1, 1, tokens), DType.INT8, Quantization.per_tensor(
        float(np.float32(s.quant.scale[0] * 2)), 127))
    spread = float(np.float32(s.quant.scale[0] * 1.5))  # room for scores minus the bias
    m = Tensor("m", s.shape, DType.INT8, Quantization.per_tensor(spread, 40))
    ops = [g.ops[0], Op("ADD", ["s", "mask"], ["m"], {"activation": "NONE"}, name="m"),
           Op("SOFTMAX", ["m"], ["p"], {"beta": 1.0}, name="p"), g.ops[2]]
    return Graph([*g.tensors.values(), mask, m], ops, ["q", "k", "v", "mask"], ["y"],
                 name="masked_attention")


def _mask_input(rng, tokens: int) -> np.ndarray:
    keep = rng.integers(1, tokens + 1)  # at least one key kept
    mask = np.full((1, 1, 1, tokens), 127, np.int8)  # zero point: a bias of 0
    mask[..., keep:] = -128  # padded keys: the most negative bias
    return mask


def _masked_inputs(rng, g: Graph) -> list[np.ndarray]:
    x = tb.graph_inputs(rng, g)
    x[g.inputs.index("mask")] = _mask_input(rng, g["mask"].shape[-1])
    return x


def test_the_rewrite_replaces_the_three_ops_and_drops_the_scores():
    g = tb.attention(np.random.default_rng(0), heads=2, tokens=6)
    f = fuse_attention(g)
    assert [op.kind for op in f.ops] == ["ATTENTION"]
    assert f.ops[0].inputs == ["q", "k", "v"] and f.ops[0].outputs == ["y"]
    assert "s" not in f.tensors and "p" not in f.tensors
    assert f.ops[0].attrs["probs_zero_point"] == -128
    assert fuse_attention(f) is f  # nothing left to fuse


def test_the_rewrite_leaves_attention_whose_scores_are_read_elsewhere():
    g = tb.attention(np.random.default_rng(0))
    exposed = Graph(g.tensors.values(), g.ops, g.inputs, ["y", "p"], name="exposed")
    assert attention_matches(exposed) == [] and fuse_attention(exposed) is exposed
    # q k (no transpose) is still a valid matmul here (square heads), but not attention's
    square = tb.attention(np.random.default_rng(0), tokens=8, head_dim=8)
    ops = [Op(o.kind, o.inputs, o.outputs, {**o.attrs, "adj_y": False}
              if o.name == "s" else o.attrs, name=o.name) for o in square.ops]
    plain = Graph(square.tensors.values(), ops, square.inputs, square.outputs)
    assert attention_matches(plain) == []


def test_a_mask_add_is_fused_and_drops_the_masked_scores():
    g = masked_attention(np.random.default_rng(0))
    f = fuse_attention(g)
    assert [op.kind for op in f.ops] == ["ATTENTION"]
    assert f.ops[0].inputs == ["q", "k", "v", "mask"] and "m" not in f.tensors
    # a bias of another shape (one per query row) is not a key-padding mask: left alone
    wide = Tensor("mask", g["s"].shape, DType.INT8, g["mask"].quant)
    other = Graph([*(t for t in g.tensors.values() if t.name != "mask"), wide], g.ops,
                  g.inputs, g.outputs)
    assert attention_matches(other) == []


@pytest.mark.parametrize("heads,tokens,head_dim", [(2, 6, 8), (4, 13, 5)])
def test_masked_fused_is_bit_exact_and_ignores_padded_keys(heads, tokens, head_dim):
    rng = np.random.default_rng(heads * tokens + 1)
    g = masked_attention(rng, heads=heads, tokens=tokens, head_dim=head_dim)
    fused, unfused = Interpreter(fuse_attention(g)), Interpreter(g)
    for _ in range(5):
        x = _masked_inputs(rng, g)
        (a,), (b,) = fused.run(x), unfused.run(x)
        assert a.tobytes() == b.tobytes()
    # the padded keys' values do not reach the output (their probabilities are 0)
    x = _masked_inputs(rng, g)
    x[3][..., 1:] = -128
    x[3][..., 0] = 127
    y = x.copy()
    y[2] = x[2].copy()
    y[2][..., 1:, :] = rng.integers(-128, 128, size=y[2][..., 1:, :].shape)
    assert fused.run(x)[0].tobytes() == fused.run(y)[0].tobytes()


@pytest.mark.parametrize("heads,tokens,head_dim", [(2, 6, 8), (4, 13, 5)])
def test_fused_is_bit_exact_with_unfused_in_the_interpreter(heads, tokens, head_dim):
    rng = np.random.default_rng(heads * tokens)
    g = tb.attention(rng, heads=heads, tokens=tokens, head_dim=head_dim)
    fused, unfused = Interpreter(fuse_attention(g)), Interpreter(g)
    for _ in range(5):
        x = tb.graph_inputs(rng, g)
        (a,), (b,) = fused.run(x), unfused.run(x)
        assert a.tobytes() == b.tobytes()
        assert len(set(a.ravel().tolist())) > 8  # not a collapsed output


def test_fused_mcuformer_is_bit_exact_op_by_op():
    g = _mcuformer(28, 7, depth=2)
    f = fuse_attention(g)
    assert sum(op.kind == "ATTENTION" for op in f.ops) == 2
    assert len(f.ops) == len(g.ops) - 4
    rng = np.random.default_rng(1)
    for _ in range(3):
        x = rng.integers(-128, 128, size=g[g.inputs[0]].shape).astype(np.int8)
        (ya,), a = Interpreter(f).run([x], intermediates=True)
        (yb,), b = Interpreter(g).run([x], intermediates=True)
        assert ya.tobytes() == yb.tobytes()
        for name in a:  # every tensor the fused graph still has, attention outputs included
            assert a[name].tobytes() == b[name].tobytes(), name


def test_the_plan_of_196_tokens_4_heads_drops_the_scores():
    from edgekit.nas.mcuformer import MCUFormerSpec
    from edgekit.nas.mcuformer_ir import spec_int8_graph

    g = spec_int8_graph(MCUFormerSpec(resolution=56, patch=4, **SPEC))
    f = fuse_attention(g)
    unfused, fused = firmware_plan(g), firmware_plan(f)
    scores = 4 * 196 * 196
    assert max(t.nbytes for t in g.activations()) == scores
    assert max(t.nbytes for t in f.activations()) < scores // 4
    assert unfused.arena_bytes - fused.arena_bytes >= 140_000
    att = next(i for i, op in enumerate(f.ops) if op.kind == "ATTENTION")
    assert fused.scratch[att].size == 196  # one row of scores, one head at a time
    # the live-memory profile: the unfused peak is at the scores, the fused one far below
    peak = {p.kind: p.live_bytes + p.scratch_bytes for p in fused.profile}
    assert max(p.live_bytes for p in unfused.profile) >= scores
    assert peak["ATTENTION"] < scores // 4


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no host gcc")
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("heads,tokens,head_dim", [(2, 6, 8), (4, 13, 5)])
def test_fused_attention_in_c_is_bit_exact_with_the_unfused_graph(heads, tokens, head_dim, masked,
                                                                  kernel_objects, tmp_path):
    from edgekit.firmware.host_run import run_on_host

    rng = np.random.default_rng(heads + tokens)
    build = masked_attention if masked else tb.attention
    g = build(rng, heads=heads, tokens=tokens, head_dim=head_dim)
    inputs = _masked_inputs(rng, g) if masked else tb.graph_inputs(rng, g)
    gen = generate(fuse_attention(g), test_inputs=inputs)
    assert gen.kernels == ["ek_attention_s8"]
    assert "ek_attention_s8(" in gen.files["model.c"]
    run = run_on_host(gen, tmp_path, defines=("EDGEKIT_PORTABLE_KERNELS",),
                      kernel_objects=kernel_objects["portable"])
    (expected,) = Interpreter(g).run(inputs)
    assert run.outputs == [expected.tobytes()] == gen.expected_outputs


def test_masked_attention_tflite_is_tflm_exact_and_the_fused_op_matches_it():
    """The unfused masked graph is what the .tflite carries (ADD of a broadcast bias row before
    SOFTMAX, TFLite builtins): TFLite Micro runs it, and the fused op gives its bytes."""
    from oracle_runners import TflmRunner
    from edgekit.converters.tflite_writer import to_bytes

    rng = np.random.default_rng(7)
    g = masked_attention(rng, heads=2, tokens=9, head_dim=6)
    tflm, fused = TflmRunner(to_bytes(g)), Interpreter(fuse_attention(g))
    for _ in range(4):
        x = _masked_inputs(rng, g)
        (want,) = tflm(x)
        assert fused.run(x)[0].tobytes() == np.asarray(want).tobytes()


def test_edgekit_plan_fuses_by_default_and_no_fuse_attention_keeps_the_scores(tmp_path, capsys):
    import json

    from edgekit.cli import main
    from edgekit.converters.tflite_writer import to_bytes

    path = tmp_path / "vit.tflite"
    path.write_bytes(to_bytes(_mcuformer(28, 4)))  # 49 tokens, 4 heads: scores of 9,604 B
    figures = {}
    for flag in ([], ["--no-fuse-attention"]):
        assert main(["plan", str(path), "--json", *flag]) == 0
        figures[bool(flag)] = json.loads(capsys.readouterr().out)
    fused, unfused = figures[False], figures[True]
    assert (fused["fused_attention"], unfused["fused_attention"]) == (1, 0)
    assert "ATTENTION" in {row["kind"] for row in fused["profile"]}
    scores = 4 * 49 * 49
    assert max(b["size"] for b in unfused["buffers"]) >= scores
    assert max(b["size"] for b in fused["buffers"]) < scores // 2
    assert fused["arena_bytes"] < unfused["arena_bytes"] - scores // 2
