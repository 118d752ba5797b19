"""A corpus of hostile ``.pt2`` and ``.onnx`` files, generated at test time (no committed binaries).

`pt2_corpus(folder)` and `onnx_corpus(folder)` write the files under ``folder`` and return one
`Hostile` per file: its class, the marker file its payload would create if any code from it ran
(``os.system('touch MARKER')`` from a pickle's ``__reduce__``, a graph node, guard code or a
sympy expression), and whether edgekit must refuse it (``"refused"``) or may load it because the
payload sits where edgekit never looks (``"inert"``: the sample inputs, node metadata). ONNX
files carry no code; their payload is a local file outside the model's folder (``secret``) that
external-data references try to copy into the converted model.

Every class the security review found is here (duplicate zip members, pickles in members that
are not meant to be pickles, opaque/raw-declared/legacy payloads, decoy configs), plus the ones
found while replacing ``torch.export.load`` (guard code, sympy expressions, node targets and
names, higher-order ops, pytree types, zip structure, ONNX paths and sizes).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: input shape of the corpus models (NCHW)
INPUT_SHAPE = (1, 1, 6, 6)


@dataclass
class Hostile:
    path: Path
    kind: str
    marker: Path
    expect: str  # "refused" or "inert"


class Trap:
    """Unpickling this runs ``touch marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def shell_payload(marker) -> str:
    """Python source that creates ``marker``, for fields torch compiles or evaluates."""
    return f"__import__('os').system(\"touch '{marker}'\")"


# --- .pt2 ---------------------------------------------------------------------------------------

