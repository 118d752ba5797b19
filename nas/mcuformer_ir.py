"""A `MCUFormerSpec` model as edgekit IR, built directly from its weights (no ONNX), and its
memory for the search.

`float_graph(spec, weights)` maps the trained module (`edgekit.nas.mcuformer_torch`) op for op
onto the IR contract of `edgekit.ir`: CONV_2D (patch embedding) -> RESHAPE [1, T, D] -> ADD
(positional embedding, a constant) -> per block: LAYER_NORM -> FULLY_CONNECTED q, k, v over
tokens (``keep_num_dims``; 1/sqrt(dh) folded into q's weights and bias) -> RESHAPE
[1, T, H, dh] -> TRANSPOSE [1, H, T, dh] -> BATCH_MATMUL(q, k, adj_y) -> SOFTMAX ->
BATCH_MATMUL(p, v) -> TRANSPOSE -> RESHAPE -> FULLY_CONNECTED proj -> ADD -> LAYER_NORM -> FC U
-> FC V -> GELU -> FC U -> FC V -> ADD; then LAYER_NORM -> MEAN over tokens -> FULLY_CONNECTED
head. `int8_graph` quantizes it with `edgekit.converters.quantize`.

No attention mask: every token is an image patch (there is no padding), so the attention is
unmasked by design; key-padding masks are for text (`edgekit.nas.embbert`).

`memory(spec, board)`, per search trial: the same graph with placeholder weights and a placeholder
int8 quantization (`placeholder_int8`; the planner reads shapes, dtypes and attributes only, so no
calibration is needed), with its attention fused row-wise as the build does (`edgekit.attention`),
planned by the firmware's planner (`firmware_plan`): its arena is the peak SRAM the search
constrains. Flash is estimated as the constants the firmware stores
(`edgekit.nas.codesize.graph_features`: int8 weights, int32 biases, the requantisation words and
the norms' prepared arrays), the embedded test input, and code: ``CODE_FIXED + CODE_PER_OP * ops``,
fitted by least squares on four disco-f746ng (cortex-m7) builds of MCUFormer graphs of 30, 54, 78
and 102 ops (code = .text less constants and input: 18,812, 20,704, 20,160 and 21,156 B; residuals
-820..+424 B, under 1.2% of those builds' flash). A CNN's fitted fixed code
(`edgekit.nas.codesize`, 39.6 KB) is not used: a transformer graph links none of the convolution
kernels' DSP paths. Other cores are not calibrated and get the same figures (their CNN code is no
larger than the M7's, so the figure should err high there); the real build measures flash.
"""

from __future__ import annotations

import math

import numpy as np

from edgekit.ir import DType, Graph, Op, Quantization, Tensor
from edgekit.nas.mcuformer import MCUFormerSpec

LN_EPSILON = 1e-5  # torch.nn.LayerNorm's default
#: fitted code size (bytes): runtime, harness, the kernels these graphs link, and per op
CODE_FIXED = 18_426
CODE_PER_OP = 27


def weights_of(module) -> dict[str, np.ndarray]:
    """The module's parameters by ``state_dict`` name, as float32 numpy arrays."""
    return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in module.state_dict().items()}


def placeholder_weights(spec: MCUFormerSpec) -> dict[str, np.ndarray]:
    """Zeros of every parameter's shape (what `memory` plans: shapes only)."""
    from edgekit.nas.mcuformer_torch import to_torch

    return {k: np.zeros(v.shape, np.float32) for k, v in weights_of(to_torch(spec)).items()}


class _Builder:
    def __init__(self, weights: dict[str, np.ndarray]):
        self.w = weights
        self.tensors: list[Tensor] = []
        self.ops: list[Op] = []

    def const(self, name: str, data: np.ndarray) -> str:
        data = np.ascontiguousarray(data, dtype=np.float32)
        self.tensors.append(Tensor(name, data.shape, DType.FLOAT32, data=data))
        return name

    def act(self, name: str, shape) -> str:
        self.tensors.append(Tensor(name, tuple(shape), DType.FLOAT32))
        return name

    def op(self, kind: str, inputs: list, out: str, shape, **attrs) -> str:
        self.act(out, shape)
        self.ops.append(Op(kind, list(inputs), [out], attrs, name=out))
        return out

    def fc(self, x: str, out: str, key: str, shape, scale: float = 1.0) -> str:
        w = self.const(f"{out}/weights", self.w[f"{key}.weight"] * np.float32(scale))
        b = self.const(f"{out}/bias", self.w[f"{key}.bias"] * np.float32(scale)) \
            if f"{key}.bias" in self.w else None
        return self.op("FULLY_CONNECTED", [x, w, b], out, shape, activation="NONE",
                       keep_num_dims=len(shape) > 2)

    def layer_norm(self, x: str, out: str, key: str, shape) -> str:
        g = self.const(f"{out}/gamma", self.w[f"{key}.weight"])
        b = self.const(f"{out}/beta", self.w[f"{key}.bias"])
        return self.op("LAYER_NORM", [x, g, b], out, shape, epsilon=LN_EPSILON)


