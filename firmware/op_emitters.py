"""Per-op-kind C emission: which kernel an op calls, its params struct and its argument list.

Each emitter turns one IR op plus its `edgekit.reference.prepare` result into an `OpCall`: the
params struct type and field values (the numbers of the reference interpreter, verbatim), the
per-channel arrays the struct points to, and the kernel call. The struct and function names
are those of the kernel headers in ``c/kernels/`` (``edgekit_kernels.h``); the generator
itself (`edgekit.firmware.codegen`) knows nothing op-specific.

An emitter receives an `EmitContext` that turns tensor names into C pointer expressions (arena
tensors: ``arena + offset``; constants: their flash arrays) and tells whether the op runs in
place under one of the planner's modes.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from edgekit.errors import UnsupportedError
from edgekit.firmware.c_source import CArray, packed_int4
from edgekit.ir import DType, Graph, Op
from edgekit.reference.common import where

#: dtype -> kernel name suffix
_SUFFIX = {DType.INT8: "s8", DType.INT16: "s16", DType.FLOAT32: "f32"}

#: dimensions of the kernels' broadcast shape (ek_elementwise.h EK_BROADCAST_DIMS)
BROADCAST_DIMS = 5


@dataclass
class OpCall:
    """The C for one op: ``kernel(&params, args...)`` (or a plain statement when ``params_type``
    is None, e.g. a RESHAPE copy or view)."""

    kernel: str
    params_type: str | None
    fields: dict = field(default_factory=dict)
    #: (C element type, name suffix, values): per-channel arrays the struct points at
    arrays: list[tuple[str, str, np.ndarray]] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    statement: str | None = None  # used instead of a kernel call when set
    #: more params structs passed after the first: (type, name suffix, fields)
    extra_params: list[tuple[str, str, dict]] = field(default_factory=list)
    #: what the mirrors of the kernels' dispatch need that is no params field (``has_bias``)
    facts: dict = field(default_factory=dict)


class EmitContext:
    """What an emitter may ask about the op it emits: tensor pointers and its in-place mode."""

    def __init__(self, graph: Graph, op: Op, pointer: Callable[[str], str],
                 array_ref: Callable[[str], str], inplace_mode: str | None,
                 scratch: str | None, s8_via_s4: bool = False):
        self.graph = graph
        #: whether the model's plain int8 CONV_2Ds run in the int4 kernels' translation unit
        #: (`s8_via_s4_pays`)
        self.s8_via_s4 = s8_via_s4
        self.op = op
        self._pointer = pointer
        self._array_ref = array_ref
        self.inplace_mode = inplace_mode
        self.scratch = scratch

    def ptr(self, name: str | None) -> str:
        """C expression of the tensor's data (NULL for an absent optional input)."""
        if name is None:
            return "NULL"
        return self._pointer(name)

    def array(self, suffix: str) -> CArray:
        """The per-op array ``suffix`` (declared from `OpCall.arrays`), for a struct field."""
        return CArray(self._array_ref(suffix))


def _suffix(op: Op, graph: Graph, name: str) -> str:
    dtype = graph[name].dtype
    if dtype not in _SUFFIX:
        raise UnsupportedError(f"{where(op)}: tensor {name!r} is {dtype.value}; the firmware"
                               " kernels take int8, int16 or float32")
    return _SUFFIX[dtype]


def _require_int8(op: Op, graph: Graph, *names: str | None) -> None:
    for name in names:
        if name is not None and graph[name].dtype != DType.INT8:
            raise UnsupportedError(f"{where(op)}: tensor {name!r} is {graph[name].dtype.value};"
                                   " the firmware kernel for this op takes int8 only")


def _require_weights(op: Op, graph: Graph, name: str) -> str:
    """The kernel suffix of a conv/FC filter: ``s8`` for int8, ``s4`` for packed int4."""
    dtype = graph[name].dtype
    if dtype == DType.INT4:
        return "s4"
    _require_int8(op, graph, name)
    return "s8"


def kernel_shifts(multipliers, shifts) -> np.ndarray:
    """The per-channel shifts as the kernels get them: a channel whose multiplier is 0 (what
    QuantizeMultiplier gives a zero scale) outputs its offset whatever its shift, so it gets a
    right shift of 2 (TFLite writes 0) and the fast requantisation takes it with the others."""
    m, s = np.asarray(multipliers, np.int64), np.asarray(shifts, np.int64)
    return np.where(m == 0, -2, s)


def _per_channel(p) -> list[tuple[str, str, np.ndarray]]:
    return [("int32_t", "multipliers", np.asarray(p.multipliers, dtype=np.int64)),
            ("int32_t", "shifts", kernel_shifts(p.multipliers, p.shifts))]


def requant_shortest(kernel: str) -> int:
    """The shortest right shift the fast requantisation forms of ``kernel``'s translation unit
    take (ek_conv_common.h EK_REQUANT_SHORTEST): 1 for the packed int4 kernels (their weight
    scales give right shifts of 1), 2 for the others."""
    return 1 if "_s4" in kernel else 2


def requant_needs_wide(p, shortest: int = 2) -> bool:
    """Whether a layer's channels all take the kernels' wide fast requantisation but not all the
    fast one (ek_conv_common.h ``ek_requant_wide_applies``: a right shift of ``shortest`` to 31,
    some over 23): such a layer needs the wide modes compiled in (``EK_REQUANT_WIDE``)."""
    s = kernel_shifts(p.multipliers, p.shifts)
    return (requant_fast_everywhere(p.multipliers, s, 31, shortest)
            and not requant_fast_everywhere(p.multipliers, s, 23, shortest))


def _bias(op: Op, graph: Graph) -> str | None:
    bias = op.inputs[2] if len(op.inputs) > 2 else None
    if bias is not None and graph[bias].dtype != DType.INT32:
        raise UnsupportedError(f"{where(op)}: bias {bias!r} is {graph[bias].dtype.value}; the"
                               " firmware kernels take int32 biases")
    return bias


#: the planner's in-place 1x1 modes (CONV_2D, and FULLY_CONNECTED over tokens)
POINTWISE_MODES = ("pointwise_inplace", "pointwise_inplace_backward")


def emit_conv(ctx: EmitContext, p, *, fused: bool = False) -> OpCall:
    """A CONV_2D or DEPTHWISE_CONV_2D call (``fused``: the conv of `emit_conv_add`, whose call
    passes the tensor's filter: its rows are never padded)."""
    op, graph = ctx.op, ctx.graph
    x, w = op.inputs[0], op.inputs[1]
    out = op.outputs[0]
    _require_int8(op, graph, x, out)
    bits = _require_weights(op, graph, w)
    bias = _bias(op, graph)
    _, ih, iw, ic = graph[x].shape
    _, oh, ow, oc = graph[out].shape
    _, fh, fw, _ = graph[w].shape
    fields = {
        "in_h": ih, "in_w": iw, "in_c": ic,
        "out_h": oh, "out_w": ow, "out_c": oc,
        "k_h": fh, "k_w": fw,
        "stride_h": p.stride[0], "stride_w": p.stride[1],
        "dilation_h": p.dilation[0], "dilation_w": p.dilation[1],
        "pad_top": p.pad[0], "pad_left": p.pad[2],
        "depth_multiplier": p.depth_multiplier,
        "input_offset": p.input_offset, "filter_offset": p.filter_offset,
        "output_offset": p.output_offset, "act_min": p.act_min, "act_max": p.act_max,
        "multipliers": ctx.array("multipliers"), "shifts": ctx.array("shifts"),
    }
    arrays = _per_channel(p)
    if op.kind == "CONV_2D" and p.filter_offset == 0:
        # the kernels' fast interior path: the input offset folded into the bias
        arrays.append(("int32_t", "effective_bias", effective_bias(
            graph[w].data, None if bias is None else graph[bias].data, p.input_offset)))
        fields["effective_bias"] = ctx.array("effective_bias")
    if op.kind == "CONV_2D" and ctx.inplace_mode in POINTWISE_MODES:
        kernel = INPLACE_MODE_KERNELS[ctx.inplace_mode]
        fields["wide_scratch"] = 1  # the planner gives a 1x1 conv 4 * C_in (inplace.py)
        args = [ctx.ptr(out), ctx.ptr(w), ctx.ptr(bias), ctx.ptr(out), f"(int8_t *){ctx.scratch}"]
    elif op.kind == "CONV_2D":  # out of place, or conv_sliding (output just before the input)
        kernel, args = "ek_conv2d_s8", [ctx.ptr(x), ctx.ptr(w), ctx.ptr(bias), ctx.ptr(out)]
    elif ctx.inplace_mode == "depthwise_channelwise":
        kernel = "ek_depthwise_conv2d_s8_inplace"
        args = [ctx.ptr(out), ctx.ptr(w), ctx.ptr(bias), ctx.ptr(out), f"(int8_t *){ctx.scratch}"]
    else:  # out of place, or conv_sliding
        kernel = "ek_depthwise_conv2d_s8"
        args = [ctx.ptr(x), ctx.ptr(w), ctx.ptr(bias), ctx.ptr(out)]
    params_type = "ek_conv2d_params" if op.kind == "CONV_2D" else "ek_depthwise_conv2d_params"
    kernel = weights_kernel(kernel, bits)
    if kernel == "ek_conv2d_s8" and not fused and ctx.s8_via_s4:
        # int8 layers among int4 convolutions (a first layer kept int8): the int4 kernels'
        # widened path runs them on int8 rows, so the build links one convolution, not two
        kernel = S8_VIA_S4
        arrays.append(("int8_t", "filter", s8_lane_rows(graph[w].data)))
        args[1] = ctx.array("filter").name
    if pointwise_paired(kernel, fields):
        # the filter re-laid out for the two-pixel DSP loop (ek_conv.h `paired_filter`): the
        # op's own array replaces the tensor's, so flash holds the same bytes once
        arrays.append(("int8_t", "filter", pair_pointwise_filter(graph[w].data)))
        fields["paired_filter"] = 1
        args[1] = ctx.array("filter").name
    if (not fused and kernel == "ek_conv2d_s4" and s4_rows_padded(kernel, fields)
            and fields["k_h"] * fields["k_w"] * ic % 8):
        # the op's own filter, each output channel's row padded to whole groups of 8 taps: the
        # kernel reads it so on every path (ek_conv_weights.h ek_s4_rows_padded)
        arrays.append(("int8_t", "filter", padded_s4_rows(graph[w].data)))
        args[1] = ctx.array("filter").name
    return OpCall(kernel, params_type, fields, arrays, args, facts={"has_bias": bias is not None})


