"""The transformer subset of the ONNX importer (`TokenOps`, mixed into its `_Importer`).

Token tensors (``[N, T, D]``, heads ``[N, H, T, dh]``, scores ``[N, H, T, T]``) keep ONNX's
layout in the IR; only 4-D feature maps written by convolutions, pools or the graph's image
input are NHWC. One more layout is kept lazily, "swapped": a rank-3 ONNX value ``[N, C, L]``
held by the IR as ``[N, L, C]`` with no op. It arises from

- a Reshape of a conv's NHWC output ``[N, H, W, C]`` to ONNX ``[N, C, H*W]`` (torch's
  ``flatten(2)``): the IR tensor is the RESHAPE to ``[N, H*W, C]``, tokens in row-major
  ``(h, w)`` patch order, which is ``flatten(2).transpose(1, 2)``'s order, so the Transpose
  that follows costs nothing;
- a Transpose ``(0, 2, 1)`` of a token tensor (``x.transpose(1, 2)``), which then becomes
  ``adj_x`` / ``adj_y`` of a BATCH_MATMUL, or the channels-last input of a 1-D convolution.

Any other reader of a swapped value gets a TRANSPOSE ``(0, 2, 1)``, written once.
"""

from __future__ import annotations

import numpy as np

from edgekit.errors import UnsupportedError
from edgekit.ir import DType, Op, Tensor


def _compose(first, then) -> tuple[int, ...]:
    """The perm of ``x.transpose(first).transpose(then)``."""
    return tuple(int(first[i]) for i in then)


