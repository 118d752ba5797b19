"""`edgekit inspect MODEL.tflite`: what a model holds, as edgekit imports it.

Inputs and outputs (shape, dtype, quantization), the op list with TFLite indices, tensor counts
and the bytes of constant weights (int4 counted packed). A model edgekit cannot read fails with
the importer's error, so this is also the quickest way to ask "will edgekit take this file?".
"""

from __future__ import annotations

import argparse
from collections import Counter

from edgekit.cli.output import emit
from edgekit.converters.tflite_reader import load_tflite
from edgekit.converters.tflite_validate import tflm_findings
from edgekit.errors import UsageError
from edgekit.ir import Graph, Tensor

NAME = "inspect"
HELP = "show a .tflite model's inputs, outputs, ops, tensors and weight bytes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="path of a .tflite file")
    parser.add_argument("--ops", action="store_true", help="list every op (text output)")


def _tensor_row(t: Tensor) -> dict:
    quant = None
    if t.quant is not None:
        quant = {"per_channel": t.quant.per_channel, "axis": t.quant.axis,
                 "scale": t.quant.scale.tolist() if t.quant.per_channel else float(t.quant.scale[0]),
                 "zero_point": (t.quant.zero_point.tolist() if t.quant.per_channel
                                else int(t.quant.zero_point[0]))}
    return {"name": t.name, "shape": list(t.shape), "dtype": t.dtype.value, "bytes": t.nbytes,
            "quant": quant}


def describe(graph: Graph) -> dict:
    """The JSON-ready summary of an imported graph that `inspect` prints."""
    constants = list(graph.constants())
    activations = list(graph.activations())
    return {
        "name": graph.name,
        "inputs": [_tensor_row(graph[n]) for n in graph.inputs],
        "outputs": [_tensor_row(graph[n]) for n in graph.outputs],
        "op_counts": dict(Counter(op.kind for op in graph.ops)),
        "ops": [{"index": i, "kind": op.kind, "name": op.name,
                 "tflite_index": op.attrs.get("tflite_index"),
                 "inputs": op.inputs, "outputs": op.outputs} for i, op in enumerate(graph.ops)],
        "tensor_count": len(graph.tensors),
        "constant_count": len(constants),
        "activation_count": len(activations),
        "weights_bytes": graph.weights_bytes,
        "activation_bytes_total": sum(t.nbytes for t in activations),
        "weight_dtypes": dict(Counter(t.dtype.value for t in constants)),
    }


def _render_tensor(row: dict) -> str:
    q = row["quant"]
    if q is None:
        quant = ""
    elif q["per_channel"]:
        quant = f"  per-channel x{len(q['scale'])} (axis {q['axis']})"
    else:
        quant = f"  scale {q['scale']:.6g} zp {q['zero_point']}"
    return f"  {row['name']}: {row['shape']} {row['dtype']}{quant}"


def _renderer(show_ops: bool):
    def render(p: dict) -> str:
        lines = [f"model {p['name']} ({p['path']})", "inputs:"]
        lines += [_render_tensor(r) for r in p["inputs"]]
        lines.append("outputs:")
        lines += [_render_tensor(r) for r in p["outputs"]]
        counts = ", ".join(f"{k} x{v}" for k, v in p["op_counts"].items())
        lines.append(f"ops: {len(p['ops'])} ({counts})")
        if show_ops:
            lines += [f"  {o['index']:>3} [tflite {o['tflite_index']}] {o['kind']:<18} {o['name']}"
                      for o in p["ops"]]
        lines.append(f"tensors: {p['tensor_count']} ({p['constant_count']} constant,"
                     f" {p['activation_count']} activation)")
        lines.append(f"weights: {p['weights_bytes']} bytes; activations (sum, unplanned):"
                     f" {p['activation_bytes_total']} bytes")
        lines += [f"not TFLite Micro compatible: {f}" for f in p["tflm_incompatible"]]
        return "\n".join(lines)
    return render


def run(args: argparse.Namespace) -> int:
    if not str(args.model).lower().endswith(".tflite"):
        raise UsageError(f"{args.model}: inspect reads .tflite files")
    graph = load_tflite(args.model)
    # inspect shows what a model holds, so TFLite Micro problems are reported, not fatal
    payload = {"path": str(args.model), **describe(graph),
               "tflm_incompatible": tflm_findings(graph)}
    emit(args, NAME, payload, _renderer(args.ops))
    return 0
