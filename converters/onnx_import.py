"""ONNX float graph -> float Graph IR (NHWC), ready for `edgekit.converters.quantize`.

Before the walk, `edgekit.converters.onnx_prepass` folds the exporter's run-time shape
arithmetic (Shape, Slice, Concat, ConstantOfShape, ... on constants) so every shape is static,
and fuses elementwise chains into GELU, SiLU and RMSNorm (see that module).

Supported nodes (anything else raises `UnsupportedError` naming the node):

- CNN: Conv (2-D, group 1 or depthwise), Gemm, MatMul by a constant (+ Add of a constant: the
  bias), BatchNormalization (folded into the conv/linear before it), Relu, Clip(0, 6),
  HardSwish, Sigmoid (LOGISTIC), Add, AveragePool, MaxPool, GlobalAveragePool, ReduceMean
  (spatial), Flatten, Reshape, Softmax, Concat, Pad (zeros), Identity / Dropout (dropped).
  Explicit conv pads that are neither SAME nor VALID become a PAD op (TFLite has no other
  padding).
- transformer (MCUFormer, EmbBERT-Q and models built from the same layers; ``converters/
  onnx_tokens.py``): MatMul of two activations -> BATCH_MATMUL (a Transpose that swaps the last
  two axes of an operand, ``k.transpose(-1, -2)``, becomes ``adj_x`` / ``adj_y``); MatMul of
  a rank >= 3 activation by a constant -> FULLY_CONNECTED with ``keep_num_dims`` (+ the bias
  Add); Transpose -> TRANSPOSE; Softmax on the last axis; LayerNormalization (opset 17, last
  axis) -> LAYER_NORM; the RMSNorm pattern -> RMS_NORM; the Erf and tanh GELU patterns -> GELU
  (``approximate``); ``x * sigmoid(x)`` -> SILU; Gather on axis 0 of a constant table by the
  model's int64/int32 input -> GATHER (that input becomes int32 token ids, and may feed
  nothing else); Conv 1-D over ``[N, C, L]`` (depthwise or group 1) -> DEPTHWISE_CONV_2D /
  CONV_2D on ``[N, 1, L, C]``, a zero Pad of L before it folded into ``pad=(0, 0, left,
  right)`` (causal: ``(0, 0, k - 1, 0)``); ReduceMean over the token axis 1 of ``[N, T, D]`` or
  the last axis -> MEAN; Add / Mul / Sub / Div with a constant operand (positional embeddings,
  scales) -> ADD / MUL with a constant, a scalar Mul/Div folded into the FULLY_CONNECTED that
  produces its input where nothing else reads the chain (attention's ``1/sqrt(dh)`` lands in
  the query weights, through Reshape, Transpose and the first operand of a MatMul);
  ``x + (y - x)`` -> ``y``; Reshape / Flatten of token tensors.

Layout: 4-D activations written by convolutions, pools and the image input are NCHW in ONNX and
NHWC in the IR; conv weights become OHWI (depthwise ``1HWO``). Token tensors (``[N, T, D]``,
heads ``[N, H, T, dh]``) keep ONNX's layout. A Reshape of a conv's NHWC output to ONNX
``[N, C, H*W]`` (torch's ``flatten(2)``) is a RESHAPE to ``[N, H*W, C]`` held as a lazy
transposed view: tokens in row-major ``(h, w)`` patch order, which is exactly what the
``transpose(1, 2)`` after it asks for, so that Transpose costs no op (MCUFormer's patch
embedding); any other reader of the ``[N, C, H*W]`` value gets a TRANSPOSE.
Flattening a NHWC tensor with H*W > 1 to ``(N, -1)`` orders elements (h, w, c) instead
of ONNX's (c, h, w); rather than inserting a transpose the importer remembers that permutation
and applies it to the columns of the next linear layer's weights, which is where it matters.
ReLU/ReLU6 directly after a conv, linear, add or pool with no other reader become that op's
fused activation, as TFLite fuses them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekit.converters.onnx_data import check_tensor_data, inline_external_data
from edgekit.converters.onnx_prepass import DOMAIN, fold_constants, fuse_patterns
from edgekit.converters.onnx_tokens import TokenOps
from edgekit.errors import ModelFormatError, UnsupportedError
from edgekit.ir import DType, Graph, Op, Tensor

#: ops that can take a fused activation (ReLU/ReLU6 folded into them)
FUSABLE = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD",
                     "AVERAGE_POOL_2D", "MAX_POOL_2D"})
#: NCHW axis -> NHWC axis
_NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}


def load_onnx(path: str | os.PathLike) -> Graph:
    """Read an ``.onnx`` file (never executes anything from it) and import it; external tensor
    data is read by `edgekit.converters.onnx_data` from the file's own folder only."""
    from edgekit.extras import require

    onnx = require("onnx", extra="convert", purpose="importing an ONNX model")

    path = Path(path)
    try:
        model = onnx.load_model_from_string(path.read_bytes())
    except OSError as err:
        raise ModelFormatError(f"{path}: cannot read: {err.strerror or err}") from None
    except Exception as err:  # protobuf DecodeError and friends: corrupt file
        raise ModelFormatError(f"{path}: not a valid ONNX model ({type(err).__name__}: {err})") from None
    inline_external_data(model, path.resolve().parent, str(path))
    return import_onnx(model, source=str(path), name=path.stem)


