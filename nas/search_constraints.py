"""Which budget decided a search: the budgets that rejected candidates before training (the
screen's counts, `edgekit.nas.screen.rejected_totals`), and how much of each budget the chosen
model takes."""

from __future__ import annotations

#: the screen's reasons that are budgets of the board (``refused`` is a candidate that cannot be
#: planned at all)
BUDGETS = ("sram", "flash", "recompute", "latency")


def constraint_summary(rejected: dict, chosen: dict | None, limits) -> dict:
    """``rejected``: the screen's totals by reason; ``chosen``: the chosen Pareto row
    (``peak_sram``, ``flash``, ``instructions``) or None; ``limits``: the search's
    `edgekit.nas.screen.Limits`."""
    summary = {"binding": [name for name in BUDGETS if rejected.get(name)]}
    if chosen is not None:
        summary["chosen_sram_fraction"] = round(chosen["peak_sram"] / limits.sram, 4)
        summary["chosen_flash_fraction"] = round(chosen["flash"] / limits.flash, 4)
        if limits.max_instructions is not None and chosen.get("instructions") is not None:
            summary["chosen_instructions_fraction"] = round(
                chosen["instructions"] / limits.max_instructions, 4)
    return summary


def describe(summary: dict) -> str:
    """One line for the CLI: e.g. ``bound by sram, flash; the chosen model takes 59% ...``."""
    binding = summary["binding"]
    text = f"bound by {', '.join(binding)}" if binding else "no budget rejected a candidate"
    if "chosen_sram_fraction" in summary:
        text += (f"; the chosen model takes {100 * summary['chosen_sram_fraction']:.0f}% of the"
                 f" SRAM budget and {100 * summary['chosen_flash_fraction']:.0f}% of flash")
        if "chosen_instructions_fraction" in summary:
            text += (f" ({100 * summary['chosen_instructions_fraction']:.0f}% of the instruction"
                     " limit)")
    return text
