"""Post-training quantization: int8 / int4 / mixed graphs that TFLite Micro runs bit-exact with
`edgekit run`, LiteRT within 1 LSB; calibration methods; the int4 accuracy recovery, measured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgekit.converters.calibrate import collect_ranges, to_ir_layout  # noqa: E402
from edgekit.converters.float_exec import run_float  # noqa: E402
from edgekit.converters.onnx_import import import_onnx  # noqa: E402
from edgekit.converters.quantize import (LayerBits, dequantize_output, layer_bits,  # noqa: E402
                                         parse_bits, quantize, quantize_input, split_kinds)
from edgekit.converters.tflite_reader import load_tflite  # noqa: E402
from edgekit.converters.tflite_writer import save_tflite, to_bytes  # noqa: E402
from edgekit.errors import CalibrationError, UsageError  # noqa: E402
from edgekit.interpreter import run  # noqa: E402
from edgekit.ir import DType  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def onnx_cnn(seed: int = 0) -> onnx.ModelProto:
    """conv(BN, ReLU6) -> depthwise(ReLU, stride 2, explicit pad) -> conv + HardSwish -> Add
    -> max/avg pool -> concat -> flatten (H*W > 1) -> Gemm -> Softmax, NCHW 1x3x8x8."""
    rng = np.random.default_rng(seed)
    f = lambda *s: (rng.standard_normal(s) * 0.5).astype(np.float32)  # noqa: E731
    inits = {"w1": f(8, 3, 3, 3), "b1": f(8), "g": f(8) + 1.5, "be": f(8), "mu": f(8),
             "var": np.abs(f(8)) + 0.5, "w2": f(8, 1, 3, 3), "b2": f(8), "w3": f(8, 8, 1, 1),
             "w4": f(8, 1, 3, 3), "fc": f(10, 16 * 2 * 2), "fcb": f(10),
             "lo": np.float32(0), "hi": np.float32(6)}
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("BatchNormalization", ["c1", "g", "be", "mu", "var"], ["bn"]),
        helper.make_node("Clip", ["bn", "lo", "hi"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["dw"], group=8, pads=[1, 1, 1, 1],
                         strides=[2, 2], name="dw"),
        helper.make_node("Relu", ["dw"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3"], ["pw"], name="pw"),
        helper.make_node("HardSwish", ["pw"], ["hs"]),
        helper.make_node("Add", ["hs", "r2"], ["sum"]),
        helper.make_node("MaxPool", ["sum"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["sum", "w4"], ["dw2"], group=8, pads=[1, 1, 1, 1],
                         strides=[2, 2], name="dw2"),
        helper.make_node("Concat", ["mp", "dw2"], ["cat"], axis=1),
        helper.make_node("Flatten", ["cat"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc", "fcb"], ["logits"], transB=1, name="fc"),
        helper.make_node("Softmax", ["logits"], ["y"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.fixture(scope="module")
def float_graph():
    return import_onnx(onnx_cnn())


@pytest.fixture(scope="module")
def calib():
    return np.random.default_rng(1).standard_normal((48, 3, 8, 8)).astype(np.float32)


def tflm_outputs(data: bytes, xs: list[np.ndarray]) -> list[np.ndarray]:
    runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    interp = runtime.Interpreter.from_bytes(data)
    outs = []
    for x in xs:
        interp.set_input(x, 0)
        interp.invoke()
        outs.append(interp.get_output(0).copy())
    return outs


def litert_outputs(data: bytes, xs: list[np.ndarray]) -> list[np.ndarray]:
    lrt = pytest.importorskip("ai_edge_litert.interpreter")
    interp = lrt.Interpreter(model_content=data,
                             experimental_op_resolver_type=lrt.OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    outs = []
    for x in xs:
        interp.set_tensor(interp.get_input_details()[0]["index"], x)
        interp.invoke()
        outs.append(interp.get_tensor(interp.get_output_details()[0]["index"]).copy())
    return outs


@pytest.mark.parametrize("bits", [8, 4, "mixed:default=4,conv1=8"])
def test_quantized_onnx_runs_bit_exact_in_tflm_and_litert_within_1(float_graph, calib, bits):
    q = quantize(float_graph, calib, bits=bits)
    data = to_bytes(q)
    rng = np.random.default_rng(2)
    xs = [quantize_input(q, rng.standard_normal((1, 3, 8, 8)).astype(np.float32) * s)
          for s in (0.5, 1.0, 1.5, 3.0)]
    ours = [run(q, [x])[0] for x in xs]
    for a, b in zip(ours, tflm_outputs(data, xs)):
        assert a.dtype == b.dtype == np.int8
        assert np.array_equal(a, b)
    for a, b in zip(ours, litert_outputs(data, xs)):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    widths = [row.bits for row in layer_bits(q)]
    assert widths == {8: [8] * 5, 4: [4] * 5, "mixed:default=4,conv1=8": [8, 4, 4, 4, 4]}[bits]
    # the file holds what the graph holds (int4 packed)
    back = load_tflite_bytes_graph(data)
    assert [back[op.inputs[1]].dtype for op in back.ops if op.inputs[1:] and op.inputs[1]
            and back[op.inputs[1]].is_constant] == [DType.INT4 if w == 4 else DType.INT8
                                                    for w in widths]


def load_tflite_bytes_graph(data: bytes):
    from edgekit.converters.tflite_reader import load_tflite_bytes

    return load_tflite_bytes(data)


def test_int8_file_through_edgekit_run_cli_equals_tflm(float_graph, calib, tmp_path):
    q = quantize(float_graph, calib, bits=8)
    model = save_tflite(q, tmp_path / "cnn.tflite")
    x = quantize_input(q, calib[:1])
    np.save(tmp_path / "x.npy", x)
    edgekit = Path(sys.executable).with_name("edgekit")
    subprocess.run([str(edgekit), "run", str(model), "-i", str(tmp_path / "x.npy"),
                    "-o", str(tmp_path / "y.npy")], check=True, capture_output=True)
    assert np.array_equal(np.load(tmp_path / "y.npy"), tflm_outputs(model.read_bytes(), [x])[0])
    assert load_tflite(model).weights_bytes == q.weights_bytes


def test_int8_close_to_float(float_graph, calib):
    q = quantize(float_graph, calib, bits=8)
    x = calib[:16]
    want = run_float(float_graph, [to_ir_layout(float_graph, x)])[0]
    got = np.concatenate([dequantize_output(q, run(q, [quantize_input(q, x[i:i + 1])])[0])
                          for i in range(len(x))])
    # softmax probabilities (1/256 per LSB) of a random-weight net with peaked logits
    assert np.abs(got - want).mean() < 0.01 and np.abs(got - want).max() < 0.1
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.85


def test_quantization_follows_tflite_spec(float_graph, calib):
    q = quantize(float_graph, calib, bits=4)
    for op in q.ops:
        if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            x, w, b = (q[n] for n in op.inputs)
            assert np.all(w.quant.zero_point == 0)
            assert w.quant.per_channel == (op.kind != "FULLY_CONNECTED")
            assert w.data.min() >= -8 and w.data.max() <= 7
            assert b.dtype == DType.INT32 and np.all(b.quant.zero_point == 0)
            want = (np.float32(x.quant.scale[0]) * w.quant.scale.astype(np.float32)).astype(np.float64)
            assert np.array_equal(b.quant.scale, want)
        if op.kind in ("MAX_POOL_2D", "CONCATENATION", "RESHAPE", "PAD"):
            for name in op.present_inputs():
                assert q[name].quant == q[op.outputs[0]].quant
        if op.kind == "SOFTMAX":
            out = q[op.outputs[0]].quant
            assert out.scale[0] == 1 / 256 and out.zero_point[0] == -128
    assert q.weights_bytes < quantize(float_graph, calib, bits=8).weights_bytes


def test_calibration_iterator_equals_array(float_graph, calib):
    a = quantize(float_graph, calib, bits=8)
    seen = []
    b = quantize(float_graph, (calib[i:i + 10] for i in range(0, len(calib), 10)), bits=8,
                 on_batch=seen.append)
    assert sum(seen) == len(calib)
    for name in a.tensors:  # float sums may differ in the last bit with the batch size
        qa, qb = a[name].quant, b[name].quant
        np.testing.assert_allclose(qa.scale, qb.scale, rtol=1e-5)
        assert np.abs(qa.zero_point - qb.zero_point).max() <= 1


def test_percentile_ignores_outliers(float_graph, calib):
    spiky = calib.copy()
    spiky[0, 0, 0, 0] = 60.0  # one outlier pixel
    minmax, _ = collect_ranges(float_graph, spiky, method="minmax")
    pct, _ = collect_ranges(float_graph, spiky, method="percentile", percentile=99.9)
    x = float_graph.inputs[0]
    assert minmax[x][1] == pytest.approx(60.0)
    assert pct[x][1] < 5.0
    # and on data like the calibration set, the percentile-calibrated model is closer to float
    test = calib[1:17]
    want = run_float(float_graph, [to_ir_layout(float_graph, test)])[0]

    def error(method):
        q = quantize(float_graph, spiky, bits=8, method=method, percentile=99.9)
        got = np.concatenate([dequantize_output(q, run(q, [quantize_input(q, test[i:i + 1])])[0])
                              for i in range(len(test))])
        return np.abs(got - want).mean()

    assert error("percentile") < error("minmax")


def test_int4_recovery_lowers_the_error(float_graph, calib):
    """MSE clipping + bias correction, measured on held-out inputs against the float model."""
    rng = np.random.default_rng(5)
    test = rng.standard_normal((24, 3, 8, 8)).astype(np.float32)
    want = run_float(float_graph, [to_ir_layout(float_graph, test)])[0]

    def error(recover):
        q = quantize(float_graph, calib, bits=4, recover=recover)
        got = np.concatenate([dequantize_output(q, run(q, [quantize_input(q, test[i:i + 1])])[0])
                              for i in range(len(test))])
        return np.abs(got - want).mean()

    plain, recovered = error(False), error(True)
    assert recovered < 0.9 * plain, (plain, recovered)


def test_parse_bits():
    g = import_onnx(onnx_cnn())
    assert parse_bits(8, g) == {0: 8, 2: 8, 3: 8, 7: 8, 11: 8} or \
        sorted(parse_bits(8, g).values()) == [8] * 5
    widths = parse_bits("mixed:default=4,#0=8,dw*=8", g)
    names = {i: op.name for i, op in enumerate(g.ops)}
    assert {names[i]: b for i, b in widths.items()} == {"conv1": 8, "dw": 8, "pw": 4, "dw2": 8,
                                                        "fc": 4}
    for bad in (3, "mixed:conv1=5", "mixed:nosuch=4", "mixed:#9=4", "int4"):
        with pytest.raises(UsageError):
            parse_bits(bad, g)
    # an op kind names all its layers; later entries still win
    by_kind = parse_bits("mixed:default=4,DEPTHWISE_CONV_2D=8,dw2=4", g)
    assert {names[i]: b for i, b in by_kind.items()} == {"conv1": 4, "dw": 8, "pw": 4, "dw2": 4,
                                                         "fc": 4}
    from graph_builders import conv2d
    assert list(parse_bits("mixed:default=4,FULLY_CONNECTED=8", conv2d(np.random.default_rng(0))
                           ).values()) == [4]  # a kind the model lacks: nothing to set


def test_split_kinds_names_the_kinds_left_in_both_widths():
    rows = [LayerBits(0, "c0", "CONV_2D", 8, 10), LayerBits(1, "c1", "CONV_2D", 4, 10),
            LayerBits(2, "d", "DEPTHWISE_CONV_2D", 8, 10), LayerBits(3, "f", "FULLY_CONNECTED", 4, 10),
            LayerBits(4, "c2", "CONV_2D", 4, 10)]
    assert split_kinds(rows) == {"CONV_2D": ([0], [1, 4])}
    assert split_kinds([r for r in rows if r.kind != "CONV_2D"]) == {}


@pytest.mark.parametrize("data, match", [
    (np.zeros((4, 8, 8, 3), np.float32), r"shape \(4, 8, 8, 3\).*\(N, 3, 8, 8\)"),
    (np.zeros((4, 3, 8, 8), np.uint8), "dtype uint8"),
    (np.zeros((0, 3, 8, 8), np.float32), "empty"),
    (np.full((2, 3, 8, 8), np.nan, np.float32), "NaN"),
])
def test_bad_calibration_data(float_graph, data, match):
    with pytest.raises(CalibrationError, match=match):
        quantize(float_graph, data, bits=8)


def test_torch_module_int8_and_int4_bit_exact_in_tflm():
    torch = pytest.importorskip("torch")
    from edgekit.converters.torch_import import import_torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_convert_onnx import small_torch_cnn

    net = small_torch_cnn()
    g = import_torch(net, torch.zeros(1, 1, 8, 8))
    calib = torch.randn(32, 1, 8, 8).numpy()
    for bits in (8, 4):
        q = quantize(g, calib, bits=bits, recover=bits == 4)
        xs = [quantize_input(q, calib[i:i + 1]) for i in range(3)]
        for x, t in zip(xs, tflm_outputs(to_bytes(q), xs)):
            assert np.array_equal(run(q, [x])[0], t)


def test_gptq_rounding_lowers_the_layer_output_error():
    """On correlated inputs GPTQ's integer choice beats round-to-nearest on ||WX - QX||."""
    from edgekit.converters.gptq import HessianAccumulator, gptq_round

    rng = np.random.default_rng(7)
    mix = rng.standard_normal((24, 24))
    x = rng.standard_normal((2000, 24)) @ mix  # correlated input features
    w = rng.standard_normal((16, 24))
    scale = np.abs(w).max(axis=1) / 7
    acc = HessianAccumulator(24)
    acc.add(x)
    q_gptq = gptq_round(w, scale, acc.h, -8, 7)
    q_rtn = np.clip(np.round(w / scale[:, None]), -8, 7)
    assert q_gptq.min() >= -8 and q_gptq.max() <= 7
    err = lambda q: np.linalg.norm(x @ (w - q * scale[:, None]).T)  # noqa: E731
    assert err(q_gptq) < 0.8 * err(q_rtn), (err(q_gptq), err(q_rtn))


