"""The generator's requantisation choices (`edgekit.firmware.op_emitters`): a channel's shift
as the kernels get it (`kernel_shifts`), and whether a model needs the two-pixel paths' wide
fast modes (`requant_needs_wide`, ``EK_REQUANT_WIDE``). Either only decides which exact form
runs: a build is bit-exact with the interpreter whatever they say, which the model here checks
end to end on the emulated DSP path."""

from __future__ import annotations

import numpy as np
import pytest

import graph_builders as gb
from conftest import HOST_KERNEL_DEFINES, mlperf_path
from generated_c import assert_matches_interpreter
from edgekit.converters.tflite_reader import load_tflite
from edgekit.firmware.codegen import generate
from edgekit.constant_channels import fold_constant_channels
from edgekit.firmware.host_run import run_on_host
from edgekit.firmware.op_emitters import kernel_shifts, requant_needs_wide
from edgekit.ir import Quantization
from edgekit.reference import prepare


def test_a_zero_multiplier_gets_a_fast_shift():
    assert kernel_shifts([0, 1 << 30, 0], [0, 0, 5]).tolist() == [-2, 0, -2]


def _tiny_scale_model(rng, shrink):
    """A 1x1 CONV_2D over a 6x6x16 input whose
    channels' weight scales are multiplied by ``shrink``: right shifts past 23, or (a factor
    of 2^-40) a zero multiplier: QuantizeMultiplier gives 0 below 2^-32; biases near 2^30 keep
    the others' outputs moving."""
    graph = gb.conv2d(rng, in_shape=(1, 6, 6, 16), out_channels=10, kernel=(1, 1),
                      padding="VALID")
    w, bias = graph["w"], graph["bias"]
    factor = np.asarray(shrink, np.float64)
    w.quant = Quantization((w.quant.scale * factor).astype(np.float32), w.quant.zero_point, 0)
    bias.quant = Quantization((bias.quant.scale * factor).astype(np.float32),
                              bias.quant.zero_point, 0)
    data = bias.data.astype(np.int64)
    data[factor < 1] = rng.integers(-(1 << 30), 1 << 30, int((factor < 1).sum()))
    bias.data = data.astype(np.int32)
    return graph


@pytest.mark.parametrize("activation", ["NONE", "RELU"])
def test_tiny_scale_channels_build_bit_exact(tmp_path, activation):
    rng = np.random.default_rng(7)
    shrink = [1.0, 2.0 ** -22, 1.0, 2.0 ** -18, 2.0 ** -40, 1.0, 2.0 ** -20, 1.0, 2.0 ** -15, 1.0]
    graph = _tiny_scale_model(rng, shrink)
    graph.ops[0].attrs["activation"] = activation
    p = prepare(graph.ops[0], graph)
    shifts = kernel_shifts(p.multipliers, p.shifts)
    assert (shifts < -23).any() and (np.asarray(p.multipliers) == 0).any()
    assert requant_needs_wide(p)
    # the firmware's: under RELU the channels whose large negative bias keeps every sum below
    # zero are constant (edgekit.constant_channels), and none left needs the wide form
    firmware = fold_constant_channels(graph.ops[0], graph, p)
    assert requant_needs_wide(firmware) == (activation == "NONE")
    gen = generate(graph, seed=0)
    wide = int(activation == "NONE")
    assert f"#define EK_REQUANT_WIDE {wide} " in gen.files["ek_model_config.h"]
    run = run_on_host(gen, tmp_path, defines=HOST_KERNEL_DEFINES["dsp"])
    assert_matches_interpreter(graph, gen, run)


def test_models_need_the_wide_modes_only_with_such_channels():
    """vww's later 1x1 layers have right shifts of 24-31 and zero multipliers; kws has none."""
    assert "#define EK_REQUANT_WIDE 1 " in generate(
        load_tflite(mlperf_path("vww")), seed=0).files["ek_model_config.h"]
    assert "#define EK_REQUANT_WIDE 0 " in generate(
        load_tflite(mlperf_path("kws")), seed=0).files["ek_model_config.h"]
