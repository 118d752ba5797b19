"""Untrusted model and data files: loading never runs code from the file.

The hostile corpus (`tests/malicious_models.py`, generated under tmp_path) goes through every
command that opens a model file, each run as its own ``edgekit`` process: no payload may run
(its marker file never appears), a refused file exits non-zero with one clean
``edgekit COMMAND: error: ...`` line naming the file and no traceback, and no output is left.
Pickled ``.pt`` / ``.pth`` files and pickled calibration arrays are refused as well.
"""

from __future__ import annotations

import collections
import pickle
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

import malicious_models as hostile  # noqa: E402
from edgekit.cli import main  # noqa: E402
from edgekit.converters.pt2_program import check_program  # noqa: E402
from edgekit.converters.pt2_reader import read_pt2  # noqa: E402
from edgekit.errors import EdgekitError, ModelFormatError  # noqa: E402


def check_pt2(path):
    """What `load_pt2` checks before torch is imported: the archive, then its program."""
    check_program(read_pt2(path))


EDGEKIT = Path(sys.executable).with_name("edgekit")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    cwd = root / "cwd"  # the commands run here: a file here must never be read by a model
    cwd.mkdir()
    files = (hostile.pt2_corpus(root / "pt2")
             + hostile.onnx_corpus(root / "onnx", root / "secret.bin", cwd))
    np.save(root / "calib_pt2.npy", np.zeros((2, *hostile.INPUT_SHAPE[1:]), np.float32))
    np.save(root / "calib_onnx.npy", np.zeros((2, 44), np.float32))
    return root, cwd, files


