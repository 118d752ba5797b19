"""Check a torch.export program (the JSON of a ``.pt2``) and turn it into an ``ExportedProgram``.

torch's deserializer resolves node targets by ``getattr`` from the ``torch`` module (a target
``torch.os.system`` or ``torch.load`` becomes that function, called when the graph runs), parses
symbolic sizes with ``sympy.sympify`` (``eval``), compiles the ``guards_code`` strings into the
module's forward, and writes node names into generated Python source. So before it sees the
program, `check_program` walks the whole JSON against what a static-shape CNN or transformer
export holds and refuses anything else, naming the node and the field:

- node targets: ``torch.ops.aten.<op>.<overload>`` registered in torch's operator table whose
  schema takes no file names, storages or free-form strings (``aten::from_file``, ``aten::save``
  and ``aten::_print`` are refused), and ``_operator.getitem``; no higher-order ops, no subgraph,
  operator or custom-object arguments, no symbolic sizes or ``as_expr`` anywhere;
- every name (node, tensor, input, parameter path) a plain identifier or dotted path;
- no guard code, no range constraints (dynamic shapes), no named-tuple specs; input/output trees
  only of tuples, lists and dicts; node metadata (stack traces, module stacks, source functions
  that the deserializer would also resolve by ``getattr``) is dropped.

`deserialize` hands the checked program to ``ExportedProgramDeserializer.deserialize`` with the
weights and constants as dicts of tensors (so its ``deserialize_torch_artifact`` returns them as
they are and never calls ``torch.load``) and no example inputs.
"""

from __future__ import annotations

import json
import keyword
import re

from edgekit.converters.pt2_reader import Pt2Archive, check_fqn, static_int, tensor_meta
from edgekit.errors import ModelFormatError, UnsupportedError

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ATEN = re.compile(r"torch\.ops\.aten\.([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)")
#: plain Python targets an export of a CNN or transformer uses
PLAIN_TARGETS = frozenset({"_operator.getitem"})
#: schema arguments of type str that only pick a mode (``gelu(approximate='tanh')``)
MODE_STRING_ARGS = frozenset({"approximate", "rounding_mode", "padding", "mode", "equation",
                              "indexing", "reduce", "side", "interpolation", "pad_mode",
                              "padding_side", "norm", "ord", "UPLO", "driver"})
#: schema argument types an op edgekit accepts may not take
_REFUSED_ARG_TYPES = ("Storage", "Any", "Dict", "Capsule", "__torch__", "Future", "RRef",
                      "Stream", "Object")
#: keys that mean symbolic shapes, subgraphs or Python objects wherever they appear
_REFUSED_KEYS = frozenset({"as_expr", "expr_str", "as_graph", "as_custom_obj", "as_operator",
                           "as_string_to_argument", "as_nested_tensors", "custom_obj"})
_TOP_KEYS = {"graph_module", "opset_version", "range_constraints", "schema_version",
             "verifiers", "torch_version", "guards_code"}
_TREE_TYPES = frozenset({None, "builtins.tuple", "builtins.list", "builtins.dict"})


def _is_int(value) -> bool:
    return type(value) is int


def _is_number(value) -> bool:
    """A JSON number, or the strings torch writes for non-finite floats."""
    return type(value) in (int, float) or value in ("Infinity", "-Infinity", "NaN")


#: scalar / list argument kinds and the test their value must pass
_SCALAR_ARGS = {"as_none": lambda v: v in (True, False, None), "as_int": _is_int,
                "as_float": _is_number, "as_bool": lambda v: type(v) is bool,
                "as_scalar_type": _is_int, "as_memory_format": _is_int, "as_layout": _is_int}
_LIST_ARGS = {"as_ints": _is_int, "as_floats": _is_number, "as_bools": lambda v: type(v) is bool}


class _Where:
    """Names the archive member and node a refusal is about."""

    def __init__(self, archive: Pt2Archive):
        self.prefix = f"{archive.path}: models/{archive.model_name}.json"

    def __call__(self, place: str) -> str:
        return f"{self.prefix}: {place}"


