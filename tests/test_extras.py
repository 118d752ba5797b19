"""Optional dependencies: pyproject's extras list what `edgekit.extras` says each one brings, and a
command whose extra is missing names it (`pip install 'edgekit[nas]'`) instead of a traceback."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

from edgekit import extras
from edgekit.cli import main
from edgekit.errors import MissingExtraError

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _distribution(requirement: str) -> str:
    return re.split(r"[<>=~!\[; ]", requirement, maxsplit=1)[0].lower()


def test_pyproject_extras_bring_what_the_commands_import() -> None:
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    for extra, modules in extras.EXTRAS.items():
        assert extra in declared, f"pyproject.toml has no [{extra}] extra"
        assert {_distribution(r) for r in declared[extra]} == {d.lower() for d in modules.values()}, extra


def test_pyproject_names_no_missing_setup_script() -> None:
    root = PYPROJECT.parent
    for script in re.findall(r"\b[\w./-]+\.sh\b", PYPROJECT.read_text()):
        assert (root / script).is_file(), f"pyproject.toml names {script}, which does not exist"


def test_require_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=r"edgekit search needs optuna, which is not "
                                                r"installed: pip install 'edgekit\[nas\]'"):
        extras.require("optuna", extra="nas", purpose="edgekit search")


def test_require_passes_on_a_broken_install(monkeypatch, tmp_path: Path) -> None:
    """A module that is there but misses a dependency of its own is not a missing extra."""
    (tmp_path / "edgekit_fake_dep.py").write_text("import edgekit_not_there_at_all\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(extras.EXTRAS, "fake", {"edgekit_fake_dep": "fake-dep"})
    with pytest.raises(ModuleNotFoundError, match="edgekit_not_there_at_all"):
        extras.require("edgekit_fake_dep", extra="fake")


def test_search_without_optuna_names_the_nas_extra(monkeypatch, capsys, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)
    status = main(["search", "--board", "nucleo-l4r5zi", "--dataset", "digits",
                   "-o", str(tmp_path / "search")])
    err = capsys.readouterr().err
    assert status != 0 and "Traceback" not in err
    assert "pip install 'edgekit[nas]'" in err


@pytest.mark.parametrize("missing", ["torch", "onnx"])
def test_demo_without_torch_or_onnx_names_the_nas_extra(missing: str, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, missing, None)
    status = main(["demo", "--trials", "1"])
    err = capsys.readouterr().err
    assert status != 0 and "Traceback" not in err
    assert f"edgekit demo needs {missing}, which is not installed: pip install 'edgekit[nas]'" in err


def test_convert_onnx_without_onnx_names_the_convert_extra(monkeypatch, capsys, tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"\x08\x07")  # never parsed: the import fails first
    import numpy as np

    np.save(tmp_path / "calib.npy", np.zeros((2, 3), np.float32))
    monkeypatch.setitem(sys.modules, "onnx", None)
    status = main(["convert", str(model), "--calib", str(tmp_path / "calib.npy"),
                   "-o", str(tmp_path / "m.tflite")])
    err = capsys.readouterr().err
    assert status != 0 and "Traceback" not in err
    assert "importing an ONNX model needs onnx, which is not installed: pip install 'edgekit[convert]'" in err