def test_torch_view_and_spatial_mean_int8_bit_exact_in_tflm():
    """x.view(N, -1) (exported as Reshape of a constant shape) and x.mean((2, 3))."""
    torch = pytest.importorskip("torch")
    from edgekit.converters.torch_import import import_torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 4, 3)
            self.fc = torch.nn.Linear(4 * 4 * 4, 3)
            self.head = torch.nn.Linear(4, 3)

        def forward(self, x):
            y = torch.relu(self.conv(x))
            return self.fc(y.view(y.size(0), -1)) + self.head(y.mean((2, 3)))

    torch.manual_seed(3)
    net = Net().eval()
    calib = torch.randn(16, 2, 6, 6)
    g = import_torch(net, calib[:1])
    assert "MEAN" in [op.kind for op in g.ops]
    with torch.no_grad():
        want = net(calib).numpy()
    np.testing.assert_allclose(run_float(g, [to_ir_layout(g, calib.numpy())])[0], want,
                               rtol=1e-4, atol=1e-5)
    q = quantize(g, calib.numpy(), bits=8)
    xs = [quantize_input(q, calib[i:i + 1].numpy()) for i in range(4)]
    for x, t in zip(xs, tflm_outputs(to_bytes(q), xs)):
        assert np.array_equal(run(q, [x])[0], t)


