"""Kernel helpers that only some calls run, and which calls run them.

A kernel whose rare path needs a deeper frame keeps that path in an out-of-line helper (the
DSP two-pixel conv path, the broadcast walk of ADD/MUL). The static stack bound
(`edgekit.firmware.stack_bound`) counts every call the code contains; the memory estimate leaves
a helper out when the generated params prove that no call of the model takes its path, so the
bound is the stack the model's data can reach and stays within 1% of the painted stack
(design.md, "What we measure"). A path that runtime data can take (a GATHER index outside the
table) must never be listed here: such a kernel is written so that path is no deeper.

The names are C symbols (static functions marked noinline); tests/test_codegen_stack_bound.py
checks that each is a function of the compiled kernels called only from the kernels listed.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

from edgekit.firmware.op_emitters import (DSP_PAIR_HELPERS, DW_MAX_TAPS, DW_RING_STACK,
                                          POINTWISE_INPLACE_KERNELS, PW_S4_MAX_C_IN,
                                          WIDE_PATH_HELPERS, WIDE_S4_PATH_HELPERS, constant_pairs,
                                          depthwise_surely_quad, pairs_path_applies,
                                          quad_stack_ring_words, requant_fast_full, requant_mode,
                                          ring_order_safe, short_rows_readers, wide_path_applies,
                                          wide_s4_path_applies)


def _broadcasts(fields: dict) -> bool:
    return bool(fields["shape"]["broadcast"])


def _raw_dot_product(fields: dict) -> bool:
    """Whether a call runs dot4_raw (the raw-byte SMLAD loop): a FULLY_CONNECTED with both
    offsets 0 (the generator folds the input offset into the bias) and 4 units or more; every
    convolution call counts as taking it (its conditions depend on the pixel)."""
    if "units" not in fields:
        return True
    return (fields["filter_offset"] == 0 and fields["input_offset"] == 0
            and fields["units"] >= 4 and not fields.get("interleaved", 0))


def _interleaved_dot_product(fields: dict) -> bool:
    """Whether a FULLY_CONNECTED call runs fc_dot4_interleaved (ek_conv.c): its filter is
    interleaved and both offsets are 0."""
    return (bool(fields.get("interleaved", 0)) and fields["filter_offset"] == 0
            and fields["input_offset"] == 0)


def _interleaved_fast_store(fields: dict) -> bool:
    """Whether it also runs fc_store4_fast: every unit's requantisation in the fast form,
    which the generator marks (``requant_fast``) exactly when the kernel's own check holds."""
    return _interleaved_dot_product(fields) and bool(fields.get("requant_fast", 0))


#: the kernels that call dot4_raw (DSP builds only)
RAW_DOT_KERNELS = frozenset({"ek_fully_connected_s8", "ek_conv2d_s8", "ek_conv2d_add_s8",
                             "ek_conv2d_s8_pointwise_inplace",
                             "ek_conv2d_s8_pointwise_inplace_backward"})

def _pointwise_pairs(fields: dict) -> bool:
    """Whether a pointwise in-place call runs pw_inplace_pairs (ek_conv.c's pw_pairs_apply: DSP
    arithmetic on raw bytes, whole words per pixel, two channels). The int4 kernels also need
    C_in % 8 == 0; a call with C_in % 8 == 4 counts as taking it all the same, which can only
    make the bound higher, never low."""
    return (fields.get("wide_scratch", 0) == 1 and fields["filter_offset"] == 0
            and "effective_bias" in fields
            and fields["in_c"] % 4 == 0 and fields["out_c"] >= 2)


#: the pointwise in-place kernels, int8 and int4, that call pw_inplace_pairs (DSP builds only)
POINTWISE_INT8_PAIR_KERNELS = frozenset({
    f"ek_conv2d_s8_pointwise_inplace{direction}" for direction in ("", "_backward")})
POINTWISE_PAIR_KERNELS = POINTWISE_INPLACE_KERNELS
POINTWISE_INT4_PAIR_KERNELS = POINTWISE_PAIR_KERNELS - POINTWISE_INT8_PAIR_KERNELS

def _quad_ring_on_stack(fields: dict) -> bool:
    """Whether an in-place depthwise call may run inplace_quad_on_stack (ek_conv_depthwise.c:
    dw_quad_applies, and a ring the scratch plane cannot hold that fits the build's
    EK_DW_QUAD_STACK_WORDS). The kernel also needs the ring order safe; a call counted here
    without that check can only make the bound higher."""
    return (fields["in_c"] % 4 == 0 and fields["depth_multiplier"] == 1
            and fields["filter_offset"] == 0 and fields["k_h"] == 3 and fields["k_w"] == 3
            and fields["stride_w"] in (1, 2) and fields["dilation_h"] == 1
            and fields["dilation_w"] == 1 and quad_stack_ring_words(fields) > 0)