def check_program(archive: Pt2Archive) -> dict:
    """The program JSON of ``archive`` with metadata dropped; `ModelFormatError` /
    `UnsupportedError` for anything outside what edgekit accepts."""
    where, program = _Where(archive), archive.program
    _refuse_keys(where, program, depth=0)
    unknown = set(program) - _TOP_KEYS
    if unknown or "graph_module" not in program:
        raise ModelFormatError(where(f"unknown or missing top-level fields"
                                     f" {sorted(unknown) or ['graph_module']}"))
    if program.get("guards_code"):
        raise ModelFormatError(where("carries guard code (Python source torch would compile),"
                                     " refused"))
    if program.get("range_constraints"):
        raise UnsupportedError(where("has range constraints (dynamic shapes); export with static"
                                     " shapes"))
    module = _fields(where, "graph_module", program["graph_module"],
                     {"graph", "signature", "module_call_graph", "metadata",
                      "treespec_namedtuple_fields"})
    if module.get("treespec_namedtuple_fields"):
        raise UnsupportedError(where("named-tuple inputs or outputs are not supported"))
    graph = _fields(where, "graph", module.get("graph"),
                    {"inputs", "outputs", "nodes", "tensor_values", "sym_int_values",
                     "sym_bool_values", "is_single_tensor_return", "custom_obj_values",
                     "sym_float_values"})
    for key in ("sym_int_values", "sym_bool_values", "sym_float_values", "custom_obj_values"):
        if graph.get(key):
            raise UnsupportedError(where(f"graph has {key} (symbolic values or custom objects);"
                                         " export with static shapes and tensors only"))
    tensors = graph.get("tensor_values")
    if not isinstance(tensors, dict):
        raise ModelFormatError(where("graph has no tensor_values"))
    for name, meta in tensors.items():
        _ident(where, "tensor", name)
        tensor_meta(where(f"tensor {name!r}"), meta, devices=("cpu", "meta"))
    for arg in _items(where, "graph inputs", graph.get("inputs")):
        _tensor_arg(where, "graph input", arg, tensors)
    for arg in _items(where, "graph outputs", graph.get("outputs")):
        _argument(where, "graph output", "output", arg, tensors, None)
    for node in _items(where, "graph nodes", graph.get("nodes")):
        _check_node(where, node, tensors)
    _check_signature(where, module.get("signature"), tensors, archive)
    module["module_call_graph"] = [_root_call(where, module.get("module_call_graph"), tensors)]
    _check_header(where, program)
    module["metadata"] = {}
    return program


def program_inputs(program: dict) -> list[tuple[str, list[int], str]]:
    """(name, shape, numpy dtype code) of each user input, from the checked graph signature."""
    graph = program["graph_module"]["graph"]
    inputs = []
    for spec in program["graph_module"]["signature"]["input_specs"]:
        if "user_input" in spec:
            name = spec["user_input"]["arg"]["as_tensor"]["name"]
            dtype, sizes, _, _ = tensor_meta(name, graph["tensor_values"][name], ("cpu", "meta"))
            inputs.append((name, sizes, dtype))
    return inputs


def deserialize(archive: Pt2Archive):
    """The ``ExportedProgram`` of a checked archive (see the module docstring)."""
    program = check_program(archive)  # before torch is imported: most refusals need no torch
    from torch._export.serde import schema
    from torch._export.serde.serialize import ExportedProgramDeserializer, _dict_to_dataclass

    for node in program["graph_module"]["graph"]["nodes"]:
        node["metadata"] = {}
    weights, constants = archive.tensors()
    try:
        serialized = _dict_to_dataclass(schema.ExportedProgram, program)
        return ExportedProgramDeserializer().deserialize(serialized, weights, constants, None)
    except Exception as err:  # a well-formed but inconsistent program (missing tensor, ...)
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ModelFormatError(f"{archive.path}: not a loadable torch.export program"
                               f" ({type(err).__name__}: {first[:300]})") from None


# --- pieces ----------------------------------------------------------------------------------------

