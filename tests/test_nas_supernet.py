"""The weight-sharing supernet and ``edgekit search --strategy supernet``: a sub-network taken
out of the supernet computes what the supernet computes for it, NSGA-II selection keeps the
non-dominated points, and a search killed during the supernet's training or its evolution
resumes from the checkpoint and keeps every finished evaluation."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest

from nas_toy_data import write_toy_npz

torch = pytest.importorskip("torch")
pytest.importorskip("optuna")

from edgekit.cli import main  # noqa: E402
from edgekit.nas import search_supernet, supernet as supernet_mod  # noqa: E402
from edgekit.nas.evolution import decode, random_genome, select  # noqa: E402
from edgekit.nas.mcunet import SearchSpace, largest_spec, sample  # noqa: E402
from edgekit.nas.search import SearchConfig, run_search  # noqa: E402
from edgekit.nas.supernet import SuperNet, smallest_spec, subnet  # noqa: E402

SPACE = SearchSpace(resolutions=(32, 40), widths=(0.25, 0.35))


def test_a_subnetwork_computes_what_the_supernet_computes_for_it():
    torch.manual_seed(0)
    net = SuperNet(SPACE).eval()
    x = {r: torch.rand(3, 1, r, r) for r in SPACE.resolutions}
    rng = random.Random(0)
    for spec in [largest_spec(SPACE), smallest_spec(SPACE)] + [sample(rng, SPACE)
                                                                for _ in range(4)]:
        with torch.no_grad():
            want = net(x[spec.resolution], spec)
            got = subnet(net, spec)(x[spec.resolution])
        assert torch.allclose(want, got, atol=1e-5), spec


def test_smaller_kernels_are_the_centre_of_the_shared_kernel():
    net = SuperNet(SPACE)
    dw = net.stages[1][0].dw
    assert dw.weight.shape[-1] == 7
    assert torch.equal(dw.sliced(8, 8, 3), dw.weight[:8, :, 2:5, 2:5])
    assert torch.equal(dw.sliced(8, 8, 5), dw.weight[:8, :, 1:6, 1:6])


def test_recalibration_replaces_the_shared_batchnorm_statistics():
    net = SuperNet(SPACE).eval()
    spec = smallest_spec(SPACE)
    calib = torch.rand(16, 1, spec.resolution, spec.resolution) * 5
    plain, recal = subnet(net, spec), subnet(net, spec, calib)
    bn_plain, bn_recal = (next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
                          for model in (plain, recal))
    assert torch.equal(bn_plain.running_mean, torch.zeros_like(bn_plain.running_mean))
    assert not torch.allclose(bn_recal.running_mean, bn_plain.running_mean)


def test_nsga_selection_takes_the_first_front_first_then_the_spread():
    points = [(0, 5), (5, 0), (1, 1), (2, 2), (3, 3), (0.5, 4)]  # minimised
    assert set(select(points, 4)) == {0, 1, 2, 5}  # the first front: nothing dominates them
    assert set(select(points, 5)) == {0, 1, 2, 5, 3}
    # a front larger than the room left: its extremes (infinite crowding distance) stay
    assert {0, 1} <= set(select(points, 2))


def test_a_genome_decodes_to_the_spec_it_was_drawn_as():
    genome, options = random_genome(sample, SPACE, random.Random(3))
    assert decode(sample, SPACE, genome) == sample(random.Random(3), SPACE)
    assert set(genome) == set(options)


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    """A small random 3-class dataset of 8x8 grey images."""
    return write_toy_npz(tmp_path_factory.mktemp("data") / "toy.npz")


def _config(out, npz, **kw):
    settings = dict(board="mps2-an386", dataset=str(npz), out_dir=out, strategy="supernet",
                    supernet_steps=4, train_limit=60, val_limit=10, final_epochs=0,
                    proxy_steps=2, test_limit=10, batch_size=16, threads=1,
                    resolutions=(32,), widths=(0.25,), space_samples=20)
    return SearchConfig(**{**settings, **kw})


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs."""


