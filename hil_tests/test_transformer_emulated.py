"""Quantized transformer blocks built for the Cortex-M4 stand-in (nucleo-l4r5zi, run on Unicorn
and QEMU) and for the M0+, M3 and M7 boards (Unicorn): the device's outputs equal the reference
interpreter's bytes, and the peak
SRAM estimated before any run (static RAM + the static stack bound) is within 1% of the
measured figure, as for the MLPerf models (design.md, "What we measure").

- ``attention``: int32 token ids (the harness copies the embedded ids into the arena), GATHER
  embedding + positional ADD of a constant, token-wise FULLY_CONNECTED, TRANSPOSE, attention
  (BATCH_MATMUL, SOFTMAX, BATCH_MATMUL, fused into ATTENTION by the build), GELU.
- ``conv_block``: EmbBERT-Q's convolutional branch: LAYER_NORM, token FC, causal depthwise conv
  (DEPTHWISE_CONV_2D on [1, 1, T, C], pad (0, 0, k-1, 0)), SILU, token FC, residual ADD. Its
  LAYER_NORM calls libgcc's 64-bit division, an assembly function the stack bound must walk.
- ``constant_operands``: MUL by a broadcast constant and ADD of a same-shape constant: the
  estimate counts the broadcast walk of the MUL and leaves out the ADD's, which no call takes.

On models this small (a few hundred bytes of stack) every frame the bound counts on a path the
data never takes shows: the ADD broadcast walk alone is 88 bytes, +13% on ``constant_operands``
before `edgekit.firmware.stack_paths` left it out.
"""

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

MODELS = ("attention", "conv_block", "constant_operands")
#: (board, runner): the M4 on both emulators; the other cores' code (ARMv6-M's libgcc helpers,
#: M3/M7 tail calls after an epilogue) on Unicorn
TARGETS = [("nucleo-l4r5zi", "unicorn"), ("nucleo-l4r5zi", "qemu"), ("rpi-pico", "unicorn"),
           ("lm3s6965evb", "unicorn"), ("disco-f746ng", "unicorn")]


def _quantized(model: str):
    from edgekit.converters.quantize import quantize

    if model == "attention":
        rng = np.random.default_rng(9)
        return quantize(tb.float_attention_model(rng, gelu=True),
                        rng.integers(0, 40, size=(16, 8)).astype(np.int32))
    if model == "conv_block":
        rng = np.random.default_rng(5)
        return quantize(tb.float_conv_block_model(rng),
                        rng.normal(0, 1, size=(16, 8, 16)).astype(np.float32))
    rng = np.random.default_rng(2)
    return quantize(tb.float_constant_operands(rng),
                    rng.normal(0, 1, size=(16, 6, 8)).astype(np.float32))


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    from edgekit.firmware.model_build import build_model

    cache = {}

    def get(model: str, board: str):
        if (model, board) not in cache:
            cache[model, board] = build_model(_quantized(model), board,
                                              tmp_path_factory.mktemp(model), seed=3)
        return cache[model, board]
    return get


@pytest.mark.parametrize("board,runner", TARGETS)
@pytest.mark.parametrize("model", MODELS)
def test_transformer_block_is_bit_exact_and_the_estimate_holds(builds, model, board, runner):
    if runner == "qemu" and shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm is not installed")
    from edgekit.boards.runners.measure import measure, resolve_firmware

    build = builds(model, board)
    kinds = {op.kind for op in build.model.graph.ops}
    if model == "attention":
        testdata = (Path(build.directory) / "src" / "model_testdata.c").read_text()
        assert "const int32_t ek_test_input0" in testdata
        # the build fuses BATCH_MATMUL -> SOFTMAX -> BATCH_MATMUL (edgekit.attention)
        assert {"GATHER", "TRANSPOSE", "ATTENTION", "GELU"} <= kinds
    if model == "conv_block":
        assert {"LAYER_NORM", "SILU", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD"} <= kinds
    measured = measure(resolve_firmware(build.directory, None), runner, timeout_s=120)
    assert measured["bit_exact"] is True, f"{model} on {board}/{runner}: outputs differ"
    assert measured["outputs"] == build.manifest["expected_outputs"]
    estimate = build.manifest["estimate"]["peak_sram_bytes"]
    peak = measured["peak_sram_bytes"]
    assert peak <= estimate, (
        f"{model} on {board}/{runner}: measured {peak} B above the bound {estimate} B")
    assert estimate - peak <= 0.01 * estimate, (
        f"{model} on {board}/{runner}: measured {peak} B vs estimate {estimate} B"
        f" (stack path {' > '.join(build.manifest['estimate']['stack_path'])})")
