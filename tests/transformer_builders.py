"""Random int8 graphs of the TFLite-builtin transformer ops (BATCH_MATMUL, TRANSPOSE, GATHER,
GELU), an attention block, token-wise FULLY_CONNECTED, and the causal depthwise 1-D
convolution, with quantization TFLite accepts (float32-exact scales, like `graph_builders`)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

import graph_builders as gb
from edgekit.ir import DType, Graph, Op, Quantization, Tensor


def _bmm_out_quant(rng, a: Tensor, b: Tensor, depth: int) -> Quantization:
    # uniform int8 operands: the accumulator's spread is about sa * sb * 74^2 * sqrt(K)
    spread = a.quant.scale[0] * b.quant.scale[0] * 74.0 ** 2 * np.sqrt(depth)
    scale = gb.f32(spread / rng.uniform(20, 50))
    return Quantization(scale.reshape(1), np.array([int(rng.integers(-10, 11))]))


def batch_matmul(rng: np.random.Generator, *, a_shape=(1, 2, 5, 8), b_shape=(1, 2, 8, 6),
                 adj_x: bool = False, adj_y: bool = False) -> Graph:
    """``y = a @ b`` over broadcast batch dims (both operands are graph inputs)."""
    a = gb.activation_tensor(rng, "a", a_shape)
    b = gb.activation_tensor(rng, "b", b_shape)
    m = a_shape[-1] if adj_x else a_shape[-2]
    k = a_shape[-2] if adj_x else a_shape[-1]
    n = b_shape[-2] if adj_y else b_shape[-1]
    batch = tuple(np.broadcast_shapes(a_shape[:-2], b_shape[:-2]))
    y = Tensor("y", batch + (m, n), DType.INT8, _bmm_out_quant(rng, a, b, k))
    op = Op("BATCH_MATMUL", ["a", "b"], ["y"], {"adj_x": adj_x, "adj_y": adj_y}, name="y")
    return Graph([a, b, y], [op], ["a", "b"], ["y"], name="batch_matmul")


def transpose(rng: np.random.Generator, *, shape=(1, 5, 2, 8), perm=(0, 2, 1, 3)) -> Graph:
    x = gb.activation_tensor(rng, "x", shape)
    y = Tensor("y", tuple(shape[p] for p in perm), DType.INT8, x.quant)
    op = Op("TRANSPOSE", ["x"], ["y"], {"perm": tuple(perm)}, name="y")
    return Graph([x, y], [op], ["x"], ["y"], name="transpose")


def gather(rng: np.random.Generator, *, params_shape=(20, 8), idx_shape=(1, 6),
           axis: int = 0) -> Graph:
    """An int8 embedding table (constant) indexed by an int32 graph input."""
    q = gb.act_quant(rng)
    table = Tensor("table", tuple(params_shape), DType.INT8, q,
                   gb.random_values(rng, params_shape, DType.INT8))
    idx = Tensor("idx", tuple(idx_shape), DType.INT32)
    out = tuple(params_shape[:axis]) + tuple(idx_shape) + tuple(params_shape[axis + 1:])
    y = Tensor("y", out, DType.INT8, q)
    op = Op("GATHER", ["table", "idx"], ["y"], {"axis": axis}, name="y")
    return Graph([table, idx, y], [op], ["idx"], ["y"], name="gather")


def random_indices(rng: np.random.Generator, t: Tensor, vocab: int) -> np.ndarray:
    return rng.integers(0, vocab, size=t.shape).astype(np.int32)


def gelu(rng: np.random.Generator, *, shape=(1, 6, 16), approximate: bool = False) -> Graph:
    x = gb.activation_tensor(rng, "x", shape)
    lo = x.quant.scale[0] * (-128 - x.quant.zero_point[0])
    hi = x.quant.scale[0] * (127 - x.quant.zero_point[0])
    top = max(hi, 0.2) * rng.uniform(0.8, 1.2)
    bottom = -0.17 if lo < -0.17 else lo
    scale = gb.f32((top - bottom) / 255.0)
    zp = int(np.clip(round(-128 - bottom / float(scale)), -128, 127))
    y = Tensor("y", tuple(shape), DType.INT8, Quantization(scale.reshape(1), np.array([zp])))
    op = Op("GELU", ["x"], ["y"], {"approximate": approximate}, name="y")
    return Graph([x, y], [op], ["x"], ["y"], name="gelu")


def attention(rng: np.random.Generator, *, heads: int = 2, tokens: int = 6,
              head_dim: int = 8) -> Graph:
    """``softmax(q k^T) v``: BATCH_MATMUL(adj_y) -> SOFTMAX (last axis) -> BATCH_MATMUL."""
    shape = (1, heads, tokens, head_dim)
    q, k, v = (gb.activation_tensor(rng, n, shape) for n in ("q", "k", "v"))
    s = Tensor("s", (1, heads, tokens, tokens), DType.INT8, _bmm_out_quant(rng, q, k, head_dim))
    p = Tensor("p", s.shape, DType.INT8, Quantization.per_tensor(1 / 256, -128))
    y = Tensor("y", shape, DType.INT8, _bmm_out_quant(rng, p, v, tokens))
    ops = [Op("BATCH_MATMUL", ["q", "k"], ["s"], {"adj_x": False, "adj_y": True}, name="s"),
           Op("SOFTMAX", ["s"], ["p"], {"beta": 1.0}, name="p"),
           Op("BATCH_MATMUL", ["p", "v"], ["y"], {"adj_x": False, "adj_y": False}, name="y")]
    return Graph([q, k, v, s, p, y], ops, ["q", "k", "v"], ["y"], name="attention")


def token_fc(rng: np.random.Generator, *, tokens: int = 5, in_features: int = 12,
             units: int = 7, per_channel: bool = False) -> Graph:
    """FULLY_CONNECTED on ``x[1, T, K]`` with ``keep_num_dims``: ``y[1, T, N]``."""
    g = gb.fully_connected(rng, batch=tokens, in_features=in_features, out_features=units,
                           per_channel=per_channel)
    x, w, b, y = g["x"], g["w"], g["bias"], g["y"]
    x3 = Tensor("x", (1, tokens, in_features), x.dtype, x.quant)
    y3 = Tensor("y", (1, tokens, units), y.dtype, y.quant)
    op = Op("FULLY_CONNECTED", ["x", "w", "bias"], ["y"], {"activation": "NONE",
                                                       "keep_num_dims": True}, name="y")
    return Graph([x3, w, b, y3], [op], ["x"], ["y"], name="token_fc")


def causal_depthwise(rng: np.random.Generator, *, tokens: int = 9, channels: int = 6,
                     kernel: int = 3) -> Graph:
    """Causal depthwise 1-D conv: DEPTHWISE_CONV_2D on ``[1, 1, T, C]``, pad (0, 0, k-1, 0)."""
    g = gb.depthwise_conv2d(rng, in_shape=(1, 1, tokens, channels), kernel=(1, kernel),
                            padding="VALID")
    tensors = {n: t for n, t in g.tensors.items()}
    y = tensors["y"]
    tensors["y"] = Tensor("y", (1, 1, tokens, channels), y.dtype, y.quant)
    op = g.ops[0]
    attrs = dict(op.attrs, pad=(0, 0, kernel - 1, 0))
    return Graph(tensors.values(), [Op(op.kind, op.inputs, op.outputs, attrs, name=op.name)],
                 g.inputs, g.outputs, name="causal_depthwise")


def softmax_rank(rng: np.random.Generator, *, shape: Sequence[int] = (1, 2, 5, 7)) -> Graph:
    """SOFTMAX over the last axis of a rank-3/4 tensor."""
    return gb.softmax(rng, shape=tuple(shape), beta=1.0)


def graph_inputs(rng: np.random.Generator, g: Graph) -> list[np.ndarray]:
    """Random values for every graph input; int32 ids that feed a GATHER stay inside its
    table (an index outside it is an error, not a computation)."""
    bound = {op.inputs[1]: g[op.inputs[0]].shape[int(op.attrs.get("axis", 0))]
             for op in g.ops if op.kind == "GATHER"}
    return [random_indices(rng, g[n], bound[n]) if n in bound else gb.random_input(rng, g[n])
            for n in g.inputs]


def float_attention_model(rng, vocab=40, tokens=8, dim=16, heads=2, gelu: bool = False) -> Graph:
    """ids -> GATHER(table) + positional table -> FC per token -> q, k, v -> attention ->
    TRANSPOSE back -> FC: the float graph a converter hands to `quantize`."""
    f = lambda *s: rng.normal(0, 0.5, size=s).astype(np.float32)  # noqa: E731
    dh = dim // heads
    t = [Tensor("ids", (1, tokens), DType.INT32),
         Tensor("table", (vocab, dim), DType.FLOAT32, data=f(vocab, dim)),
         Tensor("pos", (1, tokens, dim), DType.FLOAT32, data=f(1, tokens, dim)),
         Tensor("emb", (1, tokens, dim), DType.FLOAT32),
         Tensor("h", (1, tokens, dim), DType.FLOAT32)]
    ops = [Op("GATHER", ["table", "ids"], ["emb"], {"axis": 0}, name="emb"),
           Op("ADD", ["emb", "pos"], ["h"], {"activation": "NONE"}, name="h")]
    for n in ("q", "k", "v"):
        t += [Tensor(f"w{n}", (dim, dim), DType.FLOAT32, data=f(dim, dim) / 4),
              Tensor(f"b{n}", (dim,), DType.FLOAT32, data=f(dim) / 4),
              Tensor(n, (1, tokens, dim), DType.FLOAT32),
              Tensor(f"{n}4", (1, tokens, heads, dh), DType.FLOAT32),
              Tensor(f"{n}h", (1, heads, tokens, dh), DType.FLOAT32)]
        ops += [Op("FULLY_CONNECTED", ["h", f"w{n}", f"b{n}"], [n],
                   {"activation": "NONE", "keep_num_dims": True}, name=n),
                Op("RESHAPE", [n], [f"{n}4"], {}, name=f"{n}4"),
                Op("TRANSPOSE", [f"{n}4"], [f"{n}h"], {"perm": (0, 2, 1, 3)}, name=f"{n}h")]
    t += [Tensor("s", (1, heads, tokens, tokens), DType.FLOAT32),
          Tensor("p", (1, heads, tokens, tokens), DType.FLOAT32),
          Tensor("o", (1, heads, tokens, dh), DType.FLOAT32),
          Tensor("ot", (1, tokens, heads, dh), DType.FLOAT32),
          Tensor("o3", (1, tokens, dim), DType.FLOAT32),
          Tensor("wo", (4, dim), DType.FLOAT32, data=f(4, dim) / 4),
          Tensor("y", (1, tokens, 4), DType.FLOAT32)]
    ops += [Op("BATCH_MATMUL", ["qh", "kh"], ["s"], {"adj_x": False, "adj_y": True}, name="s"),
            Op("SOFTMAX", ["s"], ["p"], {"beta": 1.0}, name="p"),
            Op("BATCH_MATMUL", ["p", "vh"], ["o"], {"adj_x": False, "adj_y": False}, name="o"),
            Op("TRANSPOSE", ["o"], ["ot"], {"perm": (0, 2, 1, 3)}, name="ot"),
            Op("RESHAPE", ["ot"], ["o3"], {}, name="o3"),
            Op("FULLY_CONNECTED", ["o3", "wo", None], ["y"],
               {"activation": "NONE", "keep_num_dims": True}, name="y")]
    if gelu:  # TFLite Micro has no GELU: only for our interpreter and the generated C
        t.append(Tensor("g", (1, tokens, dim), DType.FLOAT32))
        ops.insert(-1, Op("GELU", ["o3"], ["g"], {"approximate": False}, name="g"))
        ops[-1].inputs[0] = "g"
    return Graph(t, ops, ["ids"], ["y"], name="tiny_attention")


def float_constant_operands(rng) -> Graph:
    """x * scale_table + pos_table: MUL and ADD each with a float constant operand."""
    shape = (1, 6, 8)
    t = [Tensor("x", shape, DType.FLOAT32),
         Tensor("gain", (1, 1, 8), DType.FLOAT32,
                data=rng.uniform(0.2, 2.0, size=(1, 1, 8)).astype(np.float32)),
         Tensor("pos", shape, DType.FLOAT32, data=rng.normal(0, 1, size=shape).astype(np.float32)),
         Tensor("m", shape, DType.FLOAT32), Tensor("y", shape, DType.FLOAT32)]
    ops = [Op("MUL", ["x", "gain"], ["m"], {"activation": "NONE"}, name="m"),
           Op("ADD", ["pos", "m"], ["y"], {"activation": "NONE"}, name="y")]
    return Graph(t, ops, ["x"], ["y"], name="constant_operands")


# --- random cases for the per-op coverage tables ------------------------------------------------

def batch_matmul_case(rng: np.random.Generator) -> Graph:
    m, k, n = (int(rng.integers(1, 12)) for _ in range(3))
    adj_x, adj_y = bool(rng.random() < 0.4), bool(rng.random() < 0.5)
    batch_rank = int(rng.integers(0, 3))
    batch = [int(rng.integers(1, 4)) for _ in range(batch_rank)]
    a_batch = [d if rng.random() < 0.7 else 1 for d in batch]
    b_batch = [d if rng.random() < 0.7 else 1 for d in batch][int(rng.integers(0, batch_rank + 1)):]
    a_shape = tuple(a_batch) + ((k, m) if adj_x else (m, k))
    b_shape = tuple(b_batch) + ((n, k) if adj_y else (k, n))
    return batch_matmul(rng, a_shape=a_shape, b_shape=b_shape, adj_x=adj_x, adj_y=adj_y)


def transpose_case(rng: np.random.Generator) -> Graph:
    rank = int(rng.integers(1, 6))
    shape = tuple(int(rng.integers(1, 6)) for _ in range(rank))
    return transpose(rng, shape=shape, perm=tuple(int(p) for p in rng.permutation(rank)))


def gather_case(rng: np.random.Generator) -> Graph:
    params = tuple(int(rng.integers(1, 8)) for _ in range(int(rng.integers(1, 4))))
    params = (int(rng.integers(2, 40)),) + params[1:]
    idx = tuple(int(rng.integers(1, 7)) for _ in range(int(rng.integers(1, 3))))
    axis = 0 if rng.random() < 0.7 else int(rng.integers(0, len(params)))
    return gather(rng, params_shape=params, idx_shape=idx, axis=axis)


def gelu_case(rng: np.random.Generator) -> Graph:
    rank = int(rng.integers(1, 5))
    shape = tuple(int(rng.integers(1, 9)) for _ in range(rank))
    return gelu(rng, shape=shape, approximate=bool(rng.random() < 0.5))


#: kind -> random single-op graph, for tests/test_interpreter_ops.py and test_kernels_c_ops.py
CASES = {"BATCH_MATMUL": batch_matmul_case, "TRANSPOSE": transpose_case,
         "GATHER": gather_case, "GELU": gelu_case}
#: kinds that TFLite Micro has no kernel for: LiteRT's reference kernels are their oracle
LITERT_ORACLE = frozenset({"GELU"})


def float_conv_block_model(rng, tokens=8, dim=16, kernel=3) -> Graph:
    """x -> LAYER_NORM -> FC per token -> causal depthwise conv (DEPTHWISE_CONV_2D on
    [1, 1, T, C], pad (0, 0, k-1, 0)) -> SILU -> FC per token -> + x: EmbBERT-Q's convolutional
    branch as the float graph a converter hands to `quantize`."""
    f = lambda *s: rng.normal(0, 0.5, size=s).astype(np.float32)  # noqa: E731
    seq, img = (1, tokens, dim), (1, 1, tokens, dim)
    t = [Tensor("x", seq, DType.FLOAT32),
         Tensor("gamma", (dim,), DType.FLOAT32, data=1 + f(dim) / 4),
         Tensor("beta", (dim,), DType.FLOAT32, data=f(dim) / 4),
         Tensor("wu", (dim, dim), DType.FLOAT32, data=f(dim, dim) / 4),
         Tensor("bu", (dim,), DType.FLOAT32, data=f(dim) / 4),
         Tensor("wc", (1, 1, kernel, dim), DType.FLOAT32, data=f(1, 1, kernel, dim)),
         Tensor("bc", (dim,), DType.FLOAT32, data=f(dim) / 4),
         Tensor("wd", (dim, dim), DType.FLOAT32, data=f(dim, dim) / 4),
         Tensor("bd", (dim,), DType.FLOAT32, data=f(dim) / 4)]
    t += [Tensor(n, shape, DType.FLOAT32) for n, shape in
          (("n", seq), ("u", seq), ("u4", img), ("c", img), ("s", img), ("s3", seq), ("d", seq),
           ("y", seq))]
    ops = [Op("LAYER_NORM", ["x", "gamma", "beta"], ["n"], {"epsilon": 1e-5}, name="n"),
           Op("FULLY_CONNECTED", ["n", "wu", "bu"], ["u"],
              {"activation": "NONE", "keep_num_dims": True}, name="u"),
           Op("RESHAPE", ["u"], ["u4"], {}, name="u4"),
           Op("DEPTHWISE_CONV_2D", ["u4", "wc", "bc"], ["c"],
              {"stride": (1, 1), "dilation": (1, 1), "pad": (0, 0, kernel - 1, 0),
               "depth_multiplier": 1, "activation": "NONE"}, name="c"),
           Op("SILU", ["c"], ["s"], {}, name="s"),
           Op("RESHAPE", ["s"], ["s3"], {}, name="s3"),
           Op("FULLY_CONNECTED", ["s3", "wd", "bd"], ["d"],
              {"activation": "NONE", "keep_num_dims": True}, name="d"),
           Op("ADD", ["x", "d"], ["y"], {"activation": "NONE"}, name="y")]
    return Graph(t, ops, ["x"], ["y"], name="conv_block")
