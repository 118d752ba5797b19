"""Weight bits in the mcunet search: each layer's bits drawn with the architecture (seeded), the
flash figures counting int4 weights packed, the default (mixed where flash binds), the chosen
model converted with its own per-layer bits, and flash on the Pareto front."""

from __future__ import annotations

import dataclasses
import json
import random

import numpy as np
import pytest

from edgekit.boards import load_board
from edgekit.converters.quantize import WEIGHTED, parse_bits
from edgekit.errors import UsageError
from edgekit.firmware.c_source import INT4_PAD_BYTES
from edgekit.nas.codesize import features, graph_features
from edgekit.nas.graph import graph_from_spec
from edgekit.nas.mcunet import SearchSpace, bits_spec, sample
from edgekit.nas.mcunet_family import default_bits, flash_binds


def _mixed(seed: int):
    return sample(random.Random(seed), SearchSpace(resolutions=(32,), widths=(0.35,),
                                                   bits=(8, 4)))


def test_an_int8_space_draws_no_bits_and_a_mixed_one_is_seeded():
    plain = sample(random.Random(3), SearchSpace())
    assert plain.weight_bits == () and set(plain.layer_bits()) == {8}
    int4 = sample(random.Random(3), SearchSpace(bits=(4,)))
    # the same architecture: a space of one width draws nothing more
    assert dataclasses.replace(int4, weight_bits=()) == plain
    assert set(int4.layer_bits()) == {4} and bits_spec(int4) == 4
    a, b = _mixed(11), _mixed(11)
    assert a == b and set(a.layer_bits()) == {4, 8}
    assert len(a.layer_bits()) == len(a.weighted_layer_names())
    assert a.from_dict(json.loads(a.to_json())) == a


def test_bits_spec_names_the_converters_layers_in_order():
    spec = _mixed(5)
    graph = graph_from_spec(spec)
    weighted = [op for op in graph.ops if op.kind in WEIGHTED]
    assert [op.name for op in weighted] == spec.weighted_layer_names()
    assert [graph[op.inputs[1]].dtype.bits for op in weighted] == list(spec.layer_bits())
    chosen = parse_bits(bits_spec(spec), graph)
    assert [chosen[i] for i in sorted(chosen)] == list(spec.layer_bits())


def test_flash_features_count_int4_weights_packed():
    spec = _mixed(7)
    int8 = dataclasses.replace(spec, weight_bits=())
    graph = graph_from_spec(spec)
    assert features(spec) == graph_features(graph)
    saved = sum(graph[op.inputs[1]].size - (graph[op.inputs[1]].size + 1) // 2 - INT4_PAD_BYTES
                for op in graph.ops if op.kind in WEIGHTED
                and graph[op.inputs[1]].dtype.bits == 4)
    assert saved > 0
    assert features(int8)["constants"] - features(spec)["constants"] == saved
    assert features(spec)["int4_kernels"] == 3 and features(int8)["int4_kernels"] == 0


def test_bad_weight_bits_are_refused():
    spec = _mixed(1)
    with pytest.raises(UsageError, match="weight_bits"):
        dataclasses.replace(spec, weight_bits=(4, 8))
    with pytest.raises(UsageError, match="8 or 4"):
        dataclasses.replace(spec, weight_bits=(2,) * len(spec.weighted_layer_names()))


def test_default_bits_are_mixed_only_where_flash_binds():
    space = SearchSpace()
    small, large = load_board("lm3s6965evb"), load_board("mps2-an386")  # 256 KB, 4 MB
    assert flash_binds(space, small) and default_bits(space, small) == "mixed"
    assert not flash_binds(space, large) and default_bits(space, large) == "8"


def test_the_converter_quantizes_each_layer_with_the_specs_bits():
    pytest.importorskip("torch")
    from edgekit.nas.convert import int8_graph
    from edgekit.nas.mcunet import to_torch

    spec = sample(random.Random(2), SearchSpace(resolutions=(16,), widths=(0.25,),
                                                depths=(1,), bits=(8, 4)))
    spec = dataclasses.replace(spec, patch_split=None, patch_n=1)
    calib = np.random.default_rng(0).standard_normal((8, 1, 16, 16)).astype(np.float32)
    graph = int8_graph(to_torch(spec), calib, bits=bits_spec(spec))
    weighted = [op for op in graph.ops if op.kind in WEIGHTED]
    assert [graph[op.inputs[1]].dtype.bits for op in weighted] == list(spec.layer_bits())


def test_the_pareto_front_counts_flash_as_an_objective():
    from edgekit.nas.search import pareto_front

    rows = [{"trial": 0, "accuracy": 0.8, "peak_sram": 100, "flash": 500},
            {"trial": 1, "accuracy": 0.8, "peak_sram": 100, "flash": 300},  # beats 0 on flash
            {"trial": 2, "accuracy": 0.7, "peak_sram": 100, "flash": 200},  # smallest flash
            {"trial": 3, "accuracy": 0.9, "peak_sram": 200, "flash": 900},
            {"trial": 4, "accuracy": 0.7, "peak_sram": 100, "flash": 200}]  # ties 2: both kept
    assert [r["trial"] for r in pareto_front(rows)] == [1, 2, 3, 4]


@pytest.mark.slow
def test_a_mixed_search_reports_flash_and_converts_with_the_chosen_bits(tmp_path):
    pytest.importorskip("optuna")
    pytest.importorskip("torch")
    from edgekit.converters.tflite_reader import load_tflite
    from edgekit.nas.codesize import flash_estimate
    from edgekit.nas.mcunet import MCUNetSpec
    from edgekit.nas.search import SearchConfig, run_search

    from nas_toy_data import write_toy_npz

    npz = write_toy_npz(tmp_path / "toy.npz")
    out = tmp_path / "s"
    result = run_search(SearchConfig(
        board="mps2-an386", dataset=str(npz), out_dir=out, strategy="proxy", trials=3, seed=4,
        proxy_steps=2,
        train_limit=60, val_limit=10, final_epochs=0, test_limit=10, resolutions=(32,),
        widths=(0.25,), bits="mixed"))
    pareto = json.loads((out / "pareto.json").read_text())
    assert pareto["objectives"] == {"accuracy": "max", "peak_sram": "min", "flash": "min",
                                   "instructions": "min"}
    for row in pareto["pareto"]:
        spec = MCUNetSpec.from_dict(row["spec"])
        assert set(spec.layer_bits()) == {4, 8}
        # the trial's flash counts its int4 layers packed: below its int8 twin's weights
        int8 = dataclasses.replace(spec, weight_bits=())
        assert features(spec)["constants"] < features(int8)["constants"]
        assert row["flash"] == flash_estimate(spec, cpu="cortex-m4") or spec.patch_split is not None
    spec = MCUNetSpec.from_dict(json.loads((out / "best" / "spec.json").read_text()))
    assert result.best["bits"] == str(bits_spec(spec))
    graph = load_tflite(out / "best" / "model.tflite")
    weighted = [op for op in graph.ops if op.kind in WEIGHTED]
    assert [graph[op.inputs[1]].dtype.bits for op in weighted] == list(spec.layer_bits())


@pytest.mark.parametrize("bits, space", [("5", "mcunet"), ("4", "embbert"), ("mixed", "mcuformer")])
def test_bad_bits_are_refused_naming_the_value(tmp_path, bits, space):
    from edgekit.nas.search import SearchConfig

    with pytest.raises(UsageError, match=f"bits {bits!r}"):
        SearchConfig(board="mps2-an386", dataset="digits", out_dir=tmp_path, bits=bits,
                     space=space)
