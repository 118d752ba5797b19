"""TFLite import: the MLPerf Tiny models, padding, quantization, folding, errors."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tflite
from tflite.BuiltinOperator import BuiltinOperator as B
from tflite.BuiltinOptions import BuiltinOptions
from tflite.TensorType import TensorType as T

sys.path.insert(0, str(Path(__file__).resolve().parent))
import graph_builders as gb  # noqa: E402

from edgekit.converters.tflite_reader import (load_tflite, load_tflite_bytes, pad_amounts,  # noqa: E402
                                              unpack_int4)
from edgekit.converters.tflite_writer import pack_int4, to_bytes  # noqa: E402
from edgekit.errors import ModelFormatError, UnsupportedError  # noqa: E402
from edgekit.ir import DType  # noqa: E402

from conftest import mlperf_path  # noqa: E402

# The op table of /work/shared/models/mlperf_tiny/README.md, with input/output shapes.
EXPECTED = {
    "vww_96_int8.tflite": ({"CONV_2D": 14, "DEPTHWISE_CONV_2D": 13, "AVERAGE_POOL_2D": 1,
                            "RESHAPE": 1, "FULLY_CONNECTED": 1, "SOFTMAX": 1},
                           (1, 96, 96, 3), (1, 2)),
    "kws_ref_model.tflite": ({"CONV_2D": 5, "DEPTHWISE_CONV_2D": 4, "AVERAGE_POOL_2D": 1,
                              "RESHAPE": 1, "FULLY_CONNECTED": 1, "SOFTMAX": 1},
                             (1, 49, 10, 1), (1, 12)),
    "pretrainedResnet_quant.tflite": ({"CONV_2D": 9, "ADD": 3, "AVERAGE_POOL_2D": 1,
                                       "RESHAPE": 1, "FULLY_CONNECTED": 1, "SOFTMAX": 1},
                                      (1, 32, 32, 3), (1, 10)),
    "ad01_int8.tflite": ({"FULLY_CONNECTED": 10}, (1, 640), (1, 640)),
}


def mlperf(name: str) -> Path:
    return mlperf_path(name)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_mlperf_models_import(name):
    counts, in_shape, out_shape = EXPECTED[name]
    g = load_tflite(mlperf(name))
    assert Counter(op.kind for op in g.ops) == Counter(counts)
    x, y = g[g.inputs[0]], g[g.outputs[0]]
    assert (x.shape, x.dtype, y.shape, y.dtype) == (in_shape, DType.INT8, out_shape, DType.INT8)
    assert x.quant is not None and y.quant is not None
    # every op remembers where it came from, in file order
    assert [op.attrs["tflite_index"] for op in g.ops] == list(range(len(g.ops)))
    assert all(op.name == op.outputs[0] for op in g.ops)
    for op in g.ops:
        if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            w, bias = g[op.inputs[1]], g[op.inputs[2]]
            axis = 3 if op.kind == "DEPTHWISE_CONV_2D" else 0
            assert w.dtype == DType.INT8 and w.is_constant
            assert np.all(w.quant.zero_point == 0)
            if w.quant.per_channel:
                assert w.quant.axis == axis and w.quant.scale.size == w.shape[axis]
            assert bias.dtype == DType.INT32 and np.all(bias.quant.zero_point == 0)
            expected_bias_scale = g[op.inputs[0]].quant.scale[0] * w.quant.scale
            np.testing.assert_allclose(bias.quant.scale, expected_bias_scale, rtol=1e-6)
    # constant shape operands of RESHAPE are attrs now, not tensors
    assert all(t.dtype != DType.INT64 for t in g.tensors.values())


def test_mlperf_weights_match_file_buffers():
    """The first conv weights of kws decode to the bytes stored in the file."""
    path = mlperf("kws_ref_model.tflite")
    model = tflite.Model.GetRootAs(path.read_bytes(), 0)
    sg = model.Subgraphs(0)
    op = sg.Operators(0)
    t = sg.Tensors(op.Inputs(1))
    raw = model.Buffers(t.Buffer()).DataAsNumpy().view(np.int8).reshape(t.ShapeAsNumpy())
    g = load_tflite(path)
    assert np.array_equal(g[g.ops[0].inputs[1]].data, raw)


def test_padding_resolution_matches_tflite():
    # ComputePaddingHeightWidth: SAME out = ceil(in/stride), total = (out-1)*s + eff - in,
    # odd pixel after. Worked by hand:
    assert pad_amounts(49, 10, 2, 1, "SAME") == (25, 4, 5)   # total 9
    assert pad_amounts(10, 4, 2, 1, "SAME") == (5, 1, 1)     # total 2
    assert pad_amounts(96, 3, 2, 1, "SAME") == (48, 0, 1)    # total 1
    assert pad_amounts(9, 3, 1, 2, "SAME") == (9, 2, 2)      # dilated filter 5
    assert pad_amounts(8, 3, 3, 1, "SAME") == (3, 0, 1)
    assert pad_amounts(9, 3, 2, 1, "VALID") == (4, 0, 0)
    assert pad_amounts(4, 1, 2, 1, "SAME") == (2, 0, 0)
    # the kws stem: 10x4 filter, stride 2, SAME on a 49x10 input
    g = load_tflite(mlperf("kws_ref_model.tflite"))
    assert g.ops[0].attrs["pad"] == (4, 5, 1, 1) and g.ops[0].attrs["stride"] == (2, 2)
    # vww: stride-2 3x3 SAME on 96x96 puts the odd pixel bottom/right
    g = load_tflite(mlperf("vww_96_int8.tflite"))
    assert g.ops[0].attrs["pad"] == (0, 1, 0, 1)


@pytest.mark.parametrize("padding,stride,dilation", [("SAME", (2, 2), (1, 1)),
                                                     ("VALID", (1, 2), (1, 1)),
                                                     ("SAME", (1, 1), (2, 2))])
def test_conv_padding_survives_export_and_import(padding, stride, dilation):
    g = gb.conv2d(np.random.default_rng(0), in_shape=(1, 10, 7, 3), kernel=(3, 3),
                  stride=stride, dilation=dilation, padding=padding, activation="RELU6")
    g2 = load_tflite_bytes(to_bytes(g))
    assert g2.ops[0].attrs["pad"] == g.ops[0].attrs["pad"]
    assert g2.ops[0].attrs["activation"] == "RELU6"
    gb.assert_graphs_equal(g, g2)


def test_int4_weights_unpack():
    assert unpack_int4(bytes([0x21, 0xF8, 0x07]), 5).tolist() == [1, 2, -8, -1, 7]
    values = np.arange(-8, 8, dtype=np.int8)
    assert np.array_equal(unpack_int4(pack_int4(values), 16), values)
    g = gb.fully_connected(np.random.default_rng(3), in_features=7, out_features=3,
                           weight_dtype=DType.INT4)
    data = to_bytes(g)
    g2 = load_tflite_bytes(data)
    assert g2["w"].dtype == DType.INT4 and np.array_equal(g2["w"].data, g["w"].data)
    assert g2["w"].nbytes == 11  # 21 values packed two per byte


# --- models built by hand: folding, names, errors ------------------------------------------------

def _i32(values) -> bytes:
    return np.asarray(values, dtype="<i4").tobytes()


def _strided_slice_options(shrink: int):
    def build(b):
        tflite.StridedSliceOptionsStart(b)
        tflite.StridedSliceOptionsAddShrinkAxisMask(b, shrink)
        return tflite.StridedSliceOptionsEnd(b)
    return BuiltinOptions.StridedSliceOptions, build


def _gather_options(axis: int):
    def build(b):
        tflite.GatherOptionsStart(b)
        tflite.GatherOptionsAddAxis(b, axis)
        return tflite.GatherOptionsEnd(b)
    return BuiltinOptions.GatherOptions, build


def _pack_options(count: int):
    def build(b):
        tflite.PackOptionsStart(b)
        tflite.PackOptionsAddValuesCount(b, count)
        tflite.PackOptionsAddAxis(b, 0)
        return tflite.PackOptionsEnd(b)
    return BuiltinOptions.PackOptions, build


def _concat_options(axis: int):
    def build(b):
        tflite.ConcatenationOptionsStart(b)
        tflite.ConcatenationOptionsAddAxis(b, axis)
        return tflite.ConcatenationOptionsEnd(b)
    return BuiltinOptions.ConcatenationOptions, build


def shape_arithmetic_model() -> bytes:
    """What Keras' converter writes for Flatten/Reshape with a dynamic batch:
    x[1,4,4,8] -> SHAPE -> STRIDED_SLICE(batch) -> PACK(batch, 128) -> RESHAPE -> y1[1,128];
    SHAPE -> GATHER([1,2]) -> CONCATENATION([batch], hw, [8]) -> RESHAPE(y1) -> y2[1,4,4,8]."""
    q = {"scale": [0.05], "zero_point": [3]}
    tensors = [
        {"name": "x", "shape": [1, 4, 4, 8], "type": T.INT8, **q},                  # 0
        {"name": "shape", "shape": [4], "type": T.INT32},                            # 1
        {"name": "begin", "shape": [1], "type": T.INT32, "data": _i32([0])},         # 2
        {"name": "end", "shape": [1], "type": T.INT32, "data": _i32([1])},           # 3
        {"name": "strides", "shape": [1], "type": T.INT32, "data": _i32([1])},       # 4
        {"name": "batch", "shape": [], "type": T.INT32},                             # 5
        {"name": "c128", "shape": [], "type": T.INT32, "data": _i32(128)},           # 6
        {"name": "packed", "shape": [2], "type": T.INT32},                           # 7
        {"name": "y1", "shape": [1, 128], "type": T.INT8, **q},                      # 8
        {"name": "hw_index", "shape": [2], "type": T.INT32, "data": _i32([1, 2])},   # 9
        {"name": "hw", "shape": [2], "type": T.INT32},                               # 10
        {"name": "batch1", "shape": [1], "type": T.INT32},                           # 11
        {"name": "c8", "shape": [1], "type": T.INT32, "data": _i32([8])},            # 12
        {"name": "shape2", "shape": [4], "type": T.INT32},                           # 13
        {"name": "y2", "shape": [1, 4, 4, 8], "type": T.INT8, **q},                  # 14
        {"name": "zero", "shape": [1], "type": T.INT32, "data": _i32([0])},          # 15
    ]
    ops = [
        {"op": B.SHAPE, "inputs": [0], "outputs": [1]},
        {"op": B.STRIDED_SLICE, "inputs": [1, 2, 3, 4], "outputs": [5],
         "options": _strided_slice_options(1)},
        {"op": B.PACK, "inputs": [5, 6], "outputs": [7], "options": _pack_options(2)},
        {"op": B.RESHAPE, "inputs": [0, 7], "outputs": [8]},
        {"op": B.GATHER, "inputs": [1, 9], "outputs": [10], "options": _gather_options(0)},
        {"op": B.GATHER, "inputs": [1, 15], "outputs": [11], "options": _gather_options(0)},
        {"op": B.CONCATENATION, "inputs": [11, 10, 12], "outputs": [13],
         "options": _concat_options(0)},
        {"op": B.RESHAPE, "inputs": [8, 13], "outputs": [14]},
    ]
    return gb.raw_tflite(tensors, ops, inputs=[0], outputs=[14])


def test_shape_arithmetic_is_folded():
    g = load_tflite_bytes(shape_arithmetic_model())
    assert [op.kind for op in g.ops] == ["RESHAPE", "RESHAPE"]
    assert [op.attrs["tflite_index"] for op in g.ops] == [3, 7]
    assert g.ops[0].inputs == ["x"] and g.ops[1].inputs == ["y1"]
    assert g["y1"].shape == (1, 128) and g["y2"].shape == (1, 4, 4, 8)
    # the folded shape operands are gone: only activations remain
    assert sorted(g.tensors) == ["x", "y1", "y2"]


def test_folded_value_must_match_declared_shape():
    data = shape_arithmetic_model().replace(b"hw_index", b"hw_inde_")  # name change only: valid
    assert load_tflite_bytes(data).ops
    # a GATHER index past the end of the shape vector is a damaged model, named as such
    tensors = [{"name": "x", "shape": [1, 4], "type": T.INT8, "scale": [0.1]},
               {"name": "s", "shape": [2], "type": T.INT32},
               {"name": "i", "shape": [1], "type": T.INT32, "data": _i32([5])},
               {"name": "g", "shape": [1], "type": T.INT32},
               {"name": "y", "shape": [4], "type": T.INT8, "scale": [0.1]}]
    ops = [{"op": B.SHAPE, "inputs": [0], "outputs": [1]},
           {"op": B.GATHER, "inputs": [1, 2], "outputs": [3], "options": _gather_options(0)},
           {"op": B.RESHAPE, "inputs": [0, 3], "outputs": [4]}]
    with pytest.raises(ModelFormatError, match=r"op 1 \(GATHER\).*cannot evaluate"):
        load_tflite_bytes(gb.raw_tflite(tensors, ops, [0], [4]), source="bad.tflite")


def _unary_model(op, in_type=T.INT8, out_type=T.INT8, names=("x", "y")) -> bytes:
    tensors = [{"name": names[0], "shape": [1, 8], "type": in_type, "scale": [0.1]},
               {"name": names[1], "shape": [1, 8], "type": out_type, "scale": [0.1]}]
    return gb.raw_tflite(tensors, [{"op": op, "inputs": [0], "outputs": [1]}], [0], [1])


def test_unsupported_op_names_op_index_and_file(tmp_path):
    path = tmp_path / "tanh.tflite"
    path.write_bytes(_unary_model(B.TANH))
    with pytest.raises(UnsupportedError, match=r"tanh\.tflite: op 0 \(TANH\)"):
        load_tflite(path)
    path.write_bytes(_unary_model("MyCustomOp"))
    with pytest.raises(UnsupportedError, match=r"op 0 \(CUSTOM:MyCustomOp\)"):
        load_tflite(path)


def test_unsupported_dtype_names_op_tensor_and_file(tmp_path):
    path = tmp_path / "u8.tflite"
    path.write_bytes(_unary_model(B.RELU, in_type=T.UINT8))
    with pytest.raises(UnsupportedError, match=r"u8\.tflite: op 0 \(RELU\): tensor 'x' has"
                                               r" unsupported dtype UINT8"):
        load_tflite(path)


def test_duplicate_and_empty_names_become_unique():
    tensors = [{"name": "t", "shape": [1, 8], "type": T.INT8, "scale": [0.1]},
               {"name": "t", "shape": [1, 8], "type": T.INT8, "scale": [0.1]},
               {"name": "", "shape": [1, 8], "type": T.INT8, "scale": [0.1]},
               {"name": "t_1", "shape": [1, 8], "type": T.INT8, "scale": [0.1]}]
    ops = [{"op": B.RELU, "inputs": [0], "outputs": [1]},
           {"op": B.RELU, "inputs": [1], "outputs": [2]},
           {"op": B.RELU, "inputs": [2], "outputs": [3]}]
    g = load_tflite_bytes(gb.raw_tflite(tensors, ops, [0], [3]))
    assert [op.outputs[0] for op in g.ops] == ["t_1", "tensor2", "t_1_1"]
    assert g.inputs == ["t"] and g.outputs == ["t_1_1"]
    again = load_tflite_bytes(gb.raw_tflite(tensors, ops, [0], [3]))
    assert list(again.tensors) == list(g.tensors)  # deterministic


def test_fully_connected_implicit_flatten_becomes_reshape():
    q = {"scale": [0.1], "zero_point": [0]}
    w = np.arange(-16, 16, dtype=np.int8).reshape(2, 16)
    tensors = [{"name": "x", "shape": [1, 2, 2, 4], "type": T.INT8, **q},
               {"name": "w", "shape": [2, 16], "type": T.INT8, "data": w.tobytes(), **q},
               {"name": "y", "shape": [1, 2], "type": T.INT8, **q}]
    g = load_tflite_bytes(gb.raw_tflite(tensors, [{"op": B.FULLY_CONNECTED, "inputs": [0, 1, -1],
                                                   "outputs": [2]}], [0], [2]))
    assert [op.kind for op in g.ops] == ["RESHAPE", "FULLY_CONNECTED"]
    flat = g.ops[0].outputs[0]
    assert g[flat].shape == (1, 16) and g.ops[1].inputs == [flat, "w", None]


@pytest.mark.parametrize("data,match", [
    (b"", "empty file"),
    (b"TFL3", "too short"),
    (b"\x00" * 64, "not a TFLite model"),
])
def test_not_a_model(data, match):
    with pytest.raises(ModelFormatError, match=match):
        load_tflite_bytes(data)


def test_truncated_and_missing_files(tmp_path):
    data = mlperf("kws_ref_model.tflite").read_bytes()
    with pytest.raises(ModelFormatError, match="truncated|corrupt|past the end|holds|claims"):
        load_tflite_bytes(data[: len(data) // 2], source="half.tflite")
    with pytest.raises(ModelFormatError, match="cannot read"):
        load_tflite(tmp_path / "missing.tflite")


def test_buffer_size_must_match_shape():
    tensors = [{"name": "x", "shape": [1, 4], "type": T.INT8, "scale": [0.1]},
               {"name": "w", "shape": [2, 4], "type": T.INT8, "scale": [0.1],
                "data": bytes(7)},
               {"name": "y", "shape": [1, 2], "type": T.INT8, "scale": [0.1]}]
    ops = [{"op": B.FULLY_CONNECTED, "inputs": [0, 1, -1], "outputs": [2]}]
    with pytest.raises(ModelFormatError, match=r"tensor 'w' \[2, 4\] int8 needs 8 bytes.*holds 7"):
        load_tflite_bytes(gb.raw_tflite(tensors, ops, [0], [2]))


def test_wrong_output_shape_is_rejected():
    g = gb.conv2d(np.random.default_rng(1))
    g["y"].shape = (1, 8, 8, 4)  # SAME with stride 1 on 9x9 gives 9x9
    with pytest.raises(ModelFormatError, match=r"op 0 \(CONV_2D\).*expected \[1, 9, 9, 4\]"):
        load_tflite_bytes(to_bytes(g))
