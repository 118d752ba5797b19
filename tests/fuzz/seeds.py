"""The well-formed files the fuzzer starts from, written once into a folder.

Everything is built here from the code under test (no cached artefacts): small int8 `.tflite`
graphs from `graph_builders`, a small float ONNX CNN and its int8 conversion, a `torch.export`
tiny CNN, input/calibration arrays, the shipped board files, the self-test firmware for
mps2-an386 and the console log of a real Unicorn run of it. The MLPerf Tiny models are used by
path.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np

#: small graphs from tests/graph_builders.py: fast to run, plan and build
TINY_TFLITE = ("conv2d", "depthwise_conv2d", "fully_connected", "softmax", "add", "pool2d")
MLPERF = ("kws_ref_model.tflite", "ad01_int8.tflite", "vww_96_int8.tflite",
          "pretrainedResnet_quant.tflite")
SELFTEST_BOARD = "mps2-an386"


def _save_npy(path: Path, array: np.ndarray) -> Path:
    np.save(path, array)
    return path


def _tiny_tflites(folder: Path) -> list[Path]:
    import graph_builders
    from edgekit.converters.tflite_writer import save_tflite

    rng = np.random.default_rng(1)
    paths = []
    for name in TINY_TFLITE:
        graph = getattr(graph_builders, name)(rng)
        path = save_tflite(graph, folder / f"{name}.tflite")
        inputs = {t: graph_builders.random_input(rng, graph[t]) for t in graph.inputs}
        if len(inputs) == 1:
            _save_npy(path.with_suffix(".input.npy"), next(iter(inputs.values())))
        else:
            np.savez(path.with_suffix(".input.npz"), **inputs)
        paths.append(path)
    return paths


def _input_file_for(model: Path, folder: Path) -> None:
    """A random valid input for an MLPerf model (one input each)."""
    from edgekit.converters.tflite_reader import load_tflite
    import graph_builders

    graph = load_tflite(model)
    x = graph_builders.random_input(np.random.default_rng(2), graph[graph.inputs[0]])
    _save_npy(folder / f"{model.stem}.input.npy", x)


def _onnx_cnn(folder: Path) -> Path:
    """A small float CNN (conv, BN, clip, depthwise, residual add, pools, concat, matmul,
    softmax) in ONNX, tests/onnx_cnn.py's, with calibration and eval data."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from onnx_cnn import handmade_cnn_parts

    rng = np.random.default_rng(3)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    nodes, inits = handmade_cnn_parts(rng)
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
                              [numpy_helper.from_array(v, k) for k, v in inits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = folder / "cnn.onnx"
    onnx.save(model, path)
    _save_npy(folder / "cnn.calib.npy", f(8, 3, 8, 8))
    np.savez(folder / "cnn.eval.npz", x=f(6, 3, 8, 8), y=rng.integers(0, 5, 6))
    return path


def _pt2_cnn(folder: Path) -> Path:
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(32, 3)).eval()
    path = folder / "cnn.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(1, 1, 6, 6),)), str(path))
    _save_npy(folder / "cnn_pt2.calib.npy", np.random.default_rng(4).standard_normal((4, 1, 6, 6)).astype(np.float32))
    return path


def _firmware(folder: Path) -> None:
    """The self-test firmware for `SELFTEST_BOARD` and the console of one Unicorn run of it."""
    from edgekit.boards.runners import make_runner
    from edgekit.boards.runners.measure import resolve_firmware
    from edgekit.cli import main
    import tiny_firmware

    build = folder / "selftest"
    code = main(["build", "--selftest", "--board", SELFTEST_BOARD, "-o", str(build)])
    if code != 0:
        raise RuntimeError(f"fuzz seeds: the self-test build failed ({code})")
    firmware = resolve_firmware(build, None)
    result = make_runner(firmware.target, "unicorn").run(firmware.elf, 60)
    (folder / "selftest.console.txt").write_text(result.console)
    for variant in ("forever", "flood"):
        tiny_firmware.build_tiny(folder, variant)


def build_seeds(folder: Path, mlperf_dir: Path) -> Path:
    """Write every seed file into `folder` (created) and an index ``seeds.json``; return it."""
    with contextlib.redirect_stdout(io.StringIO()):  # the CLI's own reports of convert/build
        return _build_seeds(folder, mlperf_dir)


def _build_seeds(folder: Path, mlperf_dir: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    index: dict = {"tflite": [], "mlperf": []}
    for path in _tiny_tflites(folder):
        index["tflite"].append(path.name)
    for name in MLPERF:
        model = mlperf_dir / name
        if model.is_file():
            _input_file_for(model, folder)
            index["mlperf"].append(str(model))
    onnx_path = _onnx_cnn(folder)
    from edgekit.cli import main
    converted = folder / "cnn_int8.tflite"
    if main(["convert", str(onnx_path), "--calib", str(folder / "cnn.calib.npy"), "-o", str(converted)]) == 0:
        x = np.load(folder / "cnn.calib.npy")[:1].transpose(0, 2, 3, 1)
        from edgekit.converters.tflite_reader import load_tflite
        graph = load_tflite(converted)
        scale, zp = graph[graph.inputs[0]].quant.scale[0], graph[graph.inputs[0]].quant.zero_point[0]
        _save_npy(folder / "cnn_int8.input.npy",
                  np.clip(np.round(x / scale) + zp, -128, 127).astype(np.int8))
        index["tflite"].append(converted.name)
    _pt2_cnn(folder)
    boards = folder / "boards"
    boards.mkdir(exist_ok=True)
    from edgekit.boards import BOARDS_DIR
    for board in sorted(BOARDS_DIR.glob("*.json")):
        shutil.copy(board, boards / board.name)
    _firmware(folder)
    (folder / "seeds.json").write_text(json.dumps(index, indent=1))
    return folder


def read_index(folder: Path) -> dict:
    return json.loads((folder / "seeds.json").read_text())
