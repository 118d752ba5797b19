"""The EmbBERT-Q family: spec, sampling, torch model, float IR, int8 graph, memory, family API."""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest
import torch

from edgekit.errors import UsageError
from edgekit.nas.embbert import EMBBERT, EmbBERTSpace, EmbBERTSpec, sample
from edgekit.nas.embbert_graph import float_graph, int8_graph
from edgekit.nas.embbert_torch import predict, to_torch
from edgekit.nas.family import FAMILIES
from edgekit.nas.text import text_dataset
from edgekit.nas.tokenizer import Tokenizer

SMALL = dict(vocab_size=120, embed_dim=8, hidden=16, layers=2, kernel=3, seq_len=12,
             num_classes=3)


def _module(seed=0, **kw):
    torch.manual_seed(seed)
    return to_torch(EmbBERTSpec(**{**SMALL, **kw})).eval()


def _ids(n, spec, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, spec.vocab_size, (n, spec.seq_len)).astype(np.int32)


def test_spec_round_trip_and_errors():
    spec = EmbBERTSpec(**SMALL, norm="rms", combine="mul")
    assert EmbBERTSpec.from_dict(spec.to_dict()) == spec
    assert EMBBERT.spec_from_dict(json.loads(spec.to_json())) == spec
    with pytest.raises(UsageError, match="norm"):
        EmbBERTSpec(**SMALL, norm="batch")
    with pytest.raises(UsageError, match="hidden"):
        EmbBERTSpec(**{**SMALL, "hidden": 0})
    with pytest.raises(UsageError, match="spec"):
        EmbBERTSpec.from_dict({**SMALL, "heads": 2})


def test_sampling_is_seeded_and_stays_in_the_space():
    space = EmbBERTSpace(num_classes=4, max_vocab=1024, max_seq_len=48)
    specs = [sample(random.Random(s), space) for s in range(30)]
    assert specs == [sample(s, space) for s in range(30)]
    assert len(set(specs)) > 20
    for s in specs:
        assert s.vocab_size <= 1024 and s.seq_len <= 48 and s.num_classes == 4
        assert s.hidden in space.hiddens and s.layers in space.layers


def test_torch_model_shapes_and_parameter_count():
    for kw in ({}, {"norm": "rms", "combine": "mul"}):
        m = _module(**kw)
        ids = torch.from_numpy(_ids(5, m.spec).astype(np.int64))
        assert m(ids).shape == (5, 3)
        assert sum(p.numel() for p in m.parameters()) == m.spec.weight_count()


def test_convolution_branch_is_causal():
    m = _module(layers=1)
    block = m.blocks[0]
    x = torch.randn(1, 12, 16)
    y = x.clone()
    y[0, 7:] += torch.randn(5, 16)  # only tokens 7..: the branch at tokens 0..6 must not see it
    h = lambda v: torch.nn.functional.silu(block.conv(torch.nn.functional.pad(
        block.norm(v).transpose(1, 2), (2, 0))).transpose(1, 2))
    with torch.no_grad():
        torch.testing.assert_close(h(x)[0, :7], h(y)[0, :7])
        assert not torch.allclose(h(x)[0, 7:], h(y)[0, 7:])


@pytest.mark.parametrize("norm, combine", [("layer", "add"), ("rms", "mul")])
def test_float_ir_equals_torch(norm, combine):
    from edgekit.converters.float_exec import run_float

    m = _module(norm=norm, combine=combine)
    graph = float_graph(m)
    kinds = [op.kind for op in graph.ops]
    assert kinds[:3] == ["GATHER", "FULLY_CONNECTED", "ADD"] and kinds[-2:] == ["MEAN",
                                                                               "FULLY_CONNECTED"]
    assert kinds.count("BATCH_MATMUL") == 4 and kinds.count("SILU") == 2
    assert ("RMS_NORM" if norm == "rms" else "LAYER_NORM") in kinds
    assert ("MUL" in kinds) == (combine == "mul")
    conv = next(op for op in graph.ops if op.kind == "DEPTHWISE_CONV_2D")
    assert conv.attrs["pad"] == (0, 0, 2, 0)
    ids = _ids(6, m.spec)
    with torch.no_grad():
        want = m(torch.from_numpy(ids.astype(np.int64))).numpy()
    np.testing.assert_allclose(run_float(graph, [ids])[0], want, rtol=1e-4, atol=1e-5)