#: what a handler raises on a node whose attributes or operands are not what its op defines
#: (a missing attribute read as None, a list where an int belongs, a reshape that cannot hold)
_MALFORMED = (TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError,
              OverflowError)


def import_onnx(model, source: str = "<onnx>", name: str = "model") -> Graph:
    """Import an `onnx.ModelProto` (float32) into a float Graph IR."""
    check_structure(model, source)
    importer = None
    try:
        importer = _Importer(model, source, name)
        return importer.run()
    except _MALFORMED as err:
        # a model file is untrusted input: past the structural checks, a node the handlers cannot
        # make sense of is still the file's fault, named as precisely as we know (-v: traceback)
        node = getattr(importer, "node", None)
        where = importer._where(node) if node is not None else source
        raise ModelFormatError(f"{where}: malformed ONNX model ({type(err).__name__}: {err})") from err


def check_structure(model, source: str) -> None:
    """The graph's wiring, before anything reads it: every node input is a graph input, an
    initializer or an earlier node's output (nodes in topological order, as ONNX requires),
    no name is produced twice, and every graph output is produced."""
    graph = model.graph
    known = {vi.name for vi in graph.input} | {t.name for t in graph.initializer}
    for node in graph.node:
        where = f"{source}: node {node.name or '?'!r} ({node.op_type})"
        for name in node.input:
            if name and name not in known:
                raise ModelFormatError(f"{where}: input {name!r} is neither a graph input, an"
                                       " initializer nor the output of an earlier node")
        if not node.output:
            raise ModelFormatError(f"{where}: has no output")
        for name in node.output:
            if name and name in known:
                raise ModelFormatError(f"{where}: output {name!r} is already defined")
            known.add(name)
    for out in graph.output:
        if out.name not in known:
            raise ModelFormatError(f"{source}: graph output {out.name!r} is not produced by any"
                                   " node, input or initializer")


@dataclass
class _State:
    tensors: dict[str, Tensor] = field(default_factory=dict)
    ops: list[Op] = field(default_factory=list)
    producer: dict[str, Op] = field(default_factory=dict)
    alias: dict[str, str] = field(default_factory=dict)  # onnx name -> IR name
    nhwc: set[str] = field(default_factory=set)  # IR names whose layout is NHWC for an NCHW value
    flatten_perm: dict[str, np.ndarray] = field(default_factory=dict)  # IR name -> ONNX index order
    swapped: dict[str, str] = field(default_factory=dict)  # ONNX [N, C, L] name -> IR [N, L, C]
    materialized: dict[str, str] = field(default_factory=dict)  # swapped IR name -> its TRANSPOSE


