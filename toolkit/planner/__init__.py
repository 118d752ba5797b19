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
model again writes its input again (the firmware harness copies it in before every run). The
code generator must implement each mode exactly as follows:

- ``reshape_view`` (RESHAPE): the output is the input's bytes; the kernel does nothing.
  Exact for any reshape (same ``nbytes``).
- ``elementwise`` (ADD, MUL, RELU, RELU6, LOGISTIC, HARD_SWISH, QUANTIZE, DEQUANTIZE): the
  aliased input has the output's shape (it is not broadcast) and the same element size (int8 ->
  int8 requantize, not int8 -> float32; never int4, whose elements share bytes), so output
  element i occupies exactly the bytes of input element i. The kernel must read element i of
  every input (and any broadcast operand) before writing output element i, and never read an
  aliased input element after writing the output element with that index. Processing in
  increasing or decreasing index order, or in SIMD blocks that are loaded before they are
  stored, all satisfy this.
- ``depthwise_channelwise`` (DEPTHWISE_CONV_2D, as TinyEngine does): batch 1, depth multiplier 1,
  equal input/output element size, and an output plane no larger than the input plane
  (``OH*OW <= H*W``; any stride, dilation and padding otherwise). Scratch: one input channel
  plane, ``H*W*itemsize`` bytes. For each channel c in order: copy input channel c (H*W elements
  at stride C from offset c) into the scratch plane; compute output channel c from the scratch
  plane only (taps outside the plane are padding: the input zero point); write it at stride C
  from offset c. Why exact: output element (p, c) goes to slot ``p*C + c`` with ``p < OH*OW <=
  H*W``, a slot of input channel c, which is already saved; channels other than c are never
  written, so channels after c are still intact when their turn comes.

Adding a mode (in-place pointwise convolution with an output no wider than its input, a
convolution fused with a residual add writing into the skip tensor's buffer) is one more entry
in that table: its static conditions, its scratch size, and its kernel contract here.

Scratch (`edgekit.planner.scratch.scratch_bytes(op, graph, inplace_mode)`) is the one definition
of per-op temporary memory that the code generator also uses.

Offsets (`edgekit.planner.offsets.STRATEGIES`): ``greedy`` is TFLite Micro's greedy-by-size
(the baseline); ``multi`` tries first and best fit over several orderings; ``search``/``best``
adds a branch and bound over placement orders that stops at the lower bound.

Reordering (`edgekit.planner.schedule`): with ``reorder=True`` the schedule is the topological
order with the lowest peak (exact dynamic programming over the sets of ops already run; the
graph's own order when there are too many such sets), ties keeping the graph's order.
"""

from edgekit.planner.offsets import STRATEGIES
from edgekit.planner.plan import (
    DEFAULT_ALIGNMENT, DEFAULT_STRATEGY, MemoryPlan, OpMemory, ScratchBuffer, TensorBuffer,
    check_plan, plan,
)
from edgekit.planner.scratch import scratch_bytes

__all__ = [
    "plan", "check_plan", "MemoryPlan", "TensorBuffer", "ScratchBuffer", "OpMemory",
    "STRATEGIES", "DEFAULT_STRATEGY", "DEFAULT_ALIGNMENT", "scratch_bytes",
]
