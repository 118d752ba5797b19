"""Two more of the generator's mirrors of the C dispatch (`edgekit.firmware.op_emitters`),
checked against the C they mirror, compiled from ek_conv.c as itself (int8) and as ek_conv_s4.c
(int4):

- `pointwise_surely_pairs` against ``pw_pairs_apply``: a build whose in-place pointwise calls
  all take the two-pixel loop compiles the one-pixel loop out (EK_PW_ONLY_PAIRS), so a mirror
  that said yes where C says no would leave a layer without a loop (wrong bytes);
- `s4_rows_padded` against ``ek_s4_rows_padded``: the generator pads an int4 filter's rows
  exactly where the kernels read them padded."""

from __future__ import annotations

import ctypes
import random

import numpy as np
import pytest

from c_kernels import build_library
from conftest import HOST_KERNEL_DEFINES, mlperf_path
from generated_c import assert_matches_interpreter
from test_token_inplace import token_fc_graph
from edgekit.converters.tflite_reader import load_tflite
from edgekit.firmware.codegen import generate
from edgekit.firmware.host_run import run_on_host
from edgekit.firmware.op_emitters import pointwise_surely_pairs, s4_rows_padded

SHIM = """
#include <string.h>
#include "{source}"
int pairs_applies(int32_t in_c, int32_t out_c, int32_t filter_offset, int32_t has_bias,
                  int32_t wide_scratch)
{{
    static const int32_t eb[1];
    ek_conv2d_params p;
    memset(&p, 0, sizeof p);
    p.in_c = in_c; p.out_c = out_c; p.filter_offset = filter_offset;
    p.effective_bias = has_bias ? eb : 0;
    p.wide_scratch = wide_scratch;
    return pw_pairs_apply(&p);
}}
int rows_padded(int32_t in_c, int32_t len, int32_t out_c, int32_t dilation_w,
                int32_t filter_offset, int32_t has_bias)
{{
    static const int32_t eb[1];
    return ek_s4_rows_padded(in_c, len, out_c, dilation_w, filter_offset, has_bias ? eb : 0);
}}
"""

KERNELS = {"ek_conv.c": "ek_conv2d_s8_pointwise_inplace",
           "ek_conv_s4.c": "ek_conv2d_s4_pointwise_inplace"}


@pytest.fixture(scope="module", params=sorted(KERNELS))
def c_dispatch(request):
    lib = build_library([], defines=HOST_KERNEL_DEFINES["dsp"],
                        shim=SHIM.format(source=request.param))
    return KERNELS[request.param], lib


def _random_fields(rng: random.Random) -> dict:
    fields = {"in_c": rng.choice([1, 3, 4, 8, 12, 16, 24, 64, 500, 504, 512, 520]),
              "out_c": rng.choice([1, 2, 3, 16]), "filter_offset": rng.choice([0, 0, 0, 2]),
              "k_h": rng.choice([1, 3]), "k_w": rng.choice([1, 3]),
              "dilation_w": rng.choice([1, 1, 2])}
    if rng.random() < 0.8:
        fields["effective_bias"] = object()
    if rng.random() < 0.8:
        fields["wide_scratch"] = 1
    return fields


def test_pointwise_pairs_mirror_on_random_layers(c_dispatch):
    kernel, lib = c_dispatch
    rng = random.Random(0)
    for _ in range(2000):
        f = _random_fields(rng)
        c = lib.pairs_applies(f["in_c"], f["out_c"], f["filter_offset"],
                              int("effective_bias" in f), f.get("wide_scratch", 0))
        for direction in ("", "_backward"):
            assert pointwise_surely_pairs(kernel + direction, f) == bool(c), f
    assert not pointwise_surely_pairs("ek_conv2d_s8", {"in_c": 8})


def test_padded_rows_mirror_on_random_layers(c_dispatch):
    _, lib = c_dispatch
    rng = random.Random(1)
    for _ in range(2000):
        f = _random_fields(rng)
        length = f["k_h"] * f["k_w"] * f["in_c"]
        c = lib.rows_padded(f["in_c"], length, f["out_c"], f["dilation_w"], f["filter_offset"],
                            int("effective_bias" in f))
        assert s4_rows_padded("ek_conv2d_s4", f) == bool(c), f
        # only the plain int4 kernel's rows: the ADD-fused one and int8 filters keep theirs
        assert not s4_rows_padded("ek_conv2d_add_s4", f)
        assert not s4_rows_padded("ek_conv2d_s8", f)


