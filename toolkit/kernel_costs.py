"""What an op costs in instructions, per kernel variant and core family: the speed side of the
planner's choices (`edgekit.planner.objective`) and the search's latency figure.

Each variant is the kernel an op runs under one in-place mode (a plain conv, a 1x1 conv in place,
a depthwise conv channel by channel through a scratch plane, a conv fused with its residual ADD,
...). Its instructions are a linear function of the op's shape::

    instructions = sum(coefficient[f] * feature[f] for f in the variant's features)

with features such as MACs, output elements, output pixels, input elements (what an in-place
kernel copies to its scratch) and 1 (the call). The coefficients are fitted by least squares on
single-op firmwares measured on Unicorn, per core family (``dsp``: Cortex-M4/M7/M33/M55 with the
SXTB16/SMLAD path; ``portable``: the plain C path of M0+/M3), by bench/fit_kernel_costs.py, which
writes them with the fit's error to kernel_costs.json next to this file. When the kernels change,
rerun that script: nothing here hard-codes a figure.

Modes that run the plain kernel (``conv_sliding``: the same ``ek_conv2d_s8`` over a shifted
output; ``elementwise``, ``reshape_view``, ``tile_insert``: the same loop, or none) cost exactly
what running out of place costs, so only the variants that change the kernel are modelled.
Op kinds without a model (pools, softmax, ...) have no estimate (None): the planner's choices
never change their kernel.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from edgekit.constant_channels import constant_pair_macs
from edgekit.costs import op_macs
from edgekit.errors import DataFileError, UsageError
from edgekit.ir import DType, Graph, Op
from edgekit.reference import prepare

COSTS_FILE = Path(__file__).with_name("kernel_costs.json")

#: core family of each Cortex-M core: which C path its kernels compile to
CORE_FAMILIES = {"cortex-m0": "portable", "cortex-m0plus": "portable", "cortex-m3": "portable",
                 "cortex-m4": "dsp", "cortex-m7": "dsp", "cortex-m33": "dsp", "cortex-m55": "dsp"}
#: the family planned for when no board is named (the M4 of the MLPerf Tiny boards)
DEFAULT_FAMILY = "dsp"

#: the in-place modes whose kernel differs from the out-of-place one
POINTWISE_MODES = ("pointwise_inplace", "pointwise_inplace_backward")
FUSED_MODE = "conv_add_skip"


def core_family(cpu: str | None) -> str:
    """The cost model's family of a core (``DEFAULT_FAMILY`` for None)."""
    if cpu is None:
        return DEFAULT_FAMILY
    try:
        return CORE_FAMILIES[cpu]
    except KeyError:
        raise UsageError(f"no kernel cost family for core {cpu!r} (known:"
                         f" {', '.join(sorted(CORE_FAMILIES))})") from None


def _is_1x1(op: Op, graph: Graph) -> bool:
    w = graph[op.inputs[1]].shape
    return len(w) == 4 and w[1] == 1 and w[2] == 1


#: suffix of the variants whose weights are packed int4 (the ``_s4`` kernels unpack nibbles)
INT4_SUFFIX = "_s4"


def variant(op: Op, graph: Graph, mode: str | None) -> str | None:
    """The kernel variant ``op`` runs under in-place ``mode`` (None: out of place); None when
    the op's kind has no model. A conv fused with its ADD (``conv_add_skip``, given at the
    conv) is ``conv_add``: the one call that computes both. An op with int4 weights runs the
    ``_s4`` twin of its kernel, a variant of its own (``conv_1x1_s4``, ...)."""
    name = _int8_variant(op, graph, mode)
    if name is not None and name != "add" and graph[op.inputs[1]].dtype == DType.INT4:
        return name + INT4_SUFFIX
    return name


def _int8_variant(op: Op, graph: Graph, mode: str | None) -> str | None:
    kind = op.kind
    if kind == "CONV_2D":
        if mode == FUSED_MODE:
            return "conv_add"
        if mode in POINTWISE_MODES:
            return "conv_pointwise_inplace"
        return "conv_1x1" if _is_1x1(op, graph) else "conv"
    if kind == "DEPTHWISE_CONV_2D":
        if mode != "depthwise_channelwise":
            return "depthwise"
        # the four-channel ring is a kernel of its own under the same mode (on DSP cores; the
        # portable family fits the same split over its one kernel)
        return "depthwise_channelwise_quad" if _runs_quad_ring(op, graph) else mode
    if kind == "FULLY_CONNECTED":
        return "fc_pointwise_inplace" if mode in POINTWISE_MODES else "fully_connected"
    if kind == "ADD":
        return "add"
    return None


