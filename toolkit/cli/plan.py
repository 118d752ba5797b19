"""`edgekit plan MODEL.tflite`: the static arena, its lower bound, the per-op live memory, and
whether it fits a board."""

from __future__ import annotations

import argparse

from edgekit.atomic import check_output_path
from edgekit.cli.output import emit, progress
from edgekit.cli.tflm_option import add_tflm_option, check_tflm_compatible
from edgekit.patching import OBJECTIVES
from edgekit.planner import DEFAULT_ALIGNMENT, DEFAULT_STRATEGY, STRATEGIES, MemoryPlan, plan
from edgekit.planner.objective import DEFAULT_OBJECTIVE, OBJECTIVES

NAME = "plan"
HELP = "plan the activation arena of a model: arena, lower bound, per-op memory, board fit"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model file (.tflite)")
    parser.add_argument("--board", help="board id (see `edgekit boards`): report fit and margin")
    parser.add_argument("--strategy", choices=sorted(STRATEGIES), default=DEFAULT_STRATEGY,
                        help=f"offset strategy (default {DEFAULT_STRATEGY}; greedy = TFLite Micro's)")
    parser.add_argument("--alignment", type=int, default=DEFAULT_ALIGNMENT,
                        help=f"offset alignment in bytes (default {DEFAULT_ALIGNMENT})")
    parser.add_argument("--no-inplace", dest="inplace", action="store_false",
                        help="never let an output overwrite an input")
    parser.add_argument("--no-reorder", dest="reorder", action="store_false",
                        help="run the ops in the model's order")
    parser.add_argument("--patch", default="none", metavar="auto|none|SPLIT:NxN",
                        help="patch-based inference of the first stage (MCUNetV2): auto searches"
                        " the split and the tile count, SPLIT:NxN runs the ops up to op index (or"
                        " tensor) SPLIT in NxN tiles; reports the peak with and without the input"
                        " and the MACs recomputed (default none: layer by layer)")
    parser.add_argument("--patch-objective", choices=OBJECTIVES,
                        default="peak", help="what --patch auto minimises: the peak with the"
                        " input in SRAM (default) or without it (MCUNetV2's figure)")
    parser.add_argument("--no-fuse-attention", dest="fuse_attention", action="store_false",
                        help="plan attention as BATCH_MATMUL -> SOFTMAX -> BATCH_MATMUL with its"
                        " [H, T, T] scores (default: fused row-wise, as `edgekit build` runs it)")
    add_objective_option(parser)
    parser.add_argument("--plot", metavar="FILE.png",
                        help="write the per-op live-memory bar chart to this file")
    add_tflm_option(parser)


def add_objective_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--objective", choices=OBJECTIVES, default=DEFAULT_OBJECTIVE,
                        help="memory: the smallest arena; speed: the fewest estimated"
                        " instructions (no in-place mode slower than the plain kernel);"
                        f" balanced (default): the fastest plan that fits --board's SRAM with"
                        " the stack and a margin (memory without --board)")


def render_objective(o: dict, label: str = "objective      ") -> list[str]:
    """The objective's lines; ``label`` heads the first, the note is indented to match."""
    applied = "" if o["applied"] == o["objective"] else f" -> {o['applied']}"
    budget = ("" if o.get("budget_bytes") is None else
              f", budget {o['budget_bytes']:,} B ({'fits' if o['fits_budget'] else 'over'})")
    unmodelled = f", {o['unmodelled_ops']} ops unmodelled" if o["unmodelled_ops"] else ""
    lines = [f"{label}{o['objective']}{applied}: ~{o['estimated_instructions']:,}"
             f" instructions estimated ({o['core_family']} cost model{unmodelled}){budget}"]
    if o["note"]:
        lines.append(f"{' ' * len(label)}{o['note']}")
    return lines


def run(args) -> int:
    from edgekit.converters.tflite_reader import load_tflite

    from edgekit.patching import patch_summary, resolve_patch

    graph = load_tflite(args.model)
    findings = check_tflm_compatible(graph, args, str(args.model))
    if args.fuse_attention:
        from edgekit.attention import fuse_attention

        graph = fuse_attention(graph)
    if args.plot:
        check_output_path(args.plot, suffixes=(".png", ".svg", ".pdf"), what="--plot")
    options = dict(strategy=args.strategy, alignment=args.alignment, inplace=args.inplace)
    from edgekit.firmware.model_build import MODEL_STACK_BYTES
    from edgekit.planner.objective import objective_planner, objective_summary

    planner = objective_planner(args.objective, args.board, MODEL_STACK_BYTES)
    patched = resolve_patch(graph, args.patch, reorder=args.reorder, **options, planner=planner,
                            objective=args.patch_objective,
                            progress=lambda items, total: progress(
                                items, total=total, desc="patch schedules", args=args))
    result = patched.best.plan if patched.best else patched.layer_by_layer
    payload = {"model": str(args.model), **_summary(result), "patch": patch_summary(patched),
               "objective": objective_summary(planner.last, result),
               "fused_attention": sum(op.kind == "ATTENTION" for op in graph.ops),
               "tflm_incompatible": findings}
    sram = None
    if args.board:
        payload["board"] = _fit(args.board, result.arena_bytes)
        sram = payload["board"]["arena_region_bytes"]
    if args.plot:
        from edgekit.planner.plot import plot_profile

        label = f"{args.board} SRAM" if args.board else "board SRAM"
        payload["plot"] = str(plot_profile(result, args.plot, sram_bytes=sram, sram_label=label))
    emit(args, NAME, payload, _render)
    return 0


