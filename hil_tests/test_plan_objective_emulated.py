"""`--objective speed` against `--objective memory` on an MLPerf Tiny model, run on Unicorn's
Cortex-M4 (nucleo-l4r5zi's stand-in): both builds bit-exact, the peak SRAM estimate equal to the
measurement, the speed plan measured no slower and the memory plan no larger, and the cost
model's per-op estimates close to the measured per-op instructions (`edgekit measure --profile`).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from conftest import mlperf_path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # graph_builders

pytestmark = pytest.mark.hil

if shutil.which("arm-none-eabi-gcc") is None:
    pytest.skip("arm-none-eabi-gcc is not installed: cannot build the firmware",
                allow_module_level=True)

BOARD = "nucleo-l4r5zi"
#: how far the cost model's estimate of the modelled ops may be from their measured sum
MODEL_TOLERANCE = 0.15


def _build_and_measure(model: str, objective: str, directory):
    from edgekit.boards.runners.measure import measure, resolve_firmware
    from edgekit.firmware.model_build import build_model

    built = build_model(mlperf_path(model), BOARD, directory, objective=objective)
    return built.manifest, measure(resolve_firmware(directory, None), "unicorn", profile=True)


@pytest.mark.slow  # two vww builds and runs: about 35 s
@pytest.mark.parametrize("model", ["vww"])
def test_speed_and_memory_builds_hold_their_promises(model, tmp_path):
    runs = {objective: _build_and_measure(model, objective, tmp_path / objective)
            for objective in ("memory", "speed")}
    for objective, (manifest, measured) in runs.items():
        assert manifest["objective"]["objective"] == objective
        assert measured["bit_exact"] is True, f"{model} --objective {objective}: outputs differ"
        assert measured["peak_sram_bytes"] == manifest["estimate"]["peak_sram_bytes"]
        counts = {row["op"]: row["instructions"] for row in measured["profile"]["ops"]
                  if row["op"] is not None}
        modelled = [row for row in manifest["objective"]["ops"] if row["instructions"] is not None]
        estimated = sum(row["instructions"] for row in modelled)
        actual = sum(counts[row["op"]] for row in modelled)
        assert abs(estimated / actual - 1) <= MODEL_TOLERANCE, (
            f"{model} --objective {objective}: cost model {estimated} vs measured {actual}")
    (memory_manifest, memory), (speed_manifest, speed) = runs["memory"], runs["speed"]
    assert speed["instructions"] <= memory["instructions"]
    assert memory_manifest["plan_arena_bytes"] <= speed_manifest["plan_arena_bytes"]


@pytest.mark.slow  # two single-op builds and runs: about 25 s on a loaded machine
def test_the_wake_word_depthwise_costs_what_the_model_says(tmp_path):
    # the case: a tall, 1-wide depthwise kernel over a streaming window, where the
    # channel-by-channel in-place kernel is the slower one; the cost model must say so, and be
    # close to the measured count both ways
    import numpy as np

    import graph_builders as gb
    from edgekit.boards.runners.measure import measure, resolve_firmware
    from edgekit.firmware.model_build import build_model
    from edgekit.kernel_costs import cost_table, op_instructions
    from edgekit.planner import plan

    graph = gb.depthwise_conv2d(np.random.default_rng(1), in_shape=(1, 24, 1, 64), kernel=(9, 1))
    table = cost_table("dsp")
    measured = {}
    for mode, inplace in ((None, False), ("depthwise_channelwise", {"depthwise_channelwise"})):
        chosen = plan(graph, inplace=inplace)
        assert chosen.buffers["y"].inplace_mode == mode
        build_model(graph, BOARD, tmp_path / str(mode), plan=chosen)
        run = measure(resolve_firmware(tmp_path / str(mode), None), "unicorn", profile=True)
        assert run["bit_exact"] is True
        measured[mode] = next(r["instructions"] for r in run["profile"]["ops"] if r["op"] == 0)
        estimate = op_instructions(graph.ops[0], graph, mode, table)
        assert abs(estimate / measured[mode] - 1) <= MODEL_TOLERANCE, (mode, estimate, measured)
    assert measured["depthwise_channelwise"] > measured[None]
