"""PlatformIO export of a build directory: ``platformio.ini`` and, for emulated boards, a local
platform that builds offline with the system arm-none-eabi-gcc."""
from __future__ import annotations
from pathlib import Path
from edgekit.boards import Target

def write_project(directory: Path, target: Target, sources: list[str]) -> None:
    """Placeholder until the PlatformIO export lands."""