def _summary(result: MemoryPlan) -> dict:
    from edgekit.firmware.model_build import int4_summary

    return {
        "graph": result.graph.name,
        "strategy": result.strategy,
        "alignment": result.alignment,
        "inplace": result.inplace,
        "reorder": result.reorder,
        "arena_bytes": result.arena_bytes,
        "lower_bound_bytes": result.lower_bound_bytes,
        "weights_bytes": result.weights_bytes,
        **int4_summary(result.graph),
        "schedule": result.schedule,
        "reordered": result.reordered,
        "profile": [{"step": p.step, "op": p.op, "kind": p.kind, "name": p.name,
                     "live_bytes": p.live_bytes, "scratch_bytes": p.scratch_bytes}
                    for p in result.profile],
        "buffers": [{"tensor": b.name, "offset": b.offset, "size": b.size, "first": b.first,
                     "last": b.last, "alias_of": b.alias_of, "inplace_mode": b.inplace_mode}
                    for b in result.buffers.values()],
        "scratch": [{"op": s.op, "step": s.step, "offset": s.offset, "size": s.size}
                    for s in result.scratch.values()],
        "fusions": [vars(f) for f in result.fusions.values()],
    }


def _inplace_by_op(p: dict) -> dict[int, str]:
    """Op index -> how it runs in place (its mode; fused conv+ADD pairs name each other)."""
    by_output = {b["tensor"]: b for b in p["buffers"]}
    how: dict[int, str] = {}
    for row in p["profile"]:
        buf = by_output.get(row["name"])
        if buf is not None and buf["inplace_mode"]:
            how[row["op"]] = buf["inplace_mode"]
    for f in p.get("fusions", []):
        how[f["conv"]] = f"conv_add_skip: with ADD op {f['add']}"
        how[f["add"]] = f"conv_add_skip: in conv op {f['conv']}"
    return how


def _fit(board_id: str, arena_bytes: int) -> dict:
    from edgekit.boards import load_board

    board = load_board(board_id)
    region = board.region_for("arena")
    return {
        "id": board.id,
        "sram_bytes": board.sram_bytes,
        "arena_region": region.name,
        "arena_region_bytes": region.size,
        "fits": arena_bytes <= region.size,
        # the arena alone: .data, .bss and the stack come out of the same region
        "margin_bytes": region.size - arena_bytes,
    }


def _render_patch(patch: dict) -> list[str]:
    base = (f"{patch['layer_by_layer_arena_bytes']:,} B layer by layer"
            f" ({patch['layer_by_layer_peak_bytes_without_input']:,} B without the input)")
    if patch["schedule"] is None:
        tried = f", best of {patch['tried']} patch schedules tried" if patch["tried"] else ""
        return [f"patches        none: {base}{tried}"]
    return [
        f"patches        {patch['n']}x{patch['n']} tiles up to {patch['split']!r}",
        f"               peak {patch['arena_bytes']:,} B ({patch['peak_bytes_without_input']:,} B"
        f" without the input) vs {base}: {patch['reduction']:.2f}x"
        f" ({patch['reduction_without_input']:.2f}x without the input)",
        f"               MACs {patch['macs']:,} vs {patch['base_macs']:,}"
        f" (+{100 * patch['mac_overhead']:.1f}% recomputed halos), {patch['ops']} ops",
    ]


def _render(p: dict) -> str:
    lines = [
        f"model          {p['model']}",
        f"strategy       {p['strategy']} (alignment {p['alignment']}, in-place"
        f" {'on' if p['inplace'] else 'off'}, reorder {'on' if p['reorder'] else 'off'}"
        f"{', reordered' if p['reordered'] else ''})",
        f"arena          {p['arena_bytes']:>10,} B",
        f"lower bound    {p['lower_bound_bytes']:>10,} B"
        f"  (arena / bound = {p['arena_bytes'] / max(p['lower_bound_bytes'], 1):.3f})",
        f"weights        {p['weights_bytes']:>10,} B"
        + (f"  ({p['int4_ops']} int4 layers packed: {p['int4_saved_bytes']:,} B less than int8)"
           if p.get("int4_ops") else ""),
    ]
    if p.get("int4_split_kinds"):
        lines.append(f"               int8 and int4 layers of {', '.join(p['int4_split_kinds'])}:"
                     " both kernel families are linked (CONV_2D: unless the int4 kernels run"
                     " every int8 one; the build's manifest says)")
    if "board" in p:
        b = p["board"]
        verdict = "fits" if b["fits"] else "DOES NOT FIT"
        lines.append(f"board          {b['id']}: {verdict} in {b['arena_region']}"
                     f" ({b['arena_region_bytes']:,} B), margin {b['margin_bytes']:,} B"
                     " before stack and static data")
    lines += _render_patch(p["patch"])
    lines += render_objective(p["objective"])
    lines.append("")
    lines.append(f"{'step':>4} {'op':>4}  {'kind':<18} {'live B':>9} {'scratch':>8}"
                 f" {'est. instr':>11}  in place")
    peak = p["lower_bound_bytes"]
    how = _inplace_by_op(p)
    cost = {row["op"]: row["instructions"] for row in p["objective"]["ops"]}
    for row in p["profile"]:
        mark = "  <- peak" if row["live_bytes"] == peak else ""
        est = cost.get(row["op"])
        lines.append(f"{row['step']:>4} {row['op']:>4}  {row['kind']:<18} {row['live_bytes']:>9,}"
                     f" {row['scratch_bytes']:>8,} {'' if est is None else f'{est:,}':>11}"
                     f"  {how.get(row['op'], ''):<29}{mark}".rstrip())
    if "plot" in p:
        lines.append(f"\nplot written to {p['plot']}")
    return "\n".join(lines)