def _byte_ring_on_stack(fields: dict) -> bool:
    """Whether an in-place depthwise call may run inplace_ring_on_stack (ek_conv_depthwise.c:
    the one-channel ring, both copies of k_h rows and 3 bytes, larger than the scratch plane
    and within EK_DW_RING_STACK). On DSP cores the four-channel rings take most such calls
    first; a call counted here without that, or without the ring order check, can only make
    the bound higher."""
    f = fields
    rw = (f["out_w"] - 1) * f["stride_w"] + f["k_w"]
    ring = 2 * f["k_h"] * rw + 3
    return (f["dilation_h"] == 1 and f["dilation_w"] == 1 and f["k_h"] * f["k_w"] <= DW_MAX_TAPS
            and f["in_h"] * f["in_w"] < ring <= DW_RING_STACK)


def _plane_kernel(fields: dict) -> bool:
    """Whether an in-place depthwise call may run the plane kernel (ek_conv_depthwise.c
    inplace_plane, the rings' fallback): a dilated or over-25-tap window, an order the rings
    cannot keep, or a byte ring that fits neither the plane nor the stack where no
    four-channel ring surely runs (`depthwise_surely_quad`; unsure counts as may)."""
    f = fields
    rw = (f["out_w"] - 1) * f["stride_w"] + f["k_w"]
    ring = 2 * f["k_h"] * rw + 3
    ring_fits = ring <= f["in_h"] * f["in_w"] or ring <= DW_RING_STACK
    return not (f["dilation_h"] == 1 and f["dilation_w"] == 1
                and f["k_h"] * f["k_w"] <= DW_MAX_TAPS and ring_order_safe(f)
                and (ring_fits or depthwise_surely_quad("ek_depthwise_conv2d_s8_inplace", f)))


def _quad_stores_each(fields: dict) -> bool:
    """Whether an in-place depthwise call's four-channel rings may store a group in C
    (ek_conv_depthwise.c: dw_quad_store_each, or the pair ring's dw_pairs_rows instead of its
    assembly): some channel not in DW_FAST_FULL, the fast requantisation (dw_requant_setup) with
    the clamp to all of int8."""
    return not requant_fast_full(fields)


def _short_window_gathered(fields: dict) -> bool:
    """Whether a CONV_2D call on the widened path may gather a short window (in_c % 4 != 0) as
    bytes (ek_conv.c's wide_window_gathered): unless every window lies inside the input and a
    row reader takes every pair (wide_windows; the lone last pixel is read as a pair too)."""
    if not wide_path_applies(fields) or fields["in_c"] % 4 == 0:
        return False
    f = fields
    inside = (f["pad_top"] == 0 and f["pad_left"] == 0
              and (f["out_h"] - 1) * f["stride_h"] + (f["k_h"] - 1) * f["dilation_h"] < f["in_h"]
              and (f["out_w"] - 1) * f["stride_w"] + f["k_w"] <= f["in_w"])
    return not (inside and short_rows_readers("ek_conv2d_s8", fields) != 0)


def _pointwise_channels(mode: str, paired_asm: bool | None, fields: dict,
                        skips: bool | None = None) -> bool:
    """Whether a pointwise pair call runs the channel loop of requantisation `mode`: in C
    (pw_channels_*: ``paired_asm`` False), or in assembly over a paired int8 filter in the
    clamp-free full modes (pw_paired_*_asm: True; None: either), the loop that skips pairs of
    constant channels where the layer has one (``skips`` True: pw_paired_*_skip_asm; False: the
    other; None: either)."""
    if not _pointwise_pairs(fields) or requant_mode(fields) != mode:
        return False
    if paired_asm is None:
        return True
    if paired_asm != bool(fields.get("paired_filter", 0)):
        return False
    return skips is None or not paired_asm or skips == constant_pairs(fields["multipliers"])


def _s4_channels(mode: str, fields: dict) -> bool:
    """Whether an int4 call runs the int4 channel loop in assembly (s4_channels_*_asm) in
    requantisation `mode`: a pointwise pair call, or a plain CONV_2D on the widened path whose
    window is within one run's exactness bound (PW_S4_MAX_C_IN taps)."""
    if requant_mode(fields) != mode:
        return False
    window = fields["k_h"] * fields["k_w"] * fields["in_c"]
    return _pointwise_pairs(fields) or (wide_s4_path_applies("ek_conv2d_s4", fields)
                                        and window <= PW_S4_MAX_C_IN)


