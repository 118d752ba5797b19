"""Transformer ops against TFLite Micro: each graph is written as a `.tflite` by our writer, run in
TFLite Micro's interpreter and in our reference interpreter on many random inputs, and the
output bytes must be equal.

Covered: BATCH_MATMUL (adj_x/adj_y, broadcast batch dimensions, rank 2 to 5), TRANSPOSE
(rank 2 to 5), GATHER (int8 table, int32 ids, axis 0 and 1), attention (``q k^T`` with adj_y ->
SOFTMAX over the last axis -> ``p v``), FULLY_CONNECTED over tokens with keep_num_dims, SOFTMAX
over the last axis of rank-3/4 tensors, the causal depthwise 1-D convolution (written as PAD +
VALID DEPTHWISE_CONV_2D), ADD with a constant operand, and a quantized float graph of them all.

GELU: the TFLite Micro we test against has no GELU kernel (it refuses the model: "Didn't find
op for builtin opcode 'GELU'"), so its oracle is LiteRT's reference kernels (BUILTIN_REF), which
build the same 256-entry table; every table entry is compared, over many quantizations.
"""

from __future__ import annotations

import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import graph_builders as gb  # noqa: E402
import transformer_builders as tb  # noqa: E402
from oracle_runners import LiteRTRunner, TflmRunner  # noqa: E402

from edgekit.converters.quantize import quantize  # noqa: E402
from edgekit.converters.tflite_reader import load_tflite_bytes  # noqa: E402
from edgekit.converters.tflite_writer import to_bytes  # noqa: E402
from edgekit.interpreter import Interpreter  # noqa: E402
from edgekit.ir import DType, Graph, Op, Quantization, Tensor  # noqa: E402

RANDOM_INPUTS = 25


def _inputs(rng, g: Graph, vocab: int | None = None) -> list[np.ndarray]:
    return [tb.random_indices(rng, g[n], vocab) if g[n].dtype == DType.INT32
            else gb.random_input(rng, g[n]) for n in g.inputs]


def _compare_with_tflm(g: Graph, rng, vocab: int | None = None, runs: int = RANDOM_INPUTS,
                       round_trip: bool = True) -> Graph:
    data = to_bytes(g)
    back = load_tflite_bytes(data)
    if round_trip:
        gb.assert_graphs_equal(g, back)
    tflm, ours, reread = TflmRunner(data), Interpreter(g), Interpreter(back)
    distinct = set()
    for _ in range(runs):
        xs = _inputs(rng, g, vocab)
        want = tflm(xs)[0]
        got = ours.run(xs)[0]
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.array_equal(got, want), np.argwhere(got != want)[:5]
        assert np.array_equal(reread.run(xs)[0], want)
        distinct.update(np.unique(got).tolist())
    assert len(distinct) > 8, "outputs collapsed: the comparison would prove little"
    return back


BMM_SHAPES = {
    "plain": dict(a_shape=(1, 2, 5, 8), b_shape=(1, 2, 8, 6)),
    "adj_x": dict(a_shape=(1, 2, 8, 5), b_shape=(1, 2, 8, 6), adj_x=True),
    "adj_y": dict(a_shape=(1, 2, 5, 8), b_shape=(1, 2, 6, 8), adj_y=True),
    "adj_xy": dict(a_shape=(2, 8, 5), b_shape=(2, 6, 8), adj_x=True, adj_y=True),
    "rank2": dict(a_shape=(7, 16), b_shape=(16, 3)),
    "broadcast": dict(a_shape=(3, 1, 5, 8), b_shape=(1, 4, 8, 6)),
    "broadcast_rank": dict(a_shape=(2, 3, 4, 9), b_shape=(9, 5)),
    "rank5": dict(a_shape=(2, 1, 3, 4, 6), b_shape=(1, 2, 1, 6, 5)),
    "long_k": dict(a_shape=(1, 1, 4, 200), b_shape=(1, 1, 200, 4)),
}


@pytest.mark.parametrize("case", sorted(BMM_SHAPES))
def test_batch_matmul_matches_tflm(case):
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    _compare_with_tflm(tb.batch_matmul(rng, **BMM_SHAPES[case]), rng)


