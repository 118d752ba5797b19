"""Build a model's firmware for a board: generate the C, estimate its memory, compile, link.

    result = build_model("kws.tflite", "nucleo-l4r5zi", "out/kws")
    result.estimate.peak_sram_bytes, result.manifest["flash_bytes"]

The build directory is self-contained like the self-test's (`edgekit.firmware.build`): ``src/``
holds the BSP, the harness, the kernels and the generated model; ``Makefile`` rebuilds it with
``make``; ``platformio.ini`` (plus a local PlatformIO platform for emulated boards) builds it with
``pio run``. The manifest ``edgekit-build.json`` carries the expected outputs (the reference
interpreter's) and the estimate, so ``edgekit measure DIR`` can report ``bit_exact`` and the
estimate's error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from edgekit import attention, planner
from edgekit.boards import target_for
from edgekit.costs import graph_macs, op_macs
from edgekit.errors import BuildError
from edgekit.firmware import elf
from edgekit.firmware import platformio
from edgekit.firmware.build import (_HARNESS, _require_tools, bsp_files,
                                    cpu_flags, link_firmware, target_manifest, write_manifest)
from edgekit.firmware.codegen import (GeneratedModel, available_inplace_modes, firmware_plan,
                                      generate)
from edgekit.firmware.estimate import MemoryEstimate, estimate_before_build, estimate_from_elf
from edgekit.ir import DType, Graph

#: a model build's stack reservation: generous, since the measured high-water mark is reported
MODEL_STACK_BYTES = 4 * 1024


@dataclass(frozen=True)
class ModelBuildResult:
    """What a model build produced."""

    directory: Path
    elf_path: Path
    manifest_path: Path
    manifest: dict
    model: GeneratedModel
    estimate: MemoryEstimate


def int4_summary(graph: Graph, kernels: list[str] | None = None) -> dict:
    """The manifest's int4 figures: the ops whose weights are packed int4 and the flash their
    weights take (``int4_weight_bytes``, packed) against the same weights as int8
    (``int4_saved_bytes``: half of the int8 bytes, rounded down per tensor); the op kinds with
    layers of both widths (``int4_split_kinds``: their int8 and int4 kernels are both linked;
    given the build's ``kernels``, CONV_2D only where some int8 one kept an int8 kernel, not
    ``ek_conv2d_s8_via_s4``, which the int4 unit runs)."""
    from edgekit.converters.quantize import layer_bits, split_kinds
    from edgekit.firmware.op_emitters import S8_VIA_S4

    ops = [op for op in graph.ops if len(op.inputs) > 1 and op.inputs[1] is not None
           and graph[op.inputs[1]].dtype == DType.INT4]
    tensors = {op.inputs[1] for op in ops}
    packed = sum(graph[name].nbytes for name in tensors)
    split = set(split_kinds(layer_bits(graph)))
    if kernels is not None and not any(k.startswith("ek_conv2d_") and "_s8" in k
                                       and k != S8_VIA_S4 for k in kernels):
        split.discard("CONV_2D")
    return {"int4_ops": len(ops), "int4_weight_bytes": packed,
            "int4_saved_bytes": sum(graph[name].size for name in tensors) - packed,
            "int4_split_kinds": sorted(split)}


#: files of a model directory (what `edgekit search` writes as DIR/best)
MODEL_DIR_FILE = "model.tflite"
PATCH_DIR_FILE = "patch.json"


def model_file(model: str | Path) -> tuple[Path, str | None]:
    """The ``.tflite`` a MODEL argument names and the patch schedule that comes with it: a
    file is itself (no schedule); a directory holds ``model.tflite`` and maybe ``patch.json``
    (``{"split": tensor or null, "n": N}``), as `edgekit search` writes them."""
    path = Path(model)
    if not path.is_dir():
        return path, None
    tflite = path / MODEL_DIR_FILE
    if not tflite.is_file():
        raise BuildError(f"model directory {str(path)!r} has no {MODEL_DIR_FILE}")
    patch_file = path / PATCH_DIR_FILE
    if not patch_file.is_file():
        return tflite, None
    import json

    try:
        data = json.loads(patch_file.read_text())
        split, n = data.get("split"), data.get("n")
    except (OSError, ValueError, AttributeError) as err:
        raise BuildError(f"{str(patch_file)!r}: not a patch schedule ({err})") from None
    if split is None:
        return tflite, None
    if not isinstance(split, str) or not isinstance(n, int):
        raise BuildError(f"{str(patch_file)!r}: 'split' must be a tensor name and 'n' an int")
    return tflite, f"{split}:{n}x{n}"


def load_graph(model: str | Path | Graph) -> Graph:
    """A Graph from a ``.tflite`` path or a model directory (or the Graph itself)."""
    if isinstance(model, Graph):
        return model
    from edgekit.converters.tflite_reader import load_tflite

    return load_tflite(model_file(model)[0])


def _copy_runtime(src_dir: Path, bsp_names: tuple[str, ...]) -> list[str]:
    """BSP, harness and every kernel into src_dir; returns the files to compile."""
    bsp = resources.files("edgekit.boards") / "bsp"
    c_root = resources.files("edgekit.firmware") / "c"
    copies = [(bsp / name, name) for name in bsp_names]
    copies += [(c_root / "harness" / name, name) for name in _HARNESS]
    kernels = c_root / "kernels"
    copies += [(kernels / entry.name, entry.name) for entry in kernels.iterdir()
               if entry.name.endswith((".c", ".h"))]
    for source, name in copies:
        (src_dir / name).write_bytes(source.read_bytes())
    return [name for _, name in copies if name.endswith((".c", ".S"))]


def _given_plan_costs(plan: planner.MemoryPlan, cpu: str) -> dict:
    """The manifest's objective record of a plan the caller gave: its estimated costs (none
    while no cost table is fitted: bench/fit_kernel_costs.py builds with given plans)."""
    from edgekit.errors import EdgekitError
    from edgekit.kernel_costs import core_family, cost_table
    from edgekit.planner.objective import plan_costs

    family = core_family(cpu)
    record = {"objective": None, "applied": None, "core_family": family,
              "arena_bytes": plan.arena_bytes, "note": "plan given by the caller"}
    try:
        costs = plan_costs(plan, cost_table(family))
    except EdgekitError as err:  # no table (yet) for this family
        return {**record, "estimated_instructions": None, "unmodelled_ops": None,
                "note": f"plan given by the caller; no cost estimate ({err})", "ops": []}
    return {**record, "estimated_instructions": costs["instructions"],
            "unmodelled_ops": costs["unmodelled_ops"], "ops": costs["ops"]}


def build_model(model: str | Path | Graph, board_id: str, out_dir: str | Path, *,
                emulated: bool = True, stack_bytes: int = MODEL_STACK_BYTES, seed: int = 0,
                plan: planner.MemoryPlan | None = None, generated: GeneratedModel | None = None,
                progress=None, patch=None, patch_objective: str = "peak",
                fuse_attention: bool = True, objective: str = "memory") -> ModelBuildResult:
    """Generate, estimate and build the firmware of `model` for `board_id` into `out_dir`.

    ``progress(stage, payload)`` (optional) is called with ``"estimate"`` before the compiler
    runs, so a CLI can print the estimate first. ``generated`` reuses sources already generated.
    ``patch`` is a ``--patch`` value (``auto``, ``none``, ``SPLIT:NxN`` or a
    `edgekit.patching.PatchSchedule`; default: the model directory's ``patch.json``, else
    none): the firmware then runs the patched graph (`edgekit.patching`); ``patch_objective``
    is what ``auto`` minimises. ``fuse_attention`` runs each BATCH_MATMUL -> SOFTMAX ->
    BATCH_MATMUL attention as one row-wise ATTENTION op (`edgekit.attention`; bit-exact, no
    ``[H, T, T]`` scores in the arena); False builds the three ops, for comparison.
    ``objective`` (`edgekit.planner.objective.OBJECTIVES`) weighs the plan's speed against its
    arena on this board (``memory``, the default here: the smallest arena; `edgekit build`
    defaults to ``balanced``); the manifest records it with the plan's estimated instructions.
    """
    if not isinstance(model, Graph):
        model, directory_patch = model_file(model)
        patch = directory_patch if patch is None else patch
    graph = load_graph(model)
    if fuse_attention and generated is None and plan is None:
        graph = attention.fuse_attention(graph)
    target = target_for(board_id, emulated=emulated)
    driver = bsp_files(target)
    patch_info, objective_info = None, None
    if generated is None and plan is None:
        from edgekit.patching import patch_summary, resolve_patch
        from edgekit.planner.objective import objective_planner, objective_summary

        chooser = objective_planner(objective, board_id, stack_bytes, base=firmware_plan)
        if patch is not None:
            resolved = resolve_patch(graph, patch, planner=chooser, objective=patch_objective,
                                     inplace=available_inplace_modes())
            patch_info = patch_summary(resolved)
            plan = resolved.layer_by_layer
            if resolved.best is not None:
                graph, plan = resolved.best.graph, resolved.best.plan
        else:
            plan = chooser(graph)
        objective_info = objective_summary(chooser.last, plan)
    gen = generated or generate(graph, plan, seed=seed)
    if objective_info is None:
        objective_info = _given_plan_costs(gen.plan, target.cpu)
    before = estimate_before_build(gen, target)
    if progress is not None:
        progress("estimate", before)
    _require_tools()

    directory = Path(out_dir).resolve()
    src_dir = directory / "src"
    src_dir.mkdir(parents=True, exist_ok=True)
    sources = _copy_runtime(src_dir, driver)
    for name, text in gen.files.items():
        (src_dir / name).write_text(text)
    sources = sorted(set(sources) | set(gen.sources))
    platformio.write_project(directory, target, cpu_flags(target.cpu, target.fpu))
    elf_path = link_firmware(directory, target, sources, stack_bytes)
    figures = elf.sizes(elf_path)
    if figures.arena_bytes < gen.plan.arena_bytes:
        raise BuildError(f"{elf_path}: the linked arena is {figures.arena_bytes} B, the plan"
                         f" needs {gen.plan.arena_bytes} B")
    after = estimate_from_elf(elf_path, gen, before)
    manifest = {
        **target_manifest(target, payload="model", stack_bytes=stack_bytes, figures=figures,
                          expected_outputs=gen.expected_outputs),
        "model": graph.name,
        "plan_arena_bytes": gen.plan.arena_bytes,
        "estimate_before_build": asdict(before),
        "estimate": asdict(after),
        "test_input_seed": seed,
        "schedule": gen.plan.schedule,
        "kernels": gen.kernels,
        "ops": len(graph.ops),
        # what one inference costs: `edgekit measure` scales its timeout and budget from it
        "work": {"macs": graph_macs(gen.graph),
                 "elements": sum(gen.graph[t].size for op in gen.graph.ops for t in op.outputs)},
        # per op (by graph index): what `edgekit measure --profile` divides its counts by
        "op_macs": [op_macs(op, gen.graph) for op in gen.graph.ops],
        "fused_attention": sum(op.kind == "ATTENTION" for op in graph.ops),
        "weights_bytes": graph.weights_bytes,
        **int4_summary(graph, gen.kernels),
        "patch": patch_info,
        # the plan's objective (memory, speed, balanced) and its estimated instructions per op
        "objective": objective_info,
    }
    manifest_path = write_manifest(directory, manifest)
    return ModelBuildResult(directory, elf_path, manifest_path, manifest, gen, after)
