"""Screening (`edgekit.nas.screen`): a search on a tight board trains only candidates that fit,
`--trials` counts trained candidates, and the rejected draws are counted by reason."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("optuna")
pytest.importorskip("torch")

import edgekit.nas.search as search  # noqa: E402
from edgekit.boards import load_board  # noqa: E402
from edgekit.errors import SearchError  # noqa: E402
from edgekit.nas.family import get_family  # noqa: E402
from edgekit.nas.screen import Limits, rejection  # noqa: E402
from edgekit.nas.search import SearchConfig, run_search, sram_budget  # noqa: E402


from test_nas_search import npz  # noqa: E402,F401  (the toy 8x8 image dataset fixture)


class _Smaller:
    """A board with less SRAM and flash (the rest is the real board's)."""

    def __init__(self, board, sram: int, flash: int):
        self._board, self.sram_bytes, self.flash_bytes = board, sram, flash

    def __getattr__(self, name):
        return getattr(self._board, name)


def _tight_board(monkeypatch, sram: int, flash: int):
    board = _Smaller(load_board("lm3s6965evb"), sram, flash)
    monkeypatch.setattr(search, "load_board", lambda _id: board)
    return board


def _trained_specs(monkeypatch, family) -> list:
    """The specs ``family`` trains from now on (proxy and final trainings), in order."""
    trained = []
    real_train = type(family).train

    def counting_train(self, spec, split, **kw):
        trained.append(spec)
        return real_train(self, spec, split, **kw)

    monkeypatch.setattr(type(family), "train", counting_train)
    return trained


def _config(out, npz, **kw):
    # int8 weights: the screen, not the bits, is under test (mixed would be the default on a
    # board whose flash binds)
    kw = {"resolutions": (32, 40), "widths": (0.25, 0.5, 0.75), "space_opt": False, "bits": "8",
          "strategy": "proxy", **kw}
    return SearchConfig(board="lm3s6965evb", dataset=str(npz), out_dir=out, proxy_steps=1,
                        train_limit=60, val_limit=10, final_epochs=0, test_limit=10, **kw)


def test_a_tight_board_trains_only_candidates_that_fit(tmp_path, npz, monkeypatch):
    # flash for about the smaller half of the space (flash estimates of random candidates at
    # 32/40 px: 80 KB to 850 KB, median 290 KB): random draws are rejected often
    board = _tight_board(monkeypatch, sram=64 * 1024, flash=290_000)
    family = get_family("mcunet")
    trained = _trained_specs(monkeypatch, family)
    result = run_search(_config(tmp_path / "s", npz, trials=4, seed=3))
    # 4 proxy trainings, one final training; every one of them fits the board
    assert result.trials_total == 4 and len(trained) == 5
    for spec in trained:
        assert rejection(family, spec, board, Limits(sram_budget(board), board.flash_bytes))[1] is None
    rejected = result.rejected
    assert rejected["total"] > 0 and rejected["flash"] > 0
    assert rejected["total"] == sum(rejected[r] for r in ("sram", "flash", "recompute", "latency",
                                                          "refused"))
    pareto = json.loads((tmp_path / "s" / "pareto.json").read_text())
    assert pareto["rejected"] == rejected
    assert all(row["feasible"] for row in pareto["pareto"])


def test_a_board_nothing_fits_is_a_search_error_naming_it(tmp_path, npz, monkeypatch):
    _tight_board(monkeypatch, sram=64 * 1024, flash=1000)
    monkeypatch.setattr(search, "draw_feasible", _with_max_draws(search.draw_feasible, 50))
    with pytest.raises(SearchError, match=r"no candidate .* fits lm3s6965evb.*50 draws"):
        run_search(_config(tmp_path / "s", npz, trials=1))


def _with_max_draws(draw, n):
    return lambda *a, **kw: draw(*a, max_draws=n, **kw)



def test_a_sampler_that_only_proposes_misfits_falls_back_to_uniform_draws():
    """TPE past its start-up trials can keep proposing candidates just over a budget: after
    `SAMPLER_DRAWS` rejections the screen draws uniformly, and finds the small ones."""
    import optuna

    from edgekit.nas.screen import SAMPLER_DRAWS, draw_feasible

    class Stubborn(optuna.samplers.BaseSampler):
        """Always the largest value: never fits."""

        def infer_relative_search_space(self, study, trial):
            return {}

        def sample_relative(self, study, trial, search_space):
            return {}

        def sample_independent(self, study, trial, name, distribution):
            return distribution.high

    class Toy:
        name = "toy"

        def sample(self, trial, space):
            return trial.suggest_int("width", 1, 100)

        def memory(self, width, board):
            return {"peak_sram": width * 1000, "flash": 0}

    class Board:
        id, flash_bytes = "toy-board", 1 << 20

    study = optuna.create_study(sampler=Stubborn())
    trial = study.ask()
    found = draw_feasible(trial, Stubborn(), Toy(), None, Board(),
                          Limits(sram=20_000, flash=Board.flash_bytes))
    assert found.spec <= 20 and trial.params == {"width": found.spec}
    assert found.rejected["sram"] >= SAMPLER_DRAWS


def test_the_latency_limit_trains_only_candidates_under_it(tmp_path, npz, monkeypatch):
    """``max_instructions``: a candidate whose estimated instructions (the kernel cost model)
    exceed the limit is rejected as ``latency`` before training, never trained."""
    board = load_board("lm3s6965evb")
    family = get_family("mcunet")
    # about the median estimate of this space's candidates on the board's core: about half of
    # the random draws are over it
    limit = 13_000_000
    trained = _trained_specs(monkeypatch, family)
    result = run_search(_config(tmp_path / "s", npz, trials=3, seed=1, max_instructions=limit))
    assert result.rejected["latency"] > 0
    limits = Limits(sram_budget(board), board.flash_bytes, max_instructions=limit)
    for spec in trained:
        memory, reason = rejection(family, spec, board, limits)
        assert reason is None and memory["instructions"] <= limit
    pareto = json.loads((tmp_path / "s" / "pareto.json").read_text())
    assert pareto["max_instructions"] == limit
    assert "latency" in pareto["constraints"]["binding"]
    assert 0 < pareto["constraints"]["chosen_instructions_fraction"] <= 1


def test_latency_rejection_names_the_limit():
    class Toy:
        def memory(self, spec, board, max_instructions=None):
            return {"peak_sram": 10, "flash": 10, "instructions": spec}

    class Board:
        id, flash_bytes = "toy-board", 1000

    limits = Limits(sram=100, flash=1000, max_instructions=5000)
    assert rejection(Toy(), 4999, Board(), limits)[1] is None
    assert rejection(Toy(), 5001, Board(), limits)[1] == "latency"
    assert Limits(sram=100, flash=1000).names() == ("sram", "flash", "mac_overhead")
    assert "5,000 estimated instructions" in limits.text()


def test_max_instructions_is_refused_where_no_estimate_exists(tmp_path):
    from edgekit.errors import UsageError

    with pytest.raises(UsageError, match="max-instructions.*mcunet space only"):
        SearchConfig(board="lm3s6965evb", dataset="x", out_dir=tmp_path, space="mcuformer",
                     max_instructions=1000)
    with pytest.raises(UsageError, match="max-instructions 0"):
        SearchConfig(board="lm3s6965evb", dataset="x", out_dir=tmp_path, max_instructions=0)


def test_the_latency_precheck_is_a_lower_bound_found_without_the_planner(monkeypatch):
    """A candidate over the instruction limit by its layer-by-layer estimate is rejected
    without planning; that estimate never exceeds the planned (patched) graph's."""
    import random

    import edgekit.nas.memory as nas_memory
    from edgekit.nas.evolution import decode, random_genome
    from edgekit.nas.mcunet import SearchSpace, sample

    board = load_board("nucleo-l4r5zi")
    family = get_family("mcunet")
    space = SearchSpace(in_channels=1, num_classes=10, resolutions=(48,), widths=(0.35,),
                        bits=(8,))
    rng = random.Random(5)
    patched = []
    while len(patched) < 3:
        spec = decode(sample, space, random_genome(sample, space, rng)[0])
        if spec.patch_split is not None:
            patched.append(spec)
    for spec in patched:
        planned = family.memory(spec, board)
        assert planned["planned"]
        bound = family.memory(spec, board, max_instructions=1)
        assert not bound["planned"] and 0 < bound["instructions"] <= planned["instructions"]
    monkeypatch.setattr(nas_memory, "firmware_memory",
                        lambda *a: pytest.fail("planned a candidate over the limit"))
    assert rejection(family, patched[0], board,
                     Limits(sram_budget(board), board.flash_bytes, max_instructions=1))[1] \
        == "latency"
