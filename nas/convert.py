"""A trained `MCUNetSpec` model -> int8 IR graph and ``.tflite``, through edgekit's converter.

`to_torch` pads strided convolutions with TensorFlow's SAME amounts through ``ZeroPad2d``; the
TorchScript ONNX exporter writes each as a ``Pad`` node (its amounts computed by a small
subgraph of Constant/Slice/Cast nodes), which the ONNX importer does not take. `fold_pads` puts
each ``Pad`` back into the ``pads`` attribute of the Conv that reads it (the amounts come from
the torch modules, in forward order) and drops the dead subgraph, so the int8 graph holds plain
SAME convolutions and no PAD op (whose copy of the feature map would cost SRAM).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from edgekit.converters.onnx_import import import_onnx
from edgekit.converters.quantize import quantize
from edgekit.converters.torch_import import export_onnx_bytes
from edgekit.converters.tflite_writer import save_tflite
from edgekit.errors import UnsupportedError
from edgekit.ir import Graph


def fold_pads(model: onnx.ModelProto, pads: list[tuple[int, int, int, int]]) -> onnx.ModelProto:
    """Fold the ``Pad`` nodes (``pads[i]`` = (left, right, top, bottom) of the i-th) into the
    Conv each feeds; prune nodes nobody reads any more."""
    graph = model.graph
    pad_nodes = [n for n in graph.node if n.op_type == "Pad"]
    if len(pad_nodes) != len(pads):
        raise UnsupportedError(f"{len(pad_nodes)} Pad nodes in the export, {len(pads)} ZeroPad2d"
                               " modules in the model")
    for node, (left, right, top, bottom) in zip(pad_nodes, pads):
        readers = [n for n in graph.node if node.output[0] in n.input]
        if len(readers) != 1 or readers[0].op_type != "Conv":
            raise UnsupportedError(f"Pad {node.name!r} does not feed exactly one Conv")
        conv = readers[0]
        attr = next((a for a in conv.attribute if a.name == "pads"), None)
        if attr is None:
            attr = conv.attribute.add()
            attr.CopyFrom(onnx.helper.make_attribute("pads", [0, 0, 0, 0]))
        if any(attr.ints):
            raise UnsupportedError(f"Conv {conv.name!r} after a Pad has its own pads too")
        attr.ints[:] = [top, left, bottom, right]
        conv.input[0] = node.input[0]
    keep = {o.name for o in graph.output}
    nodes = [n for n in graph.node if n.op_type != "Pad"]
    while True:  # drop the pad-amount subgraphs, now read by nobody
        read = keep | {i for n in nodes for i in n.input}
        live = [n for n in nodes if any(o in read for o in n.output)]
        if len(live) == len(nodes):
            break
        nodes = live
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def float_graph(module: nn.Module, example: np.ndarray, name: str = "mcunet") -> Graph:
    """The float IR of a `to_torch` model for an NCHW ``example`` batch of one."""
    module = module.eval()
    pads = [tuple(int(v) for v in m.padding) for m in module.modules()
            if isinstance(m, nn.ZeroPad2d)]
    model = onnx.load_model_from_string(export_onnx_bytes(module, torch.as_tensor(example)))
    return import_onnx(fold_pads(model, pads), source=type(module).__name__, name=name)


def int8_graph(module: nn.Module, calib: np.ndarray, name: str = "mcunet",
               bits: int | str = 8) -> Graph:
    """The quantized IR of ``module`` (int8 activations): calibration ``calib`` is (N, C, H, W)
    float32; ``bits`` the weight bits as `edgekit convert --bits` takes them (8, 4 or
    ``mixed:SPEC``, `edgekit.nas.mcunet.bits_spec`). Int4 layers are rounded with accuracy
    recovery (``--recover``: clipping search, GPTQ, bias correction), int8 ones plainly."""
    calib = np.asarray(calib, dtype=np.float32)
    return quantize(float_graph(module, calib[:1], name), calib, bits=bits,
                    recover=str(bits) != "8")


def save_int8(module: nn.Module, calib: np.ndarray, path: str | Path) -> Graph:
    """Quantize ``module`` and write it as an int8 ``.tflite`` at ``path``; returns the graph."""
    graph = int8_graph(module, calib)
    save_tflite(graph, path)
    return graph
