"""bench/int4_device.py on kws (int8, int4 and both mixed variants on the Cortex-M4 under
Unicorn): every build
bit-exact, the int4 layers' weights half their int8 bytes in the linked ELF (less each packed
array's 4-byte pad), and the int4 builds within issue 13's instruction bound of their int8 twin."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

from conftest import MLPERF_DIR, mlperf_path

pytestmark = [pytest.mark.hil, pytest.mark.slow]

BENCH = Path(__file__).resolve().parents[1] / "bench" / "int4_device.py"


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="no arm-none-eabi-gcc")
def test_kws_int4_and_mixed_against_int8(tmp_path):
    mlperf_path("kws")  # skips when the model is absent
    sys.path.insert(0, str(BENCH.parent))
    spec = importlib.util.spec_from_file_location("int4_device", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    runs = bench.benchmark(MLPERF_DIR, ["kws"], "mps2-an386", tmp_path)["kws"]
    assert set(runs) == {"int8", "int4", "mixed", "mixed_kinds"}
    for name, run in runs.items():
        assert run["bit_exact"] is True, name
        assert run["weight_bytes_saved_in_elf"] == run["int4_saved_bytes"] - 4 * run["int4_ops"]
        assert run["meets_instructions"], f"{name}: {run['instructions_vs_int8']:.3f}x int8"
    assert runs["int4"]["int4_saved_bytes"] > runs["mixed"]["int4_saved_bytes"] > 0
    assert runs["int4"]["flash_bytes"] < runs["mixed"]["flash_bytes"] < runs["int8"]["flash_bytes"]
    # first/last: the first CONV_2D int8, the pointwise CONV_2Ds int4, but the int8 one run by
    # the int4 unit (ek_conv2d_s8_via_s4), so no kind links both families; kinds: every
    # CONV_2D int4, the depthwise layers and the classifier int8
    assert "ek_conv2d_s8_via_s4" in runs["mixed"]["kernels"]
    assert runs["mixed"]["split_kinds"] == []
    assert runs["mixed_kinds"]["split_kinds"] == []
    # each within issue 13's 2% of "int8 flash - half the int4 weights" (bench/int4_device.py)
    for name in ("int4", "mixed", "mixed_kinds"):
        assert runs[name]["meets_flash"], f"{name}: {runs[name]['flash_error']:+.2%}"
    assert "ek_depthwise_conv2d_s8_inplace" in runs["mixed_kinds"]["kernels"]
    assert "ek_conv2d_s4" in runs["mixed_kinds"]["kernels"]
