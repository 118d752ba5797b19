"""Small helpers that write C99 source text: identifiers, array definitions, struct initializers.

The code generator builds every params struct as a Python mapping of field -> value and renders
it here as a designated initializer, so the field order of a kernel's struct does not matter and
a misspelt field is a compile error, not a silent shift of every value after it.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

import numpy as np

#: numpy dtype name -> C element type
C_TYPES = {"int8": "int8_t", "int16": "int16_t", "int32": "int32_t", "int64": "int64_t",
           "uint8": "uint8_t", "float32": "float"}

#: zero bytes after a packed int4 array (ek_conv_weights.h EK_S4_FILTER_PAD): the kernels' word
#: reads past a channel's last nibble stay inside the array
INT4_PAD_BYTES = 4


def packed_int4(values: np.ndarray) -> np.ndarray:
    """int4 values (int8 in [-8, 7]) as the int8 bytes of the firmware's packed array: two per
    byte, low nibble first (TFLite's INT4 order), then `INT4_PAD_BYTES` zero bytes."""
    from edgekit.converters.tflite_writer import pack_int4

    packed = np.frombuffer(pack_int4(values), dtype=np.int8)
    return np.concatenate([packed, np.zeros(INT4_PAD_BYTES, dtype=np.int8)])


def stored_bytes(tensor) -> int:
    """Flash bytes of a constant as the generated C stores it (int4 packed, plus its pad)."""
    return tensor.nbytes + (INT4_PAD_BYTES if tensor.dtype.bits == 4 else 0)


_NOT_IDENT = re.compile(r"[^0-9A-Za-z_]+")


def identifier(text: str, *, max_len: int = 40) -> str:
    """A C identifier fragment from any text (tensor or op names): letters, digits, underscores.
    TFLite names join several names with ';': the last one is the most specific."""
    cleaned = _NOT_IDENT.sub("_", text.split(";")[-1]).strip("_").lower()
    return cleaned[-max_len:].lstrip("_") or "x"


def comment_text(text: str) -> str:
    """Text safe to put inside a /* */ comment."""
    return text.replace("*/", "* /").replace("/*", "/ *")


class CArray:
    """A reference to an emitted array: renders as its name in an initializer."""

    def __init__(self, name: str):
        self.name = name


class CExpr:
    """Raw C text (a macro, a cast, an address) used verbatim in an initializer."""

    def __init__(self, text: str):
        self.text = text


def c_value(value) -> str:
    """One scalar (or CExpr/CArray) as C source."""
    if isinstance(value, CArray):
        return value.name
    if isinstance(value, CExpr):
        return value.text
    if isinstance(value, (bool, np.bool_)):
        return "1" if value else "0"
    if isinstance(value, (float, np.floating)):
        if isinstance(value, np.float32):
            return f"{float(value)!r}f"
        return repr(float(value))
    number = int(value)
    if number == -(2**31):
        return "INT32_MIN"  # the literal 2147483648 does not fit an int
    return str(number)


def initializer(fields: Mapping[str, object], indent: int = 4) -> str:
    """A designated initializer ``{ .a = 1, .b = { ... } }``; nested mappings become nested
    structs, sequences become brace lists."""
    pad = " " * indent
    lines = []
    for name, value in fields.items():
        lines.append(f"{pad}.{name} = {_render(value, indent)},")
    return "{\n" + "\n".join(lines) + "\n" + " " * (indent - 4) + "}"


def _render(value, indent: int) -> str:
    if isinstance(value, Mapping):
        return initializer(value, indent + 4)
    if isinstance(value, (list, tuple, np.ndarray)):
        return "{" + ", ".join(c_value(v) for v in np.asarray(value).reshape(-1).tolist()) + "}"
    return c_value(value)


def array_definition(ctype: str, name: str, values: np.ndarray, *, static: bool = True,
                     align: int = 4, per_line: int = 24) -> str:
    """``[static] const T name[N] __attribute__((aligned(A))) = {...};`` (in flash)."""
    flat = np.asarray(values).reshape(-1)
    if flat.dtype.kind == "f":
        texts = [c_value(np.float32(v)) for v in flat.tolist()]
    else:
        texts = [c_value(v) for v in flat.tolist()]
    rows = [", ".join(texts[i:i + per_line]) for i in range(0, len(texts), per_line)]
    body = ",\n    ".join(rows) if rows else "0"
    storage = "static " if static else ""
    count = max(len(texts), 1)  # C forbids zero-length arrays
    return (f"{storage}const {ctype} {name}[{count}] __attribute__((aligned({align}))) = {{\n"
            f"    {body}\n}};\n")


def shape_text(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape) or "scalar"
