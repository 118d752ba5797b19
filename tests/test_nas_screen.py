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
from edgekit.nas.screen import rejection  # noqa: E402
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


def _config(out, npz, **kw):
    # int8 weights: the screen, not the bits, is under test (mixed would be the default on a
    # board whose flash binds)
    kw = {"resolutions": (32, 40), "widths": (0.25, 0.5, 0.75), "space_opt": False, "bits": "8",
          **kw}
    return SearchConfig(board="lm3s6965evb", dataset=str(npz), out_dir=out, proxy_steps=1,
                        train_limit=60, val_limit=10, final_epochs=0, test_limit=10, **kw)


def test_a_tight_board_trains_only_candidates_that_fit(tmp_path, npz, monkeypatch):
    # flash for about the smaller half of the space (flash estimates of random candidates at
    # 32/40 px: 80 KB to 850 KB, median 290 KB): random draws are rejected often
    board = _tight_board(monkeypatch, sram=64 * 1024, flash=290_000)
    family = get_family("mcunet")
    trained = []
    real_train = type(family).train

    def counting_train(self, spec, split, **kw):
        trained.append(spec)
        return real_train(self, spec, split, **kw)

    monkeypatch.setattr(type(family), "train", counting_train)
    result = run_search(_config(tmp_path / "s", npz, trials=4, seed=3))
    # 4 proxy trainings, one final training; every one of them fits the board
    assert result.trials_total == 4 and len(trained) == 5
    for spec in trained:
        assert rejection(family, spec, board, sram_budget(board), 1.0)[1] is None
    rejected = result.rejected
    assert rejected["total"] > 0 and rejected["flash"] > 0
    assert rejected["total"] == sum(rejected[r] for r in ("sram", "flash", "recompute", "refused"))
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
    found = draw_feasible(trial, Stubborn(), Toy(), None, Board(), sram=20_000,
                          max_mac_overhead=1.0)
    assert found.spec <= 20 and trial.params == {"width": found.spec}
    assert found.rejected["sram"] >= SAMPLER_DRAWS
