"""edgekit's own op kinds in `.tflite` files: TFLite custom ops.

TFLite has no int8 builtin for LAYER_NORM, RMS_NORM or SILU, so the writer stores them as custom
operators (``BuiltinOperator.CUSTOM``) whose ``custom_code`` is ``EDGEKIT_<KIND>`` and whose
``custom_options`` are a flexbuffer map (``custom_options_format`` FLEXBUFFERS):

======================= =========== ====================================================
custom_code             inputs      custom_options
======================= =========== ====================================================
EDGEKIT_LAYER_NORM      x, gamma,   ``{"epsilon": float64}``
                        beta
EDGEKIT_RMS_NORM        x, gamma    ``{"epsilon": float64}``
EDGEKIT_SILU            x           empty (no options)
======================= =========== ====================================================

gamma and beta are float32 constant tensors; the int8 semantics are edgekit's
(`edgekit.reference.norm`). Only edgekit (its reference interpreter and generated firmware)
runs these files: TFLite Micro refuses them ("Failed to get registration from op code CUSTOM",
then "TFLM failed to allocate tensors"), LiteRT reports an unresolved custom op, because
neither has a kernel registered under these names.
"""

from __future__ import annotations

import math

from flatbuffers import flexbuffers

from edgekit.errors import ModelFormatError
from edgekit.ir import Op

CUSTOM_CODES = {"LAYER_NORM": "EDGEKIT_LAYER_NORM", "RMS_NORM": "EDGEKIT_RMS_NORM",
                "SILU": "EDGEKIT_SILU"}
#: the reader's op name ("CUSTOM:<code>") -> IR kind
CUSTOM_KINDS = {f"CUSTOM:{code}": kind for kind, code in CUSTOM_CODES.items()}
#: number of inputs each kind takes
CUSTOM_ARITY = {"LAYER_NORM": 3, "RMS_NORM": 2, "SILU": 1}

_WITH_EPSILON = ("LAYER_NORM", "RMS_NORM")


def encode_options(op: Op) -> bytes:
    """The custom_options bytes of an edgekit op (empty when it has none)."""
    if op.kind in _WITH_EPSILON:
        return bytes(flexbuffers.Dumps({"epsilon": float(op.attrs.get("epsilon", 1e-5))}))
    return b""


def decode_options(kind: str, data: bytes, where: str) -> dict:
    """The IR attrs of an edgekit op from its custom_options; `where` names the op in errors."""
    if kind not in _WITH_EPSILON:
        return {}
    try:
        options = flexbuffers.Loads(bytes(data)) if data else None
        epsilon = options.get("epsilon") if isinstance(options, dict) else None
    except Exception as err:  # any damage in untrusted bytes is a format error
        raise ModelFormatError(f"{where}: custom options are not a flexbuffer map with an"
                               f" epsilon ({type(err).__name__})") from None
    if not isinstance(epsilon, (int, float)) or not math.isfinite(epsilon) or epsilon < 0:
        raise ModelFormatError(f"{where}: custom options need a finite epsilon >= 0,"
                               f" got {epsilon!r}")
    return {"epsilon": float(epsilon)}
