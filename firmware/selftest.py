"""The self-test workload: a fixed int8 convolution and its expected output, computed here.

The firmware's C kernel (``c/selftest/selftest_payload.c``) and this module implement TFLite's
int8 convolution arithmetic independently; the build stores this module's answer in the
manifest, and the runners compare the device's output bytes against it. The arithmetic here
follows TFLite's reference kernels (gemmlowp fixed point: SaturatingRoundingDoublingHighMul
and RoundingDivideByPOT) in Python integers, not a port of the C.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


@dataclass(frozen=True)
class SelftestCase:
    """Shapes, quantisation and data of the self-test convolution (NHWC input, OHWI filter)."""

    seed: int
    in_h: int
    in_w: int
    in_c: int
    out_c: int
    kernel: int
    stride: int
    pad: int
    input_zero_point: int
    output_zero_point: int
    input: np.ndarray       # int8 [in_h, in_w, in_c]
    filter: np.ndarray      # int8 [out_c, k, k, in_c]
    bias: np.ndarray        # int32 [out_c]
    multiplier: np.ndarray  # int32 [out_c], Q31
    shift: np.ndarray       # int32 [out_c], >0 left, <0 right

    @property
    def out_h(self) -> int:
        return (self.in_h + 2 * self.pad - self.kernel) // self.stride + 1

    @property
    def out_w(self) -> int:
        return (self.in_w + 2 * self.pad - self.kernel) // self.stride + 1

    @property
    def act_min(self) -> int:
        """Fused ReLU: nothing below the output zero point."""
        return max(-128, self.output_zero_point)

    @property
    def act_max(self) -> int:
        return 127

    @property
    def output_bytes(self) -> int:
        return self.out_h * self.out_w * self.out_c

    @property
    def arena_bytes(self) -> int:
        """Input tensor (padded to 16 bytes) then output tensor, as the C payload lays them out."""
        input_bytes = self.in_h * self.in_w * self.in_c
        return (input_bytes + 15) // 16 * 16 + self.output_bytes


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: real = q * 2^(shift - 31) with q a Q31 value in [2^30, 2^31)."""
    if real == 0.0:
        return 0, 0
    fraction, shift = math.frexp(real)
    q = round(fraction * (1 << 31))
    if q == 1 << 31:
        q //= 2
        shift += 1
    return q, shift


def make_case(seed: int = 2024) -> SelftestCase:
    """The fixed self-test case: deterministic from `seed` (numpy's PCG64)."""
    rng = np.random.default_rng(seed)
    in_h, in_w, in_c, out_c, k = 8, 8, 3, 8, 3
    input_scale, output_scale = 0.05, 0.35
    filter_scales = rng.uniform(0.004, 0.03, size=out_c)
    multipliers, shifts = zip(*(quantize_multiplier(input_scale * fs / output_scale) for fs in filter_scales))
    return SelftestCase(
        seed=seed, in_h=in_h, in_w=in_w, in_c=in_c, out_c=out_c, kernel=k, stride=1, pad=1,
        input_zero_point=-3, output_zero_point=-11,
        input=rng.integers(-128, 128, size=(in_h, in_w, in_c), dtype=np.int64).astype(np.int8),
        filter=rng.integers(-127, 128, size=(out_c, k, k, in_c), dtype=np.int64).astype(np.int8),
        bias=rng.integers(-3000, 3000, size=out_c, dtype=np.int64).astype(np.int32),
        multiplier=np.array(multipliers, dtype=np.int32),
        shift=np.array(shifts, dtype=np.int32),
    )


def _saturating_rounding_doubling_high_mul(a: int, b: int) -> int:
    if a == INT32_MIN and b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    total = ab + nudge
    # C++ integer division truncates toward zero; Python's // floors
    quotient = abs(total) >> 31
    return quotient if total >= 0 else -quotient


def _rounding_divide_by_pot(x: int, exponent: int) -> int:
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def _wrap_int32(x: int) -> int:
    return (x + 2**31) % 2**32 - 2**31


def multiply_by_quantized_multiplier(x: int, multiplier: int, shift: int) -> int:
    """TFLite's MultiplyByQuantizedMultiplier on Python integers."""
    left, right = max(shift, 0), max(-shift, 0)
    return _rounding_divide_by_pot(_saturating_rounding_doubling_high_mul(_wrap_int32(x << left), multiplier), right)


def expected_output(case: SelftestCase) -> bytes:
    """The convolution's int8 output bytes (NHWC order), computed with numpy accumulation and
    the integer requantisation above."""
    padded = np.zeros((case.in_h + 2 * case.pad, case.in_w + 2 * case.pad, case.in_c), dtype=np.int64)
    # Padding taps must contribute nothing: pad with the value whose offset input is zero.
    padded[:] = case.input_zero_point
    padded[case.pad:case.pad + case.in_h, case.pad:case.pad + case.in_w] = case.input
    shifted = padded - case.input_zero_point
    weights = case.filter.astype(np.int64)
    out = np.empty((case.out_h, case.out_w, case.out_c), dtype=np.int8)
    for oy in range(case.out_h):
        for ox in range(case.out_w):
            y, x = oy * case.stride, ox * case.stride
            window = shifted[y:y + case.kernel, x:x + case.kernel, :]
            acc = np.tensordot(weights, window, axes=([1, 2, 3], [0, 1, 2])) + case.bias
            for oc in range(case.out_c):
                value = multiply_by_quantized_multiplier(int(acc[oc]), int(case.multiplier[oc]),
                                                         int(case.shift[oc]))
                value += case.output_zero_point
                out[oy, ox, oc] = min(max(value, case.act_min), case.act_max)
    return out.tobytes()


def _c_array(ctype: str, name: str, values: np.ndarray) -> str:
    flat = [int(v) for v in values.reshape(-1)]
    rows = [", ".join(str(v) for v in flat[i:i + 16]) for i in range(0, len(flat), 16)]
    body = ",\n    ".join(rows)
    return f"static const {ctype} {name}[{len(flat)}] = {{\n    {body}\n}};\n"


def c_header(case: SelftestCase) -> str:
    """``selftest_data.h``: the case's shapes, quantisation and data as C constants (in flash)."""
    defines = {
        "ST_IN_H": case.in_h, "ST_IN_W": case.in_w, "ST_IN_C": case.in_c, "ST_OUT_C": case.out_c,
        "ST_OUT_H": case.out_h, "ST_OUT_W": case.out_w, "ST_K": case.kernel,
        "ST_STRIDE": case.stride, "ST_PAD": case.pad,
        "ST_INPUT_OFFSET": -case.input_zero_point, "ST_OUTPUT_OFFSET": case.output_zero_point,
        "ST_ACT_MIN": case.act_min, "ST_ACT_MAX": case.act_max,
    }
    lines = [f"/* generated by edgekit.firmware.selftest (seed {case.seed}); do not edit */",
             "#ifndef SELFTEST_DATA_H", "#define SELFTEST_DATA_H", "", "#include <stdint.h>", ""]
    lines += [f"#define {name} ({value})" for name, value in defines.items()]
    lines.append("")
    text = "\n".join(lines) + "\n"
    text += _c_array("int8_t", "st_input", case.input)
    text += _c_array("int8_t", "st_filter", case.filter)
    text += _c_array("int32_t", "st_bias", case.bias)
    text += _c_array("int32_t", "st_multiplier", case.multiplier)
    text += _c_array("int32_t", "st_shift", case.shift)
    return text + "\n#endif\n"
