"""Read a build folder's manifest (``edgekit-build.json``) for `edgekit measure` and `flash`.

The manifest is written by `edgekit build`, but it is a file on disk that anyone can edit or
truncate, so every field the measuring side uses is type-checked here, once, and a wrong one is a
`FirmwareFormatError` naming the file and the field. Fields nothing reads are left alone.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from edgekit.errors import FirmwareFormatError
from edgekit.file_read import read_limited

#: a manifest is a few KiB (expected outputs included); refuse to parse what cannot be one
MAX_MANIFEST_BYTES = 64 << 20
#: the largest count a manifest figure may hold (exact in a float, far above any firmware's)
MAX_COUNT = 1 << 53
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


def read_manifest(path: Path) -> dict:
    """The parsed, checked manifest at `path`."""
    path = Path(path)
    data = read_limited(path, MAX_MANIFEST_BYTES, FirmwareFormatError, "build manifest")
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        # ValueError covers JSONDecodeError and integers too long to convert
        raise FirmwareFormatError(f"cannot read build manifest {path}: {err}") from None
    check_manifest(raw, path)
    return raw


def check_manifest(raw, path: Path | str) -> None:
    """`FirmwareFormatError` unless every field the measuring side reads has its type."""

    def bad(field: str, message: str) -> FirmwareFormatError:
        return FirmwareFormatError(f"build manifest {path}: field {field}: {message}")

    if not isinstance(raw, dict):
        raise FirmwareFormatError(f"build manifest {path}: expected a JSON object, got "
                                  f"{type(raw).__name__}")
    for field in ("elf", "board", "payload"):
        if field in raw and (not isinstance(raw[field], str) or not raw[field]):
            raise bad(field, f"expected a non-empty string, got {_short(raw[field])}")
    if "emulated" in raw and not isinstance(raw["emulated"], bool):
        raise bad("emulated", f"expected true or false, got {_short(raw['emulated'])}")
    if "expected_outputs" in raw:
        outputs = raw["expected_outputs"]
        if not isinstance(outputs, list):
            raise bad("expected_outputs", f"expected a list of hex strings, got {_short(outputs)}")
        for index, text in enumerate(outputs):
            if not isinstance(text, str) or not _HEX.fullmatch(text):
                raise bad(f"expected_outputs[{index}]", "expected a hex string with two digits per "
                                                        f"byte, got {_short(text)}")
    for section, fields in (("estimate", ("peak_sram_bytes", "stack_bytes")),
                            ("work", ("macs", "elements"))):
        if raw.get(section) is None:
            continue
        if not isinstance(raw[section], dict):
            raise bad(section, f"expected an object, got {_short(raw[section])}")
        for field in fields:
            value = raw[section].get(field)
            if value is not None and not _is_count(value):
                raise bad(f"{section}.{field}", f"expected a whole number from 0 to 2^53, got "
                                                f"{_short(value)}")


def _is_count(value) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) and value == int(value) and 0 <= value <= MAX_COUNT


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
