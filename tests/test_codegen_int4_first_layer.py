"""int4 first layers on the widened two-pixel path (ek_conv.c, compiled as ek_conv_s4.c): a
CONV_2D over 1-3 input channels whose short window (k_h * k_w * in_c <= 64 taps) is gathered as
bytes and widened; windows of whole groups of 8 taps keep TFLite's packed filter, the others
(odd and even lengths) get the op's own filter with each row padded to whole groups
(`padded_s4_rows`), which the portable kernels read too; padding, stride 1 and 2, odd and tiny
output channel counts, and a mixed model. Each is compiled with the host gcc (AddressSanitizer
on: no read past a packed array's pad, no write past the window buffer the build sized) on the
portable kernels and on the emulated DSP path under the model's own configuration, and compared
with the reference interpreter op by op."""

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
from edgekit.firmware.op_emitters import (padded_s4_rows, s4_conv_pixels, s4_rows_padded,
                                          wide_s4_path_applies, wide_window_taps)
from edgekit.ir import DType, Graph

pytestmark = pytest.mark.skipif(__import__("shutil").which("gcc") is None, reason="no host gcc")

#: name -> (conv2d builder options, window length, whether its rows are padded)
FIRST_LAYERS = {
    # the Fashion-MNIST CNN's first layer: 9 taps (odd), SAME padding, stride 1
    "c1_3x3_odd": (dict(in_shape=(1, 9, 8, 1), out_channels=16), 9, True),
    # odd output channels
    "c1_3x3_odd_c7_stride2": (dict(in_shape=(1, 9, 9, 1), out_channels=7, stride=(2, 2)), 9, True),
    # 2 and 3 output channels
    "c1_3x3_c2": (dict(in_shape=(1, 5, 6, 1), out_channels=2), 9, True),
    "c3_3x3_c3": (dict(in_shape=(1, 5, 5, 3), out_channels=3, stride=(2, 2)), 27, True),
    # MLPerf kws's first layer: 40 taps, rows of whole groups (the long path's channel loop)
    "c1_10x4_kws": (dict(in_shape=(1, 13, 6, 1), out_channels=8, kernel=(10, 4),
                         stride=(2, 2)), 40, False),
    # 2 channels: 18 taps (even, padded to 24), stride 2, an odd pixel count
    "c2_3x3_even": (dict(in_shape=(1, 7, 5, 2), out_channels=5, stride=(2, 2)), 18, True),
    # 3 channels (resnet's first layer): 27 taps, stride 1, no bias
    "c3_3x3_odd": (dict(in_shape=(1, 6, 7, 3), out_channels=6, bias=False), 27, True),
    # a 5x5 window over 1 channel without padding, stride 2, ReLU
    "c1_5x5_valid": (dict(in_shape=(1, 11, 9, 1), out_channels=9, kernel=(5, 5), stride=(2, 2),
                          padding="VALID", activation="RELU"), 25, True),
    # 8 taps: one group exactly
    "c2_2x2_one_group": (dict(in_shape=(1, 6, 6, 2), out_channels=4, kernel=(2, 2)), 8, False),
}


def _first_layer(case: str, seed: int) -> Graph:
    """The case's conv, int4 weights over their whole range [-8, 7], and an output scale of
    about 16 accumulator units per output step (the builder's spans hundreds): a few units
    wrong in the accumulator change many outputs."""
    options, _, _ = FIRST_LAYERS[case]
    graph = gb.conv2d(np.random.default_rng(seed), weight_dtype=DType.INT4, **options)
    x, w, y = graph["x"], graph["w"], graph["y"]
    scale = gb.f32(x.quant.scale[0] * np.median(w.quant.scale) * 16.0).reshape(1)
    sharp = replace(y, quant=replace(y.quant, scale=scale))
    return Graph([*(t for t in graph.tensors.values() if t.name != "y"), sharp], graph.ops,
                 graph.inputs, graph.outputs, name=graph.name)


def _generate_first_layer(case: str, seed: int):
    """The case's graph and generated model, with the generator's mirror of the C dispatch
    checked: the widened path, its buffer sized for the window's groups, the op's own padded
    filter where the rows are no whole groups, the one-pixel path compiled out."""
    _, length, padded = FIRST_LAYERS[case]
    graph = _first_layer(case, seed)
    gen = generate(graph, seed=seed)
    assert gen.kernels == ["ek_conv2d_s4"]
    # the widened path, and its channel loop in assembly where the layer requantises in a
    # clamp-free fast form
    assert "conv2d_wide_s4_plain" in gen.path_helpers
    assert gen.path_helpers <= {"conv2d_wide_s4_plain", "s4_channels_full_asm",
                                "s4_channels_wide_full_asm"}
    config = gen.files["ek_model_config.h"]
    assert f"#define EK_CONV_WIDE_TAPS {8 * -(-length // 8)} " in config
    assert "#define EK_S4_CONV_PIXELS 0 " in config
    assert ("op000_conv_2d_filter[" in gen.files["model.c"]) == padded
    return graph, gen


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("case", sorted(FIRST_LAYERS))
def test_int4_first_layer_takes_the_widened_path_bit_exact(case, path, kernel_objects, tmp_path):
    for seed in range(2):
        graph, gen = _generate_first_layer(case, seed)
        run = run_on_host(gen, tmp_path / str(seed), defines=PATHS[path],
                          kernel_objects=kernel_objects[path])
        assert_matches_interpreter(graph, gen, run)


