"""Structural mutations of model files: `.tflite` through the TFLite schema's object API
(``ai_edge_litert.schema_py_generated``, pinned in requirements.lock), `.onnx` through its
protobuf, and `.pt2` payload archives. Each edit is one a hostile or broken exporter could
write: shapes, buffer and tensor indexes, quantization parameters, op options.
"""

from __future__ import annotations

import io
import math
import zipfile

import numpy as np

from fuzz.mutators import BAD_DIMS, BAD_INTS, BAD_SCALES, BAD_ZERO_POINTS, pick


# --- .tflite ------------------------------------------------------------------------------------

def _tensor_edit(rng, model, sg) -> None:
    t = pick(rng, sg.tensors)
    choice = int(rng.integers(0, 8))
    if choice == 0 and t.shape is not None and len(t.shape):
        shape = np.asarray(t.shape, dtype=np.int64).copy()
        shape[int(rng.integers(0, len(shape)))] = pick(rng, BAD_DIMS)
        t.shape = shape.astype(np.int32)
    elif choice == 1:
        t.shape = np.asarray(pick(rng, [[], [1] * 9, [1, 1 << 16, 1 << 16, 4], [128, 1], [0]]),
                             dtype=np.int32)
    elif choice == 2:
        t.buffer = pick(rng, [len(model.buffers), len(model.buffers) + 100, 0xFFFFFFFF, 0,
                              int(rng.integers(0, len(model.buffers)))])
    elif choice == 3 and t.quantization is not None and t.quantization.scale is not None:
        scale = np.asarray(t.quantization.scale, dtype=np.float32).copy()
        if scale.size:
            scale[int(rng.integers(0, scale.size))] = pick(rng, BAD_SCALES)
        t.quantization.scale = scale
    elif choice == 4 and t.quantization is not None and t.quantization.zeroPoint is not None:
        zp = np.asarray(t.quantization.zeroPoint, dtype=np.int64).copy()
        if zp.size:
            zp[int(rng.integers(0, zp.size))] = pick(rng, BAD_ZERO_POINTS)
        t.quantization.zeroPoint = zp
    elif choice == 5 and t.quantization is not None:
        q = t.quantization
        edit = int(rng.integers(0, 3))
        if edit == 0:
            q.quantizedDimension = pick(rng, [-1, 4, 7, 1 << 20])
        elif edit == 1 and q.scale is not None:
            q.scale = np.asarray(q.scale, dtype=np.float32)[: max(len(q.scale) - 1, 0)]
        else:
            q.zeroPoint = None
    elif choice == 6:
        t.type = int(rng.integers(0, 20))
    else:
        t.shapeSignature = np.asarray([-1] * (len(t.shape) if t.shape is not None else 1),
                                      dtype=np.int32)


def _operand_edit(rng, model, sg) -> None:
    """Reshape one operand of an op as a broken exporter would: a bias as [n, 1], weights with
    their axes swapped or a channel dropped, an input with an extra or a missing dimension."""
    op = pick(rng, [o for o in sg.operators if o.inputs is not None and len(o.inputs) > 1])
    position = int(rng.integers(0, len(op.inputs)))
    t = sg.tensors[int(op.inputs[position])]
    shape = [int(d) for d in (t.shape if t.shape is not None else [])]
    if not shape:
        return
    t.shape = np.asarray(pick(rng, [[int(np.prod(shape)), 1], [int(np.prod(shape)), 1], shape[::-1], shape[:-1],
                                    shape + [1], [1] + shape, shape[:-1] + [max(shape[-1] - 1, 1)]]),
                         dtype=np.int32)


