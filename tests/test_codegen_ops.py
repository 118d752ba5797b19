"""Generated C for randomized single-op graphs (every op kind the generator emits), compiled with
the host gcc (ASan + UBSan) and compared byte for byte with the reference interpreter; conv,
depthwise and fully-connected also on the DSP path's C emulation."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import graph_builders as gb
import transformer_builders as tb
import norm_cases as nc
from edgekit.attention import fuse_attention
from edgekit.firmware.codegen import generate
from edgekit.firmware.host_run import run_on_host
from edgekit.firmware.op_emitters import supported_kinds
from edgekit.interpreter import Interpreter
from edgekit.ir import DType

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="no host gcc")

#: (case id, builder, options); each runs with several seeds (random quantization and data)
CASES = [
    ("conv_3x3_same", gb.conv2d, {"in_shape": (1, 9, 7, 5), "out_channels": 6, "activation": "RELU"}),
    ("conv_3x3_stride2_valid", gb.conv2d, {"in_shape": (1, 10, 9, 8), "out_channels": 4,
                                           "stride": (2, 2), "padding": "VALID"}),
    ("conv_1x1", gb.conv2d, {"in_shape": (1, 6, 6, 16), "out_channels": 8, "kernel": (1, 1)}),
    ("conv_dilated_nobias", gb.conv2d, {"in_shape": (1, 9, 9, 3), "dilation": (2, 2),
                                        "bias": False, "activation": "RELU6"}),
    ("conv_per_tensor", gb.conv2d, {"in_shape": (1, 5, 5, 4), "per_channel": False}),
    ("depthwise_3x3", gb.depthwise_conv2d, {"in_shape": (1, 9, 9, 8), "activation": "RELU"}),
    ("depthwise_mult2_stride2", gb.depthwise_conv2d, {"in_shape": (1, 8, 8, 3), "multiplier": 2,
                                                      "stride": (2, 2)}),
    ("fc", gb.fully_connected, {"in_features": 37, "out_features": 11, "activation": "RELU"}),
    ("fc_per_tensor_nobias", gb.fully_connected, {"in_features": 16, "out_features": 5,
                                                  "per_channel": False, "bias": False}),
    ("add", gb.add, {"activation": "RELU"}),
    ("add_broadcast", gb.add, {"shape_a": (1, 4, 4, 8), "shape_b": (1, 1, 1, 8)}),
    ("mul_broadcast", gb.mul, {"shape_a": (1, 3, 5, 4), "shape_b": (1, 3, 1, 4)}),
    ("avg_pool_same", gb.pool2d, {"in_shape": (1, 7, 7, 5), "filter_size": (3, 3),
                                  "stride": (2, 2), "padding": "SAME"}),
    ("max_pool", gb.pool2d, {"kind": "MAX_POOL_2D", "in_shape": (1, 8, 8, 6)}),
    ("mean_hw", gb.mean, {"in_shape": (1, 5, 3, 8), "axes": (1, 2), "keep_dims": False}),
    ("softmax", gb.softmax, {"shape": (1, 13)}),
    ("logistic", gb.logistic, {}),
    ("hard_swish", gb.hard_swish, {}),
    ("relu", gb.relu, {}),
    ("relu6", gb.relu, {"kind": "RELU6"}),
    ("quantize_f32", gb.quantize, {"from_float": True}),
    ("quantize_requant", gb.quantize, {"from_float": False}),
    ("dequantize", gb.dequantize, {}),
    ("reshape", gb.reshape, {}),
    ("pad", gb.pad, {}),
    ("concatenation", gb.concatenation, {}),
    ("slice", gb.slice_box, {}),
    ("insert_tile", gb.insert_tile, {}),
    ("insert_first_tile", gb.insert_tile, {"base": False}),
    ("batch_matmul", tb.batch_matmul, {}),
    ("batch_matmul_adj_x_broadcast", tb.batch_matmul, {"a_shape": (1, 3, 8, 5),
                                                       "b_shape": (1, 8, 6), "adj_x": True}),
    ("batch_matmul_adj_y_rank5", tb.batch_matmul, {"a_shape": (1, 2, 1, 4, 6),
                                                   "b_shape": (1, 2, 3, 5, 6), "adj_y": True}),
    ("transpose", tb.transpose, {}),
    ("transpose_rank5", tb.transpose, {"shape": (1, 3, 2, 4, 5), "perm": (0, 4, 2, 1, 3)}),
    ("gather", tb.gather, {"params_shape": (30, 12), "idx_shape": (1, 9)}),
    ("gather_axis1", tb.gather, {"params_shape": (1, 20, 3), "idx_shape": (4,), "axis": 1}),
    ("attention_fused", lambda rng, **kw: fuse_attention(tb.attention(rng, **kw)),
     {"heads": 3, "tokens": 7, "head_dim": 5}),
    ("gelu", tb.gelu, {}),
    ("gelu_approximate", tb.gelu, {"approximate": True}),
    ("layer_norm", nc.norm_graph, {"kind": "LAYER_NORM", "shape": (1, 12, 64)}),
    ("rms_norm", nc.norm_graph, {"kind": "RMS_NORM", "shape": (1, 5, 48)}),
    ("silu", nc.norm_graph, {"kind": "SILU", "shape": (1, 4, 4, 8)}),
]
SEEDS = (0, 1, 2)
CONV_KINDS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}


def test_cases_cover_every_supported_kind():
    rng = np.random.default_rng(0)
    covered = {builder(rng, **options).ops[0].kind for _, builder, options in CASES}
    assert covered == set(supported_kinds())


@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_single_op_graph_is_bit_exact_on_the_host(case, kernel_objects, tmp_path):
    _, builder, options = next(c for c in CASES if c[0] == case)
    for seed in SEEDS:
        rng = np.random.default_rng([seed, len(case)])
        graph = builder(rng, **options)
        inputs = tb.graph_inputs(rng, graph)
        gen = generate(graph, test_inputs=inputs)
        expected = [np.ascontiguousarray(o).tobytes() for o in Interpreter(graph).run(inputs)]
        assert gen.expected_outputs == expected
        paths = ["portable", "dsp"] if graph.ops[0].kind in CONV_KINDS else ["portable"]
        for path in paths:
            defines = ("EDGEKIT_PORTABLE_KERNELS",) if path == "portable" else ("EDGEKIT_EMULATE_DSP",)
            run = run_on_host(gen, tmp_path / f"{seed}-{path}", defines=defines,
                              kernel_objects=kernel_objects[path])
            assert run.outputs == expected, f"{case} seed {seed} ({path}) differs"


def test_float_input_graph_embeds_float_test_data(kernel_objects, tmp_path):
    graph = gb.quantize(np.random.default_rng(5), from_float=True)
    assert graph[graph.inputs[0]].dtype == DType.FLOAT32
    gen = generate(graph, seed=3)
    assert "const float ek_test_input0" in gen.files["model_testdata.c"]
    run = run_on_host(gen, tmp_path, defines=("EDGEKIT_PORTABLE_KERNELS",),
                      kernel_objects=kernel_objects["portable"])
    assert run.outputs == gen.expected_outputs
