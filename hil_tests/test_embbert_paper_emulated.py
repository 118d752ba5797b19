"""EmbBERT-Q at its paper's size (`edgekit.nas.embbert.PAPER_SPEC`, ~781 kB of weights plus
activations) on the emulated NUCLEO-H743ZI: trained briefly on fortunes, built by
``edgekit build``, run on QEMU and Unicorn: at least 700 kB of weights + measured peak SRAM,
the device's output bytes equal the reference interpreter's, it fits the board (2 MB flash,
512 KB AXI SRAM), and the peak SRAM estimate is within 1% of the painted measurement."""

from __future__ import annotations

import shutil

import pytest

pytestmark = [pytest.mark.hil, pytest.mark.slow]

if shutil.which("arm-none-eabi-gcc") is None:
    pytest.skip("arm-none-eabi-gcc is not installed: cannot build the firmware",
                allow_module_level=True)
pytest.importorskip("torch")

BOARD = "nucleo-h743zi"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from edgekit.firmware.model_build import build_model
    from edgekit.nas.datasets import DatasetUnavailableError
    from edgekit.nas.embbert_paper import paper_model
    from edgekit.nas.text import load_fortunes

    try:
        data = load_fortunes()
    except DatasetUnavailableError as err:
        pytest.skip(str(err))
    out = tmp_path_factory.mktemp("embbert_paper")
    figures = paper_model(out / "model", steps=20, data=data, test_limit=8)
    return figures, build_model(out / "model", BOARD, out / "firmware", seed=1)


@pytest.mark.parametrize("runner", ["unicorn", "qemu"])
def test_paper_size_embbert_is_bit_exact_and_fits(built, runner):
    if runner == "qemu" and shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm is not installed")
    from edgekit.boards import load_board
    from edgekit.boards.runners.measure import measure, resolve_firmware

    figures, build = built
    measured = measure(resolve_firmware(build.directory, None), runner, timeout_s=300)
    assert measured["bit_exact"] is True
    assert measured["outputs"] == build.manifest["expected_outputs"]
    assert figures["weights_bytes"] + measured["peak_sram_bytes"] >= 700_000
    board = load_board(BOARD)
    assert measured["fits"] is True
    assert measured["flash_bytes"] <= board.flash_bytes
    assert measured["peak_sram_bytes"] <= board.sram_bytes
    estimate = build.manifest["estimate"]["peak_sram_bytes"]
    assert abs(measured["peak_sram_bytes"] - estimate) <= 0.01 * estimate
