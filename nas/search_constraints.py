"""Which budget decided a search: how many candidates each constraint rejected, and how much
of each budget the chosen model takes.

A candidate is rejected by every constraint it breaks (`edgekit.nas.search.Objective` records
``constraints`` as value - budget, > 0 when broken), so a candidate over both SRAM and flash
counts for both; ``rejected_any`` counts candidates once.
"""

from __future__ import annotations

#: the order of `Objective`'s ``constraints`` attribute
CONSTRAINTS = ("sram", "flash", "mac_overhead")


def constraint_summary(trials_attrs: list[dict], chosen: dict | None, sram_budget: int,
                       flash_budget: int) -> dict:
    """``trials_attrs``: the user attributes of the study's finished trials; ``chosen``: the
    chosen Pareto row (``peak_sram``, ``flash``) or None."""
    rejected = dict.fromkeys(CONSTRAINTS, 0)
    checked = rejected_any = 0
    for attrs in trials_attrs:
        values = attrs.get("constraints")
        if values is None:  # refused before its budgets were checked
            continue
        checked += 1
        broken = [name for name, value in zip(CONSTRAINTS, values) if value > 0]
        rejected_any += bool(broken)
        for name in broken:
            rejected[name] += 1
    summary = {"candidates_checked": checked, "rejected": rejected, "rejected_any": rejected_any,
               "binding": [name for name in CONSTRAINTS if rejected[name]]}
    if chosen is not None:
        summary["chosen_sram_fraction"] = round(chosen["peak_sram"] / sram_budget, 4)
        summary["chosen_flash_fraction"] = round(chosen["flash"] / flash_budget, 4)
    return summary


def describe(summary: dict) -> str:
    """One line for the CLI: e.g. ``SRAM rejected 5 of 12 candidates, flash 2; ...``."""
    r = summary["rejected"]
    parts = [f"{name.replace('_', ' ')} {r[name]}" for name in CONSTRAINTS if r[name]]
    text = (f"rejected {summary['rejected_any']} of {summary['candidates_checked']} candidates"
            + (f" (by {', '.join(parts)})" if parts else ": no budget bound"))
    if "chosen_sram_fraction" in summary:
        text += (f"; the chosen model takes {100 * summary['chosen_sram_fraction']:.0f}% of the"
                 f" SRAM budget and {100 * summary['chosen_flash_fraction']:.0f}% of flash")
    return text