class TokenOps:
    # --- layout ----------------------------------------------------------------------------------

    def _feature_map_node(self, node) -> bool:
        """Whether a 4-D output of ``node`` is an NCHW feature map (NHWC in the IR)."""
        if node is None:
            return True
        ins = [self._raw(i) for i in node.input if i and i not in self.consts]
        if any(i in self.s.nhwc for i in ins):
            return True
        if node.op_type in ("Reshape", "Flatten"):
            # [N, C] -> [N, C, 1, 1]: both layouts hold the same bytes
            return all(len(self.s.tensors[i].shape) <= 2 for i in ins if i in self.s.tensors)
        return False

    def _add_op(self, kind: str, inputs: list, out: str, shape, attrs: dict, name=None) -> str:
        if out not in self.s.tensors:
            self.s.tensors[out] = Tensor(out, tuple(shape), DType.FLOAT32)
        op = Op(kind, inputs, [out], attrs, name=name or out)
        self.s.ops.append(op)
        self.s.producer[out] = op
        return out

    def _materialize(self, name: str) -> str:
        if name not in self.s.materialized:
            n, l, c = self.s.tensors[name].shape
            self.s.materialized[name] = self._add_op("TRANSPOSE", [name], f"{name}/ncl", (n, c, l),
                                                     {"perm": (0, 2, 1)})
        return self.s.materialized[name]

    def _single_reader(self, onnx_name: str) -> bool:
        return self.readers.get(onnx_name, 0) == 1 and onnx_name not in self.graph_outputs

    def _token_id_input(self, vi) -> str:
        """An int64/int32 graph input: token ids, int32 in the IR, read only by Gather."""
        readers = [n for n in self.nodes if vi.name in n.input]
        if not readers or any(n.op_type != "Gather" or list(n.input).index(vi.name) != 1
                              for n in readers):
            raise UnsupportedError(f"{self.source}: integer input {vi.name!r} must only be the"
                                   " indices of Gather nodes (token ids into an embedding table)")
        shape = self._shape(vi.name)
        self.s.tensors[vi.name] = Tensor(vi.name, shape, DType.INT32)
        return vi.name

    # --- handlers --------------------------------------------------------------------------------

    def _op_Transpose(self, node, attrs) -> None:
        onnx_x = node.input[0]
        x = self.s.swapped.get(onnx_x) or self._raw(onnx_x)
        rank = len(self.s.tensors[x].shape)
        perm = tuple(int(p) for p in attrs.get("perm", range(rank - 1, -1, -1)))
        if x in self.s.nhwc:
            perm = _compose((0, 3, 1, 2), perm)  # IR NHWC -> ONNX NCHW first
        elif onnx_x in self.s.swapped:
            perm = _compose((0, 2, 1), perm)
        if perm == tuple(range(rank)) and x in self.s.nhwc:
            # NCHW -> NHWC in ONNX is the IR's bytes already, but no longer a feature map
            out = self._new_activation(node.output[0], node, nhwc=False)
            self._add_op("RESHAPE", [x], out, self.s.tensors[out].shape, {}, name=node.name or out)
        elif perm == tuple(range(rank)):
            self.s.alias[node.output[0]] = x
        elif rank == 3 and perm == (0, 2, 1):
            self.s.swapped[node.output[0]] = x  # a view; an op only if a reader needs it
        else:
            out = self._new_activation(node.output[0], node, nhwc=False)
            self._add_op("TRANSPOSE", [x], out, self.s.tensors[out].shape, {"perm": perm},
                         name=node.name or out)

    def _token_reshape(self, node) -> bool:
        """Reshapes of token tensors, and a feature map to ONNX [N, C, H*W] (see above)."""
        x = self._raw(node.input[0])
        out_shape = self._shape(node.output[0], node)
        if x in self.s.nhwc:
            n, h, w, c = self.s.tensors[x].shape
            if out_shape != (n, c, h * w):
                return False
            name = f"{node.output[0]}/tokens"
            self._add_op("RESHAPE", [x], name, (n, h * w, c), {}, name=node.name or name)
            self.s.swapped[node.output[0]] = name
            return True
        if node.input[0] not in self.s.swapped and (
                len(self.s.tensors[x].shape) <= 2 or x in self.s.flatten_perm):
            return False
        src = self._in(node.input[0])
        out = self._new_activation(node.output[0], node, nhwc=False)
        self._add_op("RESHAPE", [src], out, self.s.tensors[out].shape, {}, name=node.name or out)
        return True

    def _drop_op(self, op: Op) -> None:
        self.s.ops.remove(op)
        for name in op.outputs:
            self.s.producer.pop(name, None)
            self.s.tensors.pop(name, None)

    def _ir_readers(self, name: str) -> int:
        return sum(name in op.inputs for op in self.s.ops)

    def _matmul_operand(self, onnx_name: str) -> tuple[str, bool]:
        """(IR tensor, adjoint): a swapped view or a single-reader TRANSPOSE whose last two
        axes swap is folded into BATCH_MATMUL's adj_x / adj_y."""
        if onnx_name in self.consts:
            return self._new_const(f"{onnx_name}/const", self.consts[onnx_name]), False
        if onnx_name in self.s.swapped:
            return self.s.swapped[onnx_name], True
        ir = self._in(onnx_name)
        op = self.s.producer.get(ir)
        if op is None or op.kind != "TRANSPOSE" or not self._single_reader(onnx_name) \
                or self._ir_readers(ir) or ir in self.s.alias.values():
            return ir, False
        perm = tuple(op.attrs["perm"])
        if perm[-2] != len(perm) - 1:  # not a transposed matrix: keep the TRANSPOSE as is
            return ir, False
        inner = perm[:-2] + (perm[-1], perm[-2])
        if inner == tuple(range(len(perm))):
            self._drop_op(op)
            return op.inputs[0], True
        op.attrs["perm"] = inner
        shape = list(self.s.tensors[ir].shape)
        shape[-2:] = shape[-1], shape[-2]
        self.s.tensors[ir] = Tensor(ir, tuple(shape), DType.FLOAT32)
        return ir, True

    def _token_matmul(self, node) -> bool:
        """MatMul over tokens: activation x constant -> FULLY_CONNECTED (keep_num_dims);
        activation x activation -> BATCH_MATMUL. False: a 2-D linear layer (the CNN path)."""
        a, b = node.input
        if b in self.consts and a not in self.consts:
            x = self._in(a)
            if len(self.s.tensors[x].shape) <= 2 or x in self.s.nhwc:
                return False
            w = self.consts[b].astype(np.float32)
            if w.ndim != 2 or w.shape[0] != self.s.tensors[x].shape[-1]:
                raise UnsupportedError(f"{self._where(node)}: MatMul of {self.s.tensors[x].shape}"
                                       f" by a constant of shape {w.shape}")
            wname = self._new_const(f"{node.output[0]}/weights", w.T)
            bname = self._new_const(f"{node.output[0]}/bias", np.zeros(w.shape[1], np.float32))
            self._emit(node, "FULLY_CONNECTED", [x, wname, bname],
                       {"activation": "NONE", "keep_num_dims": True})
            return True
        xa, adj_x = self._matmul_operand(a)
        xb, adj_y = self._matmul_operand(b)
        for name in (xa, xb):
            if name in self.s.nhwc or name in self.s.flatten_perm:
                raise UnsupportedError(f"{self._where(node)}: MatMul of {name!r}, a feature map")
        out = self._new_activation(node.output[0], node, nhwc=False)
        self._add_op("BATCH_MATMUL", [xa, xb], out, self.s.tensors[out].shape,
                     {"adj_x": adj_x, "adj_y": adj_y}, name=node.name or out)
        return True

    def _const_operand(self, node, kind: str, onnx_x: str, value: np.ndarray) -> None:
        """ADD / MUL of an activation and a constant (in the activation's IR layout)."""
        x = self._in(onnx_x)
        shape = self.s.tensors[x].shape
        c = np.asarray(value, dtype=np.float32)
        if c.ndim > len(shape):
            raise UnsupportedError(f"{self._where(node)}: constant of shape {c.shape} against"
                                   f" {shape}")
        c = c.reshape((1,) * (len(shape) - c.ndim) + c.shape)
        if x in self.s.nhwc:
            c = c.transpose(0, 2, 3, 1)
        try:
            ok = np.broadcast_shapes(c.shape, shape) == tuple(shape)
        except ValueError:
            ok = False
        if not ok:
            raise UnsupportedError(f"{self._where(node)}: constant of shape {value.shape} does not"
                                   f" broadcast to the activation {shape}")
        cname = self._new_const(f"{node.output[0]}/const", c)
        self._emit(node, kind, [x, cname], {"activation": "NONE"})

    def _fold_scale(self, node, onnx_x: str, scale: float) -> bool:
        """``x * scale`` folded into the FULLY_CONNECTED that computes ``x`` (through
        RESHAPE / TRANSPOSE and the first operand of a BATCH_MATMUL: attention's
        1/sqrt(dh) lands in the query weights), when no other op reads the chain."""
        if not self._single_reader(onnx_x):
            return False
        ir = self.s.swapped.get(onnx_x) or self._raw(onnx_x)
        first = True
        while True:
            op = self.s.producer.get(ir)
            views = set(self.s.alias.values()) | set(self.s.swapped.values())
            if op is None or ir in self.graph_outputs or (ir in views and not first) \
                    or self._ir_readers(ir) != (0 if first else 1) \
                    or self.readers.get(ir, 0) > 1:
                return False
            first = False
            if op.kind == "FULLY_CONNECTED" and op.attrs.get("activation", "NONE") == "NONE":
                for name in op.inputs[1:3]:
                    t = self.s.tensors[name]
                    t.data = (t.data * np.float32(scale)).astype(np.float32)
                break
            if op.kind not in ("RESHAPE", "TRANSPOSE", "BATCH_MATMUL"):
                return False
            ir = op.inputs[0]
        if onnx_x in self.s.swapped:
            self.s.swapped[node.output[0]] = self.s.swapped[onnx_x]
        else:
            self.s.alias[node.output[0]] = self._raw(onnx_x)
        return True

    def _scaled(self, node, value: np.ndarray, kind: str = "MUL") -> None:
        consts = [n in self.consts for n in node.input]
        other = node.input[0] if consts[1] else node.input[1]
        if value.size == 1 and self._fold_scale(node, other, float(value.reshape(-1)[0])):
            return
        self._const_operand(node, kind, other, value)

    def _op_Mul(self, node, attrs) -> None:
        consts = [n in self.consts for n in node.input]
        if consts == [False, False]:
            self._emit(node, "MUL", [self._in(node.input[0]), self._in(node.input[1])],
                       {"activation": "NONE"})
            return
        self._scaled(node, self.consts[node.input[1] if consts[1] else node.input[0]])

    def _op_Div(self, node, attrs) -> None:
        if node.input[1] not in self.consts or node.input[0] in self.consts:
            raise UnsupportedError(f"{self._where(node)}: Div is only supported by a constant")
        self._scaled(node, 1.0 / self.consts[node.input[1]].astype(np.float64))

    def _op_Sub(self, node, attrs) -> None:
        if node.input[1] not in self.consts or node.input[0] in self.consts:
            raise UnsupportedError(f"{self._where(node)}: Sub is only supported as activation"
                                   " minus a constant (or in x + (y - x))")
        self._const_operand(node, "ADD", node.input[0], -self.consts[node.input[1]])

    def _token_input(self, node) -> str:
        x = self._in(node.input[0])
        if x in self.s.nhwc or x in self.s.flatten_perm:
            raise UnsupportedError(f"{self._where(node)}: normalises the last axis of {x!r}, a"
                                   " feature map (only token tensors [..., C])")
        return x

    def _op_LayerNormalization(self, node, attrs) -> None:
        x = self._token_input(node)
        rank = len(self.s.tensors[x].shape)
        axis = int(attrs.get("axis", -1))
        if axis not in (-1, rank - 1):
            raise UnsupportedError(f"{self._where(node)}: LayerNormalization over axis {axis};"
                                   " only the last axis")
        if any(self.readers.get(o, 0) or o in self.graph_outputs for o in node.output[1:] if o):
            raise UnsupportedError(f"{self._where(node)}: the Mean / InvStdDev outputs are not"
                                   " supported")
        gamma = self._const(node, 1).astype(np.float32)
        beta = self._const(node, 2)
        beta = np.zeros_like(gamma) if beta is None else beta.astype(np.float32)
        g = self._new_const(f"{node.output[0]}/gamma", np.broadcast_to(gamma, gamma.shape[-1:]))
        b = self._new_const(f"{node.output[0]}/beta", np.broadcast_to(beta, gamma.shape[-1:]))
        self._emit(node, "LAYER_NORM", [x, g, b], {"epsilon": float(attrs.get("epsilon", 1e-5))})

    def _op_EdgekitRmsNorm(self, node, attrs) -> None:
        x = self._token_input(node)
        c = self.s.tensors[x].shape[-1]
        gamma = self._const(node, 1)
        gamma = np.ones(c, np.float32) if gamma is None else gamma.astype(np.float32)
        if gamma.shape != (c,):
            raise UnsupportedError(f"{self._where(node)}: RMSNorm scale of shape {gamma.shape}"
                                   f" for {c} channels")
        g = self._new_const(f"{node.output[0]}/gamma", gamma)
        self._emit(node, "RMS_NORM", [x, g], {"epsilon": float(attrs["epsilon"])})

    def _unary(self, node, kind: str, attrs: dict) -> None:
        """An elementwise op; on a swapped view it runs on the IR tensor and stays swapped
        (a 1-D conv -> activation -> 1-D conv chain needs no TRANSPOSE)."""
        onnx_x = node.input[0]
        if onnx_x not in self.s.swapped:
            self._emit(node, kind, [self._in(onnx_x)], attrs)
            return
        x = self.s.swapped[onnx_x]
        name = f"{node.output[0]}/nlc"
        self._add_op(kind, [x], name, self.s.tensors[x].shape, attrs, name=node.name or name)
        self.s.swapped[node.output[0]] = name

    def _op_EdgekitGelu(self, node, attrs) -> None:
        self._unary(node, "GELU", {"approximate": bool(attrs.get("approximate", 0))})

    def _op_EdgekitSilu(self, node, attrs) -> None:
        self._unary(node, "SILU", {})

    def _op_Sigmoid(self, node, attrs) -> None:
        self._unary(node, "LOGISTIC", {})

    def _op_Gather(self, node, attrs) -> None:
        if node.input[0] not in self.consts or int(attrs.get("axis", 0)) != 0:
            raise UnsupportedError(f"{self._where(node)}: Gather is only supported on axis 0 of a"
                                   " constant table (an embedding)")
        idx = self._raw(node.input[1])
        if self.s.tensors.get(idx) is None or self.s.tensors[idx].dtype != DType.INT32:
            raise UnsupportedError(f"{self._where(node)}: Gather indices {node.input[1]!r} must be"
                                   " the model's integer input (token ids)")
        table = self._new_const(f"{node.output[0]}/table", self.consts[node.input[0]])
        out = self._new_activation(node.output[0], node, nhwc=False)
        self._add_op("GATHER", [table, idx], out, self.s.tensors[out].shape, {"axis": 0},
                     name=node.name or out)

    def _op_Pad(self, node, attrs) -> None:
        mode = attrs.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        pads = self._const(node, 1).reshape(-1).astype(int).tolist()
        value = self._const(node, 2)
        if mode != "constant" or (value is not None and float(value.reshape(-1)[0]) != 0.0) \
                or (len(node.input) > 3 and node.input[3]):
            raise UnsupportedError(f"{self._where(node)}: only zero constant padding of all axes")
        rank = len(pads) // 2
        pairs = [(pads[i], pads[i + rank]) for i in range(rank)]
        onnx_x = node.input[0]
        if onnx_x in self.s.swapped:
            x = self.s.swapped[onnx_x]
            n, l, c = self.s.tensors[x].shape
            (a0, b0), (a1, b1), (a2, b2) = pairs
            name = f"{node.output[0]}/nlc"
            self._add_op("PAD", [x], name, (n + a0 + b0, l + a2 + b2, c + a1 + b1),
                         {"paddings": ((a0, b0), (a2, b2), (a1, b1))}, name=node.name or name)
            self.s.swapped[node.output[0]] = name
            return
        x = self._in(onnx_x)
        if x in self.s.nhwc:
            pairs = [pairs[i] for i in (0, 2, 3, 1)]
        self._emit(node, "PAD", [x], {"paddings": tuple(tuple(p) for p in pairs)})

    def _conv1d(self, node, attrs, w: np.ndarray, b: np.ndarray | None) -> None:
        """Conv over ONNX [N, C, L] as CONV_2D / DEPTHWISE_CONV_2D on IR [N, 1, L, C]; a zero
        Pad before it (causal: left only) becomes its ``pad=(0, 0, left, right)``."""
        onnx_x = node.input[0]
        if onnx_x in self.s.swapped:
            src = self.s.swapped[onnx_x]
        else:
            x = self._in(onnx_x)
            n, c, l = self.s.tensors[x].shape
            src = self._add_op("TRANSPOSE", [x], f"{node.output[0]}/nlc_in", (n, l, c),
                               {"perm": (0, 2, 1)})
        p = list(attrs.get("pads", [0, 0]))
        left, right = int(p[0]), int(p[1])
        pad_op = self.s.producer.get(src)
        if pad_op is not None and pad_op.kind == "PAD" and self._single_reader(onnx_x) \
                and not self._ir_readers(src):
            (a0, b0), (a1, b1), (a2, b2) = pad_op.attrs["paddings"]
            if a0 == b0 == a2 == b2 == 0:
                self._drop_op(pad_op)
                src, left, right = pad_op.inputs[0], left + a1, right + b1
        n, l, c = self.s.tensors[src].shape
        out = node.output[0]
        x4 = self._add_op("RESHAPE", [src], f"{out}/nhwc_in", (n, 1, l, c), {})
        group = int(attrs.get("group", 1))
        o = w.shape[0]
        common = dict(stride=(1, int(attrs.get("strides", [1])[0])),
                      dilation=(1, int(attrs.get("dilations", [1])[0])),
                      pad=(0, 0, left, right), activation="NONE")
        bias = self._new_const(f"{out}/bias", b if b is not None else np.zeros(o, np.float32))
        if group == 1:
            wname = self._new_const(f"{out}/weights", w.transpose(0, 2, 1)[:, None])
            kind = "CONV_2D"
        elif group == c and w.shape[1] == 1 and o % c == 0:
            wname = self._new_const(f"{out}/weights", w[:, 0].T[None, None])
            kind, common["depth_multiplier"] = "DEPTHWISE_CONV_2D", o // c
        else:
            raise UnsupportedError(f"{self._where(node)}: grouped 1-D convolution with"
                                   f" group={group} over {c} channels")
        n_out, _, l_out = self._shape(out, node)
        y = self._add_op(kind, [x4, wname, bias], f"{out}/nhwc", (n, 1, l_out, o), common,
                         name=node.name or out)
        self.s.swapped[out] = self._add_op("RESHAPE", [y], f"{out}/nlc", (n, l_out, o), {})

    def _op_Slice(self, node, attrs) -> None:
        """Only the crop after a padded 1-D convolution (``conv(x, padding=k-1)[..., :-(k-1)]``,
        a causal convolution): it shrinks that convolution's pad instead."""
        onnx_x = node.input[0]
        consts = [self._const(node, i) for i in range(1, 5)]
        starts, ends, axes, steps = (None if c is None else c.reshape(-1).tolist() for c in consts)
        conv = self._conv1d_writer(onnx_x)
        shape = self._shape(onnx_x, node)
        if conv is None or axes not in (None, [2], [-1]) or len(starts) != 1 \
                or (steps is not None and steps != [1]) or len(shape) != 3:
            raise UnsupportedError(f"{self._where(node)}: Slice of an activation is only supported"
                                   " as the crop of a padded 1-D convolution's output (causal)")
        length = shape[2]
        begin = max(0, min(length, starts[0] + length if starts[0] < 0 else starts[0]))
        end = max(0, min(length, ends[0] + length if ends[0] < 0 else ends[0]))
        conv_op, reshape_op = conv
        top, bottom, left, right = conv_op.attrs["pad"]
        if begin > left or length - end > right or end <= begin:
            raise UnsupportedError(f"{self._where(node)}: Slice [{begin}:{end}] crops more than"
                                   f" the convolution's padding ({left}, {right})")
        conv_op.attrs["pad"] = (top, bottom, left - begin, right - (length - end))
        for name in (conv_op.outputs[0], reshape_op.outputs[0]):
            t = self.s.tensors[name]
            dims = list(t.shape)
            dims[-2] = end - begin
            self.s.tensors[name] = Tensor(name, tuple(dims), DType.FLOAT32)
        self.s.swapped[node.output[0]] = reshape_op.outputs[0]

    def _conv1d_writer(self, onnx_x: str):
        """(conv op, its RESHAPE to [N, L, C]) when ``onnx_x`` is a 1-D convolution's output
        that only this node reads, else None."""
        name = self.s.swapped.get(onnx_x)
        reshape_op = self.s.producer.get(name) if name else None
        if reshape_op is None or reshape_op.kind != "RESHAPE" or not self._single_reader(onnx_x) \
                or self._ir_readers(name):
            return None
        conv_op = self.s.producer.get(reshape_op.inputs[0])
        if conv_op is None or conv_op.kind not in ("CONV_2D", "DEPTHWISE_CONV_2D") \
                or tuple(conv_op.attrs["stride"]) != (1, 1) \
                or self._ir_readers(conv_op.outputs[0]) != 1:
            return None
        return conv_op, reshape_op

    def _collapse_reshapes(self, outputs) -> None:
        """RESHAPE of a RESHAPE whose result nothing else reads is one RESHAPE (the token
        layouts chain them: NHWC -> tokens -> [N, 1, L, C])."""
        readers: dict[str, int] = {}
        for op in self.s.ops:
            for name in op.present_inputs():
                readers[name] = readers.get(name, 0) + 1
        for op in list(self.s.ops):
            if op.kind != "RESHAPE":
                continue
            first = self.s.producer.get(op.inputs[0])
            mid = op.inputs[0]
            if first is not None and first.kind == "RESHAPE" and readers.get(mid) == 1 \
                    and mid not in outputs:
                op.inputs[0] = first.inputs[0]
                self._drop_op(first)
