"""The MCUFormer family: specs round-trip and validate, samples stay in the space, the torch
model and its directly built float IR compute the same logits, int8 keeps the float accuracy,
the search's peak SRAM comes from the planner and grows with the width, the default space
fits disco-f746ng, and a 2-trial search writes a best/ whose .tflite the reference
interpreter runs."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgekit.boards import load_board  # noqa: E402
from edgekit.errors import SearchError, UsageError  # noqa: E402
from edgekit.nas.family import get_family  # noqa: E402
from edgekit.nas.mcuformer import (  # noqa: E402
    EMBED_DIMS, RESOLUTION_PATCHES, MCUFormerSpec, SearchSpace, sample,
)
from edgekit.nas.mcuformer_ir import float_graph, memory, module_graph, weights_of  # noqa: E402
from edgekit.nas.mcuformer_torch import to_torch  # noqa: E402
from edgekit.nas.search import sram_budget  # noqa: E402
from edgekit.attention import fuse_attention  # noqa: E402


def _spec(**kw) -> MCUFormerSpec:
    base = dict(resolution=28, in_channels=1, num_classes=10, embed_dim=32, depth=2, heads=2,
                mlp_ratio=2.0, rank_ratio=0.5, patch=7)
    return MCUFormerSpec(**{**base, **kw})


def test_spec_round_trips_and_rejects_what_does_not_divide():
    spec = _spec()
    assert MCUFormerSpec.from_dict(json.loads(spec.to_json())) == spec
    assert (spec.tokens, spec.head_dim, spec.hidden, spec.rank) == (16, 16, 64, 16)
    with pytest.raises(UsageError, match="patch 8 does not divide resolution 28"):
        _spec(patch=8)
    with pytest.raises(UsageError, match="3 heads do not divide embed_dim 32"):
        _spec(heads=3)
    with pytest.raises(UsageError, match="rank_ratio"):
        _spec(rank_ratio=1.5)
    with pytest.raises(UsageError, match="mcuformer spec"):
        MCUFormerSpec.from_dict({**spec.to_dict(), "width": 1})


def test_samples_stay_in_the_space():
    space = SearchSpace()
    rng = random.Random(0)
    seen = set()
    for _ in range(40):
        spec = sample(rng, space)
        assert (spec.resolution, spec.patch) in RESOLUTION_PATCHES
        assert spec.embed_dim in space.embed_dims and spec.depth in space.depths
        assert spec.heads in space.heads and spec.mlp_ratio in space.mlp_ratios
        assert spec.rank_ratio in space.rank_ratios and spec.resolution % spec.patch == 0
        seen.add((spec.resolution, spec.patch))
    assert len(seen) == len(RESOLUTION_PATCHES)


def test_torch_forward_shapes_and_low_rank_factors():
    spec = _spec(embed_dim=48, heads=4, mlp_ratio=4.0, rank_ratio=0.25)
    model = to_torch(spec, seed=0)
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    w = weights_of(model)
    assert w["blocks.0.fc1.u.weight"].shape == (12, 48)   # rank 0.25 * min(48, 192)
    assert w["blocks.0.fc1.v.weight"].shape == (192, 12)
    assert w["blocks.1.fc2.v.weight"].shape == (48, 12)
    assert w["pos"].shape == (1, 16, 48)


@pytest.mark.parametrize("kw", [{}, {"resolution": 32, "patch": 4, "heads": 4, "depth": 1},
                                {"heads": 1, "mlp_ratio": 1.0, "rank_ratio": 1.0}])
def test_float_ir_equals_the_torch_module(kw):
    from edgekit.converters.float_exec import run_float

    spec = _spec(**kw)
    model = to_torch(spec, seed=1).eval()
    with torch.no_grad():  # trained-looking weights: not the init's near-zero positional embedding
        model.pos.normal_(0, 0.5)
    x = torch.rand(4, 1, spec.resolution, spec.resolution)
    with torch.no_grad():
        want = model(x).numpy()
    graph = module_graph(model, spec)
    kinds = [op.kind for op in graph.ops]
    assert kinds.count("BATCH_MATMUL") == 2 * spec.depth and kinds.count("LAYER_NORM") == 2 * spec.depth + 1
    got = run_float(graph, [x.permute(0, 2, 3, 1).numpy()])[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5)


def test_memory_is_the_planners_and_grows_with_the_embed_dim():
    from edgekit.firmware.codegen import firmware_plan
    from edgekit.nas.mcuformer_ir import spec_int8_graph

    board = load_board("disco-f746ng")
    figures = [memory(_spec(embed_dim=d, heads=4), board) for d in EMBED_DIMS]
    peaks = [f["peak_sram"] for f in figures]
    flashes = [f["flash"] for f in figures]
    assert peaks == sorted(peaks) and peaks[0] < peaks[-1]
    assert flashes == sorted(flashes) and flashes[-1] - flashes[0] > 10_000
    spec = _spec(embed_dim=64)
    assert memory(spec, board)["peak_sram"] == firmware_plan(
        fuse_attention(spec_int8_graph(spec))).arena_bytes


def test_the_largest_default_candidates_fit_disco_f746ng():
    board = load_board("disco-f746ng")
    space = SearchSpace()
    for resolution, patch in RESOLUTION_PATCHES:
        spec = MCUFormerSpec(resolution=resolution, in_channels=1, num_classes=10,
                             embed_dim=max(space.embed_dims), depth=max(space.depths),
                             heads=max(space.heads), mlp_ratio=max(space.mlp_ratios),
                             rank_ratio=max(space.rank_ratios), patch=patch)
        m = memory(spec, board)
        assert m["peak_sram"] <= sram_budget(board), spec
        assert m["flash"] <= board.flash_bytes, spec


def test_space_refuses_token_data_and_mcunet_widths(tmp_path):
    from edgekit.nas.datasets import Dataset, Split
    from edgekit.nas.search import SearchConfig

    family = get_family("mcuformer")
    tokens = Split(np.zeros((4, 16), np.int32), np.zeros(4, np.int64))
    with pytest.raises(UsageError, match="images"):
        family.space(Dataset("text", tokens, tokens, 2), None)
    images = Split(np.zeros((4, 28, 28, 1), np.float32), np.zeros(4, np.int64))
    config = SearchConfig(board="disco-f746ng", dataset="x", out_dir=tmp_path, widths=(0.5,),
                          space="mcuformer")
    with pytest.raises(UsageError, match="widths"):
        family.space(Dataset("img", images, images, 2), config)
    config = SearchConfig(board="disco-f746ng", dataset="x", out_dir=tmp_path,
                          resolutions=(32,), space="mcuformer")
    assert family.space(Dataset("img", images, images, 2), config).resolution_patches == \
        ((32, 4), (32, 8))


def _fashion(n_train: int, n_test: int):
    from edgekit.nas.datasets import fashion_mnist_available, load_fashion_mnist

    if not fashion_mnist_available():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    return load_fashion_mnist("train", limit=n_train), load_fashion_mnist("test", limit=n_test)


def test_int8_accuracy_is_close_to_float_on_a_small_trained_model():
    from edgekit.nas.mcuformer_ir import int8_graph
    from edgekit.nas.train import float_accuracy, int8_accuracy

    train, test = _fashion(2000, 200)
    spec = _spec(embed_dim=32, depth=1, heads=2)
    family = get_family("mcuformer")
    model = family.train(spec, train, steps=150, batch_size=64, seed=0, threads=2)
    graph = int8_graph(model, spec, train.images[:64])
    f, q = float_accuracy(model, spec, test), int8_accuracy(graph, spec, test)
    assert f > 0.5, f  # it learnt something (10 classes: chance is 0.1)
    assert abs(f - q) <= 0.05, (f, q)
    # the search's placeholder graph plans what the calibrated graph plans
    from edgekit.firmware.codegen import firmware_plan

    board = load_board("disco-f746ng")
    assert family.memory(spec, board)["peak_sram"] == firmware_plan(
        fuse_attention(graph)).arena_bytes


def test_registry_names_the_spaces():
    assert get_family("mcuformer").name == "mcuformer" and get_family("mcunet").name == "mcunet"
    with pytest.raises(UsageError, match="'vit'.*mcuformer"):
        get_family("vit")


from test_nas_search import npz  # noqa: E402,F401  (the toy 8x8 image dataset fixture)


def test_two_trial_search_writes_a_best_model_the_interpreter_runs(tmp_path, npz, capsys):
    pytest.importorskip("optuna")
    from edgekit.cli import main
    from edgekit.converters.tflite_reader import load_tflite
    from edgekit.interpreter import Interpreter
    from edgekit.nas.search import SearchConfig, run_search

    out = tmp_path / "s"
    argv = ["search", "--space", "mcuformer", "--board", "disco-f746ng", "--dataset", str(npz),
            "--trials", "2", "--proxy-steps", "2", "--train-limit", "60", "--final-epochs", "0",
            "--test-limit", "10", "--resolutions", "8", "-o", str(out), "--json"]
    assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["space"] == "mcuformer" and payload["trials_run"] == 2
    best = payload["best"]
    assert best["space"] == "mcuformer" and best["fits"]
    assert 0 < best["peak_sram"] <= sram_budget(load_board("disco-f746ng"))
    spec = MCUFormerSpec.from_dict(json.loads((out / "best" / "spec.json").read_text()))
    assert spec.resolution == 8 and spec.patch == 4
    assert json.loads((out / "best" / "patch.json").read_text()) == {"split": None, "n": 1}
    assert json.loads((out / "best" / "report.json").read_text())["spec"] == spec.to_dict()
    graph = load_tflite(out / "best" / "model.tflite")
    assert {"BATCH_MATMUL", "LAYER_NORM", "GELU"} <= {op.kind for op in graph.ops}
    x = np.zeros((1, 8, 8, 1), np.int8)
    logits = Interpreter(graph).run([x])[0]
    assert logits.shape == (1, 3) and logits.dtype == np.int8
    # a bound the family does not take is refused before anything is written
    assert main([*argv[:-3], "--widths", "0.5", "-o", str(tmp_path / "w")]) == 2
    assert "widths" in capsys.readouterr().err and not (tmp_path / "w").exists()
    # the storage holds an mcuformer search: another space is refused, even with --resume
    with pytest.raises(SearchError, match="mcuformer"):
        run_search(SearchConfig(board="disco-f746ng", dataset=str(npz), out_dir=out,
                                resume=True, trials=1))


@pytest.mark.slow
def test_search_on_fashion_mnist_builds_for_disco_f746ng(tmp_path, capsys):
    import shutil

    from edgekit.cli import main

    _fashion(1, 1)
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc is not installed")
    out = tmp_path / "search"
    argv = ["search", "--space", "mcuformer", "--board", "disco-f746ng", "--dataset",
            "fashion-mnist", "--trials", "2", "--proxy-steps", "20", "--train-limit", "1000",
            "--final-epochs", "1", "--test-limit", "50", "--resolutions", "28", "-o", str(out),
            "--json"]
    assert main(argv) == 0
    best = json.loads(capsys.readouterr().out)["best"]
    assert best["fits"] and 0 <= best["int8_accuracy"] <= 1
    assert main(["build", str(out / "best"), "--board", "disco-f746ng", "-o",
                 str(tmp_path / "fw"), "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["plan_arena_bytes"] == best["peak_sram"]
    assert abs(built["flash_bytes"] - best["flash_estimate"]) <= 0.1 * built["flash_bytes"]
