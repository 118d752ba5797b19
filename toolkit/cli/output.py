"""One way to print a command's result: text for people, one JSON object for scripts."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable

import numpy as np

#: bump when a field changes meaning or disappears (adding fields does not bump it)
SCHEMA_VERSION = 1


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "__fspath__"):
        return str(value)
    return value


def emit(args, command: str, payload: dict, render_text: Callable[[dict], str]) -> None:
    """Print `payload` as JSON when ``--json`` was given, else ``render_text(payload)``."""
    if getattr(args, "json", False):
        obj = {"schema_version": SCHEMA_VERSION, "command": command, **payload}
        json.dump(_jsonable(obj), sys.stdout, indent=2, sort_keys=False)
        sys.stdout.write("\n")
    else:
        text = render_text(payload)
        if text:
            print(text)


def progress(iterable=None, *, total=None, desc: str = "", args=None, **kwargs):
    """A tqdm progress bar on stderr, silent under ``--json`` or when stderr is not a terminal."""
    from tqdm import tqdm

    disable = bool(getattr(args, "json", False)) or not sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, disable=disable, file=sys.stderr, **kwargs)