class _Importer(TokenOps):
    def __init__(self, model, source: str, name: str):
        import onnx
        from onnx import numpy_helper, shape_inference

        self.source, self.name = source, name
        self.node = None  # the node being imported, for error messages
        check_tensor_data(model, source)  # before numpy allocates or onnx looks for files
        model = fold_constants(model, source)
        try:
            model = shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
        except Exception as err:
            raise ModelFormatError(f"{source}: ONNX shape inference failed: {err}") from None
        self.graph = model.graph
        self.numpy_helper = numpy_helper
        self.onnx = onnx
        self.consts: dict[str, np.ndarray] = {}
        for init in self.graph.initializer:
            try:
                self.consts[init.name] = numpy_helper.to_array(init)
            except Exception as err:
                raise ModelFormatError(f"{source}: initializer {init.name!r} is unreadable:"
                                       f" {err}") from None
        self.shapes: dict[str, tuple[int, ...]] = {}
        for vi in [*self.graph.input, *self.graph.value_info, *self.graph.output]:
            self.shapes[vi.name] = self._static_shape(vi)
        self.graph_outputs = {o.name for o in self.graph.output}
        self.nodes = fuse_patterns(self.graph.node, self.consts, self.graph_outputs)
        self.readers: dict[str, int] = {}
        for node in self.nodes:
            for i in node.input:
                self.readers[i] = self.readers.get(i, 0) + 1
        self.s = _State()

    # --- helpers ---------------------------------------------------------------------------------

    def _static_shape(self, vi) -> tuple[int, ...] | None:
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            return None
        dims = []
        for d in t.shape.dim:
            if not d.HasField("dim_value") or d.dim_value <= 0:
                return None
            dims.append(int(d.dim_value))
        return tuple(dims)

    def _shape(self, onnx_name: str, node=None) -> tuple[int, ...]:
        shape = self.shapes.get(onnx_name)
        if shape is None:
            where = f" (node {node.name or node.op_type!r})" if node is not None else ""
            raise UnsupportedError(f"{self.source}: tensor {onnx_name!r}{where} has a dynamic or"
                                   " unknown shape; export the model with fixed input shapes")
        return shape

    def _where(self, node) -> str:
        return f"{self.source}: node {node.name or '?'!r} ({node.op_type})"

    def _attrs(self, node) -> dict:
        return {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}

    def _in(self, onnx_name: str) -> str:
        """The IR tensor holding ``onnx_name`` in the importer's layout (NHWC for feature maps,
        ONNX's otherwise); a swapped token tensor gets its TRANSPOSE here, once."""
        if onnx_name in self.s.swapped:
            return self._materialize(self.s.swapped[onnx_name])
        return self._raw(onnx_name)

    def _raw(self, onnx_name: str) -> str:
        return self.s.alias.get(onnx_name, onnx_name)

    def _const(self, node, index: int) -> np.ndarray:
        if index >= len(node.input) or not node.input[index]:
            return None
        value = self.consts.get(node.input[index])
        if value is None:
            raise UnsupportedError(f"{self._where(node)}: input {index} ({node.input[index]!r})"
                                   " must be a constant")
        return value

    def _new_activation(self, onnx_name: str, node, nhwc: bool | None = None) -> str:
        shape = self._shape(onnx_name, node)
        if nhwc is None:
            nhwc = len(shape) == 4 and self._feature_map_node(node)
        if nhwc:
            shape = (shape[0], shape[2], shape[3], shape[1])
            self.s.nhwc.add(onnx_name)
        self.s.tensors[onnx_name] = Tensor(onnx_name, shape, DType.FLOAT32)
        return onnx_name

    def _new_const(self, name: str, data: np.ndarray) -> str:
        base, i = name, 0
        while name in self.s.tensors or name in self.shapes:
            i += 1
            name = f"{base}_{i}"
        data = np.ascontiguousarray(data, dtype=np.float32)
        self.s.tensors[name] = Tensor(name, data.shape, DType.FLOAT32, data=data)
        return name

    def _emit(self, node, kind: str, inputs: list, attrs: dict) -> Op:
        self._check_no_perm(node, inputs[:1] if kind == "FULLY_CONNECTED" else inputs)
        out = self._new_activation(node.output[0], node)
        op = Op(kind, inputs, [out], attrs, name=node.name or node.output[0])
        self.s.ops.append(op)
        self.s.producer[out] = op
        return op

    def _check_no_perm(self, node, inputs) -> None:
        if node.op_type in ("Gemm", "MatMul"):
            return
        for name in inputs:
            if name in self.s.flatten_perm:
                raise UnsupportedError(
                    f"{self._where(node)}: reads {name!r}, a flattened H x W x C feature map;"
                    " only a linear layer (Gemm/MatMul) may follow such a flatten")

    def _fusable_producer(self, onnx_in: str) -> Op | None:
        """The op that writes ``onnx_in`` if its output may be rewritten (one reader, not an
        output of the graph)."""
        name = self._in(onnx_in)
        op = self.s.producer.get(name)
        if op is None or self.readers.get(onnx_in, 0) != 1 or onnx_in in self.graph_outputs:
            return None
        return op

    def _rename_output(self, op: Op, onnx_out: str, node) -> None:
        old = op.outputs[0]
        del self.s.tensors[old]
        self.s.producer.pop(old)
        nhwc = old in self.s.nhwc
        self.s.nhwc.discard(old)
        out = self._new_activation(onnx_out, node, nhwc=nhwc)
        op.outputs[0] = out
        self.s.producer[out] = op

    # --- the walk --------------------------------------------------------------------------------

    def run(self) -> Graph:
        inputs = []
        for vi in self.graph.input:
            if vi.name in self.consts:
                continue
            elem = vi.type.tensor_type.elem_type
            if elem in (self.onnx.TensorProto.INT64, self.onnx.TensorProto.INT32):
                inputs.append(self._token_id_input(vi))
                continue
            if elem != self.onnx.TensorProto.FLOAT:
                raise UnsupportedError(f"{self.source}: input {vi.name!r} has element type"
                                       f" {self.onnx.TensorProto.DataType.Name(elem)}; float32 only")
            self._shape(vi.name)
            inputs.append(self._new_activation(vi.name, None))
        if not inputs:
            raise ModelFormatError(f"{self.source}: the graph has no non-constant input")
        for node in self.nodes:
            self.node = node  # named in the error if the node turns out malformed
            handler = getattr(self, f"_op_{node.op_type}", None)
            if handler is None or node.domain not in ("", "ai.onnx", DOMAIN):
                raise UnsupportedError(f"{self._where(node)}: op {node.op_type!r} is not supported"
                                       " by the ONNX importer")
            handler(node, self._attrs(node))
        self.node = None
        outputs = [self._in(o.name) for o in self.graph.output]
        self._collapse_reshapes(set(outputs))
        for name in outputs:
            if name in self.s.flatten_perm:
                raise UnsupportedError(f"{self.source}: graph output {name!r} is a flattened"
                                       " H x W x C feature map (channel order differs from ONNX)")
        used = {n for op in self.s.ops for n in op.present_inputs()} | set(outputs) | set(inputs)
        tensors = [t for t in self.s.tensors.values() if t.name in used or
                   any(t.name in op.outputs for op in self.s.ops)]
        return Graph(tensors, self.s.ops, inputs, outputs, name=self.name)

    # --- op handlers -----------------------------------------------------------------------------

    def _op_Constant(self, node, attrs) -> None:
        if "value" not in attrs:
            raise UnsupportedError(f"{self._where(node)}: only tensor-valued Constant is supported")
        self.consts[node.output[0]] = self.numpy_helper.to_array(attrs["value"])

    def _op_Identity(self, node, attrs) -> None:
        if node.input[0] in self.consts:
            self.consts[node.output[0]] = self.consts[node.input[0]]
        else:
            self.s.alias[node.output[0]] = self._in(node.input[0])

    def _op_Dropout(self, node, attrs) -> None:
        self._op_Identity(node, attrs)

    def _pads(self, node, attrs, kernel) -> tuple[int, int, int, int]:
        auto = attrs.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto not in ("NOTSET", "VALID"):
            raise UnsupportedError(f"{self._where(node)}: auto_pad={auto} is not supported;"
                                   " export with explicit pads")
        p = list(attrs.get("pads", [0, 0, 0, 0]))
        if len(p) != 4:
            raise UnsupportedError(f"{self._where(node)}: only 2-D spatial ops are supported")
        return (int(p[0]), int(p[2]), int(p[1]), int(p[3]))

    def _op_Conv(self, node, attrs) -> None:
        w, b = self._const(node, 1), self._const(node, 2)
        if w.ndim == 3:
            self._conv1d(node, attrs, w, b)
            return
        x = self._in(node.input[0])
        if x not in self.s.nhwc:
            raise UnsupportedError(f"{self._where(node)}: 2-D convolution of {x!r}, which is not"
                                   " an NCHW feature map (a token tensor reshaped to 4-D)")
        if w.ndim != 4:
            raise UnsupportedError(f"{self._where(node)}: only 2-D convolution is supported"
                                   f" (weight shape {w.shape})")
        group = int(attrs.get("group", 1))
        c_in = self.s.tensors[x].shape[3]
        o = w.shape[0]
        common = dict(stride=tuple(attrs.get("strides", (1, 1))),
                      dilation=tuple(attrs.get("dilations", (1, 1))),
                      pad=self._pads(node, attrs, w.shape[2:]), activation="NONE")
        bias = self._new_const(f"{node.output[0]}/bias",
                               b if b is not None else np.zeros(o, np.float32))
        x = self._explicit_pad(node, x, w.shape[2:], common)
        if group == 1:
            wname = self._new_const(f"{node.output[0]}/weights", w.transpose(0, 2, 3, 1))
            self._emit(node, "CONV_2D", [x, wname, bias], common)
        elif group == c_in and w.shape[1] == 1 and o % c_in == 0:
            wname = self._new_const(f"{node.output[0]}/weights", w[:, 0].transpose(1, 2, 0)[None])
            self._emit(node, "DEPTHWISE_CONV_2D", [x, wname, bias],
                       {**common, "depth_multiplier": o // c_in})
        else:
            raise UnsupportedError(f"{self._where(node)}: grouped convolution with group={group}"
                                   f" over {c_in} channels (only 1 or depthwise) is not supported")

    def _tflite_padding_ok(self, x: str, op_attrs: dict, filter_hw) -> bool:
        from edgekit.converters.tflite_writer import padding_mode

        try:
            padding_mode(Op("CONV_2D", [x], [x], op_attrs), self.s.tensors[x], tuple(filter_hw))
        except UnsupportedError:
            return False
        return True

    def _explicit_pad(self, node, x: str, filter_hw, attrs: dict) -> str:
        """TFLite only knows SAME and VALID padding: other pads become a PAD op before the
        convolution (padding with zeros, which int8 represents exactly by the zero point)."""
        if self._tflite_padding_ok(x, attrs, filter_hw):
            return x
        top, bottom, left, right = attrs["pad"]
        n, h, w, c = self.s.tensors[x].shape
        name = f"{node.output[0]}/pad"
        self.s.tensors[name] = Tensor(name, (n, h + top + bottom, w + left + right, c), DType.FLOAT32)
        op = Op("PAD", [x], [name], {"paddings": ((0, 0), (top, bottom), (left, right), (0, 0))},
                name=name)
        self.s.ops.append(op)
        self.s.producer[name] = op
        attrs["pad"] = (0, 0, 0, 0)
        return name

    def _linear(self, node, x: str, w_nk: np.ndarray, bias: np.ndarray | None) -> None:
        perm = self.s.flatten_perm.get(x)
        if perm is not None:
            w_nk = w_nk[:, perm]
        k = int(np.prod(self.s.tensors[x].shape[1:]))
        if w_nk.shape[1] != k or len(self.s.tensors[x].shape) != 2:
            raise UnsupportedError(f"{self._where(node)}: linear layer over input of shape"
                                   f" {self.s.tensors[x].shape} with weights {w_nk.shape}")
        wname = self._new_const(f"{node.output[0]}/weights", w_nk)
        bname = self._new_const(f"{node.output[0]}/bias",
                                bias if bias is not None else np.zeros(w_nk.shape[0], np.float32))
        self._emit(node, "FULLY_CONNECTED", [x, wname, bname],
                   {"activation": "NONE", "keep_num_dims": False})

    def _op_Gemm(self, node, attrs) -> None:
        if attrs.get("transA", 0):
            raise UnsupportedError(f"{self._where(node)}: Gemm with transA=1 is not supported")
        b = self._const(node, 1).astype(np.float32)
        w = b if attrs.get("transB", 0) else b.T
        w = w * float(attrs.get("alpha", 1.0))
        c = self._const(node, 2)
        if c is not None:
            c = np.broadcast_to(c.astype(np.float32) * float(attrs.get("beta", 1.0)),
                                (w.shape[0],)).copy()
        self._linear(node, self._in(node.input[0]), w, c)

    def _op_MatMul(self, node, attrs) -> None:
        if self._token_matmul(node):
            return
        self._linear(node, self._in(node.input[0]), self._const(node, 1).astype(np.float32).T, None)

    def _op_Add(self, node, attrs) -> None:
        consts = [n in self.consts for n in node.input]
        if consts == [False, False]:
            self._emit(node, "ADD", [self._in(node.input[0]), self._in(node.input[1])],
                       {"activation": "NONE"})
            return
        value = self.consts[node.input[1] if consts[1] else node.input[0]]
        other = node.input[0] if consts[1] else node.input[1]
        op = self._fusable_producer(other)
        if op is not None and op.kind == "FULLY_CONNECTED":
            bias = self.s.tensors[op.inputs[2]]
            if value.size == 1 or (value.size == bias.size and value.shape[-1] == bias.size):
                bias.data = (bias.data + value.reshape(-1).astype(np.float32)).astype(np.float32)
                self._rename_output(op, node.output[0], node)
                return
        self._const_operand(node, "ADD", other, value)

    def _op_BatchNormalization(self, node, attrs) -> None:
        gamma, beta, mean, var = (self._const(node, i).astype(np.float64) for i in range(1, 5))
        scale = gamma / np.sqrt(var + float(attrs.get("epsilon", 1e-5)))
        op = self._fusable_producer(node.input[0])
        if op is None or op.kind not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") \
                or op.attrs.get("activation", "NONE") != "NONE":
            raise UnsupportedError(f"{self._where(node)}: BatchNormalization must follow a"
                                   " convolution or linear layer whose output nothing else reads")
        w, b = self.s.tensors[op.inputs[1]], self.s.tensors[op.inputs[2]]
        axis = 3 if op.kind == "DEPTHWISE_CONV_2D" else 0
        shape = [1] * w.data.ndim
        shape[axis] = -1
        w.data = (w.data * scale.reshape(shape)).astype(np.float32)
        b.data = ((b.data - mean) * scale + beta).astype(np.float32)
        self._rename_output(op, node.output[0], node)

    def _activation(self, node, act: str, standalone: str) -> None:
        if node.input[0] in self.s.swapped:
            self._unary(node, standalone, {})
            return
        op = self._fusable_producer(node.input[0])
        if op is not None and op.kind in FUSABLE and op.attrs.get("activation", "NONE") == "NONE":
            op.attrs["activation"] = act
            self._rename_output(op, node.output[0], node)
            return
        self._emit(node, standalone, [self._in(node.input[0])], {})

    def _op_Relu(self, node, attrs) -> None:
        self._activation(node, "RELU", "RELU")

    def _op_Clip(self, node, attrs) -> None:
        lo = attrs.get("min", None)
        hi = attrs.get("max", None)
        if len(node.input) > 1 and node.input[1]:
            lo = float(self._const(node, 1))
        if len(node.input) > 2 and node.input[2]:
            hi = float(self._const(node, 2))
        if lo == 0.0 and hi == 6.0:
            self._activation(node, "RELU6", "RELU6")
        elif lo == 0.0 and hi is None:
            self._activation(node, "RELU", "RELU")
        else:
            raise UnsupportedError(f"{self._where(node)}: Clip({lo}, {hi}) is not supported;"
                                   " only Clip(0, 6) (ReLU6) and Clip(0) (ReLU)")

    def _op_HardSwish(self, node, attrs) -> None:
        self._unary(node, "HARD_SWISH", {})

    def _pool(self, node, attrs, kind: str) -> None:
        if attrs.get("ceil_mode", 0):
            raise UnsupportedError(f"{self._where(node)}: ceil_mode=1 is not supported")
        kernel = tuple(attrs["kernel_shape"])
        pad = self._pads(node, attrs, kernel)
        if kind == "AVERAGE_POOL_2D" and any(pad) and attrs.get("count_include_pad", 0):
            raise UnsupportedError(f"{self._where(node)}: AveragePool with count_include_pad=1"
                                   " and padding (TFLite never counts padding)")
        if any(d != 1 for d in attrs.get("dilations", (1, 1))):
            raise UnsupportedError(f"{self._where(node)}: dilated pooling is not supported")
        strides = tuple(attrs.get("strides", (1, 1)))
        if not self._tflite_padding_ok(self._in(node.input[0]), {"stride": strides, "pad": pad},
                                       kernel):
            raise UnsupportedError(f"{self._where(node)}: pads {pad} are neither SAME nor VALID"
                                   " padding, which TFLite pooling needs")
        self._emit(node, kind, [self._in(node.input[0])],
                   {"filter": kernel, "stride": tuple(attrs.get("strides", (1, 1))), "pad": pad,
                    "activation": "NONE"})

    def _op_AveragePool(self, node, attrs) -> None:
        self._pool(node, attrs, "AVERAGE_POOL_2D")

    def _op_MaxPool(self, node, attrs) -> None:
        if len(node.output) > 1 and node.output[1]:
            raise UnsupportedError(f"{self._where(node)}: MaxPool indices output is not supported")
        self._pool(node, attrs, "MAX_POOL_2D")

    def _op_GlobalAveragePool(self, node, attrs) -> None:
        self._emit(node, "MEAN", [self._in(node.input[0])], {"axes": (1, 2), "keep_dims": True})

    def _op_ReduceMean(self, node, attrs) -> None:
        x = self._in(node.input[0])
        axes = attrs.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = self._const(node, 1).reshape(-1).tolist()
        rank = len(self.s.tensors[x].shape)
        if axes is None:
            axes = list(range(rank))
        axes = sorted(a + rank if a < 0 else a for a in axes)
        keep = bool(attrs.get("keepdims", 1))
        if x in self.s.nhwc and axes == [2, 3]:
            ir_axes = (1, 2)
        elif x not in self.s.nhwc and x not in self.s.flatten_perm and axes == [rank - 1]:
            ir_axes = (rank - 1,)
        elif x not in self.s.nhwc and x not in self.s.flatten_perm and rank == 3 and axes == [1]:
            ir_axes = (1,)  # the mean over tokens [N, T, D]
        else:
            raise UnsupportedError(f"{self._where(node)}: ReduceMean over axes {axes}; only the"
                                   " spatial axes (2, 3) of a feature map, the last axis or the"
                                   " token axis 1 of [N, T, D]")
        self._emit(node, "MEAN", [x], {"axes": ir_axes, "keep_dims": keep})

    def _flatten_to(self, node, x: str, out_shape: tuple[int, ...]) -> None:
        xt = self.s.tensors[x]
        if x in self.s.flatten_perm:
            raise UnsupportedError(f"{self._where(node)}: reshaping a flattened feature map again")
        perm = None
        if x in self.s.nhwc:
            n, h, w, c = xt.shape
            if len(out_shape) != 2 or out_shape[0] != n:
                raise UnsupportedError(f"{self._where(node)}: reshape of a 4-D feature map"
                                       f" {xt.shape} to {out_shape}; only flattening to (N, -1)")
            if h * w > 1:
                # IR element (h, w, c) sits at ONNX flat index c*H*W + h*W + w
                perm = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
        elif len(out_shape) == 4 and out_shape[2] * out_shape[3] > 1 and len(xt.shape) <= 2:
            # NCHW -> NHWC would reorder the elements: not a plain reshape any more
            raise UnsupportedError(f"{self._where(node)}: reshape of {xt.shape} to a 4-D feature"
                                   f" map {out_shape} with H*W > 1")
        out = self._new_activation(node.output[0], node)
        op = Op("RESHAPE", [x], [out], {}, name=node.name or out)
        self.s.ops.append(op)
        self.s.producer[out] = op
        if perm is not None:
            self.s.flatten_perm[out] = perm

    def _op_Flatten(self, node, attrs) -> None:
        if int(attrs.get("axis", 1)) != 1:
            raise UnsupportedError(f"{self._where(node)}: Flatten axis={attrs.get('axis')}; only 1")
        self._flatten_to(node, self._in(node.input[0]), self._shape(node.output[0], node))

    def _op_Reshape(self, node, attrs) -> None:
        if self._token_reshape(node):
            return
        self._flatten_to(node, self._in(node.input[0]), self._shape(node.output[0], node))

    def _op_Softmax(self, node, attrs) -> None:
        x = self._in(node.input[0])
        rank = len(self.s.tensors[x].shape)
        axis = int(attrs.get("axis", -1))
        axis = axis + rank if axis < 0 else axis
        last = 3 if x in self.s.nhwc else rank - 1
        if (x in self.s.nhwc and _NHWC_AXIS[axis] != 3) or (x not in self.s.nhwc and axis != last):
            raise UnsupportedError(f"{self._where(node)}: Softmax over axis {axis}; only the"
                                   " channel / last axis")
        self._emit(node, "SOFTMAX", [x], {"beta": 1.0})

    def _op_Concat(self, node, attrs) -> None:
        xs = [self._in(n) for n in node.input]
        axis = int(attrs["axis"])
        rank = len(self._shape(node.output[0], node))
        axis = axis + rank if axis < 0 else axis
        if xs[0] in self.s.nhwc:
            axis = _NHWC_AXIS[axis]
        self._emit(node, "CONCATENATION", xs, {"axis": axis, "activation": "NONE"})
