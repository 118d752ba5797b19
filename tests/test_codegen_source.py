"""The generated sources themselves: the arena is the plan's, every tensor sits at its planned
offset, one function per op in schedule order, params are the reference's numbers, constants
are const, and what the generator cannot emit is refused with a message naming it."""

from __future__ import annotations

import re

import numpy as np
import pytest

import graph_builders as gb
from conftest import mlperf_path
from edgekit import planner
from edgekit.converters.tflite_reader import load_tflite
from edgekit.errors import UnsupportedError
from edgekit.firmware.codegen import available_inplace_modes, firmware_plan, generate
from edgekit.interpreter import Interpreter
from edgekit.ir import DType


@pytest.fixture(scope="module")
def kws():
    graph = load_tflite(mlperf_path("kws"))
    return graph, generate(graph, seed=3)


def test_arena_is_exactly_the_plan(kws):
    graph, gen = kws
    header, source = gen.files["model.h"], gen.files["model.c"]
    assert f"#define EK_MODEL_ARENA_BYTES {gen.plan.arena_bytes}u" in header
    assert "EDGEKIT_ARENA(ek_arena, EK_MODEL_ARENA_BYTES);" in source
    assert source.count("EDGEKIT_ARENA(") == 1
    for forbidden in ("malloc", "calloc", "free(", "tflite", "Interpreter"):
        assert forbidden not in source


def test_every_tensor_is_at_its_planned_offset(kws):
    graph, gen = kws
    offsets = dict(re.findall(r"#define (T\d+_\w+) \(\(\w+ \*\)&ek_arena\[(\d+)\]\)",
                              gen.files["model.c"]))
    assert len(offsets) == len(gen.plan.buffers)
    for name, buf in gen.plan.buffers.items():
        index = list(graph.tensors).index(name)
        macro = next(m for m in offsets if m.startswith(f"T{index}_"))
        assert int(offsets[macro]) == buf.offset


def test_one_function_per_op_called_in_schedule_order(kws):
    graph, gen = kws
    source = gen.files["model.c"]
    defined = re.findall(r"EK_OP_FUNCTION void (op(\d+)_\w+)\(void\)", source)
    run_body = source[source.index("int edgekit_payload_run(void)"):]
    called = re.findall(r"    (op(\d+)_\w+)\(\);", run_body)
    assert [int(i) for _, i in called] == gen.plan.schedule
    assert sorted(name for name, _ in defined) == sorted(name for name, _ in called)


def test_params_are_the_reference_numbers(kws):
    graph, gen = kws
    prepared = Interpreter(graph).prepared
    source = gen.files["model.c"]
    for index, op in enumerate(graph.ops):
        if op.kind not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        fn = f"op{index:03d}_{op.kind.lower()}"
        for field in ("multipliers", "shifts"):
            body = re.search(rf"{fn}_{field}\[\d+\][^=]*= \{{(.*?)\}};", source, re.S).group(1)
            values = [int(v) for v in body.replace("\n", " ").split(",")]
            assert values == list(getattr(prepared[index], field))
        block = re.search(rf"{fn}_params = \{{(.*?)\n\}};", source, re.S).group(1)
        fields = dict(re.findall(r"\.(\w+) = (-?\d+),", block))
        p = prepared[index]
        if op.kind == "FULLY_CONNECTED" and p.filter_offset == 0:
            # the input offset is folded into the bias the call passes (op_emitters)
            assert int(fields["input_offset"]) == 0
            body = re.search(rf"{fn}_effective_bias\[\d+\][^=]*= \{{(.*?)\}};", source, re.S).group(1)
            w, bias = graph[op.inputs[1]].data, graph[op.inputs[2]].data
            folded = bias.astype(np.int64) + p.input_offset * w.astype(np.int64).sum(axis=1)
            assert [int(v) for v in body.replace("\n", " ").split(",")] == list(folded)
            assert re.search(rf"ek_fully_connected_s8\(&{fn}_params, [^,]+, [^,]+, {fn}_effective_bias,", source)
        else:
            assert int(fields["input_offset"]) == p.input_offset
        assert int(fields["output_offset"]) == p.output_offset
        assert (int(fields["act_min"]), int(fields["act_max"])) == (p.act_min, p.act_max)