def _edgekit(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(EDGEKIT), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def _convert_args(root: Path, item: hostile.Hostile) -> tuple[list[str], Path]:
    out = root / "out" / f"{item.path.stem}-{item.path.suffix[1:]}.tflite"
    calib = root / f"calib_{item.path.suffix[1:]}.npy"
    return ["convert", str(item.path), "--calib", str(calib), "-o", str(out)], out


def _problems(item: hostile.Hostile, command: str, proc, out: Path | None) -> list[str]:
    """What is wrong with one run (empty when edgekit behaved)."""
    text = proc.stdout + proc.stderr
    found = []
    if item.marker.exists():
        found.append("PAYLOAD RAN")
    if "Traceback" in text:
        found.append("traceback")
    if item.expect == "refused" or command != "convert":
        if proc.returncode == 0:
            found.append("exit 0")
        lines = proc.stderr.strip().splitlines()
        if len(lines) != 1 or not lines[0].startswith(f"edgekit {command}: error: ") or (
                item.path.name not in lines[0]):
            found.append(f"stderr is not one clean error naming the file: {proc.stderr[-300:]!r}")
        if out is not None and out.exists():
            found.append("output written")
    elif proc.returncode != 0:
        found.append(f"inert file not converted: {proc.stderr[-300:]!r}")
    if out is not None and out.exists() and hostile.SECRET[:22] in out.read_bytes():
        found.append("secret copied into the output")
    return [f"{item.path.name} ({item.kind}) {command}: {p}" for p in found]


def test_corpus_covers_every_class(corpus):
    _, _, files = corpus
    kinds = collections.Counter(f.kind for f in files)
    assert len(files) >= 20
    assert {"duplicate member", "pickle in an unexpected member", "decoy config",
            "opaque/raw-declared/legacy payload", "code in the program", "zip structure",
            "external data outside the folder", "huge dims"} <= set(kinds)
    print("\nhostile corpus:", len(files), "files", dict(kinds))


def test_convert_runs_no_payload_and_fails_cleanly(corpus):
    root, cwd, files = corpus
    (root / "out").mkdir(exist_ok=True)

    def one(item):
        args, out = _convert_args(root, item)
        return _problems(item, "convert", _edgekit(args, cwd), out)

    with ThreadPoolExecutor(2) as pool:
        problems = [p for found in pool.map(one, files) for p in found]
    assert not problems, "\n".join(problems)
    assert not any(f.marker.exists() for f in files)
    print(f"\nconvert: {len(files)} hostile files, {sum(f.expect == 'refused' for f in files)}"
          " refused, 0 payloads ran")


@pytest.mark.parametrize("command", ["inspect", "plan", "build"])
def test_other_commands_refuse_model_files(corpus, command):
    """inspect, plan and build take .tflite: a hostile .pt2/.onnx is refused, nothing runs (one
    file per class here; the convert test above runs them all)."""
    root, cwd, files = corpus
    one_per_class = list({f.kind: f for f in files}.values())
    extra = {"build": ["--board", "mps2-an386", "-o", str(root / "fw")]}.get(command, [])
    problems = []
    for item in one_per_class:
        proc = _edgekit([command, str(item.path), *extra], cwd)
        problems += _problems(item, command, proc, None)
    assert not problems, "\n".join(problems)
    assert not (root / "fw").exists()


def test_loader_reaches_no_unpickler(tmp_path, monkeypatch):
    """load_pt2 on a clean archive works with every unpickling entry point booby-trapped."""
    from edgekit.converters.torch_import import load_pt2

    path = tmp_path / "m.pt2"
    hostile.clean_pt2(path)

    def refuse(*args, **kwargs):
        raise AssertionError("an unpickler was called")

    for owner, name in ((torch, "load"), (torch.export, "load"), (pickle, "loads"),
                        (pickle, "load"), (pickle, "Unpickler"), (torch._C, "_pickle_load_obj")):
        monkeypatch.setattr(owner, name, refuse)
    graph = load_pt2(path)
    assert [op.kind for op in graph.ops][:1] == ["CONV_2D"]


def test_torch_export_load_alone_would_run_the_payload(corpus):
    """Why edgekit has its own reader: torch 2.13's loader runs the payload of the sample inputs
    (retried with weights_only=False). If a later torch stops doing that, this test fails and
    the README's claim about torch can be revisited."""
    _, _, files = corpus
    item = next(f for f in files if f.path.stem == "sample_inputs_torch_save")
    try:
        torch.export.load(str(item.path))
        assert item.marker.exists()
    finally:
        item.marker.unlink(missing_ok=True)


def test_clean_pt2_passes_the_check_and_junk_is_a_format_error(tmp_path):
    path = tmp_path / "ok.pt2"
    hostile.clean_pt2(path)
    check_pt2(path)
    for content in (b"", b"PK\x03\x04garbage", b"\x00" * 64):
        path.write_bytes(content)
        with pytest.raises(ModelFormatError, match="ok.pt2"):
            check_pt2(path)


def test_onnx_external_data_inside_the_folder_loads(tmp_path, monkeypatch):
    """External data for an initializer and a Constant, beside the model, read from another
    current directory."""
    from edgekit.converters.onnx_import import load_onnx

    folder, elsewhere = tmp_path / "model", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    w = np.arange(4 * 44, dtype=np.float32).reshape(4, 44) / 100
    c = np.array([[1, 2, 3, 4]], np.float32)
    (folder / "sub").mkdir()
    (folder / "sub" / "data.bin").write_bytes(b"\0" * 8 + w.tobytes() + c.tobytes())
    model = hostile._onnx_model(hostile.external_tensor("w", w.shape, "sub/data.bin", 8, w.nbytes),
                                hostile.external_tensor("c", c.shape, "sub/data.bin", 8 + w.nbytes))
    (folder / "m.onnx").write_bytes(model.SerializeToString())
    monkeypatch.chdir(elsewhere)
    graph = load_onnx(folder / "m.onnx")
    consts = [graph[t].data for op in graph.ops for t in op.inputs
              if t is not None and graph[t].data is not None]
    assert any(np.array_equal(np.asarray(d).reshape(-1), w.reshape(-1)) for d in consts)
    assert any(np.array_equal(np.asarray(d).reshape(-1), c.reshape(-1)) for d in consts)


# --- pickled PyTorch and data files ---------------------------------------------------------------

def _convert_in_process(tmp_path, model_path, capsys):
    calib = tmp_path / "calib.npy"
    np.save(calib, np.zeros((2, 1, 6, 6), np.float32))
    out = tmp_path / "out.tflite"
    code = main(["convert", str(model_path), "--calib", str(calib), "-o", str(out)])
    return code, out, capsys.readouterr().err


def test_plain_pickle_pt_is_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    model = tmp_path / "model.pt"
    model.write_bytes(pickle.dumps({"weight": hostile.Trap(marker)}))
    code, out, err = _convert_in_process(tmp_path, model, capsys)
    assert code != 0 and "refused" in err and "model.pt" in err
    assert not marker.exists() and not out.exists()


def test_torch_save_zip_with_trap_is_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    model = tmp_path / "model.pth"
    torch.save({"w": torch.zeros(2), "evil": hostile.Trap(marker)}, model)
    code, out, err = _convert_in_process(tmp_path, model, capsys)
    assert code != 0 and "refused" in err
    assert not marker.exists() and not out.exists()


def test_state_dict_is_not_a_graph(tmp_path, capsys):
    model = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, model)
    code, out, err = _convert_in_process(tmp_path, model, capsys)
    assert code != 0 and "state dict" in err and not out.exists()


def test_pickled_calibration_array_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    calib = tmp_path / "calib.npy"
    np.save(calib, np.array([hostile.Trap(marker)], dtype=object), allow_pickle=True)
    from edgekit.cli.convert import load_calibration
    with pytest.raises(EdgekitError, match="pickled"):
        load_calibration(calib)
    assert not marker.exists()


@pytest.mark.parametrize("edit, message", [
    (lambda meta: meta["tensor_meta"]["sizes"].__setitem__(0, {"as_int": 1000}), "reach element"),
    (lambda meta: meta.update(path_name="weight_404"), "not in the archive"),
    (lambda meta: meta["tensor_meta"].update(dtype=10), "dtype code 10"),
    (lambda meta: meta["tensor_meta"]["strides"].__setitem__(0, {"as_int": -1}),
     "do not describe a tensor"),
])
def test_weight_config_disagreeing_with_its_member_is_refused(tmp_path, edit, message):
    clean, bad = tmp_path / "clean.pt2", tmp_path / "bad.pt2"
    hostile.clean_pt2(clean)
    archive = hostile._Archive(clean)
    config = archive.json("data/weights/model_weights_config.json")
    edit(next(iter(config["config"].values())))
    archive.set("data/weights/model_weights_config.json", config).write(bad)
    with pytest.raises(ModelFormatError, match=f"bad.pt2.*{message}"):
        check_pt2(bad)
