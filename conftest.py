"""Shared pytest fixtures for tests/, hil_tests/ and docs/ (root conftest: seen by all three)."""

from __future__ import annotations

from pathlib import Path

import importlib.util
import os
import sys

import pytest

REPO_ROOT = Path(__file__).resolve().parent
#: The MLPerf Tiny int8 reference models, used by path and never copied into the repo.
MLPERF_DIR = REPO_ROOT.parent / "shared" / "models" / "mlperf_tiny"
MLPERF_MODELS = {
    "vww": "vww_96_int8.tflite",
    "kws": "kws_ref_model.tflite",
    "resnet": "pretrainedResnet_quant.tflite",
    "ad01": "ad01_int8.tflite",
}


def mlperf_path(name: str) -> Path:
    """Path of an MLPerf Tiny model by short name (vww, kws, resnet, ad01) or file name.

    Skips when the model is absent, except under CI (``CI`` set), where it fails.
    """
    path = MLPERF_DIR / MLPERF_MODELS.get(name, name)
    if not path.exists():
        message = f"MLPerf Tiny model not found at {path} (expected ../shared beside the repo)"
        # In CI the models are always beside the clone: a missing one is a broken set-up, and
        # skipping would let the bit-exactness tests pass without running.
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def bench_module(name: str):
    """``bench/NAME.py`` imported as a module, for the tests of a benchmark's pieces (registered
    under its name, whose dataclasses look their module up; bench/ on the path for the imports
    of its neighbours)."""
    bench_dir = REPO_ROOT / "bench"
    if str(bench_dir) not in sys.path:
        sys.path.insert(0, str(bench_dir))
    spec = importlib.util.spec_from_file_location(name, bench_dir / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


#: the host builds of the C kernels that generated models are linked against in the tests
HOST_KERNEL_DEFINES = {"portable": ("EDGEKIT_PORTABLE_KERNELS",), "dsp": ("EDGEKIT_EMULATE_DSP",)}


@pytest.fixture(scope="session")
def kernel_objects(tmp_path_factory) -> dict:
    """Every C kernel compiled for the host once per test session: path -> object files, for
    each path of `HOST_KERNEL_DEFINES` (the portable C, and the DSP path's C emulation)."""
    from edgekit.firmware.host_run import compile_kernels

    return {path: compile_kernels(tmp_path_factory.mktemp(f"kernels-{path}"), defines=defines)
            for path, defines in HOST_KERNEL_DEFINES.items()}


@pytest.fixture(params=sorted(MLPERF_MODELS))
def mlperf_model(request) -> Path:
    """Each MLPerf Tiny model in turn (parametrised by short name)."""
    return mlperf_path(request.param)


def pytest_terminal_summary(terminalreporter) -> None:
    """Figures for the CI log, without ``-s`` or ``-rA``: what passed tests recorded with
    ``record_property("summary", text)``, and how many Renode tests ran (whether Renode was
    there)."""
    lines = [value for report in terminalreporter.stats.get("passed", [])
             for key, value in report.user_properties if key == "summary"]
    counts = {outcome: sum(1 for report in terminalreporter.stats.get(outcome, [])
                           if "test_renode.py" in getattr(report, "nodeid", ""))
              for outcome in ("passed", "failed", "skipped")}
    if any(counts.values()):
        lines.append(f"Renode tests (hil_tests/test_renode.py): {counts['passed']} passed,"
                     f" {counts['failed']} failed, {counts['skipped']} skipped")
    if lines:
        terminalreporter.section("figures")
        for line in lines:
            terminalreporter.write_line(line)
