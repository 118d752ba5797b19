"""ONNX / PyTorch import: float graphs equal onnxruntime / torch, and errors name the node."""

from __future__ import annotations

import io

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgekit.converters.float_exec import run_float  # noqa: E402
from edgekit.converters.onnx_import import import_onnx, load_onnx  # noqa: E402
from edgekit.errors import ModelFormatError, UnsupportedError  # noqa: E402
from onnx_cnn import handmade_cnn_parts  # noqa: E402


def nchw_to_nhwc(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x


def ort_run(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


def make_model(nodes, inputs, outputs, inits=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs,
                              [numpy_helper.from_array(v, k) for k, v in inits])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def vinfo(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_handmade_onnx_matmul_add_bn_pool_concat_matches_onnxruntime():
    rng = np.random.default_rng(0)
    nodes, inits = handmade_cnn_parts(rng)
    model = make_model(nodes, [vinfo("x", [1, 3, 8, 8])], [vinfo("y", [1, 5])], inits)
    g = import_onnx(model)
    kinds = [(op.kind, op.attrs.get("activation")) for op in g.ops]
    assert kinds == [("CONV_2D", "RELU6"), ("DEPTHWISE_CONV_2D", "RELU"), ("ADD", "NONE"),
                     ("MAX_POOL_2D", "NONE"), ("AVERAGE_POOL_2D", "NONE"),
                     ("CONCATENATION", "NONE"), ("RESHAPE", None), ("FULLY_CONNECTED", "NONE"),
                     ("SOFTMAX", None)]
    assert g[g.ops[0].inputs[1]].shape == (6, 3, 3, 3)  # OHWI
    assert g[g.ops[1].inputs[1]].shape == (1, 3, 3, 6)  # 1HWO
    x = rng.standard_normal((5, 3, 8, 8)).astype(np.float32)
    want = ort_run(model.SerializeToString(), x)
    got = run_float(g, [nchw_to_nhwc(x)])[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_unsupported_node_is_named():
    model = make_model([helper.make_node("Tanh", ["x"], ["y"], name="my_tanh")],
                       [vinfo("x", [1, 4])], [vinfo("y", [1, 4])])
    with pytest.raises(UnsupportedError, match="my_tanh.*Tanh"):
        import_onnx(model)


def test_grouped_conv_that_is_not_depthwise_is_refused():
    w = np.zeros((4, 2, 1, 1), np.float32)
    model = make_model([helper.make_node("Conv", ["x", "w"], ["y"], group=2, name="gconv")],
                       [vinfo("x", [1, 4, 3, 3])], [vinfo("y", [1, 4, 3, 3])], [("w", w)])
    with pytest.raises(UnsupportedError, match="gconv.*group=2"):
        import_onnx(model)


def test_dynamic_shape_is_refused():
    model = make_model([helper.make_node("Relu", ["x"], ["y"])],
                       [vinfo("x", ["batch", 4])], [vinfo("y", ["batch", 4])])
    with pytest.raises(UnsupportedError, match="'x'.*dynamic"):
        import_onnx(model)


def test_corrupt_onnx_file(tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"\x08\x07garbage that is not protobuf\xff\xff\xff")
    with pytest.raises(ModelFormatError, match="bad.onnx"):
        load_onnx(path)


def test_conv_pads_that_tflite_cannot_express_become_a_pad_op():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    model = make_model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1],
                                         strides=[2, 2])],
                       [vinfo("x", [1, 2, 8, 8])], [vinfo("y", [1, 4, 4, 4])], [("w", w)])
    g = import_onnx(model)
    assert [op.kind for op in g.ops] == ["PAD", "CONV_2D"]
    x = rng.standard_normal((2, 2, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(run_float(g, [nchw_to_nhwc(x)])[0],
                               nchw_to_nhwc(ort_run(model.SerializeToString(), x)),
                               rtol=1e-4, atol=1e-5)


# --- PyTorch --------------------------------------------------------------------------------------

def small_torch_cnn():
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.dw = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
            self.pw = nn.Conv2d(8, 8, 1)
            self.hs = nn.Hardswish()
            self.fc = nn.Linear(8 * 4 * 4, 10)

        def forward(self, x):
            x = torch.relu(self.bn(self.conv(x)))
            y = nn.functional.relu6(self.dw(x))
            y = self.hs(self.pw(y)) + y
            return self.fc(torch.flatten(nn.functional.max_pool2d(y, 1), 1))

    torch.manual_seed(0)
    net = Net().eval()
    net.bn.running_mean.uniform_(-1, 1)
    net.bn.running_var.uniform_(0.5, 2)
    return net


def test_torch_module_matches_torch():
    torch = pytest.importorskip("torch")
    from edgekit.converters.torch_import import import_torch

    net = small_torch_cnn()
    x = torch.randn(3, 1, 8, 8)
    g = import_torch(net, x[:1])
    assert "HARD_SWISH" in [op.kind for op in g.ops]
    with torch.no_grad():
        want = net(x).numpy()
    np.testing.assert_allclose(run_float(g, [nchw_to_nhwc(x.numpy())])[0], want,
                               rtol=1e-4, atol=1e-5)


def test_pt2_archive_matches_torch(tmp_path):
    torch = pytest.importorskip("torch")
    from edgekit.converters.torch_import import load_pt2

    net = small_torch_cnn()
    x = torch.randn(2, 1, 8, 8)
    torch.export.save(torch.export.export(net, (x[:1],)), tmp_path / "net.pt2")
    g = load_pt2(tmp_path / "net.pt2")
    with torch.no_grad():
        want = net(x).numpy()
    np.testing.assert_allclose(run_float(g, [nchw_to_nhwc(x.numpy())])[0], want,
                               rtol=1e-4, atol=1e-5)


def test_pt2_corrupt_archive(tmp_path):
    pytest.importorskip("torch")
    from edgekit.converters.torch_import import load_pt2

    path = tmp_path / "junk.pt2"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelFormatError, match="junk.pt2"):
        load_pt2(path)


def test_reshape_into_a_spatial_feature_map_is_refused():
    shape = np.array([1, 2, 2, 2], np.int64)
    model = make_model([helper.make_node("Reshape", ["x", "s"], ["y"], name="unflatten")],
                       [vinfo("x", [1, 8])], [vinfo("y", [1, 2, 2, 2])], [("s", shape)])
    with pytest.raises(UnsupportedError, match="unflatten.*H\\*W > 1"):
        import_onnx(model)


def test_external_weights_are_refused():
    w = numpy_helper.from_array(np.zeros((2, 4), np.float32), "w")
    w.data_location = TensorProto.EXTERNAL
    w.ClearField("raw_data")
    entry = w.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    graph = helper.make_graph([helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)], "g",
                              [vinfo("x", [1, 4])], [vinfo("y", [1, 2])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    with pytest.raises((UnsupportedError, ModelFormatError), match="external"):
        import_onnx(model)


class _Trap:
    """Unpickling this creates ``marker``: proof that code from the file ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_load_pt2_never_reads_a_trapped_sample_input(tmp_path):
    """The API path, not only the CLI: the sample inputs (a pickle torch.export.load would retry
    with weights_only=False) are never read; the shapes come from the program's graph."""
    torch = pytest.importorskip("torch")
    import zipfile

    from edgekit.converters.torch_import import load_pt2

    clean, bad, marker = tmp_path / "clean.pt2", tmp_path / "bad.pt2", tmp_path / "pwned"
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3)).eval()
    torch.export.save(torch.export.export(net, (torch.randn(1, 1, 6, 6),)), str(clean))
    trap = io.BytesIO()
    torch.save(((_Trap(marker),), {}), trap)
    with zipfile.ZipFile(clean) as zin, zipfile.ZipFile(bad, "w") as zout:
        names = [i.filename for i in zin.infolist()]
        assert any(n.endswith("sample_inputs/model.pt") for n in names)
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(info, trap.getvalue() if info.filename.endswith(
                "sample_inputs/model.pt") else data)
    graph = load_pt2(bad)
    assert graph[graph.inputs[0]].shape == (1, 6, 6, 1)
    assert not marker.exists()