#: ek_conv.h's int8 CONV_2D run by the int4 kernels' translation unit (ek_conv_s4.c)
S8_VIA_S4 = "ek_conv2d_s8_via_s4"


def s4_rows_padded(kernel: str, fields: dict) -> bool:
    """Whether a call's int4 filter rows are padded to whole groups of 8 taps (ek_conv_weights.h
    ``ek_s4_rows_padded``): a plain int4 CONV_2D whose short window (a first layer over 1-3
    channels) takes the widened path on DSP cores, the portable loop elsewhere. (`S8_VIA_S4`'s
    int8 rows are padded so, and the same condition picks the short path.)"""
    length = fields["k_h"] * fields["k_w"] * fields["in_c"]
    return (kernel in ("ek_conv2d_s4", S8_VIA_S4) and fields["in_c"] % 8 != 0
            and fields["filter_offset"] == 0 and "effective_bias" in fields
            and fields["out_c"] >= 2 and fields["dilation_w"] == 1
            and 0 < length <= PAIR_MAX_LEN)


def padded_s4_rows(weights: np.ndarray) -> np.ndarray:
    """int4 filter values [out_c, ...] as packed bytes with each channel's row padded with zero
    weights to whole groups of 8 (`s4_rows_padded`), plus the array's pad."""
    rows = weights.reshape(weights.shape[0], -1)
    padded = np.zeros((rows.shape[0], _groups(rows.shape[1])), dtype=np.int8)
    padded[:, :rows.shape[1]] = rows
    return packed_int4(padded.reshape(-1))


def s8_via_s4_pays(graph: Graph, params, modes: dict[int, str | None]) -> bool:
    """Whether a model's plain int8 CONV_2Ds run as `S8_VIA_S4`: where it has an int4 CONV_2D
    and every int8 one but the in-place 1x1 calls (another loop) is a plain call that the int4
    widened path's channel loops in assembly take whole (`s8_via_s4_applies`), ek_conv.c's
    int8 convolution then leaves the build (a mixed model's int8 first layer: about 6 kB of
    code). Elsewhere that code is linked anyway, and the int8 layers keep their own kernels.
    ``modes``: op index -> its in-place mode, ``"conv_add_skip"`` for a conv fused with its
    ADD."""
    convs = [(i, op) for i, op in enumerate(graph.ops) if op.kind == "CONV_2D"]
    if not any(graph[op.inputs[1]].dtype == DType.INT4 for _, op in convs):
        return False
    int8 = [(i, op) for i, op in convs if graph[op.inputs[1]].dtype != DType.INT4
            and modes.get(i) not in POINTWISE_MODES]
    return bool(int8) and all(modes.get(i) != "conv_add_skip"
                              and s8_via_s4_applies(_window_fields(op, graph, params[i]))
                              for i, op in int8)


def s8_via_s4_applies(fields: dict) -> bool:
    """Whether `S8_VIA_S4` can run a plain int8 CONV_2D call (ek_conv.c's contract, checked
    there): the int4 widened path takes it, and its channel loops in assembly every channel:
    pairs of them (an even out_c), requantised in a clamp-free fast or wide form with the int4
    unit's shortest right shift (`requant_shortest`)."""
    fields = {**fields, "requant_shortest": requant_shortest(S8_VIA_S4)}
    return (wide_s4_path_applies(S8_VIA_S4, fields) and fields["out_c"] % 2 == 0
            and requant_mode(fields) in ("fast_full", "wide_full"))


def _window_fields(op: Op, graph: Graph, p) -> dict:
    """The params fields the widened paths' conditions read, of a CONV_2D (as `emit_conv`)."""
    _, _, _, ic = graph[op.inputs[0]].shape
    _, fh, fw, _ = graph[op.inputs[1]].shape
    fields = {"k_h": fh, "k_w": fw, "in_c": ic, "out_c": graph[op.outputs[0]].shape[-1],
              "dilation_w": p.dilation[1], "filter_offset": p.filter_offset,
              "act_min": p.act_min, "act_max": p.act_max,
              "multipliers": np.asarray(p.multipliers, dtype=np.int64),
              "shifts": kernel_shifts(p.multipliers, p.shifts)}
    if p.filter_offset == 0:
        fields["effective_bias"] = True
    return fields


#: the byte of each tap of a group of 8 in `s8_lane_rows` (ek_conv.c ``s8_lane_byte``)
S8_LANE_ORDER = (0, 1, 4, 5, 2, 3, 6, 7)


def s8_lane_rows(weights: np.ndarray) -> np.ndarray:
    """int8 filter values [out_c, ...] as `S8_VIA_S4` reads them: each channel's row padded with
    zeros to whole groups of 8 taps, each group's bytes in the order {w0, w1, w4, w5, w2, w3, w6,
    w7} (SXTB16 and SXTB16 ROR #8 of a word give the lanes {w0, w4}, {w1, w5}: the int4 path's
    window words)."""
    rows = weights.reshape(weights.shape[0], -1)
    padded = np.zeros((rows.shape[0], _groups(rows.shape[1])), dtype=np.int8)
    padded[:, :rows.shape[1]] = rows
    groups = padded.reshape(rows.shape[0], -1, 8)
    return np.ascontiguousarray(groups[:, :, list(S8_LANE_ORDER)]).reshape(-1)


#: ek_conv_s4_dsp.h's default EK_S4_WINDOW_TAPS: the longest window a build may give the DSP path
S4_WINDOW_TAPS_MAX = 576


