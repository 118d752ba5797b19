"""Read a ``.pt2`` archive (``torch.export.save``) without running anything from it.

``torch.export.load`` is not safe on untrusted files: pickled weights and constants go through
``torch.load(weights_only=False)``, opaque constants through ``pickle.loads``, the sample inputs
fall back to ``weights_only=False``, and the program JSON carries guard code that
``ExportedProgram.module()`` compiles and sympy expressions that ``sympify`` evaluates (torch
2.13, ``torch/export/pt2_archive/_package.py``, ``torch/_export/serde/serialize.py``,
``torch/export/_unlift.py``). Checking a file and then handing it to that loader lets a crafted
archive show the checker one thing and the loader another (duplicate member names, decoy
configs). So edgekit never calls it, and nothing here unpickles:

- the zip is read once, into memory, with limits (members, sizes, compression ratio); duplicate,
  absolute and ``..`` names are refused, and so is every member whose role is not known;
- the weights/constants configs and the program are parsed with `json` (duplicate keys
  refused); every tensor is built from its raw bytes (dtype, shape, stride, offset from the
  config, checked against the member's length); a pickled payload (``use_pickle``), a legacy
  ``torch.save`` weights file, a custom or opaque object is refused;
- the sample inputs are never read: input shapes come from the program's graph.

`edgekit.converters.pt2_program` then checks the program JSON before torch's deserializer sees
it. The result of `read_pt2` holds plain dicts of tensors, so the deserializer has nothing to
unpickle.
"""

from __future__ import annotations

import io
import json
import math
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from edgekit.errors import ModelFormatError
from edgekit.file_read import read_limited

#: limits on what an archive may hold (an MCU model is far smaller than any of these)
MAX_MEMBERS = 10_000
MAX_MEMBER_BYTES = 512 << 20
MAX_TOTAL_BYTES = 1 << 30
MAX_JSON_BYTES = 64 << 20
MAX_METADATA_BYTES = 4096
#: a member larger than this may not have been compressed more than MAX_RATIO times (zip bombs)
RATIO_CHECK_BYTES = 1 << 20
MAX_RATIO = 200

#: short text members torch writes beside the model; read only for their size
METADATA_MEMBERS = frozenset({"archive_format", "archive_version", "byteorder", "version",
                              ".data/version", ".data/serialization_id"})
_NAME = re.compile(r"[A-Za-z0-9_]+")

#: torch.export's ScalarType codes (``torch/_export/serde/schema.py``) edgekit reads, as the
#: little-endian numpy dtype of their bytes (bfloat16 is read as int16 and reinterpreted)
SCALAR_TYPES = {1: "<u1", 2: "<i1", 3: "<i2", 4: "<i4", 5: "<i8", 6: "<f2", 7: "<f4", 8: "<f8",
                12: "|b1", 13: "<i2"}
_BFLOAT16 = 13
_STRIDED = 7


@dataclass
class Pt2Archive:
    """What edgekit takes from a ``.pt2``: the program JSON and its checked tensor views by name
    (`tensors` turns them into torch tensors)."""

    path: Path
    model_name: str
    program: dict
    weights: dict
    constants: dict
    members: dict

    def tensors(self) -> tuple[dict, dict]:
        """(weights, constants) as torch tensors, each member's bytes one storage."""
        return build_tensors(self.members, self.weights), build_tensors(self.members,
                                                                         self.constants)


