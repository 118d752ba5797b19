"""The flash model: constants exactly as the firmware stores them, and the fitted code-size
model within 10% of a real build of a candidate it was not fitted on."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from edgekit.nas.codesize import CODESIZE_FILE, features, flash_estimate
from edgekit.nas.graph import graph_from_spec
from edgekit.nas.mcunet import SearchSpace, sample


def test_codesize_file_names_the_script_that_fitted_it():
    data = json.loads(CODESIZE_FILE.read_text())
    assert data["produced_by"] == "bench/nas_calibrate_codesize.py"
    assert len(data["builds"]) >= 5


@pytest.mark.slow
def test_flash_estimate_is_within_ten_percent_of_a_real_build(tmp_path):
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc is not installed")
    from edgekit.firmware.model_build import build_model

    spec = dataclasses.replace(sample(777, SearchSpace(resolutions=(48,))), patch_split=None)
    fitted = {json.dumps(b["spec"], sort_keys=True)
              for b in json.loads(CODESIZE_FILE.read_text())["builds"]}
    assert json.dumps(spec.to_dict(), sort_keys=True) not in fitted
    result = build_model(graph_from_spec(spec), "mps2-an386", tmp_path / "fw")
    assert features(spec)["constants"] == result.estimate.constants_bytes
    real = result.manifest["flash_bytes"]
    assert abs(flash_estimate(spec) - real) <= 0.10 * real, (flash_estimate(spec), real)
