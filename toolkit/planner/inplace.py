"""The table of in-place modes: when an op may write its output over one of its inputs.

An in-place mode lets the output of an op share the arena bytes of one input (the output starts at
the input's offset, or ``lead_bytes`` before it). The planner only uses a mode at a step where
that input *dies* (no later op reads it and it is not a graph output) -- that part depends on the
schedule and is checked by the planner. Each mode here states the *static* conditions (kinds,
shapes, dtypes, attributes) under which the mode is exact, the scratch memory its kernel needs,
and what the kernel must do so that it is safe. The full semantics live in the `edgekit.planner`
module docstring; the code generator implements exactly these contracts.

Modes: ``reshape_view``, ``elementwise``, ``depthwise_channelwise``, ``pointwise_inplace`` and
``pointwise_inplace_backward`` (1x1 convolutions and fully-connected layers over tokens, pixel
by pixel through a small scratch),
``conv_sliding`` (any convolution or depthwise convolution, plain kernel, output a small lead
before its input), ``tile_insert`` (a patch schedule's INSERT_TILE writes its tile into the
feature map it extends). The conv fused with its residual ADD (``conv_add_skip``) spans two ops and
lives in `edgekit.planner.fusion`. A new mode is one more `InplaceMode` in `INPLACE_MODES`: a
name, the op kinds, a function returning the input positions the output may overwrite, a
scratch-size function, and optionally a lead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgekit.ir import Graph, Op

#: element-wise op kinds whose output element i depends only on input element i (and on
#: broadcast operands)
ELEMENTWISE_KINDS = frozenset({
    "ADD", "MUL", "RELU", "RELU6", "LOGISTIC", "HARD_SWISH", "QUANTIZE", "DEQUANTIZE",
})

#: element-wise lookup-table ops of the transformers (their kernels read x[i] before writing
#: y[i]); kept out of ELEMENTWISE_KINDS, which patch schedules also use
LUT_KINDS = frozenset({"GELU", "SILU"})

#: ops whose output row (last axis) depends on the whole input row at the same index: exact in
#: place when the kernel finishes every statistics pass over a row (max, sums, mean, variance)
#: before it writes any element of that row, and its writing pass reads x[i] before y[i]
ROWWISE_KINDS = frozenset({"SOFTMAX", "LAYER_NORM", "RMS_NORM"})

#: the kinds of the ``elementwise`` in-place mode
ELEMENTWISE_INPLACE_KINDS = ELEMENTWISE_KINDS | LUT_KINDS | ROWWISE_KINDS


@dataclass(frozen=True)
class InplaceMode:
    """One way an op may overwrite an input with its output.

    ``inputs(op, graph)`` returns the positions in ``op.inputs`` whose buffer the output may take
    (static conditions only, best candidate first); ``scratch_bytes(op, graph)`` is the per-op
    temporary memory the in-place kernel needs (0 for none).
    """

    name: str
    kinds: frozenset[str]
    inputs: Callable[[Op, Graph], list[int]]
    scratch_bytes: Callable[[Op, Graph], int]
    semantics: str
    scratch_alignment: int = 1
    #: bytes the output starts BEFORE the input it overwrites (0: at the input's offset); the
    #: planner rounds it up to the tensors' alignment
    lead_bytes: Callable[[Op, Graph], int] | None = None


def _itemsize(graph: Graph, name: str) -> int:
    return graph[name].dtype.numpy.itemsize


def _no_scratch(op: Op, graph: Graph) -> int:
    return 0


def _reshape_inputs(op: Op, graph: Graph) -> list[int]:
    # The output is the same bytes as the input: a pure view, whatever the shapes.
    x, out = op.inputs[0], op.outputs[0]
    if x is None or graph[x].is_constant or graph[x].nbytes != graph[out].nbytes:
        return []
    return [0]


def _elementwise_inputs(op: Op, graph: Graph) -> list[int]:
    # Exact when output element i occupies exactly the bytes of input element i: same shape (the
    # input is not broadcast) and same element size (int8->int8 requantize, not int8->float32).
    out = graph[op.outputs[0]]
    if out.dtype.bits < 8:  # int4 packs two elements per byte: element i is not addressable alone
        return []
    found = []
    for position, name in enumerate(op.inputs):
        if name is None or name in (op.inputs[p] for p in found):
            continue
        t = graph[name]
        if (not t.is_constant and t.shape == out.shape and t.dtype.bits >= 8
                and _itemsize(graph, name) == out.dtype.numpy.itemsize):
            found.append(position)
    return found


def _depthwise_inputs(op: Op, graph: Graph) -> list[int]:
    # Channel by channel (TinyEngine): exact when output channel c depends only on input channel c
    # (depth multiplier 1), batch 1, equal element sizes, and the output plane is no larger than
    # the input plane, so that output element (p, c) lands on input slot (p, c) with p < H*W,
    # which belongs to channel c and was already copied to the scratch plane.
    x_name = op.inputs[0]
    if x_name is None:
        return []
    x, out = graph[x_name], graph[op.outputs[0]]
    if x.is_constant or len(x.shape) != 4 or len(out.shape) != 4:
        return []
    n, h, w, c = x.shape
    on, oh, ow, oc = out.shape
    if (n != 1 or on != 1 or oc != c or op.attrs.get("depth_multiplier", 1) != 1
            or x.dtype.bits < 8 or out.dtype.bits < 8
            or _itemsize(graph, x_name) != out.dtype.numpy.itemsize or oh * ow > h * w):
        return []
    return [0]


def _depthwise_scratch(op: Op, graph: Graph) -> int:
    # One input channel plane (H*W elements), unpadded: the kernel treats out-of-range taps as
    # padding instead of storing a padded copy.
    x = graph[op.inputs[0]]
    return x.shape[1] * x.shape[2] * x.dtype.numpy.itemsize


def _source_pixels(out_h: int, out_w: int, in_w: int, stride_h: int, stride_w: int) -> np.ndarray:
    """src(p) for every output pixel p (row-major) of a 1x1 unpadded convolution: the input
    pixel it reads. Increasing in p."""
    rows, cols = np.divmod(np.arange(out_h * out_w, dtype=np.int64), out_w)
    return rows * stride_h * in_w + cols * stride_w


def pointwise_fits_in_place(out_h: int, out_w: int, out_c: int, in_w: int, in_c: int,
                            stride_h: int, stride_w: int, *, backward: bool = False) -> bool:
    """True when a 1x1 convolution whose output starts at its input's offset, computing one
    output pixel at a time from a copy of its input pixel, never writes over an input pixel it
    still has to read. Exact: false means that order would read a clobbered byte.

    Forward (output pixels in increasing order): before pixel p, bytes ``[0, p*C_out)`` are
    written and pixels ``src(p), src(p+1), ...`` are still to read, the lowest being src(p):
    ``p*C_out <= src(p)*C_in`` for every p >= 1. Backward (decreasing order, for outputs wider
    than the input): before pixel p-1, bytes ``[p*C_out, P*C_out)`` are written and no input
    pixel src(q), q < p, may overlap them.
    """
    src = _source_pixels(out_h, out_w, in_w, stride_h, stride_w)
    pixels = src.size
    if pixels <= 1:
        return True
    p = np.arange(1, pixels, dtype=np.int64)
    if not backward:
        return bool(np.all(p * out_c <= src[1:] * in_c))
    # the first input pixel ending past p*C_out (src(q) >= p*C_out // C_in) must be one already
    # read (q >= p) or start at or beyond the written bytes' end P*C_out
    first = np.searchsorted(src, (p * out_c) // in_c, side="left")
    pending = first < p
    starts = src[np.minimum(first, pixels - 1)] * in_c
    return bool(not np.any(pending & (starts < pixels * out_c)))


def _token_fc_shape(op: Op, graph: Graph) -> tuple[int, ...] | None:
    """A FULLY_CONNECTED as a 1x1 convolution over its rows (tokens): x [..., K] is T = size/K
    "pixels" of K channels, the output T pixels of N channels, in the same row-major order
    whatever the shapes (keep_num_dims or not), and w [N, K] is the OHWI filter [N, 1, 1, K].
    int8 activations and weights, int32 bias or none (the pointwise kernels' types), T >= 2."""
    x_name = op.inputs[0]
    w_name = op.inputs[1] if len(op.inputs) > 1 else None
    if x_name is None or w_name is None:
        return None
    x, w, out = graph[x_name], graph[w_name], graph[op.outputs[0]]
    bias = op.inputs[2] if len(op.inputs) > 2 else None
    if x.is_constant or len(w.shape) != 2 or w.dtype.bits != 8 or x.dtype.bits != 8:
        return None
    if (out.dtype.bits != 8 or _itemsize(graph, x_name) != 1 or out.dtype.numpy.itemsize != 1
            or (bias is not None and graph[bias].dtype.bits != 32)):
        return None
    units, depth = w.shape
    if depth == 0 or x.size % depth or out.size != (x.size // depth) * units:
        return None
    tokens = x.size // depth
    if tokens < 2:  # one row never pays: its 2*K scratch exceeds the min(K, N) bytes shared
        return None
    return 1, tokens, units, tokens, depth, 1, 1


def pointwise_shape(op: Op, graph: Graph) -> tuple[int, ...] | None:
    """(out_h, out_w, out_c, in_w, in_c, stride_h, stride_w) of a 1x1, unpadded, batch-1 int8
    CONV_2D whose input is an activation, or of a FULLY_CONNECTED over tokens
    (`_token_fc_shape`); None for any other op."""
    if op.kind == "FULLY_CONNECTED":
        return _token_fc_shape(op, graph)
    x_name = op.inputs[0]
    w_name = op.inputs[1] if len(op.inputs) > 1 else None
    if x_name is None or w_name is None:
        return None
    x, w, out = graph[x_name], graph[w_name], graph[op.outputs[0]]
    if x.is_constant or len(x.shape) != 4 or len(out.shape) != 4 or len(w.shape) != 4:
        return None
    n, _, in_w, in_c = x.shape
    on, out_h, out_w, out_c = out.shape
    stride_h, stride_w = op.attrs.get("stride", (1, 1))
    if (n != 1 or on != 1 or tuple(w.shape[1:]) != (1, 1, in_c) or w.shape[0] != out_c
            or any(op.attrs.get("pad", (0, 0, 0, 0))) or x.dtype.bits != 8
            or out.dtype.bits != 8 or _itemsize(graph, x_name) != 1
            or out.dtype.numpy.itemsize != 1):
        return None
    return out_h, out_w, out_c, in_w, in_c, stride_h, stride_w


def _pointwise_inputs(op: Op, graph: Graph) -> list[int]:
    # A 1x1 convolution computes output pixel p from input pixel src(p) alone. Processing pixels
    # in increasing order, copying each (group of) input pixel(s) to the scratch before writing
    # its outputs, is exact when the outputs written so far never reach an input pixel still
    # to be read (`pointwise_fits_in_place`): always true when the output is no wider than the
    # input, and for many strided convolutions that widen it (resnet's 1x1 stride-2 16->32).
    shape = pointwise_shape(op, graph)
    return [0] if shape and pointwise_fits_in_place(*shape) else []


def _pointwise_backward_inputs(op: Op, graph: Graph) -> list[int]:
    # The mirror image for outputs wider than the input (MobileNet's expanding 1x1 layers):
    # the output starts at the input's offset and runs past its end; pixels go in decreasing
    # order, so the output's tail is written where no input is, and each write lands at or
    # beyond the end of every input pixel still to be read. The block grows to the output's size.
    shape = pointwise_shape(op, graph)
    return [0] if shape and pointwise_fits_in_place(*shape, backward=True) else []


def _pointwise_scratch(op: Op, graph: Graph) -> int:
    # A pixel is the filter's depth: C_in of a CONV_2D, K of a FULLY_CONNECTED. The CONV_2D
    # kernel (ek_conv.c, pw_inplace_pairs) widens two input pixels to int16 lanes once per pair,
    # so its inner loop multiplies them without unpacking: 4 bytes per channel. A token FC runs
    # the same kernel with its params' ``wide_scratch`` left 0 (op_emitters), so it copies one
    # int8 pixel at a time: 2 bytes per channel is enough, and small token layers stay in place.
    depth = graph[op.inputs[1]].shape[-1]
    return (4 if op.kind == "CONV_2D" else 2) * depth


#: kinds the pointwise modes take: 1x1 convolutions, and fully-connected layers over tokens
#: (MCUFormer's token overwriting: a 1x1 convolution over T "pixels")
POINTWISE_KINDS = frozenset({"CONV_2D", "FULLY_CONNECTED"})

#: the in-place mode whose output starts before its input (see `sliding_lead_bytes`)
SLIDING_MODE = "conv_sliding"

#: kinds whose plain kernel computes output pixels in increasing row-major order, each from its
#: own window (DEPTHWISE: every channel's window, so the same bytes-per-pixel argument holds)
SLIDING_KINDS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D"})

#: a pixel that reads no input byte (its window lies in the padding) constrains nothing
_NO_READ = np.iinfo(np.int64).max // 4


def _first_valid_tap(out_index: np.ndarray, stride: int, pad: int, dilation: int, kernel: int,
                     size: int) -> np.ndarray:
    """Per output row (or column): the first input row (column) its window reads inside the
    input, or -1 when every tap falls in the padding."""
    first = out_index * stride - pad
    skip = np.where(first < 0, -(first // dilation), 0)  # taps before row 0: ceil(-first/d)
    row = first + skip * dilation
    valid = (skip < kernel) & (row < size)
    return np.where(valid, row, -1)


def sliding_lead_bytes(op: Op, graph: Graph) -> int | None:
    """How many bytes before its input a CONV_2D's (or DEPTHWISE_CONV_2D's) output must start
    so that the convolution can run over its own input (`conv_sliding`); None when the op does
    not qualify.

    The kernel goes through output pixels in increasing row-major order and writes pixel p's
    outputs at ``out + p*C_out``, where ``out = in - lead``. Pixel p and every later pixel only
    read input pixels at index >= m(p) = the smallest first-tap index over pixels q >= p. So
    writing pixel p can clobber nothing still needed iff ``(p+1)*C_out - lead <= m(p)*C_in``;
    the lead is the largest ``(p+1)*C_out - m(p)*C_in`` (at least 0). Strict on purpose: pixel
    p's own window stays intact while its outputs are written, so the channel loop may read
    the input again after storing a channel.
    """
    x_name = op.inputs[0]
    w_name = op.inputs[1] if len(op.inputs) > 1 else None
    if op.kind not in SLIDING_KINDS or x_name is None or w_name is None:
        return None
    x, w, out = graph[x_name], graph[w_name], graph[op.outputs[0]]
    if x.is_constant or len(x.shape) != 4 or len(out.shape) != 4 or len(w.shape) != 4:
        return None
    n, in_h, in_w, in_c = x.shape
    on, out_h, out_w, out_c = out.shape
    if (n != 1 or on != 1 or x.dtype.bits != 8 or out.dtype.bits != 8
            or _itemsize(graph, x_name) != 1 or out.dtype.numpy.itemsize != 1):
        return None
    stride_h, stride_w = op.attrs.get("stride", (1, 1))
    dilation_h, dilation_w = op.attrs.get("dilation", (1, 1))
    pad_top, _, pad_left, _ = op.attrs.get("pad", (0, 0, 0, 0))
    rows = _first_valid_tap(np.arange(out_h), stride_h, pad_top, dilation_h, w.shape[1], in_h)
    cols = _first_valid_tap(np.arange(out_w), stride_w, pad_left, dilation_w, w.shape[2], in_w)
    first = np.where((rows[:, None] >= 0) & (cols[None, :] >= 0),
                     rows[:, None] * in_w + cols[None, :], _NO_READ).reshape(-1)
    later_min = np.minimum.accumulate(first[::-1])[::-1]  # m(p)
    written = np.arange(1, first.size + 1, dtype=np.int64) * out_c
    return int(max(0, np.max(written - later_min * in_c)))


def _sliding_inputs(op: Op, graph: Graph) -> list[int]:
    # Worth it only when the output does not have to start a whole output before the input.
    lead = sliding_lead_bytes(op, graph)
    if lead is None or lead >= graph[op.outputs[0]].nbytes:
        return []
    return [0]


def _tile_insert_inputs(op: Op, graph: Graph) -> list[int]:
    # The base feature map becomes the output: the tile's bytes are copied into its box and
    # nothing else moves. Only when the base exists (the first tile of a schedule has none).
    base = op.inputs[0]
    if base is None or graph[base].is_constant or graph[base].nbytes != graph[op.outputs[0]].nbytes:
        return []
    return [0]


def _sliding_lead(op: Op, graph: Graph) -> int:
    lead = sliding_lead_bytes(op, graph)
    return 0 if lead is None else lead


INPLACE_MODES: tuple[InplaceMode, ...] = (
    InplaceMode(
        name="reshape_view",
        kinds=frozenset({"RESHAPE"}),
        inputs=_reshape_inputs,
        scratch_bytes=_no_scratch,
        semantics="The output is the input's bytes reinterpreted; the kernel copies nothing.",
    ),
    InplaceMode(
        name="elementwise",
        kinds=ELEMENTWISE_INPLACE_KINDS,
        inputs=_elementwise_inputs,
        scratch_bytes=_no_scratch,
        semantics=("For every element i the kernel reads element i of every input (and any "
                   "broadcast operand) before it writes output element i, and never reads an "
                   "element of the aliased input after writing the output element at that index. "
                   "Row ops (SOFTMAX, LAYER_NORM, RMS_NORM): every statistics pass over a row "
                   "ends before any element of that row is written."),
    ),
    InplaceMode(
        name="depthwise_channelwise",
        kinds=frozenset({"DEPTHWISE_CONV_2D"}),
        inputs=_depthwise_inputs,
        scratch_bytes=_depthwise_scratch,
        semantics=("For each channel c in turn: copy input channel c (H*W elements, stride C) into "
                   "the scratch plane, then compute output channel c from the scratch plane only "
                   "(taps outside the plane are padding) and write it at stride C from offset c."),
    ),
    InplaceMode(
        name="pointwise_inplace",
        kinds=POINTWISE_KINDS,
        inputs=_pointwise_inputs,
        scratch_bytes=_pointwise_scratch,
        semantics=("Output pixels in increasing order, in groups of one or two consecutive "
                   "pixels: copy the group's input pixels into the scratch, then compute and write "
                   "all output channels of the group; never read the input of a written group."),
        scratch_alignment=4,  # word loads of the copied pixels
    ),
    InplaceMode(
        name="pointwise_inplace_backward",
        kinds=POINTWISE_KINDS,
        inputs=_pointwise_backward_inputs,
        scratch_bytes=_pointwise_scratch,
        semantics=("As pointwise_inplace with output pixels in DECREASING order (groups of one "
                   "or two consecutive pixels, each group's input pixels copied to the scratch "
                   "before its outputs are written); the output may be larger than the input."),
        scratch_alignment=4,
    ),
    InplaceMode(
        name=SLIDING_MODE,
        kinds=SLIDING_KINDS,
        inputs=_sliding_inputs,
        scratch_bytes=_no_scratch,
        semantics=("The plain convolution kernel, output pixels in increasing row-major order, "
                   "each pixel's outputs written at out + p*C_out after (or while) reading its "
                   "window; the output starts `lead` bytes before the input."),
        lead_bytes=_sliding_lead,
    ),
    InplaceMode(
        name="tile_insert",
        kinds=frozenset({"INSERT_TILE"}),
        inputs=_tile_insert_inputs,
        scratch_bytes=_no_scratch,
        semantics=("The output is the base feature map: copy the tile's rows into the box at "
                   "`origin` and leave every other byte as it is."),
    ),
)

MODES_BY_NAME = {mode.name: mode for mode in INPLACE_MODES}


def inplace_candidates(op: Op, graph: Graph) -> list[tuple[InplaceMode, int]]:
    """The (mode, input position) pairs under which ``op`` may overwrite an input, best first.

    Static conditions only; the planner additionally requires that the input dies at this op.
    Ops with several outputs are never in place.
    """
    if len(op.outputs) != 1:
        return []
    return [(mode, position) for mode in INPLACE_MODES if op.kind in mode.kinds
            for position in mode.inputs(op, graph)]
