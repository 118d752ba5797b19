"""int8 CONV_2Ds run by the int4 kernels' translation unit (ek_conv.c compiled as ek_conv_s4.c:
``ek_conv2d_s8_via_s4``). A model whose convolutions are int4 but for a few int8 layers (a first
layer kept int8) then links one convolution, not two. Checked here: the generator's choice
(`s8_via_s4_pays`: only where every int8 conv qualifies, so that ek_conv.c's int8 convolution
leaves the build), the filter layout (`s8_lane_rows`, mirrored by ek_conv.c's
``s8_lane_byte``), and bit-exactness on the host, where the portable and emulated-DSP builds run
the kernel's portable loop over that layout. The assembly runs on the emulated boards
(hil_tests/test_s8_via_s4_emulated.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import graph_builders as gb
from conftest import HOST_KERNEL_DEFINES as PATHS
from generated_c import assert_matches_interpreter
from edgekit.converters.int4_requant import requantize_weights
from edgekit.firmware.codegen import generate
from edgekit.firmware.host_run import run_on_host
from edgekit.firmware.model_build import int4_summary
from edgekit.firmware.op_emitters import (S8_LANE_ORDER, S8_VIA_S4, CallConfig, s8_lane_rows,
                                          s8_via_s4_applies, s8_via_s4_config)
from edgekit.ir import Graph

host_gcc = pytest.mark.skipif(__import__("shutil").which("gcc") is None, reason="no host gcc")


def test_lane_rows_pad_each_row_and_swap_taps_2_3_with_4_5():
    w = np.arange(1, 19, dtype=np.int8).reshape(2, 3, 3, 1)  # two rows of 9 taps
    rows = s8_lane_rows(w).reshape(2, 16)
    assert rows[0].tolist() == [1, 2, 5, 6, 3, 4, 7, 8, 9, 0, 0, 0, 0, 0, 0, 0]
    assert rows[1].tolist() == [10, 11, 14, 15, 12, 13, 16, 17, 18, 0, 0, 0, 0, 0, 0, 0]
    # ek_conv.c s8_lane_byte(t): the byte of tap t, the same permutation
    for t in range(24):
        byte = (t & ~6) | ((t & 2) << 1) | ((t & 4) >> 1)
        assert byte == (t & ~7) + S8_LANE_ORDER.index(t & 7)


def _fields(**overrides) -> dict:
    fields = {"k_h": 3, "k_w": 3, "in_c": 3, "out_c": 16, "dilation_w": 1, "filter_offset": 0,
              "effective_bias": object(), "act_min": -128, "act_max": 127,
              "multipliers": np.full(16, 1 << 30), "shifts": np.full(16, -8)}
    fields.update(overrides)
    return fields


def test_applies_only_where_the_assembly_takes_every_channel():
    assert s8_via_s4_applies(_fields())
    assert s8_via_s4_applies(_fields(in_c=16))  # the long path: whole groups of 8 channels
    assert s8_via_s4_applies(_fields(shifts=np.full(16, -1)))  # a right shift of 1: fast
    assert s8_via_s4_applies(_fields(shifts=np.full(16, -28)))  # the wide form
    for off in (_fields(out_c=15), _fields(act_max=100), _fields(dilation_w=2),
                _fields(in_c=3, k_h=5, k_w=5), _fields(filter_offset=3),
                _fields(shifts=np.full(16, -40))):
        assert not s8_via_s4_applies(off)


def _two_convs(rng, first: dict, bits: str = "mixed:default=4,#0=8") -> Graph:
    """A first conv (``first``: conv2d options, a 9x8 input by default) feeding a 3x3 conv to
    12 channels, re-quantized with ``bits`` (default: the first int8, the second int4)."""
    in_shape = first.pop("in_shape", (1, 9, 8, 1))
    one = gb.conv2d(rng, in_shape=in_shape, **first)
    shape = one["y"].shape
    two = gb.conv2d(rng, in_shape=shape, out_channels=12)
    h = replace(two["x"], name="h")
    tensors = [one["x"], one["w"], *([one["bias"]] if "bias" in one.tensors else []), h,
               *(replace(two[n], name=f"{n}2") for n in ("w", "bias", "y"))]
    ops = [replace(one.ops[0], inputs=["x", "w", *(["bias"] if "bias" in one.tensors else [])],
                   outputs=["h"], name="h"),
           replace(two.ops[0], inputs=["h", "w2", "bias2"], outputs=["y2"], name="y2")]
    graph = Graph(tensors, ops, ["x"], ["y2"], name="two_convs")
    return graph if bits == "8" else requantize_weights(graph, bits)


#: name -> the int8 first layer's conv2d options
FIRST_LAYERS = {
    "c1_3x3": dict(out_channels=16),  # 9 taps, padded to 16
    "c3_3x3_stride2_no_bias": dict(in_shape=(1, 9, 9, 3), out_channels=8, stride=(2, 2),
                                   bias=False),  # 27 taps
    "c1_10x4_kws": dict(in_shape=(1, 13, 6, 1), out_channels=8, kernel=(10, 4),
                        stride=(2, 2)),  # 40 taps: whole groups
    "c2_3x3_even": dict(in_shape=(1, 7, 5, 2), out_channels=6, stride=(2, 2)),  # 18 taps
    "c8_3x3_long": dict(in_shape=(1, 6, 7, 8), out_channels=10),  # 72 taps, the long path
    "c1_5x5_valid": dict(in_shape=(1, 11, 9, 1), out_channels=4, kernel=(5, 5),
                         padding="VALID"),
}


@host_gcc
@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("case", sorted(FIRST_LAYERS))
def test_int8_first_layer_in_the_int4_unit_bit_exact(case, path, kernel_objects, tmp_path):
    graph = _two_convs(np.random.default_rng(3), dict(FIRST_LAYERS[case]))
    gen = generate(graph, seed=1)
    assert gen.kernels == [S8_VIA_S4, "ek_conv2d_s4"]
    # 2: beside ek_conv2d_s4 (the two share one out-of-line convolution)
    assert "#define EK_CONV_S8_VIA_S4 2 " in gen.files["ek_model_config.h"]
    assert "conv2d_wide_plain" not in gen.path_helpers  # ek_conv.c's int8 widened path
    assert "op000_conv_2d_filter[" in gen.files["model.c"]  # the op's own int8 lane rows
    # CONV_2D has layers of both widths, but one kernel family: the manifest's figure says so
    assert int4_summary(graph, gen.kernels)["int4_split_kinds"] == []
    assert int4_summary(graph)["int4_split_kinds"] == ["CONV_2D"]
    run = run_on_host(gen, tmp_path, defines=PATHS[path], kernel_objects=kernel_objects[path])
    assert_matches_interpreter(graph, gen, run)


#: a first layer the assembly cannot take whole: the int8 unit keeps it (and the build's other
#: int8 convolutions with it)
KEPT_INT8 = {"odd_channels": dict(out_channels=15), "relu6": dict(out_channels=16,
                                                                 activation="RELU6")}


@host_gcc
@pytest.mark.parametrize("case", sorted(KEPT_INT8))
def test_int8_layer_the_assembly_cannot_take_keeps_its_kernel(case, kernel_objects, tmp_path):
    graph = _two_convs(np.random.default_rng(4), dict(KEPT_INT8[case]))
    gen = generate(graph, seed=1)
    assert gen.kernels == ["ek_conv2d_s8", "ek_conv2d_s4"]
    assert "#define EK_CONV_S8_VIA_S4 0 " in gen.files["ek_model_config.h"]
    assert int4_summary(graph, gen.kernels)["int4_split_kinds"] == ["CONV_2D"]
    run = run_on_host(gen, tmp_path, defines=PATHS["dsp"], kernel_objects=kernel_objects["dsp"])
    assert_matches_interpreter(graph, gen, run)


def test_an_all_int8_model_keeps_the_int8_kernels():
    graph = _two_convs(np.random.default_rng(5), dict(out_channels=16), bits="8")
    assert generate(graph, seed=1).kernels == ["ek_conv2d_s8", "ek_conv2d_s8"]


def test_config_shares_the_convolution_only_beside_ek_conv2d_s4():
    via, plain = CallConfig(s8_via_s4=True), CallConfig(s4_plain=True)
    assert s8_via_s4_config([plain]) == 0
    assert s8_via_s4_config([via]) == 1
    assert s8_via_s4_config([via, plain]) == 2
