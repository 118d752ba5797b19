"""`edgekit demo`, the README's main job, in a small configuration: a search on Fashion-MNIST for
the default emulated board, the chosen model built and run on QEMU and Unicorn, bit-exact and
within 1% of the estimate."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from edgekit.cli import main
from edgekit.nas.datasets import fashion_mnist_available

pytestmark = [pytest.mark.hil, pytest.mark.slow]


# the search now trains candidates drawn among those that fit, often larger than before: the
# run took 590 s here with a CI run on the other core, close to the suite's 900 s default
@pytest.mark.timeout(1800)
def test_demo_searches_builds_and_measures(tmp_path, capsys) -> None:
    if shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("qemu-system-arm or arm-none-eabi-gcc is not installed")
    if not fashion_mnist_available():
        message = "Debian's dataset-fashion-mnist is not installed (./run.sh setup installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    assert main(["demo", "--json", "--trials", "2", "--proxy-steps", "20", "--train-limit", "600",
                 "-o", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True and out["board"] == "lm3s6965evb"
    assert [m["runner"] for m in out["runs"]] == ["qemu", "unicorn"]
    qemu, unicorn = out["runs"]
    assert qemu["outputs"] == unicorn["outputs"]
    assert qemu["bit_exact"] and unicorn["bit_exact"]
    assert qemu["stack_peak_bytes"] == unicorn["stack_peak_bytes"] == unicorn["stack_peak_hooked_bytes"]
    search = out["search"]
    assert search["fits"] and 0.0 <= search["int8_accuracy"] <= 1.0
    assert unicorn["peak_sram_bytes"] <= 64 * 1024
    assert (tmp_path / "search" / "best" / "model.tflite").is_file()
    assert (tmp_path / "search" / "pareto.json").is_file()
