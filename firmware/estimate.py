"""The memory estimate that `edgekit build` states and `edgekit measure` checks.

Two stages:

- before the compiler runs (`estimate_before_build`): the planner's arena (exact: the firmware
  declares exactly this arena) and the flash the constants take (weights, biases, per-channel
  multipliers and shifts): the parts that depend on the model;
- after linking, before any run (`estimate_from_elf`): ``peak_sram_bytes = static RAM of the
  ELF (.data + .bss, arena included) + the static worst-case stack depth`` from the call graph
  (`edgekit.firmware.stack_bound`: the deepest stack word the code can write, as the painted
  high-water mark counts), leaving out the kernel helpers of paths no call of the model takes
  (`edgekit.firmware.stack_paths`). Nothing is measured on a device: the stack figure is what
  the code can reach, and the device's painted high-water mark is compared against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgekit.boards import Target
from edgekit.firmware import elf
from edgekit.firmware.c_source import stored_bytes
from edgekit.firmware.codegen import GeneratedModel
from edgekit.firmware.stack_bound import stack_bound
from edgekit.firmware.stack_paths import never_called
from edgekit.reference import norm


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated figures; ``None`` where the stage cannot know them yet."""

    stage: str  # "before_build" or "elf"
    arena_bytes: int
    constants_bytes: int  # weights + biases + per-channel requantisation arrays (flash)
    static_ram_bytes: int | None = None
    stack_bytes: int | None = None
    peak_sram_bytes: int | None = None
    flash_bytes: int | None = None
    stack_path: tuple[str, ...] = ()


def _constants_bytes(model: GeneratedModel) -> int:
    graph = model.graph
    used = {name for op in graph.ops for name in op.present_inputs() if graph[name].is_constant
            and op.kind not in norm.PREPARED_CONSTANT_KINDS}
    weights = sum(stored_bytes(graph[name]) for name in used) + sum(
        norm.flash_bytes(op, graph) for op in graph.ops if op.kind in norm.PREPARED_CONSTANT_KINDS)
    # every conv/depthwise/FC op carries two int32 per output channel
    requant = sum(8 * graph[op.outputs[0]].shape[-1] for op in graph.ops
                  if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"))
    return weights + requant


def estimate_before_build(model: GeneratedModel, target: Target) -> MemoryEstimate:
    """What is known from the plan and the model alone."""
    return MemoryEstimate(stage="before_build", arena_bytes=model.plan.arena_bytes,
                          constants_bytes=_constants_bytes(model))


def estimate_from_elf(elf_path: str | Path, model: GeneratedModel,
                      before: MemoryEstimate | None = None) -> MemoryEstimate:
    """Peak SRAM and flash from the linked ELF and its static stack bound (no run)."""
    sizes = elf.sizes(elf_path)
    # the helpers of rare kernel paths (the DSP two-pixel conv, the ADD/MUL broadcast walk)
    # can hold the deepest frame: leave out the ones no call of this model takes, so the bound
    # is the stack the model's data can reach
    bound = stack_bound(elf_path, never_called=never_called(model.path_helpers))
    return MemoryEstimate(
        stage="elf", arena_bytes=model.plan.arena_bytes,
        constants_bytes=before.constants_bytes if before else _constants_bytes(model),
        static_ram_bytes=sizes.static_ram_bytes, stack_bytes=bound.bytes,
        peak_sram_bytes=sizes.static_ram_bytes + bound.bytes, flash_bytes=sizes.flash_bytes,
        stack_path=bound.path)


def compare_with_measurement(manifest: dict | None, measured: dict) -> dict:
    """The model-build fields of a measurement: ``bit_exact`` (the device's outputs equal the
    reference interpreter's, from the manifest), ``estimate_peak_sram_bytes`` and the estimate's
    relative error against the measured ``peak_sram_bytes`` (None where there is no model
    manifest)."""
    estimate = (manifest or {}).get("estimate") or {}
    is_model = (manifest or {}).get("payload") == "model"
    predicted = estimate.get("peak_sram_bytes")
    peak = measured.get("peak_sram_bytes")
    error = None
    if predicted and peak:
        error = (peak - predicted) / predicted
    return {
        "bit_exact": measured.get("expected_ok") if is_model else None,
        "estimate_peak_sram_bytes": predicted,
        "estimate_stack_bytes": estimate.get("stack_bytes"),
        "estimate_error": error,
    }
