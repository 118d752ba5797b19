"""The MCUFormer supernet (`edgekit.nas.mcuformer_supernet`): a sub-network taken out computes
what the supernet computes for it, its weights are the leading slices of the shared ones, the
MACs objective is the graph's count, and ``edgekit search --space mcuformer --strategy
supernet`` runs end to end."""

from __future__ import annotations

import random

import pytest

from nas_toy_data import write_toy_npz

torch = pytest.importorskip("torch")
pytest.importorskip("optuna")

from edgekit.cli import main  # noqa: E402
from edgekit.costs import graph_macs  # noqa: E402
from edgekit.nas.mcuformer import SearchSpace, sample, spec_macs  # noqa: E402
from edgekit.nas.mcuformer_ir import spec_int8_graph  # noqa: E402
from edgekit.nas.mcuformer_supernet import SuperFormer, largest_spec, smallest_spec  # noqa: E402

SPACE = SearchSpace(resolution_patches=((16, 4), (16, 8), (24, 8)), embed_dims=(16, 24, 32),
                    depths=(1, 2, 3), heads=(1, 2, 4), mlp_ratios=(1.0, 2.0),
                    rank_ratios=(0.5, 1.0))


def _specs(count: int = 6):
    rng = random.Random(1)
    return [largest_spec(SPACE), smallest_spec(SPACE)] + [sample(rng, SPACE)
                                                          for _ in range(count)]


def test_a_subnetwork_computes_what_the_supernet_computes_for_it():
    torch.manual_seed(0)
    net = SuperFormer(SPACE).eval()
    for spec in _specs():
        x = torch.rand(3, 1, spec.resolution, spec.resolution)
        with torch.no_grad():
            want, got = net(x, spec), net.subnet(spec)(x)
        assert want.shape == (3, SPACE.num_classes)
        assert torch.allclose(want, got, atol=1e-5), spec


def test_largest_and_smallest_bound_the_space():
    big, small = largest_spec(SPACE), smallest_spec(SPACE)
    assert (big.tokens, big.embed_dim, big.depth, big.hidden) == (16, 32, 3, 64)
    assert (small.tokens, small.embed_dim, small.depth, small.hidden) == (4, 16, 1, 16)
    macs = [spec_macs(s) for s in _specs(20)]
    assert min(macs) == spec_macs(small) and max(macs) <= spec_macs(big)


def test_a_subnetwork_inherits_the_leading_slices():
    net = SuperFormer(SPACE)
    widest_rank = net.blocks[0].fc1_u.out_features
    spec = next(s for s in _specs(20) if s.embed_dim < 32 and s.rank < widest_rank)
    model = net.subnet(spec)
    d, shared, plain = spec.embed_dim, net.blocks[0], model.blocks[0]
    assert torch.equal(plain.q.weight, shared.q.weight[:d, :d])
    assert torch.equal(plain.fc1.u.weight, shared.fc1_u.weight[:spec.rank, :d])
    assert torch.equal(plain.fc2.v.bias, shared.fc2_v.bias[:d])
    assert torch.equal(model.head.weight, net.head.weight[:, :d])


def test_spec_macs_is_the_graphs_count():
    for spec in _specs():
        assert spec_macs(spec) == graph_macs(spec_int8_graph(spec)), spec


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    return write_toy_npz(tmp_path_factory.mktemp("data") / "toy.npz")


def test_cli_mcuformer_supernet_search_writes_a_model(tmp_path, npz, capsys):
    out = tmp_path / "f"
    code = main(["search", "--space", "mcuformer", "--strategy", "supernet", "--board",
                 "mps2-an386", "--dataset", str(npz), "--trials", "6", "--supernet-steps", "3",
                 "--train-limit", "60", "--final-epochs", "0", "--proxy-steps", "2",
                 "--test-limit", "10", "--threads", "1", "--resolutions", "16", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "6 trials run" in captured.out
    assert "supernet: trained" in captured.err and "sub-networks evaluated" in captured.err
    assert (out / "best" / "model.tflite").exists() and (out / "supernet.pt").exists()
