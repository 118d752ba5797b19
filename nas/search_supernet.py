"""``edgekit search --strategy supernet`` (mcunet and mcuformer spaces): train one
weight-sharing supernet (the family's: `edgekit.nas.supernet`,
`edgekit.nas.mcuformer_supernet`), then evolve its sub-networks (`edgekit.nas.evolution`),
each evaluated with inherited weights (BatchNorm recalibrated, for the CNNs) on the validation
images.

- The supernet is trained for ``SearchConfig.supernet_steps`` sandwich steps and checkpointed
  atomically to ``DIR/supernet.pt`` (weights, optimiser, step) every `CHECKPOINT_EVERY` steps:
  a killed search resumed with ``--resume`` continues from the last checkpoint, and a trained
  supernet is never trained again.
- Every evaluated sub-network is one COMPLETE trial of the study (``edgekit-SPACE-supernet``,
  the same storage as the proxy search's, values: accuracy, peak SRAM, MACs), written as it
  ends, so a resumed search keeps every finished evaluation. ``--trials`` counts evaluations.
- Each generation's evaluations run on ``--threads`` worker processes (`Evolution`), with the
  same trials as one process would record; the screen plans with the planner's faster
  multi-order placement (`edgekit.nas.memory.SCREEN_STRATEGY`, an upper bound of the build's
  arena, equal on the candidates tested).
- Only feasible sub-networks are evaluated: each draw (random, or a child of two parents) is
  screened first with the same check as the proxy search (`edgekit.nas.screen.rejection`: the
  planner's peak SRAM, flash, recomputation); rejected draws are counted per reason on the
  trial that follows them. Duplicates of evaluated genomes are redrawn without counting.
- The first `POPULATION` evaluations are uniform random feasible sub-networks; each later
  generation of `POPULATION` children comes from parents chosen by NSGA-II selection over
  every earlier evaluation (accuracy, peak SRAM and MACs including the patches' recomputation).
  Every draw is seeded by (seed, evaluation number), so a resumed search draws what the
  uninterrupted one would.
- The winner (highest accuracy on the Pareto front) is fine-tuned from its inherited weights
  by the proxy search's final training, converted and written to ``DIR/best/`` by the same code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import random
import time
from pathlib import Path

import torch

from edgekit.atomic import atomic_writer
from edgekit.errors import SearchError
from edgekit.nas.evolution import crossover, decode, mutate, random_genome, select

CHECKPOINT = "supernet.pt"
CHECKPOINT_EVERY = 25
#: the population of the evolution (and the number of random evaluations it starts from)
POPULATION = 24
MUTATION_RATE = 0.15
#: training images whose statistics replace a sub-network's BatchNorm statistics
RECALIBRATION_IMAGES = 256
#: rejected draws before the space is declared to hold nothing that fits
MAX_DRAWS = 10_000


def checkpoint_key(config, space) -> str:
    """What a checkpoint must have been trained for to be continued."""
    return json.dumps({"space": repr(space), "seed": config.seed, "steps": config.supernet_steps,
                       "batch_size": config.batch_size, "train_limit": config.train_limit})


def trained_supernet(config, family, space, train, progress=None, log=print):
    """``family``'s supernet of ``space``, trained (or its training continued from
    ``DIR/supernet.pt`` when ``config.resume``) to ``config.supernet_steps`` steps."""
    from edgekit.nas.supernet import train_steps

    torch.manual_seed(config.seed)
    net = family.supernet(space)
    opt = torch.optim.Adam(net.parameters(), lr=net.learning_rate)
    path = Path(config.out_dir) / CHECKPOINT
    key, step = checkpoint_key(config, space), 0
    if config.resume and path.exists():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many kinds for a damaged file
            raise SearchError(f"supernet checkpoint {str(path)!r} cannot be read ({err});"
                              " remove it to train the supernet again") from None
        if saved.get("key") != key:
            raise SearchError(f"supernet checkpoint {str(path)!r} was trained with other"
                              " settings (space, seed, supernet steps, batch size or train"
                              " limit); use the same ones or another -o DIR")
        net.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        step = int(saved["step"])
    total = config.supernet_steps
    if step < total:
        log(f"supernet: training steps {step}..{total} (sandwich rule, 4 sub-networks a step)")
        bar = progress(total=total - step, desc="supernet steps") if progress else None

        def save(done: int):
            if bar:
                bar.update(1)
            if done % CHECKPOINT_EVERY == 0 or done == total:
                with atomic_writer(path) as f:
                    torch.save({"key": key, "step": done, "model": net.state_dict(),
                                "opt": opt.state_dict()}, f)

        start = time.monotonic()
        try:
            train_steps(net, opt, train.images, train.labels, start=step, stop=total,
                        total=total, batch_size=config.batch_size, seed=config.seed,
                        lr=net.learning_rate, on_step=save)
        finally:
            if bar:
                bar.close()
        log(f"supernet: trained in {time.monotonic() - start:.0f} s")
    else:
        log(f"supernet: {total} steps already trained ({path})")
    return net.eval()


@dataclasses.dataclass
class Evaluated:
    """One evaluated sub-network: evaluation ``number``'s draw and its accuracy."""

    number: int
    genome: dict
    spec: object
    memory: dict
    rejected: dict
    screen_seconds: float
    accuracy: float
    options: dict


