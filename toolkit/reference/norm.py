"""LAYER_NORM, RMS_NORM and SILU on int8: edgekit's own integer semantics.

TFLite has no int8 builtin for these ops, so this module *defines* them; the C kernels
(``firmware/c/kernels/ek_norm.c``) compute the same integers, and the code generator emits the
numbers `prepare` derives here, so the interpreter and the firmware cannot drift. The float
constants of the int8 graph (gamma, beta: what the ``.tflite`` carries) are read only here.

LAYER_NORM / RMS_NORM, over the last axis (C channels) of int8 ``x`` (scale ``sx``, zero point
``zx``) to int8 ``y`` (``so``, ``zo``), float32 ``gamma[C]``, ``beta[C]`` (LAYER_NORM only),
``epsilon``. Per row, with ``d_i = x_i - zx``:

1. ``sum = Σ d_i``, ``sq = Σ d_i²`` (int32; C <= 4096 keeps ``sq`` below 2^28).
2. LAYER_NORM: ``S = C·sq - sum²``, ``u_i = C·d_i - sum``; RMS_NORM: ``S = C·sq``,
   ``u_i = C·d_i`` (int64 / int32). Then ``u_i / sqrt(S + E)`` is exactly the normalised value
   ``(x_i - mean) / sqrt(var + epsilon)`` (RMS: ``x_i / sqrt(mean(x²) + epsilon)``) with
   ``E = round(C² · epsilon / sx²)`` (prepare, float64, ties away from zero, capped at 2^44).
3. ``T = S + E``. If ``T == 0`` (a constant row and E == 0) every ``n_i = 0``. Otherwise, with
   ``b`` the bit length of T, ``k = (62 - b) >> 1``, ``s = isqrt(T << 2k)`` (floor; ``T << 2k``
   has 61 or 62 bits, so ``s`` is in [2^30, 2^31)), ``inv = floor(2^61 / s)`` (in (2^30, 2^31]).
4. ``n_i = RoundingDivideByPOT64(u_i · inv, 37 - k)``: the normalised value in Q.24
   (``n ≈ u · 2^24 / sqrt(T)``, |n_i| < 2^30), rounding to nearest, ties away from zero.
5. Per channel c (prepare): ``(M_c, e_c) = QuantizeMultiplier(gamma_c / so · 2^-24)`` (the sign
   of gamma carried by M_c; a result below 2^-31 gives M_c = 0, e_c = 0; |gamma_c| / so or
   |beta_c| / so >= 2^23 is refused), ``r_c = -e_c >= 0`` and the int64 offset
   ``B_c = round(beta_c / so · 2^r_c) + (zo << r_c)`` (beta 0 for RMS_NORM).
6. ``y_i = clamp(RoundingDivideByPOT64(SaturatingRoundingDoublingHighMul(n_i, M_c) + B_c, r_c),
   -128, 127)``: the gamma product, beta and the zero point rounded once together (a separate
   int32 ``round(beta/so)`` would add a second half-LSB error; this is why B_c is int64 in the
   pre-shift domain rather than an int32 output offset).

The integer square root and the reciprocal are computed once per row: a 64-bit digit-by-digit
isqrt and one 64-bit division on Cortex-M; every element then costs one 32x32->64 multiply, a
rounding shift and one SRDHM. Measured accuracy against the float op on the dequantised input
(tests/test_norm_ops.py): within 1 output LSB everywhere on the test distributions.

SILU: a 256-entry int8 -> int8 table made in prepare: for each q in [-128, 127]
``v = sx · (q - zx)`` (float64), ``t = v / (1 + exp(-v))``,
``table[q + 128] = clamp(round_half_away(t / so) + zo, -128, 127)``; the kernel is a lookup.

All three are safe in place (output buffer == input buffer): the norms read a whole row for its
statistics before writing any of it, then write each element after reading it; the lookup reads
each element before writing it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgekit import fixedpoint as fp
from edgekit.errors import UnsupportedError
from edgekit.ir import DType, Graph, Op
from edgekit.reference.common import (Prepared, int8_same_shape_operands, require_dtype,
                                      require_quant, scale_f32, where,
                                      zero_point)

#: fractional bits of the normalised value n_i
NORM_FRAC_BITS = 24
#: the largest row the int32 sums and the Q.24 normalised value are proven for
MAX_CHANNELS = 4096
#: cap of the epsilon term E, so that S + E stays below 2^46 (and k >= 8)
MAX_EPS_TERM = 1 << 44


@dataclass(frozen=True, eq=False)
class NormParams(Prepared):
    channels: int
    subtract_mean: bool  # LAYER_NORM True, RMS_NORM False
    input_zero_point: int
    eps_term: int  # E
    multipliers: np.ndarray  # int64 [C], Q0.31 signed
    shifts: np.ndarray  # int64 [C], right shifts r_c >= 0
    offsets: np.ndarray  # int64 [C], B_c


@dataclass(frozen=True, eq=False)
class LutParams(Prepared):
    table: np.ndarray  # int8 [256], indexed by q + 128


def _float_constant(op: Op, graph: Graph, index: int, channels: int, role: str) -> np.ndarray:
    name = op.inputs[index] if len(op.inputs) > index else None
    t = graph[name] if name is not None else None
    if t is None or t.data is None or t.dtype != DType.FLOAT32:
        raise UnsupportedError(f"{where(op)}: {role} must be a float32 constant"
                               f" (got {None if t is None else t.dtype.value})")
    data = np.asarray(t.data, dtype=np.float64).reshape(-1)
    if data.size != channels or not np.all(np.isfinite(data)):
        raise UnsupportedError(f"{where(op)}: {role} {t.name!r} must hold {channels} finite"
                               f" values (the last axis of the input), got shape {t.shape}")
    return data


def prepare_norm(op: Op, graph: Graph) -> NormParams:
    x, out = int8_same_shape_operands(op, graph)
    if not x.shape or not 1 <= x.shape[-1] <= MAX_CHANNELS:
        raise UnsupportedError(f"{where(op)}: the normalised (last) axis of {x.name!r} {x.shape}"
                               f" must have 1 to {MAX_CHANNELS} channels")
    channels = x.shape[-1]
    eps = float(op.attrs.get("epsilon", 1e-5))
    if not math.isfinite(eps) or eps < 0:
        raise UnsupportedError(f"{where(op)}: epsilon must be finite and >= 0, got {eps}")
    layer = op.kind == "LAYER_NORM"
    gamma = _float_constant(op, graph, 1, channels, "gamma")
    beta = _float_constant(op, graph, 2, channels, "beta") if layer else np.zeros(channels)
    sx, so, zo = float(scale_f32(x)), float(scale_f32(out)), zero_point(out)
    ratio = gamma / so
    for values, role in ((ratio, "gamma"), (beta / so, "beta")):
        if np.any(np.abs(values) >= float(1 << 23)):
            raise UnsupportedError(f"{where(op)}: |{role}| / output scale reaches"
                                   f" {np.abs(values).max():.3g} (below 2^23 is supported)")
    m, e = fp.quantize_multiplier(np.abs(ratio) * 2.0 ** -NORM_FRAC_BITS)
    multipliers = np.where(ratio < 0, -m, m).astype(np.int64)
    shifts = (-e).astype(np.int64)
    offsets = np.array([int(fp.round_half_away(b / so * float(1 << int(r)))) + (zo << int(r))
                        for b, r in zip(beta, shifts)], dtype=np.int64)
    eps_term = min(int(fp.round_half_away(channels * channels * eps / (sx * sx))), MAX_EPS_TERM)
    return NormParams(kind=op.kind, out_dtype=out.dtype, channels=channels, subtract_mean=layer,
                      input_zero_point=zero_point(x), eps_term=eps_term, multipliers=multipliers,
                      shifts=shifts, offsets=offsets)


def row_inverse_sqrt(t: int) -> tuple[int, int]:
    """(inv, k) of step 3 for one row's ``T > 0``."""
    k = (62 - t.bit_length()) >> 1
    s = math.isqrt(t << (2 * k))
    return (1 << 61) // s, k


