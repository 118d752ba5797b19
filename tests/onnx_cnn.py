"""The hand-made float ONNX CNN that the ONNX importer tests and the fuzz suite's seeds share:
conv, batch norm, clip, depthwise conv, residual add, max and average pools, concat, flatten,
matmul, bias add and softmax, on a [1, 3, 8, 8] input."""

from __future__ import annotations

import numpy as np


def handmade_cnn_parts(rng: np.random.Generator) -> tuple[list, list[tuple[str, np.ndarray]]]:
    """``(nodes, initializers)`` of the CNN, its weights drawn from `rng`; input "x", output "y"."""
    from onnx import helper

    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    inits = [("w1", f(6, 3, 3, 3)), ("b1", f(6)), ("g", f(6) + 2), ("be", f(6)), ("mu", f(6)),
             ("var", np.abs(f(6)) + 0.5), ("w2", f(6, 1, 3, 3)), ("mm", f(12 * 4 * 4, 5)),
             ("bias", f(5)), ("lo", np.float32(0)), ("hi", np.float32(6))]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "g", "be", "mu", "var"], ["bn"]),
        helper.make_node("Clip", ["bn", "lo", "hi"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["dw"], group=6, pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["dw"], ["r2"]),
        helper.make_node("Add", ["r1", "r2"], ["sum"]),
        helper.make_node("MaxPool", ["sum"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("AveragePool", ["sum"], ["ap"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Concat", ["mp", "ap"], ["cat"], axis=1),
        helper.make_node("Flatten", ["cat"], ["flat"]),
        helper.make_node("MatMul", ["flat", "mm"], ["lin"]),
        helper.make_node("Add", ["lin", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["y"], axis=-1),
    ]
    return nodes, inits
