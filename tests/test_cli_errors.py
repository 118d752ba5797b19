"""Every bad input through the CLI: one error path (exit status, `edgekit CMD: error: ...` naming
the file or value, no traceback, and with --json exactly one JSON object with "error"), models
validated as TFLite Micro's Prepare would, data files read with limits, and output paths
checked before any work with atomic writes."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tflite.BuiltinOperator import BuiltinOperator as B
from tflite.TensorType import TensorType as T

import graph_builders as gb
from edgekit.cli import INTERNAL_ERROR_EXIT, main
from edgekit.converters.tflite_writer import save_tflite, to_bytes
from edgekit.ir import Quantization

KWS = Path("/work/shared/models/mlperf_tiny/kws_ref_model.tflite")


def _fails(capsys, argv: list, code: int, *words: str, kind: str | None = None) -> dict:
    """Run `edgekit ARGV --json`: the exit status, the words in stderr's one error line (and
    in the JSON message), no traceback, exactly one JSON object; returns its "error"."""
    argv = [str(a) for a in argv]
    assert main([*argv, "--json"]) == code
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    assert f"edgekit {argv[0]}: error: " in err, err
    obj = json.loads(out)  # exactly one object: json.loads refuses trailing data
    assert set(obj) >= {"schema_version", "error"} and obj["schema_version"] == 1
    error = obj["error"]
    for word in words:
        assert word in err and word in error["message"], (word, err)
    if kind is not None:
        assert error["kind"] == kind, error
    return error


def _model(tmp_path: Path, graph, name: str = "m.tflite") -> Path:
    path = tmp_path / name
    path.write_bytes(to_bytes(graph))
    return path


def _requant(graph, name: str, scale: float, zero_point: int | None = None):
    t = graph[name]
    zp = int(t.quant.zero_point[0]) if zero_point is None else zero_point
    t.quant = Quantization(np.array([scale]), np.array([zp]))
    return graph


def _relu_file(tmp_path: Path, scale=0.1, zero_point=0, ops=True, outputs=True) -> Path:
    """A raw RELU model whose input quantization we choose freely (no IR validation)."""
    tensors = [{"name": "x", "shape": [1, 8], "type": T.INT8, "scale": [scale],
                "zero_point": [zero_point]},
               {"name": "y", "shape": [1, 8], "type": T.INT8, "scale": [0.1]}]
    op_list = [{"op": B.RELU, "inputs": [0], "outputs": [1]}] if ops else []
    path = tmp_path / "raw.tflite"
    path.write_bytes(gb.raw_tflite(tensors, op_list, [0], [1] if outputs else []))
    return path


def _kws_without_operators(tmp_path: Path) -> Path:
    """The MLPerf KWS model with four bytes changed: the operator vector's length set to 0."""
    import tflite

    data = bytearray(KWS.read_bytes())
    subgraph = tflite.Model.GetRootAs(bytes(data), 0).Subgraphs(0)
    start = subgraph._tab.Vector(subgraph._tab.Offset(10))  # field 3: operators
    data[start - 4:start] = bytes(4)
    path = tmp_path / "kws_patched.tflite"
    path.write_bytes(bytes(data))
    return path


# --- one error path ------------------------------------------------------------------------------

def test_usage_errors_exit_2_with_one_json_object(capsys):
    error = _fails(capsys, ["run"], 2, "required: model", kind="UsageError")
    assert error["message"].startswith("the following arguments")
    _fails(capsys, ["plan", KWS, "--alignment", "x"], 2, "--alignment", kind="UsageError")
    assert main(["--json"]) == 2  # no command at all
    out, err = capsys.readouterr()
    assert json.loads(out)["error"]["kind"] == "UsageError" and "edgekit: error:" in err


@pytest.mark.parametrize("raised, code, kind, fields", [
    (ZeroDivisionError("division by zero"), INTERNAL_ERROR_EXIT, "InternalError", {}),
    (PermissionError(13, "Permission denied", "/data/x.npy"), 1, "FileAccessError",
     {"file": "/data/x.npy"}),
])
def test_unexpected_exceptions_are_told_apart(monkeypatch, capsys, raised, code, kind, fields):
    import edgekit.cli.inspect as inspect_cmd

    def boom(args):
        raise raised
    monkeypatch.setattr(inspect_cmd, "run", boom)
    error = _fails(capsys, ["inspect", KWS], code, kind=kind)
    assert {k: error[k] for k in fields} == fields
    if kind == "InternalError":
        assert error["message"].startswith("internal error (a bug in edgekit; -v for the"
                                           " traceback): ZeroDivisionError: division by zero")
    else:
        assert "/data/x.npy" in error["message"]
    assert main(["inspect", str(KWS), "-v"]) == code
    assert "Traceback" in capsys.readouterr().err  # -v shows it


