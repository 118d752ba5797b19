"""What every benchmark script writes the same way: the compiler it built with, and its JSON
result file (folder made, indented, newline-terminated, its path printed)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


def compiler_version(compiler: str = "arm-none-eabi-gcc") -> str:
    """The first line of ``COMPILER --version`` (which toolchain the figures were built with)."""
    return subprocess.run([compiler, "--version"], capture_output=True,
                          text=True).stdout.splitlines()[0]


def write_results(path: Path, document: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {path}")
