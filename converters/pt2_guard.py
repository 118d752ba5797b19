"""Check a ``.pt2`` archive before ``torch.export.load`` opens it.

``torch.export.load`` is not safe on untrusted files by itself: the graph is JSON, but pickled
weights and constants go through ``torch.load(weights_only=False)``, opaque constants through
``pickle.loads``, and the sample inputs fall back to ``weights_only=False`` when the safe load
fails (torch 2.13, ``torch/export/pt2_archive/_package.py`` and ``_export/serde/serialize.py``).
Any of those runs code from the file.

`check_pt2` reads the zip without unpickling anything unsafe: JSON and plain metadata members
pass; raw tensor payloads that a weights/constants config marks ``use_pickle: false`` pass; every
other member must load with ``torch.load(weights_only=True)`` (which only rebuilds tensors and
plain containers); custom and opaque objects are refused outright. Only then may the caller
hand the file to ``torch.export.load``.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path

from edgekit.errors import ModelFormatError

#: archive members that hold plain text / bytes and are never unpickled
_METADATA = ("archive_format", "archive_version", "byteorder", ".data/version",
             ".data/serialization_id", "version")
#: constant payload prefixes torch loads with a full unpickler (TorchScript or plain pickle)
_UNSAFE_PREFIXES = ("custom_obj_", "opaque_obj_")
#: the largest member we read into memory for the check
MAX_MEMBER_BYTES = 1 << 30


def check_pt2(path: str | os.PathLike) -> None:
    """Raise `ModelFormatError` unless every pickled member of the ``.pt2`` zip at ``path`` loads
    with ``weights_only=True`` and nothing in it needs a full unpickler."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise ModelFormatError(f"{path}: not a .pt2 archive (a zip written by"
                               f" torch.export.save): {err}") from None
    with archive:
        members = {info.filename: info for info in archive.infolist() if not info.is_dir()}
        raw = _raw_payloads(path, archive, members)
        for name, info in members.items():
            base = name.rsplit("/", 1)[-1]
            if name.endswith(".json") or name in raw or any(name.endswith("/" + m) or name == m
                                                           for m in _METADATA):
                continue
            if base.startswith(_UNSAFE_PREFIXES):
                raise ModelFormatError(f"{path}: member {name!r} is a pickled Python/TorchScript"
                                       " object, refused (loading it could run code)")
            if info.file_size > MAX_MEMBER_BYTES:
                raise ModelFormatError(f"{path}: member {name!r} is {info.file_size} bytes,"
                                       " larger than a model we accept")
            _check_weights_only(path, name, archive.read(name))


def _raw_payloads(path: Path, archive: zipfile.ZipFile, members: dict) -> set[str]:
    """Members the weights/constants configs declare as raw tensor bytes (``use_pickle`` false)."""
    raw: set[str] = set()
    for name in members:
        if not name.endswith(("_weights_config.json", "_constants_config.json")):
            continue
        try:
            config = json.loads(archive.read(name)).get("config", {})
        except (ValueError, AttributeError) as err:
            raise ModelFormatError(f"{path}: member {name!r} is not valid JSON: {err}") from None
        folder = name.rsplit("/", 1)[0]
        for meta in config.values() if isinstance(config, dict) else ():
            if isinstance(meta, dict) and not meta.get("use_pickle", False):
                raw.add(f"{folder}/{meta.get('path_name')}")
    return raw


def _check_weights_only(path: Path, name: str, data: bytes) -> None:
    import torch

    try:
        torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ModelFormatError(f"{path}: member {name!r} is a pickle that would run code or build"
                               f" arbitrary objects on load, refused ({first})") from None
    except Exception as err:
        raise ModelFormatError(f"{path}: member {name!r} is not a readable tensor payload"
                               f" ({type(err).__name__}: {err})") from None