TRANSPOSE_CASES = {
    "heads": ((1, 6, 2, 8), (0, 2, 1, 3)), "kt": ((1, 2, 6, 8), (0, 1, 3, 2)),
    "rank2": ((9, 5), (1, 0)), "rank3": ((2, 7, 5), (2, 0, 1)),
    "rank5": ((2, 3, 1, 4, 5), (4, 2, 0, 3, 1)),
}


@pytest.mark.parametrize("case", sorted(TRANSPOSE_CASES))
def test_transpose_matches_tflm(case):
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    shape, perm = TRANSPOSE_CASES[case]
    _compare_with_tflm(tb.transpose(rng, shape=shape, perm=perm), rng)


GATHER_CASES = {
    "tokens": ((50, 16), (1, 12), 0), "flat_ids": ((30, 8), (7,), 0),
    "rank3_table": ((20, 3, 4), (2, 5), 0), "axis1": ((4, 30), (1, 6), 1),
}


@pytest.mark.parametrize("case", sorted(GATHER_CASES))
def test_gather_matches_tflm(case):
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    params, idx, axis = GATHER_CASES[case]
    _compare_with_tflm(tb.gather(rng, params_shape=params, idx_shape=idx, axis=axis), rng,
                       vocab=params[axis])


@pytest.mark.parametrize("heads,tokens,head_dim", [(1, 8, 16), (2, 6, 8), (4, 10, 4),
                                                   (1, 32, 8)])
def test_attention_block_matches_tflm(heads, tokens, head_dim):
    rng = np.random.default_rng(heads * 100 + tokens * 10 + head_dim)
    _compare_with_tflm(tb.attention(rng, heads=heads, tokens=tokens, head_dim=head_dim), rng)


@pytest.mark.parametrize("tokens,k,n,per_channel", [(5, 12, 7, False), (16, 32, 8, False),
                                                    (3, 8, 4, True)])
def test_token_fully_connected_keep_num_dims_matches_tflm(tokens, k, n, per_channel):
    rng = np.random.default_rng(tokens * 31 + k)
    back = _compare_with_tflm(tb.token_fc(rng, tokens=tokens, in_features=k, units=n,
                                          per_channel=per_channel), rng)
    assert back.ops[0].attrs["keep_num_dims"] is True and back["y"].shape == (1, tokens, n)


@pytest.mark.parametrize("shape", [(1, 5, 9), (1, 2, 5, 7), (2, 3, 16), (1, 4, 8, 8)])
def test_softmax_last_axis_rank3_rank4_matches_tflm(shape):
    rng = np.random.default_rng(sum(shape))
    _compare_with_tflm(tb.softmax_rank(rng, shape=shape), rng)


@pytest.mark.parametrize("tokens,channels,kernel", [(9, 6, 3), (16, 8, 4), (5, 3, 5), (12, 4, 1)])
def test_causal_depthwise_conv_written_as_pad_then_valid(tokens, channels, kernel):
    rng = np.random.default_rng(tokens * 7 + kernel)
    g = tb.causal_depthwise(rng, tokens=tokens, channels=channels, kernel=kernel)
    # the file holds PAD + VALID (TFLite has no asymmetric pad); the reader folds them back
    _compare_with_tflm(g, rng, round_trip=True)
    from edgekit.converters.tflite_flatbuffer import decode
    written = [op.op_name for op in decode(to_bytes(g), "test").ops]
    assert written == (["PAD"] if kernel > 1 else []) + ["DEPTHWISE_CONV_2D"]


def _add_constant_graph(rng, shape=(1, 6, 8), const_shape=(1, 6, 8)) -> Graph:
    x = gb.activation_tensor(rng, "x", shape)
    pos = Tensor("pos", const_shape, DType.INT8, gb.act_quant(rng),
                 gb.random_values(rng, const_shape, DType.INT8))
    y = Tensor("y", shape, DType.INT8, gb.act_quant(rng))
    op = Op("ADD", ["x", "pos"], ["y"], {"activation": "NONE"}, name="y")
    return Graph([x, pos, y], [op], ["x"], ["y"], name="add_const")


