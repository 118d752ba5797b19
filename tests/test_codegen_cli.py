"""`edgekit build MODEL.tflite` and `edgekit measure DIR` end to end on ad01 (the smallest MLPerf
Tiny model), the standalone Makefile, and the PlatformIO project built offline with `pio run`
through the local platform, whose ELF gives the same answer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import mlperf_path
from edgekit.cli import main

pytestmark = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                                reason="arm-none-eabi-gcc is not installed")


@pytest.fixture(scope="module")
def ad01_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("ad01")
    return out, mlperf_path("ad01")


def test_build_json_has_the_estimate_before_and_after(ad01_build, capsys):
    out, model = ad01_build
    assert main(["build", str(model), "--board", "nucleo-l4r5zi", "-o", str(out), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["command"] == "build" and payload["payload"] == "model"
    before, after = payload["estimate_before_build"], payload["estimate"]
    assert before["arena_bytes"] == after["arena_bytes"] == payload["plan_arena_bytes"]
    assert before["peak_sram_bytes"] is None  # stack and static RAM need the ELF
    assert after["peak_sram_bytes"] == after["static_ram_bytes"] + after["stack_bytes"]
    assert after["static_ram_bytes"] == payload["static_ram_bytes"] >= payload["plan_arena_bytes"]
    assert before["constants_bytes"] <= payload["flash_bytes"]
    assert (out / "Makefile").is_file() and (out / "platformio.ini").is_file()
    assert len(payload["expected_outputs"]) == 1


def test_text_output_prints_the_estimate_first(tmp_path, capsys):
    model = mlperf_path("ad01")
    assert main(["build", str(model), "--board", "disco-f746ng", "-o", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert text.index("estimate before the build") < text.index("built model")
    assert "stack bound" in text


def test_measure_reports_bit_exact_and_the_estimate_error(ad01_build, capsys):
    out, _ = ad01_build
    assert main(["measure", str(out), "--runner", "unicorn", "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert measured["bit_exact"] is True
    assert abs(measured["estimate_error"]) <= 0.01
    assert measured["estimate_peak_sram_bytes"] is not None


def test_build_needs_a_model_or_selftest(tmp_path):
    assert main(["build", "--board", "nucleo-l4r5zi", "-o", str(tmp_path)]) == 2
    assert main(["build", str(mlperf_path("ad01")), "--selftest", "--board", "nucleo-l4r5zi",
                 "-o", str(tmp_path)]) == 2


def test_makefile_rebuilds_the_same_elf(ad01_build):
    out, _ = ad01_build
    before = (out / "firmware.elf").read_bytes()
    subprocess.run(["make", "-C", str(out), "clean"], check=True, capture_output=True)
    subprocess.run(["make", "-C", str(out)], check=True, capture_output=True)
    assert (out / "firmware.elf").read_bytes() == before


def _pio() -> Path | None:
    candidate = Path(sys.executable).parent / "pio"
    return candidate if candidate.exists() else None


@pytest.mark.skipif(_pio() is None, reason="platformio is not installed in this environment")
def test_platformio_builds_offline_and_its_elf_is_bit_exact(ad01_build, tmp_path):
    from edgekit.boards.runners.measure import Firmware, measure, resolve_firmware
    from edgekit.firmware.platformio import provision_offline_core

    out, _ = ad01_build
    core = provision_offline_core(tmp_path / "pio-core")
    env = {**os.environ, "PLATFORMIO_CORE_DIR": str(core), "PLATFORMIO_NO_ANSI": "true"}
    proc = subprocess.run([str(_pio()), "run", "-d", str(out)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    elf = out / ".pio" / "build" / "nucleo-l4r5zi" / "firmware.elf"
    assert elf.is_file()
    made = resolve_firmware(out, None)
    measured = measure(Firmware(elf=elf, manifest=made.manifest, target=made.target), "unicorn")
    assert measured["bit_exact"] is True


def test_platformio_ini_names_the_official_platform_for_real_boards():
    from edgekit.boards import target_for
    from edgekit.firmware.build import cpu_flags
    from edgekit.firmware.platformio import platformio_ini

    real = target_for("rpi-pico", emulated=False)
    text = platformio_ini(real, cpu_flags(real.cpu, real.fpu))
    assert "platform = raspberrypi" in text and "board = pico" in text
    assert "board_build.ldscript = board.ld" in text
    emulated = target_for("nucleo-l4r5zi")
    text = platformio_ini(emulated, cpu_flags(emulated.cpu, emulated.fpu))
    assert "platform = file://platformio/edgekit-platform" in text
    assert "custom_cpu_flags = -mcpu=cortex-m4" in text