def test_kws_pointwise_runs_only_the_pairs_loop():
    """Every in-place 1x1 of kws (64 channels) takes the two-pixel loop: the build leaves the
    one-pixel loop out."""
    gen = generate(load_tflite(mlperf_path("kws")), seed=0)
    calls = [(k, f) for k, f in gen.kernel_calls if "_pointwise_inplace" in k]
    assert calls and all(pointwise_surely_pairs(k, f) for k, f in calls)
    assert "#define EK_PW_ONLY_PAIRS 1 " in gen.files["ek_model_config.h"]


def test_a_pointwise_call_off_the_pairs_loop_keeps_the_pixel_loop(tmp_path):
    """Tokens through a FULLY_CONNECTED in place have no 4 * C_in scratch for the pairs: the
    one-pixel loop stays in the build, and runs bit-exact under the model's own configuration
    on the emulated DSP path."""
    graph = token_fc_graph(np.random.default_rng(0), 7, 24, 10)
    gen = generate(graph, seed=0)
    calls = [(k, f) for k, f in gen.kernel_calls if "_pointwise_inplace" in k]
    assert calls and not any(pointwise_surely_pairs(k, f) for k, f in calls)
    assert "#define EK_PW_ONLY_PAIRS 0 " in gen.files["ek_model_config.h"]
    run = run_on_host(gen, tmp_path, defines=HOST_KERNEL_DEFINES["dsp"])
    assert_matches_interpreter(graph, gen, run)


@pytest.mark.parametrize("variant", ["portable", "dsp"])
def test_kws_pointwise_filters_are_paired_and_run_bit_exact(variant, tmp_path):
    """kws's in-place 1x1 layers (64 channels, the two-pixel loop) get their filters in the
    paired layout, the op's own array in place of the tensor's; the model runs bit-exact on
    the host's emulated DSP loop and on the portable one-pixel loop over the paired rows (the
    path of the cores without DSP)."""
    from edgekit.firmware.op_emitters import pair_pointwise_filter

    graph = load_tflite(mlperf_path("kws"))
    gen = generate(graph, seed=0)
    calls = [f for k, f in gen.kernel_calls if k.startswith("ek_conv2d_s8_pointwise_inplace")]
    assert calls and all(f.get("paired_filter") == 1 for f in calls)
    assert "#define EK_PW_PAIRED 1 " in gen.files["ek_model_config.h"]
    # the paired array holds the same bytes as the tensor, rows 2j and 2j + 1 word by word
    weights = next(graph[op.inputs[1]].data for op in graph.ops
                   if op.kind == "CONV_2D" and graph[op.inputs[1]].shape[1:3] == (1, 1))
    paired = pair_pointwise_filter(weights).reshape(32, 16, 2, 4)
    rows = weights.reshape(64, 16, 4)
    assert np.array_equal(paired[:, :, 0], rows[0::2]) and np.array_equal(paired[:, :, 1],
                                                                           rows[1::2])
    run = run_on_host(gen, tmp_path, defines=HOST_KERNEL_DEFINES[variant])
    assert_matches_interpreter(graph, gen, run)


def test_paired_config_is_per_build():
    """EK_PW_PAIRED: 0 without a paired filter (its code left out), 1 when every int8 call of
    the two-pixel loop has one, 2 when only some do (an odd out_c keeps its OHWI rows)."""
    from edgekit.firmware.op_emitters import CallConfig, pointwise_paired_config

    base = {"in_c": 16, "filter_offset": 0, "effective_bias": 1, "wide_scratch": 1,
            "k_h": 1, "k_w": 1}
    even = CallConfig.of_call("ek_conv2d_s8_pointwise_inplace",
                              {**base, "out_c": 8, "paired_filter": 1})
    odd = CallConfig.of_call("ek_conv2d_s8_pointwise_inplace", {**base, "out_c": 9})
    int4 = CallConfig.of_call("ek_conv2d_s4_pointwise_inplace", {**base, "out_c": 8})
    assert (even.paired, odd.paired, int4.paired) == (True, False, None)
    assert pointwise_paired_config([even, int4]) == 1
    assert pointwise_paired_config([even, odd]) == 2
    assert pointwise_paired_config([odd, int4]) == 0
