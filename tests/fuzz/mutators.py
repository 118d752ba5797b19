"""Mutations for every file type the CLI opens: byte-level ones for any file, structural ones
per format (edited through the format's own parser and re-serialized, so the damage lands past
the first sanity check).

Each mutator is ``fn(rng, data) -> bytes`` (``str`` for console text); all randomness comes from
the `numpy.random.Generator` passed in, so a case is replayed from its seed alone.
"""

from __future__ import annotations

import copy
import io
import json
import math
import struct
import warnings
import zipfile
from typing import Any, Callable

import numpy as np

#: values that break arithmetic: the issue's list (zero, NaN, negative, float32 max, denormal min)
BAD_SCALES = [0.0, math.nan, -0.5, 3e38, 1e-45, math.inf, -math.inf]
BAD_ZERO_POINTS = [1 << 40, -(1 << 62), -100000, 128, -129, 65536]
BAD_DIMS = [0, -1, -7, 1 << 20, (1 << 31) - 1, 3, 1]
BAD_INTS = [0, -1, 1, 255, 65535, (1 << 31) - 1, -(1 << 31), 1 << 40, 1 << 64]


def pick(rng: np.random.Generator, items):
    if not len(items):
        raise IndexError("nothing to pick from")
    return items[int(rng.integers(0, len(items)))]


# --- bytes ----------------------------------------------------------------------------------------

def flip_bytes(rng, data: bytes) -> bytes:
    if not data:
        return b"\x00"
    out = bytearray(data)
    for pos in rng.integers(0, len(out), size=int(rng.integers(1, 9))):
        out[pos] ^= int(rng.integers(1, 256))
    return bytes(out)


def flip_head(rng, data: bytes) -> bytes:
    """Bit flips in the first 512 bytes, where headers, tables and offsets live."""
    if not data:
        return b"\x01"
    out = bytearray(data)
    for pos in rng.integers(0, min(len(out), 512), size=int(rng.integers(1, 4))):
        out[pos] ^= 1 << int(rng.integers(0, 8))
    return bytes(out)


def truncate(rng, data: bytes) -> bytes:
    return data[: int(rng.integers(0, max(len(data), 1)))]


