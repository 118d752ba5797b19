"""The tensor data of an ONNX model, checked before anything reads it.

- External data (``data_location: EXTERNAL``, on initializers, ``Constant`` node attributes and
  any other tensor attribute, subgraphs included) is read by edgekit, never by onnx (whose
  ``numpy_helper.to_array`` resolves a relative ``location`` against the *current directory*,
  so a model could copy a local file into the ``.tflite`` the user ships). `inline_external_data`
  accepts a ``location`` only as a relative path inside the model file's folder: no absolute
  path, no ``..``, no symlink that leads out, a regular file; ``offset`` / ``length`` must lie
  inside the file and match the tensor's dims and dtype. The bytes go into the tensor's
  ``raw_data``, so nothing later looks for files.
- `check_tensor_data` refuses external data that is left (a model given as bytes has no folder)
  and checks every tensor's dims against `MAX_ELEMENTS` and against the data it holds, before
  numpy allocates anything.
"""

from __future__ import annotations

import math
import os
import re
import stat
from pathlib import Path

from edgekit.errors import ModelFormatError, UnsupportedError

#: elements one tensor of a model may have (an MCU model's largest weight is far smaller)
MAX_ELEMENTS = 1 << 28
#: bytes of external data one model may read in total
MAX_EXTERNAL_BYTES = 1 << 30
#: ONNX data types packed two per byte
_NIBBLE_TYPES = frozenset({21, 22, 23})
_COMPLEX_TYPES = frozenset({14, 15})
_STRING = 8


def tensors_of(model):
    """(description, TensorProto) of every tensor in ``model``: initializers and node
    attributes of the graph, its subgraphs and its functions."""
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        yield from _node_tensors(function.node)


def _graph_tensors(graph):
    for t in graph.initializer:
        yield f"initializer {t.name!r}", t
    for sparse in graph.sparse_initializer:
        yield f"sparse initializer {sparse.values.name!r}", sparse.values
        yield f"sparse initializer {sparse.values.name!r} indices", sparse.indices
    yield from _node_tensors(graph.node)


def _node_tensors(nodes):
    for node in nodes:
        label = f"node {node.name or node.op_type!r}"
        for attr in node.attribute:
            where = f"{label} attribute {attr.name!r}"
            if attr.HasField("t"):
                yield where, attr.t
            for t in attr.tensors:
                yield where, t
            for sparse in ([attr.sparse_tensor] if attr.HasField("sparse_tensor") else []) + list(
                    attr.sparse_tensors):
                yield where, sparse.values
                yield f"{where} indices", sparse.indices
            if attr.HasField("g"):
                yield from _graph_tensors(attr.g)
            for g in attr.graphs:
                yield from _graph_tensors(g)


def element_count(source: str, where: str, tensor) -> int:
    """The number of elements ``tensor``'s dims describe, at most `MAX_ELEMENTS`."""
    dims = list(tensor.dims)
    if any(d < 0 for d in dims):
        raise ModelFormatError(f"{source}: {where} has negative dims {dims}")
    count = math.prod(dims)
    if count > MAX_ELEMENTS:
        raise ModelFormatError(f"{source}: {where} has dims {dims} ({count} elements), more than"
                               f" the {MAX_ELEMENTS} edgekit reads for one tensor")
    return count


def _data_bytes(source: str, where: str, tensor, count: int) -> int:
    """The raw bytes ``count`` elements of ``tensor``'s data type take."""
    from onnx import helper

    if tensor.data_type in _NIBBLE_TYPES:
        return (count + 1) // 2
    try:
        itemsize = helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except Exception:
        raise UnsupportedError(f"{source}: {where} has data type {tensor.data_type}, which"
                               " edgekit does not read") from None
    if tensor.data_type == _STRING:
        raise UnsupportedError(f"{source}: {where} is a string tensor, which edgekit does not read")
    return count * itemsize