def _tiny_text_task():
    """Three topics with their own words: a short training separates them."""
    rng = np.random.default_rng(0)
    words = [["cpu", "disk", "kernel", "compiler", "byte"],
             ["vote", "senate", "law", "party", "tax"], ["atom", "cell", "orbit", "gene", "lab"]]
    filler = ["the", "a", "of", "and", "is", "to", "in"]
    rows = [(" ".join(rng.choice(words[c] + filler, 8)), c) for c in range(3) for _ in range(40)]
    order = rng.permutation(len(rows))
    rows = [rows[i] for i in order]
    return text_dataset("tiny", rows[:96], rows[96:], ("computers", "politics", "science"),
                        vocab_size=60, seq_len=12)


def test_int8_agrees_with_float_after_short_training():
    from edgekit.converters.quantize import dequantize_output
    from edgekit.interpreter import Interpreter

    data = _tiny_text_task()
    space = EMBBERT.space(data, None)
    spec = EmbBERTSpec(vocab_size=60, embed_dim=8, hidden=16, layers=1, kernel=3, seq_len=12,
                       num_classes=space.num_classes, combine="mul")
    model = EMBBERT.train(spec, data.train, steps=60, batch_size=32, seed=0, threads=1)
    assert EMBBERT.float_accuracy(model, spec, data.test) >= 0.8
    graph = EMBBERT.int8_graph(model, spec, EMBBERT.calibration(spec, data.train, 32))
    assert graph[graph.inputs[0]].dtype.value == "int32"
    ids = EMBBERT.inputs(spec, data.test)
    interp = Interpreter(graph)
    q = np.concatenate([dequantize_output(graph, interp.run([ids[i:i + 1]])[0])
                        for i in range(len(ids))])
    f = predict(model, ids)
    assert (q.argmax(1) == f.argmax(1)).mean() >= 0.9
    assert np.abs(q - f).max() < 0.25 * np.abs(f).max()
    assert EMBBERT.int8_accuracy(graph, spec, data.test) >= 0.75


def test_firmware_test_input_ids_stay_inside_the_table():
    from edgekit.firmware.codegen import random_test_inputs

    m = _module()
    graph = int8_graph(m, _ids(4, m.spec))
    for seed in range(3):
        (ids,) = random_test_inputs(graph, seed)
        assert ids.dtype == np.int32 and ids.shape == (1, 12)
        assert 0 <= ids.min() and ids.max() < m.spec.vocab_size


def test_memory_comes_from_the_planner():
    small, wide = EmbBERTSpec(**SMALL), EmbBERTSpec(**{**SMALL, "seq_len": 24, "hidden": 32})
    a, b = EMBBERT.memory(small, None), EMBBERT.memory(wide, None)
    assert a["planned"] and a["peak_sram"] == a["arena_bytes"] > 0
    assert a["total_bytes"] == a["weights_bytes"] + a["arena_bytes"]
    # int8 weights (one byte per parameter) plus int32 biases
    assert small.weight_count() <= a["weights_bytes"] <= 4 * small.weight_count()
    assert a["flash"] > a["weights_bytes"]
    # attention scores [1, T, T] and activations [1, T, H] grow the arena
    assert b["arena_bytes"] > a["arena_bytes"] and b["weights_bytes"] > a["weights_bytes"]


def test_family_inputs_and_tokenizer_artifact():
    data = _tiny_text_task()
    assert FAMILIES["embbert"] is EMBBERT
    EMBBERT.space(data, None)
    spec = EmbBERTSpec(**{**SMALL, "vocab_size": EMBBERT.tokenizer.base + 4, "seq_len": 10})
    ids = EMBBERT.inputs(spec, data.test)
    assert ids.shape == (len(data.test), 10) and ids.max() < spec.vocab_size
    np.testing.assert_array_equal(EMBBERT.inputs(spec, ids), ids)  # idempotent
    tok = Tokenizer.from_dict(json.loads(EMBBERT.artifacts(spec)["tokenizer.json"]))
    assert tok.vocab_size == spec.vocab_size
    np.testing.assert_array_equal(tok.encode_batch(data.test.texts, 10), ids)
    with pytest.raises(UsageError, match="texts"):
        from edgekit.nas.datasets import Dataset, Split
        z = Split(np.zeros((2, 4, 4, 1), np.float32), np.zeros(2, np.int64))
        EMBBERT.space(Dataset("images", z, z, 2), None)


