"""A token MLP (FC D->4D, FC 4D->D over its own input, residual ADD), a multi-row SOFTMAX and
an attention block (tests/test_planner_attention.py), in place, built for the emulated Cortex-M4 stand-in and run on QEMU and Unicorn: bit-exact, and
the measured peak SRAM within 1% of the estimate (the planner's arena with its in-place FC and
its scratch is what the firmware uses)."""

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
import graph_builders as gb  # noqa: E402
from test_planner_attention import attention_block  # noqa: E402
from test_token_inplace import token_mlp_graph  # noqa: E402

BOARD = "nucleo-l4r5zi"


def _graphs():
    return {"token_mlp": token_mlp_graph(np.random.default_rng(5), 24, 16),
            "softmax_rows": gb.softmax(np.random.default_rng(6), shape=(1, 2, 12, 12)),
            "attention": attention_block(seed=5)}


@pytest.mark.parametrize("runner", ["qemu", "unicorn"])
@pytest.mark.parametrize("name", ["token_mlp", "softmax_rows", "attention"])
def test_in_place_token_ops_measure_as_planned(name, runner, tmp_path):
    if runner == "qemu" and shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm is not installed")
    from edgekit.boards.runners.measure import measure, resolve_firmware
    from edgekit.firmware.model_build import build_model

    graph = _graphs()[name]
    result = build_model(graph, BOARD, tmp_path, seed=3)
    plan = result.model.plan
    in_place = {b.inplace_mode for b in plan.buffers.values() if b.inplace_mode}
    assert in_place >= ({"elementwise"} if name == "softmax_rows"
                        else {"pointwise_inplace", "elementwise"})
    measured = measure(resolve_firmware(result.directory, None), runner, timeout_s=300)
    assert measured["bit_exact"] is True
    estimate = result.manifest["estimate"]["peak_sram_bytes"]
    assert abs(measured["peak_sram_bytes"] - estimate) <= 0.01 * estimate, (
        f"{name} on {runner}: measured {measured['peak_sram_bytes']} B vs estimate {estimate} B")
    assert measured["arena_used_bytes"] <= plan.arena_bytes
    print(name, runner, "arena", plan.arena_bytes, "used", measured["arena_used_bytes"],
          "peak", measured["peak_sram_bytes"], "estimate", estimate)
