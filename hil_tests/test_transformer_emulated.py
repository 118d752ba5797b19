"""A quantized transformer block whose firmware input is int32 token ids (GATHER embedding +
positional ADD of a constant, token-wise FULLY_CONNECTED, TRANSPOSE, BATCH_MATMUL attention,
SOFTMAX, GELU), built for the Cortex-M4 stand-in and run on QEMU and Unicorn: the harness
copies the embedded int32 ids into the arena and the device's outputs equal the reference
interpreter's bytes.

Peak SRAM: the stack bound counts the broadcast path of ek_add_s8, which this model never takes,
so on a model this small (a few hundred bytes of stack) the estimate is an upper bound a few
percent above the measurement rather than within 1%; the test asserts the bound."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.hil

if shutil.which("arm-none-eabi-gcc") is None:
    pytest.skip("arm-none-eabi-gcc is not installed: cannot build the firmware",
                allow_module_level=True)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import transformer_builders as tb  # noqa: E402


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    from edgekit.converters.quantize import quantize
    from edgekit.firmware.model_build import build_model

    rng = np.random.default_rng(9)
    graph = quantize(tb.float_attention_model(rng, gelu=True),
                     rng.integers(0, 40, size=(16, 8)).astype(np.int32))
    return build_model(graph, "nucleo-l4r5zi", tmp_path_factory.mktemp("attention"), seed=3)


@pytest.mark.parametrize("runner", ["unicorn", "qemu"])
def test_int32_token_ids_model_is_bit_exact_on_the_emulated_m4(build, runner):
    if runner == "qemu" and shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm is not installed")
    from edgekit.boards.runners.measure import measure, resolve_firmware

    testdata = (Path(build.directory) / "src" / "model_testdata.c").read_text()
    assert "const int32_t ek_test_input0" in testdata
    measured = measure(resolve_firmware(build.directory, None), runner, timeout_s=120)
    assert measured["bit_exact"] is True
    assert measured["outputs"] == build.manifest["expected_outputs"]
    assert measured["peak_sram_bytes"] <= build.manifest["estimate"]["peak_sram_bytes"]