def _op_edit(rng, model, sg) -> None:
    op = pick(rng, sg.operators)
    choice = int(rng.integers(0, 6))
    n = len(sg.tensors)
    if choice == 0 and op.inputs is not None and len(op.inputs):
        inputs = np.asarray(op.inputs, dtype=np.int32).copy()
        inputs[int(rng.integers(0, len(inputs)))] = pick(rng, [n, n + 1000, -1, -2, 0,
                                                               int(rng.integers(0, n))])
        op.inputs = inputs
    elif choice == 1 and op.outputs is not None and len(op.outputs):
        outputs = np.asarray(op.outputs, dtype=np.int32).copy()
        outputs[0] = pick(rng, [n, -1, int(rng.integers(0, n))])
        op.outputs = outputs
    elif choice == 2:
        op.opcodeIndex = pick(rng, [len(model.operatorCodes), 0xFFFFFFFF,
                                    int(rng.integers(0, len(model.operatorCodes)))])
    elif choice == 3 and op.builtinOptions is not None:
        fields = [k for k, v in vars(op.builtinOptions).items() if isinstance(v, (int, float))]
        if fields:
            value = pick(rng, [0, -1, 1 << 30, 255, 2, math.nan])
            field = pick(rng, fields)
            if isinstance(getattr(op.builtinOptions, field), float) or not isinstance(value, float):
                setattr(op.builtinOptions, field, value)
    elif choice == 4:
        ops = list(sg.operators)
        i = int(rng.integers(0, len(ops)))
        if rng.random() < 0.5:
            del ops[i]
        else:
            ops.insert(int(rng.integers(0, len(ops))), ops[i])
        sg.operators = ops
    else:
        code = pick(rng, model.operatorCodes)
        code.builtinCode = int(rng.integers(0, 210))
        code.deprecatedBuiltinCode = min(code.builtinCode, 127)


def _graph_edit(rng, model, sg) -> None:
    choice = int(rng.integers(0, 5))
    n = len(sg.tensors)
    if choice == 0:
        sg.outputs = np.asarray(pick(rng, [[], [n], [0], list(sg.outputs) * 2]), dtype=np.int32)
    elif choice == 1:
        sg.inputs = np.asarray(pick(rng, [[], [n + 3], [-1], list(sg.inputs) * 2]), dtype=np.int32)
    elif choice == 2:
        buffers = [b for b in model.buffers if b.data is not None and len(b.data)]
        if buffers:
            b = pick(rng, buffers)
            b.data = np.asarray(b.data)[: int(rng.integers(0, len(b.data)))]
    elif choice == 3:
        model.subgraphs = pick(rng, [[], model.subgraphs * 2])
    else:
        model.buffers = model.buffers[: int(rng.integers(0, len(model.buffers) + 1))]


