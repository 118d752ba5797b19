"""Search-space optimisation (`edgekit.nas.space_opt`): the MAC count is the graph's, and the
choice is the (resolution, width) whose fitting sub-networks have the most MACs."""

from __future__ import annotations

import random

from edgekit.boards import load_board
from edgekit.costs import graph_macs
from edgekit.nas.graph import graph_from_spec
from edgekit.nas.mcunet import SearchSpace, sample
from edgekit.nas.search import sram_budget
from edgekit.nas.space_opt import optimise_space, spec_macs

SPACE = SearchSpace(resolutions=(32, 48), widths=(0.25, 0.5))


def test_spec_macs_is_the_graph_count():
    rng = random.Random(4)
    for _ in range(3):
        spec = sample(rng, SearchSpace())
        assert spec_macs(spec) == graph_macs(graph_from_spec(spec))


def _choose(fits):
    board = load_board("lm3s6965evb")
    return optimise_space(SPACE, board, sram=sram_budget(board), samples=40, seed=0,
                          fits=lambda spec, _board, _sram: fits(spec))


def test_the_choice_with_the_most_feasible_macs_wins():
    # everything fits: the largest corner has the most compute
    space, record = _choose(lambda spec: True)
    assert record["chosen"] == {"resolution": 48, "width": 0.5}
    assert (space.resolutions, space.widths) == ((48,), (0.5,))
    # only small models fit: the big corners keep their few small ones (fewer MACs than the
    # small corners' fitting models), or none
    limit = 700_000
    space, record = _choose(lambda spec: spec_macs(spec) <= limit)
    options = {(o["resolution"], o["width"]): o for o in record["options"]}
    assert record["chosen"] == max(
        ({"resolution": r, "width": w} for (r, w), o in options.items()
         if o["fit_fraction"] >= record["min_fit_fraction"]),
        key=lambda c: options[(c["resolution"], c["width"])]["mean_macs"])
    assert options[(48, 0.5)]["fit_fraction"] < options[(32, 0.25)]["fit_fraction"]
    assert record["chosen"] != {"resolution": 48, "width": 0.5}
    assert "highest mean MACs" in record["why"]


def test_nothing_fits_leaves_the_space_whole():
    space, record = _choose(lambda spec: False)
    assert space == SPACE and record["chosen"] is None
