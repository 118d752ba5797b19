"""ONNX graph rewrites that run before `edgekit.converters.onnx_import` maps nodes onto the IR.

- `fold_constants`: the TorchScript exporter computes reshape targets and pads at run time
  (``Shape -> Slice -> Concat -> Reshape``, ``ConstantOfShape -> ... -> Pad``), which leaves
  ONNX shape inference with symbolic dimensions. A ``Shape`` of a tensor whose shape is known
  becomes a constant, and every node whose inputs are all constants is evaluated once with
  ``onnx.reference`` (data only, nothing from the file is executed as code); repeated with
  shape inference until nothing changes, so every shape is static.
- `fuse_patterns`: the exporter writes GELU, SiLU and RMSNorm as chains of elementwise nodes.
  GELU and SiLU are found numerically: a region of elementwise nodes with scalar constants that
  reads one tensor ``x`` and contains an Erf, Tanh or Sigmoid is evaluated on sample values and
  compared with ``gelu`` (erf), ``gelu`` (tanh) and ``x * sigmoid(x)``, so the exporter's
  operand order does not matter. RMSNorm is matched structurally:
  ``x * 1/sqrt(mean(x^2, -1) + eps) * g`` (``Pow(x, 2)`` or ``Mul(x, x)``; ``Div(1, s)``,
  ``Reciprocal`` or ``Div(x, s)``; ``g`` optional). ``Add(x, Sub(y, x))`` (a residual written
  as ``x + (f(x) - x)``) is ``y``. Fused nodes are ``edgekit.fused`` domain nodes
  (``EdgekitGelu`` with ``approximate``, ``EdgekitSilu``, ``EdgekitRmsNorm`` with ``epsilon``)
  whose output keeps the last replaced node's name.
"""

from __future__ import annotations

import math

import numpy as np

from edgekit.errors import ModelFormatError

DOMAIN = "edgekit.fused"
_MAX_ROUNDS = 8
#: elementwise ops a GELU / SiLU region may contain
_ELEMENTWISE = frozenset({"Mul", "Add", "Sub", "Div", "Pow", "Erf", "Tanh", "Sigmoid", "Sqrt", "Neg"})
_ANCHORS = frozenset({"Erf", "Tanh", "Sigmoid"})
_SAMPLES = np.linspace(-5.0, 5.0, 41)


def fold_constants(model, source: str):
    """``model`` with shape-computing subgraphs folded into initializers, shapes inferred."""
    import onnx
    from onnx import helper, numpy_helper, shape_inference
    from onnx.reference import ReferenceEvaluator

    for _ in range(_MAX_ROUNDS):
        try:
            model = shape_inference.infer_shapes(model, data_prop=True)
        except Exception as err:
            raise ModelFormatError(f"{source}: ONNX shape inference failed: {err}") from None
        g = model.graph
        values = {i.name: numpy_helper.to_array(i) for i in g.initializer
                  if i.data_location != onnx.TensorProto.EXTERNAL}
        shapes = {}
        for vi in [*g.input, *g.value_info, *g.output]:
            t = vi.type.tensor_type
            if t.HasField("shape") and all(d.HasField("dim_value") and d.dim_value > 0
                                           for d in t.shape.dim):
                shapes[vi.name] = [int(d.dim_value) for d in t.shape.dim]
        keep, folded = [], {}
        for node in g.node:
            out = None
            if node.domain not in ("", "ai.onnx"):
                pass
            elif node.op_type == "Constant":
                out = [_constant_value(node, numpy_helper, helper)]
            elif node.op_type == "Shape" and node.input[0] in shapes:
                attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
                dims = shapes[node.input[0]]
                start, end = attrs.get("start", 0), attrs.get("end", len(dims))
                out = [np.array(dims[start:end], np.int64)]
            elif node.input and all(not n or n in values or n in folded for n in node.input):
                feeds = {n: folded.get(n, values.get(n)) for n in node.input if n}
                _check_size(node, feeds, source)
                try:
                    out = ReferenceEvaluator(node).run(None, feeds)
                except Exception:
                    out = None  # leave it to the importer, which names the node
            if out is None or any(v is None for v in out):
                keep.append(node)
                continue
            for name, value in zip(node.output, out):
                folded[name] = np.asarray(value)
        if not folded:
            return model
        del g.node[:]
        g.node.extend(keep)
        g.initializer.extend(numpy_helper.from_array(v, k) for k, v in folded.items())
        outputs = {o.name for o in g.output}
        if outputs & set(folded):
            raise ModelFormatError(f"{source}: a graph output is a constant")
    return model