def test_error_fields_go_into_the_json_error(monkeypatch, capsys):
    import edgekit.cli.inspect as inspect_cmd
    from edgekit.errors import MemoryOverflowError

    def overflow(args):
        raise MemoryOverflowError("firmware.elf: SRAM overflows by 96 bytes", "SRAM", 96)
    monkeypatch.setattr(inspect_cmd, "run", overflow)
    error = _fails(capsys, ["inspect", KWS], 1, "overflows", kind="MemoryOverflowError")
    assert error["region"] == "SRAM" and error["overflow_bytes"] == 96


def test_a_real_process_prints_no_traceback(tmp_path):
    bad = tmp_path / "x.npy"
    bad.write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': <garbage")
    proc = subprocess.run([sys.executable, "-c", "import sys; from edgekit.cli import main;"
                           " sys.exit(main())", "run", str(KWS), "-i", str(bad), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert json.loads(proc.stdout)["error"]["kind"] == "DataFileError"
    assert f"input file {str(bad)!r}: the .npy header is damaged" in proc.stderr


# --- models validated before use -----------------------------------------------------------------

@pytest.mark.parametrize("make, words", [
    (_kws_without_operators, ["kws_patched.tflite", "no operators"]),
    (lambda p: _relu_file(p, ops=False), ["raw.tflite", "no operators"]),
    (lambda p: _relu_file(p, outputs=False), ["raw.tflite", "no outputs"]),
    (lambda p: _relu_file(p, zero_point=1 << 40), ["zero point 1099511627776", "[-128, 127]"]),
    (lambda p: _relu_file(p, zero_point=-100000), ["zero point -100000"]),
    (lambda p: _relu_file(p, scale=1e-45), ["'x'", "denormal"]),
    (lambda p: _relu_file(p, scale=0.0), ["'x'", "non-positive"]),
    (lambda p: _relu_file(p, scale=float("nan")), ["'x'", "non-finite"]),
])
def test_damaged_models_are_refused_by_every_command(tmp_path, capsys, make, words):
    model = make(tmp_path)
    for command in (["inspect", model], ["plan", model], ["run", model, "-i", "x.npy"],
                    ["build", model, "--board", "mps2-an386", "-o", tmp_path / "fw"]):
        _fails(capsys, command, 1, *words, kind="ModelFormatError")
    assert not (tmp_path / "fw").exists()


def test_conv_bias_of_the_wrong_rank_is_a_clean_error(tmp_path, capsys):
    q = {"scale": [0.05], "zero_point": [0]}
    tensors = [{"name": "x", "shape": [1, 4, 4, 2], "type": T.INT8, **q},
               {"name": "w", "shape": [3, 1, 1, 2], "type": T.INT8, "scale": [0.01],
                "data": bytes(6)},
               {"name": "b", "shape": [3, 1], "type": T.INT32, "scale": [0.0005],
                "data": bytes(12)},
               {"name": "y", "shape": [1, 4, 4, 3], "type": T.INT8, **q}]
    model = tmp_path / "bias.tflite"
    model.write_bytes(gb.raw_tflite(tensors, [{"op": B.CONV_2D, "inputs": [0, 1, 2],
                                               "outputs": [3]}], [0], [3]))
    np.save(tmp_path / "x.npy", np.zeros((1, 4, 4, 2), np.int8))
    _fails(capsys, ["run", model, "-i", tmp_path / "x.npy"], 1, "bias 'b' has shape [3, 1],"
           " expected 3 values", kind="ModelFormatError")


def test_implausible_shapes_are_refused_before_allocation(tmp_path, capsys):
    tensors = [{"name": "x", "shape": [100000, 100000, 1000], "type": T.INT8, "scale": [0.1]},
               {"name": "y", "shape": [100000, 100000, 1000], "type": T.INT8, "scale": [0.1]}]
    model = tmp_path / "huge.tflite"
    model.write_bytes(gb.raw_tflite(tensors, [{"op": B.RELU, "inputs": [0], "outputs": [1]}],
                                    [0], [1]))
    _fails(capsys, ["plan", model], 1, "implausible shape", kind="ModelFormatError")


def test_mlperf_models_validate_clean():
    from edgekit.converters.tflite_reader import load_tflite
    from edgekit.converters.tflite_validate import tflm_findings

    for path in sorted(KWS.parent.glob("*.tflite")):
        assert tflm_findings(load_tflite(path)) == [], path


# --- parity with TFLite Micro --------------------------------------------------------------------

def _crafted_models() -> dict:
    rng = np.random.default_rng(0)
    return {
        "conv_ok": gb.conv2d(rng),
        "softmax_ok": gb.softmax(rng),
        "add_ok": gb.add(rng),
        "mul_ok": gb.mul(rng),
        "mean_ok": gb.mean(rng),
        "avgpool_ok": gb.pool2d(rng),
        "logistic_ok": gb.logistic(rng),
        "requantize_ok": gb.quantize(rng, from_float=False),
        "softmax_input_scale_1e-8": _requant(gb.softmax(rng), "x", 1e-8),
        "softmax_output_not_1_256": _requant(gb.softmax(rng), "y", 0.1, 0),
        "logistic_output_not_1_256": _requant(gb.logistic(rng), "y", 0.1, 0),
        "logistic_input_scale_1e-12": _requant(gb.logistic(rng), "x", 1e-12),
        "add_output_scale_1e-9": _requant(gb.add(rng), "y", 1e-9),
        "conv_output_scale_1e-12": _requant(gb.conv2d(rng), "y", 1e-12),
        "conv_output_scale_1e30": _requant(gb.conv2d(rng), "y", 1e30),
        "mean_output_scale_1e-15": _requant(gb.mean(rng), "y", 1e-15),
        "mul_output_scale_1e-15": _requant(gb.mul(rng), "y", 1e-15),
        "avgpool_output_requantized": _requant(gb.pool2d(rng), "y", 0.5, 3),
        "maxpool_output_requantized": _requant(gb.pool2d(rng, kind="MAX_POOL_2D"), "y", 0.5, 3),
        "hard_swish_output_scale_1e-15": _requant(gb.hard_swish(rng), "y", 1e-15),
        "relu_output_scale_1e-15": _requant(gb.relu(rng), "y", 1e-15),
        "quantize_output_scale_1e-15": _requant(gb.quantize(rng, from_float=False), "y", 1e-15),
    }


#: load the model into TFLite Micro (AllocateTensors runs every Prepare), invoke it once on the
#: given inputs and save its first output; a refusal prints "refused", an abort kills the process
_TFLM_PROBE = """
import sys, numpy as np
from tflite_micro import runtime
try:
    interp = runtime.Interpreter.from_bytes(open(sys.argv[1], "rb").read())
    for i, path in enumerate(sys.argv[3:]):
        interp.set_input(np.load(path), i)
    interp.invoke()
except Exception as err:
    print("refused", err)
    sys.exit(0)
np.save(sys.argv[2], np.array(interp.get_output(0)))
print("ok")
"""


def _tflm_verdict(path: Path, output: Path, inputs: list[Path]) -> str:
    proc = subprocess.run([sys.executable, "-c", _TFLM_PROBE, str(path), str(output),
                           *map(str, inputs)], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        return "aborted"
    return "ok" if proc.stdout.strip().endswith("ok") else "refused"


def test_whenever_tflite_micro_refuses_we_refuse(tmp_path, capsys):
    """Crafted models through TFLite Micro and `edgekit run` on the same random inputs: where
    TFLite Micro refuses or aborts, we refuse; where we accept, the outputs are equal."""
    pytest.importorskip("tflite_micro")
    rng = np.random.default_rng(7)
    verdicts = {}
    for name, graph in _crafted_models().items():
        path = _model(tmp_path, graph, f"{name}.tflite")
        inputs = []
        for i, n in enumerate(graph.inputs):
            inputs.append(tmp_path / f"{name}_{i}.npy")
            np.save(inputs[-1], rng.integers(-128, 128, graph[n].shape).astype(np.int8))
        tflm = _tflm_verdict(path, tmp_path / f"{name}_tflm.npy", inputs)
        argv = ["run", str(path), *[a for p in inputs for a in ("-i", str(p))]]
        code = main([*argv, "-o", str(tmp_path / f"{name}_ours.npy"), "--json"])
        out, err = capsys.readouterr()
        assert "Traceback" not in err and code in (0, 1), (name, err)
        ours = "ok" if code == 0 else json.loads(out)["error"]["kind"]
        verdicts[name] = (tflm, ours)
        if tflm != "ok":
            assert ours != "ok", (name, tflm, err)
        if tflm == ours == "ok":
            assert np.array_equal(np.load(tmp_path / f"{name}_ours.npy"),
                                  np.load(tmp_path / f"{name}_tflm.npy")), name
        if ours == "TflmIncompatibleError":
            # the flag turns the refusal into a warning (the reference interpreter may still
            # refuse what it cannot run, with its own clean error)
            code = main([*argv, "--allow-tflm-incompatible"])
            warned = capsys.readouterr().err
            assert "warning" in warned and "not TFLite Micro compatible" in warned, warned
            assert code in (0, 1) and "Traceback" not in warned
    print("\n".join(f"{k:34} TFLM {t:8} edgekit {o}" for k, (t, o) in verdicts.items()))
    # the probe tells refusals apart, and the clean models pass both
    assert {v for k, v in verdicts.items() if k.endswith("_ok")} == {("ok", "ok")}
    assert verdicts["softmax_input_scale_1e-8"][0] == "aborted"
    assert verdicts["softmax_output_not_1_256"][0] == "refused"


def test_tflm_incompatible_model_fails_build_and_plan_but_inspect_reports(tmp_path, capsys):
    rng = np.random.default_rng(3)
    model = _model(tmp_path, _requant(gb.softmax(rng), "x", 1e-8))
    error = _fails(capsys, ["build", model, "--board", "mps2-an386", "-o", tmp_path / "fw"], 1,
                   "op 'y' (SOFTMAX)", "input scale 1e-08", "--allow-tflm-incompatible",
                   kind="TflmIncompatibleError")
    assert len(error["findings"]) == 1 and not (tmp_path / "fw").exists()
    _fails(capsys, ["plan", model], 1, "QuantizeMultiplierGreaterThanOne",
           kind="TflmIncompatibleError")
    assert main(["plan", str(model), "--allow-tflm-incompatible", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["tflm_incompatible"]) == 1
    assert main(["inspect", str(model), "--json"]) == 0
    assert "SOFTMAX" in json.loads(capsys.readouterr().out)["tflm_incompatible"][0]


# --- data files read with limits -----------------------------------------------------------------

def _npy_with_header(header: str, data: bytes = b"") -> bytes:
    text = header.encode("latin1")
    pad = 64 - (10 + len(text) + 1) % 64
    text += b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data


@pytest.mark.parametrize("content, words", [
    (_npy_with_header("{'descr': '<i1', 'fortran_order': False, 'shape': (10000000000000,), }"),
     ["10000000000000 elements", "more than the 490"]),
    (_npy_with_header("garbage garbage"), ["header is damaged"]),
    (_npy_with_header("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"),
     ["dtype object is refused"]),
    (_npy_with_header("{'descr': '<i1', 'fortran_order': False, 'shape': (1, 49, 10, 1), }",
                      bytes(100)), ["truncated", "needs 490 bytes"]),
    (b"hello world", ["neither an .npy nor an .npz"]),
])
def test_bad_input_arrays(tmp_path, capsys, content, words):
    bad = tmp_path / "bad.npy"
    bad.write_bytes(content)
    _fails(capsys, ["run", KWS, "-i", bad], 1, "bad.npy", *words, kind="DataFileError")


def test_object_npz_and_oversized_npz_are_refused(tmp_path, capsys):
    np.savez(tmp_path / "obj.npz", a=np.array([{"x": 1}], dtype=object))
    _fails(capsys, ["run", KWS, "-i", tmp_path / "obj.npz"], 1, "obj.npz", "array 'a'",
           "dtype object", kind="DataFileError")
    np.savez(tmp_path / "big.npz", a=np.zeros(491, np.int8))
    _fails(capsys, ["run", KWS, "-i", tmp_path / "big.npz"], 1, "491 elements",
           kind="DataFileError")


def test_convert_data_checks(tmp_path):
    from edgekit.cli.convert import load_calibration, load_eval
    from edgekit.converters.quantize import parse_bits
    from edgekit.errors import CalibrationError, UsageError

    np.save(tmp_path / "scalar.npy", np.float32(3.0))
    with pytest.raises(CalibrationError, match="scalar.npy' holds a scalar"):
        load_calibration(tmp_path / "scalar.npy")
    for labels, bad in (([0, 2, 1 << 40], "label 1099511627776"), ([0, -3, 1], "label -3")):
        np.savez(tmp_path / "eval.npz", x=np.zeros((3, 4), np.float32), y=np.array(labels))
        with pytest.raises(UsageError, match=rf"{bad} is outside \[0, 3\)"):
            load_eval(tmp_path / "eval.npz", classes=3)
    graph = gb.conv2d(np.random.default_rng(0))
    with pytest.raises(UsageError, match="the mixed spec is empty"):
        parse_bits("mixed:", graph)
    with pytest.raises(UsageError, match="key 'default' is given twice"):
        parse_bits("mixed:default=4,default=8", graph)
    assert list(parse_bits("mixed:default=4", graph).values()) == [4]


# --- output paths and atomic writes --------------------------------------------------------------

@pytest.mark.parametrize("target, words", [
    (lambda p: p, ["is a folder"]),
    (lambda p: Path("/proc/edgekit-out.npy"), ["/proc/edgekit-out.npy", "cannot write"]),
    (lambda p: p / "missing" / "y.npy", ["does not exist"]),
    (lambda p: p / "y.txt", ["must end in .npy or .npz"]),
])
def test_run_output_checked_before_the_model_runs(tmp_path, capsys, monkeypatch, target, words):
    import edgekit.cli.run as run_cmd

    def never(*args, **kwargs):
        raise AssertionError("the model ran before the output path was checked")
    monkeypatch.setattr(run_cmd, "Interpreter", never)
    np.save(tmp_path / "x.npy", np.zeros((1, 49, 10, 1), np.int8))
    _fails(capsys, ["run", KWS, "-i", tmp_path / "x.npy", "-o", target(tmp_path)], 2, *words,
           kind="UsageError")


def test_other_commands_check_outputs_first(tmp_path, capsys):
    # convert: the output is refused before the (missing) model is even looked at
    _fails(capsys, ["convert", tmp_path / "nothing.onnx", "--calib", "c.npy", "-o", tmp_path],
           2, "is a folder")
    _fails(capsys, ["plan", KWS, "--plot", "/proc/edgekit.png"], 2, "--plot", "cannot write")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    _fails(capsys, ["build", KWS, "--board", "mps2-an386", "-o", foreign], 2, "not empty")
    assert (foreign / "notes.txt").read_text() == "keep me"
    _fails(capsys, ["build", KWS, "--board", "mps2-an386", "-o", foreign / "notes.txt"], 2,
           "exists and is not a folder")


def test_atomic_writes_leave_the_old_file_or_folder(tmp_path):
    from edgekit.atomic import atomic_directory, atomic_writer

    target = tmp_path / "model.tflite"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_writer(target) as f:
            f.write(b"half a new fi")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    folder = tmp_path / "fw"
    folder.mkdir()
    (folder / "edgekit-build.json").write_text("{}")
    with pytest.raises(RuntimeError):
        with atomic_directory(folder) as tmp:
            (tmp / "half.c").write_text("int")
            raise RuntimeError("make failed")
    assert [p.name for p in folder.iterdir()] == ["edgekit-build.json"]
    with atomic_directory(folder) as tmp:
        (tmp / "firmware.elf").write_bytes(b"\x7fELF")
    assert [p.name for p in folder.iterdir()] == ["firmware.elf"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fw", "model.tflite"]  # no temp left


def test_run_writes_its_output_atomically(tmp_path, capsys):
    graph = gb.conv2d(np.random.default_rng(5))
    model = tmp_path / "conv.tflite"
    save_tflite(graph, model)
    np.save(tmp_path / "x.npy", np.zeros(graph[graph.inputs[0]].shape, np.int8))
    assert main(["run", str(model), "-i", str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "y.npy")]) == 0
    capsys.readouterr()
    assert np.load(tmp_path / "y.npy").shape == graph[graph.outputs[0]].shape
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


def test_convert_bad_data_through_the_cli(tmp_path, capsys):
    pytest.importorskip("onnx")
    from test_cli_convert import _conv_model

    model = _conv_model(tmp_path / "tiny.onnx")  # float (N, 1, 8, 8) -> 3 classes
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).standard_normal((8, 1, 8, 8)).astype(np.float32))
    out = tmp_path / "never.tflite"
    base = ["convert", model, "--calib", calib, "-o", out]
    np.save(tmp_path / "scalar.npy", np.float32(1.0))
    _fails(capsys, ["convert", model, "--calib", tmp_path / "scalar.npy", "-o", out], 1,
           "scalar.npy' holds a scalar", kind="CalibrationError")
    for labels, bad in (([0, 1, 1 << 40], "label 1099511627776"), ([0, -3, 1], "label -3")):
        np.savez(tmp_path / "eval.npz", x=np.zeros((3, 1, 8, 8), np.float32), y=np.array(labels))
        _fails(capsys, [*base, "--eval", tmp_path / "eval.npz"], 2, "eval.npz", bad,
               "outside [0, 3)", kind="UsageError")
    _fails(capsys, [*base, "--bits", "mixed:"], 2, "the mixed spec is empty")
    _fails(capsys, [*base, "--bits", "mixed:default=4,default=8"], 2, "'default' is given twice")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