def check_tensor_data(model, source: str) -> None:
    """Refuse external data and tensors whose dims are huge or disagree with their data."""
    from onnx import TensorProto

    for where, tensor in tensors_of(model):
        if tensor.data_location == TensorProto.EXTERNAL:
            raise UnsupportedError(f"{source}: {where} keeps its data in an external file, which"
                                   " is read only from a model file's own folder; load the model"
                                   " from its .onnx file or save it with the weights inside")
        count = element_count(source, where, tensor)
        if tensor.HasField("raw_data"):
            have, want = len(tensor.raw_data), _data_bytes(source, where, tensor, count)
        else:
            have = sum(len(f) for f in (tensor.float_data, tensor.int32_data, tensor.int64_data,
                                        tensor.double_data, tensor.uint64_data,
                                        tensor.string_data))
            want = (2 * count if tensor.data_type in _COMPLEX_TYPES else
                    (count + 1) // 2 if tensor.data_type in _NIBBLE_TYPES else count)
        if have != want:
            raise ModelFormatError(f"{source}: {where} has dims {list(tensor.dims)} but holds"
                                   f" {have} {'bytes' if tensor.HasField('raw_data') else 'values'}"
                                   f" of data (expected {want})")


def inline_external_data(model, folder: Path, source: str) -> None:
    """Read every external tensor of ``model`` from ``folder`` into its ``raw_data``."""
    from onnx import TensorProto

    folder = Path(os.path.realpath(folder))
    total = 0
    for where, tensor in tensors_of(model):
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        entries = {e.key: e.value for e in tensor.external_data}
        unknown = set(entries) - {"location", "offset", "length", "checksum"}
        if unknown or len(entries) != len(tensor.external_data):
            raise ModelFormatError(f"{source}: {where}: external data keys"
                                   f" {[e.key for e in tensor.external_data]} are not location /"
                                   " offset / length / checksum, once each")
        want = _data_bytes(source, where, tensor, element_count(source, where, tensor))
        path = _inside(source, where, folder, entries.get("location", ""))
        offset = _number(source, where, "offset", entries.get("offset", "0"))
        data = _read_range(source, where, path, offset, entries.get("length"), want)
        total += len(data)
        if total > MAX_EXTERNAL_BYTES:
            raise ModelFormatError(f"{source}: external data adds up to more than"
                                   f" {MAX_EXTERNAL_BYTES} bytes")
        tensor.raw_data = data
        del tensor.external_data[:]
        tensor.data_location = TensorProto.DEFAULT


def _inside(source: str, where: str, folder: Path, location: str) -> Path:
    """``location`` resolved inside ``folder``, or `ModelFormatError`."""
    parts = re.split(r"[/\\]", location)
    if (not location or "\x00" in location or os.path.isabs(location)
            or location.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", location)
            or ".." in parts):
        raise ModelFormatError(f"{source}: {where}: external data location {location!r} is not a"
                               " relative path inside the model's folder, refused")
    real = Path(os.path.realpath(folder / location))
    if real == folder or folder not in real.parents:
        raise ModelFormatError(f"{source}: {where}: external data location {location!r} does"
                               f" not lead to a file inside the model's folder {str(folder)!r}"
                               " (a symlink out, or the folder itself), refused")
    return real


def _number(source: str, where: str, key: str, value: str) -> int:
    if not re.fullmatch(r"[0-9]{1,15}", value):
        raise ModelFormatError(f"{source}: {where}: external data {key} {value[:40]!r} is not a"
                               " non-negative integer")
    return int(value)


def _read_range(source: str, where: str, path: Path, offset: int, length: str | None,
                want: int) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as err:
        raise ModelFormatError(f"{source}: {where}: external data file {path.name!r}: cannot"
                               f" read: {err.strerror or err}") from None
    with os.fdopen(fd, "rb") as stream:
        info = os.fstat(stream.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ModelFormatError(f"{source}: {where}: external data {path.name!r} is not a"
                                   " regular file, refused")
        size = want if length is None else _number(source, where, "length", length)
        if size != want or offset + size > info.st_size:
            raise ModelFormatError(f"{source}: {where}: external data {path.name!r} range"
                                   f" offset {offset} length {size} does not fit the file"
                                   f" ({info.st_size} bytes) or the tensor ({want} bytes)")
        stream.seek(offset)
        data = stream.read(size)
    if len(data) != size:
        raise ModelFormatError(f"{source}: {where}: external data {path.name!r} ended early")
    return data
