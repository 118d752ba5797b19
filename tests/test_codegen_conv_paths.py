"""The generator's mirror of ek_conv.c's int8 CONV_2D dispatch (`edgekit.firmware.op_emitters`):
`wide_path_applies`, `pairs_path_applies`, `conv_pixels`, `wide_window_taps` and
`short_rows_readers` against the C predicates they mirror (``conv_wide_apply``,
``conv_pairs_apply``, ``wide_short_words``, ``wide_plan_applies``), compiled from ek_conv.c
itself, on random layers and on every CONV_2D of the MLPerf models. A build compiles out the
paths its calls do not take (EK_CONV_PIXELS, EK_CONV_PAIRS_PATH, EK_CONV_SHORT_ROWS): a wrong
mirror would leave a layer on a slower path (the same bytes, many more instructions). Without
EK_CONV_WIDE_TAIL a window of a part group would run the whole-group loop (wrong bytes or a
fault: hil_tests/test_channel_loops_asm_emulated.py builds the cases that need it)."""

from __future__ import annotations

import ctypes
import random

import pytest

from c_kernels import build_library
from conftest import HOST_KERNEL_DEFINES, mlperf_path
from edgekit.converters.tflite_reader import load_tflite
from edgekit.firmware.codegen import generate
from edgekit.firmware.op_emitters import (WIDE_TAPS_MAX, conv_pixels, pairs_path_applies,
                                          short_rows_readers, wide_path_applies,
                                          wide_tail, wide_window_taps)

# the C predicates, on a params struct made from plain ints (statics of ek_conv.c: included)
SHIM = """
#include "ek_conv.c"
static ek_conv2d_params make(int32_t in_c, int32_t k_h, int32_t k_w, int32_t out_c,
                             int32_t dilation_w, int32_t filter_offset, int32_t has_bias)
{
    static const int32_t eb[1];
    ek_conv2d_params p;
    memset(&p, 0, sizeof p);
    p.in_c = in_c; p.k_h = k_h; p.k_w = k_w; p.out_c = out_c;
    p.dilation_w = dilation_w; p.filter_offset = filter_offset;
    p.effective_bias = has_bias ? eb : 0;
    return p;
}
int wide_applies(int32_t in_c, int32_t k_h, int32_t k_w, int32_t out_c, int32_t dilation_w,
                 int32_t filter_offset, int32_t has_bias)
{
    const ek_conv2d_params p = make(in_c, k_h, k_w, out_c, dilation_w, filter_offset, has_bias);
    return conv_wide_apply(&p);
}
int pairs_applies(int32_t in_c, int32_t k_h, int32_t k_w, int32_t out_c, int32_t dilation_w,
                  int32_t filter_offset, int32_t has_bias)
{
    const ek_conv2d_params p = make(in_c, k_h, k_w, out_c, dilation_w, filter_offset, has_bias);
    return conv_pairs_apply(&p);
}
int short_window_words(int32_t in_c, int32_t k_h, int32_t k_w)
{
    const ek_conv2d_params p = make(in_c, k_h, k_w, 2, 1, 0, 1);
    return wide_short_words(&p, k_h * k_w * in_c);
}
int plan_applies(int32_t in_c, int32_t k_h, int32_t k_w, int32_t in_w, int32_t dilation_h)
{
    ek_conv2d_params p = make(in_c, k_h, k_w, 2, 1, 0, 1);
    p.in_w = in_w;
    p.dilation_h = dilation_h;
    return wide_plan_applies(&p);
}
"""


@pytest.fixture(scope="module")
def c_dispatch():
    defines = (*HOST_KERNEL_DEFINES["dsp"], f"EK_CONV_WIDE_TAPS={WIDE_TAPS_MAX}")
    return build_library([], defines=defines, shim="#include <string.h>\n" + SHIM)


def _check(lib, fields: dict) -> None:
    args = [ctypes.c_int32(fields[k]) for k in ("in_c", "k_h", "k_w", "out_c", "dilation_w",
                                                   "filter_offset")]
    args.append(ctypes.c_int32(int("effective_bias" in fields)))
    wide, pairs = bool(lib.wide_applies(*args)), bool(lib.pairs_applies(*args))
    assert wide_path_applies(fields) == wide, fields
    assert pairs_path_applies(fields) == (pairs and not wide), fields
    pixels = fields["filter_offset"] == 0 and not wide and not pairs
    assert conv_pixels("ek_conv2d_s8", fields) == pixels, fields
    assert conv_pixels("ek_conv2d_add_s8", fields) == pixels, fields
    in_c, k_h, k_w = fields["in_c"], fields["k_h"], fields["k_w"]
    if "has_bias" not in fields:  # unknown: counted as none, so the C loop may run
        assert wide_tail("ek_conv2d_s8", fields) == (wide and k_h * k_w * in_c % 4 != 0), fields
    assert not wide_tail("ek_conv2d_s4", fields)  # the int4 loops take whole groups of 8
    if wide and in_c % 4 != 0:  # a short window: its buffer with the plan, the plan's reader
        assert wide_window_taps("ek_conv2d_s8", fields) == lib.short_window_words(in_c, k_h, k_w)
        plan = bool(lib.plan_applies(in_c, k_h, k_w, fields["in_w"], fields["dilation_h"]))
        assert short_rows_readers("ek_conv2d_s8", fields) & 1 == plan, fields


def test_mirror_on_random_layers(c_dispatch):
    rng = random.Random(0)
    for _ in range(3000):
        fields = {"in_c": rng.choice([1, 2, 3, 4, 5, 8, 12, 16, 24, 32, 64, 65, 96]),
                  "k_h": rng.randint(1, 7), "k_w": rng.randint(1, 7),
                  "out_c": rng.choice([1, 2, 3, 8]), "dilation_w": rng.choice([1, 1, 2]),
                  "filter_offset": rng.choice([0, 0, 0, 3]), "in_w": rng.randint(1, 9),
                  "dilation_h": rng.choice([1, 1, 2])}
        if rng.random() < 0.7:
            fields["effective_bias"] = object()
        _check(c_dispatch, fields)


@pytest.mark.parametrize("model", ["kws", "resnet", "vww"])  # ad01 has no CONV_2D
def test_mirror_on_the_mlperf_convolutions(c_dispatch, model):
    gen = generate(load_tflite(mlperf_path(model)), seed=0)
    calls = [(k, f) for k, f in gen.kernel_calls if k in ("ek_conv2d_s8", "ek_conv2d_add_s8")]
    assert calls
    for _, fields in calls:
        _check(c_dispatch, fields)
    pixels = any(conv_pixels(kernel, fields) for kernel, fields in calls)
    assert f"#define EK_CONV_PIXELS {int(pixels)} " in gen.files["ek_model_config.h"]
    # the first layers: 3x3 over RGB (rows of 9 bytes: the plan), kws's 10x4 over one channel
    # (rows of one word); resnet's 3x3 layers over 16-64 channels (rows of whole words)
    short_rows = {"kws": 2, "resnet": 3, "vww": 1}[model]
    assert f"#define EK_CONV_SHORT_ROWS {short_rows} " in gen.files["ek_model_config.h"]
    # kws's 40-tap windows are whole groups; the 27-tap ones (3x3x3) of resnet and vww run
    # every channel pair in the assembly (even channels, full range, a bias): no C tail loop
    assert "#define EK_CONV_WIDE_TAIL 0 " in gen.files["ek_model_config.h"]
