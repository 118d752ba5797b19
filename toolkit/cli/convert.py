"""`edgekit convert`: a float ONNX or PyTorch model -> an int8 / int4 `.tflite`.

    edgekit convert model.onnx --calib calib.npy --bits 8 -o model.tflite
    edgekit convert model.pt2 --calib calib.npy --bits 4 --recover -o model.tflite --eval test.npz
    edgekit convert model.onnx --calib calib.npy --bits mixed:default=4,#0=8 -o model.tflite --json

Inputs are read without running anything from the file: ``.onnx`` is parsed as protobuf,
``.pt2`` is read by edgekit's own archive reader (raw tensors and a checked JSON program of aten
ops; never ``torch.export.load`` or an unpickler), and a pickled ``.pt`` /
``.pth`` is only ever opened with ``torch.load(weights_only=True)`` to tell the user what it
holds (a pickle of code is refused, a state dict has no graph to convert).

Data files are ``.npy`` / ``.npz`` read with ``allow_pickle=False``, in the source model's layout
(NCHW for images). ``--calib`` holds one float array (N, ...), or integer token ids (N, T) for
a model whose input is ids into an embedding table (an int64/int32 ONNX input feeding Gather;
ids are checked against the table's rows); ``--eval`` is an ``.npz`` with
``x`` (inputs) and ``y`` (integer labels) and adds float-vs-quantized top-1 to the report.

The output is written to a temporary file beside ``-o`` and renamed, so a failed conversion never
leaves half a file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from edgekit.array_files import DEFAULT_MAX_ELEMENTS, read_arrays
from edgekit.atomic import check_output_path
from edgekit.cli.output import emit, progress
from edgekit.errors import CalibrationError, ModelFormatError, UnsupportedError, UsageError
from edgekit.ir import DType, Graph

NAME = "convert"
HELP = "quantize a float ONNX (.onnx) or PyTorch (.pt2) model to an int8/int4 .tflite"

#: ops whose int4 weights TFLite Micro's reference kernels unpack and run (checked with the
#: tflite_micro host interpreter in tests/test_convert_e2e.py); others run in our firmware only
TFLM_INT4_WEIGHT_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"})
#: ops that carry quantized weights (their bit width is what --bits chooses)
WEIGHTED_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"})
#: pickle-based PyTorch files: never unpickled beyond torch.load(weights_only=True)
PICKLE_SUFFIXES = frozenset({".pt", ".pth", ".pkl", ".pickle", ".bin"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="float model: .onnx, or .pt2 (torch.export.save)")
    parser.add_argument("--calib", type=Path, required=True, metavar="DATA.npy",
                        help="calibration inputs, float32 (N, ...) in the model's layout (NCHW),"
                        " or integer token ids (N, T) for a model that takes ids")
    parser.add_argument("--bits", default="8", metavar="8|4|mixed:SPEC",
                        help="weight bits: 8, 4 (int4, W4A8), or mixed:SPEC per layer, SPEC a"
                        " comma list of KEY=4|8 with KEY an op name, a glob, #i (i-th weighted"
                        " layer), an op kind (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED) or"
                        " default, e.g. mixed:default=4,#0=8 (default 8)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="FILE.tflite",
                        help="where to write the quantized .tflite")
    parser.add_argument("--calibration", dest="method", default="minmax",
                        choices=("minmax", "percentile"), help="activation range estimator: minmax (default) or percentile")
    parser.add_argument("--recover", action="store_true",
                        help="int4 accuracy recovery: clipping chosen by weight MSE, GPTQ rounding of"
                        " conv/linear weights and bias correction from the calibration data"
                        " (int4 layers only)")
    parser.add_argument("--eval", dest="eval_data", type=Path, default=None, metavar="DATA.npz",
                        help="labelled data (x, y) for float-vs-quantized top-1")


# --- loading --------------------------------------------------------------------------------------

def load_float_model(path: Path, verbose: bool = False) -> Graph:
    """Import a float model file into the float IR without running code from it (torch's own
    log output only with ``verbose``)."""
    if not path.is_file():
        raise UsageError(f"model file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from edgekit.converters.onnx_import import load_onnx

        return load_onnx(path)
    if suffix == ".pt2":
        from edgekit.converters.torch_import import load_pt2

        return load_pt2(path, verbose=verbose)
    if suffix in PICKLE_SUFFIXES:
        raise refuse_pickle(path)
    raise UsageError(f"model file {str(path)!r}: unknown format {suffix or '(no suffix)'!r};"
                     " give an .onnx file or a .pt2 file written by torch.export.save")


def refuse_pickle(path: Path) -> Exception:
    """The error for a pickled PyTorch file: opened only with ``weights_only=True`` (which never
    runs code from the file) to say whether it is unsafe or just weights without a graph."""
    import pickle

    from edgekit.extras import require

    torch = require("torch", extra="convert", purpose="reading a pickled PyTorch file")

    try:
        torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return ModelFormatError(f"{path}: refused: this pickle would run code or build objects"
                                f" on load (weights_only=True rejected it: {first}). Export the"
                                " model with torch.export.save (.pt2) or to ONNX")
    except Exception as err:  # truncated zip, not a torch file at all, ...
        return ModelFormatError(f"{path}: not a readable PyTorch file ({type(err).__name__}: {err})")
    return UnsupportedError(f"{path}: holds only tensors (a state dict), not a graph; export the"
                            " model with torch.export.save (.pt2) or to ONNX")


def load_array(path: Path, what: str):
    """Read a ``.npy`` (an array) or ``.npz`` (a dict of arrays) with limits and no pickles."""
    return read_arrays(path, what, DEFAULT_MAX_ELEMENTS)


def load_calibration(path: Path, graph: Graph | None = None) -> np.ndarray:
    """The ``--calib`` array: one float array, or the single array of an ``.npz``; integer
    token ids when ``graph``'s input is int32 (ids into a GATHER table)."""
    data = load_array(path, "calibration")
    if isinstance(data, dict):
        if len(data) != 1:
            raise CalibrationError(f"calibration file {str(path)!r} holds {len(data)}"
                                   f" arrays {list(data)}; give one array (N, ...)")
        data = next(iter(data.values()))
    if data.ndim == 0:
        raise CalibrationError(f"calibration file {str(path)!r} holds a scalar; give an array"
                               " of samples (N, ...)")
    if len(data) == 0:
        raise CalibrationError(f"calibration file {str(path)!r} is empty (shape"
                               f" {list(data.shape)}); give at least one sample (N, ...)")
    if graph is not None and graph[graph.inputs[0]].dtype == DType.INT32:
        return _token_ids(path, data, graph)
    if data.dtype.kind != "f":
        raise CalibrationError(f"calibration file {str(path)!r}: dtype {data.dtype.name},"
                               " expected float32 (the values the float model takes)")
    return data