#: elements a folded constant may have (a hostile ConstantOfShape must not exhaust memory)
MAX_FOLDED_ELEMENTS = 1 << 24


def _check_size(node, feeds: dict, source: str) -> None:
    ins = [feeds.get(n) for n in node.input]
    count = None
    if node.op_type in ("ConstantOfShape", "Expand"):  # the shape is the last input
        count = float(np.prod(np.asarray(ins[-1], np.float64)))
    elif node.op_type == "Tile" and len(ins) > 1:
        count = float(np.asarray(ins[0]).size * np.prod(np.asarray(ins[1], np.float64)))
    elif node.op_type == "Range" and len(ins) == 3:
        start, limit, delta = (float(np.asarray(v).reshape(-1)[0]) for v in ins)
        count = abs((limit - start) / delta) if delta else float("inf")
    if count is not None and count > MAX_FOLDED_ELEMENTS:
        raise ModelFormatError(f"{source}: node {node.name or node.op_type!r} ({node.op_type})"
                               f" would make a constant of {count:.0f} elements")


def _constant_value(node, numpy_helper, helper):
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if "value" in attrs:
        return numpy_helper.to_array(attrs["value"])
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in attrs:
            return np.array(attrs[key], dtype)
    return None


class _Graph:
    def __init__(self, nodes, consts, outputs):
        self.nodes = list(nodes)
        self.consts = consts
        self.outputs = outputs
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.readers: dict[str, list] = {}
        for n in self.nodes:
            for i in n.input:
                self.readers.setdefault(i, []).append(n)

    def scalar(self, name):
        v = self.consts.get(name)
        return None if v is None or v.size != 1 else float(v.reshape(-1)[0])

    def only_reader(self, name):
        r = self.readers.get(name, [])
        return r[0] if len(r) == 1 and name not in self.outputs else None


def fuse_patterns(nodes, consts: dict, outputs: set) -> list:
    """The node list with GELU / SiLU / RMSNorm chains and ``x + (y - x)`` replaced."""
    from onnx import helper

    g = _Graph(nodes, consts, outputs)
    removed: set[int] = set()
    replace: dict[int, object] = {}  # id(last node of a pattern) -> fused node
    for node in g.nodes:
        if id(node) in removed:
            continue
        found = None
        if node.op_type in _ANCHORS:
            found = _match_activation(g, node, removed)
        elif node.op_type == "ReduceMean":
            found = _match_rms(g, node, removed)
        elif node.op_type == "Sub":
            found = _match_residual(g, node, removed)
        if found is None:
            continue
        region, last, fused = found
        removed.update(id(n) for n in region)
        replace[id(last)] = fused(helper, last.output[0])
    out = []
    for node in g.nodes:
        if id(node) in replace:
            out.append(replace[id(node)])
        elif id(node) not in removed:
            out.append(node)
    return out


