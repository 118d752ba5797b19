"""``--scale paper``: the MCUFormer and EmbBERT-Q spaces at their papers' sizes, where the
boards' budgets bind, and the search's account of which budget rejected how many candidates."""

from __future__ import annotations

import random

import numpy as np
import pytest

from edgekit.boards import load_board
from edgekit.errors import UsageError
from edgekit.nas.datasets import Dataset, Split
from edgekit.nas.family import get_family
from edgekit.nas.search import SearchConfig, sram_budget
from edgekit.nas.screen import Limits
from edgekit.nas.search_constraints import constraint_summary, describe


def _images():
    images = Split(np.zeros((4, 28, 28, 1), np.float32), np.zeros(4, np.int64))
    return Dataset("img", images, images, 10)


def test_scale_must_be_known(tmp_path):
    with pytest.raises(UsageError, match="scale"):
        SearchConfig(board="disco-f746ng", dataset="x", out_dir=tmp_path, scale="huge")


def test_paper_mcuformer_space_reaches_196_tokens_and_more(tmp_path):
    from edgekit.nas.mcuformer import sample

    family = get_family("mcuformer")
    config = SearchConfig(board="disco-f746ng", dataset="x", out_dir=tmp_path,
                          space="mcuformer", scale="paper")
    space = family.space(_images(), config)
    default = family.space(_images(), None)
    tokens = {(r // p) ** 2 for r, p in space.resolution_patches}
    assert 196 in tokens and max(tokens) > 196
    assert max((r // p) ** 2 for r, p in default.resolution_patches) < 196
    assert max(space.embed_dims) > max(default.embed_dims)
    specs = [sample(random.Random(seed), space) for seed in range(40)]
    assert any(s.tokens >= 196 for s in specs)
    # --resolutions still narrows the pairs; the sizes stay the paper's
    config.resolutions = (56,)
    narrowed = family.space(_images(), config)
    assert {r for r, _ in narrowed.resolution_patches} == {56}
    assert narrowed.embed_dims == space.embed_dims


@pytest.mark.parametrize("board_id", ["disco-f746ng", "nucleo-l4r5zi"])
def test_paper_mcuformer_space_has_candidates_over_the_boards_sram(board_id, tmp_path):
    """The largest paper-scale candidate (784 tokens) does not fit; a 196-token one does."""
    from edgekit.nas.mcuformer import MCUFormerSpec
    from edgekit.nas.mcuformer_ir import memory

    board = load_board(board_id)
    common = dict(in_channels=1, num_classes=10, heads=4, mlp_ratio=4.0, rank_ratio=0.5)
    big = MCUFormerSpec(resolution=112, patch=4, embed_dim=192, depth=2, **common)
    fits = MCUFormerSpec(resolution=56, patch=4, embed_dim=96, depth=2, **common)
    assert memory(big, board)["peak_sram"] > sram_budget(board)
    assert memory(fits, board)["peak_sram"] <= sram_budget(board)


def test_paper_embbert_space_reaches_the_papers_size():
    from edgekit.nas.embbert import PAPER_SIZES, PAPER_SPEC, EmbBERTSpec, EmbBERTSpace

    space = EmbBERTSpace(num_classes=4, **PAPER_SIZES)
    largest = EmbBERTSpec(vocab_size=max(space.vocab_sizes), embed_dim=max(space.embed_dims),
                          hidden=max(space.hiddens), layers=max(space.layers),
                          kernel=max(space.kernels), seq_len=max(space.seq_lens), num_classes=4)
    assert largest.weight_count() > 781_000
    assert EmbBERTSpec(**PAPER_SPEC, num_classes=4).weight_count() > 700_000
    assert EmbBERTSpec(**PAPER_SPEC, num_classes=4).to_dict()["vocab_size"] in space.vocab_sizes


def test_constraint_summary_names_the_budgets_that_rejected_candidates():
    rejected = {"sram": 2, "flash": 1, "recompute": 0, "refused": 3, "total": 6}
    summary = constraint_summary(rejected, {"peak_sram": 150, "flash": 50}, Limits(200, 100))
    assert summary["binding"] == ["sram", "flash"]
    assert summary["chosen_sram_fraction"] == 0.75 and summary["chosen_flash_fraction"] == 0.5
    assert describe(summary).startswith("bound by sram, flash; the chosen model takes 75%")
    none = constraint_summary({"sram": 0, "flash": 0, "recompute": 0, "refused": 2}, None,
                              Limits(200, 100))
    assert none["binding"] == [] and "no budget rejected" in describe(none)
