"""Packed int4 builds on the emulated cores: the MLPerf kws model re-quantized to int4 and to
mixed (first weighted layer int8, run by the int4 unit: ek_conv2d_s8_via_s4's assembly on the
DSP cores, its portable loop on the M0+ and M3), built with the packed _s4 kernels and run on
QEMU and Unicorn. Each run must give the reference interpreter's bytes
(which equal TFLite Micro's on the same `.tflite`: tests/test_codegen_int4.py), the measured
peak SRAM must be within 1% of the estimate, and the int4 layers' weights must take half their
int8 bytes in the linked ELF. int4 first layers over 1-3 channels run the widened path's M4
assembly (tests/test_codegen_int4_first_layer.py's cases)."""

from __future__ import annotations

import shutil

import pytest

from conftest import mlperf_path

pytestmark = [pytest.mark.hil, pytest.mark.slow]

if shutil.which("arm-none-eabi-gcc") is None:
    pytest.skip("arm-none-eabi-gcc is not installed: cannot build the firmware", allow_module_level=True)

VARIANTS = {"int4": "4", "mixed": "mixed:default=4,#0=8"}
#: (board, runner): the Cortex-M4 on both emulators; M0+, M3, M7 and M55 on one each
RUNS = [("mps2-an386", "unicorn"), ("mps2-an386", "qemu"), ("rpi-pico", "unicorn"),
        ("lm3s6965evb", "unicorn"), ("mps2-an500", "unicorn"), ("mps3-an547", "qemu")]


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    from edgekit.converters.int4_requant import requantize_weights
    from edgekit.converters.tflite_reader import load_tflite, load_tflite_bytes
    from edgekit.converters.tflite_writer import to_bytes
    from edgekit.firmware.codegen import firmware_plan
    from edgekit.firmware.model_build import build_model

    cache = {}
    graph = load_tflite(mlperf_path("kws"))

    def get(variant: str, board: str):
        if (variant, board) not in cache:
            bits = VARIANTS.get(variant)
            model = graph if bits is None else load_tflite_bytes(
                to_bytes(requantize_weights(graph, bits)))
            cache[variant, board] = build_model(
                model, board, tmp_path_factory.mktemp(f"kws-{variant}-{board}"), seed=5)
        return cache[variant, board]
    return get


@pytest.mark.parametrize("board,runner", RUNS)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_int4_build_is_bit_exact_on_every_core(builds, variant, board, runner):
    if runner == "qemu" and shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm is not installed")
    from edgekit.boards.runners.measure import measure, resolve_firmware

    result = builds(variant, board)
    kernels = set(result.manifest["kernels"])
    assert "ek_conv2d_s4_pointwise_inplace" in kernels
    assert ("ek_conv2d_s8_via_s4" in kernels) == (variant == "mixed")
    assert "ek_conv2d_s8" not in kernels  # no int8 convolution linked
    measured = measure(resolve_firmware(result.directory, None), runner, timeout_s=300)
    assert measured["bit_exact"] is True, f"kws {variant} on {board}/{runner}: outputs differ"
    estimate = result.manifest["estimate"]["peak_sram_bytes"]
    assert abs(measured["peak_sram_bytes"] - estimate) <= 0.01 * estimate


def test_int4_weights_take_half_their_int8_flash(builds):
    """The weight arrays in the linked ELF: int8 bytes minus the int4 layers' saved bytes
    (plus each packed array's 4-byte pad), read from the symbol table, not from the estimate."""
    from edgekit.firmware import elf

    def weight_bytes(result):
        return elf.weight_bytes(result.elf_path)

    int8, int4 = builds("int8", "mps2-an386"), builds("int4", "mps2-an386")
    saved = int4.manifest["int4_saved_bytes"]
    assert saved > 0
    pads = 4 * int4.manifest["int4_ops"]
    assert weight_bytes(int8) - weight_bytes(int4) == saved - pads


@pytest.mark.parametrize("c_in", [504, 512])
def test_int4_pointwise_pairs_widest_input_on_the_cortex_m4(c_in, tmp_path):
    """The M4 assembly of the int4 two-pixel 1x1 loop at its widest input (504 channels: an
    odd number of 4-byte steps) and the one-pixel loop just past it (512), weights over
    [-8, 7], on Unicorn."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import graph_builders as gb
    import numpy as np

    from edgekit.boards.runners.measure import measure, resolve_firmware
    from edgekit.firmware.codegen import firmware_plan
    from edgekit.firmware.model_build import build_model
    from edgekit.ir import DType

    graph = gb.conv2d(np.random.default_rng(3), in_shape=(1, 3, 3, c_in), out_channels=c_in + 1,
                      kernel=(1, 1), padding="VALID", weight_dtype=DType.INT4)
    # a layer this wide would slide in place (no scratch): pin the pair loop's modes
    plan = firmware_plan(graph, inplace=("pointwise_inplace", "pointwise_inplace_backward"))
    result = build_model(graph, "mps2-an386", tmp_path, seed=3, plan=plan)
    assert result.manifest["kernels"] == ["ek_conv2d_s4_pointwise_inplace_backward"]
    measured = measure(resolve_firmware(result.directory, None), "unicorn", timeout_s=300)
    assert measured["bit_exact"] is True


#: int4 first layers (tests/test_codegen_int4_first_layer.py) run on the M4: odd and even windows
#: on padded rows, kws's whole groups; and the most their instructions may be over their int8 twin's
FIRST_LAYER_CASES = ["c1_3x3_odd", "c1_3x3_odd_c7_stride2", "c2_3x3_even", "c3_3x3_c3",
                     "c1_10x4_kws"]
FIRST_LAYER_MAX_VS_INT8 = 1.5


@pytest.mark.parametrize("case", FIRST_LAYER_CASES)
def test_int4_first_layer_widened_on_the_cortex_m4(case, tmp_path):
    """The M4 assembly of the widened path's short windows (pw_dot2x2_wide over gathered
    windows, the filter rows padded to whole groups) on Unicorn: bit-exact, the measured peak SRAM equal to the
    estimate (the window buffer the build sizes, the path's frames), and the layer within
    FIRST_LAYER_MAX_VS_INT8 of the instructions of the same layer with int8 weights (the
    one-pixel path it took before ran 2.5x)."""
    import sys
    from dataclasses import replace
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import test_codegen_int4_first_layer as first

    from edgekit.boards.runners.measure import measure, resolve_firmware
    from edgekit.firmware.model_build import build_model
    from edgekit.ir import DType, Graph

    graph = first._first_layer(case, 5)
    w = graph["w"]
    # the int8 twin: the same layer with the weights as int8 values (same quantization)
    twin = Graph([replace(w, dtype=DType.INT8) if t.name == "w" else t
                  for t in graph.tensors.values()], graph.ops, graph.inputs, graph.outputs)
    runs = {}
    for name, model in (("int4", graph), ("int8", twin)):
        result = build_model(model, "mps2-an386", tmp_path / name, seed=3)
        measured = measure(resolve_firmware(result.directory, None), "unicorn", timeout_s=300)
        assert measured["bit_exact"] is True, f"{case} {name}: outputs differ"
        assert measured["peak_sram_bytes"] == result.manifest["estimate"]["peak_sram_bytes"]
        runs[name] = measured["instructions"]
    assert result.manifest["kernels"] == ["ek_conv2d_s8"]
    assert runs["int4"] <= FIRST_LAYER_MAX_VS_INT8 * runs["int8"], runs
