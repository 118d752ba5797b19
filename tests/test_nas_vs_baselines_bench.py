"""bench/nas_vs_baselines.py's hand-designed baselines: the widest CNN and MobileNetV2 it picks
for a board fit that board by the search's own screen, and a wider one would not (the bench
is hours long: a broken baseline choice must fail here, not at its end)."""

from __future__ import annotations


import pytest

from conftest import bench_module

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def bench():
    return bench_module("nas_vs_baselines")


@pytest.mark.parametrize("board_id", ["lm3s6965evb", "nucleo-l4r5zi"])
def test_the_chosen_mobilenet_fits_and_a_wider_one_does_not(bench, board_id):
    from edgekit.boards import load_board
    from edgekit.nas.mcunet import mobilenet_v2_spec
    from edgekit.nas.mcunet_family import FAMILY
    from edgekit.nas.screen import Limits, rejection
    from edgekit.nas.search import sram_budget

    board = load_board(board_id)
    spec = bench._widest_mobilenet(board, [32, 40, 48])
    assert spec is not None and spec.last_channels < 1280
    limits = Limits(sram_budget(board), board.flash_bytes)
    assert rejection(FAMILY, spec, board, limits)[1] is None
    if spec.width < 0.5:
        wider = mobilenet_v2_spec(0.5, spec.resolution, in_channels=1, num_classes=10)
        assert rejection(FAMILY, wider, board, limits)[1] is not None


def test_the_widest_cnn_fits_lm3s6965evb(bench):
    from edgekit.boards import load_board

    board = load_board("lm3s6965evb")
    factor = bench._widest_cnn(board, 4)
    assert 1 < factor <= 4 and bench._fits_graph(bench._cnn(factor), 28, board)
