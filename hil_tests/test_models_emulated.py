"""The four MLPerf Tiny models, generated and built for the emulated stand-ins of nucleo-l4r5zi
(Cortex-M4) and disco-f746ng (Cortex-M7), run on QEMU and on Unicorn.

Each run must give the reference interpreter's output bytes exactly (``bit_exact``), and the
measured peak SRAM (static RAM + painted stack high-water mark) must be within 1% of the estimate
that `edgekit build` stated before any run. On Unicorn the runner's own stack and arena high-water
marks must equal the painted ones the firmware printed, and the arena must be used up to the
planner's size but not beyond.
"""

from __future__ import annotations

import shutil

import pytest

from conftest import mlperf_path

pytestmark = pytest.mark.hil

if shutil.which("arm-none-eabi-gcc") is None:
    pytest.skip("arm-none-eabi-gcc is not installed: cannot build the firmware", allow_module_level=True)

MODELS = ("ad01", "kws", "resnet", "vww")
BOARDS = ("nucleo-l4r5zi", "disco-f746ng")  # Cortex-M4 and Cortex-M7 stand-ins
RUNNERS = ("qemu", "unicorn")


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """Model builds, one per (model, board), made on first use and shared by the module."""
    from edgekit.firmware.model_build import build_model

    cache = {}

    def get(model: str, board: str):
        if (model, board) not in cache:
            directory = tmp_path_factory.mktemp(f"{model}-{board}")
            cache[model, board] = build_model(mlperf_path(model), board, directory, seed=11)
        return cache[model, board]
    return get


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("model", MODELS)
def test_model_is_bit_exact_and_the_estimate_holds(builds, model, board, runner):
    if runner == "qemu" and shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm is not installed")
    from edgekit.boards.runners.measure import measure, resolve_firmware

    result = builds(model, board)
    measured = measure(resolve_firmware(result.directory, None), runner, timeout_s=300)
    assert measured["exit_code"] in (0, None)
    assert measured["bit_exact"] is True, f"{model} on {board}/{runner}: outputs differ"
    assert measured["outputs"] == result.manifest["expected_outputs"]
    estimate = result.manifest["estimate"]["peak_sram_bytes"]
    assert measured["estimate_peak_sram_bytes"] == estimate
    assert abs(measured["peak_sram_bytes"] - estimate) <= 0.01 * estimate, (
        f"{model} on {board}/{runner}: measured {measured['peak_sram_bytes']} B vs estimate"
        f" {estimate} B")
    # the planner's arena is what the firmware declares, and all of it is touched
    assert measured["arena_bytes"] >= result.model.plan.arena_bytes
    assert measured["arena_used_bytes"] <= result.model.plan.arena_bytes
    assert measured["peak_sram_bytes"] == measured["static_ram_bytes"] + measured["stack_peak_bytes"]
    if runner == "unicorn":
        assert measured["stack_peak_hooked_bytes"] == measured["stack_peak_bytes"]
        assert measured["arena_used_hooked_bytes"] == measured["arena_used_bytes"]
        assert measured["instructions"] > 0


#: issue 4's peer figures for TFLite Micro on Cortex-M4 (quoted from the issue, not measured
#: here): peak SRAM and TFLM + CMSIS-NN instructions per inference on Unicorn
TFLM_PEAK_SRAM = {"vww": 103_292, "kws": 25_468, "resnet": 57_212}
TFLM_CMSIS_NN_INSTRUCTIONS = {"vww": 24_101_898, "kws": 7_697_339, "resnet": 29_864_628}


@pytest.mark.parametrize("model", sorted(TFLM_PEAK_SRAM))
def test_issue_targets_on_the_emulated_m4(builds, model):
    """Measured on Unicorn's Cortex-M4: peak SRAM at most 0.65x TFLite Micro's, instructions
    per inference at most 1.5x TFLite Micro + CMSIS-NN's (deterministic counts, not timings)."""
    from edgekit.boards.runners.measure import measure, resolve_firmware

    result = builds(model, "nucleo-l4r5zi")
    measured = measure(resolve_firmware(result.directory, None), "unicorn", timeout_s=300)
    assert measured["bit_exact"] is True
    assert measured["peak_sram_bytes"] <= 0.65 * TFLM_PEAK_SRAM[model]
    assert measured["instructions"] <= 1.5 * TFLM_CMSIS_NN_INSTRUCTIONS[model]
