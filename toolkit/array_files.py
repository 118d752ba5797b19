"""Read ``.npy`` / ``.npz`` files from users with limits, before numpy allocates anything.

`np.load` trusts the header: a ``.npy`` whose header claims 10^13 elements makes it try to
allocate terabytes, a garbage header raises whatever the parser hits, an object dtype needs
pickles. `read_arrays` parses the header with numpy's own reader (a literal parser, no pickles),
then refuses object and structured dtypes, shapes beyond `max_elements` (the caller's budget:
a model's input size, or an absolute cap for calibration data) and data shorter than the
header claims; only then reads exactly the bytes it needs. ``.npz`` members go through the same
reader from the zip stream (so a member that inflates beyond its header is never inflated).
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import IO

import numpy as np

from edgekit.errors import DataFileError, UsageError

#: an absolute cap when no model bounds the data (calibration, evaluation): 2^27 elements is
#: 512 MiB of float32, far beyond any calibration set of a microcontroller model
DEFAULT_MAX_ELEMENTS = 1 << 27
#: arrays an ``.npz`` may hold
MAX_NPZ_MEMBERS = 256
#: dtype kinds a numeric array may have: bool, signed, unsigned, float
NUMERIC_KINDS = "biuf"

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"


def read_arrays(path: str | os.PathLike, what: str = "data",
                max_elements: int = DEFAULT_MAX_ELEMENTS) -> np.ndarray | dict[str, np.ndarray]:
    """One array from a ``.npy`` file, or ``{name: array}`` from an ``.npz`` (in file order).

    `max_elements` bounds every array and, for an ``.npz``, their sum. Errors name the file
    (as ``what file 'path'``) and what is wrong.
    """
    path = Path(path)
    label = f"{what} file {str(path)!r}"
    if path.is_dir():
        raise UsageError(f"{label} is a folder, not an .npy/.npz file")
    try:
        with open(path, "rb") as f:
            head = f.read(len(_NPY_MAGIC))
            f.seek(0)
            if head.startswith(_NPY_MAGIC):
                size = os.fstat(f.fileno()).st_size
                return _read_npy(f, label, max_elements, size)
            if head.startswith((_ZIP_MAGIC, _EMPTY_ZIP_MAGIC)):
                return _read_npz(f, label, max_elements)
    except FileNotFoundError:
        raise UsageError(f"{label} does not exist") from None
    except OSError as err:
        raise UsageError(f"{label}: cannot read it ({err.strerror or err})") from None
    raise DataFileError(f"{label} is neither an .npy nor an .npz file (it starts with"
                         f" {head[:8]!r})")


def _read_npy(f: IO[bytes], label: str, max_elements: int,
              available: int | None) -> np.ndarray:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:
            raise ValueError(f"unknown .npy format version {version}")
    except Exception as err:  # numpy's header parser raises whatever the bytes provoke
        # (ValueError, SyntaxError, tokenize.TokenError, ...): all mean a damaged header
        raise DataFileError(f"{label}: the .npy header is damaged ({str(err)[:200]})") from None
    if dtype.hasobject or dtype.kind not in NUMERIC_KINDS or dtype.fields is not None \
            or dtype.subdtype is not None:
        raise DataFileError(f"{label}: dtype {dtype!s} is refused (object arrays hold pickled"
                             " objects); save plain numeric arrays")
    if any(not isinstance(d, int) or d < 0 for d in shape):
        raise DataFileError(f"{label}: the .npy header has an invalid shape {shape}")
    count = math.prod(shape)
    if count > max_elements:
        raise DataFileError(f"{label}: shape {list(shape)} holds {count} elements, more than"
                             f" the {max_elements} this use takes")
    need = count * dtype.itemsize
    if available is not None and available - f.tell() < need:
        raise DataFileError(f"{label} is truncated: shape {list(shape)} {dtype.name} needs"
                             f" {need} bytes of data, the file has {max(available - f.tell(), 0)}")
    data = _read_exactly(f, need)
    if len(data) != need:
        raise DataFileError(f"{label} is truncated: shape {list(shape)} {dtype.name} needs"
                             f" {need} bytes of data, got {len(data)}")
    array = np.frombuffer(data, dtype=dtype, count=count)
    if fortran:
        return array.reshape(shape[::-1]).transpose().copy()
    return array.reshape(shape).copy()


def _read_exactly(f: IO[bytes], n: int) -> bytes:
    chunks, left = [], n
    while left > 0:
        chunk = f.read(min(left, 1 << 24))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_npz(f: IO[bytes], label: str, max_elements: int) -> dict[str, np.ndarray]:
    try:
        archive = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, ValueError, EOFError, OverflowError) as err:
        raise DataFileError(f"{label}: not a readable .npz archive ({err})") from None
    arrays: dict[str, np.ndarray] = {}
    with archive:
        members = archive.infolist()
        if len(members) > MAX_NPZ_MEMBERS:
            raise DataFileError(f"{label}: {len(members)} arrays, more than the"
                                 f" {MAX_NPZ_MEMBERS} an .npz may hold here")
        budget = max_elements
        for info in members:
            if not info.filename.endswith(".npy") or info.is_dir():
                raise DataFileError(f"{label}: member {info.filename!r} is not an .npy array")
            key = info.filename[:-len(".npy")]
            if key in arrays:
                raise DataFileError(f"{label}: array {key!r} appears twice in the archive")
            where = f"{label}, array {key!r}"
            try:
                with archive.open(info) as member:
                    value = _read_npy(member, where, budget, None)
            except DataFileError:
                raise
            except (zipfile.BadZipFile, ValueError, EOFError, OSError, NotImplementedError,
                    RuntimeError, OverflowError, zlib.error) as err:
                raise DataFileError(f"{where}: cannot be read from the archive ({err})") from None
            budget -= value.size
            arrays[key] = value
    return arrays


__all__ = ["DEFAULT_MAX_ELEMENTS", "MAX_NPZ_MEMBERS", "read_arrays"]