def test_softmax_then_reshape_shares_the_fixed_quantization():
    rng = np.random.default_rng(4)
    nodes = [helper.make_node("Gemm", ["x", "w"], ["l"], transB=1),
             helper.make_node("Softmax", ["l"], ["p"], axis=1),
             helper.make_node("Reshape", ["p", "s"], ["y"])]
    graph = helper.make_graph(
        nodes, "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(rng.standard_normal((4, 6)).astype(np.float32), "w"),
         numpy_helper.from_array(np.array([1, 4], np.int64), "s")])
    g = import_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                      ir_version=8))
    q = quantize(g, rng.standard_normal((8, 6)).astype(np.float32), bits=8)
    assert q["y"].quant == q["p"].quant
    assert q["y"].quant.scale[0] == 1 / 256 and q["y"].quant.zero_point[0] == -128
    x = quantize_input(q, rng.standard_normal((1, 6)).astype(np.float32))
    assert np.array_equal(run(q, [x])[0], tflm_outputs(to_bytes(q), [x])[0])


def test_a_dead_activation_keeps_a_scale_tflite_micro_accepts():
    """An activation that is 0 on all calibration data (a dead ReLU6 in an untrained net) gets
    the minimum span: RELU6's upper bound 6 / scale must fit in int32 for TFLite Micro."""
    from edgekit.converters.quantize import MIN_ACTIVATION_RANGE, activation_quant

    q = activation_quant(0.0, 0.0)
    assert q.scale[0] == pytest.approx(MIN_ACTIVATION_RANGE / 255, rel=1e-6)
    assert 6.0 / q.scale[0] < 2**31 - 1
    assert int(q.zero_point[0]) == -128


def test_overflowing_float_model_is_a_calibration_error_naming_the_tensor(float_graph, calib):
    """A weight so large that the float pass overflows gives an infinite range: refused with
    the tensor's name (it was a ValueError from int(NaN) in the zero point)."""
    import copy

    broken = copy.deepcopy(float_graph)
    weight = max((t for t in broken.constants() if t.data.dtype == np.float32),
                 key=lambda t: t.data.size)
    weight.data = np.full_like(weight.data, 3e38)
    with pytest.raises(CalibrationError, match="not a finite range"):
        quantize(broken, calib, bits=8)
