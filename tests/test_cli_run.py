"""`edgekit run`: inputs from .npy / repeated --input / .npz, outputs to .npy / .npz, JSON,
named errors for wrong shape or dtype, and no output file left behind when a run fails."""

from __future__ import annotations

import json

import numpy as np
import pytest

import graph_builders as gb
from conftest import mlperf_path
from oracle_runners import TflmRunner
from edgekit.cli import main
from edgekit.converters.tflite_writer import save_tflite


@pytest.fixture
def add_model(tmp_path):
    """A two-input ADD model (inputs "a" and "b", output "y")."""
    graph = gb.add(np.random.default_rng(3), shape_a=(1, 4, 4, 8), shape_b=(1, 1, 1, 8))
    return save_tflite(graph, tmp_path / "add.tflite"), graph


def _json_run(capsys, *argv) -> tuple[int, dict]:
    code = main(["run", *map(str, argv), "--json"])
    out = capsys.readouterr().out
    return code, (json.loads(out) if out.strip() else {})


def test_npy_in_npy_out_matches_tflite_micro(tmp_path, capsys):
    model = mlperf_path("kws")
    x = np.random.default_rng(0).integers(-128, 128, size=(1, 49, 10, 1), dtype=np.int8)
    np.save(tmp_path / "x.npy", x)
    code, payload = _json_run(capsys, model, "--input", tmp_path / "x.npy",
                              "-o", tmp_path / "y.npy")
    assert code == 0
    y = np.load(tmp_path / "y.npy")
    assert y.tobytes() == TflmRunner(model)([x])[0].tobytes()
    assert payload["schema_version"] == 1 and payload["command"] == "run"
    assert payload["outputs"][0]["values"] == y.reshape(-1).tolist()
    assert payload["inputs"][0] == {"name": payload["inputs"][0]["name"], "shape": [1, 49, 10, 1],
                                    "dtype": "int8"}


def test_two_inputs_repeated_or_npz(tmp_path, capsys, add_model):
    model, graph = add_model
    rng = np.random.default_rng(1)
    a, b = (gb.random_input(rng, graph[n]) for n in ("a", "b"))
    expected = TflmRunner(model)([a, b])[0]
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    assert main(["run", str(model), "--input", str(tmp_path / "a.npy"), "--input",
                 str(tmp_path / "b.npy"), "-o", str(tmp_path / "y1.npz")]) == 0
    np.savez(tmp_path / "named.npz", b=b, a=a)  # by tensor name, any order
    assert main(["run", str(model), "--input", str(tmp_path / "named.npz"),
                 "-o", str(tmp_path / "y2.npz")]) == 0
    np.savez(tmp_path / "positional.npz", a, b)  # arr_0, arr_1 in graph order
    assert main(["run", str(model), "--input", str(tmp_path / "positional.npz"),
                 "-o", str(tmp_path / "y3.npy")]) == 0
    capsys.readouterr()
    for name in ("y1.npz", "y2.npz"):
        with np.load(tmp_path / name) as archive:
            assert archive.files == ["y"]
            assert archive["y"].tobytes() == expected.tobytes()
    assert np.load(tmp_path / "y3.npy").tobytes() == expected.tobytes()


@pytest.mark.parametrize("bad, message", [
    (np.zeros((1, 4, 4, 8), np.float32), "input tensor 'a': expected dtype int8, got float32"),
    (np.zeros((1, 4, 8), np.int8), "input tensor 'a': expected shape (1, 4, 4, 8), got (1, 4, 8)"),
])
def test_wrong_input_names_tensor_and_leaves_no_output(tmp_path, capsys, add_model, bad, message):
    model, graph = add_model
    np.save(tmp_path / "a.npy", bad)
    np.save(tmp_path / "b.npy", np.zeros((1, 1, 1, 8), np.int8))
    code = main(["run", str(model), "-i", str(tmp_path / "a.npy"), "-i", str(tmp_path / "b.npy"),
                 "-o", str(tmp_path / "y.npy")])
    err = capsys.readouterr().err
    assert code == 1 and message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "add.tflite", "b.npy"]


def test_usage_errors(tmp_path, capsys, add_model):
    model, _ = add_model
    np.save(tmp_path / "a.npy", np.zeros((1, 4, 4, 8), np.int8))
    cases = [
        (["-i", "a.npy"], "takes 2 input(s) ['a', 'b'], got 1"),
        ([], "give the model's input(s) with --input FILE"),
        (["-i", "missing.npy"], "input file 'missing.npy' does not exist"),
    ]
    for extra, message in cases:
        code = main(["run", str(model), *[str(tmp_path / e) if e.endswith(".npy") else e
                                          for e in extra]])
        err = capsys.readouterr().err
        assert code != 0 and message.replace("'missing.npy'", repr(str(tmp_path / "missing.npy"))) in err, err
    np.savez(tmp_path / "wrong.npz", c=np.zeros(3, np.int8))
    assert main(["run", str(model), "-i", str(tmp_path / "wrong.npz")]) == 2
    assert "key 'c' is not an input tensor of the model" in capsys.readouterr().err
    np.save(tmp_path / "b.npy", np.zeros((1, 1, 1, 8), np.int8))
    assert main(["run", str(model), "-i", str(tmp_path / "a.npy"), "-i", str(tmp_path / "b.npy"),
                 "-o", str(tmp_path / "y.txt")]) == 2
    assert "must end in .npy or .npz" in capsys.readouterr().err
    assert not (tmp_path / "y.txt").exists()


def test_multiple_outputs_need_npz(tmp_path, capsys):
    from edgekit.cli.run import save_outputs
    from edgekit.errors import UsageError
    with pytest.raises(UsageError, match=r"2 outputs \['p', 'q'\]; write them to an .npz"):
        save_outputs(tmp_path / "o.npy", ["p", "q"], [np.zeros(1), np.ones(1)])
    save_outputs(tmp_path / "o.npz", ["p", "q"], [np.zeros(1), np.ones(1)])
    with np.load(tmp_path / "o.npz") as archive:
        assert archive.files == ["p", "q"] and archive["q"][0] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.npz"]  # no temp files left