def features(op: Op, graph: Graph) -> dict[str, float]:
    """Every feature a variant's formula may use, for one op."""
    out = graph[op.outputs[0]]
    x = graph[op.inputs[0]]
    channels = out.shape[-1] if out.shape else 1
    w = graph[op.inputs[1]].shape if len(op.inputs) > 1 and op.inputs[1] else ()
    taps = w[1] * w[2] if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(w) == 4 else 1
    rows = out.shape[1] if len(out.shape) == 4 else 1
    macs = float(op_macs(op, graph))
    valid_macs, tap_rows = _valid_taps(op, graph, macs)
    is_3x3 = op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(w) == 4 and w[1] == w[2] == 3
    return {"macs": macs, "outputs": float(out.size),
            "inputs": float(x.size), "pixels": float(out.size // max(channels, 1)),
            "channels": float(channels), "calls": 1.0,
            # per output channel: its filter taps (set up once per channel plane)
            "channel_taps": float(taps * channels),
            # per output row and channel (the channel-by-channel loops' overhead)
            "channel_rows": float(rows * channels),
            # MACs outside the 3x3 windows the kernels specialise
            "macs_not_3x3": 0.0 if is_3x3 else macs,
            # MACs of the taps inside the input (the kernels skip padding taps), and the
            # filter rows they run per output element (each row is an inner loop)
            "valid_macs": valid_macs, "tap_rows": tap_rows,
            # the same for 3x3 windows only (0 otherwise): the kernels' specialised rows
            "valid_macs_3x3": valid_macs if is_3x3 else 0.0,
            "tap_rows_3x3": tap_rows if is_3x3 else 0.0}


def _runs_quad_ring(op: Op, graph: Graph) -> bool:
    """Whether ``op`` run in place would surely take the four-channel depthwise ring on a DSP
    core (the generator's mirror of the kernel's dispatch, `op_emitters.depthwise_surely_quad`)."""
    if op.kind != "DEPTHWISE_CONV_2D" or len(graph[op.outputs[0]].shape) != 4:
        return False
    from edgekit.firmware.op_emitters import depthwise_surely_quad  # firmware imports the planner

    (_, in_h, in_w, in_c), w = graph[op.inputs[0]].shape, graph[op.inputs[1]]
    _, out_h, out_w, out_c = graph[op.outputs[0]].shape
    stride, dilation = op.attrs.get("stride", (1, 1)), op.attrs.get("dilation", (1, 1))
    zero_points = w.quant.zero_point if w.quant is not None else np.zeros(1)
    fields = {"in_h": in_h, "in_w": in_w, "in_c": in_c, "out_h": out_h, "out_w": out_w,
              "k_h": w.shape[1], "k_w": w.shape[2], "stride_h": stride[0], "stride_w": stride[1],
              "dilation_h": dilation[0], "dilation_w": dilation[1],
              "pad_top": op.attrs.get("pad", (0, 0, 0, 0))[0],
              "depth_multiplier": out_c // max(in_c, 1),
              "filter_offset": 0 if not np.any(zero_points) else 1}
    return depthwise_surely_quad("ek_depthwise_conv2d_s8_inplace", fields)


def _valid_per_output(size: int, out: int, kernel: int, stride: int, pad: int,
                      dilation: int) -> np.ndarray:
    """Per output index along one axis: how many of the ``kernel`` taps fall inside the input."""
    pos = (np.arange(out)[:, None] * stride - pad + np.arange(kernel)[None, :] * dilation)
    return ((pos >= 0) & (pos < size)).sum(axis=1)


def _valid_taps(op: Op, graph: Graph, macs: float) -> tuple[float, float]:
    """(MACs of in-input taps, filter rows with an in-input tap summed over the outputs) of a
    conv or depthwise conv; (MACs, outputs) for any other op."""
    out = graph[op.outputs[0]]
    if op.kind not in ("CONV_2D", "DEPTHWISE_CONV_2D") or len(out.shape) != 4:
        return macs, float(out.size)
    x, w = graph[op.inputs[0]].shape, graph[op.inputs[1]].shape
    stride = op.attrs.get("stride", (1, 1))
    dilation = op.attrs.get("dilation", (1, 1))
    top, _, left, _ = op.attrs.get("pad", (0, 0, 0, 0))
    rows = _valid_per_output(x[1], out.shape[1], w[1], stride[0], top, dilation[0])
    cols = _valid_per_output(x[2], out.shape[2], w[2], stride[1], left, dilation[1])
    depth = x[3] if op.kind == "CONV_2D" else 1
    per_channel = float(rows.sum() * cols.sum()) * depth
    return per_channel * out.shape[3], float(rows.sum() * out.shape[2] * out.shape[3])


@lru_cache(maxsize=4)
def _load(path: str) -> dict:
    try:
        data = json.loads(Path(path).read_text())
        families = data["families"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataFileError(f"{path}: not a kernel cost table ({err}); rerun"
                            " bench/fit_kernel_costs.py") from None
    return families


def cost_table(family: str, path: Path = COSTS_FILE) -> dict[str, dict]:
    """Variant -> ``{"features": [...], "coefficients": [...], ...}`` of one core family."""
    families = _load(str(path))
    if family not in families:
        raise UsageError(f"{path}: no kernel costs for core family {family!r} (has"
                         f" {', '.join(sorted(families))}); rerun bench/fit_kernel_costs.py")
    return families[family]["variants"]


def estimate(name: str | None, values: dict[str, float], table: dict[str, dict]) -> float | None:
    """Instructions of ``name`` (a variant) for these feature ``values``; None if not modelled.
    A four-channel-ring variant the fit had too few samples of (``depthwise_channelwise_quad_s4``)
    takes its mode's general formula."""
    model = (table.get(name) or table.get(name.replace("_quad", ""))) if name else None
    if model is None:
        return None
    # a fitted formula can dip below zero far outside the shapes it was fitted on
    return max(0.0, float(sum(c * values[f]
                              for f, c in zip(model["features"], model["coefficients"]))))


def variant_instructions(op: Op, graph: Graph, name: str | None, values: dict[str, float],
                         table: dict[str, dict]) -> float | None:
    """`estimate` of ``op`` run as variant ``name`` (``values``: its `features`). A variant
    marked ``skips_constant_pairs`` (the DSP in-place 1x1 loops in assembly) does not count the
    MACs of pairs of constant channels (`edgekit.constant_channels`)."""
    if name is not None and (table.get(name) or {}).get("skips_constant_pairs"):
        skipped = constant_pair_macs(op, graph, prepare(op, graph))
        if skipped:
            values = {**values, "macs": values["macs"] - skipped}
    return estimate(name, values, table)


def op_instructions(op: Op, graph: Graph, mode: str | None, table: dict[str, dict]) -> float | None:
    """Estimated instructions of ``op`` under ``mode`` (None when its kind has no model)."""
    name = variant(op, graph, mode)
    return None if name is None else variant_instructions(op, graph, name, features(op, graph),
                                                          table)


def mode_penalty(graph: Graph, index: int, mode: str, table: dict[str, dict],
                 add_index: int | None = None) -> float:
    """Instructions ``mode`` adds to op ``index`` over running it out of place (negative: it
    saves some; 0 when either side has no model). For ``conv_add_skip`` give the fused ADD's
    index: the fused call is compared with the conv and the ADD run apart."""
    op = graph.ops[index]
    values = features(op, graph)
    plain = variant_instructions(op, graph, variant(op, graph, None), values, table)
    chosen = variant_instructions(op, graph, variant(op, graph, mode), values, table)
    if mode == FUSED_MODE and add_index is not None and plain is not None:
        add = graph.ops[add_index]
        add_cost = estimate(variant(add, graph, None), features(add, graph), table)
        plain = None if add_cost is None else plain + add_cost
    if plain is None or chosen is None:
        return 0.0
    return chosen - plain


def graph_instructions(graph: Graph, table: dict[str, dict],
                       modes: dict[int, str | None] | None = None,
                       fused_adds: dict[int, int] | None = None) -> dict:
    """Per-op estimates and their total: ``{"ops": [{op, kind, mode, variant, instructions}],
    "instructions": total over modelled ops, "unmodelled_ops": count}``. ``modes`` gives the
    in-place mode per op index (default: out of place); ``fused_adds`` maps a fused ADD's index
    to its conv's: the fused call is the conv's, the ADD costs nothing of its own."""
    modes = modes or {}
    fused_adds = fused_adds or {}
    rows, total, unmodelled = [], 0.0, 0
    for index, op in enumerate(graph.ops):
        mode = modes.get(index)
        if index in fused_adds:
            rows.append({"op": index, "kind": op.kind, "mode": FUSED_MODE,
                         "variant": None, "instructions": 0})
            continue
        name = variant(op, graph, mode)
        value = None if name is None else variant_instructions(op, graph, name,
                                                               features(op, graph), table)
        if value is None:
            unmodelled += 1
        else:
            total += value
        rows.append({"op": index, "kind": op.kind, "mode": mode, "variant": name,
                     "instructions": None if value is None else int(round(value))})
    return {"ops": rows, "instructions": int(round(total)), "unmodelled_ops": unmodelled}