def _pointwise_channels_helpers() -> dict:
    """pw_inplace_pairs' channel loops, one per requantisation mode (ek_conv.c
    pw_channels_of): the modes with the int8-range clamp in assembly where the int8 filter is
    paired, and always for int4 filters (whose loop also serves their widened convolutions)."""
    helpers = {}
    for mode, name in (("fast", "fast"), ("exact", "exact"), ("wide", "wide")):
        helpers[f"pw_channels_{name}"] = (POINTWISE_PAIR_KERNELS,
                                          partial(_pointwise_channels, mode, None))
    for mode, c_name, asm_name in (("fast_full", "full", "pw_paired_full_asm"),
                                   ("wide_full", "wide_full", "pw_paired_wide_full_asm")):
        helpers[f"pw_channels_{c_name}"] = (POINTWISE_INT8_PAIR_KERNELS,
                                            partial(_pointwise_channels, mode, False))
        helpers[asm_name] = (POINTWISE_INT8_PAIR_KERNELS,
                             partial(_pointwise_channels, mode, True, skips=False))
        helpers[asm_name.replace("_asm", "_skip_asm")] = (
            POINTWISE_INT8_PAIR_KERNELS, partial(_pointwise_channels, mode, True, skips=True))
        helpers[asm_name.replace("pw_paired", "s4_channels")] = (
            POINTWISE_INT4_PAIR_KERNELS | {"ek_conv2d_s4"}, partial(_s4_channels, mode))
    return helpers


def _conv_channels_asm(mode: str, fields: dict) -> bool:
    """Whether a plain int8 CONV_2D call on the widened path runs conv2d_wide's channel loop in
    assembly (conv_wide_*_asm: requantisation `mode`; the kernel also needs a bias, which a
    call counted here without one can only make the bound higher)."""
    return wide_path_applies(fields) and requant_mode(fields) == mode


#: the in-place depthwise kernels, whose four-channel ring (DSP builds only) calls its helpers
INPLACE_DEPTHWISE_KERNELS = frozenset({"ek_depthwise_conv2d_s8_inplace",
                                       "ek_depthwise_conv2d_s4_inplace"})

#: helper symbol -> (the kernels that call it, whether a call with these params fields, the
#: per-op arrays' values in place of their names, takes it)
PATH_HELPERS: dict[str, tuple[frozenset[str], Callable[[dict], bool]]] = {
    "pw_inplace_pairs": (POINTWISE_PAIR_KERNELS, _pointwise_pairs),
    **{helper: (frozenset({kernel}), pairs_path_applies)
       for kernel, helper in DSP_PAIR_HELPERS.items()},
    **{helper: (frozenset({kernel}), wide_path_applies)
       for kernel, helper in WIDE_PATH_HELPERS.items()},
    # (ek_conv2d_s4 and the int8 kernel that runs its widened path share its helper and its
    # conditions: wide_s4_path_applies answers alike for both)
    **{helper: (frozenset(k for k, h in WIDE_S4_PATH_HELPERS.items() if h == helper),
                partial(wide_s4_path_applies, kernel))
       for kernel, helper in WIDE_S4_PATH_HELPERS.items()},
    **{f"{kernel}_broadcast": (frozenset({kernel}), _broadcasts)
       for kernel in ("ek_add_s8", "ek_add_s16", "ek_mul_s8", "ek_mul_s16")},
    "dot4_raw": (RAW_DOT_KERNELS, _raw_dot_product),
    "fc_dot4_interleaved": (frozenset({"ek_fully_connected_s8"}), _interleaved_dot_product),
    "fc_store4_fast": (frozenset({"ek_fully_connected_s8"}), _interleaved_fast_store),
    "inplace_quad_on_stack": (INPLACE_DEPTHWISE_KERNELS, _quad_ring_on_stack),
    "inplace_ring_on_stack": (INPLACE_DEPTHWISE_KERNELS, _byte_ring_on_stack),
    "inplace_plane": (INPLACE_DEPTHWISE_KERNELS, _plane_kernel),
    "dw_quad_store_each": (INPLACE_DEPTHWISE_KERNELS, _quad_stores_each),
    "dw_pairs_rows": (INPLACE_DEPTHWISE_KERNELS, _quad_stores_each),
    "wide_window_gathered": (frozenset(WIDE_PATH_HELPERS), _short_window_gathered),
    "attention_mask_add": (frozenset({"ek_attention_s8"}), lambda fields: bool(fields["masked"])),
    **_pointwise_channels_helpers(),
    "conv_wide_full_asm": (frozenset({"ek_conv2d_s8"}), partial(_conv_channels_asm, "fast_full")),
    "conv_wide_wide_full_asm": (frozenset({"ek_conv2d_s8"}),
                                partial(_conv_channels_asm, "wide_full")),
}


def taken_helpers(kernel: str, fields: dict) -> set[str]:
    """The helpers of `PATH_HELPERS` that a call of ``kernel`` with these params runs."""
    return {helper for helper, (kernels, taken) in PATH_HELPERS.items()
            if kernel in kernels and taken(fields)}


def never_called(taken: set[str]) -> list[str]:
    """The helpers no call of a model takes (``taken``: the union of `taken_helpers`)."""
    return sorted(set(PATH_HELPERS) - set(taken))
