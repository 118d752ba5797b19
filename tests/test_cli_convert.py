"""`edgekit convert`: reports (weights bytes, per-layer bits, accuracy), --json, and every bad
input a clear error with no output file left behind."""

from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgekit.cli import main  # noqa: E402
from edgekit.converters.tflite_reader import load_tflite  # noqa: E402
from edgekit.ir import DType  # noqa: E402


def _conv_model(path, *, extra_node=None, batch_dim=1, height=8):
    """conv3x3(1->4)+ReLU -> GlobalAveragePool -> Flatten -> Gemm(4->3), float32 NCHW."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b"),
             numpy_helper.from_array(rng.standard_normal((3, 4)).astype(np.float32), "fw"),
             numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "fb")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu")]
    last = "r"
    if extra_node is not None:
        nodes.append(helper.make_node(extra_node, ["r"], ["e"], name="odd_node"))
        last = "e"
    nodes += [helper.make_node("GlobalAveragePool", [last], ["g"], name="gap"),
              helper.make_node("Flatten", ["g"], ["f"], name="flat"),
              helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1)]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch_dim, 1, height, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch_dim, 3])
    model = helper.make_model(helper.make_graph(nodes, "tiny", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 13)])
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(1)
    model = _conv_model(tmp_path / "tiny.onnx")
    calib = tmp_path / "calib.npy"
    np.save(calib, rng.standard_normal((32, 1, 8, 8)).astype(np.float32))
    x = rng.standard_normal((40, 1, 8, 8)).astype(np.float32)
    ev = tmp_path / "eval.npz"
    np.savez(ev, x=x, y=rng.integers(0, 3, 40))
    return tmp_path, model, calib, ev


def _run(capsys, *argv):
    code = main(["convert", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("bits, expect", [("8", [8, 8]), ("4", [4, 4]), ("mixed:default=4,fc=8", [4, 8]),
                                          ("mixed:default=8,CONV_2D=4", [4, 8])])
def test_convert_reports_bits_bytes_and_writes_tflite(files, capsys, bits, expect):
    tmp, model, calib, ev = files
    out = tmp / "q.tflite"
    code, stdout, _ = _run(capsys, model, "--calib", calib, "--bits", bits, "-o", out,
                           "--eval", ev, "--json")
    assert code == 0
    report = json.loads(stdout)
    assert [row["bits"] for row in report["layers"]] == expect
    graph = load_tflite(out)
    assert report["weights_bytes"] == graph.weights_bytes
    # conv 36 weights, fc 12: int4 packs two per byte; biases int32 (4 + 3) * 4 bytes
    sizes = {4: {36: 18, 12: 6}, 8: {36: 36, 12: 12}}
    assert [row["weights_bytes"] for row in report["layers"]] == [sizes[expect[0]][36], sizes[expect[1]][12]]
    assert report["weights_bytes"] == sum(r["weights_bytes"] for r in report["layers"]) + 28
    assert [graph[op.inputs[1]].dtype for op in graph.ops if op.kind in ("CONV_2D", "FULLY_CONNECTED")] \
        == [DType.INT4 if b == 4 else DType.INT8 for b in expect]
    assert report["split_kinds"] == {}  # one layer of each kind: never in both widths
    acc = report["accuracy"]
    assert acc["samples"] == 40 and 0 <= acc["quantized_top1"] <= 100
    assert acc["delta_points"] == pytest.approx(acc["quantized_top1"] - acc["float_top1"], abs=0.011)


def test_text_output_names_layers_and_accuracy(files, capsys):
    tmp, model, calib, ev = files
    code, stdout, _ = _run(capsys, model, "--calib", calib, "--bits", "4", "-o", tmp / "q.tflite",
                           "--eval", ev, "--calibration", "percentile", "--recover")
    assert code == 0
    assert "conv" in stdout and "fc" in stdout and "top-1 on 40 samples" in stdout
    assert "int4 recovery" in stdout and "percentile" in stdout


def test_text_output_says_when_a_kind_links_both_kernel_families():
    from edgekit.cli.convert import _render

    payload = {"model": "m.onnx", "output": "m.tflite", "bits": "mixed:default=4,#0=8",
               "calibration": "minmax", "calibration_samples": 8, "recover": False,
               "weights_bytes": 100, "float_weights_bytes": 400, "layers": [],
               "split_kinds": {"CONV_2D": {"int8": [0], "int4": [1, 2]}}}
    text = _render(payload)
    assert "CONV_2D has int8 layers (#0) and int4 layers (#1, #2)" in text
    assert "CONV_2D=4 or CONV_2D=8" in text


def _expect_error(capsys, tmp, argv, *words):
    out = tmp / "never.tflite"
    code, _, err = _run(capsys, *argv, "-o", out)
    assert code != 0, err
    for word in words:
        assert word in err, err
    assert not out.exists()
    assert not [p for p in tmp.iterdir() if p.name.startswith(".never")]  # no temp file left


def test_unsupported_op_names_the_node(files, capsys):
    tmp, _, calib, _ = files
    model = _conv_model(tmp / "odd.onnx", extra_node="Sin")
    _expect_error(capsys, tmp, [model, "--calib", calib], "odd_node", "Sin")


def test_dynamic_shape_is_refused(files, capsys):
    tmp, _, calib, _ = files
    model = _conv_model(tmp / "dyn.onnx", height="H")
    _expect_error(capsys, tmp, [model, "--calib", calib], "dynamic", "'x'")


@pytest.mark.parametrize("make, words", [
    (lambda: np.zeros((4, 1, 9, 8), np.float32), ["calibration", "(N, 1, 8, 8)"]),
    (lambda: np.zeros((4, 1, 8, 8), np.int32), ["calibration", "int32"]),
    (lambda: np.full((4, 1, 8, 8), np.nan, np.float32), ["NaN"]),
    (lambda: np.zeros((0, 1, 8, 8), np.float32), ["empty"]),
])
def test_bad_calibration_data(files, capsys, make, words):
    tmp, model, _, _ = files
    calib = tmp / "bad_calib.npy"
    np.save(calib, make())
    _expect_error(capsys, tmp, [model, "--calib", calib], *words)


def test_corrupt_model_file(files, capsys):
    tmp, _, calib, _ = files
    model = tmp / "corrupt.onnx"
    model.write_bytes(b"\x08\x07garbage" * 10)
    _expect_error(capsys, tmp, [model, "--calib", calib], "corrupt.onnx")


def test_corrupt_calibration_file(files, capsys):
    tmp, model, _, _ = files
    calib = tmp / "calib_bad.npy"
    calib.write_bytes(b"\x93NUMPY garbage")
    _expect_error(capsys, tmp, [model, "--calib", calib], "calib_bad.npy")


def test_eval_file_without_labels(files, capsys):
    tmp, model, calib, _ = files
    ev = tmp / "nolabels.npz"
    np.savez(ev, x=np.zeros((2, 1, 8, 8), np.float32))
    _expect_error(capsys, tmp, [model, "--calib", calib, "--eval", ev], "'y'")


def test_unknown_model_format_and_bad_bits(files, capsys):
    tmp, model, calib, _ = files
    other = tmp / "model.h5"
    other.write_bytes(b"x")
    _expect_error(capsys, tmp, [other, "--calib", calib], ".h5")
    _expect_error(capsys, tmp, [model, "--calib", calib, "--bits", "3"], "--bits")
    _expect_error(capsys, tmp, [model, "--calib", calib, "--bits", "mixed:nosuch=4"], "nosuch")


def test_failed_conversion_keeps_the_previous_output(files, capsys):
    tmp, model, _, _ = files
    out = tmp / "keep.tflite"
    out.write_bytes(b"previous model")
    calib = tmp / "bad.npy"
    np.save(calib, np.zeros((4, 3), np.float32))
    code, _, _ = _run(capsys, model, "--calib", calib, "-o", out)
    assert code != 0 and out.read_bytes() == b"previous model"