def tflite_struct(rng, data: bytes) -> bytes:
    """1-2 structural edits of a `.tflite`, re-serialized with the TFLite schema."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(data, 0)
    sg = model.subgraphs[0]
    for _ in range(int(rng.integers(1, 3))):
        edit = pick(rng, [_tensor_edit, _tensor_edit, _operand_edit, _operand_edit, _op_edit,
                          _op_edit, _graph_edit])
        try:
            edit(rng, model, sg)
        except (IndexError, ValueError, TypeError):
            pass  # the seed has nothing this edit applies to (no ops, no quantization, ...)
    builder = flatbuffers.Builder(1024)
    try:
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    except (OverflowError, ValueError, TypeError, Exception):  # noqa: BLE001 - the schema refused
        # a value its own types cannot hold (e.g. a uint32 > 2^32): keep the file intact but cut
        return data[: len(data) // 2]
    return bytes(builder.Output())


# --- .onnx --------------------------------------------------------------------------------------

def onnx_struct(rng, data: bytes) -> bytes:
    """1-2 protobuf-level edits of an ONNX model: initializer dims and data, node attributes and
    inputs, graph input shapes, opset, dtypes."""
    import onnx

    model = onnx.ModelProto()
    model.ParseFromString(data)
    graph = model.graph
    for _ in range(int(rng.integers(1, 3))):
        choice = int(rng.integers(0, 8))
        if choice == 0 and len(graph.initializer):
            init = pick(rng, graph.initializer)
            if len(init.dims):
                init.dims[int(rng.integers(0, len(init.dims)))] = pick(rng, BAD_DIMS + [1 << 40])
        elif choice == 1 and len(graph.initializer):
            init = pick(rng, graph.initializer)
            if init.raw_data:
                init.raw_data = init.raw_data[: int(rng.integers(0, len(init.raw_data)))]
            else:
                init.data_type = pick(rng, [0, 8, 11, 16, 99])
        elif choice == 2 and len(graph.node):
            node = pick(rng, graph.node)
            ints = [a for a in node.attribute if a.ints or a.type == onnx.AttributeProto.INT]
            if ints:
                attr = pick(rng, ints)
                if len(attr.ints):
                    attr.ints[int(rng.integers(0, len(attr.ints)))] = pick(rng, BAD_INTS[:7])
                else:
                    attr.i = pick(rng, BAD_INTS[:7])
            else:
                node.attribute.append(onnx.helper.make_attribute(
                    pick(rng, ["group", "axis", "strides", "pads"]), pick(rng, [0, -5, [0, 0]])))
        elif choice == 3 and len(graph.node):
            node = pick(rng, graph.node)
            if len(node.input):
                node.input[int(rng.integers(0, len(node.input)))] = pick(
                    rng, ["", "nowhere", node.output[0], graph.input[0].name])
        elif choice == 4 and len(graph.input):
            dims = graph.input[0].type.tensor_type.shape.dim
            if len(dims):
                dim = dims[int(rng.integers(0, len(dims)))]
                if rng.random() < 0.3:
                    dim.dim_param = "N"
                else:
                    dim.dim_value = pick(rng, [0, 1 << 40, 7, 1])
        elif choice == 5:
            model.opset_import[0].version = pick(rng, [1, 6, 99, 0])
        elif choice == 6 and len(graph.node):
            node = pick(rng, graph.node)
            node.op_type = pick(rng, ["Loop", "If", "Scan", "Conv", "Gemm", "Relu", "", "Custom"])
        else:
            graph.output[0].type.tensor_type.elem_type = pick(rng, [0, 7, 10, 16])
    return model.SerializeToString()


def onnx_external(data: bytes, location: str, as_constant: bool = False) -> bytes:
    """The model with its largest initializer's data moved to an external `location` (absolute,
    ``..`` or plain), optionally as a ``Constant`` node: the exfiltration probes (the weights
    would carry that file's bytes into the output)."""
    import onnx

    model = onnx.ModelProto()
    model.ParseFromString(data)
    init = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
    if as_constant:
        tensor = onnx.TensorProto()
        tensor.CopyFrom(init)
        model.graph.initializer.remove(init)
        node = onnx.helper.make_node("Constant", [], [tensor.name], value=tensor)
        model.graph.node.insert(0, node)
        # protobuf's insert copies: edit the graph's own node, not `node`
        init = model.graph.node[0].attribute[0].t
    size = int(np.prod(init.dims)) * 4
    init.ClearField("raw_data")
    del init.float_data[:]
    init.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(size))):
        entry = init.external_data.add()
        entry.key, entry.value = key, value
    return model.SerializeToString()


# --- .pt2 payloads ------------------------------------------------------------------------------

class Trap:
    """Unpickling this creates the marker file: proof that a model file ran code."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def pt2_payload(rng, data: bytes, marker: str) -> bytes:
    """The archive with one pickle-bearing member replaced by a trap (the simple classes; the
    full corpus is tests/malicious_models.py where present)."""
    with zipfile.ZipFile(io.BytesIO(data)) as zin:
        members = [(info, zin.read(info)) for info in zin.infolist()]
    candidates = [info.filename for info, _ in members
                  if "sample_inputs" in info.filename or "/data/weights/" in info.filename
                  or info.filename.endswith((".pt", ".pkl"))]
    target = pick(rng, candidates) if candidates else members[-1][0].filename
    import torch

    blob = io.BytesIO()
    torch.save(((Trap(marker),), {}), blob)
    trap = blob.getvalue()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zout:
        for info, payload in members:
            zout.writestr(info, trap if info.filename == target else payload)
    return buf.getvalue()
