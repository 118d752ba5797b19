"""How long a measured run may take: the default timeout and Unicorn's instruction budget,
scaled from the work the firmware's manifest says one inference is.

A fixed 60 s fails a large correct model on a busy machine (MobileNetV2-0.35/144 patched runs
111 M instructions: minutes on Unicorn with both cores loaded). So the limits grow with the
model. Unicorn counts instructions, and stops a run that goes past its budget: that limit is
deterministic, whatever the load on the host, so it is the one that ends a runaway firmware;
its wall clock is a generous backstop. QEMU, Renode and real boards cannot count, so their
default wall clock is scaled from the same bound at a rate far below what they run at.

The bound is generous on purpose: edgekit's kernels run 2.3 to 3.1 instructions per MAC on the
MLPerf Tiny models (README), the bound allows `INSTRUCTIONS_PER_MAC`; element-wise ops (softmax,
layer norm, add) get `INSTRUCTIONS_PER_ELEMENT` per output element; start-up, stack painting
and the report get `FIXED_INSTRUCTIONS`.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekit.boards.runners.base import MAX_TIMEOUT_S

#: wall-clock default when nothing says how much work the firmware does
DEFAULT_TIMEOUT_S = 60.0
INSTRUCTIONS_PER_MAC = 20
INSTRUCTIONS_PER_ELEMENT = 200
FIXED_INSTRUCTIONS = 50_000_000
#: instructions per second assumed for the default wall clock, far below what each runs at
#: unloaded (Unicorn with its block hook: several million; QEMU: hundreds of millions)
SLOWEST_RATE = {"unicorn": 1_000_000}
SLOWEST_RATE_OTHERS = 10_000_000


@dataclass(frozen=True)
class RunLimits:
    """The limits of one run: wall-clock seconds, and (Unicorn) the instruction budget."""

    timeout_s: float
    instruction_budget: int | None
    #: how they were chosen, for messages and the help text
    note: str


def instruction_bound(manifest: dict | None) -> int | None:
    """Instructions a correct run of this firmware stays under, from the manifest's ``work``
    (``macs``, ``elements``: written by `edgekit build` for models); None when it has none."""
    work = (manifest or {}).get("work")
    if not work or work.get("macs") is None:
        return None
    macs, elements = int(work["macs"]), int(work.get("elements") or 0)
    return FIXED_INSTRUCTIONS + INSTRUCTIONS_PER_MAC * macs + INSTRUCTIONS_PER_ELEMENT * elements


def run_limits(manifest: dict | None, runner: str, timeout_s: float | None = None) -> RunLimits:
    """The limits for `runner` on the firmware of `manifest`; `timeout_s` (already validated,
    see `base.check_timeout`) replaces the default wall clock, not Unicorn's budget."""
    bound = instruction_bound(manifest)
    budget = bound if runner == "unicorn" else None
    if bound is None:
        default = DEFAULT_TIMEOUT_S
        note = f"default {DEFAULT_TIMEOUT_S:g} s: the manifest gives no work estimate"
    else:
        rate = SLOWEST_RATE.get(runner, SLOWEST_RATE_OTHERS)
        default = min(DEFAULT_TIMEOUT_S + bound / rate, MAX_TIMEOUT_S)
        work = manifest["work"]
        note = (f"budget {bound} instructions from the manifest's {int(work['macs'])} MACs and "
                f"{int(work.get('elements') or 0)} output elements")
    if timeout_s is not None:
        return RunLimits(timeout_s, budget, note)
    return RunLimits(default, budget, note)
