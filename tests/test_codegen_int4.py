"""Packed int4 weights in the generated C (the _s4 kernels): the MLPerf kws and resnet models
re-quantized to int4 and to mixed int8/int4 (`edgekit.converters.int4_requant`), compiled with
the host gcc on the portable kernels and on the emulated DSP path, against the reference
interpreter op by op; the interpreter against TFLite Micro on the written int4 `.tflite`; and
the packed arrays' layout and flash accounting."""

from __future__ import annotations

import numpy as np
import pytest

import graph_builders as gb
from conftest import HOST_KERNEL_DEFINES as PATHS, mlperf_path
from generated_c import assert_matches_interpreter
from edgekit.converters.int4_requant import requantize_weights
from edgekit.converters.tflite_reader import load_tflite, load_tflite_bytes
from edgekit.converters.tflite_writer import to_bytes
from edgekit.firmware.c_source import INT4_PAD_BYTES, packed_int4, stored_bytes
from edgekit.firmware.codegen import firmware_plan, generate
from edgekit.firmware.estimate import estimate_before_build
from edgekit.firmware.host_run import run_on_host
from edgekit.interpreter import Interpreter
from edgekit.ir import DType

pytestmark = pytest.mark.skipif(__import__("shutil").which("gcc") is None, reason="no host gcc")

#: (model, bits) cases: every layer int4, and mixed (the first layer int8: each its own kernel)
CASES = [("kws", "4"), ("kws", "mixed:default=4,#0=8"), ("resnet", "4"),
         ("resnet", "mixed:default=4,#0=8,#-1=8")]


def _graph(model: str, bits: str):
    graph = load_tflite(mlperf_path(model))
    if bits.endswith(",#-1=8"):  # the last layer int8 too
        layers = sum(op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
                     for op in graph.ops)
        bits = bits.replace("#-1", f"#{layers - 1}")
    # through the .tflite writer and reader: the firmware builds what a user's file holds
    return load_tflite_bytes(to_bytes(requantize_weights(graph, bits)))


def test_packed_layout_is_tflite_int4_low_nibble_first():
    values = np.array([1, -2, 7, -8, 3], dtype=np.int8)
    packed = packed_int4(values).view(np.uint8)
    assert packed[:3].tolist() == [0xE1, 0x87, 0x03] and packed[3:].tolist() == [0] * INT4_PAD_BYTES


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("model,bits", CASES)
def test_int4_model_is_bit_exact_op_by_op(model, bits, path, kernel_objects, tmp_path):
    graph = _graph(model, bits)
    gen = generate(graph, seed=3)
    kernels = {k for k in gen.kernels if k}
    assert any(k.endswith(("_s4", "_s4_inplace", "_s4_pointwise_inplace",
                           "_s4_pointwise_inplace_backward")) for k in kernels)
    # the int8 first layer, run by the int4 unit (ek_conv2d_s8_via_s4): no int8 convolution
    assert ("ek_conv2d_s8_via_s4" in kernels) == bits.startswith("mixed")
    assert "ek_conv2d_s8" not in kernels
    run = run_on_host(gen, tmp_path, defines=PATHS[path], kernel_objects=kernel_objects[path])
    assert_matches_interpreter(graph, gen, run, label=f"{model} {bits}")


@pytest.mark.parametrize("model,bits", CASES[:3])
def test_reference_interpreter_equals_tflite_micro_on_int4(model, bits):
    from oracle_runners import TflmRunner

    graph = _graph(model, bits)
    tflm = TflmRunner(to_bytes(graph))
    rng = np.random.default_rng(5)
    for _ in range(2):
        x = [rng.integers(-128, 128, size=graph[n].shape).astype(np.int8) for n in graph.inputs]
        assert [o.tobytes() for o in Interpreter(graph).run(x)] == [o.tobytes() for o in tflm(x)]