def test_search_writes_the_tokenizer_into_best(tmp_path):
    from edgekit.nas.search import SearchConfig, run_search

    data = _tiny_text_task()
    config = SearchConfig(board="nucleo-h743zi", dataset="tiny", out_dir=tmp_path, trials=2,
                          proxy_steps=10, final_epochs=1, batch_size=32, threads=1,
                          space="embbert")
    result = run_search(config, data=data)
    best = tmp_path / "best"
    spec = EMBBERT.spec_from_dict(json.loads((best / "spec.json").read_text()))
    tok = Tokenizer.load(best / "tokenizer.json")
    assert tok.vocab_size == spec.vocab_size and (best / "model.tflite").stat().st_size > 0
    np.testing.assert_array_equal(tok.encode_batch(data.test.texts, spec.seq_len),
                                  EMBBERT.inputs(spec, data.test))
    assert result.best["total_bytes"] == result.best["weights_bytes"] + result.best["peak_sram"]
    assert result.best["fits"] and 0 <= result.best["int8_accuracy"] <= 1


@pytest.mark.parametrize("norm, combine", [("layer", "add"), ("rms", "mul")])
def test_generated_c_matches_the_reference_interpreter(tmp_path, norm, combine):
    from edgekit.firmware.codegen import generate
    from edgekit.firmware.host_run import run_on_host

    m = _module(norm=norm, combine=combine)
    model = generate(int8_graph(m, _ids(16, m.spec)), seed=1)
    assert model.test_inputs[0].max() < m.spec.vocab_size
    assert run_on_host(model, tmp_path).outputs == model.expected_outputs


def test_memory_plans_the_graph_the_firmware_gets():
    """The .tflite holds the causal pad as PAD + VALID conv; the reader folds them back, so
    the graph `edgekit build DIR/best` plans is the searched one, buffer for buffer."""
    from edgekit.converters.tflite_reader import load_tflite_bytes
    from edgekit.converters.tflite_writer import to_bytes
    from edgekit.firmware.codegen import firmware_plan
    from edgekit.interpreter import Interpreter
    from edgekit.nas.embbert import placeholder_graph

    spec = EmbBERTSpec(**SMALL)
    graph = placeholder_graph(spec)
    deployed = load_tflite_bytes(to_bytes(graph))
    assert [op.kind for op in deployed.ops] == [op.kind for op in graph.ops]
    ids = _ids(8, spec)
    a, b = Interpreter(graph), Interpreter(deployed)
    for i in range(8):
        np.testing.assert_array_equal(a.run([ids[i:i + 1]])[0], b.run([ids[i:i + 1]])[0])
    from edgekit.attention import fuse_attention

    # the search plans what the build runs: the .tflite's attention fused row-wise
    assert EMBBERT.memory(spec, None)["peak_sram"] == firmware_plan(
        fuse_attention(deployed)).arena_bytes


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                    reason="arm-none-eabi-gcc not installed")
def test_memory_figures_match_a_real_build(tmp_path):
    """The search's figures against the ELF: the arena exactly, flash a little high."""
    from edgekit.firmware.model_build import build_model
    from edgekit.nas.embbert import placeholder_graph

    spec = EmbBERTSpec(**{**SMALL, "norm": "rms", "combine": "mul"})
    memory = EMBBERT.memory(spec, None)
    built = build_model(placeholder_graph(spec), "nucleo-h743zi", tmp_path)
    assert built.estimate.arena_bytes == memory["peak_sram"]
    assert built.estimate.flash_bytes <= memory["flash"] <= 1.1 * built.estimate.flash_bytes