def _refuse_keys(where, value, depth: int) -> None:
    if depth > 64:
        raise ModelFormatError(where("JSON nested more than 64 levels"))
    if isinstance(value, dict):
        for key, item in value.items():
            if key in _REFUSED_KEYS:
                raise UnsupportedError(where(f"holds {key!r} (symbolic shapes, a subgraph or a"
                                             " Python object), refused"))
            _refuse_keys(where, item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _refuse_keys(where, item, depth + 1)


def _check_header(where, program: dict) -> None:
    from torch._export.serde.schema import SCHEMA_VERSION
    from torch._export.verifier import _VerifierMeta

    version = program.get("schema_version")
    if (not isinstance(version, dict) or set(version) != {"major", "minor"}
            or version["major"] != SCHEMA_VERSION[0] or type(version["minor"]) is not int):
        raise ModelFormatError(where(f"schema_version {str(version)[:80]} is not"
                                     f" {SCHEMA_VERSION[0]}.x (this torch's)"))
    opset = program.get("opset_version", {})
    if not isinstance(opset, dict) or any(not _IDENT.fullmatch(str(k)) or type(v) is not int
                                          for k, v in opset.items()):
        raise ModelFormatError(where(f"opset_version {str(opset)[:80]} is not names -> ints"))
    verifiers = program.get("verifiers", [])
    known = {"", "ATEN", *_VerifierMeta._registry}
    if not isinstance(verifiers, list) or any(v not in known for v in verifiers):
        raise ModelFormatError(where(f"verifiers {str(verifiers)[:80]} are not among {sorted(known)}"))


def _fields(where, what: str, value, allowed: set) -> dict:
    if not isinstance(value, dict):
        raise ModelFormatError(where(f"{what} is not an object"))
    unknown = set(value) - allowed
    if unknown:
        raise ModelFormatError(where(f"{what} has unknown field {sorted(unknown)[0]!r}"))
    return value


def _items(where, what: str, value) -> list:
    if not isinstance(value, list):
        raise ModelFormatError(where(f"{what} is not a list"))
    return value


def _ident(where, what: str, name) -> str:
    if (not isinstance(name, str) or not _IDENT.fullmatch(name) or keyword.iskeyword(name)
            or name.startswith("__")):
        raise ModelFormatError(where(f"{what} name {str(name)[:80]!r} is not a plain identifier"))
    return name


def _tensor_ref(where, what: str, ref, tensors: dict) -> None:
    if not isinstance(ref, dict) or set(ref) != {"name"}:
        raise ModelFormatError(where(f"{what} {str(ref)[:80]} is not a tensor reference"))
    name = _ident(where, what, ref["name"])
    if name not in tensors:
        raise ModelFormatError(where(f"{what} {name!r} has no entry in tensor_values"))


def _tensor_arg(where, what: str, arg, tensors: dict) -> None:
    if not isinstance(arg, dict) or set(arg) != {"as_tensor"}:
        raise UnsupportedError(where(f"{what} {str(arg)[:80]} is not a tensor"))
    _tensor_ref(where, what, arg["as_tensor"], tensors)


def _check_node(where, node, tensors: dict) -> None:
    node = _fields(where, "node", node, {"target", "inputs", "outputs", "metadata",
                                         "is_hop_single_tensor_return", "name"})
    label = node.get("name")
    if label is not None:
        _ident(where, "node", label)
    target = node.get("target")
    place = f"node {label or '?'!r} ({str(target)[:80]})"
    schema = _allowed_target(where, place, target)
    arg_names = None if schema is None else {a.name for a in schema.arguments}
    if node.get("is_hop_single_tensor_return") not in (None, False):
        raise UnsupportedError(where(f"{place} is a higher-order op, refused"))
    for named in _items(where, f"{place} inputs", node.get("inputs")):
        named = _fields(where, f"{place} input", named, {"name", "arg", "kind"})
        arg_name = _ident(where, f"{place} argument", named.get("name"))
        if arg_names is not None and arg_name not in arg_names:
            raise ModelFormatError(where(f"{place}: argument {arg_name!r} is not in the op's"
                                         " schema"))
        if named.get("kind") not in (None, 0, 1, 2):
            raise ModelFormatError(where(f"{place}: argument kind {named.get('kind')!r}"))
        _argument(where, f"{place} argument {arg_name!r}", arg_name, named.get("arg"), tensors,
                  schema)
    for arg in _items(where, f"{place} outputs", node.get("outputs")):
        _argument(where, f"{place} output", "output", arg, tensors, None)


def _allowed_target(where, place: str, target):
    """The op schema of an allowed aten target; None for an allowed plain target."""
    import torch

    if target in PLAIN_TARGETS:
        return None
    match = _ATEN.fullmatch(target) if isinstance(target, str) else None
    if not match:
        raise UnsupportedError(where(f"{place}: target is not a torch.ops.aten operator, refused"
                                     " (edgekit runs aten ops only)"))
    op, overload = match.groups()
    wanted = "" if overload == "default" else overload
    schemas = [s for s in torch._C._jit_get_schemas_for_operator(f"aten::{op}")
               if s.overload_name == wanted]
    if not schemas:
        raise UnsupportedError(where(f"{place}: no aten operator {op}.{overload} in this torch"))
    schema = schemas[0]
    for arg in schema.arguments:
        kind = str(arg.type)
        if any(bad in kind for bad in _REFUSED_ARG_TYPES) or (
                "str" in kind and arg.name not in MODE_STRING_ARGS):
            raise UnsupportedError(where(f"{place}: the op takes {arg.name}: {kind} (files,"
                                         " storages or free text), refused"))
    resolved = torch
    for part in target.split(".")[1:]:
        resolved = getattr(resolved, part, None)
    if not isinstance(resolved, torch._ops.OpOverload) or resolved._schema.name != f"aten::{op}":
        raise UnsupportedError(where(f"{place}: does not resolve to the aten operator, refused"))
    return schema


def _argument(where, what: str, arg_name: str, arg, tensors: dict, schema) -> None:
    if not isinstance(arg, dict) or len(arg) != 1:
        raise ModelFormatError(where(f"{what} {str(arg)[:80]} is not one typed argument"))
    (kind, value), = arg.items()
    if kind == "as_tensor":
        _tensor_ref(where, what, value, tensors)
    elif kind == "as_tensors":
        for ref in _items(where, what, value):
            _tensor_ref(where, what, ref, tensors)
    elif kind in ("as_optional_tensor", "as_optional_tensors"):
        for item in value if kind == "as_optional_tensors" else [value]:
            if not isinstance(item, dict) or len(item) != 1 or not (
                    "as_none" in item or "as_tensor" in item):
                raise ModelFormatError(where(f"{what}: {str(item)[:80]} is not an optional tensor"))
            if "as_tensor" in item:
                _tensor_ref(where, what, item["as_tensor"], tensors)
    elif kind in _SCALAR_ARGS:
        if not _SCALAR_ARGS[kind](value):
            raise ModelFormatError(where(f"{what}: {kind} value {str(value)[:40]!r}"))
    elif kind in _LIST_ARGS:
        for item in _items(where, what, value):
            if not _LIST_ARGS[kind](item):
                raise ModelFormatError(where(f"{what}: {kind} item {str(item)[:40]!r}"))
    elif kind in ("as_int_lists", "as_float_lists"):
        for row in _items(where, what, value):
            for item in _items(where, what, row):
                if not _is_number(item):
                    raise ModelFormatError(where(f"{what}: {kind} item {str(item)[:40]!r}"))
    elif kind in ("as_sym_int", "as_sym_ints"):
        for item in value if kind == "as_sym_ints" else [value]:
            static_int(where(what), "symbolic int", item)
    elif kind in ("as_sym_bool", "as_sym_bools", "as_sym_float", "as_sym_floats"):
        inner = "as_bool" if "bool" in kind else "as_float"
        for item in value if kind.endswith("s") else [value]:
            if not isinstance(item, dict) or set(item) != {inner}:
                raise UnsupportedError(where(f"{what}: symbolic value {str(item)[:80]}, refused"))
    elif kind in ("as_string", "as_strings"):
        if schema is None or arg_name not in MODE_STRING_ARGS:
            raise UnsupportedError(where(f"{what}: a string argument, refused"))
        for item in value if kind == "as_strings" else [value]:
            if not isinstance(item, str) or len(item) > 256:
                raise ModelFormatError(where(f"{what}: {str(item)[:40]!r} is not a short string"))
    elif kind == "as_device":
        if not isinstance(value, dict) or value.get("type") != "cpu" or set(value) - {"type",
                                                                                       "index"}:
            raise UnsupportedError(where(f"{what}: device {str(value)[:80]}; cpu only"))
    elif kind == "as_complex":
        if not isinstance(value, dict) or set(value) != {"real", "imag"} or not all(
                isinstance(v, (int, float)) for v in value.values()):
            raise ModelFormatError(where(f"{what}: complex {str(value)[:80]}"))
    else:
        raise UnsupportedError(where(f"{what}: argument kind {kind!r} is not one edgekit accepts"))


_INPUT_SPECS = {"parameter": ("parameter_name",), "buffer": ("buffer_name", "persistent"),
                "tensor_constant": ("tensor_constant_name",), "user_input": ()}
_OUTPUT_SPECS = {"user_output": (), "buffer_mutation": ("buffer_name",)}


def _check_signature(where, signature, tensors: dict, archive: Pt2Archive) -> None:
    signature = _fields(where, "signature", signature, {"input_specs", "output_specs"})
    for specs, allowed in ((signature.get("input_specs"), _INPUT_SPECS),
                           (signature.get("output_specs"), _OUTPUT_SPECS)):
        for spec in _items(where, "signature specs", specs):
            if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in allowed:
                raise UnsupportedError(where(f"signature entry {str(spec)[:100]} is not one of"
                                             f" {sorted(allowed)}, refused"))
            (kind, body), = spec.items()
            body = _fields(where, f"signature {kind}", body, {"arg", *allowed[kind]})
            if kind in ("user_input", "user_output"):
                _tensor_arg(where, f"signature {kind}", body.get("arg"), tensors)
            else:
                _tensor_ref(where, f"signature {kind}", body.get("arg"), tensors)
            for field in allowed[kind]:
                if field == "persistent":
                    if not isinstance(body.get(field), bool):
                        raise ModelFormatError(where(f"signature {kind}: persistent"))
                    continue
                check_fqn(where(f"signature {kind}"), body.get(field))
                store = archive.constants if kind == "tensor_constant" else archive.weights
                if kind != "buffer_mutation" and body[field] not in store and not (
                        kind == "buffer" and body.get("persistent") is False
                        and body[field] in archive.constants):
                    raise ModelFormatError(where(f"signature {kind} {body[field]!r} has no"
                                                 " tensor in the archive's configs"))


def _root_call(where, calls, tensors: dict) -> dict:
    """The root entry of module_call_graph (the others only serve unflattening), checked."""
    roots = [c for c in _items(where, "module_call_graph", calls)
             if isinstance(c, dict) and c.get("fqn") == ""]
    if len(roots) != 1:
        raise ModelFormatError(where("module_call_graph has no single root entry"))
    root = _fields(where, "module_call_graph root", roots[0], {"fqn", "signature"})
    sig = _fields(where, "module_call_graph signature", root.get("signature"),
                  {"inputs", "outputs", "in_spec", "out_spec", "forward_arg_names"})
    for key in ("inputs", "outputs"):
        for arg in _items(where, f"module_call_graph {key}", sig.get(key, [])):
            _argument(where, f"module_call_graph {key}", key, arg, tensors, None)
    for name in _items(where, "forward_arg_names", sig.get("forward_arg_names", [])):
        _ident(where, "forward argument", name)
    for key in ("in_spec", "out_spec"):
        spec = sig.get(key)
        try:
            tree = json.loads(spec) if isinstance(spec, str) and len(spec) < 1 << 20 else None
        except (ValueError, RecursionError):
            tree = None
        if not (isinstance(tree, list) and len(tree) == 2 and type(tree[0]) is int):
            raise ModelFormatError(where(f"module_call_graph {key} is not a pytree spec"))
        _tree(where, key, tree[1], 0)
    return root


def _tree(where, key: str, node, depth: int) -> None:
    if depth > 32 or not isinstance(node, dict) or set(node) != {"type", "context",
                                                                "children_spec"}:
        raise ModelFormatError(where(f"module_call_graph {key}: {str(node)[:80]} is not a"
                                     " pytree node"))
    if node["type"] not in _TREE_TYPES:
        raise UnsupportedError(where(f"module_call_graph {key}: input/output container type"
                                     f" {str(node['type'])[:80]!r} is not a tuple, list or dict"))
    context = node["context"]
    if node["type"] is not None:
        try:
            keys = json.loads(context) if isinstance(context, str) else 0
        except ValueError:
            keys = 0
        if keys is not None and not (isinstance(keys, list) and all(
                isinstance(k, str) and _IDENT.fullmatch(k) for k in keys)):
            raise ModelFormatError(where(f"module_call_graph {key}: context {str(context)[:80]}"))
    for child in _items(where, key, node["children_spec"]):
        _tree(where, key, child, depth + 1)
