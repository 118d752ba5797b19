"""The MCUNetV2-style memory profile: one bar per op (bytes live while it runs), the arena and the
board's SRAM as horizontal lines."""

from __future__ import annotations

from pathlib import Path

from edgekit.atomic import atomic_writer
from edgekit.errors import PlanError
from edgekit.planner.plan import MemoryPlan


def plot_profile(plan: MemoryPlan, path: str | Path, *, sram_bytes: int | None = None,
                 sram_label: str = "board SRAM") -> Path:
    """Write the per-op live-memory bar chart of ``plan`` to ``path`` (format from its suffix,
    e.g. ``.png``); draw ``sram_bytes`` as a line when given. Returns the path."""
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window
    import matplotlib.pyplot as plt

    path = Path(path)
    kib = 1024.0
    steps = [p.step for p in plan.profile]
    live = [p.live_bytes / kib for p in plan.profile]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * len(steps) + 2.0), 4.0))
    try:
        ax.bar(steps, live, color="#4C72B0", label="live during op")
        ax.axhline(plan.arena_bytes / kib, color="#55A868", linestyle="--",
                   label=f"arena {plan.arena_bytes:,} B")
        if sram_bytes is not None:
            ax.axhline(sram_bytes / kib, color="#C44E52", label=f"{sram_label} {sram_bytes:,} B")
        ax.set_xticks(steps)
        ax.set_xticklabels([_short(p.kind) for p in plan.profile], rotation=90, fontsize=7)
        ax.set_ylabel("KiB")
        ax.set_xlabel("op (schedule order)")
        fig.suptitle(f"{plan.graph.name}: peak {plan.lower_bound_bytes:,} B live,"
                     f" arena {plan.arena_bytes:,} B ({plan.strategy})", fontsize=9)
        # above the axes, so the legend never hides a bar or the SRAM line
        ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=3,
                  frameon=False)
        fig.tight_layout()
        try:
            with atomic_writer(path) as f:  # never half a picture
                fig.savefig(f, dpi=120, format=path.suffix.lstrip(".").lower() or "png")
        except (OSError, ValueError) as err:
            raise PlanError(f"cannot write the memory plot to {path}: {err}") from None
    finally:
        plt.close(fig)
    return path


def _short(kind: str) -> str:
    return {"DEPTHWISE_CONV_2D": "DW", "CONV_2D": "CONV", "FULLY_CONNECTED": "FC",
            "AVERAGE_POOL_2D": "AVGPOOL", "MAX_POOL_2D": "MAXPOOL",
            "CONCATENATION": "CONCAT"}.get(kind, kind)
