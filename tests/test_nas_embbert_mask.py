"""EmbBERT-Q's key-padding mask end to end: torch ignores padded keys, the float IR computes the
same function, the `.tflite` carries the mask as TFLite builtins computed from the ids (GATHER
of a bias table -> RESHAPE -> ADD before SOFTMAX) and TFLite Micro runs it bit-exactly as our
interpreter does, and the fused attention (with the mask row) is bit-exact with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekit.attention import fuse_attention
from edgekit.interpreter import Interpreter
from edgekit.nas.embbert import MASK_BIAS, EmbBERTSpec, placeholder_graph
from edgekit.nas.embbert_graph import float_graph
from edgekit.nas.embbert_torch import to_torch
from edgekit.nas.tokenizer import PAD_ID

SMALL = dict(vocab_size=120, embed_dim=8, hidden=16, layers=2, kernel=3, seq_len=12,
             num_classes=3)


def _padded_ids(n: int, spec: EmbBERTSpec, seed: int = 0) -> np.ndarray:
    """Texts of 1..seq_len tokens (ids >= 1), then [PAD]."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, spec.vocab_size, (n, spec.seq_len)).astype(np.int32)
    for row, length in zip(ids, rng.integers(1, spec.seq_len + 1, n)):
        row[length:] = PAD_ID
    return ids


def test_masked_attention_ignores_the_padded_keys_in_torch():
    torch.manual_seed(0)
    spec = EmbBERTSpec(**SMALL)
    block = to_torch(spec).eval().blocks[0]
    x = torch.randn(1, 12, 16)
    text = 8  # tokens 8.. are padding
    bias = torch.zeros(1, 1, 12)
    bias[..., text:] = -MASK_BIAS
    with torch.no_grad():
        masked = block(x, bias)[0, :text]
        alone = block(x[:, :text])[0]  # the text without any padding
        unmasked = block(x)[0, :text]
    torch.testing.assert_close(masked, alone, rtol=0, atol=1e-5)
    assert not torch.allclose(unmasked, alone, atol=1e-3)


@pytest.mark.parametrize("mask", [True, False])
def test_the_float_ir_computes_the_masked_torch_model(mask):
    from edgekit.converters.float_exec import run_float

    torch.manual_seed(1)
    m = to_torch(EmbBERTSpec(**SMALL, mask=mask)).eval()
    graph = float_graph(m)
    kinds = [op.kind for op in graph.ops]
    assert (kinds.count("GATHER"), kinds.count("ADD")) == ((2, 7) if mask else (1, 5))
    ids = _padded_ids(6, m.spec)
    with torch.no_grad():
        want = m(torch.from_numpy(ids.astype(np.int64))).numpy()
    np.testing.assert_allclose(run_float(graph, [ids])[0], want, rtol=1e-4, atol=1e-5)


def _masked_attention_of(graph, block: int = 0):
    """The ops from the ids to block ``block``'s attention output, as a graph of TFLite
    builtins only (the model's norms and SILU are edgekit custom ops TFLite Micro lacks):
    inputs ids, the block's query and normed tokens."""
    from edgekit.ir import Graph

    p = f"b{block}"
    wanted = {"pad_bias", "pad_bias_row", f"{p}/scores", f"{p}/masked", f"{p}/probs", f"{p}/attn"}
    ops = [op for op in graph.ops if op.outputs[0] in wanted]
    names = {n for op in ops for n in (*op.present_inputs(), *op.outputs)}
    return Graph([graph[n] for n in sorted(names)], ops, ["ids", f"{p}/query", f"{p}/norm"],
                 [f"{p}/attn"], name="masked_attention")


def test_the_masked_tflite_is_tflm_exact_and_fused_attention_matches_it():
    from oracle_runners import TflmRunner
    from edgekit.converters.tflite_reader import load_tflite_bytes
    from edgekit.converters.tflite_writer import to_bytes

    spec = EmbBERTSpec(**SMALL)
    graph = placeholder_graph(spec)
    data = to_bytes(graph)
    # the whole model's .tflite carries the mask as builtins: GATHER -> RESHAPE -> ADD
    assert [op.kind for op in load_tflite_bytes(data).ops] == [op.kind for op in graph.ops]
    fused = fuse_attention(graph)
    attention = [op for op in fused.ops if op.kind == "ATTENTION"]
    assert len(attention) == spec.layers and all(len(op.inputs) == 4 for op in attention)
    ids = _padded_ids(8, spec, seed=3)
    ours, theirs = Interpreter(graph), Interpreter(fused)
    for i in range(len(ids)):
        assert ours.run([ids[i:i + 1]])[0].tobytes() == theirs.run([ids[i:i + 1]])[0].tobytes()
    # TFLite Micro on the mask and the attention (its part of the model in builtins)
    part = _masked_attention_of(graph)
    assert [op.kind for op in part.ops] == ["GATHER", "RESHAPE", "BATCH_MATMUL", "ADD",
                                            "SOFTMAX", "BATCH_MATMUL"]
    tflm, ours, theirs = TflmRunner(to_bytes(part)), Interpreter(part), Interpreter(
        fuse_attention(part))
    rng = np.random.default_rng(4)
    distinct = set()
    for i in range(len(ids)):
        x = [ids[i:i + 1]] + [rng.integers(-128, 128, part[n].shape).astype(np.int8)
                              for n in part.inputs[1:]]
        want = np.asarray(tflm(x)[0])
        assert ours.run(x)[0].tobytes() == want.tobytes()
        assert theirs.run(x)[0].tobytes() == want.tobytes()
        distinct.update(np.unique(want).tolist())
    assert len(distinct) > 8


def test_an_unmasked_spec_round_trips_and_the_default_masks():
    spec = EmbBERTSpec(**SMALL, mask=False)
    assert EmbBERTSpec.from_dict(spec.to_dict()) == spec
    assert EmbBERTSpec(**SMALL).mask is True
    from edgekit.errors import UsageError

    with pytest.raises(UsageError, match="mask"):
        EmbBERTSpec(**SMALL, mask="yes")