@pytest.mark.parametrize("case", ["c3_3x3_c3", "c2_3x3_even"])
def test_int4_first_layer_fits_the_buffer_its_build_sizes(case, tmp_path):
    # the kernels compiled under the model's ek_model_config.h (the shared kernel objects have
    # the default buffer): the window buffer the build sizes holds the widened windows
    graph, gen = _generate_first_layer(case, 4)
    run = run_on_host(gen, tmp_path, defines=PATHS["dsp"])
    assert_matches_interpreter(graph, gen, run)


def _two_convs(rng) -> Graph:
    """A first conv over 1 channel (3x3, 16 channels, ReLU) feeding a 3x3 stride-2 conv to 24
    channels: int8 weights, to be re-quantized per layer."""
    second = gb.conv2d(rng, in_shape=(1, 8, 9, 16), out_channels=24, stride=(2, 2))
    first = gb.conv2d(rng, in_shape=(1, 8, 9, 1), out_channels=16, activation="RELU")
    h = replace(second["x"], name="h")  # the first conv's output, in the second's quantization
    tensors = [first["x"], first["w"], first["bias"], h,
               *(replace(second[n], name=f"{n}2") for n in ("w", "bias", "y"))]
    ops = [replace(first.ops[0], inputs=["x", "w", "bias"], outputs=["h"], name="h"),
           replace(second.ops[0], inputs=["h", "w2", "bias2"], outputs=["y2"], name="y2")]
    return Graph(tensors, ops, ["x"], ["y2"], name="two_convs")


#: bits -> the two convs' kernels: an int8 conv beside an int4 one runs in the int4 unit where
#: its assembly takes it whole (tests/test_codegen_s8_via_s4.py): the second conv; the first,
#: whose ReLU clamps to a zero point above -128, keeps ek_conv.c's int8 kernel
MIXED = {"mixed:default=8,#0=4": ["ek_conv2d_s4", "ek_conv2d_s8_via_s4"],
         "mixed:default=4,#0=8": ["ek_conv2d_s8", "ek_conv2d_s4"],
         "4": ["ek_conv2d_s4", "ek_conv2d_s4"]}


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("bits", sorted(MIXED))
def test_mixed_model_with_an_int4_first_layer_is_bit_exact(bits, path, kernel_objects, tmp_path):
    graph = requantize_weights(_two_convs(np.random.default_rng(7)), bits)
    gen = generate(graph, seed=2)
    assert gen.kernels == MIXED[bits]
    # each layer's unit's widened path, and no other
    helpers = {"conv2d_wide_plain" if k == "ek_conv2d_s8" else "conv2d_wide_s4_plain"
               for k in MIXED[bits]}
    assert helpers == gen.path_helpers & {"conv2d_wide_plain", "conv2d_wide_s4_plain"}
    # one buffer for both translation units: the longer of the int4 window's 16 words and the
    # second conv's 144 taps
    assert "#define EK_CONV_WIDE_TAPS 144 " in gen.files["ek_model_config.h"]
    run = run_on_host(gen, tmp_path, defines=PATHS[path], kernel_objects=kernel_objects[path])
    assert_matches_interpreter(graph, gen, run)


def test_mixed_model_fits_the_buffer_its_build_sizes(tmp_path):
    graph = requantize_weights(_two_convs(np.random.default_rng(8)), "mixed:default=8,#0=4")
    gen = generate(graph, seed=3)
    run = run_on_host(gen, tmp_path, defines=PATHS["dsp"])
    assert_matches_interpreter(graph, gen, run)


def _fields(**overrides) -> dict:
    fields = {"k_h": 3, "k_w": 3, "in_c": 1, "out_c": 16, "dilation_w": 1, "filter_offset": 0,
              "effective_bias": object()}
    fields.update(overrides)
    return fields


def test_short_window_mirror_of_the_c_dispatch():
    plain, fused = "ek_conv2d_s4", "ek_conv2d_add_s4"
    # buffer words: 8 per group of 8 taps
    assert wide_window_taps(plain, _fields()) == 16
    assert wide_window_taps(plain, _fields(in_c=3)) == 32
    assert wide_window_taps(plain, _fields(in_c=2)) == 24
    assert wide_window_taps(plain, _fields(k_h=10, k_w=4)) == 40
    assert s4_rows_padded(plain, _fields()) and s4_rows_padded(plain, _fields(k_h=10, k_w=4))
    # the fused kernel keeps short windows on the one-pixel path, its rows TFLite's
    assert not wide_s4_path_applies(fused, _fields()) and s4_conv_pixels(fused, _fields())
    assert not s4_rows_padded(fused, _fields())
    assert wide_s4_path_applies(fused, _fields(in_c=8))
    # no short path: dilated rows, a window over 64 taps, one output channel, no effective bias
    for off in (_fields(dilation_w=2), _fields(in_c=3, k_h=5, k_w=5), _fields(out_c=1)):
        assert not wide_s4_path_applies(plain, off) and s4_conv_pixels(plain, off)
        assert not s4_rows_padded(plain, off)
    no_bias = _fields()
    del no_bias["effective_bias"]
    assert not wide_s4_path_applies(plain, no_bias)


def test_padded_rows_layout():
    # two channels of 3 taps: each row 8 nibbles (4 bytes), low nibble first, then the pad
    rows = np.array([[1, -2, 3], [-8, 7, 0]], dtype=np.int8)
    packed = padded_s4_rows(rows).view(np.uint8)
    assert packed.tolist() == [0xE1, 0x03, 0, 0, 0x78, 0x00, 0, 0, 0, 0, 0, 0]
