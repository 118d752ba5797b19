"""Firmware builds shared by hardware-in-the-loop modules (import the fixtures): each firmware
is built once per session, whichever module asks first."""

from __future__ import annotations

import pytest

#: one build root per kind, shared by every module that imports these fixtures
_BUILT: dict = {}


@pytest.fixture(scope="session")
def selftest_builds(tmp_path_factory):
    """``get(board_id)``: the self-test as the board runs it (a real board's hardware build, an
    emulated board's own), one folder per board under one root, built on first use."""
    from edgekit.boards import load_board
    from edgekit.firmware.build import build_selftest

    root = _BUILT.setdefault(("selftest-root",), tmp_path_factory.mktemp("selftest-builds"))

    def get(board_id: str):
        if not (root / board_id / "firmware.elf").is_file():
            build_selftest(board_id, root / board_id, emulated=load_board(board_id).kind == "emulated")
        return root / board_id
    return get


@pytest.fixture(scope="session")
def hardware_model_builds(tmp_path_factory):
    """``get(board_id, model)``: the --hardware build of an MLPerf Tiny model, built on first use."""
    from conftest import mlperf_path
    from edgekit.firmware.model_build import build_model

    root = _BUILT.setdefault(("model-root",), tmp_path_factory.mktemp("hardware-model-builds"))

    def get(board_id: str, model: str):
        directory = root / f"{board_id}-{model}"
        if not (directory / "firmware.elf").is_file():
            build_model(mlperf_path(model), board_id, directory, emulated=False)
        return directory
    return get