def bad_word(rng, data: bytes) -> bytes:
    """One aligned 32-bit word (an offset, a length, an index) set to an extreme value."""
    if len(data) < 4:
        return data + b"\xff\xff\xff\xff"
    out = bytearray(data)
    pos = int(rng.integers(0, len(out) // 4)) * 4
    value = pick(rng, [0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, len(data), len(data) - 4])
    struct.pack_into("<I", out, pos, value & 0xFFFFFFFF)
    return bytes(out)


def garbage(rng, data: bytes) -> bytes:
    junk = rng.integers(0, 256, size=int(rng.integers(0, 2048)), dtype=np.uint8).tobytes()
    return data[:8] + junk if rng.random() < 0.5 else junk  # keep the magic half of the time


BYTE_MUTATORS: dict[str, Callable] = {
    "flip_bytes": flip_bytes, "flip_head": flip_head, "truncate": truncate,
    "bad_word": bad_word, "garbage": garbage,
}


# --- JSON (board files, build manifests, .pt2 members) ------------------------------------------

def _json_paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _json_paths(item, prefix + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _json_paths(item, prefix + (i,))


_JSON_REPLACEMENTS = [None, True, 0, -1, 1 << 64, -(1 << 63), 1e308, "", "x" * 300, "0x",
                      "0xFFFFFFFFFFFF", "-0x10", [], {}, [[]], "../../etc/passwd", "nan"]


def _hex(text: str) -> int:
    try:
        return int(text, 16)
    except ValueError:
        return 0


def json_edit(rng, value: Any) -> Any:
    """One structural edit of a decoded JSON value: delete, retype or replace one node."""
    value = copy.deepcopy(value)
    paths = list(_json_paths(value))
    path = paths[int(rng.integers(0, len(paths)))]
    if not path:
        return pick(rng, [[value], [], "board", 0, None])
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    key, old = path[-1], parent[path[-1]]
    choice = int(rng.integers(0, 4))
    if choice == 0 and isinstance(parent, dict):
        del parent[key]
    elif choice == 1 and isinstance(old, (int, float)) and not isinstance(old, bool):
        parent[key] = pick(rng, [0, -old, old * (1 << 32), old + 1, math.nan, math.inf, str(old)])
    elif isinstance(old, str) and old.startswith("0x") and len(old) > 2 and rng.random() < 0.8:
        # an address or size that still parses: tiny, huge, past 32 bits, off by one
        parent[key] = pick(rng, ["0x0", "0x4", "0xFFFFFFFF", "0x100000000", "0xFFFFFFFC",
                                 hex(_hex(old) // 1024), hex(_hex(old) + 1)])
    elif choice == 2 and isinstance(old, list) and old:
        parent[key] = old * int(rng.integers(2, 50)) if rng.random() < 0.5 else old[:-1]
    else:
        parent[key] = pick(rng, _JSON_REPLACEMENTS)
    return value


def json_bytes(rng, data: bytes) -> bytes:
    """Structural edits (1-3) on a JSON document; NaN/Infinity are written as Python does."""
    value = json.loads(data)
    for _ in range(int(rng.integers(1, 4))):
        value = json_edit(rng, value)
    return json.dumps(value).encode()


# --- .npy / .npz --------------------------------------------------------------------------------

def _npy_with_header(header: str, body: bytes, version=(1, 0)) -> bytes:
    head = header.encode("latin1")
    pad = 64 - (10 + len(head) + 1) % 64
    head = head + b" " * pad + b"\n"
    return b"\x93NUMPY" + bytes(version) + struct.pack("<H", len(head)) + head + body


def npy_header(rng, data: bytes) -> bytes:
    """A .npy whose header lies: huge or negative shapes, object or odd dtypes, garbage text."""
    array = np.load(io.BytesIO(data))
    body = array.tobytes()
    shape = pick(rng, [(10 ** 13,), (1 << 31, 1 << 31), (-1,), (0,), (1, 0, 5), (),
                       tuple(array.shape) + (1,), (array.size * 4,), (1 << 40, 0)])
    descr = pick(rng, [array.dtype.str, "|O", "<U9", "<c16", "|V7", "[('a', '<i4')]", "<f2",
                       ">f4", "|b1", "<i8", "zz"])
    descr_text = descr if descr.startswith("[") else repr(descr)
    headers = [
        f"{{'descr': {descr_text}, 'fortran_order': False, 'shape': {shape!r}, }}",
        f"{{'descr': {descr_text}, 'fortran_order': 7, 'shape': {tuple(array.shape)!r}, }}",
        "{'descr': '<f4', 'shape': __import__('os').getcwd(), 'fortran_order': False}",
        "{'descr': '<f4'" + "," * int(rng.integers(1, 5000)),
        "[" * 2000 + "]" * 2000,
        "garbage",
    ]
    header = pick(rng, headers)
    version = pick(rng, [(1, 0), (2, 0), (3, 0), (9, 9)])
    return _npy_with_header(header, body, version) if version[0] < 2 else \
        b"\x93NUMPY" + bytes(version) + struct.pack("<I", len(header) + 1) + header.encode() + b"\n" + body


def npy_values(rng, data: bytes) -> bytes:
    """A well-formed .npy with the wrong content: dtype, shape, NaN/inf, extreme values."""
    array = np.load(io.BytesIO(data))
    choice = int(rng.integers(0, 6))
    if choice == 0:
        out = array.astype(pick(rng, [np.float64, np.int64, np.uint8, np.bool_, np.complex64,
                                      np.float16, np.int8, np.int32]))
    elif choice == 1:
        out = array.reshape(-1) if array.ndim > 1 else array.reshape(1, -1)
    elif choice == 2:
        out = array.astype(np.float32).copy()
        out.reshape(-1)[:: int(rng.integers(1, 5))] = pick(rng, [np.nan, np.inf, -np.inf, 3e38])
    elif choice == 3:
        out = np.full(array.shape, pick(rng, [2 ** 40, -3, 127, -128, 1 << 62]), dtype=np.int64)
    elif choice == 4:
        out = np.zeros(pick(rng, [(0,), (), (1,) * 8, (2, 0, 3)]), np.float32)
    else:
        out = np.array(["x"] * 3)
    buf = io.BytesIO()
    np.save(buf, out)
    return buf.getvalue()


def npz_edit(rng, data: bytes) -> bytes:
    """An .npz with a member that is an object array, a wrong key, a corrupt member or no members."""
    with np.load(io.BytesIO(data)) as archive:
        members = {k: archive[k] for k in archive.files}
    buf = io.BytesIO()
    choice = int(rng.integers(0, 5))
    if choice == 0:
        key = pick(rng, sorted(members))
        with zipfile.ZipFile(buf, "w") as z:
            for k, v in members.items():
                member = io.BytesIO()
                np.save(member, np.array([{"a": 1}, None], dtype=object) if k == key else v,
                        allow_pickle=True)
                z.writestr(k + ".npy", member.getvalue())
        return buf.getvalue()
    if choice == 1:
        members = {("zz" + k if rng.random() < 0.5 else k): v for k, v in members.items()}
        members["extra"] = np.zeros(3, np.float32)
    elif choice == 2:
        members = {}
    elif choice == 3:
        key = pick(rng, sorted(members))
        mutated = npy_header(rng, _npy_bytes(members[key]))
        with zipfile.ZipFile(buf, "w") as z:
            for k, v in members.items():
                z.writestr(k + ".npy", mutated if k == key else _npy_bytes(v))
        return buf.getvalue()
    else:
        key = pick(rng, sorted(members))
        members[key] = np.load(io.BytesIO(npy_values(rng, _npy_bytes(members[key]))))
    np.savez(buf, **members)
    return buf.getvalue()


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


# --- zip archives (.pt2) ---------------------------------------------------------------------------

def zip_edit(rng, data: bytes) -> bytes:
    """Edit one member of a zip archive: JSON members structurally, others by bytes; or drop,
    duplicate or rename a member."""
    with zipfile.ZipFile(io.BytesIO(data)) as zin:
        members = [(info, zin.read(info)) for info in zin.infolist()]
    target = int(rng.integers(0, len(members)))
    choice = int(rng.integers(0, 5))
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w") as zout:
        warnings.simplefilter("ignore")  # "Duplicate name": the point of that edit
        for i, (info, payload) in enumerate(members):
            if i == target:
                if choice == 0:
                    continue  # dropped
                if choice == 1:
                    zout.writestr(info.filename + pick(rng, [".bak", "x", ""]) if rng.random() < 0.5
                                  else info.filename.replace("/", "//", 1), payload)
                    continue
                if choice == 2 and info.filename.endswith(".json"):
                    try:
                        payload = json_bytes(rng, payload)
                    except (ValueError, UnicodeDecodeError):
                        payload = flip_bytes(rng, payload)
                elif choice == 3:
                    zout.writestr(info, payload)  # duplicated name: written twice
                    payload = flip_bytes(rng, payload)
                else:
                    payload = pick(rng, [flip_bytes, truncate, bad_word])(rng, payload)
            zout.writestr(info, payload)
    return buf.getvalue()


# --- ELF ----------------------------------------------------------------------------------------

#: (offset, struct format) of ELF32 header fields worth breaking: e_entry, e_phoff, e_shoff,
#: e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx, EI_CLASS, EI_DATA
_ELF_FIELDS = [(24, "<I"), (28, "<I"), (32, "<I"), (42, "<H"), (44, "<H"), (46, "<H"),
               (48, "<H"), (50, "<H"), (4, "<B"), (5, "<B")]


def elf_header(rng, data: bytes) -> bytes:
    """An ELF header or program header field set to an extreme value."""
    out = bytearray(data)
    if len(out) < 52 or rng.random() < 0.5:
        offset, fmt = pick(rng, _ELF_FIELDS)
    else:  # one field of one program header: p_offset, p_vaddr, p_paddr, p_filesz, p_memsz
        phoff, phnum = struct.unpack_from("<I", out, 28)[0], struct.unpack_from("<H", out, 44)[0]
        offset = phoff + 32 * int(rng.integers(0, max(phnum, 1))) + pick(rng, [4, 8, 12, 16, 20])
        fmt = "<I"
    if offset + struct.calcsize(fmt) > len(out):
        return truncate(rng, data)
    limit = 1 << (8 * struct.calcsize(fmt))
    value = pick(rng, [0, 1, limit - 1, limit // 2, len(data), len(data) * 2 + 3, 0x20000000])
    struct.pack_into(fmt, out, offset, value % limit)
    return bytes(out)


def elf_special(rng, data: bytes) -> bytes:
    return pick(rng, [b"\x7fELF", data[:52], data[:60], b"\x7fELF" + b"\x00" * 48, b""])


# --- firmware console text ------------------------------------------------------------------------

def report_edit(rng, text: str) -> str:
    """A damaged console log: lines dropped, duplicated, reordered or edited, values made
    extreme, markers repeated, junk and faults injected, or the whole log cut short."""
    lines = text.split("\n")
    choice = int(rng.integers(0, 9))
    i = int(rng.integers(0, len(lines)))
    if choice == 0:
        del lines[i]
    elif choice == 1:
        lines.insert(i, lines[int(rng.integers(0, len(lines)))])
    elif choice == 2 and "=" in lines[i]:
        key = lines[i].split("=", 1)[0]
        lines[i] = key + "=" + pick(rng, ["", "-1", "0", str(1 << 64), "9" * 400, "0x10", "zz",
                                          "1e9", " 5", "f" * 7])
    elif choice == 3:
        return text[: int(rng.integers(0, len(text)))]
    elif choice == 4:
        lines.insert(i, pick(rng, ["@@EDGEKIT-FAULT", "@@EDGEKIT-FAULT\npc=0xzz\nlr=0x1",
                                   "@@EDGEKIT-BEGIN v1", "@@EDGEKIT-BEGIN v9", "@@EDGEKIT-END",
                                   "@@EDGEKIT-END records=99999999999 crc32=00000000",
                                   "\x00\xff\x1b[2J", "output=" + "0" * 100000]))
    elif choice == 5:
        out = bytearray(text.encode("latin1", "replace"))
        for pos in rng.integers(0, len(out), size=int(rng.integers(1, 6))):
            out[pos] = int(rng.integers(0, 256))
        return out.decode("latin1")
    elif choice == 6:
        lines = lines * int(rng.integers(2, 4))
    elif choice == 7:
        j = int(rng.integers(0, len(lines)))
        lines[i], lines[j] = lines[j], lines[i]
    else:
        lines[i] = lines[i].replace("\n", "\r\n") + pick(rng, ["\r", " ", "\t", "="])
    return "\n".join(lines)
