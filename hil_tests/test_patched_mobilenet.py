"""Issue 6's patch-based claim, measured: MobileNetV2 (width 0.35, 144x144, Keras-applications
layout, a 2-class head as for visual wake words, int8 through edgekit's converter) with its
first stages in 6x6 tiles up to the output of block 3 (18x18x16).

Measured on the emulated stand-in of nrf52840dk (256 KB SRAM) with Unicorn: the patched
firmware fits the board, equals the unpatched model's reference bytes (which equal TFLite
Micro's), its peak SRAM is the estimate within 1%, and it is at least 2.5x below the
layer-by-layer firmware's measured peak with the input counted and at least 5x below without
it (the planner's per-step figures without the input)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pytestmark = [pytest.mark.hil, pytest.mark.slow]

if shutil.which("arm-none-eabi-gcc") is None:
    pytest.skip("arm-none-eabi-gcc is not installed: cannot build the firmware",
                allow_module_level=True)

BOARD = "nrf52840dk"


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from edgekit.nas.convert import save_int8
    from edgekit.nas.mcunet import mobilenet_v2_spec, to_torch

    torch.manual_seed(0)
    spec = mobilenet_v2_spec(width=0.35, resolution=144, num_classes=2)
    calib = np.random.default_rng(0).uniform(0, 1, size=(4, 3, 144, 144)).astype(np.float32)
    path = tmp_path_factory.mktemp("mbv2") / "mobilenet_v2_0.35_144.tflite"
    graph = save_int8(to_torch(spec), calib, path)
    return path, graph, spec


def test_patches_cut_mobilenet_v2_peak_sram_and_it_fits_nrf52840(mobilenet, tmp_path):
    from edgekit import interpreter
    from edgekit.boards.runners.measure import measure, resolve_firmware
    from edgekit.firmware.codegen import random_test_inputs
    from edgekit.firmware.model_build import build_model
    from edgekit.nas.graph import converted_block_outputs
    from edgekit.patching import PatchSchedule, peak_without_inputs

    runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    path, graph, spec = mobilenet
    x = random_test_inputs(graph, 3)
    reference = interpreter.run(graph, x)[0].tobytes()
    tflm = runtime.Interpreter.from_bytes(path.read_bytes())
    tflm.set_input(x[0], 0)
    tflm.invoke()
    assert np.array(tflm.get_output(0)).tobytes() == reference

    split = converted_block_outputs(graph, spec)[3]
    patched = build_model(path, BOARD, tmp_path / "patched", seed=3,
                          patch=PatchSchedule(split, 6))
    layered = build_model(path, "mps2-an386", tmp_path / "layered", seed=3)
    runs = {}
    for name, build in (("patched", patched), ("layered", layered)):
        runs[name] = measure(resolve_firmware(build.directory, None), "unicorn", timeout_s=900)
        assert runs[name]["bit_exact"] is True
        assert bytes.fromhex(runs[name]["outputs"][0]) == reference
        estimate = build.manifest["estimate"]["peak_sram_bytes"]
        assert abs(runs[name]["peak_sram_bytes"] - estimate) <= 0.01 * estimate
    assert runs["patched"]["fits"] is True  # linked for, and run within, the nRF52840's 256 KB
    assert runs["layered"]["peak_sram_bytes"] >= 2.5 * runs["patched"]["peak_sram_bytes"]
    without = peak_without_inputs(layered.model.plan) / peak_without_inputs(patched.model.plan)
    assert without >= 5.0