def _gelu_erf(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


_TARGETS = (("EdgekitGelu", {"approximate": 0}, _gelu_erf),
            ("EdgekitGelu", {"approximate": 1}, _gelu_tanh),
            ("EdgekitSilu", {}, lambda x: x / (1.0 + np.exp(-x))))


def _ancestors(g: _Graph, name: str, depth: int = 5) -> list[str]:
    seen, frontier = [name], [name]
    for _ in range(depth):
        nxt = []
        for n in frontier:
            p = g.producer.get(n)
            if p is None or p.op_type not in _ELEMENTWISE:
                continue
            for i in p.input:
                if i and i not in g.consts and i not in seen:
                    seen.append(i)
                    nxt.append(i)
        frontier = nxt
    return seen


def _match_activation(g: _Graph, anchor, removed):
    for x in _ancestors(g, anchor.input[0]):
        region, reach = [], {x}
        for node in g.nodes[g.nodes.index(anchor) - 12 if g.nodes.index(anchor) > 12 else 0:]:
            if len(region) > 10 or id(node) in removed or node.op_type not in _ELEMENTWISE:
                continue
            acts = [i for i in node.input if i not in g.consts]
            consts_ok = all(g.scalar(i) is not None for i in node.input if i in g.consts)
            if acts and consts_ok and all(i in reach for i in acts):
                region.append(node)
                reach.update(node.output)
        if not any(n is anchor for n in region):
            continue
        for last in reversed(region):
            part = _ancestor_region(g, region, last)
            if not any(n is anchor for n in part) or not _closed(g, part, last):
                continue
            y = _evaluate(g, part, x, last.output[0])
            if y is None:
                continue
            for op_type, attrs, fn in _TARGETS:
                if np.allclose(y, fn(_SAMPLES), rtol=1e-5, atol=1e-6):
                    return part, last, (lambda h, out, t=op_type, a=attrs, x=x:
                                        h.make_node(t, [x], [out], name=out, domain=DOMAIN, **a))
    return None


def _ancestor_region(g: _Graph, region, last):
    ids = {id(n) for n in region}
    keep, todo = {id(last)}, [last]
    while todo:
        n = todo.pop()
        for i in n.input:
            p = g.producer.get(i)
            if p is not None and id(p) in ids and id(p) not in keep:
                keep.add(id(p))
                todo.append(p)
    return [n for n in region if id(n) in keep]


def _closed(g: _Graph, part, last) -> bool:
    """Nothing outside ``part`` reads its intermediate values."""
    ids = {id(n) for n in part}
    for n in part:
        if n is last:
            continue
        for o in n.output:
            if o in g.outputs or any(id(r) not in ids for r in g.readers.get(o, [])):
                return False
    return True


_NP = {"Mul": np.multiply, "Add": np.add, "Sub": np.subtract, "Div": np.divide, "Pow": np.power,
       "Erf": np.vectorize(math.erf), "Tanh": np.tanh, "Sigmoid": lambda v: 1 / (1 + np.exp(-v)),
       "Sqrt": np.sqrt, "Neg": np.negative}


def _evaluate(g: _Graph, part, x: str, out: str):
    vals = {x: _SAMPLES.copy()}
    with np.errstate(all="ignore"):
        for n in part:
            args = [vals[i] if i in vals else g.scalar(i) for i in n.input]
            if any(a is None for a in args):
                return None
            vals[n.output[0]] = _NP[n.op_type](*args)
    y = vals.get(out)
    return y if y is not None and np.all(np.isfinite(y)) else None


def _match_rms(g: _Graph, mean, removed):
    """``x * 1/sqrt(mean(x^2) + eps) [* g]`` anchored at the ReduceMean."""
    import onnx

    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in mean.attribute}
    axes = attrs.get("axes")
    if axes is None and len(mean.input) > 1:
        axes = g.consts.get(mean.input[1], np.array([])).reshape(-1).tolist()
    sq = g.producer.get(mean.input[0])
    if sq is None or axes != [-1] or not attrs.get("keepdims", 1):
        return None
    if sq.op_type == "Pow" and g.scalar(sq.input[1]) == 2.0:
        x = sq.input[0]
    elif sq.op_type == "Mul" and sq.input[0] == sq.input[1]:
        x = sq.input[0]
    else:
        return None
    if g.only_reader(sq.output[0]) is not mean:
        return None
    add = g.only_reader(mean.output[0])
    if add is None or add.op_type != "Add":
        return None
    eps = g.scalar(add.input[1]) if add.input[0] == mean.output[0] else g.scalar(add.input[0])
    root = g.only_reader(add.output[0])
    if eps is None or root is None or root.op_type != "Sqrt":
        return None
    region = [sq, mean, add, root]
    nxt = g.only_reader(root.output[0])
    if nxt is None:
        return None
    if nxt.op_type == "Div" and nxt.input[1] == root.output[0] and nxt.input[0] == x:
        region.append(nxt)
    else:
        if nxt.op_type == "Reciprocal" or (nxt.op_type == "Div" and nxt.input[1] == root.output[0]
                                           and g.scalar(nxt.input[0]) == 1.0):
            region.append(nxt)
        else:
            return None
        mul = g.only_reader(nxt.output[0])
        if mul is None or mul.op_type != "Mul" or x not in mul.input:
            return None
        region.append(mul)
    last, gamma = region[-1], None
    scale = g.only_reader(last.output[0])
    if scale is not None and scale.op_type == "Mul":
        other = [i for i in scale.input if i != last.output[0]]
        if len(other) == 1 and other[0] in g.consts and g.consts[other[0]].ndim == 1:
            gamma, last = other[0], scale
            region.append(scale)
    if any(id(n) in removed for n in region):
        return None
    inputs = [x] + ([gamma] if gamma else [])
    return region, last, (lambda h, out: h.make_node("EdgekitRmsNorm", inputs, [out], name=out,
                                                     domain=DOMAIN, epsilon=float(eps)))


def _match_residual(g: _Graph, sub, removed):
    """``Add(x, Sub(y, x))`` -> ``y``."""
    y, x = sub.input
    add = g.only_reader(sub.output[0])
    if add is None or add.op_type != "Add" or x in g.consts or y in g.consts:
        return None
    other = [i for i in add.input if i != sub.output[0]]
    if other != [x]:
        return None
    return [sub, add], add, (lambda h, out: h.make_node("Identity", [y], [out], name=out))