def _block(b: _Builder, spec: MCUFormerSpec, x: str, i: int) -> str:
    t, d, h, dh = spec.tokens, spec.embed_dim, spec.heads, spec.head_dim
    key, p = f"blocks.{i}", f"b{i}"
    ln1 = b.layer_norm(x, f"{p}/ln1", f"{key}.ln1", (1, t, d))
    heads = {}
    for name in ("q", "k", "v"):
        # q k^T / sqrt(dh) == (q / sqrt(dh)) k^T: the scale costs nothing folded into q
        scale = 1.0 / math.sqrt(dh) if name == "q" else 1.0
        y = b.fc(ln1, f"{p}/{name}", f"{key}.{name}", (1, t, d), scale)
        y = b.op("RESHAPE", [y], f"{p}/{name}_split", (1, t, h, dh))
        heads[name] = b.op("TRANSPOSE", [y], f"{p}/{name}_heads", (1, h, t, dh), perm=(0, 2, 1, 3))
    scores = b.op("BATCH_MATMUL", [heads["q"], heads["k"]], f"{p}/scores", (1, h, t, t),
                  adj_x=False, adj_y=True)
    probs = b.op("SOFTMAX", [scores], f"{p}/probs", (1, h, t, t), beta=1.0)
    att = b.op("BATCH_MATMUL", [probs, heads["v"]], f"{p}/attend", (1, h, t, dh),
               adj_x=False, adj_y=False)
    att = b.op("TRANSPOSE", [att], f"{p}/attend_tokens", (1, t, h, dh), perm=(0, 2, 1, 3))
    att = b.op("RESHAPE", [att], f"{p}/attend_merged", (1, t, d))
    att = b.fc(att, f"{p}/proj", f"{key}.proj", (1, t, d))
    x = b.op("ADD", [x, att], f"{p}/attn_add", (1, t, d), activation="NONE")
    y = b.layer_norm(x, f"{p}/ln2", f"{key}.ln2", (1, t, d))
    y = b.fc(y, f"{p}/fc1_u", f"{key}.fc1.u", (1, t, spec.rank))
    y = b.fc(y, f"{p}/fc1_v", f"{key}.fc1.v", (1, t, spec.hidden))
    y = b.op("GELU", [y], f"{p}/gelu", (1, t, spec.hidden), approximate=False)
    y = b.fc(y, f"{p}/fc2_u", f"{key}.fc2.u", (1, t, spec.rank))
    y = b.fc(y, f"{p}/fc2_v", f"{key}.fc2.v", (1, t, d))
    return b.op("ADD", [x, y], f"{p}/out", (1, t, d), activation="NONE")


def float_graph(spec: MCUFormerSpec, weights: dict[str, np.ndarray],
                name: str = "mcuformer") -> Graph:
    """The float32 IR of the model with ``weights`` (`weights_of` a trained module); input
    ``input`` [1, R, R, C] NHWC, output ``logits`` [1, classes]."""
    b = _Builder(weights)
    r, g, t, d = spec.resolution, spec.grid, spec.tokens, spec.embed_dim
    x = b.act("input", (1, r, r, spec.in_channels))
    w = b.const("embed/weights", weights["embed.weight"].transpose(0, 2, 3, 1))  # OIHW -> OHWI
    bias = b.const("embed/bias", weights["embed.bias"])
    x = b.op("CONV_2D", [x, w, bias], "embed", (1, g, g, d), stride=(spec.patch, spec.patch),
             dilation=(1, 1), pad=(0, 0, 0, 0), activation="NONE")
    x = b.op("RESHAPE", [x], "tokens", (1, t, d))
    x = b.op("ADD", [x, b.const("pos", weights["pos"])], "pos_add", (1, t, d), activation="NONE")
    for i in range(spec.depth):
        x = _block(b, spec, x, i)
    x = b.layer_norm(x, "norm", "norm", (1, t, d))
    x = b.op("MEAN", [x], "pool", (1, d), axes=(1,), keep_dims=False)
    x = b.fc(x, "logits", "head", (1, spec.num_classes))
    return Graph(b.tensors, b.ops, ["input"], [x], name=name)