def clean_pt2(path: Path) -> None:
    """A small CNN (conv, batch norm, ReLU, linear) written by torch.export.save."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(32, 3)).eval()
    torch.export.save(torch.export.export(model, (torch.randn(*INPUT_SHAPE),)), str(path))


def _torch_save(obj) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


class _Archive:
    """The members of the clean archive, edited and written out (duplicates allowed)."""

    def __init__(self, clean: Path):
        with zipfile.ZipFile(clean) as z:
            self.members = [(i.filename, z.read(i)) for i in z.infolist()]
        self.root = self.members[0][0].split("/")[0]

    def get(self, rel: str) -> bytes:
        return next(d for n, d in self.members if n == f"{self.root}/{rel}")

    def json(self, rel: str) -> dict:
        return json.loads(self.get(rel))

    def set(self, rel: str, data) -> "_Archive":
        data = json.dumps(data).encode() if isinstance(data, (dict, list)) else data
        name = f"{self.root}/{rel}"
        if any(n == name for n, _ in self.members):
            self.members = [(n, data if n == name else d) for n, d in self.members]
        else:
            self.members.append((name, data))
        return self

    def add(self, name: str, data: bytes) -> "_Archive":
        self.members.append((name, data))
        return self

    def write(self, path: Path) -> Path:
        with warnings.catch_warnings(), zipfile.ZipFile(path, "w") as z:
            warnings.simplefilter("ignore")  # duplicate names are the point of some files
            for name, data in self.members:
                z.writestr(name, data)
        return path


_WEIGHTS = "data/weights/model_weights_config.json"
_CONSTANTS = "data/constants/model_constants_config.json"
_PROGRAM = "models/model.json"


def _first_weight(config: dict) -> dict:
    return next(iter(config["config"].values()))


def _add_node(program: dict, node: dict) -> dict:
    """``node`` inserted first in the graph (it runs whenever the graph does)."""
    program["graph_module"]["graph"]["nodes"].insert(0, node)
    return program


def _call(target: str, *args: dict, name: str = "evil") -> dict:
    return {"target": target, "name": name, "metadata": {},
            "inputs": [{"name": f"a{i}", "arg": a, "kind": 1} for i, a in enumerate(args)],
            "outputs": [{"as_none": True}], "is_hop_single_tensor_return": None}


def pt2_corpus(folder: Path) -> list[Hostile]:
    """Write the hostile ``.pt2`` files under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    clean = folder / "clean.pt2"
    clean_pt2(clean)
    out: list[Hostile] = []

    def make(name: str, kind: str, build, expect: str = "refused"):
        marker = folder / f"{name}.marker"
        path = folder / f"{name}.pt2"
        if isinstance(build, bytes):
            path.write_bytes(build)
        else:
            build(_Archive(clean), marker).write(path)
        out.append(Hostile(path, kind, marker, expect))

    def pickled_weight(a, m, path_name="weight_0", use_pickle=True):
        cfg = a.json(_WEIGHTS)
        meta = _first_weight(cfg)
        meta.update(path_name=path_name, use_pickle=use_pickle)
        return a.set(_WEIGHTS, cfg).set(f"data/weights/{path_name}", _torch_save(Trap(m)))

    # duplicate member names: a checker reading one copy, a loader the other
    def dup_config(a, m):
        cfg = a.json(_WEIGHTS)
        _first_weight(cfg)["use_pickle"] = True
        return a.add(f"{a.root}/{_WEIGHTS}", json.dumps(cfg).encode()).add(
            f"{a.root}/data/weights/weight_0", _torch_save(Trap(m)))
    make("dup_weights_config", "duplicate member", dup_config)
    make("dup_program", "duplicate member", lambda a, m: a.add(
        f"{a.root}/{_PROGRAM}", json.dumps(_add_node(a.json(_PROGRAM), _call(
            "torch.os.system", {"as_string": f"touch '{m}'"}))).encode()))
    make("dup_sample_inputs", "duplicate member", lambda a, m: a.add(
        f"{a.root}/data/sample_inputs/model.pt", _torch_save(((Trap(m),), {}))))

    # pickles in members that are not meant to hold one
    make("sample_inputs_torch_save", "pickle in an unexpected member", lambda a, m: a.set(
        "data/sample_inputs/model.pt", _torch_save(((Trap(m),), {}))), expect="inert")
    make("sample_inputs_plain_pickle", "pickle in an unexpected member", lambda a, m: a.set(
        "data/sample_inputs/model.pt", pickle.dumps(((Trap(m),), {}))), expect="inert")
    make("weight_json_suffix", "pickle in an unexpected member",
         lambda a, m: pickled_weight(a, m, "weight_0.json"))
    make("weight_json_suffix_raw", "pickle in an unexpected member",
         lambda a, m: pickled_weight(a, m, "weight_0.json", use_pickle=False))
    make("weight_use_pickle", "pickle in an unexpected member", pickled_weight)
    make("raw_declared_pickle", "opaque/raw-declared/legacy payload",
         lambda a, m: pickled_weight(a, m, use_pickle=False))

    def constant(prefix, use_pickle, payload):
        def build(a, m):
            cfg = a.json(_CONSTANTS)
            cfg["config"]["evil"] = {"path_name": f"{prefix}0", "is_param": False,
                                     "use_pickle": use_pickle,
                                     "tensor_meta": _first_weight(a.json(_WEIGHTS))["tensor_meta"]}
            return a.set(_CONSTANTS, cfg).set(f"data/constants/{prefix}0", payload(m))
        return build
    make("constant_use_pickle", "opaque/raw-declared/legacy payload",
         constant("tensor_", True, lambda m: _torch_save(Trap(m))))
    make("constant_opaque", "opaque/raw-declared/legacy payload",
         constant("opaque_obj_", False, lambda m: pickle.dumps(Trap(m))))
    make("constant_custom_obj", "opaque/raw-declared/legacy payload",
         constant("custom_obj_", True, lambda m: pickle.dumps(Trap(m))))
    make("legacy_weights", "opaque/raw-declared/legacy payload", lambda a, m: a.set(
        "data/weights/model.pt", _torch_save({"w": Trap(m)})))
    make("legacy_constants", "opaque/raw-declared/legacy payload", lambda a, m: a.set(
        "data/constants/model.pt", _torch_save({"c": Trap(m)})))

    # decoy configs and extra members
    def decoy_bak(a, m):
        cfg = a.json(_WEIGHTS)
        _first_weight(cfg).update(path_name="weight_99", use_pickle=True)
        return a.set(_WEIGHTS + ".bak", cfg).set("data/weights/weight_99", _torch_save(Trap(m)))
    make("decoy_config_bak", "decoy config", decoy_bak)

    def second_model(a, m):
        cfg = a.json(_WEIGHTS)
        _first_weight(cfg)["use_pickle"] = True
        return (a.set("models/other.json", a.get(_PROGRAM))
                .set("data/weights/other_weights_config.json", cfg)
                .set("data/constants/other_constants_config.json", a.get(_CONSTANTS))
                .set("data/weights/weight_0", a.get("data/weights/weight_0"))
                .set("data/sample_inputs/other.pt", _torch_save(((Trap(m),), {}))))
    make("decoy_second_model", "decoy config", second_model)

    def duplicate_json_key(a, m):
        text = a.get(_WEIGHTS).decode().replace('"use_pickle": false',
                                                '"use_pickle": false, "use_pickle": true', 1)
        return a.set(_WEIGHTS, text.encode()).set("data/weights/weight_0", _torch_save(Trap(m)))
    make("decoy_duplicate_json_key", "decoy config", duplicate_json_key)
    make("decoy_extra_member", "decoy config", lambda a, m: a.set(
        "extra/module_info.pkl", pickle.dumps(Trap(m))))

    # code in the program JSON
    for name, target in (("target_os_system", "torch.os.system"),
                         ("target_torch_load", "torch.load"),
                         ("target_hub_load", "torch.hub.load")):
        make(name, "code in the program", lambda a, m, t=target: a.set(_PROGRAM, _add_node(
            a.json(_PROGRAM), _call(t, {"as_string": f"touch '{m}'"}))))
    make("target_aten_save", "code in the program", lambda a, m: a.set(_PROGRAM, _add_node(
        a.json(_PROGRAM), _call("torch.ops.aten.save.default", {"as_tensor": {"name": "input"}},
                                {"as_string": str(m)}))))
    make("target_higher_order", "code in the program", lambda a, m: a.set(_PROGRAM, _add_node(
        a.json(_PROGRAM), _call("torch.ops.higher_order.cond", {"as_bool": True},
                                {"as_string": f"touch '{m}'"}))))

    def guards(a, m):
        program = a.json(_PROGRAM)
        program["guards_code"] = [shell_payload(m) + " == 0"]
        return a.set(_PROGRAM, program)
    make("guards_code", "code in the program", guards)

    def sympy_size(a, m):
        program = a.json(_PROGRAM)
        meta = program["graph_module"]["graph"]["tensor_values"]["input"]
        meta["sizes"][0] = {"as_expr": {"expr_str": shell_payload(m), "hint": {"as_int": 1}}}
        return a.set(_PROGRAM, program)
    make("sympy_expression", "code in the program", sympy_size)

    def node_name(a, m):
        program = a.json(_PROGRAM)
        program["graph_module"]["graph"]["nodes"][0]["name"] = f"x = None; {shell_payload(m)}; y"
        return a.set(_PROGRAM, program)
    make("node_name_injection", "code in the program", node_name)

    def tree_type(a, m):
        program = a.json(_PROGRAM)
        sig = program["graph_module"]["module_call_graph"][0]["signature"]
        sig["in_spec"] = sig["in_spec"].replace('"builtins.tuple"', '"os.system"', 1)
        return a.set(_PROGRAM, program)
    make("pytree_type", "code in the program", tree_type)

    def metadata(a, m):
        program = a.json(_PROGRAM)
        program["graph_module"]["graph"]["nodes"][0]["metadata"]["source_fn_stack"] = \
            "evil,torch.os.system"
        program["graph_module"]["metadata"]["custom"] = json.dumps({"cmd": f"touch '{m}'"})
        return a.set(_PROGRAM, program)
    make("node_metadata", "code in the program", metadata, expect="inert")

    # zip structure
    make("member_absolute", "zip structure", lambda a, m: a.add(
        "/tmp/evil.pkl", pickle.dumps(Trap(m))))
    make("member_dotdot", "zip structure", lambda a, m: a.add(
        f"{a.root}/../evil.pkl", pickle.dumps(Trap(m))))
    make("zip_bomb", "zip structure", lambda a, m: _deflated(a, "data/weights/weight_0",
                                                             bytes(8 << 20)))
    make("empty_file", "zip structure", b"")
    make("empty_zip", "zip structure", _empty_zip())
    make("truncated_zip", "zip structure", clean.read_bytes()[: clean.stat().st_size // 2])
    make("not_a_zip", "zip structure", pickle.dumps(Trap(folder / "not_a_zip.marker")))
    return out


def _deflated(archive: _Archive, rel: str, data: bytes) -> _Archive:
    """``archive`` whose member ``rel`` is ``data``, deflated (the writer above stores)."""
    class Deflated(_Archive):
        def write(self, path):
            with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
                for name, blob in self.members:
                    z.writestr(name, blob)
            return path
    archive.set(rel, data)
    archive.__class__ = Deflated
    return archive


def _empty_zip() -> bytes:
    buf = io.BytesIO()
    zipfile.ZipFile(buf, "w").close()
    return buf.getvalue()


# --- .onnx --------------------------------------------------------------------------------------

SECRET = b"edgekit-corpus-secret-" * 8  # 176 bytes = 44 float32


def _onnx_model(weight, constant=None):
    """``y = Gemm(x, w) (+ c)`` on x [1, 44]: w [4, 44] is an initializer, c a Constant node."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Gemm", ["x", "w"], ["g"], transB=1, name="gemm")]
    if constant is not None:
        nodes += [helper.make_node("Constant", [], ["c"], value=constant, name="const"),
                  helper.make_node("Add", ["g", "c"], ["y"], name="add")]
    else:
        nodes += [helper.make_node("Identity", ["g"], ["y"], name="id")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                         [1, 44])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def external_tensor(name: str, dims, location: str, offset: int | None = None,
                    length: int | None = None):
    """A float32 TensorProto whose data lives in ``location`` (as onnx writes external data)."""
    from onnx import TensorProto

    t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(dims))
    t.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", offset), ("length", length)):
        if value is not None:
            entry = t.external_data.add()
            entry.key, entry.value = key, str(value)
    return t


def inline_weight(name="w", dims=(4, 44)):
    from onnx import numpy_helper

    return numpy_helper.from_array(np.full(dims, 0.01, np.float32), name)


def onnx_corpus(folder: Path, secret: Path, cwd: Path) -> list[Hostile]:
    """Write the hostile ``.onnx`` files under ``folder``. ``secret`` (outside ``folder``) holds
    `SECRET`; ``cwd`` is where the commands will run, and holds a copy named ``cwd_secret.bin``."""
    from onnx import TensorProto

    folder.mkdir(parents=True, exist_ok=True)
    secret.write_bytes(SECRET)
    (cwd / "cwd_secret.bin").write_bytes(SECRET)
    out: list[Hostile] = []
    bias = (1, 4)

    def make(name, kind, model):
        path = folder / f"{name}.onnx"
        path.write_bytes(model.SerializeToString())
        out.append(Hostile(path, kind, folder / f"{name}.marker", "refused"))

    rel_up = os.path.relpath(secret, folder)
    for where, location in (("absolute", str(secret)), ("dotdot", rel_up),
                            ("cwd", "cwd_secret.bin")):
        make(f"ext_init_{where}", "external data outside the folder",
             _onnx_model(external_tensor("w", (4, 44), location)))
        make(f"ext_const_{where}", "external data outside the folder",
             _onnx_model(inline_weight(), external_tensor("c", bias, location, 0, 16)))
    link = folder / "link.bin"
    if not link.exists():
        link.symlink_to(secret)
    make("ext_init_symlink_out", "external data outside the folder",
         _onnx_model(external_tensor("w", (4, 44), "link.bin")))
    make("ext_const_symlink_out", "external data outside the folder",
         _onnx_model(inline_weight(), external_tensor("c", bias, "link.bin", 0, 16)))
    (folder / "short.bin").write_bytes(bytes(64))
    make("ext_offset_past_end", "external data range",
         _onnx_model(external_tensor("w", (4, 44), "short.bin", 4096, 704)))
    make("ext_length_mismatch", "external data range",
         _onnx_model(external_tensor("w", (4, 44), "short.bin", 0, 64)))
    make("ext_directory", "external data range",
         _onnx_model(external_tensor("w", (4, 44), ".")))
    make("ext_device_file", "external data outside the folder",
         _onnx_model(external_tensor("w", (4, 44), "/dev/zero", 0, 704)))
    huge = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1 << 20, 1 << 20],
                       raw_data=bytes(16))
    make("huge_dims_initializer", "huge dims", _onnx_model(huge))
    huge_c = TensorProto(name="c", data_type=TensorProto.FLOAT, dims=[1 << 40, 4],
                         raw_data=bytes(16))
    make("huge_dims_constant", "huge dims", _onnx_model(inline_weight(), huge_c))
    make("huge_dims_external", "huge dims",
         _onnx_model(external_tensor("w", (1 << 40, 44), "short.bin")))
    return out