def read_pt2(path) -> Pt2Archive:
    """Read and check the ``.pt2`` at ``path``; raise `ModelFormatError` naming what is wrong."""
    path = Path(path)
    members = _read_zip(path)
    models = [n for n in members if n.startswith("models/")]
    if len(models) != 1 or not re.fullmatch(r"models/[A-Za-z0-9_]+\.json", models[0]):
        raise ModelFormatError(f"{path}: expected one program models/<name>.json in the archive,"
                               f" found {models or 'none'}")
    model = models[0][len("models/"):-len(".json")]
    roles = {models[0]: "program", f"data/sample_inputs/{model}.pt": "ignored (never read)"}
    roles.update((name, "metadata") for name in METADATA_MEMBERS)
    for legacy in (f"data/weights/{model}.pt", f"data/constants/{model}.pt"):
        if legacy in members:
            raise ModelFormatError(f"{path}: member {legacy!r} is a legacy torch.save pickle of"
                                   " the weights, refused (loading it could run code); save the"
                                   " model again with torch.export.save")
    weights = _load_payloads(path, members, roles, "weights", model, required=True)
    constants = _load_payloads(path, members, roles, "constants", model, required=False)
    for name, data in members.items():
        role = roles.get(name)
        if role is None:
            raise ModelFormatError(f"{path}: member {name!r} has no role edgekit knows in a"
                                   " torch.export archive, refused")
        if role == "metadata" and len(data) > MAX_METADATA_BYTES:
            raise ModelFormatError(f"{path}: member {name!r} is {len(data)} bytes; a metadata"
                                   f" member has at most {MAX_METADATA_BYTES}")
    if members.get("byteorder", b"little").strip() != b"little":
        raise ModelFormatError(f"{path}: member 'byteorder' says"
                               f" {members['byteorder'][:16]!r}; edgekit reads little-endian"
                               " tensors only")
    program = parse_json(path, models[0], members[models[0]])
    if not isinstance(program, dict):
        raise ModelFormatError(f"{path}: member {models[0]!r} is not a JSON object")
    return Pt2Archive(path, model, program, weights, constants, members)


# --- the zip ---------------------------------------------------------------------------------------

def _read_zip(path: Path) -> dict[str, bytes]:
    """Every member's bytes by name relative to the archive's one top folder."""
    raw = read_limited(path, MAX_TOTAL_BYTES, ModelFormatError, ".pt2 archive")
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as err:
        raise ModelFormatError(f"{path}: not a .pt2 archive (a zip written by"
                               f" torch.export.save): {err or 'empty or truncated'}") from None
    with archive:
        infos = archive.infolist()
        if not infos:
            raise ModelFormatError(f"{path}: the zip archive is empty")
        if len(infos) > MAX_MEMBERS:
            raise ModelFormatError(f"{path}: {len(infos)} zip members, more than {MAX_MEMBERS}")
        roots, seen, total, members = set(), set(), 0, {}
        for info in infos:
            root, rel = _split_name(path, info.filename)
            roots.add(root)
            if len(roots) > 1:
                raise ModelFormatError(f"{path}: members under more than one top folder"
                                       f" ({sorted(roots)}); torch.export.save writes one")
            if info.filename in seen:
                raise ModelFormatError(f"{path}: member {info.filename!r} appears more than once"
                                       " in the zip, refused (readers would disagree on which"
                                       " copy counts)")
            seen.add(info.filename)
            if info.is_dir():
                continue
            total += info.file_size
            _check_sizes(path, info, total)
            members[rel] = _read_member(path, archive, info)
    return members


def _split_name(path: Path, name: str) -> tuple[str, str]:
    pure = PurePosixPath(name)
    if (not name or "\\" in name or "\x00" in name or pure.is_absolute() or ".." in pure.parts
            or any(ord(c) < 32 for c in name) or re.match(r"[A-Za-z]:", name)):
        raise ModelFormatError(f"{path}: zip member name {name!r} is absolute, climbs out with"
                               " '..' or holds control characters, refused")
    root, _, rel = name.partition("/")
    if not rel and not name.endswith("/"):
        raise ModelFormatError(f"{path}: zip member {name!r} is outside the archive's top"
                               " folder (torch.export.save puts every member under one)")
    return root, rel


def _check_sizes(path: Path, info: zipfile.ZipInfo, total: int) -> None:
    if info.file_size > MAX_MEMBER_BYTES:
        raise ModelFormatError(f"{path}: member {info.filename!r} is {info.file_size} bytes,"
                               f" more than the {MAX_MEMBER_BYTES} edgekit reads")
    if total > MAX_TOTAL_BYTES:
        raise ModelFormatError(f"{path}: members add up to more than {MAX_TOTAL_BYTES} bytes"
                               " uncompressed")
    if (info.file_size > RATIO_CHECK_BYTES
            and info.file_size > MAX_RATIO * max(info.compress_size, 1)):
        raise ModelFormatError(f"{path}: member {info.filename!r} expands {info.compress_size}"
                               f" -> {info.file_size} bytes (more than {MAX_RATIO}x), refused")


