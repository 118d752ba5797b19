"""`check_pt2`: check a ``.pt2`` archive without loading its program (kept for callers that only
want the check; `edgekit.converters.torch_import.load_pt2` runs the same checks on the same
bytes). See `edgekit.converters.pt2_reader` and `edgekit.converters.pt2_program`."""

from __future__ import annotations

import os

from edgekit.converters.pt2_program import check_program
from edgekit.converters.pt2_reader import read_pt2


def check_pt2(path: str | os.PathLike) -> None:
    """Raise `ModelFormatError` / `UnsupportedError` unless the archive at ``path`` reads with raw
    tensors only and its program holds only what edgekit accepts."""
    check_program(read_pt2(path))
