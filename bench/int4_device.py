"""Benchmark: int8 vs int4 vs mixed builds of the MLPerf kws and resnet models on a Cortex-M4.

Each model's int8 weights are re-quantized to int4 (every weighted layer) and to two mixed
variants: ``mixed`` (first and last weighted layers int8, the rest int4: where those are a kind
the rest also has, a first CONV_2D, the build links that kind's int8 and int4 kernels) and
``mixed_kinds`` (depthwise and fully-connected layers int8, convolutions int4: no kind in both
widths) with `edgekit.converters.int4_requant` (plain
rounding of the int8 weights: a flash and speed figure, not an accuracy one), written as
`.tflite`, read back, built with `edgekit.firmware.model_build` for the board and run once on
Unicorn (exact instruction count, painted stack and arena high-water marks). Per build:
``flash_bytes`` (linked ELF), ``peak_sram_bytes`` (measured), ``instructions``, ``bit_exact``
(the firmware's outputs equal the reference interpreter's), and the checks of issue 13:

- ``expected_flash_bytes`` = int8 flash - the int4 layers' saved weight bytes (half their int8
  bytes), and ``flash_error`` = measured / expected - 1 (must be within 2%);
- ``instructions_vs_int8`` (must be at most 1.15 on the M4).

    .venv/bin/python bench/int4_device.py [--board mps2-an386] [--models kws resnet] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = REPO_ROOT.parent / "shared" / "models" / "mlperf_tiny"
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "int4_device.json"
MODELS = {"kws": "kws_ref_model.tflite", "resnet": "pretrainedResnet_quant.tflite"}
FLASH_TOLERANCE = 0.02
INSTRUCTION_LIMIT = 1.15


def weighted_layers(graph) -> int:
    return sum(op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") for op in graph.ops)


#: the mixed variant that keeps every kind in one width: depthwise and fully-connected layers
#: (few of a CNN's weights, and the layers least tolerant of 4 bits) int8, convolutions int4
MIXED_KINDS = "mixed:default=4,DEPTHWISE_CONV_2D=8,FULLY_CONNECTED=8"


def variants(graph) -> dict[str, str | None]:
    """Variant name -> `requantize_weights` bits (None: the int8 model as it is)."""
    last = weighted_layers(graph) - 1
    return {"int8": None, "int4": "4", "mixed": f"mixed:default=4,#0=8,#{last}=8",
            "mixed_kinds": MIXED_KINDS}


def run_one(graph, board: str, work: Path) -> dict:
    from edgekit.boards.runners.measure import measure, resolve_firmware
    from edgekit.firmware import elf
    from edgekit.firmware.model_build import build_model

    started = time.time()
    result = build_model(graph, board, work)
    measured = measure(resolve_firmware(result.directory, None), "unicorn", timeout_s=900)
    manifest = result.manifest
    return {
        "bit_exact": measured["bit_exact"],
        "flash_bytes": measured["flash_bytes"],
        "estimate_flash_bytes": result.estimate.flash_bytes,
        # the weight arrays in the linked ELF (symbol sizes), and everything else (code, params)
        "elf_weight_bytes": elf.weight_bytes(result.elf_path),
        "constants_bytes": result.estimate.constants_bytes,
        "peak_sram_bytes": measured["peak_sram_bytes"],
        "estimate_peak_sram_bytes": result.estimate.peak_sram_bytes,
        "instructions": measured["instructions"],
        "weights_bytes": manifest["weights_bytes"],
        "int4_ops": manifest["int4_ops"],
        "int4_weight_bytes": manifest["int4_weight_bytes"],
        "int4_saved_bytes": manifest["int4_saved_bytes"],
        "split_kinds": manifest["int4_split_kinds"],
        "kernels": sorted({k for k in manifest["kernels"] if k}),
        "seconds": round(time.time() - started, 1),
    }


def benchmark(models_dir: Path, models: list[str], board: str, work: Path) -> dict:
    from edgekit.converters.int4_requant import requantize_weights
    from edgekit.converters.tflite_reader import load_tflite, load_tflite_bytes
    from edgekit.converters.tflite_writer import to_bytes

    results = {}
    for model in models:
        graph = load_tflite(models_dir / MODELS[model])
        runs = {}
        for name, bits in variants(graph).items():
            built = graph if bits is None else load_tflite_bytes(
                to_bytes(requantize_weights(graph, bits)))
            runs[name] = {"bits": bits or "8", **run_one(built, board, work / f"{model}-{name}")}
            print(f"{model:7s} {name:11s} flash {runs[name]['flash_bytes']:>8,} B  peak SRAM"
                  f" {runs[name]['peak_sram_bytes']:>7,} B  instructions"
                  f" {runs[name]['instructions']:>12,}  bit_exact {runs[name]['bit_exact']}",
                  flush=True)
        base = runs["int8"]
        for name, run in runs.items():
            expected = base["flash_bytes"] - run["int4_saved_bytes"]
            run["expected_flash_bytes"] = expected
            run["flash_error"] = run["flash_bytes"] / expected - 1
            run["flash_saved_bytes"] = base["flash_bytes"] - run["flash_bytes"]
            run["weight_bytes_saved_in_elf"] = base["elf_weight_bytes"] - run["elf_weight_bytes"]
            # flash other than weights (kernel code mostly: an all-int4 build links only the
            # _s4 kernels, a mixed one both sets)
            run["other_flash_vs_int8"] = ((run["flash_bytes"] - run["elf_weight_bytes"])
                                          - (base["flash_bytes"] - base["elf_weight_bytes"]))
            run["instructions_vs_int8"] = run["instructions"] / base["instructions"]
            run["peak_sram_vs_int8"] = run["peak_sram_bytes"] - base["peak_sram_bytes"]
            run["meets_flash"] = abs(run["flash_error"]) <= FLASH_TOLERANCE
            run["meets_instructions"] = run["instructions_vs_int8"] <= INSTRUCTION_LIMIT
        results[model] = runs
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", default="mps2-an386")
    parser.add_argument("--models", nargs="+", default=sorted(MODELS), choices=sorted(MODELS))
    parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edgekit-int4-") as tmp:
        results = benchmark(args.models_dir, args.models, args.board, Path(tmp))
    gcc = subprocess.run(["arm-none-eabi-gcc", "--version"], capture_output=True, text=True)
    payload = {
        "produced_by": "bench/int4_device.py",
        "board": args.board,
        "runner": "unicorn (exact instruction count, one inference; painted stack high-water)",
        "compiler": gcc.stdout.splitlines()[0] if gcc.returncode == 0 else None,
        "host": platform.platform(),
        "requantization": "edgekit.converters.int4_requant (plain rounding of the int8 weights)",
        "flash_tolerance": FLASH_TOLERANCE,
        "instruction_limit": INSTRUCTION_LIMIT,
        "models": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