def _read_member(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    try:
        with archive.open(info) as stream:
            data = stream.read(info.file_size + 1)
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, EOFError,
            OSError, ValueError) as err:
        raise ModelFormatError(f"{path}: member {info.filename!r} is unreadable: {err}") from None
    if len(data) != info.file_size:
        raise ModelFormatError(f"{path}: member {info.filename!r} holds {len(data)} bytes, its"
                               f" header says {info.file_size}")
    return data


def parse_json(path: Path, name: str, data: bytes):
    """``data`` parsed as JSON, duplicate object keys refused (a decoy value hides behind one)."""
    if len(data) > MAX_JSON_BYTES:
        raise ModelFormatError(f"{path}: member {name!r} is {len(data)} bytes of JSON, more than"
                               f" {MAX_JSON_BYTES}")

    def unique(pairs):
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            dup = next(k for k in keys if keys.count(k) > 1)
            raise ModelFormatError(f"{path}: member {name!r} repeats the JSON key {dup!r}, refused")
        return dict(pairs)

    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=unique)
    except (ValueError, RecursionError) as err:
        if isinstance(err, ModelFormatError):
            raise
        raise ModelFormatError(f"{path}: member {name!r} is not valid JSON:"
                               f" {str(err)[:200] or type(err).__name__}") from None


# --- weights and constants -------------------------------------------------------------------------

