"""Flash of a candidate before building it: its constants plus a code-size model.

``flash = constants + input + fixed + sum over op groups of per_op[group] * count``, where
``constants`` are exactly what the generated C stores in flash (int8 weights, int4 weights packed
two per byte, int32 biases and
two int32 requantisation words per output channel of every conv/depthwise/FC op, as
`edgekit.firmware.estimate` counts them) and ``input`` the test input the harness embeds.
``fixed`` (runtime, harness, int8 kernels, BSP) and ``per_op`` (one generated function and its
call per op, SLICE and INSERT_TILE included for patched graphs; the int4 kernels an int4 or
mixed build links, the int8 ones an int4 build drops: `kernel_features`) are fitted by least squares
against real builds, layer by layer and patched, by bench/nas_calibrate_codesize.py,
which writes them to codesize.json next to this file (with the builds it fitted and their
residuals), one set of constants per Cortex-M core (code size differs by core).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from edgekit.errors import UsageError
from edgekit.firmware.c_source import INT4_PAD_BYTES, stored_bytes
from edgekit.nas.mcunet import MCUNetSpec
from edgekit.reference import norm

CODESIZE_FILE = Path(__file__).with_name("codesize.json")
#: the op kinds the model counts separately (MEAN, RESHAPE and FULLY_CONNECTED occur once in
#: every candidate: they are part of ``fixed``)
COUNTED_KINDS = ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "SLICE", "INSERT_TILE")
#: the model's per-op terms: op kinds whose generated code is alike share one constant (every
#: block has one depthwise and one or two 1x1 convs, so separate conv/depthwise constants are
#: not identifiable from builds)
GROUPS = {"conv": ("CONV_2D", "DEPTHWISE_CONV_2D"), "add": ("ADD",),
          "tile": ("SLICE", "INSERT_TILE"), "int4_kernels": ("int4_kernels",),
          "int8_kernels_unused": ("int8_kernels_unused",)}
WEIGHTED_KINDS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def kernel_features(layers) -> dict[str, int]:
    """The int4 kernels a build links and the int8 ones it drops, from ``(kind, bits)`` of its
    weighted layers: ``int4_kernels`` counts the weighted op kinds with an int4 layer (each
    links its ``_s4`` kernels), ``int8_kernels_unused`` those with no int8 layer left (their
    ``_s8`` kernels, part of ``fixed``, are not linked)."""
    layers = list(layers)
    return {"int4_kernels": sum(any(k == kind and b == 4 for k, b in layers)
                                for kind in WEIGHTED_KINDS),
            "int8_kernels_unused": sum(not any(k == kind and b == 8 for k, b in layers)
                                       for kind in WEIGHTED_KINDS)}


def _weighted(out_ch: int, per_channel_weights: int, bits: int = 8) -> int:
    """Flash of one layer's constants: weights (int4 packed two per byte, plus the pad the
    generator adds), int32 bias, two int32 requantisation words per output channel."""
    weights = out_ch * per_channel_weights
    if bits == 4:
        weights = (weights + 1) // 2 + INT4_PAD_BYTES
    return weights + 4 * out_ch + 8 * out_ch


def features(spec: MCUNetSpec) -> dict[str, int]:
    """What flash depends on, from the spec alone: constants bytes (int4 layers' weights
    packed), input bytes, op counts, and the weighted layers with int4 weights."""
    bits = iter(spec.layer_bits())
    const = _weighted(spec.stem_out, 9 * spec.in_channels, next(bits))
    counts = dict.fromkeys(COUNTED_KINDS, 0)
    counts["CONV_2D"] = 2  # stem and head
    for b in spec.blocks():
        if b.expansion != 1:
            const += _weighted(b.hidden, b.in_channels, next(bits))
            counts["CONV_2D"] += 1
        const += _weighted(b.hidden, b.kernel * b.kernel, next(bits))
        const += _weighted(b.out_channels, b.hidden, next(bits))
        counts["DEPTHWISE_CONV_2D"] += 1
        counts["CONV_2D"] += 1
        counts["ADD"] += int(b.residual)
    last_in = spec.blocks()[-1].out_channels
    const += _weighted(spec.last_channels, last_in, next(bits))
    const += _weighted(spec.num_classes, spec.last_channels, next(bits))
    kinds = [("DEPTHWISE_CONV_2D" if n.endswith("/dw") else
              "FULLY_CONNECTED" if n == "logits" else "CONV_2D")
             for n in spec.weighted_layer_names()]
    return {"constants": const, "input": spec.resolution ** 2 * spec.in_channels, **counts,
            **kernel_features(zip(kinds, spec.layer_bits()))}


def graph_features(graph) -> dict[str, int]:
    """`features` of any int8 graph, e.g. a patched one (`edgekit.patching.apply_patches`):
    its tile copies of the stage's ops each cost code. Their requantisation words are counted
    per copy too, although the generator emits identical arrays once: a patched graph's
    estimate is high by 8 B per output channel per extra copy (lm3s6965evb's searched model:
    235,975 B estimated, 232,204 B measured)."""
    used = {n for op in graph.ops for n in op.present_inputs() if graph[n].is_constant
            and op.kind not in norm.PREPARED_CONSTANT_KINDS}
    const = sum(stored_bytes(graph[n]) for n in used) + sum(
        norm.flash_bytes(op, graph) for op in graph.ops
        if op.kind in norm.PREPARED_CONSTANT_KINDS) + sum(
        8 * graph[op.outputs[0]].shape[-1] for op in graph.ops if op.kind in WEIGHTED_KINDS)
    counts = {k: sum(op.kind == k for op in graph.ops) for k in COUNTED_KINDS}
    layers = [(op.kind, graph[op.inputs[1]].dtype.bits) for op in graph.ops
              if op.kind in WEIGHTED_KINDS]
    return {"constants": const, "input": sum(graph[n].nbytes for n in graph.inputs), **counts,
            **kernel_features(layers)}


def group_count(f: dict[str, int], group: str) -> int:
    return sum(f.get(k, 0) for k in GROUPS[group])


@lru_cache(maxsize=None)
def load_model(cpu: str = "cortex-m4", path: Path = CODESIZE_FILE) -> dict:
    """The fitted constants for ``cpu`` (code size differs by core: the M3 has no DSP
    instructions, the M0+ only Thumb-1). A core that was not calibrated gets the constants
    of the calibrated core with the largest code (a pessimistic flash estimate)."""
    try:
        data = json.loads(Path(path).read_text())["by_cpu"]
        models = {c: {"fixed": float(d["fixed"]),
                      "per_op": {g: float(v) for g, v in d["per_op"].items() if g in GROUPS}}
                  for c, d in data.items()}
        for g in GROUPS:
            # a core calibrated before a term existed (the int4 kernels) takes the largest
            # value of the cores that have it: a pessimistic flash estimate
            known = [m["per_op"][g] for m in models.values() if g in m["per_op"]]
            for m in models.values():
                m["per_op"].setdefault(g, max(known))
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise UsageError(f"code-size model {str(path)!r} cannot be read ({err}); rerun"
                         " bench/nas_calibrate_codesize.py") from None
    if not models:
        raise UsageError(f"code-size model {str(path)!r} holds no core")
    return models.get(cpu) or max(models.values(), key=lambda m: m["fixed"])


def flash_estimate(spec: MCUNetSpec, model: dict | None = None, *, graph=None,
                   cpu: str = "cortex-m4") -> int:
    """Predicted ``flash_bytes`` (.text + .rodata + .data) of ``spec``'s firmware for ``cpu``,
    from the spec alone (layer by layer), or from ``graph`` (the patched graph of a patched
    spec, whose extra ops cost flash; the spec-only figure is then a lower bound)."""
    model = model or load_model(cpu)
    f = features(spec) if graph is None else graph_features(graph)
    code = model["fixed"] + sum(model["per_op"][g] * group_count(f, g) for g in GROUPS)
    return int(round(f["constants"] + f["input"] + code))
