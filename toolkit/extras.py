"""Optional dependencies, by pip extra: `require` imports one, or names the extra to install.

The core install (numpy, tflite, pyserial, unicorn, ...) builds, plans and measures; the extras
bring what only some commands import. The table is the one place that says which module comes
from which extra: pyproject.toml's ``[project.optional-dependencies]`` lists the same
distributions (a test checks they agree).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from edgekit.errors import MissingExtraError

#: extra -> {importable module: PyPI distribution}
EXTRAS: dict[str, dict[str, str]] = {
    "hil": {"pyocd": "pyocd", "serial": "pyserial"},
    "nas": {"torch": "torch", "optuna": "optuna", "sklearn": "scikit-learn", "onnx": "onnx"},
    "convert": {"torch": "torch", "onnx": "onnx"},
    "oracles": {"tflite_micro": "tflite-micro", "ai_edge_litert": "ai-edge-litert"},
}


def install_hint(extra: str) -> str:
    """The pip command that installs `extra`."""
    return f"pip install 'edgekit[{extra}]'"


def require_all(extra: str, purpose: str, modules: tuple[str, ...]) -> None:
    """`require` each of `modules`, so a command names its extra before any work starts."""
    for module in modules:
        require(module, extra=extra, purpose=purpose)


#: what the architecture search imports (scikit-learn only for the digits dataset, checked there)
SEARCH_MODULES = ("optuna", "torch", "onnx")


def require(module: str, *, extra: str, purpose: str = "") -> ModuleType:
    """Import `module` (one of `EXTRAS[extra]`); if it is not installed, a `MissingExtraError`
    naming the distribution and the extra. A module that is installed but fails to import for
    another reason (a missing dependency of its own) raises that error unchanged."""
    if module not in EXTRAS.get(extra, {}):
        raise ValueError(f"{module!r} is not listed under extra {extra!r} in edgekit.extras.EXTRAS")
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name != module.split(".")[0]:
            raise
    what = f"{purpose} needs" if purpose else "this command needs"
    raise MissingExtraError(f"{what} {EXTRAS[extra][module]}, which is not installed: "
                            f"{install_hint(extra)}")
