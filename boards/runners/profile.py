"""Per-op profile of a model firmware (`edgekit measure --profile`): Unicorn's instructions per
generated op function, beside each op's multiply-accumulates from the build manifest.

The generated ``model.c`` keeps one noinline function per op (``op012_depthwise_conv_2d``); the
runner attributes every instruction of the measured window to the op function entered last
(`edgekit.boards.runners.unicorn_runner`), so an op's share also holds the few instructions of
``edgekit_payload_run`` that call the next op, and the shares sum to the whole inference count.
"""

from __future__ import annotations

import re

from edgekit.boards.runners.unicorn_runner import BEFORE_OPS
from edgekit.errors import ReportError

_OP_NAME = re.compile(r"^op(\d+)_(\w+)$")


def _ratio(instructions: int, macs: int) -> float | None:
    return round(instructions / macs, 3) if macs else None


def profile_rows(op_instructions: dict[str, int], manifest: dict | None) -> dict:
    """The profile of one run: per op (schedule order of first entry) its instructions, MACs
    and instructions per MAC, totals per kind of op, and the whole window's sum."""
    op_macs = (manifest or {}).get("op_macs")
    ops, by_kind = [], {}
    for name, instructions in op_instructions.items():
        match = _OP_NAME.match(name)
        if match is None:  # BEFORE_OPS: the window's start, before any op function
            ops.append({"op": None, "function": name, "kind": None, "instructions": instructions,
                        "macs": 0, "instructions_per_mac": None})
            continue
        index, kind = int(match.group(1)), match.group(2).upper()
        if op_macs is not None and index >= len(op_macs):
            raise ReportError(f"the ELF has op function {name}, but its manifest lists"
                              f" {len(op_macs)} ops: is the manifest of another build?", "")
        macs = op_macs[index] if op_macs is not None else None
        ops.append({"op": index, "function": name, "kind": kind, "instructions": instructions,
                    "macs": macs, "instructions_per_mac": None if macs is None else _ratio(instructions, macs)})
        total = by_kind.setdefault(kind, {"kind": kind, "ops": 0, "instructions": 0, "macs": 0})
        total["ops"] += 1
        total["instructions"] += instructions
        if macs is not None:
            total["macs"] += macs
    kinds = sorted(by_kind.values(), key=lambda k: -k["instructions"])
    for total in kinds:
        total["instructions_per_mac"] = _ratio(total["instructions"], total["macs"])
    instructions = sum(op_instructions.values())
    macs = sum(op["macs"] or 0 for op in ops)
    return {"ops": ops, "kinds": kinds, "instructions": instructions,
            "macs": macs if op_macs is not None else None,
            "instructions_per_mac": _ratio(instructions, macs) if op_macs is not None else None}


def render_profile(profile: dict) -> str:
    """The profile as a table: one line per op, then per kind of op."""
    def ipm(value) -> str:
        return "" if value is None else f"{value:.2f}"

    total = profile["instructions"] or 1
    lines = [f"  {'op':<34} {'instructions':>13} {'share':>6} {'MACs':>11} {'instr/MAC':>9}"]
    for op in profile["ops"]:
        macs = "" if op["macs"] is None else str(op["macs"])
        lines.append(f"  {op['function']:<34} {op['instructions']:>13} "
                     f"{100 * op['instructions'] / total:>5.1f}% {macs:>11} {ipm(op['instructions_per_mac']):>9}")
    lines.append("  per kind of op:")
    for kind in profile["kinds"]:
        lines.append(f"  {kind['kind'] + ' x' + str(kind['ops']):<34} {kind['instructions']:>13} "
                     f"{100 * kind['instructions'] / total:>5.1f}% {kind['macs']:>11} "
                     f"{ipm(kind['instructions_per_mac']):>9}")
    macs = "" if profile["macs"] is None else str(profile["macs"])
    lines.append(f"  {'total':<34} {profile['instructions']:>13} {'100.0%':>6} {macs:>11} "
                 f"{ipm(profile['instructions_per_mac']):>9}")
    return "\n".join(lines)


__all__ = ["BEFORE_OPS", "profile_rows", "render_profile"]
