"""`edgekit run`: run a `.tflite` model on the host with the bit-exact reference interpreter.

    edgekit run model.tflite --input x.npy -o y.npy
    edgekit run model.tflite --input a.npy --input b.npy -o outputs.npz
    edgekit run model.tflite --input inputs.npz --json

Inputs: one ``.npy`` per graph input, in the graph's input order, or a single ``.npz`` whose
keys are the input tensor names (or ``arr_0``, ``arr_1``, ... in order). Output: ``.npy`` for a
model with one output, ``.npz`` (keys = output tensor names) for any number. The output file is
written to a temporary file beside it and renamed, so a failed run never leaves half a file.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from edgekit.array_files import DEFAULT_MAX_ELEMENTS, read_arrays
from edgekit.atomic import atomic_writer, check_output_path
from edgekit.cli.output import emit
from edgekit.cli.tflm_option import add_tflm_option, check_tflm_compatible
from edgekit.converters.tflite_reader import load_tflite
from edgekit.errors import InterpreterError, UsageError
from edgekit.interpreter import Interpreter

NAME = "run"
HELP = "run a .tflite model on the host with the bit-exact int8 reference interpreter"

#: outputs up to this many elements are shown (and put in the JSON) in full
SHOW_VALUES_UP_TO = 64


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="the .tflite model")
    parser.add_argument("--input", "-i", dest="inputs", action="append", type=Path, default=None,
                        metavar="FILE", help=".npy per graph input (repeat, in input order) or"
                        " one .npz keyed by input tensor name")
    parser.add_argument("-o", "--output", type=Path, default=None, metavar="FILE",
                        help="write the outputs: .npy (single output) or .npz (any number)")
    add_tflm_option(parser)


def load_inputs(paths: list[Path], input_names: list[str],
                max_elements: int = DEFAULT_MAX_ELEMENTS) -> list[np.ndarray] | dict:
    """Read ``--input`` files: a list in graph order, or a dict by tensor name (from .npz).
    No array may hold more than `max_elements` (the model's inputs need no more)."""
    if not paths:
        raise UsageError(f"give the model's input(s) with --input FILE; it takes"
                         f" {len(input_names)}: {input_names}")
    if len(paths) > 1 and any(p.suffix == ".npz" for p in paths):
        raise UsageError("an .npz input holds all inputs: give it alone, not with other files")
    values = []
    for path in paths:
        value = read_arrays(path, "input", max_elements)
        if isinstance(value, dict):
            if len(paths) != 1:
                raise UsageError(f"input file {str(path)!r} is an .npz archive; it holds all"
                                 " inputs: give it alone, not with other files")
            return _by_name(path, value, input_names)
        values.append(value)
    return values


def _by_name(path: Path, arrays: dict, input_names: list[str]) -> list[np.ndarray] | dict:
    if set(arrays) <= set(input_names):
        return arrays
    positional = [f"arr_{i}" for i in range(len(arrays))]
    if sorted(arrays) == sorted(positional):
        return [arrays[key] for key in positional]
    unknown = sorted(set(arrays) - set(input_names))
    raise UsageError(f"{str(path)!r}: key {unknown[0]!r} is not an input tensor of the"
                     f" model; its inputs are {input_names}")


def check_output(path: Path, names: list[str]) -> None:
    """Refuse an output path we could not write, before the model runs."""
    check_output_path(path, suffixes=(".npy", ".npz"))
    if path.suffix == ".npy" and len(names) != 1:
        raise UsageError(f"the model has {len(names)} outputs {names}; write them to an .npz")


def save_outputs(path: Path, names: list[str], values: list[np.ndarray]) -> None:
    """Write ``values`` to ``path`` (.npy or .npz) atomically: temp file + rename."""
    check_output(path, names)
    with atomic_writer(path) as f:
        if path.suffix == ".npy":
            np.save(f, values[0], allow_pickle=False)
        else:
            np.savez(f, **dict(zip(names, values)))


def _describe(name: str, value: np.ndarray) -> dict:
    info = {"name": name, "shape": list(value.shape), "dtype": value.dtype.name}
    if value.size <= SHOW_VALUES_UP_TO:
        info["values"] = value.reshape(-1).tolist()
    return info


def run(args) -> int:
    graph = load_tflite(args.model)
    findings = check_tflm_compatible(graph, args, str(args.model))
    if args.output is not None:
        check_output(args.output, list(graph.outputs))
    interp = Interpreter(graph)
    # no input array may be larger than all the model's inputs together
    budget = sum(max(graph[name].size, 1) for name in graph.inputs)
    inputs = load_inputs(args.inputs or [], list(graph.inputs), budget)
    start = time.perf_counter()
    try:
        outputs = interp.run(inputs)
    except InterpreterError as err:
        raise InterpreterError(f"{args.model}: {err}") from None
    elapsed_ms = (time.perf_counter() - start) * 1000.0
    if args.output is not None:
        save_outputs(args.output, list(graph.outputs), outputs)
    payload = {
        "model": str(args.model),
        "inputs": [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype.numpy.name}
                   for t in interp.input_tensors],
        "outputs": [_describe(name, value) for name, value in zip(graph.outputs, outputs)],
        "output_file": None if args.output is None else str(args.output),
        "ops": len(graph.ops),
        "host_time_ms": round(elapsed_ms, 3),
        "tflm_incompatible": findings,
    }
    emit(args, NAME, payload, _render)
    return 0


def _render(payload: dict) -> str:
    lines = [f"{payload['model']}: {payload['ops']} ops on the host reference interpreter"
             f" ({payload['host_time_ms']:.1f} ms)"]
    for out in payload["outputs"]:
        line = f"  output {out['name']!r}: {out['dtype']} {tuple(out['shape'])}"
        if "values" in out:
            line += f" = {out['values']}"
        lines.append(line)
    if payload["output_file"]:
        lines.append(f"  written to {payload['output_file']}")
    return "\n".join(lines)
