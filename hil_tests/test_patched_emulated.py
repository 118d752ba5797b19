"""Patch-based firmware on the emulated Cortex-M4 (stand-in of nucleo-l4r5zi): the MLPerf Tiny
VWW model with its first stage in 6x6 tiles, built through the CLI, run on QEMU and Unicorn.
(With the box copies done by newlib's memcpy this very build gave wrong bytes on Unicorn only:
see ek_copy_rows.)

The device's output bytes must equal the *unpatched* model's reference output (the patched
graph is a rewrite: same answer, less memory), and the measured peak SRAM must be the estimate
within 1%."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import mlperf_path
from edgekit import interpreter
from edgekit.cli import main

pytestmark = pytest.mark.hil

if shutil.which("arm-none-eabi-gcc") is None:
    pytest.skip("arm-none-eabi-gcc is not installed: cannot build the firmware",
                allow_module_level=True)


@pytest.fixture(scope="module")
def patched_build(tmp_path_factory):
    directory = tmp_path_factory.mktemp("vww-patched")
    assert main(["build", str(mlperf_path("vww")), "--board", "nucleo-l4r5zi", "-o",
                 str(directory), "--patch", "7:6x6", "--seed", "0"]) == 0
    return directory, json.loads((directory / "edgekit-build.json").read_text())


@pytest.mark.parametrize("runner", ["qemu", "unicorn"])
def test_patched_vww_is_bit_exact_with_the_unpatched_model(patched_build, runner, capsys):
    if runner == "qemu" and shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm is not installed")
    from edgekit.converters.tflite_reader import load_tflite
    from edgekit.firmware.codegen import random_test_inputs

    directory, manifest = patched_build
    capsys.readouterr()
    assert main(["measure", str(directory), "--runner", runner, "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    patch = manifest["patch"]
    assert patch["n"] == 6 and manifest["ops"] > 300
    assert manifest["plan_arena_bytes"] == patch["arena_bytes"] < patch["layer_by_layer_arena_bytes"]
    graph = load_tflite(mlperf_path("vww"))
    unpatched = interpreter.run(graph, random_test_inputs(graph, 0))[0].tobytes()
    assert bytes.fromhex(measured["outputs"][0]) == unpatched
    assert measured["bit_exact"] is True
    estimate = manifest["estimate"]["peak_sram_bytes"]
    assert abs(measured["peak_sram_bytes"] - estimate) <= 0.01 * estimate