def test_weights_are_const_and_comments_give_shapes_and_quantization(kws):
    graph, gen = kws
    weights = gen.files["model_weights.c"]
    definitions = re.findall(r"^(.*) ek_w_\w+\[\d+\]", weights, re.M)
    assert definitions and all(d.startswith("const ") for d in definitions)
    used = {n for op in graph.ops for n in op.present_inputs() if graph[n].is_constant}
    # kws's FULLY_CONNECTED (768 MACs) keeps its row-major filter: the interleaved layout's
    # code would not pay for itself (op_emitters.FC_INTERLEAVE_MIN_MACS), and is compiled out
    assert len(definitions) == len(used)
    source = gen.files["model.c"]
    assert not re.findall(r"op\d+_fully_connected_filter\[", source)
    assert "#define EK_FC_INTERLEAVED 0" in gen.files["ek_model_config.h"]
    source = gen.files["model.c"]
    assert "1x49x10x1 int8, scale" in source  # the input's shape and quantization
    assert "per-channel on axis 0" in source
    assert "in place (depthwise_channelwise)" in source


def test_expected_outputs_are_the_interpreters(kws):
    graph, gen = kws
    outputs = Interpreter(graph).run(gen.test_inputs)
    assert gen.expected_outputs == [np.ascontiguousarray(o).tobytes() for o in outputs]


def test_plan_uses_only_modes_with_kernels():
    graph = load_tflite(mlperf_path("resnet"))
    plan = firmware_plan(graph)
    modes = {b.inplace_mode for b in plan.buffers.values() if b.inplace_mode}
    assert modes <= available_inplace_modes()


def test_batch_two_is_refused_naming_the_tensor():
    graph = gb.fully_connected(np.random.default_rng(0), batch=2)
    with pytest.raises(UnsupportedError, match=r"batch size 2.*batch 1"):
        generate(graph)


def test_int16_convolution_is_refused_naming_the_op():
    graph = gb.conv2d(np.random.default_rng(0), act_dtype=DType.INT16)
    with pytest.raises(UnsupportedError, match=r"CONV_2D.*int16"):
        generate(graph)


def test_int4_weights_are_packed_and_run_by_the_s4_kernel():
    graph = gb.conv2d(np.random.default_rng(0), weight_dtype=DType.INT4)
    gen = generate(graph)
    assert "ek_conv2d_s4" in gen.kernels
    w = graph["w"]
    assert f"[{(w.size + 1) // 2 + 4}]" in gen.files["model_weights.c"]


def test_a_plan_of_another_graph_is_refused():
    rng = np.random.default_rng(0)
    a, b = gb.relu(rng), gb.relu(rng)
    with pytest.raises(UnsupportedError, match="another graph"):
        generate(a, planner.plan(b))


def test_wrong_test_input_shape_is_refused():
    graph = gb.relu(np.random.default_rng(0))
    from edgekit.errors import InterpreterError
    with pytest.raises(InterpreterError, match="expected shape"):
        generate(graph, test_inputs=[np.zeros((1, 2), np.int8)])


def test_an_in_place_mode_the_generator_does_not_implement_is_refused():
    import dataclasses

    graph = gb.relu(np.random.default_rng(0))
    plan = planner.plan(graph, inplace=False)
    out = graph.ops[0].outputs[0]
    plan.buffers[out] = dataclasses.replace(plan.buffers[out], inplace_mode="made_up_mode")
    with pytest.raises(UnsupportedError, match="made_up_mode"):
        generate(graph, plan)