def normalised(p: NormParams, x: np.ndarray) -> np.ndarray:
    """Steps 1-4: the Q.24 normalised values, int64, shaped as ``x``."""
    rows = x.reshape(-1, p.channels).astype(np.int64) - p.input_zero_point
    c = p.channels
    total = rows.sum(axis=1)
    sq = (rows * rows).sum(axis=1)
    if p.subtract_mean:
        s, u = c * sq - total * total, c * rows - total[:, None]
    else:
        s, u = c * sq, c * rows
    n = np.zeros_like(rows)
    for i, t in enumerate((s + p.eps_term).tolist()):
        if t > 0:
            inv, k = row_inverse_sqrt(int(t))
            n[i] = fp.rounding_divide_by_pot(u[i] * inv, 37 - k)
    return n.reshape(x.shape)


def norm(p: NormParams, inputs: list) -> np.ndarray:
    n = normalised(p, inputs[0])
    acc = fp.saturating_rounding_doubling_high_mul(n, p.multipliers) + p.offsets
    y = fp.rounding_divide_by_pot(acc, p.shifts)
    return np.clip(y, -128, 127).astype(np.int8)


def silu_table(sx: float, zx: int, so: float, zo: int) -> np.ndarray:
    v = sx * (np.arange(-128, 128, dtype=np.float64) - zx)
    with np.errstate(over="ignore"):  # exp(-v) = inf for very negative v: t = -0.0, exact
        t = v / (1.0 + np.exp(-v))
    return np.clip(fp.round_half_away(t / so) + zo, -128, 127).astype(np.int8)


def prepare_silu(op: Op, graph: Graph) -> LutParams:
    x, out = int8_same_shape_operands(op, graph)
    table = silu_table(float(scale_f32(x)), zero_point(x), float(scale_f32(out)), zero_point(out))
    return LutParams(kind=op.kind, out_dtype=out.dtype, table=table)


def lookup(p: LutParams, inputs: list) -> np.ndarray:
    return p.table[inputs[0].astype(np.int64) + 128]


def flash_bytes(op: Op, graph: Graph) -> int:
    """Flash the generated C spends on one op's constants: the prepared integers (int32
    multiplier, int32 shift, int64 offset per channel; SILU's 256-byte table). gamma and beta
    themselves are never emitted."""
    if op.kind == "SILU":
        return 256
    return 16 * graph[op.inputs[0]].shape[-1]


#: kinds whose constant inputs stay in the graph but not in flash (`flash_bytes` instead)
PREPARED_CONSTANT_KINDS = frozenset({"LAYER_NORM", "RMS_NORM", "SILU"})

PREPARE = {"LAYER_NORM": prepare_norm, "RMS_NORM": prepare_norm, "SILU": prepare_silu}
KERNELS = {"LAYER_NORM": norm, "RMS_NORM": norm, "SILU": lookup}
