"""The search driver and `edgekit search`: resume adds trials, errors name the value at fault
and write nothing, and a tiny search on Fashion-MNIST yields a model `edgekit build` builds."""

from __future__ import annotations

import json
import shutil

import pytest

from nas_toy_data import write_toy_npz

pytest.importorskip("optuna")
pytest.importorskip("torch")

from edgekit.cli import main  # noqa: E402
from edgekit.errors import SearchError  # noqa: E402
from edgekit.nas.datasets import fashion_mnist_available  # noqa: E402
from edgekit.nas.search import SearchConfig, run_search  # noqa: E402

TINY = ["--strategy", "proxy", "--proxy-steps", "2", "--train-limit", "60", "--final-epochs", "0", "--test-limit", "10"]


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    """A small random 3-class dataset of 8x8 grey images."""
    return write_toy_npz(tmp_path_factory.mktemp("data") / "toy.npz")


def _config(out, npz, **kw):
    return SearchConfig(board="mps2-an386", dataset=str(npz), out_dir=out, strategy="proxy",
                        proxy_steps=2,
                        train_limit=60, val_limit=10, final_epochs=0, test_limit=10,
                        resolutions=(32, 40), widths=(0.25, 0.35), **kw)


def test_resume_runs_up_to_the_total_and_a_second_fresh_run_is_refused(tmp_path, npz):
    out = tmp_path / "s"
    first = run_search(_config(out, npz, trials=3, seed=1))
    assert (first.trials_run, first.trials_total) == (3, 3)
    with pytest.raises(SearchError, match="--resume"):
        run_search(_config(out, npz, trials=1, seed=1))
    with pytest.raises(SearchError, match="seed"):
        run_search(_config(out, npz, trials=5, seed=2, resume=True))
    with pytest.raises(SearchError, match="started with bits 'default', not '4'"):
        run_search(_config(out, npz, trials=5, seed=1, resume=True, bits="4"))
    # --trials is the total the study holds: 2 more, not 5 more
    second = run_search(_config(out, npz, trials=5, seed=1, resume=True))
    assert (second.trials_run, second.trials_total) == (2, 5)
    pareto = json.loads((out / "pareto.json").read_text())
    assert pareto["trials"] == 5 and pareto["pareto"]
    for row in pareto["pareto"]:
        assert row["feasible"] and row["peak_sram"] > 0 and 0 <= row["accuracy"] <= 1
    assert (out / "pareto.png").stat().st_size > 1000
    best = out / "best"
    spec = json.loads((best / "spec.json").read_text())
    patch = json.loads((best / "patch.json").read_text())
    assert (patch["split"] is None) == (spec["patch_split"] is None)
    assert (best / "model.tflite").stat().st_size > 0
    assert not list(out.glob(".best-*"))  # no half-written best/


def test_storage_url_is_used(tmp_path, npz):
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    run_search(_config(tmp_path / "s", npz, trials=1, storage=url))
    assert (tmp_path / "elsewhere.db").is_file()
    assert not (tmp_path / "s" / "search.db").exists()


@pytest.mark.parametrize("argv, code, words", [
    (["--board", "no-such-board", "--dataset", "fashion-mnist"], 1, "no-such-board"),
    (["--board", "mps2-an386", "--dataset", "no-such-data"], 2, "no-such-data"),
    (["--board", "mps2-an386", "--dataset", "fashion-mnist", "--trials", "0"], 2, "trials"),
    (["--board", "mps2-an386", "--dataset", "fashion-mnist", "--space", "vit"], 2, "vit"),
    (["--board", "mps2-an386", "--dataset", "fashion-mnist", "--resolutions", "4"], 2, "resolutions"),
])
def test_cli_errors_name_the_value_and_write_nothing(tmp_path, capsys, argv, code, words):
    out = tmp_path / "out"
    assert main(["search", *argv, "-o", str(out)]) == code
    assert words in capsys.readouterr().err
    assert not out.exists()


def test_bad_storage_url_is_a_search_error(tmp_path, npz, capsys):
    argv = ["search", "--board", "mps2-an386", "--dataset", str(npz), "--storage",
            "nosuchdb://x", "-o", str(tmp_path / "o"), *TINY]
    assert main(argv) == 1
    assert "nosuchdb://x" in capsys.readouterr().err


@pytest.mark.slow
def test_tiny_search_on_fashion_mnist_builds_for_the_board(tmp_path, capsys):
    if not fashion_mnist_available():
        pytest.skip("Fashion-MNIST is not installed (/usr/share/datasets/fashion-mnist:"
                    " apt-get install dataset-fashion-mnist)")
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc is not installed")
    out = tmp_path / "search"
    argv = ["search", "--space", "mcunet", "--board", "mps2-an386", "--dataset", "fashion-mnist",
            "--strategy", "proxy", "--trials", "3", "--time-budget", "60", "--proxy-steps", "20", "--train-limit",
            "1000", "--final-epochs", "1", "--test-limit", "50", "--resolutions", "32,40",
            "--widths", "0.25,0.35", "-o", str(out), "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    # the time budget may stop the search before its third trial starts
    assert report["command"] == "search" and 1 <= report["trials_run"] <= 3
    best = report["best"]
    assert 0 <= best["int8_accuracy"] <= 1 and best["fits"]
    assert best["peak_sram"] <= best["peak_sram_layer_by_layer"]
    model = out / "best" / "model.tflite"
    # the search reports the memory plan (its SRAM constraint); `build` by default may trade
    # arena bytes for a faster in-place kernel (--objective balanced), so ask for that plan
    assert main(["build", str(model), "--board", "mps2-an386", "-o", str(tmp_path / "fw"),
                 "--objective", "memory", "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["plan_arena_bytes"] == best["peak_sram_layer_by_layer"]
    assert abs(built["flash_bytes"] - best["flash_estimate"]) <= 0.1 * built["flash_bytes"]


def test_the_default_strategy_is_the_supernet_for_mcunet_only(tmp_path):
    """mcunet searches with its supernet unless told otherwise (it beat the proxy search and the
    hand-designed baselines: bench/nas_vs_baselines.py); the other spaces keep the proxy."""
    mcunet = SearchConfig(board="mps2-an386", dataset="x", out_dir=tmp_path)
    assert (mcunet.strategy, mcunet.trials, mcunet.supernet_steps) == ("supernet", 1000, 600)
    for space in ("mcuformer", "embbert"):
        other = SearchConfig(board="mps2-an386", dataset="x", out_dir=tmp_path, space=space)
        assert (other.strategy, other.trials) == ("proxy", 20)
    explicit = SearchConfig(board="mps2-an386", dataset="x", out_dir=tmp_path, strategy="proxy")
    assert (explicit.strategy, explicit.trials) == ("proxy", 20)