@pytest.mark.slow  # ~45 s on 2 shared cores
def test_kill_and_resume_keep_the_checkpoint_and_every_evaluation(tmp_path, npz, monkeypatch):
    out = tmp_path / "s"
    monkeypatch.setattr(search_supernet, "CHECKPOINT_EVERY", 2)
    trained = []
    real_steps = supernet_mod.train_steps

    def steps(*args, start, stop, on_step, **kw):
        trained.append((start, stop))

        def step(done):
            on_step(done)
            if done == 3 and len(trained) == 1:
                raise Killed  # after the checkpoint of step 2
        return real_steps(*args, start=start, stop=stop, on_step=step, **kw)

    monkeypatch.setattr(supernet_mod, "train_steps", steps)
    with pytest.raises(Killed):
        run_search(_config(out, npz, trials=6))
    assert (out / "supernet.pt").exists() and not (out / "best").exists()

    # killed again during the evolution, after 3 evaluations
    real_accuracy = search_supernet.Evaluator._accuracy
    calls = []

    def accuracy(self, spec):
        calls.append(spec)
        if len(calls) == 4:
            raise Killed
        return real_accuracy(self, spec)

    monkeypatch.setattr(search_supernet.Evaluator, "_accuracy", accuracy)
    with pytest.raises(Killed):
        run_search(_config(out, npz, trials=6, resume=True))
    assert trained == [(0, 4), (2, 4)]  # resumed from the step-2 checkpoint
    import optuna

    study = optuna.load_study(study_name="edgekit-mcunet-supernet",
                              storage=f"sqlite:///{out / 'search.db'}")
    first = [(t.params, t.values) for t in study.trials]
    assert len(first) == 3

    monkeypatch.setattr(search_supernet.Evaluator, "_accuracy", real_accuracy)
    result = run_search(_config(out, npz, trials=6, resume=True))
    assert trained == [(0, 4), (2, 4)]  # the trained supernet is not trained again
    study = optuna.load_study(study_name="edgekit-mcunet-supernet",
                              storage=f"sqlite:///{out / 'search.db'}")
    assert [(t.params, t.values) for t in study.trials][:3] == first
    assert len(study.trials) == 6 and result.trials_run == 3
    assert all(len(t.values) == 3 for t in study.trials)  # accuracy, peak SRAM, MACs
    report = json.loads((out / "best" / "report.json").read_text())
    assert report["fits"] and report["space"] == "mcunet"


@pytest.mark.slow  # ~40 s on 2 shared cores (two worker processes start)
def test_workers_evaluate_what_one_process_evaluates(tmp_path, npz, monkeypatch):
    """Three generations on two worker processes hold the trials of one process, in order:
    the draws depend on (seed, number, parents, earlier genomes) alone."""
    import optuna

    import shutil

    monkeypatch.setattr(search_supernet, "POPULATION", 4)
    trials = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        if workers == 2:  # the same supernet (torch's threads change the training's sums)
            out.mkdir()
            shutil.copy(tmp_path / "w1" / search_supernet.CHECKPOINT, out)
        run_search(_config(out, npz, trials=11, threads=workers, supernet_steps=2,
                           resume=workers == 2))
        study = optuna.load_study(study_name="edgekit-mcunet-supernet",
                                  storage=f"sqlite:///{out / 'search.db'}")
        trials[workers] = [(t.params, t.values, t.user_attrs["rejected"]) for t in study.trials]
    assert len(trials[1]) == 11 and trials[2] == trials[1]
    assert len({json.dumps(p, sort_keys=True) for p, _, _ in trials[1]}) == 11


def test_cli_supernet_strategy_reports_the_screening(tmp_path, npz, capsys):
    out = tmp_path / "c"
    code = main(["search", "--strategy", "supernet", "--board", "mps2-an386", "--dataset",
                 str(npz), "--trials", "4", "--supernet-steps", "2", "--train-limit", "60",
                 "--final-epochs", "0", "--proxy-steps", "2", "--test-limit", "10", "--threads", "1",
                 "--resolutions", "32", "--widths", "0.25", "--space-samples", "20",
                 "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0
    assert "4 trials run" in captured.out and "rejected" in captured.out
    assert "sub-networks evaluated" in captured.err and "screened" in captured.err
    assert (out / "best" / "model.tflite").exists()


def test_supernet_strategy_is_refused_for_spaces_without_one(tmp_path, npz, capsys):
    code = main(["search", "--strategy", "supernet", "--space", "embbert", "--board",
                 "mps2-an386", "--dataset", str(npz), "-o", str(tmp_path / "x")])
    assert code != 0
    assert "supernet" in capsys.readouterr().err
