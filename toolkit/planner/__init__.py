"""The memory planner: one static arena for a graph's activations, and the peak-SRAM number the
search, the firmware and the reports share.

Usage::

    from edgekit.planner import plan
    p = plan(graph)                 # strategy="best", alignment=4, inplace=True, reorder=True
    p.arena_bytes, p.lower_bound_bytes, p.buffers["x"].offset, p.schedule, p.profile
    p.check()                       # raises PlanError if any two live buffers overlap

What the arena holds: every non-constant tensor (the graph's inputs and outputs too: they live in
SRAM as a camera frame or an audio window would) and every op's scratch buffer. Constants live
in flash and are not planned.

Steps and lifetimes: the plan runs the ops in ``plan.schedule`` order (a topological order, maybe
not the graph's: see reordering). Step s is the s-th op run. A tensor is live from the step that
writes it (step 0 for graph inputs) to the last step that reads it (the last step for graph
outputs), inclusive; during a step, its inputs and outputs are all live. Scratch is live during
its op's step only. ``lower_bound_bytes`` is the most bytes live at any one step under this
schedule and these in-place choices (no arena can be smaller); ``profile`` gives that count for
every step.

Sizes and alignment: a tensor takes ``nbytes`` rounded up to its alignment, which is
``max(alignment, element size)`` (so int16/int32/float32 tensors are naturally aligned even with
``alignment=1``); int32 scratch is at least 4-byte aligned. Offsets are relative to the arena
start, which the firmware places 16-byte aligned, so every offset is also aligned in memory.

In-place modes (`edgekit.planner.inplace.INPLACE_MODES`). An op runs in place only at a step where
the input it overwrites *dies* (no later step reads it, it is not a graph output); its output
buffer starts at that input's offset (``buffers[out].alias_of == input``, ``inplace_mode`` names
the mode). A graph input may be overwritten this way once it has been read: whoever runs the
model again writes its input again (the firmware harness copies it in before every run). Where
several modes apply, the one saving the most bytes (shared bytes - extra scratch - lead) wins;
a mode is used only when what it shares pays for its scratch. The
code generator must implement each mode exactly as follows:

- ``reshape_view`` (RESHAPE): the output is the input's bytes; the kernel does nothing.
  Exact for any reshape (same ``nbytes``).
- ``elementwise`` (ADD, MUL, RELU, RELU6, LOGISTIC, HARD_SWISH, QUANTIZE, DEQUANTIZE; the
  lookup-table ops GELU, SILU; the row ops SOFTMAX, LAYER_NORM, RMS_NORM): the
  aliased input has the output's shape (it is not broadcast) and the same element size (int8 ->
  int8 requantize, not int8 -> float32; never int4, whose elements share bytes), so output
  element i occupies exactly the bytes of input element i. The kernel must read element i of
  every input (and any broadcast operand) before writing output element i, and never read an
  aliased input element after writing the output element with that index. Processing in
  increasing or decreasing index order, or in SIMD blocks that are loaded before they are
  stored, all satisfy this. The row ops (output row r, over the last axis, depends on the whole
  input row r: SOFTMAX's maximum and sum of exps, LAYER_NORM's mean and variance, RMS_NORM's
  mean square) must in addition finish every statistics pass over row r before writing any
  element of row r; the writing pass then reads x[i] before writing y[i]. Rows are disjoint
  and at the same offsets in input and output, so any row order is exact. Their constant
  operands (gamma, beta) are never aliased. ek_softmax_s8, ek_lut_s8 (GELU) and ek_norm.h's
  kernels (LAYER_NORM, RMS_NORM, SILU) meet this (tests/test_rowwise_inplace_c.py runs them
  over their own input, generated and on the host).
- ``depthwise_channelwise`` (DEPTHWISE_CONV_2D, as TinyEngine does): batch 1, depth multiplier 1,
  equal input/output element size, and an output plane no larger than the input plane
  (``OH*OW <= H*W``; any stride, dilation and padding otherwise). Scratch: one input channel
  plane, ``H*W*itemsize`` bytes. For each channel c in order: copy input channel c (H*W elements
  at stride C from offset c) into the scratch plane; compute output channel c from the scratch
  plane only (taps outside the plane are padding: the input zero point); write it at stride C
  from offset c. Why exact: output element (p, c) goes to slot ``p*C + c`` with ``p < OH*OW <=
  H*W``, a slot of input channel c, which is already saved; channels other than c are never
  written, so channels after c are still intact when their turn comes.

- ``pointwise_inplace`` (CONV_2D, and FULLY_CONNECTED over tokens): a 1x1 filter, all pads 0,
  batch 1, int8 input and output, filter depth == C_in, and, numbering output pixels p = 0..P-1 row-major (P = OH*OW) with
  ``src(p) = (p // OW)*stride_h*W + (p % OW)*stride_w`` the input pixel that p reads,
  ``p*C_out <= src(p)*C_in`` for every p >= 1 (`inplace.pointwise_fits_in_place`). True for any
  output no wider than its input (C_out <= C_in, any stride), and for strided convolutions that
  widen within the stride (resnet's 1x1 stride-2 16->32). Scratch: ``2*C_in`` bytes, 4-byte
  aligned (two pixels as int8). Kernel: output pixels in increasing order, in groups of one or
  two consecutive pixels; for each group first copy all its input pixels src(p) into the
  scratch (as int8), then compute and write all C_out outputs of each pixel of the
  group at ``out + p*C_out``; never read the input buffer for pixels of a group already
  written. Why exact: the outputs of pixels 0..p end at ``(p+1)*C_out <= src(p+1)*C_in``, the
  first byte of the next input pixel to read, and later pixels read later input pixels.
- ``pointwise_inplace_backward`` (CONV_2D): the same static conditions except the order
  condition, which is the mirror image: pixels in DECREASING order (groups of one or two
  consecutive pixels, each group's input pixels copied to the scratch before any of its
  outputs is written), so that before pixel p-1 the bytes ``[p*C_out, P*C_out)`` are written,
  and no input pixel still to read (src(q), q < p) may overlap them
  (``pointwise_fits_in_place(..., backward=True)``). For outputs WIDER than the input
  (MobileNet's expanding 1x1 layers): the output starts at the input's offset and runs past
  its end (the block grows to the output's size); the peak is max(in, out) instead of in + out.
  Scratch as ``pointwise_inplace``. Both order conditions are exact: where one is false, that
  order reads a clobbered byte (tests/test_planner_pointwise.py simulates it byte by byte).
- Both pointwise modes take a FULLY_CONNECTED over tokens (MCUFormer's token overwriting,
  `inplace.pointwise_shape`): x[..., K] with T = x.size / K >= 2 rows (``x[1, T, K]`` with
  ``keep_num_dims``, or any shape: only the row-major layout matters), output T rows of N, int8
  activations, int8 weights ``w[N, K]`` (per-tensor or per-channel), int32 bias or none. It is
  the 1x1 convolution ``[1, 1, T, K] -> [1, 1, T, N]``, stride 1, with the OHWI filter
  ``[N, 1, 1, K]`` (the same bytes), so the conditions read P = T, ``src(p) = p``: forward exact
  for N <= K, backward for N >= K. Scratch ``2*K`` bytes, so a single row (T = 1, a classifier
  head) never pays and is excluded. The code generator runs it through the in-place pointwise
  conv kernel with ``in_w = out_w = T``, ``in_c = K``, ``out_c = N`` and the FC's own offsets,
  clamp and per-unit multipliers/shifts (a per-tensor layer repeats its one multiplier): the
  same accumulator ``bias[n] + sum((x + input_offset) * (w + filter_offset))`` (int32,
  wrapping) and the same TFLite Micro requantisation, so the bytes equal the FC's
  (tests/test_token_inplace.py, portable and DSP paths).
- ``conv_sliding`` (CONV_2D or DEPTHWISE_CONV_2D, any filter size, stride, dilation and padding;
  batch 1, int8): the
  output starts ``lead`` bytes BEFORE its input (``buffers[out].offset <= buffers[in].offset -
  lead``; `inplace.sliding_lead_bytes` gives the smallest lead, the plan rounds it up to the
  alignment) and the PLAIN (depthwise) convolution kernel runs over it: output pixels in increasing
  row-major order (one or two at a time), pixel p's C_out outputs stored at ``out + p*C_out``,
  its window read from the input in any order, also after storing some of its channels; no
  ``restrict`` on input/output. Exact because with m(p) = the lowest input pixel any pixel
  q >= p reads, ``(p+1)*C_out - lead <= m(p)*C_in`` for every p: writing pixel p never reaches
  an input byte that pixel p or a later one reads (tests/test_planner_sliding.py proves the
  lead minimal against a byte simulation). No scratch. It lets the first convolution of a
  network overwrite the camera frame as it goes (vww: frame + 104 bytes instead of frame + a
  48x48x8 output). Leads shift the rest of an in-place chain, which is placed as one block, so
  `plan` also plans with leads only where they lower the peak, only where no other mode
  applies, and without them, and keeps the smallest arena.
- ``conv_add_skip`` (a CONV_2D fused with the residual ADD that reads it; `edgekit.planner.fusion`):
  ``plan.fusions[conv_index]`` is a `FusedConvAdd` (``conv``, ``add`` op indices,
  ``intermediate`` = the conv's output, ``skip`` = the ADD's other input, ``output`` = the
  ADD's output, ``conv_input_position`` = which ADD input the conv result is, 0 or 1). The ADD
  runs right after the conv in ``plan.schedule``; the intermediate has NO buffer (it never
  exists); ``buffers[output]`` has ``alias_of == skip`` and ``inplace_mode == "conv_add_skip"``.
  Static conditions: ADD with two non-constant int8 inputs of the output's exact shape (no
  broadcast), batch 1; the intermediate is read by the ADD only and is not a graph output; the
  skip is not a graph output, not read by the conv, and the ADD is its last reader (its other
  readers run before the conv). Kernel (one call at the conv's step, nothing at the ADD's):
  for each output element i (NHWC flat index), y = the conv's int8 result exactly as the
  out-of-place conv stores it (its own requantization, output offset and activation clamp);
  read skip[i]; write out[i] = ADD(y, skip[i]) with the ADD's own arithmetic, operands in the
  ADD's input order (y first when ``conv_input_position == 0``); never read skip[i] after
  writing out[i]. out == skip. Scratch: the out-of-place conv's (none today). Why exact: out[i]
  depends on skip[i] only, which is read first; the conv's input never overlaps skip (both are
  live at the conv's step). The planner picks, for each ADD, which input's conv to fuse (or
  none) by the lowest peak, then the lowest total of live bytes over the steps.

- ``tile_insert`` (INSERT_TILE of a patch schedule, `edgekit.patching`): the output takes the
  base feature map's bytes; the kernel copies the tile's rows into the box at ``origin`` and
  touches nothing else. Exact because every other element of the output is the base's.

Never in place: TRANSPOSE (output element i is input element perm(i), not i, so no order of a
plain loop is exact; an in-place permutation follows its cycles with a bitmap or an O(n^2)
search, and a scratch the size of the tensor saves nothing), BATCH_MATMUL (each output element
reads a whole row of ``a`` and a whole column of ``b``, so a written output can clobber operand
bytes that later outputs read; a row-at-a-time scheme like ``pointwise_inplace`` would be exact
for ``p @ v`` over ``p`` when N <= K and adj_x is false, but is not a mode yet). Nor, with no
mode today: GATHER (its output comes from a flash table; its int32 index input is smaller),
PAD, CONCATENATION, SLICE, MEAN, the pools. In an attention block the in-place savings come from the FCs over dying
inputs, the RESHAPE views, SOFTMAX over the scores, and the residual ADD.

``inplace`` in `plan` is True (all modes above), False (none), or a collection of mode names;
``exclude`` keeps given modes off given ops (by op index; ``conv_add_skip`` at a conv: no
fusion), which is how `edgekit.planner.objective` leaves out the in-place kernels that cost
more instructions than the plain one (``--objective speed|balanced``).
Adding a mode is one more entry in the table in `edgekit.planner.inplace`: its static
conditions, its scratch size, and its kernel contract here.

Scratch (`edgekit.planner.scratch.scratch_bytes(op, graph, inplace_mode)`) is the one definition
of per-op temporary memory that the code generator also uses. Out of place, MEAN needs an
int32 accumulator per output element, and ATTENTION (the fused row-wise attention of
`edgekit.attention`) one row of ``Tk`` int8 scores, reused for every query row and head. The
other transformer kinds need none: BATCH_MATMUL
with ``adj_y`` (``q @ k^T``) strides over ``b``'s rows instead of transposing a copy, SOFTMAX
and the norms work row by row in registers, the LUT ops and TRANSPOSE read their input
directly.

Offsets (`edgekit.planner.offsets.STRATEGIES`): ``greedy`` is TFLite Micro's greedy-by-size
(the baseline); ``multi`` tries first and best fit over several orderings; ``search``/``best``
adds a branch and bound over placement orders that stops at the lower bound.

Reordering (`edgekit.planner.schedule`): with ``reorder=True`` the schedule is the topological
order with the lowest peak (exact dynamic programming over the sets of ops already run; the
graph's own order when there are too many such sets), ties keeping the graph's order.
"""

from edgekit.planner.fusion import CONV_ADD_MODE, FusedConvAdd, fusion_candidates
from edgekit.planner.offsets import STRATEGIES
from edgekit.planner.plan import (
    DEFAULT_ALIGNMENT, DEFAULT_STRATEGY, MemoryPlan, OpMemory, ScratchBuffer, TensorBuffer,
    check_plan, plan,
)
from edgekit.planner.scratch import scratch_bytes

__all__ = [
    "plan", "check_plan", "MemoryPlan", "TensorBuffer", "ScratchBuffer", "OpMemory",
    "STRATEGIES", "DEFAULT_STRATEGY", "DEFAULT_ALIGNMENT", "scratch_bytes",
    "FusedConvAdd", "CONV_ADD_MODE", "fusion_candidates",
]