@pytest.mark.parametrize("edit,message", [
    ("dangling input", "is neither a graph input, an initializer nor the output"),
    ("unproduced output", "graph output 'nowhere' is not produced"),
    ("attribute of the wrong type", "malformed ONNX model|shape inference failed"),
    ("epsilon of the wrong type", "malformed ONNX model"),
])
def test_structurally_broken_onnx_is_a_format_error_naming_the_place(edit, message):
    """What the fuzz suite found as tracebacks: wiring and attribute types that ONNX forbids."""
    rng = np.random.default_rng(0)
    nodes, inits = handmade_cnn_parts(rng)
    outputs = [vinfo("y", [1, 5])]
    if edit == "dangling input":
        nodes[4].input[0] = "ghost"
    elif edit == "unproduced output":
        outputs = [vinfo("nowhere", [1, 5])]
    elif edit == "epsilon of the wrong type":  # shape inference does not read it; the importer does
        del nodes[1].attribute[:]
        nodes[1].attribute.append(helper.make_attribute("epsilon", [1e-5, 2e-5]))
    else:
        conv = nodes[0]
        del conv.attribute[:]
        conv.attribute.append(helper.make_attribute("group", [1, 2]))
    model = make_model(nodes, [vinfo("x", [1, 3, 8, 8])], outputs, inits)
    with pytest.raises(ModelFormatError, match=message):
        import_onnx(model)