def genome_key(genome: dict) -> str:
    return json.dumps(genome, sort_keys=True)


def genome_hash(genome: dict) -> str:
    """A short name of a genome (what the workers are sent of the evaluated ones)."""
    return hashlib.blake2b(genome_key(genome).encode(), digest_size=8).hexdigest()


class Evaluator:
    """Draws and evaluates sub-networks, in the search's process or in a worker's: what the
    evaluation of number n gives depends on (seed, n, its generation's parents, the genomes
    evaluated before) alone, never on the process that ran it."""

    def __init__(self, config, space, board, net, calib_images, val):
        from edgekit.nas.family import get_family
        from edgekit.nas.screen import Limits

        self.config, self.space, self.board = config, space, board
        self.family = get_family(config.space)
        self.net, self.calib_images, self.val = net, calib_images, val
        self.limits = Limits.of(config, board)

    def evaluate(self, number: int, parents: list[dict], seen: frozenset[str],
                 options: dict) -> Evaluated:
        """Evaluation ``number``: the first feasible draw of its stream whose `genome_hash` is
        not in ``seen``, and its accuracy with inherited weights."""
        began = time.monotonic()
        genome, spec, memory, rejected, options = self._draw(number, parents, seen, options)
        screened = time.monotonic() - began
        return Evaluated(number, genome, spec, memory, rejected, round(screened, 3),
                         self._accuracy(spec), options)

    def _draw(self, number: int, parents: list[dict], seen: frozenset[str], options: dict):
        from edgekit.nas.screen import REASONS, rejection

        sample = self.family.sample

        rng = random.Random(f"{self.config.seed}/evolve/{number}")
        rejected = dict.fromkeys(REASONS, 0)
        options = dict(options)
        for _ in range(MAX_DRAWS):
            genome, drawn = random_genome(sample, self.space, rng)
            options.update(drawn)
            if parents:
                a, b = rng.sample(parents, 2)
                genome = mutate(crossover(a, b, rng), options, rng, MUTATION_RATE)
            if genome_hash(genome) in seen:
                continue
            spec = decode(sample, self.space, genome)
            memory, reason = rejection(self.family, spec, self.board, self.limits)
            if reason is None:
                return genome, spec, memory, {r: n for r, n in rejected.items() if n}, options
            rejected[reason] += 1
        raise SearchError(
            f"no sub-network of the {self.config.space} space fits {self.board.id}"
            f" ({self.limits.text()})"
            f" after {MAX_DRAWS} draws"
            f" ({rejected}); widen the space (--resolutions, --widths) or choose a larger board")

    def _accuracy(self, spec) -> float:
        from edgekit.nas.train import to_input

        model = self.net.subnet(spec, to_input(self.calib_images, spec.resolution))
        return self.family.float_accuracy(model, spec, self.val)


