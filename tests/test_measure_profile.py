"""`edgekit measure --profile`: instructions per op on Unicorn, MACs and instructions per MAC."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import mlperf_path
from edgekit.boards.runners.profile import BEFORE_OPS, profile_rows
from edgekit.cli import main

needs_toolchain = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None or shutil.which("make") is None,
                                     reason="arm-none-eabi-gcc or make not installed")


def test_rows_divide_by_the_manifest_macs() -> None:
    counts = {BEFORE_OPS: 3, "op000_conv_2d": 250, "op002_depthwise_conv_2d": 60, "op003_softmax": 7}
    profile = profile_rows(counts, {"op_macs": [100, 0, 40, 0, 0]})
    assert [op["op"] for op in profile["ops"]] == [None, 0, 2, 3]
    conv = profile["ops"][1]
    assert (conv["kind"], conv["macs"], conv["instructions_per_mac"]) == ("CONV_2D", 100, 2.5)
    assert profile["ops"][3]["instructions_per_mac"] is None  # no MACs, no ratio
    assert profile["instructions"] == 320 and profile["macs"] == 140
    assert [k["kind"] for k in profile["kinds"]] == ["CONV_2D", "DEPTHWISE_CONV_2D", "SOFTMAX"]
    assert profile["kinds"][1]["instructions_per_mac"] == 1.5


def test_rows_without_a_manifest_have_no_macs() -> None:
    profile = profile_rows({"op000_conv_2d": 10}, None)
    assert profile["ops"][0]["macs"] is None and profile["macs"] is None


def test_output_without_profile_is_refused(tmp_path: Path, capsys) -> None:
    assert main(["measure", str(tmp_path), "-o", str(tmp_path / "p.json")]) != 0
    assert "--profile" in capsys.readouterr().err


def test_profile_on_another_runner_is_refused(tmp_path: Path, capsys) -> None:
    assert main(["measure", str(tmp_path), "--profile", "--runner", "qemu"]) != 0
    err = capsys.readouterr().err
    assert "Unicorn only, not qemu" in err and "Traceback" not in err


@needs_toolchain
def test_kws_profile_sums_to_the_inference(tmp_path: Path, capsys) -> None:
    build = tmp_path / "kws"
    assert main(["build", str(mlperf_path("kws")), "--board", "nucleo-l4r5zi", "-o", str(build)]) == 0
    capsys.readouterr()
    assert main(["measure", str(build), "--profile", "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    profile = measured["profile"]
    # every instruction of the window goes to one op: the shares sum to the whole count, and
    # next to nothing runs before the first op function
    assert profile["instructions"] == measured["instructions"]
    assert profile["ops"][0]["function"] == BEFORE_OPS and profile["ops"][0]["instructions"] < 50
    assert profile["macs"] == 2_656_768  # kws's MACs (toolkit/costs.py)
    kinds = {k["kind"]: k for k in profile["kinds"]}
    assert kinds["CONV_2D"]["ops"] == 5 and kinds["DEPTHWISE_CONV_2D"]["ops"] == 4
    assert kinds["CONV_2D"]["instructions"] > 0.5 * measured["instructions"]
    assert 0.5 < kinds["CONV_2D"]["instructions_per_mac"] < 10
    written = json.loads((build / "profile.json").read_text())
    assert written["ops"] == profile["ops"] and written["instructions"] == measured["instructions"]
    assert measured["profile_file"] == str(build / "profile.json")