def test_effective_bias_folds_the_input_offset():
    from edgekit.firmware.op_emitters import effective_bias

    w = np.array([[[[1, -2]]], [[[127, 127]]]], dtype=np.int8)
    bias = np.array([5, 2**31 - 1], dtype=np.int32)
    got = effective_bias(w, bias, 128)
    assert got.tolist() == [5 + 128 * -1, -(2**31) + 128 * 254 - 1]


@pytest.mark.parametrize("units, depth, interleaved", [(32, 128, True), (12, 64, False)])
def test_a_large_fully_connected_takes_the_interleaved_layout(units, depth, interleaved):
    """From `FC_INTERLEAVE_MIN_MACS` MACs the filter is re-laid out (its op's own array) and
    the model's config links the interleaved loop; below, neither."""
    from edgekit.firmware.op_emitters import FC_INTERLEAVE_MIN_MACS

    assert (units * depth >= FC_INTERLEAVE_MIN_MACS) == interleaved
    graph = gb.fully_connected(np.random.default_rng(1), batch=1, in_features=depth,
                               out_features=units)
    gen = generate(graph, seed=1)
    arrays = re.findall(r"op\d+_fully_connected_filter\[", gen.files["model.c"])
    assert len(arrays) == int(interleaved)
    assert f"#define EK_FC_INTERLEAVED {int(interleaved)}" in gen.files["ek_model_config.h"]


def test_kws_depthwise_runs_only_the_quad_ring_and_links_nothing_else(kws):
    """Every in-place depthwise call of kws (3x3, 64 channels, 25x5 planes) surely takes the
    four-channel ring on DSP cores: the config leaves the other in-place kernels out."""
    from edgekit.firmware.op_emitters import depthwise_surely_quad

    graph, gen = kws
    assert "#define EK_DW_ONLY_QUAD 1" in gen.files["ek_model_config.h"]
    fields = {"in_h": 25, "in_w": 5, "in_c": 64, "out_h": 25, "out_w": 5, "k_h": 3, "k_w": 3,
              "stride_h": 1, "stride_w": 1, "dilation_h": 1, "dilation_w": 1, "pad_top": 1,
              "depth_multiplier": 1, "filter_offset": 0}
    kernel = "ek_depthwise_conv2d_s8_inplace"
    assert depthwise_surely_quad(kernel, fields)
    assert depthwise_surely_quad("ek_depthwise_conv2d_s4_inplace", fields)
    assert not depthwise_surely_quad("ek_depthwise_conv2d_s8", fields)  # not in place
    for change in ({"k_h": 5, "k_w": 5}, {"in_c": 62}, {"filter_offset": 3}, {"stride_w": 3},
                   {"dilation_h": 2},
                   {"in_h": 3, "out_h": 3, "out_w": 60, "in_w": 60}):  # ring > plane and stack
        assert not depthwise_surely_quad(kernel, {**fields, **change}), change


def test_the_stack_ring_is_sized_to_the_builds_largest_user(kws):
    """EK_DW_QUAD_STACK_WORDS: kws's 3x3 layers keep the pair ring on the stack (3 slots of 4
    sub-rows of 4 words, a 7-column row in pairs, and the word a last partial block reads past
    the last), and the build sizes it to that, not to the default; a layer whose ring the
    scratch plane holds needs none, one whose pair ring and widened ring are too wide for the
    cap takes the byte ring, and one too wide for that none."""
    from edgekit.firmware.op_emitters import DW_QUAD_STACK_WORDS, depthwise_quad_stack_words

    _, gen = kws
    assert "#define EK_DW_QUAD_STACK_WORDS 49 " in gen.files["ek_model_config.h"]
    kernel = "ek_depthwise_conv2d_s8_inplace"
    layer = {"in_c": 32, "depth_multiplier": 1, "filter_offset": 0, "k_h": 3, "k_w": 3,
             "stride_w": 1, "dilation_h": 1, "dilation_w": 1}

    def words(h: int, w: int) -> int:
        return depthwise_quad_stack_words(kernel, {**layer, "in_h": h, "in_w": w,
                                                   "out_h": h, "out_w": w})
    assert words(48, 48) == 0  # 8 * 150 words' bytes fit the 48x48 plane
    assert words(24, 24) == 12 * 13 <= DW_QUAD_STACK_WORDS  # vww's 24x24 layers: 26 columns
    halved = {**layer, "stride_w": 2, "in_h": 6, "in_w": 6, "out_h": 3, "out_w": 3}
    assert depthwise_quad_stack_words(kernel, halved) == 12 * 4 + 1  # 7 columns, slack 1
    assert words(3, 40) == 3 * 42  # the widened ring over the cap: the byte ring
    assert words(3, 60) == 0  # neither fits
    assert depthwise_quad_stack_words("ek_depthwise_conv2d_s8", {**layer, "in_h": 24,
                                      "in_w": 24, "out_h": 24, "out_w": 24}) == 0


