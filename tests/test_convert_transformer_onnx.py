"""ONNX import of the transformer families (MCUFormer, EmbBERT-Q) and of their layers: the float
IR equals torch, the op kinds are the IR contract's, and `edgekit convert` writes an int8
`.tflite` that our reader loads and the reference interpreter runs to the same bytes as the
in-process quantized graph."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from edgekit.cli import main  # noqa: E402
from edgekit.converters.float_exec import run_float  # noqa: E402
from edgekit.converters.onnx_import import import_onnx  # noqa: E402
from edgekit.converters.quantize import quantize  # noqa: E402
from edgekit.converters.tflite_reader import load_tflite  # noqa: E402
from edgekit.converters.torch_import import export_onnx_bytes  # noqa: E402
from edgekit.errors import ModelFormatError, UnsupportedError  # noqa: E402
from edgekit.interpreter import Interpreter  # noqa: E402
from edgekit.ir import DType  # noqa: E402
from edgekit.nas.mcuformer import MCUFormerSpec  # noqa: E402
from edgekit.nas.mcuformer_torch import to_torch as mcuformer_torch  # noqa: E402

TOL = 1e-4


def _import(module, example):
    data = export_onnx_bytes(module, example)  # int64 token ids stay int64
    return data, import_onnx(onnx.load_model_from_string(data))


def _torch_out(module, x) -> np.ndarray:
    with torch.no_grad():
        return module.eval()(x).numpy()


def _ir_input(x: torch.Tensor) -> np.ndarray:
    x = x.numpy()
    return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x


def _convert_and_run(tmp_path, capsys, onnx_bytes, graph, calib, sample):
    """`edgekit convert` through the CLI; the .tflite read back runs in the reference
    interpreter to the bytes of `quantize` done here. Returns (int8 output, its float)."""
    model, calib_path, out = tmp_path / "model.onnx", tmp_path / "calib.npy", tmp_path / "m.tflite"
    model.write_bytes(onnx_bytes)
    np.save(calib_path, calib)
    code = main(["convert", str(model), "--calib", str(calib_path), "-o", str(out), "--json"])
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    assert json.loads(stdout)["calibration_samples"] == len(calib)
    loaded = load_tflite(out)
    expected = quantize(graph, calib)
    interp = Interpreter(loaded)
    t_in = interp.input_tensors[0]
    x = _ir_input(sample)
    if t_in.dtype == DType.INT32:
        assert t_in.quant is None
        q = x.astype(np.int32)
    else:
        s, z = float(t_in.quant.scale[0]), int(t_in.quant.zero_point[0])
        q = np.clip(np.round(x / s) + z, -128, 127).astype(np.int8)
    got = interp.run([q])[0]
    np.testing.assert_array_equal(got, Interpreter(expected).run([q])[0])
    t_out = interp.output_tensors[0]
    real = (got.astype(np.float64) - t_out.quant.zero_point[0]) * t_out.quant.scale[0]
    return loaded, real


# --- MCUFormer -------------------------------------------------------------------------------------

MCUFORMER = MCUFormerSpec(resolution=28, in_channels=1, num_classes=10, embed_dim=32, depth=2,
                          heads=2, mlp_ratio=2.0, rank_ratio=0.5, patch=7)


@pytest.fixture(scope="module")
def mcuformer():
    model = mcuformer_torch(MCUFORMER, seed=0).eval()
    data, graph = _import(model, torch.rand(1, 1, 28, 28))
    return model, data, graph


def test_mcuformer_float_ir_equals_torch(mcuformer):
    model, _, graph = mcuformer
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    out = run_float(graph, [_ir_input(x)])[0]
    assert out.shape == (4, 10)
    np.testing.assert_allclose(out, _torch_out(model, x), atol=TOL, rtol=0)
    kinds = [op.kind for op in graph.ops]
    assert {"LAYER_NORM", "BATCH_MATMUL", "GELU", "SOFTMAX", "FULLY_CONNECTED"} <= set(kinds)
    depth = MCUFORMER.depth
    assert kinds.count("BATCH_MATMUL") == 2 * depth and kinds.count("LAYER_NORM") == 2 * depth + 1
    # 1/sqrt(dh) folded into the query weights; k^T is BATCH_MATMUL's adj_y, not a transpose
    assert "MUL" not in kinds and "DIV" not in kinds
    scores = [op for op in graph.ops if op.kind == "BATCH_MATMUL"][0]
    assert scores.attrs == {"adj_x": False, "adj_y": True}
    assert all(op.attrs["perm"] == (0, 2, 1, 3) for op in graph.ops if op.kind == "TRANSPOSE")
    # patch tokens: the conv's NHWC output reshaped to [1, T, D] in row-major patch order
    assert kinds[:3] == ["CONV_2D", "RESHAPE", "ADD"]
    assert graph[graph.ops[1].outputs[0]].shape == (1, MCUFORMER.tokens, MCUFORMER.embed_dim)
    fcs = [op for op in graph.ops if op.kind == "FULLY_CONNECTED"]
    assert all(op.attrs["keep_num_dims"] for op in fcs[:-1]) and not fcs[-1].attrs["keep_num_dims"]


def test_mcuformer_converts_to_int8_tflite(mcuformer, tmp_path, capsys):
    model, data, graph = mcuformer
    rng = np.random.default_rng(2)
    calib = rng.random((16, 1, 28, 28)).astype(np.float32)
    sample = torch.from_numpy(calib[:1])
    loaded, real = _convert_and_run(tmp_path, capsys, data, graph, calib, sample)
    assert {"LAYER_NORM", "BATCH_MATMUL", "GELU", "SOFTMAX"} <= {op.kind for op in loaded.ops}
    ref = _torch_out(model, sample)
    # int8 W8A8 through two attention blocks: within 3% of the logits' spread (measured 0.7%)
    assert np.abs(real - ref).max() <= 0.03 * np.ptp(ref)


# --- layers ----------------------------------------------------------------------------------------

class _Tokens(nn.Module):
    """Token layers the families do not both use: tanh GELU, SiLU written out, an RMSNorm
    (x * rsqrt(mean(x^2) + eps) * g), a causal conv by padding both sides and cropping, a
    matmul with an explicit transposed operand, positional Mul/Add constants."""

    def __init__(self, d=12, t=6, k=3):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)
        self.g = nn.Parameter(torch.rand(d) + 0.5)
        self.conv = nn.Conv1d(d, d, k, groups=d, padding=0)
        self.k, self.scale = k, nn.Parameter(torch.rand(t, d) + 0.5)

    def forward(self, x):
        h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.g
        h = self.fc2(F.gelu(self.fc1(h), approximate="tanh"))
        c = self.conv(F.pad(h.transpose(1, 2), (self.k - 1, 0))).transpose(1, 2)
        c = c * torch.sigmoid(c)
        a = torch.softmax(torch.matmul(c, h.transpose(-1, -2)), dim=-1) @ h
        return (a * self.scale - 0.5).mean(dim=1)


def test_token_layers_map_to_the_ir_kinds():
    torch.manual_seed(0)
    model = _Tokens()
    _, graph = _import(model, torch.rand(1, 6, 12))
    x = torch.randn(3, 6, 12, generator=torch.Generator().manual_seed(3))
    np.testing.assert_allclose(run_float(graph, [x.numpy()])[0], _torch_out(model, x),
                               atol=TOL, rtol=0)
    kinds = [op.kind for op in graph.ops]
    assert {"RMS_NORM", "GELU", "SILU", "DEPTHWISE_CONV_2D", "BATCH_MATMUL", "MEAN"} <= set(kinds)
    assert "PAD" not in kinds and "TRANSPOSE" not in kinds and "LOGISTIC" not in kinds
    assert [op.attrs["approximate"] for op in graph.ops if op.kind == "GELU"] == [True]
    conv = next(op for op in graph.ops if op.kind == "DEPTHWISE_CONV_2D")
    assert conv.attrs["pad"] == (0, 0, 2, 0) and graph[conv.inputs[0]].shape == (1, 1, 6, 12)
    bmm = [op for op in graph.ops if op.kind == "BATCH_MATMUL"]
    assert [op.attrs["adj_y"] for op in bmm] == [True, False]


class _Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


@pytest.mark.parametrize("fn, example, words", [
    (lambda x: torch.tanh(x) * 2, torch.rand(1, 4, 8), ("Tanh", "not supported")),
    (lambda x: x[:, 1:] * 2, torch.rand(1, 4, 8), ("Slice", "crop of a padded 1-D convolution")),
    (lambda ids: ids.float() * 2, torch.zeros(1, 4, dtype=torch.int64),
     ("integer input", "indices of Gather")),
])
def test_unsupported_token_node_is_named(fn, example, words):
    with pytest.raises(UnsupportedError) as err:
        _import(_Lambda(fn), example)
    assert all(w in str(err.value) for w in words), err.value


def test_constant_folding_refuses_a_huge_constant():
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("ConstantOfShape", ["s"], ["big"], name="huge"),
             helper.make_node("Add", ["x", "big"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.array([1 << 20, 1 << 20], np.int64), "s")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ModelFormatError, match="'huge'.*1099511627776 elements"):
        import_onnx(model)


# --- EmbBERT-Q -------------------------------------------------------------------------------------

def _embbert(norm: str, combine: str):
    from edgekit.nas.embbert import EmbBERTSpec
    from edgekit.nas.embbert_torch import to_torch

    spec = EmbBERTSpec(vocab_size=40, embed_dim=8, hidden=16, layers=2, kernel=3, seq_len=10,
                       num_classes=3, norm=norm, combine=combine)
    torch.manual_seed(0)
    model = to_torch(spec).eval()
    data, graph = _import(model, torch.zeros(1, spec.seq_len, dtype=torch.int64))
    return spec, model, data, graph


@pytest.mark.parametrize("norm, combine", [("layer", "add"), ("rms", "mul")])
def test_embbert_float_ir_equals_torch(norm, combine):
    spec, model, _, graph = _embbert(norm, combine)
    assert graph[graph.inputs[0]].dtype == DType.INT32
    ids = torch.randint(0, spec.vocab_size, (4, spec.seq_len), generator=torch.Generator().manual_seed(4))
    np.testing.assert_allclose(run_float(graph, [ids.numpy()])[0], _torch_out(model, ids),
                               atol=TOL, rtol=0)
    kinds = [op.kind for op in graph.ops]
    want = {"GATHER", "DEPTHWISE_CONV_2D", "SILU", "BATCH_MATMUL", "SOFTMAX",
            "LAYER_NORM" if norm == "layer" else "RMS_NORM"}
    assert want <= set(kinds)
    assert not {"PAD", "TRANSPOSE", "LOGISTIC"} & set(kinds)
    assert kinds.count("MUL") == (spec.layers if combine == "mul" else 0)  # scale folded
    for conv in (op for op in graph.ops if op.kind == "DEPTHWISE_CONV_2D"):
        assert conv.attrs["pad"] == (0, 0, spec.kernel - 1, 0)
        assert graph[conv.inputs[0]].shape == (1, 1, spec.seq_len, spec.hidden)
    bmm = [op for op in graph.ops if op.kind == "BATCH_MATMUL"]
    for scores, attend in zip(bmm[::2], bmm[1::2]):
        # single head with K = V = x: both matmuls read the block's normalised tokens
        assert scores.attrs["adj_y"] and not attend.attrs["adj_y"]
        assert scores.inputs[1] == attend.inputs[1]


def test_embbert_converts_with_integer_ids(tmp_path, capsys):
    spec, model, data, graph = _embbert("rms", "add")
    rng = np.random.default_rng(5)
    calib = rng.integers(0, spec.vocab_size, (24, spec.seq_len)).astype(np.int64)
    sample = torch.from_numpy(calib[:1])
    loaded, real = _convert_and_run(tmp_path, capsys, data, graph, calib, sample)
    assert {"GATHER", "RMS_NORM", "SILU", "BATCH_MATMUL", "DEPTHWISE_CONV_2D"} \
        <= {op.kind for op in loaded.ops}
    ref = _torch_out(model, sample)
    # measured 1.1% of the logits' spread
    assert np.abs(real - ref).max() <= 0.03 * np.ptp(ref)


def test_embbert_calibration_must_be_ids(tmp_path, capsys):
    spec, _, data, _ = _embbert("layer", "add")
    model, calib = tmp_path / "m.onnx", tmp_path / "c.npy"
    model.write_bytes(data)
    for bad, words in ((np.zeros((4, spec.seq_len), np.float32), ("integer token ids", "float32")),
                       (np.full((4, spec.seq_len), spec.vocab_size), ("token id 40", "[0, 40)"))):
        np.save(calib, bad)
        code = main(["convert", str(model), "--calib", str(calib), "-o", str(tmp_path / "q.tflite")])
        err = capsys.readouterr().err
        assert code != 0 and all(w in err for w in words), err
        assert not (tmp_path / "q.tflite").exists()


class _ConvTokens(nn.Module):
    """A conv stem permuted to NHWC and reshaped to tokens (the ViT way), then a stack of
    causal 1-D convolutions with ReLU between them, written with padding + cropping."""

    def __init__(self, c=8, k=3):
        super().__init__()
        self.stem = nn.Conv2d(1, c, 2, stride=2)
        self.c1, self.c2 = nn.Conv1d(c, c, k, padding=k - 1), nn.Conv1d(c, c, k, groups=c)
        self.k, self.fc = k, nn.Linear(c, 4)

    def forward(self, x):
        n = x.shape[0]
        t = self.stem(x).permute(0, 2, 3, 1).reshape(n, -1, self.stem.out_channels)
        h = torch.relu(self.c1(t.transpose(1, 2))[..., :-(self.k - 1)])
        h = self.c2(F.pad(h, (self.k - 1, 0)))
        return self.fc(h.transpose(1, 2)).mean(dim=1)


def test_conv_stem_tokens_and_1d_conv_stack():
    torch.manual_seed(1)
    model = _ConvTokens()
    _, graph = _import(model, torch.rand(1, 1, 8, 8))
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(6))
    np.testing.assert_allclose(run_float(graph, [_ir_input(x)])[0], _torch_out(model, x),
                               atol=TOL, rtol=0)
    assert [op.kind for op in graph.ops] == [
        "CONV_2D", "RESHAPE", "CONV_2D", "RESHAPE", "RELU", "RESHAPE", "DEPTHWISE_CONV_2D",
        "RESHAPE", "FULLY_CONNECTED", "MEAN"]
    # both convolutions causal: the crop of padding=k-1 and the left F.pad became pad=(0,0,2,0)
    assert [op.attrs["pad"] for op in graph.ops if "CONV" in op.kind] == [(0, 0, 0, 0), (0, 0, 2, 0),
                                                                         (0, 0, 2, 0)]
    assert graph[graph.ops[1].outputs[0]].shape == (1, 1, 16, 8)  # tokens (h, w) row-major


def test_embbert_pt2_converts_through_the_cli(tmp_path, capsys):
    spec, model, _, graph = _embbert("layer", "mul")
    ids = torch.zeros(1, spec.seq_len, dtype=torch.int64)
    torch.export.save(torch.export.export(model, (ids,)), tmp_path / "m.pt2")
    calib = np.random.default_rng(7).integers(0, spec.vocab_size, (8, spec.seq_len))
    np.save(tmp_path / "c.npy", calib.astype(np.int32))
    code = main(["convert", str(tmp_path / "m.pt2"), "--calib", str(tmp_path / "c.npy"),
                 "-o", str(tmp_path / "m.tflite")])
    assert code == 0, capsys.readouterr().err
    loaded = load_tflite(tmp_path / "m.tflite")
    assert loaded[loaded.inputs[0]].dtype == DType.INT32
    q = Interpreter(loaded).run([calib[:1].astype(np.int32)])[0]
    np.testing.assert_array_equal(q, Interpreter(quantize(graph, calib)).run([calib[:1].astype(np.int32)])[0])