def module_graph(module, spec: MCUFormerSpec, name: str = "mcuformer") -> Graph:
    """`float_graph` of a trained `edgekit.nas.mcuformer_torch.MCUFormer`."""
    return float_graph(spec, weights_of(module.eval()), name)


def int8_graph(module, spec: MCUFormerSpec, calib: np.ndarray, name: str = "mcuformer") -> Graph:
    """The int8 IR of a trained module; ``calib`` raw NHWC images of the training split
    (resized to the spec's resolution here)."""
    from edgekit.converters.quantize import quantize
    from edgekit.nas.train import to_input

    x = to_input(np.asarray(calib, dtype=np.float32), spec.resolution).numpy()
    return quantize(module_graph(module, spec, name), x, bits=8)


#: the int8 output quantization of kinds with a fixed one (TFLite's softmax)
_FIXED = {"SOFTMAX": (1.0 / 256.0, -128)}
_WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
#: kinds whose parameters the quantizer keeps float32 (the norms' gamma and beta)
_FLOAT_PARAMS = ("LAYER_NORM", "RMS_NORM")


def placeholder_int8(graph: Graph) -> Graph:
    """``graph`` with int8 activations and weights, int32 biases, float32 norm parameters (as
    `edgekit.converters.quantize` leaves them), placeholder quantization and zero data: what
    the planner and the flash count read (shapes, dtypes, attributes)."""
    q = Quantization.per_tensor(0.05, 0)
    role: dict[str, str] = {}
    for op in graph.ops:
        if op.kind in _WEIGHTED:
            role[op.inputs[1]] = "weights"
            if len(op.inputs) > 2 and op.inputs[2] is not None:
                role[op.inputs[2]] = "bias"
    for op in graph.ops:
        if op.kind in _FLOAT_PARAMS:
            role.update({name: "float" for name in op.inputs[1:] if name is not None})
    fixed = {op.outputs[0]: _FIXED[op.kind] for op in graph.ops if op.kind in _FIXED}
    tensors = []
    for t in graph.tensors.values():
        if role.get(t.name) == "float":
            tensors.append(t)
        elif not t.is_constant:
            s, zp = fixed.get(t.name, (0.05, 0))
            tensors.append(Tensor(t.name, t.shape, DType.INT8, Quantization.per_tensor(s, zp)))
        elif role.get(t.name) == "bias":
            tensors.append(Tensor(t.name, t.shape, DType.INT32, q, np.zeros(t.shape, np.int32)))
        else:
            tensors.append(Tensor(t.name, t.shape, DType.INT8, q, np.zeros(t.shape, np.int8)))
    return Graph(tensors, graph.ops, graph.inputs, graph.outputs, name=graph.name)


def spec_int8_graph(spec: MCUFormerSpec) -> Graph:
    """The placeholder int8 graph of ``spec`` (`placeholder_int8` of `float_graph`)."""
    return placeholder_int8(float_graph(spec, placeholder_weights(spec)))


def flash_estimate(graph: Graph, cpu: str) -> int:
    """Predicted flash (bytes) of an int8 graph's firmware; see the module docstring."""
    from edgekit.nas.codesize import graph_features

    f = graph_features(graph)
    return int(round(f["constants"] + f["input"] + CODE_FIXED + CODE_PER_OP * len(graph.ops)))


def memory(spec: MCUFormerSpec, board) -> dict:
    """The search's figures for ``spec`` on ``board``: the firmware planner's arena of the
    placeholder int8 graph and the flash estimate."""
    from edgekit.attention import fuse_attention
    from edgekit.firmware.codegen import firmware_plan

    graph = spec_int8_graph(spec)
    return {"peak_sram": firmware_plan(fuse_attention(graph)).arena_bytes,
            "flash": flash_estimate(graph, board.cpu), "planned": True,
            "weights_bytes": graph.weights_bytes}
