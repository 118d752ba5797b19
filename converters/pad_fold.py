"""Fold a PAD that feeds one convolution back into the convolution's explicit padding.

TFLite expresses only SAME and VALID padding, so the writer stores a pad that is neither (the
causal ``(0, 0, k - 1, 0)`` of a depthwise convolution over tokens, a patch's local pads) as
a PAD op followed by a VALID convolution. Reading that file back as two ops would make the
firmware hold the padded copy of the feature map: an extra buffer the in-memory graph never
had (EmbBERT-Q's causal convolutions: +25% arena). The IR's convolutions take explicit pads,
so the importer puts the pair back together.

Exact for quantized graphs: an int8 PAD fills with its output's zero point, and the
convolution adds ``-zero_point`` to every input it reads (padding included), so a padded
value contributes zero, as an implicit pad does. Only a PAD whose input and output share one
quantization, that pads the two spatial axes of an NHWC tensor, and whose output only that
convolution reads (and is no graph output) is folded.
"""

from __future__ import annotations

from edgekit.ir import Graph, Op

CONVOLUTIONS = ("CONV_2D", "DEPTHWISE_CONV_2D")


def _foldable(pad: Op, graph: Graph, readers: list[int]) -> bool:
    paddings = pad.attrs["paddings"]
    x, y = graph[pad.inputs[0]], graph[pad.outputs[0]]
    if len(readers) != 1 or pad.outputs[0] in graph.outputs or len(paddings) != 4:
        return False
    reader = graph.ops[readers[0]]
    return (reader.kind in CONVOLUTIONS and reader.inputs[0] == pad.outputs[0]
            and tuple(paddings[0]) == (0, 0) and tuple(paddings[3]) == (0, 0)
            and x.quant == y.quant and x.dtype == y.dtype)


def fold_pads_into_convolutions(graph: Graph) -> Graph:
    """``graph`` with every foldable PAD merged into the convolution that reads it."""
    consumers = graph.consumers()
    folded: dict[int, Op] = {}  # convolution index -> its replacement
    dropped: set[int] = set()
    for index, op in enumerate(graph.ops):
        if op.kind != "PAD" or not _foldable(op, graph, consumers.get(op.outputs[0], [])):
            continue
        conv_index = consumers[op.outputs[0]][0]
        conv = graph.ops[conv_index]
        (top, bottom), (left, right) = op.attrs["paddings"][1], op.attrs["paddings"][2]
        t, b, l, r = conv.attrs.get("pad", (0, 0, 0, 0))
        folded[conv_index] = Op(conv.kind, [op.inputs[0], *conv.inputs[1:]], list(conv.outputs),
                                {**conv.attrs, "pad": (t + top, b + bottom, l + left, r + right)},
                                conv.name)
        dropped.add(index)
    if not dropped:
        return graph
    ops = [folded.get(i, op) for i, op in enumerate(graph.ops) if i not in dropped]
    gone = {graph.ops[i].outputs[0] for i in dropped}
    tensors = [t for name, t in graph.tensors.items() if name not in gone]
    return Graph(tensors, ops, graph.inputs, graph.outputs, name=graph.name)
