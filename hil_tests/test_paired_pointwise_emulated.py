"""In-place 1x1 layers with and without the paired filter layout in one build (EK_PW_PAIRED 2:
an even out_c is paired, an odd one keeps its OHWI rows), built for the M0+, M3, M4 and M7
stand-ins and run on Unicorn: the DSP cores' two-pixel loop over both layouts and the other
cores' one-pixel loops give the reference interpreter's bytes, and the peak SRAM estimate equals
the measurement."""

from __future__ import annotations

import dataclasses
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import graph_builders as gb  # noqa: E402

pytestmark = pytest.mark.hil

if shutil.which("arm-none-eabi-gcc") is None:
    pytest.skip("arm-none-eabi-gcc is not installed: cannot build the firmware",
                allow_module_level=True)

BOARDS = ("rpi-pico", "lm3s6965evb", "nucleo-l4r5zi", "disco-f746ng")


def conv_chain(rng, layers, in_shape):
    """CONV_2Ds in a row, (out_channels, kernel) each, every one with a ReLU."""
    from edgekit.ir import Graph

    tensors, ops, previous, shape = [], [], None, in_shape
    for i, (out_channels, k) in enumerate(layers):
        g = gb.conv2d(rng, in_shape=shape, out_channels=out_channels, kernel=(k, k),
                      padding="SAME" if k > 1 else "VALID", activation="RELU")
        names = {"x": previous or "x", "w": f"w{i}", "bias": f"b{i}", "y": f"t{i}"}
        tensors += [dataclasses.replace(t, name=names[t.name]) for t in g.tensors.values()
                    if t.name != "x" or previous is None]
        ops.append(dataclasses.replace(g.ops[0], inputs=[names["x"], names["w"], names["bias"]],
                                       outputs=[names["y"]], name=names["y"]))
        previous, shape = names["y"], g["y"].shape
    return Graph(tensors, ops, ["x"], [previous], name="paired_pointwise")


@pytest.fixture(scope="module")
def graph():
    from edgekit.firmware.codegen import generate

    g = conv_chain(np.random.default_rng(3), [(16, 3), (12, 1), (8, 1), (9, 1)], (1, 10, 10, 3))
    gen = generate(g, seed=5)
    pointwise = [(k, f) for k, f in gen.kernel_calls if "_pointwise_inplace" in k]
    assert {f.get("paired_filter", 0) for _, f in pointwise} == {0, 1}, pointwise
    assert "#define EK_PW_PAIRED 2 " in gen.files["ek_model_config.h"]
    return g


@pytest.mark.parametrize("board", BOARDS)
def test_paired_and_ohwi_pointwise_layers_in_one_build(graph, board, tmp_path):
    from edgekit.boards.runners.measure import measure, resolve_firmware
    from edgekit.firmware.model_build import build_model

    built = build_model(graph, board, tmp_path, seed=5)
    measured = measure(resolve_firmware(tmp_path, None), "unicorn")
    assert measured["bit_exact"] is True, f"{board}: outputs differ"
    assert measured["peak_sram_bytes"] == built.manifest["estimate"]["peak_sram_bytes"]
