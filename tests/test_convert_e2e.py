"""End to end: a PyTorch model, saved as ONNX and as a torch.export ``.pt2``, converted by
`edgekit convert` to int8 and to int4 weights, runs bit-exact in TFLite Micro and `edgekit run`,
within 1 LSB in LiteRT's reference kernels, and (int8) through `edgekit build` + `edgekit measure`
on the emulated mps2-an386 (Cortex-M4) with the firmware's output bytes equal to the reference.

The model covers the ops the importer promises: conv + batch-norm (folded) + ReLU, max pool,
depthwise conv + ReLU6, pointwise conv + hard-swish, residual add, average pool, global pool,
flatten, linear, softmax.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from oracle_runners import LiteRTRunner, TflmRunner  # noqa: E402

from edgekit.cli import main  # noqa: E402
from edgekit.cli.convert import TFLM_INT4_WEIGHT_OPS  # noqa: E402
from edgekit.converters.tflite_reader import load_tflite  # noqa: E402
from edgekit.ir import DType  # noqa: E402

INPUT_SHAPE = (1, 2, 12, 12)  # NCHW


class _Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(2, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
                                        torch.nn.ReLU(), torch.nn.MaxPool2d(2))
        self.dw = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1, groups=8), torch.nn.ReLU6())
        self.pw = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 1), torch.nn.Hardswish())
        self.head = torch.nn.Sequential(torch.nn.AvgPool2d(2), torch.nn.AdaptiveAvgPool2d(1),
                                        torch.nn.Flatten(), torch.nn.Linear(8, 5), torch.nn.Softmax(1))

    def forward(self, x):
        s = self.stem(x)
        return self.head(self.pw(self.dw(s)) + s)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """The float model as .onnx and .pt2, calibration data, and the float model itself."""
    from edgekit.converters.torch_import import export_onnx_bytes

    tmp = tmp_path_factory.mktemp("e2e")
    torch.manual_seed(0)
    model = _Block().eval()
    with torch.no_grad():  # non-trivial batch-norm statistics so folding matters
        bn = model.stem[1]
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    example = torch.randn(*INPUT_SHAPE)
    (tmp / "model.onnx").write_bytes(export_onnx_bytes(model, example))
    torch.export.save(torch.export.export(model, (example,)), str(tmp / "model.pt2"))
    calib = np.random.default_rng(0).standard_normal((48, *INPUT_SHAPE[1:])).astype(np.float32)
    np.save(tmp / "calib.npy", calib)
    return tmp, model


def _convert(tmp: Path, source: str, bits: str) -> tuple[Path, list[str]]:
    out = tmp / f"{Path(source).stem}-{bits}.tflite"
    args = ["convert", str(tmp / source), "--calib", str(tmp / "calib.npy"), "--bits", bits,
            "-o", str(out), "--json"]
    return out, args


@pytest.mark.parametrize("bits", ["8", "4"])
@pytest.mark.parametrize("source", ["model.onnx", "model.pt2"])
def test_converted_model_is_bit_exact_in_tflm_and_edgekit_run(sources, capsys, source, bits):
    tmp, float_model = sources
    out, args = _convert(tmp, source, bits)
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    graph = load_tflite(out)
    weights = [graph[op.inputs[1]] for op in graph.ops
               if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    assert len(weights) == 4
    assert {w.dtype for w in weights} == {DType.INT4 if bits == "4" else DType.INT8}
    if bits == "4":  # what the report promises about TFLite Micro's int4 kernels
        assert all(row["tflm_int4_kernel"] == (row["kind"] in TFLM_INT4_WEIGHT_OPS)
                   for row in report["layers"])

    tflm, litert = TflmRunner(out), LiteRTRunner(out, reference=True)
    rng = np.random.default_rng(7)
    t_in = graph[graph.inputs[0]]
    for i in range(8):
        x = rng.integers(-128, 128, size=t_in.shape, dtype=np.int8)
        np.save(tmp / "x.npy", x)
        assert main(["run", str(out), "--input", str(tmp / "x.npy"), "-o", str(tmp / "y.npy")]) == 0
        ours = np.load(tmp / "y.npy")
        np.testing.assert_array_equal(ours, tflm([x])[0], err_msg=f"{source} int{bits} sample {i}")
        lite = litert([x])[0]
        assert np.abs(ours.astype(np.int32) - lite.astype(np.int32)).max() <= 1
    capsys.readouterr()

    # the quantized model computes what the float model does (dequantized softmax outputs)
    from edgekit.interpreter import Interpreter
    xf = np.random.default_rng(3).standard_normal((16, *INPUT_SHAPE[1:])).astype(np.float32)
    interp = Interpreter(graph)
    s, z = float(t_in.quant.scale[0]), int(t_in.quant.zero_point[0])
    q_out = graph[graph.outputs[0]].quant
    worst = 0.0
    for sample in xf:
        q = np.clip(np.round(sample.transpose(1, 2, 0) / s) + z, -128, 127).astype(np.int8)[None]
        y = (interp.run([q])[0].astype(np.float64) - q_out.zero_point[0]) * q_out.scale[0]
        with torch.no_grad():
            ref = float_model(torch.from_numpy(sample[None])).numpy()
        worst = max(worst, float(np.abs(y - ref).max()))
    assert worst < (0.05 if bits == "8" else 0.25), worst


@pytest.mark.hil
@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
                    reason="arm-none-eabi-gcc or qemu-system-arm is not installed")
@pytest.mark.parametrize("bits", ["8", "4"])
@pytest.mark.parametrize("source", ["model.onnx", "model.pt2"])
def test_conversion_builds_and_measures_bit_exact_on_emulated_m4(sources, capsys, source, bits):
    tmp, _ = sources
    out, args = _convert(tmp, source, bits)
    assert main(args) == 0
    capsys.readouterr()
    fw = tmp / f"fw-{Path(source).stem}-{bits}"
    assert main(["build", str(out), "--board", "mps2-an386", "-o", str(fw), "--json"]) == 0
    capsys.readouterr()
    manifest = json.loads((fw / "edgekit-build.json").read_text())
    # int4 weights stay packed in flash and run through the _s4 kernels
    assert (manifest["int4_saved_bytes"] > 0) == (bits == "4")
    assert any("_s4" in k for k in manifest["kernels"]) == (bits == "4")
    assert main(["measure", str(fw), "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert measured["bit_exact"] is True
    assert measured["peak_sram_bytes"] > 0 and measured["flash_bytes"] > 0
