"""`.tflite` export: round trips, and exported files run in TFLite Micro and LiteRT."""

from __future__ import annotations

import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import graph_builders as gb  # noqa: E402

from edgekit.converters.tflite_reader import load_tflite, load_tflite_bytes  # noqa: E402
from edgekit.converters.tflite_writer import save_tflite, to_bytes  # noqa: E402
from edgekit.errors import UnsupportedError  # noqa: E402
from edgekit.ir import DType  # noqa: E402

from conftest import MLPERF_MODELS, mlperf_path  # noqa: E402
MLPERF = sorted(MLPERF_MODELS.values())


def mlperf(name: str) -> Path:
    return mlperf_path(name)


def tflm_run(data: bytes, inputs: list[np.ndarray]) -> np.ndarray:
    runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    interp = runtime.Interpreter.from_bytes(data)
    for i, x in enumerate(inputs):
        interp.set_input(x, i)
    interp.invoke()
    return interp.get_output(0)


def litert_run(data: bytes, inputs: list[np.ndarray]) -> np.ndarray:
    lrt = pytest.importorskip("ai_edge_litert.interpreter")
    interp = lrt.Interpreter(model_content=data,
                             experimental_op_resolver_type=lrt.OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    for detail, x in zip(interp.get_input_details(), inputs):
        interp.set_tensor(detail["index"], x)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


@pytest.mark.parametrize("name", MLPERF)
def test_mlperf_round_trip(name, tmp_path):
    g = load_tflite(mlperf(name))
    out = save_tflite(g, tmp_path / name)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temp file left behind
    g2 = load_tflite(out)
    gb.assert_graphs_equal(g, g2)
    assert [op.attrs["tflite_index"] for op in g2.ops] == [op.attrs["tflite_index"] for op in g.ops]


@pytest.mark.parametrize("name", MLPERF)
def test_exported_mlperf_runs_bit_exact_in_tflm(name):
    """Our file gives TFLite Micro's output for TensorFlow's file, byte for byte."""
    original = mlperf(name).read_bytes()
    g = load_tflite_bytes(original)
    rng = np.random.default_rng(7)
    x = gb.random_input(rng, g[g.inputs[0]])
    assert np.array_equal(tflm_run(to_bytes(g), [x]), tflm_run(original, [x]))


def _cases():
    yield "CONV_2D", lambda r: gb.conv2d(r)
    yield "CONV_2D stride2 VALID relu", lambda r: gb.conv2d(r, in_shape=(1, 11, 8, 5), stride=(2, 2),
                                                            padding="VALID", activation="RELU")
    yield "CONV_2D dilated per-tensor", lambda r: gb.conv2d(r, dilation=(2, 2), per_channel=False)
    yield "CONV_2D no bias 1x1", lambda r: gb.conv2d(r, kernel=(1, 1), bias=False)
    yield "CONV_2D int4 weights", lambda r: gb.conv2d(r, weight_dtype=DType.INT4)
    yield "DEPTHWISE_CONV_2D m2", lambda r: gb.depthwise_conv2d(r, multiplier=2, stride=(2, 2),
                                                                activation="RELU6")
    yield "FULLY_CONNECTED", lambda r: gb.fully_connected(r, batch=2, activation="RELU")
    for kind, build in gb.BUILDERS.items():
        if kind not in ("CONV_2D", "FULLY_CONNECTED"):
            yield kind, build
    yield "ADD broadcast", lambda r: gb.add(r, shape_b=(1, 1, 1, 8))
    yield "MAX_POOL_2D SAME", lambda r: gb.pool2d(r, kind="MAX_POOL_2D", in_shape=(1, 7, 7, 3),
                                                  filter_size=(3, 3), stride=(2, 2),
                                                  padding="SAME")
    yield "MEAN no keep", lambda r: gb.mean(r, keep_dims=False)


CASES = dict(_cases())


@pytest.mark.parametrize("case", sorted(CASES))
def test_single_op_graphs_export_load_and_run(case):
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    g = CASES[case](rng)
    data = to_bytes(g)
    gb.assert_graphs_equal(g, load_tflite_bytes(data))
    inputs = [gb.random_input(rng, g[name]) for name in g.inputs]
    y = g[g.outputs[0]]
    # LiteRT's int8 convolutions require a bias; TFLite Micro's do not
    runtimes = (tflm_run,) if "no bias" in case else (tflm_run, litert_run)
    for run in runtimes:
        out = run(data, inputs)
        assert out.shape == y.shape and out.dtype == y.dtype.numpy, (run.__name__, out.shape)
        if y.dtype != DType.FLOAT32:
            assert np.unique(out).size > 1 or out.size == 1, "output collapsed to one value"


def test_explicit_padding_that_tflite_cannot_express_becomes_pad_then_valid():
    rng = np.random.default_rng(0)
    g = gb.conv2d(rng)
    g.ops[0].attrs["pad"] = (2, 0, 0, 2)
    data = to_bytes(g)
    from edgekit.converters.tflite_flatbuffer import decode
    assert [op.op_name for op in decode(data, "test").ops] == ["PAD", "CONV_2D"]
    # the reader folds the pair back into one convolution with the explicit pad
    back = load_tflite_bytes(data)
    assert [op.kind for op in back.ops] == ["CONV_2D"]
    assert back.ops[0].attrs["pad"] == (2, 0, 0, 2)
    from edgekit.interpreter import run
    x = gb.random_input(rng, g["x"])
    assert np.array_equal(run(back, [x])[0], run(g, [x])[0])
    assert np.array_equal(tflm_run(to_bytes(g), [x]), run(g, [x])[0])


def _pad_then_valid(g, outputs):
    """``g`` (one conv) as PAD (2 rows on top, 2 columns on the right) + VALID convolution."""
    from edgekit.ir import Graph, Op, Tensor

    x, conv = g["x"], g.ops[0]
    padded = Tensor("xp", (1, x.shape[1] + 2, x.shape[2] + 2, x.shape[3]), x.dtype, x.quant)
    return Graph([*g.tensors.values(), padded],
                 [Op("PAD", ["x"], ["xp"], {"paddings": ((0, 0), (2, 0), (0, 2), (0, 0))}, "xp"),
                  Op(conv.kind, ["xp", *conv.inputs[1:]], conv.outputs,
                     {**conv.attrs, "pad": (0, 0, 0, 0)}, conv.name)],
                 g.inputs, outputs, name="padded")


def test_pad_folding_keeps_a_pad_something_else_reads():
    from edgekit.converters.pad_fold import fold_pads_into_convolutions
    from edgekit.interpreter import run

    rng = np.random.default_rng(1)
    g = gb.conv2d(rng)
    g.ops[0].attrs["pad"] = (2, 0, 0, 2)
    x = gb.random_input(rng, g["x"])
    folded = fold_pads_into_convolutions(_pad_then_valid(g, ["y"]))
    assert [(op.kind, op.attrs["pad"]) for op in folded.ops] == [("CONV_2D", (2, 0, 0, 2))]
    assert np.array_equal(run(folded, [x])[0], run(g, [x])[0])
    kept = fold_pads_into_convolutions(_pad_then_valid(g, ["y", "xp"]))  # xp is an output
    assert [op.kind for op in kept.ops] == ["PAD", "CONV_2D"]
    assert np.array_equal(run(kept, [x])[0], run(g, [x])[0])


def test_explicit_padding_that_disagrees_with_the_output_shape():
    g = gb.conv2d(np.random.default_rng(0))
    g.ops[0].attrs["pad"] = (5, 0, 0, 2)  # 5 rows on top: 9 + 5 - 2 = 12 rows out, not 9
    with pytest.raises(UnsupportedError, match=r"CONV_2D 'y': padding \(5, 0, 0, 2\)"):
        to_bytes(g)


def test_save_is_atomic_on_failure(tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"old")
    g = gb.conv2d(np.random.default_rng(0))
    g.ops[0].attrs["pad"] = (5, 0, 0, 2)
    with pytest.raises(UnsupportedError):
        save_tflite(g, path)
    assert path.read_bytes() == b"old" and len(list(tmp_path.iterdir())) == 1
