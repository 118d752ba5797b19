"""`edgekit build MODEL.tflite --board B -o DIR`: generate, estimate and build a model's firmware.
`edgekit build --selftest --board B -o DIR` builds the harness self-test instead."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgekit.atomic import atomic_directory, check_output_path
from edgekit.boards.linker import DEFAULT_STACK_BYTES
from edgekit.cli.output import emit
from edgekit.cli.plan import add_objective_option, render_objective
from edgekit.cli.tflm_option import add_tflm_option, check_tflm_compatible
from edgekit.errors import UsageError
from edgekit.patching import OBJECTIVES

NAME = "build"
HELP = "generate and build a model's firmware (or the self-test) for a board with arm-none-eabi-gcc"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", metavar="MODEL",
                        help="the .tflite model to generate firmware for, or a model directory"
                        " (model.tflite and patch.json, as `edgekit search` writes DIR/best);"
                        " omit with --selftest")
    parser.add_argument("--selftest", action="store_true",
                        help="build the self-test payload (an int8 convolution with a known answer)")
    parser.add_argument("--board", required=True, help="board id (see `edgekit boards`)")
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="build directory (sources, Makefile, ELF, edgekit-build.json)")
    parser.add_argument("--hardware", action="store_true",
                        help="for a real board: build for the hardware itself, not its emulated stand-in")
    parser.add_argument("--stack-bytes", type=int, default=None,
                        help=f"stack reservation in bytes (default {DEFAULT_STACK_BYTES} for the "
                             "self-test, 4096 for a model)")
    parser.add_argument("--patch", default=None, metavar="auto|none|SPLIT:NxN",
                        help="patch-based inference of the first stage, as for `edgekit plan`"
                        " (default: the model directory's patch.json, else none)")
    parser.add_argument("--patch-objective", choices=OBJECTIVES,
                        default="peak", help="what --patch auto minimises (as for `edgekit plan`)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the random test input embedded in a model firmware (default 0)")
    parser.add_argument("--no-fuse-attention", dest="fuse_attention", action="store_false",
                        help="keep attention as BATCH_MATMUL -> SOFTMAX -> BATCH_MATMUL with its"
                        " [H, T, T] scores in the arena (default: fused, one score row at a time)")
    add_objective_option(parser)
    add_tflm_option(parser)


def _refuse_foreign_folder(path: Path) -> None:
    """A build replaces its folder as a whole: only an empty folder or an earlier build's."""
    from edgekit.firmware.build import MANIFEST_NAME

    if path.is_dir() and any(path.iterdir()) and not (path / MANIFEST_NAME).is_file():
        raise UsageError(f"output folder {str(path)!r} is not empty and holds no {MANIFEST_NAME}"
                         " (not an earlier build): a build replaces its folder, so give a new or"
                         " empty one")


def _moved(payload: dict, tmp: Path, final: Path) -> dict:
    """The build's paths as they are after the temporary folder became `final`."""
    def fix(value):
        if isinstance(value, (str, Path)) and str(value).startswith(str(tmp)):
            return str(final) + str(value)[len(str(tmp)):]
        return value
    return {k: fix(v) for k, v in payload.items()}


def _render_selftest(payload: dict) -> str:
    host = "" if payload["host_board"] == payload["board"] else f" (runs on stand-in {payload['host_board']})"
    return "\n".join([
        f"built {payload['payload']} for {payload['board']}{host}",
        f"  elf:         {payload['elf_path']}",
        f"  flash:       {payload['flash_bytes']} bytes",
        f"  static RAM:  {payload['static_ram_bytes']} bytes (arena {payload['arena_bytes']}, "
        f"stack reserved {payload['stack_size_bytes']})",
        f"  manifest:    {payload['manifest_path']}",
        f"  rebuild:     make -C {payload['directory']}",
    ])


def render_estimate_before(before: dict) -> str:
    return (f"estimate before the build: arena {before['arena_bytes']} B (planner), constants "
            f"{before['constants_bytes']} B in flash; compiling...")


def _render_model(payload: dict) -> str:
    host = "" if payload["host_board"] == payload["board"] else f" (runs on stand-in {payload['host_board']})"
    est = payload["estimate"]
    return "\n".join([
        f"built model {payload['model']} ({payload['ops']} ops) for {payload['board']}{host}",
        f"  elf:         {payload['elf_path']}",
        f"  flash:       {payload['flash_bytes']} bytes (weights {payload['weights_bytes']})",
        f"  static RAM:  {payload['static_ram_bytes']} bytes (arena {payload['plan_arena_bytes']} "
        f"as planned)",
        *_patch_lines(payload.get("patch")),
        *render_objective(payload["objective"], label="  objective:   "),
        f"  estimate:    peak SRAM {est['peak_sram_bytes']} bytes = static {est['static_ram_bytes']}"
        f" + stack bound {est['stack_bytes']} ({' > '.join(est['stack_path'])})",
        f"  manifest:    {payload['manifest_path']}",
        f"  measure:     edgekit measure {payload['directory']}",
        f"  rebuild:     make -C {payload['directory']}   (or: pio run -d {payload['directory']})",
    ])


def _patch_lines(patch: dict | None) -> list[str]:
    if not patch:
        return []
    if patch["schedule"] is None:
        return [f"  patches:     none (layer by layer {patch['layer_by_layer_arena_bytes']} B is"
                " the smallest)"]
    return [f"  patches:     {patch['n']}x{patch['n']} tiles up to op output {patch['split']!r}:"
            f" arena {patch['arena_bytes']} B vs {patch['layer_by_layer_arena_bytes']} B layer by"
            f" layer ({patch['reduction']:.2f}x), +{100 * patch['mac_overhead']:.1f}% MACs"]


def run(args: argparse.Namespace) -> int:
    if args.selftest == bool(args.model):
        raise UsageError("give a MODEL.tflite to build, or --selftest (not both)")
    # the firmware folder is built beside the target and renamed onto it only when complete
    final = check_output_path(args.output, directory=True).resolve()
    _refuse_foreign_folder(final)
    if args.selftest:
        from edgekit.firmware.build import build_selftest

        with atomic_directory(final) as tmp:
            result = build_selftest(args.board, tmp, emulated=not args.hardware,
                                    stack_bytes=args.stack_bytes or DEFAULT_STACK_BYTES)
        payload = {**result.manifest, "directory": result.directory, "elf_path": result.elf_path,
                   "manifest_path": result.manifest_path}
        emit(args, NAME, _moved(payload, tmp, final), _render_selftest)
        return 0

    from dataclasses import asdict

    from edgekit.firmware.model_build import MODEL_STACK_BYTES, build_model, load_graph

    findings = check_tflm_compatible(load_graph(args.model), args, str(args.model))

    def progress(stage: str, estimate) -> None:
        if stage == "estimate" and not args.json:
            print(render_estimate_before(asdict(estimate)), flush=True)

    with atomic_directory(final) as tmp:
        result = build_model(args.model, args.board, tmp, emulated=not args.hardware,
                             stack_bytes=args.stack_bytes or MODEL_STACK_BYTES, seed=args.seed,
                             progress=progress, patch=args.patch,
                             patch_objective=args.patch_objective,
                             fuse_attention=args.fuse_attention, objective=args.objective)
    payload = {**result.manifest, "directory": result.directory, "elf_path": result.elf_path,
               "manifest_path": result.manifest_path, "tflm_incompatible": findings}
    emit(args, NAME, _moved(payload, tmp, final), _render_model)
    sys.stdout.flush()
    return 0
