"""Generated C of transformer graphs, compiled with the host gcc (ASan + UBSan) and compared
byte for byte with the reference interpreter, every op's output at its arena offset: attention
(BATCH_MATMUL adj_y -> SOFTMAX over the last axis -> BATCH_MATMUL), FULLY_CONNECTED over tokens
with keep_num_dims, SOFTMAX over rank-3/4 tensors, the causal depthwise 1-D convolution (as the
IR writes it and as it comes back from a `.tflite`: PAD + VALID), and a quantized model whose
graph input is int32 token ids (embedded as int32 test data, copied into the arena by the
harness's setup, read by GATHER)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import transformer_builders as tb
from edgekit.converters.quantize import quantize
from edgekit.converters.tflite_reader import load_tflite_bytes
from edgekit.converters.tflite_writer import to_bytes
from edgekit.firmware.codegen import generate
from edgekit.firmware.host_run import run_on_host
from edgekit.ir import DType, Graph
from generated_c import assert_matches_interpreter

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="no host gcc")


def _check_on_host(graph: Graph, kernel_objects, directory, inputs=None, seed: int = 0):
    gen = generate(graph, test_inputs=inputs, seed=seed)
    run = run_on_host(gen, directory, defines=("EDGEKIT_PORTABLE_KERNELS",),
                      kernel_objects=kernel_objects["portable"])
    assert len(gen.traced) == len(graph.ops)  # nothing fused in these blocks
    assert_matches_interpreter(graph, gen, run)
    assert len(set(gen.expected_outputs[0])) > 8  # not a collapsed output
    return gen


@pytest.mark.parametrize("heads,tokens,head_dim", [(2, 6, 8), (1, 16, 4)])
def test_attention_block_in_c(heads, tokens, head_dim, kernel_objects, tmp_path):
    rng = np.random.default_rng(heads + tokens)
    g = tb.attention(rng, heads=heads, tokens=tokens, head_dim=head_dim)
    _check_on_host(g, kernel_objects, tmp_path, tb.graph_inputs(rng, g))


def test_token_fully_connected_keep_num_dims_in_c(kernel_objects, tmp_path):
    rng = np.random.default_rng(3)
    g = tb.token_fc(rng, tokens=7, in_features=24, units=10)
    _check_on_host(g, kernel_objects, tmp_path, tb.graph_inputs(rng, g))


@pytest.mark.parametrize("shape", [(1, 5, 9), (1, 2, 6, 7)])
def test_softmax_last_axis_rank3_rank4_in_c(shape, kernel_objects, tmp_path):
    rng = np.random.default_rng(len(shape))
    g = tb.softmax_rank(rng, shape=shape)
    _check_on_host(g, kernel_objects, tmp_path, tb.graph_inputs(rng, g))


@pytest.mark.parametrize("kernel", [3, 5])
def test_causal_depthwise_conv_in_c_and_after_tflite_round_trip(kernel, kernel_objects, tmp_path):
    rng = np.random.default_rng(kernel)
    g = tb.causal_depthwise(rng, tokens=12, channels=8, kernel=kernel)
    inputs = tb.graph_inputs(rng, g)
    direct = _check_on_host(g, kernel_objects, tmp_path / "ir", inputs)
    back = load_tflite_bytes(to_bytes(g))
    assert [op.kind for op in back.ops] == ["DEPTHWISE_CONV_2D"]  # PAD + VALID folded back
    via_file = _check_on_host(back, kernel_objects, tmp_path / "tflite", inputs)
    assert via_file.expected_outputs == direct.expected_outputs


@pytest.mark.parametrize("gelu", [False, True])
def test_int32_token_ids_input_end_to_end(gelu, kernel_objects, tmp_path):
    """A quantized model whose input is int32 token ids: the generator embeds int32 test data
    (valid ids, from its own random inputs), the harness copies them into the arena, GATHER
    reads them; every op is bit-exact with the reference, GELU included."""
    rng = np.random.default_rng(9)
    qg = quantize(tb.float_attention_model(rng, gelu=gelu),
                  rng.integers(0, 40, size=(16, 8)).astype(np.int32))
    assert qg[qg.inputs[0]].dtype == DType.INT32
    gen = _check_on_host(qg, kernel_objects, tmp_path, seed=4)
    assert "const int32_t ek_test_input0" in gen.files["model_testdata.c"]
    assert "#define EK_MODEL_INPUT0_BYTES 32u" in gen.files["model.h"]  # 8 ids * 4 bytes
    ids = gen.test_inputs[0]
    assert ids.dtype == np.int32 and ids.min() >= 0 and ids.max() < 40 and np.unique(ids).size > 3


def test_constant_add_and_mul_operands_in_c(kernel_objects, tmp_path):
    """The int8 constants quantize gives ADD's and MUL's constant operands are read from flash."""
    rng = np.random.default_rng(21)
    qg = quantize(tb.float_constant_operands(rng),
                  rng.normal(0, 1, size=(32, 6, 8)).astype(np.float32))
    gen = _check_on_host(qg, kernel_objects, tmp_path, seed=2)
    weights = gen.files["model_weights.c"]
    assert "gain" in weights and "pos" in weights