def _groups(taps: int) -> int:
    return -(-taps // 8) * 8


def s4_window_taps(kernel: str, fields: dict) -> int:
    """The window buffer (taps) a call of an int4 kernel needs for its DSP path (ek_conv_s4_dsp.h:
    ``ek_s4_dsp_applies`` / ``ek_s4_conv_dsp_applies`` under the default buffer), 0 when it
    takes no window (depthwise, a filter offset, a window too long)."""
    if "_s4" not in kernel or "depthwise" in kernel or fields["filter_offset"] != 0:
        return 0
    if kernel in WIDE_S4_PATH_HELPERS and wide_s4_path_applies(kernel, fields):
        return 0  # the two-pixel path, tried first
    if kernel.startswith("ek_fully_connected"):
        length, odd_allowed = fields["depth"], False
    else:
        length = fields["k_h"] * fields["k_w"] * fields["in_c"]
        odd_allowed = "pointwise" not in kernel
    if length % 2 == 0:
        return _groups(length) if length <= S4_WINDOW_TAPS_MAX else 0
    if odd_allowed and length + 1 <= S4_WINDOW_TAPS_MAX // 2:
        return 2 * _groups(length + 1)  # two windows, the odd one in the second half
    return 0


#: ek_conv.c's default EK_CONV_WIDE_TAPS: the longest window a build may give the widened path
#: (its stack buffer is 4 bytes per tap)
WIDE_TAPS_MAX = 576
#: the int8 conv kernels that run the widened two-pixel path on DSP cores, and its helper
WIDE_PATH_HELPERS = {"ek_conv2d_s8": "conv2d_wide_plain", "ek_conv2d_add_s8": "conv2d_wide_fused"}
#: the same for the packed int4 kernels (ek_conv_s4.c names its helpers apart)
WIDE_S4_PATH_HELPERS = {"ek_conv2d_s4": "conv2d_wide_s4_plain",
                        "ek_conv2d_add_s4": "conv2d_wide_s4_fused",
                        S8_VIA_S4: "conv2d_wide_s4_plain"}


def wide_path_applies(fields: dict) -> bool:
    """Whether a CONV_2D with these ``ek_conv2d_params`` fields takes the DSP widened two-pixel
    path (ek_conv.c's ``conv_wide_apply`` under the default buffer)."""
    length = fields["k_h"] * fields["k_w"] * fields["in_c"]
    if fields["filter_offset"] != 0 or fields["out_c"] < 2 or length < 4:
        return False
    if fields["in_c"] % 4 == 0:
        return length <= WIDE_TAPS_MAX
    return fields["dilation_w"] == 1 and length <= PAIR_MAX_LEN  # from the rows, or gathered


def short_rows_readers(kernel: str, fields: dict) -> int:
    """Which of ek_conv.c's readers of two windows straight from their rows a call may use
    (``EK_CONV_SHORT_ROWS``): bit 0 the plan (a short window, in_c % 4 != 0, whose rows of 3
    bytes or more are no whole words: ``wide_plan_applies``), bit 1 rows of whole words; 0 for
    calls off the int8 widened path or with dilated rows."""
    if (kernel not in WIDE_PATH_HELPERS or not wide_path_applies(fields)
            or fields["dilation_w"] != 1):
        return 0
    row = fields["k_w"] * fields["in_c"]
    if row % 4 == 0:
        return 2
    return int(row >= 3 and fields["dilation_h"] * fields["in_w"] * fields["in_c"] >= 3)


def requant_mode(fields: dict) -> str:
    """ek_conv.c's pw_requant_mode for a conv call: "fast" or "wide" (every channel's fast or
    wide fast requantisation, `requant_fast_everywhere`), else "exact"; "_full" where the
    activation range is all of int8. (A build compiles the wide modes in where some layer needs
    them: EK_REQUANT_WIDE.) The shortest right shift the call's kernel takes fast is the
    codegen's ``requant_shortest`` fact (`requant_shortest`), 2 where absent."""
    full = "_full" if fields["act_min"] == -128 and fields["act_max"] == 127 else ""
    shortest = fields.get("requant_shortest", 2)
    if requant_fast_everywhere(fields["multipliers"], fields["shifts"], 23, shortest):
        return "fast" + full
    if requant_fast_everywhere(fields["multipliers"], fields["shifts"], 31, shortest):
        return "wide" + full
    return "exact"


#: the in-place pointwise kernels (ek_conv.c pw_inplace_pairs: the two-pixel path on DSP cores)
POINTWISE_INPLACE_KERNELS = frozenset(f"ek_conv2d_{bits}_pointwise_inplace{direction}"
                                      for bits in ("s8", "s4") for direction in ("", "_backward"))
#: requant_mode -> ek_conv.c EK_PW_LOOP_* (the modes whose pointwise loops are in C)
_PW_LOOP_BITS = {"fast": 1, "exact": 2, "wide": 4}


def pointwise_loops(kernel: str, fields: dict) -> int:
    """The pointwise channel loops in C (ek_conv.c EK_PW_LOOPS: pw_channels_fast, _exact,
    _wide) an in-place pointwise call may run: its requantisation mode's, none for the full
    modes (their loops are in assembly on DSP cores), all whenever unsure."""
    if kernel not in POINTWISE_INPLACE_KERNELS:
        return 0
    if not _arrays_known(fields):
        return 7
    return _PW_LOOP_BITS.get(requant_mode(fields), 0)


def wide_tail(kernel: str, fields: dict) -> bool:
    """Whether an int8 call on the widened path may run ``dot2x2_wide_tail`` (compiled where
    some call does: EK_CONV_WIDE_TAIL): a window that is no whole groups of four taps (k_h * k_w
    * in_c % 4 != 0: a first layer over 1-3 channels) whose channels conv_wide_channels' C loop
    takes: all of a fused call's, an odd last one, or every one where the assembly does not run
    (a requantisation mode other than the full ones, no bias; ``has_bias``, a fact of the call,
    unknown counts as none)."""
    if (kernel not in WIDE_PATH_HELPERS or not wide_path_applies(fields)
            or fields["k_h"] * fields["k_w"] * fields["in_c"] % 4 == 0):
        return False
    return (kernel != "ek_conv2d_s8" or fields["out_c"] % 2 == 1
            or not fields.get("has_bias", False)
            or requant_mode(fields) not in ("fast_full", "wide_full"))


def wide_s4_path_applies(kernel: str, fields: dict) -> bool:
    """Whether a call of a packed int4 CONV_2D kernel (``ek_conv2d_s4``, or ``ek_conv2d_add_s4``
    fused with its ADD) takes the two-pixel path (ek_conv.c's ``conv_wide_apply`` compiled as
    ek_conv_s4.c): whole groups of 8 channels per tap, or, in the plain kernel, a short window
    over other channel counts (a first layer over 1-3 channels), gathered as bytes first."""
    length = fields["k_h"] * fields["k_w"] * fields["in_c"]
    if not (fields["filter_offset"] == 0 and "effective_bias" in fields
            and fields["out_c"] >= 2 and length > 0):
        return False
    if fields["in_c"] % 8 == 0:
        return length <= WIDE_TAPS_MAX
    return s4_rows_padded(kernel, fields) and wide_s4_words(length) <= WIDE_TAPS_MAX


def s4_conv_pixels(kernel: str, fields: dict) -> bool:
    """Whether an int4 CONV_2D call takes the one-pixel DSP path (ek_conv.c's
    ``conv2d_s4_pixels``, compiled where some call does: EK_S4_CONV_PIXELS)."""
    return kernel in WIDE_S4_PATH_HELPERS and s4_window_taps(kernel, fields) > 0


def wide_s4_words(length: int) -> int:
    """Words of the int4 widened path's stack buffer a window of ``length`` taps takes (ek_conv.c
    ``wide_s4_words``): 8 per group of 8 taps (two pixels, 2 bytes a tap)."""
    return _groups(length)


def wide_window_taps(kernel: str, fields: dict) -> int:
    """The window buffer (words) a call of ``kernel`` gives the widened path, 0 when it takes
    another: 4 bytes per tap, the length rounded up to 4 (int4: to its groups of 8); a short
    int8 window (in_c % 4 != 0) whose rows are no whole words also keeps its plan there, 3
    words per group of four taps (ek_conv.c ``wide_short_words``)."""
    if kernel in WIDE_S4_PATH_HELPERS and wide_s4_path_applies(kernel, fields):
        return wide_s4_words(fields["k_h"] * fields["k_w"] * fields["in_c"])
    if kernel not in WIDE_PATH_HELPERS or not wide_path_applies(fields):
        return 0
    groups = -(-fields["k_h"] * fields["k_w"] * fields["in_c"] // 4)
    planned = fields["in_c"] % 4 != 0 and fields["k_w"] * fields["in_c"] % 4 != 0
    return 7 * groups if planned else 4 * groups


#: ek_conv_depthwise.c's EK_DW_MAX_TAPS, and the largest stack ring of its four-channel
#: depthwise (EK_DW_QUAD_STACK_WORDS, in words: each build sizes it to its largest user,
#: `depthwise_quad_stack_words`)
DW_MAX_TAPS = 25
#: ek_conv_depthwise.c's EK_DW_RING_STACK: the largest one-channel ring kept on the stack (bytes)
DW_RING_STACK = 64
DW_QUAD_STACK_WORDS = 160


def _quad_ring_words(f: dict) -> int:
    """ek_conv_depthwise.c's quad_ring_words: one copy of k_h ring rows, a word per pixel."""
    return f["k_h"] * ((f["out_w"] - 1) * f["stride_w"] + f["k_w"])


def depthwise_quad_stack_words(kernel: str, fields: dict) -> int:
    """The stack ring (words) an in-place depthwise call may take on a DSP core (ek_conv_depthwise.c
    ``run_quad``, `quad_stack_ring_words`); 0 where the scratch plane holds the ring or no ring
    applies. A build's EK_DW_QUAD_STACK_WORDS is the largest
    of its calls', so every call takes the ring it was sized for."""
    return quad_stack_ring_words(fields) if depthwise_maybe_quad(kernel, fields) else 0


def _pairs_ring_words(f: dict) -> int:
    """ek_conv_depthwise.c's pairs_ring_words: 3 slots of 4 sub-rows of the ring row's columns
    in pairs, and the slack a last partial block reads past the last."""
    m = ((f["out_w"] - 1) * f["stride_w"] + 4) // 2
    slack = 2 * f["stride_w"] * -(-f["out_w"] // 4) + 1 - m
    return 12 * m + max(slack, 0)


def quad_stack_ring_words(fields: dict) -> int:
    """`depthwise_quad_stack_words` of an in-place depthwise call the four-channel ring takes:
    the pair ring where the plane or the stack holds it, else the widened ring, else the byte
    ring (``run_quad``'s order)."""
    plane = fields["in_h"] * fields["in_w"]
    pairs = _pairs_ring_words(fields)
    if 3 + 4 * pairs <= plane:
        return 0
    if pairs <= DW_QUAD_STACK_WORDS:
        return pairs
    words = _quad_ring_words(fields)
    if 3 + 8 * words <= plane:
        return 0
    if 2 * words <= DW_QUAD_STACK_WORDS:
        return 2 * words
    return words if words <= DW_QUAD_STACK_WORDS else 0


def depthwise_maybe_quad(kernel: str, fields: dict) -> bool:
    """Whether an in-place depthwise call may run the four-channel ring on a DSP core
    (ek_conv_depthwise.c's ``dw_quad_applies``); a build none of whose calls may leaves the
    ring's code out (``EK_DW_QUAD``). True whenever unsure: that only keeps code linked."""
    f = fields
    return (kernel.startswith("ek_depthwise_conv2d_s") and kernel.endswith("_inplace")
            and f["in_c"] % 4 == 0 and f["depth_multiplier"] == 1 and f["filter_offset"] == 0
            and f["k_h"] == 3 and f["k_w"] == 3 and f["stride_w"] in (1, 2))


def ring_order_safe(f: dict) -> bool:
    """ek_conv_depthwise.c's ring_order_safe: writing output row oy right after its window's
    rows are gathered never overwrites an input pixel a later window needs."""
    for oy in range(f["out_h"]):
        gathered = min(oy * f["stride_h"] - f["pad_top"] + f["k_h"], f["in_h"])
        if (oy + 1) * f["out_w"] > gathered * f["in_w"]:
            return False
    return True


def depthwise_pairs_wide(kernel: str, fields: dict) -> bool:
    """Whether an in-place depthwise call may give the pair ring a channel in the wide fast form
    with the int8-range clamp (ek_conv_depthwise.c ``dw_pairs_setup``: a right shift of 24 to
    31), whose row loops in assembly a build then compiles in (``EK_DW_PAIRS_WIDE``). True
    whenever unsure (``fields`` without the arrays' values)."""
    if not depthwise_maybe_quad(kernel, fields):
        return False
    multipliers, shifts = fields.get("multipliers"), fields.get("shifts")
    if multipliers is None or isinstance(multipliers, str):
        return True
    if (fields["act_min"], fields["act_max"]) != (-128, 127):
        return False
    m, s = np.asarray(multipliers, np.int64), np.asarray(shifts, np.int64)
    return bool(((m >= 0) & (s < -23) & (s >= -31)).any())


def depthwise_surely_pairs(kernel: str, fields: dict) -> bool:
    """Whether an in-place depthwise call certainly runs the pair ring on a DSP core
    (`depthwise_surely_quad`, and a pair ring the scratch plane holds whatever its alignment or
    the build's stack buffer holds: `quad_stack_ring_words` sizes it for this call). False
    whenever unsure: that only keeps code linked."""
    if not depthwise_surely_quad(kernel, fields):
        return False
    pairs = _pairs_ring_words(fields)
    return 3 + 4 * pairs <= fields["in_h"] * fields["in_w"] or pairs <= DW_QUAD_STACK_WORDS


def _arrays_known(fields: dict) -> bool:
    """Whether ``fields`` holds the per-channel arrays' values (not their names)."""
    return not isinstance(fields.get("multipliers"), (str, CArray, type(None)))


def depthwise_pairs_strides(kernel: str, fields: dict) -> int:
    """The pair ring's stride_w of an in-place depthwise call that may take it (bit 0: 1,
    bit 1: 2; ek_conv_depthwise.c EK_DW_PAIRS_STRIDES: each stride's row loops in assembly)."""
    if not depthwise_maybe_quad(kernel, fields):
        return 0
    return {1: 1, 2: 2}.get(fields["stride_w"], 3)


def depthwise_pairs_in_c(kernel: str, fields: dict) -> bool:
    """Whether an in-place depthwise call may give the pair ring a channel whose rows run in C
    (dw_pairs_rows: one not in the clamp-free fast form, ek_conv_depthwise.c EK_DW_PAIRS_C):
    some channel off the fast requantisation or an activation range short of all of int8. True
    whenever unsure."""
    if not depthwise_maybe_quad(kernel, fields):
        return False
    return not _arrays_known(fields) or not requant_fast_full(fields)


def requant_fast_full(fields: dict) -> bool:
    """Whether every channel of a call takes the fast requantisation and its activation range
    is all of int8 (the clamp-free form the kernels' loops in assembly take)."""
    return (fields["act_min"] == -128 and fields["act_max"] == 127
            and requant_fast_everywhere(fields["multipliers"], fields["shifts"], 23,
                                        fields.get("requant_shortest", 2)))


def depthwise_surely_quad(kernel: str, fields: dict) -> bool:
    """Whether an in-place depthwise call certainly runs the four-channel ring on a DSP core
    (ek_conv_depthwise.c's dispatch: ring_order_safe, dw_quad_applies, and a ring that fits the
    stack, or the scratch plane whatever its alignment), so neither the one-channel ring nor
    the plane kernel is reached. False whenever unsure: that only keeps code linked."""
    if not kernel.startswith("ek_depthwise_conv2d_s") or not kernel.endswith("_inplace"):
        return False
    f = fields
    if (f["dilation_h"], f["dilation_w"]) != (1, 1) or f["k_h"] * f["k_w"] > DW_MAX_TAPS:
        return False
    if not (f["in_c"] % 4 == 0 and f["depth_multiplier"] == 1 and f["filter_offset"] == 0
            and f["k_h"] == 3 and f["k_w"] == 3 and f["stride_w"] in (1, 2)):
        return False
    if not ring_order_safe(f):
        return False
    words = _quad_ring_words(f)
    return words <= DW_QUAD_STACK_WORDS or 3 + 4 * words <= f["in_h"] * f["in_w"]


#: ek_conv.c's PW_S4_MAX_C_IN: the longest int4 row the two-pixel pointwise loop sums exactly
PW_S4_MAX_C_IN = 504


def pointwise_surely_pairs(kernel: str, fields: dict) -> bool:
    """Whether an in-place pointwise call runs the two-pixel loop on a DSP core (ek_conv.c's
    ``pw_pairs_apply``: the planner's 4 * C_in scratch, DSP arithmetic on raw bytes, whole
    words per pixel (int4: groups of 8 channels, at most PW_S4_MAX_C_IN), two channels), so
    the one-pixel loop is not reached."""
    if "_pointwise_inplace" not in kernel:
        return False
    c_in, int4 = fields["in_c"], "_s4" in kernel
    return (fields.get("wide_scratch", 0) == 1 and fields["filter_offset"] == 0
            and "effective_bias" in fields and fields["out_c"] >= 2 and c_in > 0
            and c_in % (8 if int4 else 4) == 0 and (not int4 or c_in <= PW_S4_MAX_C_IN))


def pointwise_int8_pairs(kernel: str, fields: dict) -> bool:
    """Whether a call runs the int8 two-pixel pointwise loop on DSP cores, the loop that reads
    a paired filter (the int4 one reads the packed TFLite order)."""
    return (kernel.startswith("ek_conv2d_s8_pointwise_inplace")
            and pointwise_surely_pairs(kernel, fields))


def constant_pairs(multipliers) -> bool:
    """Whether some pair of channels 2j, 2j + 1 has both multipliers 0: both output their
    clamped offset for every input (`edgekit.constant_channels`)."""
    m = np.asarray(multipliers, np.int64)
    m = m[:m.size // 2 * 2].reshape(-1, 2)
    return bool(((m[:, 0] == 0) & (m[:, 1] == 0)).any())


def pointwise_skips_pairs(kernel: str, fields: dict) -> bool:
    """Whether an int8 call of the two-pixel pointwise loop has constant pairs, whose MAC loop
    its assembly skips (ek_conv.c pw_paired_*_skip_asm, ``EK_PW_SKIP_PAIRS``). ``fields``: the
    arrays' values in place of their names."""
    multipliers = fields.get("multipliers")
    return (pointwise_int8_pairs(kernel, fields) and multipliers is not None
            and not isinstance(multipliers, str) and constant_pairs(multipliers))


def pointwise_paired(kernel: str, fields: dict) -> bool:
    """Whether an in-place pointwise call's filter is emitted in the paired layout (ek_conv.h
    ``paired_filter``): a call of the int8 two-pixel loop (`pointwise_int8_pairs`) with an even
    number of rows."""
    return pointwise_int8_pairs(kernel, fields) and fields["out_c"] % 2 == 0


def pair_pointwise_filter(weights: np.ndarray) -> np.ndarray:
    """OHWI [out_c, 1, 1, in_c] int8 -> the paired layout (ek_conv.h ``paired_filter``): per
    pair of rows, for each 4-byte column block, the first row's word, then the second's."""
    rows = weights.reshape(weights.shape[0], -1)
    out_c, in_c = rows.shape
    return rows.reshape(out_c // 2, 2, in_c // 4, 4).transpose(0, 2, 1, 3).reshape(-1)


@dataclass(frozen=True)
class CallConfig:
    """What one kernel call asks of ``ek_model_config.h``: the paths it takes and the buffers
    they need. `model_config_header` folds a model's calls into one header, so that a build
    sizes each buffer to its largest user and compiles out every path no call takes."""

    s4_taps: int = 0  # the int4 DSP path's window (taps)
    wide_taps: int = 0  # the widened path's window (words)
    wide_tail: bool = False  # (int8 widened path) a window no whole groups of 4: `wide_tail`
    fc_interleaved: bool = False  # the interleaved FULLY_CONNECTED layout
    inplace_depthwise: bool = False
    maybe_quad: bool = False  # (in-place depthwise) may run the four-channel ring on DSP
    pairs_wide: bool = False  # (in-place depthwise) `depthwise_pairs_wide`
    surely_pair_ring: bool = False  # (in-place depthwise) `depthwise_surely_pairs`
    surely_quad: bool = False  # (in-place depthwise) surely runs the four-channel ring on DSP
    pairs_strides: int = 0  # (in-place depthwise) `depthwise_pairs_strides`
    pairs_in_c: bool = False  # (in-place depthwise) `depthwise_pairs_in_c`
    quad_stack_words: int = 0  # (in-place depthwise) the ring it may keep on the stack (words)
    inplace_pointwise: bool = False
    surely_pairs: bool = False  # (in-place pointwise) surely runs the two-pixel loop on DSP
    pw_loops: int = 0  # (in-place pointwise) `pointwise_loops`
    pw_odd_s4: bool = False  # (in-place int4 pointwise) an odd out_c
    s8_via_s4: bool = False  # an int8 CONV_2D in the int4 translation unit (`S8_VIA_S4`)
    s4_plain: bool = False  # a call of ek_conv2d_s4
    #: (an int8 call of the two-pixel pointwise loop) whether its filter is paired; None: not one
    paired: bool | None = None
    s4_conv_pixels: bool = False  # the int4 one-pixel CONV_2D path (`s4_conv_pixels`)
    conv_pixels: bool = False  # the int8 one-pixel CONV_2D loop (`conv_pixels`)
    short_rows: int = 0  # readers of short windows from their rows (`short_rows_readers`)
    skip_pairs: bool = False  # (int8 two-pixel pointwise) `pointwise_skips_pairs`

    @classmethod
    def of_call(cls, kernel: str, fields: dict) -> "CallConfig":
        return cls(s4_taps=s4_window_taps(kernel, fields),
                   wide_taps=wide_window_taps(kernel, fields),
                   wide_tail=wide_tail(kernel, fields),
                   fc_interleaved=bool(fields.get("interleaved")),
                   inplace_depthwise="_inplace" in kernel and "depthwise" in kernel,
                   maybe_quad=depthwise_maybe_quad(kernel, fields),
                   pairs_wide=depthwise_pairs_wide(kernel, fields),
                   surely_pair_ring=depthwise_surely_pairs(kernel, fields),
                   surely_quad=depthwise_surely_quad(kernel, fields),
                   pairs_strides=depthwise_pairs_strides(kernel, fields),
                   pairs_in_c=depthwise_pairs_in_c(kernel, fields),
                   quad_stack_words=depthwise_quad_stack_words(kernel, fields),
                   inplace_pointwise="_pointwise_inplace" in kernel,
                   surely_pairs=pointwise_surely_pairs(kernel, fields),
                   pw_loops=pointwise_loops(kernel, fields),
                   pw_odd_s4=(kernel in POINTWISE_INPLACE_KERNELS and "_s4" in kernel
                              and fields["out_c"] % 2 == 1),
                   paired=(bool(fields.get("paired_filter"))
                           if pointwise_int8_pairs(kernel, fields) else None),
                   s4_conv_pixels=s4_conv_pixels(kernel, fields),
                   conv_pixels=conv_pixels(kernel, fields),
                   short_rows=short_rows_readers(kernel, fields),
                   skip_pairs=pointwise_skips_pairs(kernel, fields),
                   s8_via_s4=kernel == S8_VIA_S4, s4_plain=kernel == "ek_conv2d_s4")


def s8_via_s4_config(calls: list[CallConfig]) -> int:
    """ek_conv.c's EK_CONV_S8_VIA_S4: 0 when no call is `S8_VIA_S4`, 2 when ek_conv2d_s4 is
    called too (the two share one out-of-line convolution), else 1."""
    if not any(c.s8_via_s4 for c in calls):
        return 0
    return 2 if any(c.s4_plain for c in calls) else 1


def pointwise_paired_config(calls: list[CallConfig]) -> int:
    """ek_conv.c's EK_PW_PAIRED: 0 when no call's filter is paired, 1 when every int8 call the
    two-pixel loop takes is, 2 when some are and some are not (checked per call)."""
    paired = [c.paired for c in calls if c.paired is not None]
    if not any(paired):
        return 0
    return 1 if all(paired) else 2


def model_config_header(calls: list[CallConfig], pairs_path: bool,
                        requant_wide: bool = False) -> str:
    """``ek_model_config.h`` for a model of these ``calls``: the int4 window buffer sized to the
    model's largest window (a multiple of 16, so the odd window's half starts on a group), the
    widened path's buffer to its longest window (0: no call takes it, the path is compiled
    out); whether any call takes the short-window byte path (``pairs_path``), the interleaved
    FULLY_CONNECTED layout or the int8 or int4 one-pixel CONV_2D paths (each compiled out
    otherwise: flash); whether every in-place depthwise call surely runs the four-channel ring
    on DSP cores (the one-channel ring and plane kernels are then compiled out of DSP builds),
    and every in-place pointwise call the two-pixel loop (the one-pixel loop is then); whether
    some layer needs the wide requantisation modes (``requant_wide``, `requant_needs_wide`)."""
    size = max(16, -(-max((c.s4_taps for c in calls), default=0) // 16) * 16)
    wide_taps = max((c.wide_taps for c in calls), default=0)
    defines = (
        ("EK_S4_WINDOW_TAPS", size, "the int4 DSP path's window buffer (taps)"),
        ("EK_CONV_WIDE_TAPS", wide_taps, "the widened path's windows (words)"),
        ("EK_CONV_WIDE_TAIL", int(any(c.wide_tail for c in calls)),
         "int8: the widened path's windows of a part group"),
        ("EK_CONV_PAIRS_PATH", int(pairs_path), "the int8 short-window byte path"),
        ("EK_FC_INTERLEAVED", int(any(c.fc_interleaved for c in calls)),
         "the interleaved FC layout"),
        ("EK_DW_QUAD", int(any(c.maybe_quad for c in calls)),
         "DSP: the four-channel depthwise ring"),
        ("EK_DW_PAIRS_WIDE", int(any(c.pairs_wide for c in calls)),
         "DSP: the pair ring's wide-form loops"),
        ("EK_DW_ONLY_PAIRS", int(all(c.surely_pair_ring for c in calls if c.maybe_quad)),
         "DSP: the four-channel rings, the pair ring only"),
        ("EK_DW_ONLY_QUAD", int(all(c.surely_quad for c in calls if c.inplace_depthwise)),
         "DSP: in-place depthwise, quad only"),
        ("EK_DW_QUAD_STACK_WORDS", max([1] + [c.quad_stack_words for c in calls]),
         "DSP: the depthwise ring on the stack (words)"),
        ("EK_DW_PAIRS_STRIDES", functools.reduce(operator.or_, (c.pairs_strides for c in calls), 0),
         "DSP: the pair ring's strides (bit 0: 1, bit 1: 2)"),
        ("EK_DW_PAIRS_C", int(any(c.pairs_in_c for c in calls)), "DSP: the pair ring's rows in C"),
        ("EK_PW_ONLY_PAIRS", int(all(c.surely_pairs for c in calls if c.inplace_pointwise)),
         "DSP: in-place pointwise, pairs only"),
        ("EK_PW_LOOPS", functools.reduce(operator.or_, (c.pw_loops for c in calls), 0),
         "DSP: in-place pointwise, the clamped modes' loops in C"),
        ("EK_PW_ODD_S4", int(any(c.pw_odd_s4 for c in calls)),
         "DSP: in-place int4 pointwise, an odd last channel"),
        ("EK_PW_PAIRED", pointwise_paired_config(calls), "in-place pointwise: paired filters"),
        ("EK_PW_SKIP_PAIRS", int(any(c.skip_pairs for c in calls)),
         "in-place pointwise: constant channel pairs"),
        ("EK_S4_CONV_PIXELS", int(any(c.s4_conv_pixels for c in calls)),
         "int4: the one-pixel CONV_2D path"),
        ("EK_CONV_PIXELS", int(any(c.conv_pixels for c in calls)),
         "int8: the one-pixel CONV_2D loop"),
        ("EK_REQUANT_WIDE", int(requant_wide), "the wide fast requantisation modes"),
        ("EK_CONV_S8_VIA_S4", s8_via_s4_config(calls),
         "int8 CONV_2Ds in the int4 unit (2: beside ek_conv2d_s4)"),
        ("EK_CONV_SHORT_ROWS", functools.reduce(operator.or_, (c.short_rows for c in calls), 0),
         "two windows read from their rows"),
    )
    return ("/* Kernel configuration of this model: generated by edgekit.firmware.codegen. */\n"
            "#ifndef EK_MODEL_CONFIG_H\n#define EK_MODEL_CONFIG_H\n"
            + "".join(f"#define {name} {value} /* {why} */\n" for name, value, why in defines)
            + "#endif\n")


def weights_kernel(kernel: str, bits: str) -> str:
    """The kernel of the same op for ``bits`` (``s8`` or ``s4``) weights: the int4 kernels are
    the int8 ones with ``s4`` for ``s8`` in their names (ek_conv.h)."""
    return kernel if bits == "s8" else kernel.replace("_s8", "_s4")


#: ek_conv.c's EK_PAIR_MAX_LEN: the longest window (k_h * k_w * in_c bytes) of the two-pixel path
PAIR_MAX_LEN = 64
#: kernel -> the out-of-line two-pixel helper it calls on DSP cores when `pairs_path_applies`
DSP_PAIR_HELPERS = {"ek_conv2d_s8": "conv2d_pairs_plain", "ek_conv2d_add_s8": "conv2d_pairs_fused"}


def conv_pixels(kernel: str, fields: dict) -> bool:
    """Whether an int8 CONV_2D call (plain, or fused with its ADD) reaches ek_conv.c's one-pixel
    DSP loop (``conv_acc4_dsp``, compiled where some call does: EK_CONV_PIXELS): a zero filter
    offset, and neither the widened nor the short-window two-pixel path takes it."""
    return (kernel in WIDE_PATH_HELPERS and fields["filter_offset"] == 0
            and not wide_path_applies(fields) and not pairs_path_applies(fields))


def pairs_path_applies(fields: dict) -> bool:
    """Whether a CONV_2D with these ``ek_conv2d_params`` fields takes the DSP two-pixel path
    (ek_conv.c's ``conv_pairs_apply``): the stack bound leaves the path's helper out for a
    model where no call takes it, since its window buffer is the deepest frame of the kernels
    and would otherwise be counted for a path never run."""
    return (fields["filter_offset"] == 0 and "effective_bias" in fields
            and fields["dilation_w"] == 1
            and fields["k_h"] * fields["k_w"] * fields["in_c"] <= PAIR_MAX_LEN
            and not wide_path_applies(fields))  # the widened path is tried first


def effective_bias(weights: np.ndarray, bias: np.ndarray | None, input_offset: int) -> np.ndarray:
    """``bias[c] + input_offset * sum(weights[c])`` wrapped to int32, as the conv kernels'
    interior path accumulates (ek_conv.h ``effective_bias``)."""
    sums = weights.reshape(weights.shape[0], -1).astype(np.int64).sum(axis=1)
    value = sums * int(input_offset) + (0 if bias is None else bias.astype(np.int64))
    return ((value + 2**31) % 2**32) - 2**31


def emit_conv_add(ctx: EmitContext, conv_p, add_op: Op, add_p, fusion) -> OpCall:
    """A CONV_2D fused with the residual ADD that reads it (planner mode ``conv_add_skip``): one
    call computing the conv and adding the skip tensor, written over the skip tensor. The conv
    keeps its own params; the ADD's params are those of ``ek_add_s8`` in the ADD's input order,
    and ``conv_input_position`` says which ADD input the conv result is."""
    conv = emit_conv(ctx, conv_p, fused=True)
    add_ctx = EmitContext(ctx.graph, add_op, ctx._pointer, ctx._array_ref, None, None)
    add = emit_add_mul(add_ctx, add_p)
    x, w = ctx.op.inputs[0], ctx.op.inputs[1]
    bias = _bias(ctx.op, ctx.graph)
    bits = _require_weights(ctx.op, ctx.graph, w)
    call = OpCall(weights_kernel("ek_conv2d_add_s8", bits), "ek_conv2d_params", conv.fields,
                  conv.arrays,
                  [ctx.ptr(x), ctx.ptr(w), ctx.ptr(bias), ctx.ptr(fusion.skip),
                   ctx.ptr(fusion.output), str(fusion.conv_input_position)])
    call.extra_params = [("ek_add_params", "add_params", add.fields)]
    return call


def emit_fully_connected(ctx: EmitContext, p) -> OpCall:
    op, graph = ctx.op, ctx.graph
    x, w, out = op.inputs[0], op.inputs[1], op.outputs[0]
    _require_int8(op, graph, x, out)
    bits = _require_weights(op, graph, w)
    bias = _bias(op, graph)
    units, depth = graph[w].shape
    fields = {
        "rows": graph[x].size // depth, "depth": depth, "units": units,
        "input_offset": p.input_offset, "filter_offset": p.filter_offset,
        "output_offset": p.output_offset, "act_min": p.act_min, "act_max": p.act_max,
        "multipliers": ctx.array("multipliers"), "shifts": ctx.array("shifts"),
    }
    if p.rounding != "double":
        raise UnsupportedError(f"{where(op)}: only TFLite Micro's double rounding is generated")
    if ctx.inplace_mode in POINTWISE_MODES:
        call = _fully_connected_pointwise(ctx, p, fields)
        call.kernel = weights_kernel(call.kernel, bits)
        return call
    arrays = _per_channel(p)
    if requant_fast_everywhere(p.multipliers, kernel_shifts(p.multipliers, p.shifts), 23,
                               requant_shortest(weights_kernel("ek_fully_connected_s8", bits))):
        fields["requant_fast"] = 1
    bias_arg = ctx.ptr(bias)
    if p.filter_offset == 0 and p.input_offset != 0:
        # the input offset folded into the bias at build time: bias + sum((x + io) * w) equals
        # (bias + io * sum(w)) + sum(x * w) in the kernel's wrapping int32 accumulator, so every
        # path (portable, DSP, int4) gives the same bytes, and the DSP path multiplies raw bytes
        arrays.append(("int32_t", "effective_bias", effective_bias(
            graph[w].data, None if bias is None else graph[bias].data, p.input_offset)))
        fields["input_offset"] = 0
        bias_arg = ctx.array("effective_bias").name
    if not (fc_interleaves(bits, p.filter_offset, units, depth)
            and fc_interleave_pays(fields["rows"] * units * depth)):
        filter_arg = ctx.ptr(w)
    else:
        # the filter re-laid out for the DSP loop (ek_conv.h `interleaved`): the op's own
        # array replaces the tensor's, so flash holds the same bytes once, in another order
        arrays.append(("int8_t", "filter", interleave_fc_filter(graph[w].data)))
        fields["interleaved"] = 1
        filter_arg = ctx.array("filter").name
    args = [ctx.ptr(x), filter_arg, bias_arg, ctx.ptr(out)]
    return OpCall(weights_kernel("ek_fully_connected_s8", bits), "ek_fully_connected_params",
                  fields, arrays, args)


def requant_fast_everywhere(multipliers, shifts, longest_right_shift: int = 23,
                            shortest_right_shift: int = 2) -> bool:
    """Whether every channel takes the kernels' fast requantisation (ek_conv_common.h
    ``ek_requant_fast_applies``: multiplier >= 0 and a right shift of 2 to 23, from 1 in the
    int4 kernels: `requant_shortest`; with ``longest_right_shift`` 31, the wide form's
    ``ek_requant_wide_applies``)."""
    m, s = np.asarray(multipliers, np.int64), np.asarray(shifts, np.int64)
    return bool(m.size) and bool(((m >= 0) & (s <= -shortest_right_shift)
                                  & (s >= -longest_right_shift)).all())


def fc_interleaves(bits: str, filter_offset: int, units: int, depth: int) -> bool:
    """Whether a FULLY_CONNECTED's filter is emitted in the interleaved layout: int8 weights
    (the int4 kernel reads the packed TFLite order), filter offset 0 (the kernel multiplies raw
    bytes: the input offset is then folded into the bias), a group of four units at least and
    whole words per unit (LDM needs aligned words)."""
    return bits == "s8" and filter_offset == 0 and units >= 4 and depth % 4 == 0


#: the MACs from which a FULLY_CONNECTED takes the interleaved layout: its loop saves about 5
#: instructions per 16 MACs but links about 1.2 kB of code (ek_conv.c, compiled out of models
#: with no interleaved layer: EK_FC_INTERLEAVED), which a small classifier head does not repay
#: (kws's 768-MAC layer: about 240 instructions for the code's 2% of its flash)
FC_INTERLEAVE_MIN_MACS = 4096


def fc_interleave_pays(macs: int) -> bool:
    """Whether a FULLY_CONNECTED of ``macs`` MACs is worth the interleaved loop's code."""
    return macs >= FC_INTERLEAVE_MIN_MACS


def interleave_fc_filter(weights: np.ndarray) -> np.ndarray:
    """[units, depth] int8 -> ek_conv.h's interleaved layout: per group of four units, for
    each 4-byte column block, the four units' words in turn; the units % 4 last rows as they
    are."""
    units, depth = weights.shape
    grouped = units // 4 * 4
    groups = weights[:grouped].reshape(grouped // 4, 4, depth // 4, 4).transpose(0, 2, 1, 3)
    return np.concatenate([groups.reshape(-1), weights[grouped:].reshape(-1)])


def _fully_connected_pointwise(ctx: EmitContext, p, fc_fields: dict) -> OpCall:
    """A FULLY_CONNECTED over tokens in place (the planner's pointwise modes): the 1x1 CONV_2D
    it is, rows as pixels [1, 1, rows, K] -> [1, 1, rows, N], w [N, K] read as OHWI [N, 1, 1, K],
    through the in-place pointwise kernel. Bit-exact with the FC: the same accumulator (bias +
    sum((x + input_offset) * (w + filter_offset)), int32 wrapping), the same per-channel
    requantisation (the FC's multipliers are already one per unit) and clamp."""
    op, graph = ctx.op, ctx.graph
    w, out = op.inputs[1], op.outputs[0]
    bias = _bias(op, graph)
    rows, depth, units = fc_fields["rows"], fc_fields["depth"], fc_fields["units"]
    fields = {
        "in_h": 1, "in_w": rows, "in_c": depth, "out_h": 1, "out_w": rows, "out_c": units,
        "k_h": 1, "k_w": 1, "stride_h": 1, "stride_w": 1, "dilation_h": 1, "dilation_w": 1,
        "pad_top": 0, "pad_left": 0, "depth_multiplier": 1,
        **{k: fc_fields[k] for k in ("input_offset", "filter_offset", "output_offset",
                                      "act_min", "act_max", "multipliers", "shifts")},
    }
    arrays = _per_channel(p)
    if p.filter_offset == 0:  # the DSP path's raw-byte dot products, as emit_conv
        arrays.append(("int32_t", "effective_bias", effective_bias(
            graph[w].data, None if bias is None else graph[bias].data, p.input_offset)))
        fields["effective_bias"] = ctx.array("effective_bias")
    args = [ctx.ptr(out), ctx.ptr(w), ctx.ptr(bias), ctx.ptr(out), f"(int8_t *){ctx.scratch}"]
    return OpCall(INPLACE_MODE_KERNELS[ctx.inplace_mode], "ek_conv2d_params", fields, arrays,
                  args)


def broadcast_shape(a: tuple[int, ...], b: tuple[int, ...], out: tuple[int, ...]) -> dict:
    """``ek_broadcast_shape``: shapes right-aligned into `BROADCAST_DIMS` dims, element strides,
    0 for a broadcast dimension; ``broadcast`` 0 when both inputs have the output's shape."""
    size = int(np.prod(out, dtype=np.int64))
    if tuple(a) == tuple(out) and tuple(b) == tuple(out):
        return {"size": size, "broadcast": 0, "out_shape": [1] * BROADCAST_DIMS,
                "in1_strides": [0] * BROADCAST_DIMS, "in2_strides": [0] * BROADCAST_DIMS}
    if len(out) > BROADCAST_DIMS:
        raise UnsupportedError(f"broadcast over {len(out)} dimensions (the kernels take"
                               f" {BROADCAST_DIMS})")

    def padded(shape):
        return [1] * (BROADCAST_DIMS - len(shape)) + list(shape)

    def strides(shape):
        dims = padded(shape)
        result, step = [0] * BROADCAST_DIMS, 1
        for i in reversed(range(BROADCAST_DIMS)):
            result[i] = 0 if dims[i] == 1 else step
            step *= dims[i]
        return result

    return {"size": size, "broadcast": 1, "out_shape": padded(out),
            "in1_strides": strides(a), "in2_strides": strides(b)}


def emit_add_mul(ctx: EmitContext, p) -> OpCall:
    op, graph = ctx.op, ctx.graph
    a, b, out = op.inputs[0], op.inputs[1], op.outputs[0]
    names = [f for f in p.__dataclass_fields__ if f not in ("kind", "out_dtype", "out_shape")]
    fields = {name: getattr(p, name) for name in names}
    fields["shape"] = broadcast_shape(graph[a].shape, graph[b].shape, graph[out].shape)
    kind = "add" if op.kind == "ADD" else "mul"
    suffix = _suffix(op, graph, out)
    return OpCall(f"ek_{kind}_{suffix}", f"ek_{kind}_params", fields, [],
                  [ctx.ptr(a), ctx.ptr(b), ctx.ptr(out)])


def emit_pool(ctx: EmitContext, p) -> OpCall:
    op, graph = ctx.op, ctx.graph
    x, out = op.inputs[0], op.outputs[0]
    _, ih, iw, c = graph[x].shape
    _, oh, ow, _ = graph[out].shape
    fields = {"in_h": ih, "in_w": iw, "channels": c, "out_h": oh, "out_w": ow,
              "filter_h": p.filter[0], "filter_w": p.filter[1],
              "stride_h": p.stride[0], "stride_w": p.stride[1],
              "pad_top": p.pad[0], "pad_left": p.pad[2],
              "act_min": p.act_min, "act_max": p.act_max}
    kind = "avg_pool" if op.kind == "AVERAGE_POOL_2D" else "max_pool"
    suffix = _suffix(op, graph, out)
    return OpCall(f"ek_{kind}_{suffix}", "ek_pool_params", fields, [],
                  [ctx.ptr(x), ctx.ptr(out)])


def emit_softmax(ctx: EmitContext, p) -> OpCall:
    op, graph = ctx.op, ctx.graph
    x, out = op.inputs[0], op.outputs[0]
    _require_int8(op, graph, x, out)
    depth = graph[x].shape[-1]
    fields = {"input_multiplier": p.input_multiplier, "input_left_shift": p.input_left_shift,
              "diff_min": p.diff_min, "rows": graph[x].size // depth, "depth": depth}
    return OpCall("ek_softmax_s8", "ek_softmax_params", fields, [],
                  [ctx.ptr(x), ctx.ptr(out)])


def emit_reshape(ctx: EmitContext, p) -> OpCall:
    x, out = ctx.op.inputs[0], ctx.op.outputs[0]
    if ctx.inplace_mode == "reshape_view":
        return OpCall("", None, statement="/* in place (reshape_view): the output is the input's"
                                          " bytes; nothing to do */")
    nbytes = ctx.graph[out].nbytes
    return OpCall("", None, statement=f"memmove({ctx.ptr(out)}, {ctx.ptr(x)}, {nbytes});")


def _prepared_fields(p, *drop: str) -> dict:
    skip = {"kind", "out_dtype", "out_shape", *drop}
    return {name: getattr(p, name) for name in p.__dataclass_fields__ if name not in skip}


#: unary op kind -> (kernel stem, params type); QUANTIZE/DEQUANTIZE pick theirs by dtypes
_UNARY = {
    "RELU": ("ek_relu", "ek_requantize_params"),
    "RELU6": ("ek_relu6", "ek_clamp_params"),
    "HARD_SWISH": ("ek_hard_swish", "ek_hard_swish_params"),
    "LOGISTIC": ("ek_logistic", "ek_logistic_params"),
}


def emit_unary(ctx: EmitContext, p) -> OpCall:
    """Element-wise one-input ops: the Prepared fields verbatim plus the element count."""
    op, graph = ctx.op, ctx.graph
    x, out = op.inputs[0], op.outputs[0]
    fields = {**_prepared_fields(p), "size": graph[out].size}
    src, dst = _suffix(op, graph, x), _suffix(op, graph, out)
    if op.kind == "QUANTIZE":
        params = "ek_affine_quantize_params" if src == "f32" else "ek_requantize_params"
        kernel = f"ek_quantize_{src}_{dst}"
    elif op.kind == "DEQUANTIZE":
        params, kernel = "ek_dequantize_params", f"ek_dequantize_{src}_{dst}"
    else:
        stem, params = _UNARY[op.kind]
        kernel = f"{stem}_{dst}"
    return OpCall(kernel, params, fields, [], [ctx.ptr(x), ctx.ptr(out)])


def emit_norm(ctx: EmitContext, p) -> OpCall:
    """LAYER_NORM / RMS_NORM (ek_norm.h): prepare's per-channel integers as flash arrays."""
    op, graph = ctx.op, ctx.graph
    x, out = op.inputs[0], op.outputs[0]
    _require_int8(op, graph, x, out)
    arrays = [("int32_t", "multipliers", np.asarray(p.multipliers, dtype=np.int64)),
              ("int32_t", "shifts", np.asarray(p.shifts, dtype=np.int64)),
              ("int64_t", "offsets", np.asarray(p.offsets, dtype=np.int64))]
    fields = {"rows": graph[out].size // p.channels, "channels": p.channels,
              "input_zero_point": p.input_zero_point, "subtract_mean": int(p.subtract_mean),
              "eps_term": p.eps_term, **{suffix: ctx.array(suffix) for _, suffix, _ in arrays}}
    return OpCall(f"ek_{op.kind.lower()}_s8", "ek_norm_params", fields, arrays,
                  [ctx.ptr(x), ctx.ptr(out)])


def emit_silu(ctx: EmitContext, p) -> OpCall:
    """SILU (ek_norm.h): a lookup in prepare's 256-entry table."""
    op, graph = ctx.op, ctx.graph
    x, out = op.inputs[0], op.outputs[0]
    _require_int8(op, graph, x, out)
    return OpCall("ek_silu_s8", "ek_silu_params",
                  {"size": graph[out].size, "table": ctx.array("table")},
                  [("int8_t", "table", np.asarray(p.table, dtype=np.int64))],
                  [ctx.ptr(x), ctx.ptr(out)])


def _right_aligned(shape, dims: int, fill: int) -> list[int]:
    return [fill] * (dims - len(shape)) + list(shape)


def emit_mean(ctx: EmitContext, p) -> OpCall:
    op, graph = ctx.op, ctx.graph
    x, out = op.inputs[0], op.outputs[0]
    shape = graph[x].shape
    dims = 4
    if len(shape) > dims:
        raise UnsupportedError(f"{where(op)}: MEAN over a {len(shape)}-D input (the kernel takes 4)")
    lead = dims - len(shape)
    padded = _right_aligned(shape, dims, 1)
    reduced = {a + lead for a in p.axes}
    strides, step = [0] * dims, 1
    for d in reversed(range(dims)):
        if d not in reduced:
            strides[d] = step
            step *= padded[d]
    fields = {"in_shape": padded, "out_strides": strides, "out_size": graph[out].size,
              "num_elements": p.num_elements, "input_zero_point": p.input_zero_point,
              "output_zero_point": p.output_zero_point, "multiplier": p.multiplier,
              "shift": p.shift}
    return OpCall(f"ek_mean_{_suffix(op, graph, out)}", "ek_mean_params", fields, [],
                  [ctx.ptr(x), ctx.ptr(out), f"(int32_t *){ctx.scratch}"])


def emit_pad(ctx: EmitContext, p) -> OpCall:
    op, graph = ctx.op, ctx.graph
    x, out = op.inputs[0], op.outputs[0]
    if len(graph[x].shape) > 4:
        raise UnsupportedError(f"{where(op)}: PAD of a {len(graph[x].shape)}-D tensor (kernel: 4-D)")
    fields = {"in_shape": _right_aligned(graph[x].shape, 4, 1),
              "out_shape": _right_aligned(graph[out].shape, 4, 1),
              "before": _right_aligned([b for b, _ in p.paddings], 4, 0),
              "pad_value": p.pad_value}
    return OpCall(f"ek_pad_{_suffix(op, graph, out)}", "ek_pad_params", fields, [],
                  [ctx.ptr(x), ctx.ptr(out)])


def emit_concatenation(ctx: EmitContext, p) -> OpCall:
    """One ``ek_concatenation_copy`` per input, in input order (each copies its blocks)."""
    op, graph = ctx.op, ctx.graph
    out = graph[op.outputs[0]]
    axis = p.axis % len(out.shape)
    outer = int(np.prod(out.shape[:axis], dtype=np.int64))
    inner = int(np.prod(out.shape[axis + 1:], dtype=np.int64))
    item = out.dtype.numpy.itemsize
    call = OpCall("ek_concatenation_copy", None)
    lines, offset = [], 0
    for i, name in enumerate(op.inputs):
        block = graph[name].shape[axis] * inner * item
        fields = {"outer": outer, "in_block": block, "out_block": out.shape[axis] * inner * item,
                  "out_offset": offset}
        suffix = f"params{i}"
        call.extra_params.append(("ek_concatenation_params", suffix, fields))
        lines.append(f"ek_concatenation_copy(&{ctx.array(suffix).name}, {ctx.ptr(name)},"
                     f" {ctx.ptr(out.name)});")
        offset += block
    call.statement = "\n    ".join(lines)
    return call


def box_copy(whole_shape, box_shape, corner, itemsize: int) -> dict:
    """``ek_copy_rows`` fields for the box at ``corner`` of a batch-1 NHWC tensor: one run of
    whole pixels per row of the box. None when the box does not cover every channel (not one
    run per row)."""
    if (len(whole_shape) != 4 or len(box_shape) != 4 or whole_shape[0] != 1
            or box_shape[3] != whole_shape[3] or corner[3] != 0):
        return None
    _, _, width, channels = whole_shape
    _, rows, cols, _ = box_shape
    pixel = channels * itemsize
    return {"rows": rows, "row_bytes": cols * pixel,
            "offset": (corner[1] * width + corner[2]) * pixel, "stride": width * pixel}


def _box_fields(op: Op, graph: Graph, whole: str, box: str, corner) -> dict:
    t = graph[whole]
    fields = box_copy(t.shape, graph[box].shape, corner, t.dtype.numpy.itemsize)
    if fields is None:
        raise UnsupportedError(f"{where(op)}: the firmware copies boxes of whole pixels of a"
                               f" batch-1 NHWC tensor only ({box!r} {graph[box].shape} of"
                               f" {whole!r} {t.shape})")
    return fields


def emit_slice(ctx: EmitContext, p) -> OpCall:
    op, graph = ctx.op, ctx.graph
    x, out = op.inputs[0], op.outputs[0]
    box = _box_fields(op, graph, x, out, p.corner)
    fields = {"rows": box["rows"], "row_bytes": box["row_bytes"], "src_offset": box["offset"],
              "src_stride": box["stride"], "dst_offset": 0, "dst_stride": box["row_bytes"]}
    return OpCall("ek_copy_rows", "ek_copy_rows_params", fields, [], [ctx.ptr(x), ctx.ptr(out)])


def emit_insert_tile(ctx: EmitContext, p) -> OpCall:
    """The tile's rows into the box at ``origin``; the rest of the output is the base (in place
    under ``tile_insert``, else copied first) or, for the first tile, the zero point."""
    op, graph = ctx.op, ctx.graph
    base, tile, out = op.inputs[0], op.inputs[1], op.outputs[0]
    box = _box_fields(op, graph, out, tile, p.corner)
    fields = {"rows": box["rows"], "row_bytes": box["row_bytes"], "src_offset": 0,
              "src_stride": box["row_bytes"], "dst_offset": box["offset"],
              "dst_stride": box["stride"]}
    nbytes = graph[out].nbytes
    if base is None:
        before = f"memset({ctx.ptr(out)}, {p.fill}, {nbytes});\n    "
    elif ctx.inplace_mode == "tile_insert":
        before = ""
    else:
        before = f"memmove({ctx.ptr(out)}, {ctx.ptr(base)}, {nbytes});\n    "
    call = OpCall("ek_copy_rows", "ek_copy_rows_params", fields, [], [ctx.ptr(tile), ctx.ptr(out)])
    call.statement = (f"{before}ek_copy_rows(&{ctx.array('params').name}, {ctx.ptr(tile)},"
                      f" {ctx.ptr(out)});")
    return call


# --- transformer builtins (ek_transformer.h) ---------------------------------------------------

#: ek_transformer.h's EK_BMM_BATCH_DIMS and EK_TRANSPOSE_DIMS
BMM_BATCH_DIMS = 3
TRANSPOSE_DIMS = 6


def _batch_strides(batch: tuple[int, ...], out_batch: list[int], matrix: int) -> list[int]:
    """Element strides of an operand's batch dimensions right-aligned to the output's, 0 where
    the operand broadcasts (size 1)."""
    dims = _right_aligned(batch, len(out_batch), 1)
    strides, step = [0] * len(dims), matrix
    for d in reversed(range(len(dims))):
        strides[d] = 0 if dims[d] == 1 else step
        step *= dims[d]
    return strides


def _batch_matmul_fields(p, a_shape, b_shape, out_shape) -> dict:
    m, n = out_shape[-2:]
    k = a_shape[-2] if p.adj_x else a_shape[-1]
    out_batch = _right_aligned(out_shape[:-2], BMM_BATCH_DIMS, 1)
    return {"lhs_offset": p.lhs_offset, "rhs_offset": p.rhs_offset,
            "output_offset": p.output_offset, "multiplier": p.multiplier, "shift": p.shift,
            "adj_x": int(p.adj_x), "adj_y": int(p.adj_y), "rows": m, "cols": n, "depth": k,
            "out_batch": out_batch,
            "lhs_batch_strides": _batch_strides(a_shape[:-2], out_batch, m * k),
            "rhs_batch_strides": _batch_strides(b_shape[:-2], out_batch, k * n)}


def emit_batch_matmul(ctx: EmitContext, p) -> OpCall:
    op, graph = ctx.op, ctx.graph
    a, b, out = (graph[n] for n in (*op.inputs[:2], op.outputs[0]))
    _require_int8(op, graph, a.name, b.name, out.name)
    fields = _batch_matmul_fields(p, a.shape, b.shape, out.shape)
    return OpCall("ek_batch_matmul_s8", "ek_batch_matmul_params", fields, [],
                  [ctx.ptr(a.name), ctx.ptr(b.name), ctx.ptr(out.name)])


def emit_attention(ctx: EmitContext, p) -> OpCall:
    """ATTENTION (`edgekit.attention`): the unfused ops' params for one query row of one head
    (batch 1), looped over rows and heads by ek_attention_s8 with one score row in scratch."""
    op, graph = ctx.op, ctx.graph
    q, k, v, out = (graph[n] for n in (*op.inputs[:3], op.outputs[0]))
    _require_int8(op, graph, q.name, k.name, v.name, out.name)
    if ctx.scratch is None:
        raise UnsupportedError(f"{where(op)}: the plan gives ATTENTION no scratch row")
    tq, d, tk, dv = q.shape[-2], q.shape[-1], k.shape[-2], v.shape[-1]
    fields = {"batch": q.size // (tq * d), "q_rows": tq, "kv_rows": tk, "depth": d,
              "v_cols": dv, "masked": int(p.mask is not None)}
    qk = _batch_matmul_fields(p.qk, (1, d), (tk, d), (1, tk))
    pv = _batch_matmul_fields(p.pv, (1, tk), (tk, dv), (1, dv))
    sm = p.softmax
    softmax = {"input_multiplier": sm.input_multiplier, "input_left_shift": sm.input_left_shift,
               "diff_min": sm.diff_min, "rows": 1, "depth": tk}
    mask = op.inputs[3] if len(op.inputs) > 3 else None
    add = {"shape": broadcast_shape((1, tk), (1, tk), (1, tk))}  # unread without a mask
    if p.mask is not None:
        _require_int8(op, graph, mask)
        add.update({f: getattr(p.mask, f) for f in p.mask.__dataclass_fields__
                    if f not in ("kind", "out_dtype", "out_shape")})
    call = OpCall("ek_attention_s8", "ek_attention_params", fields, [],
                  [ctx.ptr(q.name), ctx.ptr(k.name), ctx.ptr(mask), ctx.ptr(v.name),
                   ctx.ptr(out.name), f"(int8_t *){ctx.scratch}"])
    call.extra_params = [("ek_batch_matmul_params", "qk", qk), ("ek_add_params", "add", add),
                         ("ek_softmax_params", "softmax", softmax),
                         ("ek_batch_matmul_params", "pv", pv)]
    return call


def emit_transpose(ctx: EmitContext, p) -> OpCall:
    op, graph = ctx.op, ctx.graph
    x, out = graph[op.inputs[0]], graph[op.outputs[0]]
    if len(x.shape) > TRANSPOSE_DIMS or x.dtype.numpy.itemsize not in (1, 2, 4):
        raise UnsupportedError(f"{where(op)}: TRANSPOSE of a {len(x.shape)}-D {x.dtype.value}"
                               f" tensor (the kernel takes up to {TRANSPOSE_DIMS}-D, 1/2/4-byte"
                               " elements)")
    in_strides = [int(np.prod(x.shape[d + 1:], dtype=np.int64)) for d in range(len(x.shape))]
    fields = {"out_shape": _right_aligned(out.shape, TRANSPOSE_DIMS, 1),
              "in_strides": _right_aligned([in_strides[d] for d in p.perm], TRANSPOSE_DIMS, 0),
              "size": out.size, "elem_bytes": x.dtype.numpy.itemsize}
    return OpCall("ek_transpose", "ek_transpose_params", fields, [],
                  [ctx.ptr(x.name), ctx.ptr(out.name)])


def emit_gather(ctx: EmitContext, p) -> OpCall:
    op, graph = ctx.op, ctx.graph
    table, idx, out = graph[op.inputs[0]], graph[op.inputs[1]], graph[op.outputs[0]]
    if idx.dtype != DType.INT32:
        raise UnsupportedError(f"{where(op)}: indices {idx.name!r} must be int32")
    shape = table.shape
    fields = {"outer": int(np.prod(shape[:p.axis], dtype=np.int64)), "axis_size": p.axis_size,
              "inner_bytes": int(np.prod(shape[p.axis + 1:], dtype=np.int64))
              * table.dtype.numpy.itemsize,
              "num_indices": idx.size, "fill": p.fill if table.dtype == DType.INT8 else 0}
    return OpCall("ek_gather", "ek_gather_params", fields, [],
                  [ctx.ptr(table.name), ctx.ptr(idx.name), ctx.ptr(out.name)])


def emit_lut(ctx: EmitContext, p) -> OpCall:
    op, graph = ctx.op, ctx.graph
    x, out = op.inputs[0], op.outputs[0]
    _require_int8(op, graph, x, out)
    fields = {"size": graph[out].size, "lut": [int(v) for v in p.lut]}
    return OpCall("ek_lut_s8", "ek_lut_params", fields, [], [ctx.ptr(x), ctx.ptr(out)])


EMITTERS: dict[str, Callable[[EmitContext, object], OpCall]] = {
    "RELU": emit_unary,
    "RELU6": emit_unary,
    "HARD_SWISH": emit_unary,
    "LOGISTIC": emit_unary,
    "QUANTIZE": emit_unary,
    "DEQUANTIZE": emit_unary,
    "MEAN": emit_mean,
    "PAD": emit_pad,
    "CONCATENATION": emit_concatenation,
    "CONV_2D": emit_conv,
    "DEPTHWISE_CONV_2D": emit_conv,
    "FULLY_CONNECTED": emit_fully_connected,
    "ADD": emit_add_mul,
    "MUL": emit_add_mul,
    "AVERAGE_POOL_2D": emit_pool,
    "MAX_POOL_2D": emit_pool,
    "SOFTMAX": emit_softmax,
    "RESHAPE": emit_reshape,
    "SLICE": emit_slice,
    "INSERT_TILE": emit_insert_tile,
    "BATCH_MATMUL": emit_batch_matmul,
    "ATTENTION": emit_attention,
    "TRANSPOSE": emit_transpose,
    "GATHER": emit_gather,
    "GELU": emit_lut,
    "LAYER_NORM": emit_norm, "RMS_NORM": emit_norm, "SILU": emit_silu,
}


#: in-place modes (`edgekit.planner`) the emitters implement, and the kernel each needs
INPLACE_MODE_KERNELS = {
    "reshape_view": None,
    "elementwise": None,
    "depthwise_channelwise": "ek_depthwise_conv2d_s8_inplace",
    "pointwise_inplace": "ek_conv2d_s8_pointwise_inplace",
    "pointwise_inplace_backward": "ek_conv2d_s8_pointwise_inplace_backward",
    "conv_add_skip": "ek_conv2d_add_s8",
    # the plain kernel over a dying input, its output starting `lead` bytes before it: exact
    # because ek_conv2d_s8 / ek_depthwise_conv2d_s8 store output pixels in increasing row-major
    # order (the planner's contract, edgekit.planner docstring)
    "conv_sliding": "ek_conv2d_s8",
    "tile_insert": None,
}


#: op kinds whose emitter implements each in-place mode (anything else is refused: a planner
#: mode the generator does not know must never be compiled as an out-of-place call)
INPLACE_MODE_OPS = {
    "reshape_view": frozenset({"RESHAPE"}),
    # SOFTMAX and the transformer kinds: their kernels read element i (a row's statistics,
    # for the row ops) before writing it (edgekit.planner docstring); a kind listed here
    # without an emitter is refused earlier by codegen.check_supported
    "elementwise": frozenset({"ADD", "MUL", "RELU", "RELU6", "HARD_SWISH", "LOGISTIC",
                              "QUANTIZE", "DEQUANTIZE", "SOFTMAX",
                              "GELU", "SILU", "LAYER_NORM", "RMS_NORM"}),
    "depthwise_channelwise": frozenset({"DEPTHWISE_CONV_2D"}),
    # a FULLY_CONNECTED in place runs through the pointwise conv kernel (its rows as pixels)
    "pointwise_inplace": frozenset({"CONV_2D", "FULLY_CONNECTED"}),
    "pointwise_inplace_backward": frozenset({"CONV_2D", "FULLY_CONNECTED"}),
    "conv_sliding": frozenset({"CONV_2D", "DEPTHWISE_CONV_2D"}),
    "tile_insert": frozenset({"INSERT_TILE"}),
}


def check_inplace_mode(op: Op, mode: str | None) -> None:
    """Raise `UnsupportedError` unless the emitter of ``op`` implements ``mode``."""
    if mode is not None and op.kind not in INPLACE_MODE_OPS.get(mode, ()):
        raise UnsupportedError(f"{where(op)}: the code generator does not implement in-place"
                               f" mode {mode!r} for {op.kind}; plan with"
                               " edgekit.firmware.codegen.firmware_plan")


def supported_kinds() -> frozenset[str]:
    """Op kinds the code generator can emit today."""
    return frozenset(EMITTERS)