#: the evaluator of a worker process (`_start_worker`)
_WORKER: Evaluator | None = None


def _start_worker(config, space, board, weights: dict, calib_images, val) -> None:
    from edgekit.nas.family import get_family

    global _WORKER
    torch.set_num_threads(1)
    net = get_family(config.space).supernet(space)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    _WORKER = Evaluator(config, space, board, net.eval(), calib_images, val)


def _evaluate_in_worker(task) -> Evaluated:
    return _WORKER.evaluate(*task)


class Evolution:
    """Evaluations recorded as trials of ``study`` until it holds ``config.trials``.

    A generation's evaluations run in parallel on ``config.threads`` worker processes (one
    torch thread each), every one drawn against the genomes evaluated before the generation
    (plus those of it a resumed search already holds); results are recorded in order, and one
    that repeats a genome evaluated earlier in its generation is drawn again here, against
    all of them: the trials are those of one process evaluating in order, whatever the number
    of workers (tests/test_nas_supernet.py)."""

    def __init__(self, config, family, space, board, study, net, train, val, log=print):
        self.config, self.family, self.space, self.board = config, family, space, board
        self.study, self.net, self.val, self.log = study, net, val, log
        self.calib_images = train.images[:RECALIBRATION_IMAGES]
        self.evaluator = Evaluator(config, space, board, net, self.calib_images, val)
        self.options: dict = {}
        self.parents: dict[int, list[dict]] = {}

    def _done(self):
        import optuna

        return self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))

    def run(self, bar=None) -> tuple[set[int], bool]:
        """Evaluate until the study holds ``config.trials`` sub-networks or the time budget
        ends; (the trial numbers added, whether time ran out)."""
        start, mine = time.monotonic(), set()
        done = self._done()
        genomes = [dict(t.params) for t in done]
        points = [self._point(t.values) for t in done]
        for t in done:
            self.options.update({k: tuple(d.choices) for k, d in t.distributions.items()})
        seen = {genome_hash(g) for g in genomes}
        totals = {"screened": 0, "rejected": 0}
        timed_out = False
        threads = torch.get_num_threads()
        # one torch thread per evaluation wherever it runs: the same arithmetic, the same scores
        torch.set_num_threads(1)
        with self._pool() as pool:
            while len(genomes) < self.config.trials and not timed_out:
                number = len(genomes)
                end = min(self.config.trials, (number // POPULATION + 1) * POPULATION)
                parents = self._parents(number, genomes, points)
                before = frozenset(seen)
                tasks = [(n, parents, before, self.options) for n in range(number, end)]
                for result in (pool.imap(_evaluate_in_worker, tasks) if pool
                               else map(lambda task: self.evaluator.evaluate(*task), tasks)):
                    if genome_hash(result.genome) in seen:  # evaluated earlier in the generation
                        result = self.evaluator.evaluate(result.number, parents, frozenset(seen),
                                                         self.options)
                    self.options.update(result.options)
                    trial = self._record(result)
                    genomes.append(result.genome)
                    points.append(self._point(trial.values))
                    seen.add(genome_hash(result.genome))
                    mine.add(trial.number)
                    totals["screened"] += 1 + sum(result.rejected.values())
                    totals["rejected"] += sum(result.rejected.values())
                    if bar:
                        bar.update(1)
                        bar.set_postfix_str(
                            f"screened {totals['screened']}, rejected {totals['rejected']},"
                            f" best {max(-p[0] for p in points):.3f}")
                    if (self.config.time_budget is not None
                            and time.monotonic() - start >= self.config.time_budget):
                        timed_out = True
                        break
        torch.set_num_threads(threads)
        self.log(f"evolution: {len(mine)} sub-networks evaluated here ({len(genomes)} in the"
                 f" study) on {self.workers} worker(s) in {time.monotonic() - start:.0f} s;"
                 f" {totals['screened']} screened, {totals['rejected']} rejected before"
                 " evaluation" + (" (the time budget ran out)" if timed_out else ""))
        return mine, timed_out

    @property
    def workers(self) -> int:
        return max(1, int(self.config.threads))

    @contextlib.contextmanager
    def _pool(self):
        """Worker processes for the evaluations (None with one worker: evaluate here)."""
        if self.workers == 1 or len(self._done()) >= self.config.trials:
            yield None
            return
        import multiprocessing

        # spawn: a fork would copy torch's thread pools, which may hang in the child
        weights = {k: v.detach().numpy() for k, v in self.net.state_dict().items()}
        with multiprocessing.get_context("spawn").Pool(
                self.workers, _start_worker,
                (self.config, self.space, self.board, weights, self.calib_images,
                 self.val)) as pool:
            yield pool

    @staticmethod
    def _point(values) -> tuple[float, float, float]:
        return (-values[0], values[1], values[2])  # every objective minimised

    def _parents(self, number: int, genomes: list[dict], points: list) -> list[dict]:
        """The parents of evaluation ``number``'s generation: NSGA-II's selection of every
        evaluation before the generation began ([] in the random first generation)."""
        generation = number // POPULATION
        if generation == 0:
            return []
        if generation not in self.parents:
            before = generation * POPULATION
            self.parents[generation] = [genomes[i]
                                        for i in select(points[:before], POPULATION)]
        return self.parents[generation]

    def _record(self, result: Evaluated):
        import optuna
        from optuna.distributions import CategoricalDistribution

        from edgekit.nas.screen import violations

        memory, spec = result.memory, result.spec
        overhead = float(memory.get("mac_overhead", 0.0))
        macs = self.family.macs(spec) * (1 + overhead)
        peak = int(memory["peak_sram"])
        constraints = violations(memory, self.evaluator.limits)
        trial = optuna.trial.create_trial(
            params=result.genome, values=[result.accuracy, float(peak), float(macs)],
            distributions={k: CategoricalDistribution(list(self.options[k]))
                           for k in result.genome},
            user_attrs={"spec": spec.to_dict(), "peak_sram": peak, "peak_planned":
                        bool(memory["planned"]), "flash": int(memory["flash"]),
                        "mac_overhead": round(overhead, 4), "macs": int(macs),
                        "constraints": constraints, "rejected": result.rejected,
                        "trained": False, "evaluated": "supernet", "slot": result.number,
                        "screen_seconds": result.screen_seconds},
            system_attrs={"constraints": constraints})
        self.study.add_trial(trial)
        return self.study.get_trials(deepcopy=False)[-1]


def run_supernet(config, family, space, board, study, data, train, val, *, progress=None,
                 space_choice: dict, log=None):
    """The supernet strategy of `edgekit.nas.search.run_search`, from the opened study to the
    `SearchResult` (outputs written by `edgekit.nas.search._write_outputs`)."""
    import sys

    import optuna

    from edgekit.nas.search import SearchResult, _not_written, _rejected, _write_outputs
    from edgekit.nas.search_study import counts

    log = log or (lambda text: print(text, file=sys.stderr))
    torch.set_num_threads(config.threads)
    complete_at_start = counts(study).finished >= config.trials
    net = trained_supernet(config, family, space, train, progress, log)
    evolution = Evolution(config, family, space, board, study, net, train, val, log)
    missing = max(0, config.trials - counts(study).finished)
    bar = progress(total=missing, desc="sub-networks") if progress and missing else None
    try:
        mine, timed_out = evolution.run(bar)
    finally:
        if bar:
            bar.close()
    not_written = _not_written(study, config, mine, timed_out, complete_at_start)
    if not_written:
        return SearchResult(trials_run=len(mine), trials_total=counts(study).finished,
                            pareto=[], best=None, out_dir=config.out_dir,
                            best_dir=config.out_dir / "best", not_written=not_written,
                            rejected=_rejected(optuna, study), space_choice=space_choice)
    from edgekit.nas.train import to_input

    def inherited(spec):
        return net.subnet(spec, to_input(evolution.calib_images, spec.resolution))

    return _write_outputs(optuna, study, config, family, data, train, board, config.out_dir,
                          trials_run=len(mine), space_choice=space_choice,
                          start_model=inherited)