def test_a_model_whose_depthwise_calls_surely_take_the_pair_ring_leaves_the_others_out(kws):
    """EK_DW_ONLY_PAIRS: kws's 3x3 layers surely take the pair ring (on the stack), so its build
    leaves the byte and widened four-channel rings out; a layer whose pair ring fits neither the
    plane nor the stack buffer keeps them (`depthwise_surely_pairs`)."""
    from edgekit.firmware.op_emitters import depthwise_surely_pairs, depthwise_surely_quad

    _, gen = kws
    assert "#define EK_DW_ONLY_PAIRS 1 " in gen.files["ek_model_config.h"]
    kernel = "ek_depthwise_conv2d_s8_inplace"
    layer = {"in_c": 32, "depth_multiplier": 1, "filter_offset": 0, "k_h": 3, "k_w": 3,
             "stride_w": 1, "stride_h": 1, "dilation_h": 1, "dilation_w": 1, "pad_top": 1}
    small = {**layer, "in_h": 24, "in_w": 24, "out_h": 24, "out_w": 24}
    wide = {**layer, "in_h": 3, "in_w": 40, "out_h": 3, "out_w": 40}  # 252 words: the byte ring
    assert depthwise_surely_pairs(kernel, small)
    assert depthwise_surely_quad(kernel, wide) and not depthwise_surely_pairs(kernel, wide)


def test_a_model_no_depthwise_call_of_which_may_take_the_quad_ring_leaves_it_out(kws):
    """EK_DW_QUAD: kws's 3x3 layers may take the four-channel ring; a 1-D kernel (EmbBERT's
    causal convolution), a 5x5 window, a channel count that is no multiple of 4 or a filter
    offset may not (`depthwise_maybe_quad` mirrors dw_quad_applies), and a model of only such
    calls links none of the ring's code; the generated C of such a model runs op by op equal
    to the reference interpreter on the emulated DSP path (hil and EmbBERT tests build it)."""
    from edgekit.firmware.op_emitters import depthwise_maybe_quad

    _, gen = kws
    assert "#define EK_DW_QUAD 1 " in gen.files["ek_model_config.h"]
    fields = {"in_c": 64, "k_h": 3, "k_w": 3, "stride_w": 1, "depth_multiplier": 1,
              "filter_offset": 0}
    kernel = "ek_depthwise_conv2d_s8_inplace"
    assert depthwise_maybe_quad(kernel, fields)
    assert not depthwise_maybe_quad("ek_depthwise_conv2d_s8", fields)  # not in place
    for change in ({"k_h": 1, "k_w": 5}, {"k_h": 5, "k_w": 5}, {"in_c": 62},
                   {"filter_offset": 3}, {"stride_w": 3}, {"depth_multiplier": 2}):
        assert not depthwise_maybe_quad(kernel, {**fields, **change}), change
    one_d = gb.depthwise_conv2d(np.random.default_rng(3), in_shape=(1, 1, 24, 16),
                                kernel=(1, 5))
    config = generate(one_d, seed=3).files["ek_model_config.h"]
    assert "#define EK_DW_QUAD 0 " in config