@pytest.mark.parametrize("const_shape", [(1, 6, 8), (6, 8), (1, 1, 8)])
def test_add_with_constant_operand_matches_tflm(const_shape):
    rng = np.random.default_rng(len(const_shape))
    _compare_with_tflm(_add_constant_graph(rng, const_shape=const_shape), rng)


def test_gelu_lookup_table_matches_litert_reference():
    rng = np.random.default_rng(11)
    x = np.arange(-128, 128, dtype=np.int8).reshape(1, 2, 128)
    for approximate in (False, True):
        for _ in range(40):
            g = tb.gelu(rng, shape=(1, 2, 128), approximate=approximate)
            data = to_bytes(g)
            back = load_tflite_bytes(data)
            gb.assert_graphs_equal(g, back)
            want = LiteRTRunner(data)([x])[0]
            assert np.array_equal(Interpreter(back).run([x])[0], want), (approximate, g["x"].quant,
                                                                          g["y"].quant)
            assert np.unique(want).size > 20


def test_tflm_has_no_gelu_kernel():
    """Why GELU's oracle is LiteRT: if this starts failing, compare GELU with TFLite Micro."""
    g = tb.gelu(np.random.default_rng(0))
    with pytest.raises(RuntimeError):
        TflmRunner(to_bytes(g))


def test_quantized_float_attention_model_matches_tflm():
    """PTQ of a float graph with GATHER (int32 ids), a constant ADD operand, TRANSPOSE,
    BATCH_MATMUL and SOFTMAX gives a model TFLite Micro runs byte for byte like us."""
    rng = np.random.default_rng(5)
    fg = tb.float_attention_model(rng)
    calib = rng.integers(0, 40, size=(16, 8)).astype(np.int32)
    qg = quantize(fg, calib)
    assert qg["ids"].dtype == DType.INT32 and qg["ids"].quant is None
    assert qg["table"].dtype == DType.INT8 and qg["table"].quant == qg["emb"].quant
    assert qg["pos"].dtype == DType.INT8 and not qg["pos"].quant.per_channel
    assert qg["qh"].quant == qg["q"].quant  # TRANSPOSE keeps its input's quantization
    assert qg["p"].quant == Quantization.per_tensor(1 / 256, -128)
    back = _compare_with_tflm(qg, rng, vocab=40)
    assert [op.kind for op in back.ops] == [op.kind for op in qg.ops]


def test_batch_matmul_macs():
    from edgekit.costs import graph_macs
    g = tb.attention(np.random.default_rng(0), heads=2, tokens=6, head_dim=8)
    assert graph_macs(g) == 2 * (2 * 6 * 6 * 8)  # q k^T and p v: H * T * T * dh each
    adj = tb.batch_matmul(np.random.default_rng(0), a_shape=(1, 8, 5), b_shape=(1, 8, 6),
                          adj_x=True)
    assert graph_macs(adj) == 5 * 6 * 8


def test_quantized_constant_add_and_mul_operands_match_tflm():
    """Before: quantize refused a constant read by ADD/MUL. Now the constant is int8 per
    tensor over its own range, and the model runs in TFLite Micro byte for byte like us."""
    rng = np.random.default_rng(21)
    fg = tb.float_constant_operands(rng)
    qg = quantize(fg, rng.normal(0, 1, size=(32, 6, 8)).astype(np.float32))
    for name in ("gain", "pos"):
        t, real = qg[name], fg[name].data
        assert t.dtype == DType.INT8 and t.is_constant and not t.quant.per_channel
        scale = float(t.quant.scale[0])
        back = scale * (t.data.astype(np.float64) - t.quant.zero_point[0])
        assert np.abs(back - real).max() <= scale / 2 + 1e-7  # every value on the int8 grid
        assert scale <= (max(real.max(), 0) - min(real.min(), 0)) / 255 * 1.0001  # from its range
    _compare_with_tflm(qg, rng)