def _token_ids(path: Path, data: np.ndarray, graph: Graph) -> np.ndarray:
    """Integer calibration ids, each a row of every GATHER table the input indexes."""
    name = graph.inputs[0]
    if data.dtype.kind not in "iu":
        raise CalibrationError(f"calibration file {str(path)!r}: dtype {data.dtype.name}, but"
                               f" model input {name!r} takes integer token ids; save the ids as"
                               " an integer array (N, T), e.g. np.save(path, ids.astype(np.int32))")
    for op in graph.ops:
        if op.kind == "GATHER" and op.inputs[1] == name and data.size:
            rows = graph[op.inputs[0]].shape[0]
            lo, hi = int(data.min()), int(data.max())
            if lo < 0 or hi >= rows:
                bad = lo if lo < 0 else hi
                raise CalibrationError(f"calibration file {str(path)!r}: token id {bad} outside"
                                       f" [0, {rows}) of the embedding table of op {op.name!r}")
    return data


def load_eval(path: Path, classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``--eval`` pair: ``x`` inputs and ``y`` integer labels in [0, classes) from an ``.npz``."""
    data = load_array(path, "eval")
    if not isinstance(data, dict):
        raise UsageError(f"eval file {str(path)!r} must be an .npz with arrays 'x' and 'y'")
    missing = [k for k in ("x", "y") if k not in data]
    if missing:
        raise UsageError(f"eval file {str(path)!r} has no array {missing[0]!r}"
                         f" (it holds {list(data)}); expected 'x' (inputs) and 'y' (labels)")
    x, y = data["x"], data["y"]
    if x.ndim == 0 or y.dtype.kind not in "iu" or y.ndim != 1 or len(y) != len(x) or not len(y):
        raise UsageError(f"eval file {str(path)!r}: 'y' must be integer labels of shape"
                         f" ({len(x) if x.ndim else 'N'},), got {y.dtype.name} {y.shape}")
    if classes is not None and (int(y.min()) < 0 or int(y.max()) >= classes):
        bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
        raise UsageError(f"eval file {str(path)!r}: label {bad} is outside [0, {classes}), the"
                         " model's output classes")
    return x, y


def output_classes(graph: Graph) -> int:
    """How many classes the float model's first output scores: the values per sample, as the
    top-1 functions below take the argmax over them."""
    shape = graph[graph.outputs[0]].shape
    if len(shape) < 2:  # no batch axis: the values themselves are the scores
        return int(np.prod(shape)) if shape else 1
    return int(np.prod(shape[1:]))


# --- reporting ------------------------------------------------------------------------------------

def layer_report(graph: Graph) -> list[dict]:
    """One row per op with weights: its name, kind, weight bits and bytes, TFLM int4 support."""
    rows = []
    for op in graph.ops:
        if op.kind not in WEIGHTED_OPS or len(op.inputs) < 2 or op.inputs[1] is None:
            continue
        w = graph[op.inputs[1]]
        row = {"op": op.name or op.outputs[0], "kind": op.kind, "weight": w.name,
               "bits": w.dtype.bits, "weights_bytes": w.nbytes}
        if w.dtype == DType.INT4:
            row["tflm_int4_kernel"] = op.kind in TFLM_INT4_WEIGHT_OPS
        rows.append(row)
    return rows


def quantized_top1(graph: Graph, x_ir: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 (percent) of the quantized graph on float inputs (NHWC), run by the bit-exact
    reference interpreter one sample at a time (as the device would)."""
    from edgekit.interpreter import Interpreter

    interp = Interpreter(graph)
    t_in = interp.input_tensors[0]
    if t_in.quant is None:  # int32 token ids go in as they are
        q_all = np.asarray(x_ir, dtype=t_in.dtype.numpy)
    else:
        s_in, z_in = float(t_in.quant.scale[0]), int(t_in.quant.zero_point[0])
        q_all = np.clip(np.round(x_ir / s_in) + z_in, t_in.dtype.min, t_in.dtype.max)
        q_all = q_all.astype(t_in.dtype.numpy)
    correct = 0
    for sample, label in zip(q_all, labels):
        out = interp.run([sample[None]])[0]
        correct += int(np.argmax(out.reshape(-1)) == label)
    return 100.0 * correct / max(len(labels), 1)


def float_top1(graph: Graph, x_ir: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 (percent) of the float graph on NHWC inputs."""
    from edgekit.converters.float_exec import run_float

    preds = [np.argmax(run_float(graph, [x_ir[i:i + 256]])[0].reshape(len(x_ir[i:i + 256]), -1), 1)
             for i in range(0, len(x_ir), 256)]
    return float(100.0 * np.mean(np.concatenate(preds) == labels))


def _via_s4_note(kind: str) -> str:
    """For CONV_2D: where the int4 kernels can run every int8 layer, one family is linked."""
    return ("; not where the int4 kernels run every int8 CONV_2D, see docs/firmware.md"
            if kind == "CONV_2D" else "")


def _layer_list(indices: list[int]) -> str:
    return ", ".join(f"#{i}" for i in indices)


def _render(p: dict) -> str:
    lines = [f"{p['model']} -> {p['output']}  ({p['bits']}, calibration {p['calibration']},"
             f" {p['calibration_samples']} samples{', int4 recovery' if p['recover'] else ''})",
             f"weights: {p['weights_bytes']} bytes (float32 {p['float_weights_bytes']} bytes)",
             f"{'op':32} {'kind':20} {'bits':>4} {'bytes':>8}"]
    for row in p["layers"]:
        note = ""
        if row.get("tflm_int4_kernel") is False:
            note = "  TFLite Micro: no int4 kernel (edgekit firmware runs it)"
        lines.append(f"{row['op'][:32]:32} {row['kind']:20} {row['bits']:>4}"
                     f" {row['weights_bytes']:>8}{note}")
    for kind, split in p.get("split_kinds", {}).items():
        lines.append(f"note: {kind} has int8 layers ({_layer_list(split['int8'])}) and int4 layers"
                     f" ({_layer_list(split['int4'])}): the firmware links both its kernel"
                     f" families (more code than either{_via_s4_note(kind)}); {kind}=4 or"
                     f" {kind}=8 in the spec keeps one")
    if p.get("accuracy"):
        acc = p["accuracy"]
        lines.append(f"top-1 on {acc['samples']} samples: float {acc['float_top1']:.2f}%,"
                     f" quantized {acc['quantized_top1']:.2f}% ({acc['delta_points']:+.2f} points)")
    return "\n".join(lines)


# --- the command ----------------------------------------------------------------------------------

def run(args) -> int:
    from edgekit.converters.calibrate import to_ir_layout
    from edgekit.converters.quantize import layer_bits, quantize, split_kinds
    from edgekit.converters.tflite_writer import save_tflite

    check_output_path(args.output, suffixes=(".tflite",))
    # Everything the user gave is read and checked before the (slow) quantization starts.
    float_graph = load_float_model(args.model, verbose=getattr(args, "verbose", False))
    calib = load_calibration(args.calib, float_graph)
    to_ir_layout(float_graph, calib[:1])  # shape/dtype/NaN check, naming the input tensor
    evaluation = (load_eval(args.eval_data, output_classes(float_graph)) if args.eval_data
                  else None)
    if evaluation is not None:
        x_eval_ir = to_ir_layout(float_graph, evaluation[0])

    with progress(total=len(calib), desc="calibrating", unit="sample", args=args) as bar:
        qgraph = quantize(float_graph, calib, bits=args.bits, method=args.method,
                          recover=args.recover, on_batch=bar.update)
    save_tflite(qgraph, args.output)

    payload = {
        "model": str(args.model), "output": str(args.output), "bits": str(args.bits),
        "calibration": args.method, "calibration_samples": int(len(calib)),
        "recover": bool(args.recover),
        "weights_bytes": int(qgraph.weights_bytes),
        "float_weights_bytes": int(float_graph.weights_bytes),
        "file_bytes": args.output.stat().st_size,
        "layers": layer_report(qgraph),
        "split_kinds": {kind: {"int8": eights, "int4": fours}
                        for kind, (eights, fours) in split_kinds(layer_bits(qgraph)).items()},
    }
    if evaluation is not None:
        f_acc = float_top1(float_graph, x_eval_ir, evaluation[1])
        q_acc = quantized_top1(qgraph, x_eval_ir, evaluation[1])
        payload["accuracy"] = {"samples": int(len(evaluation[1])), "float_top1": round(f_acc, 2),
                               "quantized_top1": round(q_acc, 2),
                               "delta_points": round(q_acc - f_acc, 2)}
    emit(args, NAME, payload, _render)
    return 0
