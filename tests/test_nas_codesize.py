"""The flash model: constants exactly as the firmware stores them, and the fitted code-size
model within 10% of a real build of a candidate it was not fitted on."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from edgekit.nas.codesize import CODESIZE_FILE, features, flash_estimate, graph_features
from edgekit.nas.graph import graph_from_spec
from edgekit.nas.mcunet import SearchSpace, sample


def _fitted_specs() -> set[str]:
    data = json.loads(CODESIZE_FILE.read_text())["by_cpu"]
    return {json.dumps(b["spec"], sort_keys=True) for d in data.values() for b in d["builds"]}


def test_codesize_file_names_the_script_that_fitted_it():
    data = json.loads(CODESIZE_FILE.read_text())
    assert data["produced_by"] == "bench/nas_calibrate_codesize.py"
    assert {"cortex-m4", "cortex-m3"} <= set(data["by_cpu"])
    assert all(len(d["builds"]) >= 5 for d in data["by_cpu"].values())


@pytest.mark.slow
@pytest.mark.parametrize("board, patched, bits", [
    ("mps2-an386", False, 8), ("mps2-an386", True, 8), ("lm3s6965evb", False, 8),
    ("mps2-an386", False, 4), ("mps2-an386", False, "mixed"), ("lm3s6965evb", True, "mixed")])
def test_flash_estimate_is_within_ten_percent_of_a_real_build(tmp_path, board, patched, bits):
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc is not installed")
    from edgekit.firmware.model_build import build_model
    from edgekit.nas.memory import patch_schedule
    from edgekit.patching import apply_patches

    spec = sample(777, SearchSpace(resolutions=(48,), widths=(0.25, 0.35),
                                   bits=(8, 4) if bits == "mixed" else (bits,)))
    spec = dataclasses.replace(spec, patch_split=sum(spec.depths[:2]) - 1, patch_n=3) if patched \
        else dataclasses.replace(spec, patch_split=None, patch_n=1)
    assert json.dumps(spec.to_dict(), sort_keys=True) not in _fitted_specs()
    graph = graph_from_spec(spec)
    schedule = patch_schedule(spec)
    result = build_model(graph, board, tmp_path / "fw", patch=schedule or "none")
    built = apply_patches(graph, schedule) if schedule else graph
    assert graph_features(built)["constants"] == result.estimate.constants_bytes
    if not patched:
        assert features(spec) == graph_features(graph)
    real = result.manifest["flash_bytes"]
    from edgekit.boards import load_board

    estimate = flash_estimate(spec, graph=built, cpu=load_board(board).cpu)
    assert abs(estimate - real) <= 0.10 * real, (estimate, real)