def test_flash_counts_packed_int4_bytes():
    graph = _graph("kws", "4")
    int8 = load_tflite(mlperf_path("kws"))
    gen, gen8 = generate(graph), generate(int8)
    weights = [t for t in graph.constants() if t.dtype == DType.INT4]
    saved = sum(t.size - t.nbytes for t in weights)
    assert saved > 0 and all(stored_bytes(t) == (t.size + 1) // 2 + INT4_PAD_BYTES for t in weights)
    before, before8 = estimate_before_build(gen, None), estimate_before_build(gen8, None)
    assert before8.constants_bytes - before.constants_bytes == saved - INT4_PAD_BYTES * len(weights)
    # the generated arrays hold exactly those bytes
    source = gen.files["model_weights.c"]
    for t in weights:
        assert f"[{stored_bytes(t)}]" in source


def _int4_single(graph):
    if graph["w"].dtype == DType.INT4:  # already int4 over the whole range, -8 included
        return graph
    return requantize_weights(graph, "4")


#: single ops whose int4 kernels take each path: DSP windows even and odd (3 input channels),
#: dilation, stride, VALID, odd output channels, no bias, a window too long for the DSP buffer
#: (portable), depthwise out of place with multiplier 1 (DSP word reads) and 2 (portable),
#: FULLY_CONNECTED over even and odd depths and several rows
SINGLE_OPS = {
    "conv_even": lambda r: gb.conv2d(r, in_shape=(1, 7, 6, 4), out_channels=6),
    "conv_odd_window": lambda r: gb.conv2d(r, in_shape=(1, 8, 8, 3), out_channels=7,
                                           stride=(2, 2)),
    "conv_dilated": lambda r: gb.conv2d(r, in_shape=(1, 9, 9, 2), out_channels=5,
                                        dilation=(2, 2), bias=False),
    "conv_valid_1x1": lambda r: gb.conv2d(r, in_shape=(1, 5, 5, 10), out_channels=3,
                                          kernel=(1, 1), padding="VALID"),
    "conv_long_window": lambda r: gb.conv2d(r, in_shape=(1, 4, 4, 80), out_channels=4),
    # the two-pixel path's longest window (576 taps: runs of 504 and 72), padding on every
    # side, an odd last channel, weights over [-8, 7]
    "conv_pairs_two_runs": lambda r: gb.conv2d(r, in_shape=(1, 5, 4, 64), out_channels=5,
                                               weight_dtype=DType.INT4),
    # 288 taps: two 256-tap runs; weights over [-8, 7] and extreme products
    "conv_two_runs_full_range": lambda r: gb.conv2d(r, in_shape=(1, 5, 5, 32), out_channels=3,
                                                    weight_dtype=DType.INT4),
    # the planner runs it in place (pointwise_inplace_backward): the DSP two-pixel x two-channel
    # path (x16 nibble lanes), odd pixel count and odd output channels, weights over [-8, 7]
    "conv_1x1_pairs_in_place": lambda r: gb.conv2d(r, in_shape=(1, 5, 5, 16), out_channels=23,
                                                   kernel=(1, 1), padding="VALID",
                                                   weight_dtype=DType.INT4),
    # the pair loop's widest input (504 channels: its x4096 sums stay inside int32; an odd
    # number of 4-byte steps) and the first too wide for it (512: the one-pixel loop)
    "conv_1x1_pairs_widest": lambda r: gb.conv2d(r, in_shape=(1, 3, 3, 504), out_channels=505,
                                                 kernel=(1, 1), padding="VALID",
                                                 weight_dtype=DType.INT4),
    "conv_1x1_pairs_too_wide": lambda r: gb.conv2d(r, in_shape=(1, 3, 3, 512), out_channels=513,
                                                   kernel=(1, 1), padding="VALID",
                                                   weight_dtype=DType.INT4),
    "depthwise": lambda r: gb.depthwise_conv2d(r, in_shape=(1, 6, 6, 8)),
    "depthwise_multiplier": lambda r: gb.depthwise_conv2d(r, in_shape=(1, 5, 5, 3),
                                                          multiplier=2, stride=(2, 2)),
    "fc_even": lambda r: gb.fully_connected(r, in_features=24, out_features=9),
    "fc_odd": lambda r: gb.fully_connected(r, in_features=13, out_features=4, bias=False),
}


PAIR_MODES = ("pointwise_inplace", "pointwise_inplace_backward")
PINNED_TO_PAIRS = {"conv_1x1_pairs_widest", "conv_1x1_pairs_too_wide"}


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("case", sorted(SINGLE_OPS))
def test_int4_single_op_is_bit_exact(case, path, kernel_objects, tmp_path):
    for seed in range(2):
        graph = _int4_single(SINGLE_OPS[case](np.random.default_rng(seed)))
        # wide layers would slide in place (no scratch): pin the pair loop's modes
        plan = (firmware_plan(graph, inplace=PAIR_MODES) if case in PINNED_TO_PAIRS else None)
        gen = generate(graph, plan, seed=seed)
        assert any("_s4" in k for k in gen.kernels)
        if case.startswith("conv_1x1_pairs"):
            assert gen.kernels == ["ek_conv2d_s4_pointwise_inplace_backward"]
        run = run_on_host(gen, tmp_path / str(seed), defines=PATHS[path],
                          kernel_objects=kernel_objects[path])
        assert run.outputs == gen.expected_outputs, f"{case} seed {seed} on {path}"


def test_plan_reports_packed_int4_weights(tmp_path, capsys):
    import json

    from edgekit.cli import main

    path = tmp_path / "kws4.tflite"
    graph = _graph("kws", "4")
    path.write_bytes(to_bytes(graph))
    assert main(["plan", str(path), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    int8 = load_tflite(mlperf_path("kws"))
    assert payload["weights_bytes"] == graph.weights_bytes
    assert payload["int4_saved_bytes"] == int8.weights_bytes - graph.weights_bytes > 0
    assert payload["int4_ops"] == sum(graph[op.inputs[1]].dtype == DType.INT4
                                      for op in graph.ops if len(op.inputs) > 1)
    assert payload["int4_split_kinds"] == []
    # kws's pointwise CONV_2D layers int4, its first (a CONV_2D too) int8: both families linked
    path.write_bytes(to_bytes(requantize_weights(load_tflite(mlperf_path("kws")),
                                                 "mixed:default=8,#2=4")))
    assert main(["plan", str(path)]) == 0
    assert "int8 and int4 layers of CONV_2D: both kernel families" in capsys.readouterr().out


def test_search_flash_model_counts_packed_int4_constants():
    from edgekit.nas.codesize import graph_features

    int8, int4 = load_tflite(mlperf_path("kws")), _graph("kws", "4")
    weights = [t for t in int4.constants() if t.dtype == DType.INT4]
    saved = sum(t.size - stored_bytes(t) for t in weights)
    assert graph_features(int8)["constants"] - graph_features(int4)["constants"] == saved
    # and the firmware estimate counts the same constants
    assert (estimate_before_build(generate(int4), None).constants_bytes
            == graph_features(int4)["constants"])


@pytest.mark.parametrize("model,bits,taps", [("kws", "4", 64), ("resnet", "4", 64),
                                             ("kws", "mixed:default=8", 16)])
def test_window_buffer_is_sized_to_the_models_longest_window(model, bits, taps):
    # kws: 1x1 convs over 64 channels (its first conv's window is 40); resnet: its first conv's
    # odd window (27 taps, two halves of 32: its 3x3 convs take the two-pixel path, sized by
    # EK_CONV_WIDE_TAPS); an int8 model needs none (the smallest buffer)
    gen = generate(_graph(model, bits))
    assert f"#define EK_S4_WINDOW_TAPS {taps} " in gen.files["ek_model_config.h"]


def test_an_odd_window_takes_two_halves():
    from edgekit.firmware.op_emitters import s4_window_taps

    fields = {"filter_offset": 0, "k_h": 3, "k_w": 3, "in_c": 3}
    assert s4_window_taps("ek_conv2d_s4", fields) == 2 * 32  # 27 taps + 1, in groups of 8
    assert s4_window_taps("ek_conv2d_s4_pointwise_inplace", {**fields, "k_h": 1, "k_w": 1}) == 0
    assert s4_window_taps("ek_conv2d_s8", fields) == 0
    assert s4_window_taps("ek_conv2d_s4", {**fields, "in_c": 80}) == 0  # 720 taps: portable


def test_int4_right_shifts_of_1_take_the_fast_requantisation():
    """kws re-rounded to int4 has channels with a right shift of 1 (its first conv and two
    depthwise layers): the _s4 kernels' fast forms take them (EK_REQUANT_SHORTEST 1), so the
    build needs neither the 1x1 loops in C nor the pair ring's rows in C; the int8 kernels' forms
    start at 2, so the same shifts there keep the exact form."""
    from edgekit.firmware.op_emitters import requant_fast_everywhere, requant_shortest

    graph = _graph("kws", "4")
    firmware = generate(graph)
    config = firmware.files["ek_model_config.h"]
    assert "#define EK_PW_LOOPS 0 " in config and "#define EK_DW_PAIRS_C 0 " in config
    shifts = [values["shifts"] for kernel, values in firmware.kernel_calls if "_s4" in kernel]
    assert any((s == -1).any() for s in shifts)  # the case this is about is there
    assert requant_shortest("ek_depthwise_conv2d_s4_inplace") == 1
    assert requant_shortest("ek_depthwise_conv2d_s8_inplace") == 2
    assert requant_fast_everywhere([1 << 30], [-1], 23, 1)
    assert not requant_fast_everywhere([1 << 30], [-1], 23, 2)