def _load_payloads(path: Path, members: dict, roles: dict, kind: str, model: str,
                   required: bool) -> dict:
    """The tensors a ``data/<kind>/<model>_<kind>_config.json`` describes, by name."""
    folder = f"data/{kind}/"
    config_name = f"{folder}{model}_{kind}_config.json"
    if config_name not in members:
        if required:
            raise ModelFormatError(f"{path}: no {config_name!r} in the archive")
        return {}
    roles[config_name] = "config"
    config = parse_json(path, config_name, members[config_name])
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict) or set(config) != {"config"}:
        raise ModelFormatError(f"{path}: {config_name!r} is not a {{'config': {{...}}}} object")
    views = {}
    for fqn, meta in entries.items():
        where = f"{path}: {config_name!r} entry {fqn!r}"
        check_fqn(where, fqn)
        if not isinstance(meta, dict):
            raise ModelFormatError(f"{where} is not an object")
        unknown = set(meta) - {"path_name", "is_param", "use_pickle", "tensor_meta"}
        if unknown:
            raise ModelFormatError(f"{where}: unknown field {sorted(unknown)[0]!r}")
        if meta.get("use_pickle") is not False:
            raise ModelFormatError(f"{where} is a pickled payload (use_pickle:"
                                   f" {meta.get('use_pickle')!r}), refused: loading it could"
                                   " run code; edgekit reads raw tensor bytes only")
        name = meta.get("path_name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ModelFormatError(f"{where}: path_name {name!r} is not a plain member name")
        if kind == "constants" and not name.startswith("tensor_"):
            raise ModelFormatError(f"{where}: {name!r} is a custom or opaque Python object,"
                                   " refused (loading it could run code); tensors only")
        member = folder + name
        if member not in members:
            raise ModelFormatError(f"{where} points at {member!r}, which is not in the archive")
        roles[member] = "tensor data"
        dtype, sizes, strides, offset = tensor_meta(where, meta.get("tensor_meta"),
                                                    devices=("cpu",))
        _check_extent(where, member, len(members[member]), dtype, sizes, strides, offset)
        views[fqn] = (where, member, dtype, sizes, strides, offset, meta.get("is_param") is True)
    return views


def build_tensors(members: dict, views: dict) -> dict:
    """The checked views of `_load_payloads` as torch tensors (one storage per member)."""
    import torch

    storages, tensors = {}, {}
    for fqn, (where, member, dtype, sizes, strides, offset, is_param) in views.items():
        key = (member, dtype)
        if key not in storages:
            storages[key] = _storage(where, member, members[member], dtype)
        storage = storages[key]
        if len(storage) == 0:  # torch writes fake and empty tensors as 0 bytes: zeros
            tensor = torch.zeros(sizes, dtype=storage.dtype)
        else:
            tensor = torch.as_strided(storage, sizes, strides, offset)
        tensors[fqn] = torch.nn.Parameter(tensor, requires_grad=False) if is_param else tensor
    return tensors


def check_fqn(where: str, fqn) -> None:
    """A dotted attribute path (``layer1.0.weight``): plain names, no dunders."""
    if (not isinstance(fqn, str) or not re.fullmatch(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*", fqn)
            or any(part.startswith("__") for part in fqn.split("."))):
        raise ModelFormatError(f"{where}: name {str(fqn)[:80]!r} is not a dotted attribute path")


def tensor_meta(where: str, meta, devices: tuple[str, ...]):
    """(numpy dtype code, sizes, strides, storage offset) of a torch.export TensorMeta."""
    if not isinstance(meta, dict):
        raise ModelFormatError(f"{where}: tensor_meta is missing")
    dtype = SCALAR_TYPES.get(meta.get("dtype")) if type(meta.get("dtype")) is int else None
    if dtype is None:
        raise ModelFormatError(f"{where}: dtype code {meta.get('dtype')!r} is not a dtype edgekit"
                               " reads (float, int, bool)")
    if meta.get("layout") != _STRIDED:
        raise ModelFormatError(f"{where}: layout {meta.get('layout')!r} is not strided")
    device = meta.get("device")
    if not isinstance(device, dict) or device.get("type") not in devices:
        raise ModelFormatError(f"{where}: device {device!r} is not one of {devices}")
    sizes = [static_int(where, "size", v) for v in _list(where, "sizes", meta.get("sizes"))]
    strides = [static_int(where, "stride", v) for v in _list(where, "strides", meta.get("strides"))]
    offset = static_int(where, "storage_offset", meta.get("storage_offset"))
    if len(strides) != len(sizes) or min([*sizes, *strides, offset], default=0) < 0:
        raise ModelFormatError(f"{where}: sizes {sizes}, strides {strides}, offset {offset} do"
                               " not describe a tensor")
    if meta.get("dtype") == _BFLOAT16:
        dtype = "bfloat16"
    return dtype, sizes, strides, offset


def static_int(where: str, what: str, value) -> int:
    """The int of a ``{"as_int": n}``; symbolic sizes (``as_expr``) are refused."""
    if not isinstance(value, dict) or set(value) != {"as_int"} or type(value["as_int"]) is not int:
        raise ModelFormatError(f"{where}: {what} {str(value)[:80]} is not a static integer"
                               " (dynamic shapes are not supported; export with static shapes)")
    return value["as_int"]


def _list(where: str, what: str, value) -> list:
    if not isinstance(value, list) or len(value) > 16:
        raise ModelFormatError(f"{where}: {what} is not a list of at most 16 dims")
    return value


def _storage(where: str, member: str, data: bytes, dtype: str):
    import torch

    array = np.frombuffer(bytearray(data), dtype="<i2" if dtype == "bfloat16" else dtype)
    if dtype == "|b1" and np.frombuffer(data, np.uint8).max(initial=0) > 1:
        raise ModelFormatError(f"{where}: member {member!r} holds bool bytes other than 0 and 1")
    storage = torch.from_numpy(array)
    return storage.view(torch.bfloat16) if dtype == "bfloat16" else storage


def _check_extent(where: str, member: str, nbytes: int, dtype: str, sizes, strides,
                  offset) -> None:
    """The view (sizes, strides, offset) stays inside the member's bytes."""
    itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
    if nbytes % itemsize:
        raise ModelFormatError(f"{where}: member {member!r} is {nbytes} bytes, not a multiple"
                               f" of the element size {itemsize}")
    count = math.prod(sizes)
    if nbytes == 0:
        if count * itemsize > MAX_MEMBER_BYTES:
            raise ModelFormatError(f"{where}: an empty member {member!r} stands for {count}"
                                   " elements, more than edgekit allocates")
        return
    last = offset + sum((s - 1) * st for s, st in zip(sizes, strides)) if count else offset - 1
    if last >= nbytes // itemsize:
        raise ModelFormatError(f"{where}: sizes {sizes}, strides {strides}, offset {offset} reach"
                               f" element {last}, but member {member!r} holds"
                               f" {nbytes // itemsize}")
