"""The search driver: Optuna multi-objective search of one model family under a board's budgets.

``SearchConfig.space`` names the family (`edgekit.nas.family`: ``mcunet``, the default,
``mcuformer``, ``embbert``); the driver only talks to it through the `Family` interface.
Objectives: maximise the proxy accuracy (short training) and minimise the peak SRAM (the
planner's arena, patch schedule included). Constraints (``Trial.set_constraint``, feasible
when <= 0): arena + the firmware's stack and static data <= the board's SRAM
(`sram_budget`), and predicted flash <= the board's flash, and a patch schedule's recomputed
MACs <= ``max_mac_overhead`` of the layer-by-layer MACs (0 for families without patches), and
(mcunet, with ``max_instructions``) the fastest plan's estimated instructions per inference
(`edgekit.kernel_costs`) <= ``max_instructions``: the latency constraint. A
candidate whose memory figures break a budget is recorded with accuracy 0 and never trained.
For mcunet, a candidate whose fast memory figure (`peak_sram_bound`: exact without a patch, a
lower bound with one) or flash already breaks a budget is not even planned; every candidate
that is trained was planned by the real planner first, so every peak SRAM in the Pareto front
of trained candidates is the planner's.

Storage: ``sqlite:///DIR/search.db`` by default, or any Optuna RDB URL (``storage``), which
several workers may share (`edgekit.nas.search_study`: what a worker runs, what happens to the
trials of a killed one, and which worker writes the outputs). ``trials`` is the number of
finished trials the study should hold, not the number to run now: a resumed search, or a
second worker, runs only what is missing. Each trial is committed as it ends, so a killed
search loses no finished trial. Outputs (each written to a temporary name, then renamed):
``DIR/pareto.json`` (the feasible trials no other beats in accuracy, peak SRAM and flash:
`PARETO_OBJECTIVES`), ``DIR/pareto.png``, and ``DIR/best/`` with ``model.tflite`` (int8, the
chosen model after its final training), ``spec.json``, ``patch.json`` (the patch schedule;
``{"split": null, "n": 1}``, layer by layer, for families without one) and ``report.json``,
so `edgekit build DIR/best` builds the model of any family.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgekit.boards import load_board
import numpy as np

from edgekit.atomic import atomic_directory, atomic_write_text, atomic_writer
from edgekit.errors import EdgekitError, SearchError, UsageError
from edgekit.nas.datasets import Dataset, Split, load_dataset
from edgekit.nas.family import Family, check_space, get_family
from edgekit.nas.screen import Limits, draw_feasible, rejected_totals, violations
from edgekit.nas.search_constraints import constraint_summary
from edgekit.nas.search_study import (DRAWN_ATTR, HEARTBEAT_SECONDS, GRACE_HEARTBEATS, counts,
                                      fail_lost_trials, finished_states, last_trial,
                                      open_storage, record_settings, slot_of, slot_seed,
                                      this_worker)

#: the study of the mcunet space (a family's study is ``edgekit-<space>``)
STUDY_NAME = "edgekit-mcunet"
#: training images the quantizer calibrates on
CALIBRATION_COUNT = 64
#: SRAM the firmware needs besides the arena: its stack reservation and a little static data
FIRMWARE_STACK_BYTES = 4 * 1024
FIRMWARE_DATA_BYTES = 64


#: `SearchConfig.scale` values
SCALES = ("default", "paper")
#: `SearchConfig.strategy` values
STRATEGIES = ("proxy", "supernet")
#: the spaces whose family has a weight-sharing supernet (`Family.supernet`)
SUPERNET_SPACES = ("mcunet", "mcuformer")
#: the strategy a search takes when none is given: the supernet where it beat the proxy search
#: and the hand-designed baselines (mcunet: bench/nas_vs_baselines.py), else the proxy one
#: (mcuformer's supernet ranked below its proxy search; embbert has no supernet)
DEFAULT_STRATEGY = {"mcunet": "supernet"}
#: `SearchConfig.trials` when none is given, per strategy (supernet: sub-networks evaluated)
DEFAULT_TRIALS = {"proxy": 20, "supernet": 1000}


def default_strategy(space: str) -> str:
    return DEFAULT_STRATEGY.get(space, "proxy")


@dataclass
class SearchConfig:
    """Everything one search run needs. ``trials``: the finished trials (COMPLETE or PRUNED)
    the study should hold, whoever runs them; this call runs what is missing, starting none
    after ``time_budget`` seconds."""

    board: str
    dataset: str
    out_dir: Path
    #: None: DEFAULT_TRIALS of the strategy
    trials: int | None = None
    time_budget: float | None = None
    seed: int = 0
    storage: str | None = None
    resume: bool = False
    proxy_steps: int = 200
    train_limit: int = 6000
    val_limit: int = 1000
    final_epochs: int = 3
    test_limit: int = 500
    batch_size: int = 64
    threads: int = 2
    #: patch schedules may recompute at most this fraction of the layer-by-layer MACs (the
    #: halos); `edgekit.patching.auto_patch` uses the same default
    max_mac_overhead: float = 1.0
    #: the latency constraint: at most this many estimated instructions per inference (the
    #: fastest plan's, `edgekit.kernel_costs`); None: no limit. mcunet only
    max_instructions: int | None = None
    #: bounds of the space (None: the family's defaults); ``widths`` is mcunet's
    resolutions: tuple[int, ...] | None = None
    widths: tuple[float, ...] | None = None
    #: the model family (`edgekit.nas.family.MODULES`)
    space: str = "mcunet"
    #: "paper": the family's space at its paper's scale (mcuformer: 196-784 tokens, dims to
    #: 192; embbert: up to ~800 kB of weights + activations), where the board's budgets bind
    scale: str = "default"
    #: seconds between a running trial's heartbeats (`edgekit.nas.search_study`)
    heartbeat: int = HEARTBEAT_SECONDS
    #: search-space optimisation (`edgekit.nas.space_opt`, families that offer it): random
    #: sub-networks drawn per (resolution, width) choice to pick one
    space_opt: bool = True
    space_samples: int = 1000
    #: weight bits per layer, mcunet only: "8", "4", "mixed" or None (the family's default:
    #: `edgekit.nas.mcunet_family.default_bits`)
    bits: str | None = None
    #: "proxy": Optuna trials each training its candidate briefly; "supernet" (SUPERNET_SPACES):
    #: one weight-sharing supernet and an evolution over its sub-networks
    #: (`edgekit.nas.search_supernet`), ``trials`` then counting evaluated sub-networks; None:
    #: the space's `default_strategy`
    strategy: str | None = None
    #: sandwich-rule training steps of the supernet
    supernet_steps: int = 600

    def __post_init__(self):
        self.out_dir = Path(self.out_dir)
        check_space(self.space)
        if self.strategy is None:
            self.strategy = default_strategy(self.space)
        if self.trials is None:
            self.trials = DEFAULT_TRIALS.get(self.strategy, DEFAULT_TRIALS["proxy"])
        if self.scale not in SCALES:
            raise UsageError(f"scale must be one of {SCALES}, got {self.scale!r}")
        for name in ("trials", "proxy_steps", "train_limit", "val_limit", "test_limit",
                     "batch_size", "threads", "heartbeat", "space_samples"):
            if int(getattr(self, name)) < 1:
                raise UsageError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.final_epochs < 0:
            raise UsageError(f"final-epochs must be >= 0, got {self.final_epochs}")
        if self.resolutions is not None and (not self.resolutions
                                             or any(r < 8 for r in self.resolutions)):
            raise UsageError(f"resolutions must be integers >= 8, got {self.resolutions}")
        if self.widths is not None and (not self.widths or any(not w > 0 for w in self.widths)):
            raise UsageError(f"widths must be > 0, got {self.widths}")
        if not self.max_mac_overhead >= 0:
            raise UsageError(f"max-mac-overhead must be >= 0, got {self.max_mac_overhead}")
        if self.max_instructions is not None and (self.space != "mcunet"
                                                  or int(self.max_instructions) < 1):
            raise UsageError(f"max-instructions {self.max_instructions}: a positive count, for"
                             f" the mcunet space only (this search is {self.space!r}: its"
                             " candidates have no instruction estimate)")
        if self.bits is not None and (str(self.bits) not in ("8", "4", "mixed")
                                      or (self.space != "mcunet" and str(self.bits) != "8")):
            raise UsageError(f"bits {self.bits!r}: choose 8, 4 or mixed (4 and mixed for the"
                             f" mcunet space only; this search is {self.space!r})")
        if self.bits is not None:
            self.bits = str(self.bits)
        if self.strategy not in STRATEGIES or (self.strategy == "supernet"
                                               and self.space not in SUPERNET_SPACES):
            raise UsageError(f"strategy {self.strategy!r}: choose one of {STRATEGIES} (supernet"
                             f" for the {' and '.join(SUPERNET_SPACES)} spaces; this search is"
                             f" {self.space!r})")
        if int(self.supernet_steps) < 1:
            raise UsageError(f"supernet-steps must be >= 1, got {self.supernet_steps}")
        if self.time_budget is not None and not self.time_budget > 0:
            raise UsageError(f"time-budget must be > 0 seconds, got {self.time_budget}")


@dataclass
class SearchResult:
    """``trials_run``: the trials this call finished; ``trials_total``: the finished trials in
    the study. ``not_written``: why this worker did not write the outputs (another worker does;
    ``best`` is then None and ``pareto`` empty)."""
    trials_run: int
    trials_total: int
    pareto: list[dict]
    best: dict | None
    out_dir: Path
    best_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    #: why this worker did not write the outputs ("" when it did)
    not_written: str = ""
    #: candidates rejected before training over the study's finished trials, by reason
    #: (`edgekit.nas.screen.rejected_totals`)
    rejected: dict = field(default_factory=dict)
    #: the search-space optimisation's choice and why (empty when off or not offered)
    space_choice: dict = field(default_factory=dict)


class SurplusTrial(Exception):
    """A trial started when the study's last slot was already taken (by a worker that started
    its trial at the same moment): recorded as FAIL, not run."""


def _optuna():
    from edgekit.extras import require

    optuna = require("optuna", extra="nas", purpose="edgekit search")
    # ERROR: a surplus trial (`SurplusTrial`) is no warning with a traceback; errors that stop
    # the search reach the user as exceptions anyway
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna


def study_name(space: str) -> str:
    return f"edgekit-{space}"


def _split_data(data: Dataset, config: SearchConfig) -> tuple[Split, Split]:
    """Training subset and the held-out validation images that rank candidates (the test
    split is kept for the final figure)."""
    images, labels = data.train.images, data.train.labels
    val = min(config.val_limit, max(1, len(labels) // 5))
    train_n = min(config.train_limit, len(labels) - val)
    return (Split(images[:train_n], labels[:train_n]),
            Split(images[len(labels) - val:], labels[len(labels) - val:]))


def sram_budget(board) -> int:
    """Arena bytes a board can give the model: its SRAM less the firmware's stack and data."""
    return board.sram_bytes - FIRMWARE_STACK_BYTES - FIRMWARE_DATA_BYTES


class Objective:
    """One trial: take a slot, sample, check the budgets, plan, train the proxy, report.
    A candidate edgekit refuses (a patch split it cannot plan, ...) is PRUNED, with the reason
    in the trial's ``refused`` attribute: it counts as finished, and the search goes on."""

    def __init__(self, config: SearchConfig, family: Family, space, board, train: Split,
                 val: Split):
        self.config, self.family, self.space, self.board = config, family, space, board
        self.train, self.val = train, val
        self.limits = Limits.of(config, board)
        self.worker = this_worker()
        #: the number of the trial this worker is running (or ran last)
        self.current: int | None = None

    def __call__(self, trial) -> tuple[float, float]:
        optuna = _optuna()
        self.current = trial.number
        trial.set_user_attr("worker", self.worker)
        slot = slot_of(trial.study, trial.number)
        if slot >= self.config.trials:
            raise SurplusTrial(f"trial {trial.number} not run: the study's {self.config.trials}"
                               " trials are taken by other workers")
        trial.set_user_attr("slot", slot)
        # the slot, not the trial number, seeds the sampler and the training: the candidate
        # of slot k is the same whoever runs it, and however often the search was killed
        sampler = optuna.samplers.TPESampler(seed=slot_seed(self.config.seed, slot),
                                             n_startup_trials=10)
        trial.study.sampler = sampler
        try:
            return self._evaluate(trial, slot, sampler)
        except EdgekitError as err:
            if isinstance(err, SearchError):
                raise  # the space holds nothing that fits: stop the search
            trial.set_user_attr("refused", str(err))
            raise optuna.TrialPruned(str(err)) from None

    def _evaluate(self, trial, slot: int, sampler) -> tuple[float, float]:
        start = time.monotonic()
        found = draw_feasible(trial, sampler, self.family, self.space, self.board, self.limits)
        spec, memory = found.spec, found.memory
        trial.set_user_attr(DRAWN_ATTR, spec.to_dict())
        trial.set_user_attr("rejected", found.rejected)
        trial.set_user_attr("screen_seconds", round(time.monotonic() - start, 3))
        peak, flash = int(memory["peak_sram"]), int(memory["flash"])
        planned, overhead = bool(memory["planned"]), float(memory.get("mac_overhead", 0.0))
        trial.set_user_attr("peak_sram", peak)
        # False: ``peak_sram`` is the pruning figure (`peak_sram_bound`), already over budget
        trial.set_user_attr("peak_planned", planned)
        trial.set_user_attr("flash", flash)
        trial.set_user_attr("mac_overhead", round(overhead, 4))
        # latency: estimated instructions per inference (families with a cost model)
        trial.set_user_attr("instructions", memory.get("instructions"))
        constraints = violations(memory, self.limits)
        trial.set_user_attr("constraints", constraints)
        for name, value in zip(self.limits.names(), constraints):
            trial.set_constraint(name, value)
        if max(constraints) > 0:
            # only a trial queued again with parameters screened under other settings
            trial.set_user_attr("trained", False)
            return 0.0, float(peak)
        start = time.monotonic()
        model = self.family.train(spec, self.train, steps=self.config.proxy_steps,
                                  batch_size=self.config.batch_size,
                                  seed=self.config.seed + slot, threads=self.config.threads)
        accuracy = self.family.float_accuracy(model, spec, self.val)
        trial.set_user_attr("trained", True)
        trial.set_user_attr("train_seconds", round(time.monotonic() - start, 2))
        return accuracy, float(peak)


def _row(trial) -> dict:
    a = trial.user_attrs
    return {"trial": trial.number, "accuracy": trial.values[0], "peak_sram": a["peak_sram"],
            "flash": a["flash"], "mac_overhead": a.get("mac_overhead", 0.0),
            "instructions": a.get("instructions"),
            "feasible": max(a["constraints"]) <= 0,
            "patch": {"split": a["spec"].get("patch_split"), "n": a["spec"].get("patch_n", 1)},
            "spec": a["spec"]}


#: the Pareto front's objectives: Optuna optimises the first two; flash (the board's other
#: budget, and what int4 layers shrink) is reported on the front as the third, and latency
#: (estimated instructions per inference, `edgekit.kernel_costs`) as the fourth
PARETO_OBJECTIVES = {"accuracy": "max", "peak_sram": "min", "flash": "min",
                     "instructions": "min"}


def pareto_front(rows: list[dict]) -> list[dict]:
    """The rows no other row dominates over `PARETO_OBJECTIVES` (as good in every objective,
    better in one)."""
    def key(r):  # a figure a family does not give (None) ties with every other
        return tuple(0 if r.get(k) is None else r[k] if way == "max" else -r[k]
                     for k, way in PARETO_OBJECTIVES.items())

    keys = [key(r) for r in rows]
    return [r for r, k in zip(rows, keys)
            if not any(all(a >= b for a, b in zip(o, k)) and o != k for o in keys)]


def _plot(path: Path, rows: list[dict], pareto: list[dict], sram: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    feasible = [r for r in rows if r["feasible"]]
    other = [r for r in rows if not r["feasible"]]
    if other:
        ax.scatter([r["peak_sram"] / 1024 for r in other], [r["accuracy"] for r in other],
                   marker="x", color="0.6", label="over budget (not trained)")
    ax.scatter([r["peak_sram"] / 1024 for r in feasible], [r["accuracy"] for r in feasible],
               color="tab:blue", label="trained")
    front = sorted(pareto, key=lambda r: r["peak_sram"])
    ax.plot([r["peak_sram"] / 1024 for r in front], [r["accuracy"] for r in front], "o-",
            color="tab:red", label="Pareto front")
    ax.axvline(sram / 1024, color="tab:green", linestyle="--", label="SRAM budget")
    ax.set_xlabel("peak SRAM, arena (KiB)")
    ax.set_ylabel("proxy accuracy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_writer(path) as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def _final_memory(family: Family, spec, graph, board) -> dict:
    """The final graph's memory figures: the family's (`Family.final_memory`), else the
    firmware's plan of the graph, layer by layer, and the family's flash figure."""
    from edgekit.planner.objective import fastest_instructions

    if hasattr(family, "final_memory"):
        memory = dict(family.final_memory(spec, graph, board))
    else:
        memory = layer_by_layer_memory(graph, int(family.memory(spec, board)["flash"]))
    memory.setdefault("instructions", fastest_instructions(graph, board.cpu))
    return memory


def layer_by_layer_memory(graph, flash_estimate: int) -> dict:
    """Report figures of a graph run without patches: the firmware's plan of it (with and
    without the input) and ``flash_estimate``."""
    from edgekit.attention import fuse_attention
    from edgekit.firmware.codegen import firmware_plan

    plan = firmware_plan(fuse_attention(graph))  # as `edgekit build` runs it
    memory = {"peak_sram": plan.arena_bytes, "peak_sram_layer_by_layer": plan.arena_bytes}
    try:
        from edgekit.patching import peak_without_inputs

        memory["peak_sram_without_input"] = peak_without_inputs(plan)
    except ImportError:
        pass
    return {**memory, "flash_estimate": flash_estimate, "patch": {"split": None, "n": 1}}


def calibration_inputs(split: Split, count: int = CALIBRATION_COUNT, seed: int = 0) -> np.ndarray:
    """``count`` training inputs (raw, as the dataset holds them) for the quantizer."""
    idx = np.random.default_rng(seed).permutation(len(split))[:count]
    return split.images[idx]


def _final(config: SearchConfig, family: Family, spec, data: Dataset, train_split: Split,
           board, out_dir: Path, extra: dict | None = None, start_model=None) -> dict:
    """Train the chosen spec longer (from ``start_model(spec)``'s weights when given: the
    supernet's), quantize it, check it on the real planner, write best/."""
    from edgekit.converters.tflite_writer import save_tflite

    steps = max(config.proxy_steps,
                math.ceil(config.final_epochs * len(train_split) / config.batch_size))
    start = time.monotonic()
    start_from = {} if start_model is None else {"model": start_model(spec)}
    model = family.train(spec, train_split, steps=steps, batch_size=config.batch_size,
                         seed=config.seed, threads=config.threads, **start_from)
    graph = family.int8_graph(model, spec, calibration_inputs(train_split, seed=config.seed))
    test = Split(data.test.images[:config.test_limit], data.test.labels[:config.test_limit])
    memory = _final_memory(family, spec, graph, board)
    patch = memory.pop("patch", None) or {"split": None, "n": 1}
    peak = memory["peak_sram"]
    report = {"space": family.name, "spec": spec.to_dict(), "train_steps": steps,
              "train_seconds": round(time.monotonic() - start, 1),
              "float_accuracy": family.float_accuracy(model, spec, test),
              "int8_accuracy": family.int8_accuracy(graph, spec, test), "test_images": len(test),
              **memory,
              "weights_bytes": graph.weights_bytes, "board": board.id,
              "fits": peak <= sram_budget(board) and memory["flash_estimate"] <= board.flash_bytes,
              "patch": patch, **(extra or {})}
    # whoever reads best/ sees the old folder or the new one, never a half-written one
    with atomic_directory(out_dir / "best") as tmp:
        save_tflite(graph, tmp / "model.tflite")
        (tmp / "spec.json").write_text(spec.to_json() + "\n")
        (tmp / "patch.json").write_text(json.dumps(report["patch"]) + "\n")
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        # what else reproduces the model's inputs (embbert: tokenizer.json)
        for name, text in getattr(family, "artifacts", lambda _: {})(spec).items():
            (tmp / name).write_text(text, encoding="utf-8")
    return report


def run_search(config: SearchConfig, *, progress: Callable[..., Any] | None = None,
               data: Dataset | None = None) -> SearchResult:
    """Run (or resume, or join) a search until its study holds ``config.trials`` finished
    trials, then write the outputs under ``config.out_dir`` if this worker is the one to
    (`edgekit.nas.search_study`). ``progress(total=...)`` makes a tqdm-like bar (``update()``,
    ``close()``)."""
    optuna = _optuna()
    board = load_board(config.board)
    data = data or load_dataset(config.dataset)
    # the family checks the data and the bounds before anything is written
    family = get_family(config.space)
    space = family.space(data, config)
    out_dir = config.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    url = config.storage or f"sqlite:///{(out_dir / 'search.db').resolve()}"
    study = _open_study(optuna, url, config, board)
    space, space_choice = _optimise_space(family, space, board, config)

    train_split, val_split = _split_data(data, config)
    if config.strategy == "supernet":
        from edgekit.nas.search_supernet import run_supernet

        return run_supernet(config, family, space, board, study, data, train_split,
                            val_split, progress=progress, space_choice=space_choice)
    objective = Objective(config, family, space, board, train_split, val_split)
    complete_at_start = counts(study).finished >= config.trials
    mine, timed_out = _run_trials(optuna, study, objective, config, progress)

    not_written = _not_written(study, config, mine, timed_out, complete_at_start)
    if not_written:
        return SearchResult(trials_run=len(mine), trials_total=counts(study).finished,
                            pareto=[], best=None, out_dir=out_dir, best_dir=out_dir / "best",
                            not_written=not_written, rejected=_rejected(optuna, study),
                            space_choice=space_choice)
    result = _write_outputs(optuna, study, config, family, data, train_split, board, out_dir,
                            trials_run=len(mine), space_choice=space_choice)
    return result


def _optimise_space(family: Family, space, board, config: SearchConfig) -> tuple[Any, dict]:
    """The space narrowed by the family's search-space optimisation, and the record of the
    choice ({} when off or when the family offers none). Seeded: every worker, and a resumed
    search, narrows it the same way."""
    if not config.space_opt or not hasattr(family, "optimise_space"):
        return space, {}
    return family.optimise_space(space, board, sram=sram_budget(board),
                                 samples=config.space_samples, seed=config.seed)


def _not_written(study, config: SearchConfig, mine: set[int], timed_out: bool,
                 complete_at_start: bool) -> str:
    """Why this worker leaves the outputs to another, or "" when it writes them: the worker
    that finished the trial in the study's last slot writes them; so does a worker whose time
    ran out (the outputs of what is finished then), and one that found nothing left to run and
    no DIR/best (a worker killed during its final training wrote none)."""
    if timed_out:
        return ""
    if complete_at_start:
        return ("" if not (config.out_dir / "best").exists() else
                f"the study already held {config.trials} finished trials and DIR/best exists")
    writer = last_trial(study)
    return "" if writer in mine else f"the worker that ran trial {writer}, the last, writes them"


def _open_study(optuna, url: str, config: SearchConfig, board):
    """The study of ``config.space`` in ``url``, created if needed: refused when the storage
    holds another search, or this one without ``resume``, or this one with other settings."""
    storage = open_storage(url, config.heartbeat)
    names = optuna.study.get_all_study_names(storage)
    name = study_name(config.space) + ("-supernet" if config.strategy == "supernet" else "")
    others = sorted(n[len("edgekit-"):] for n in names if n.startswith("edgekit-") and n != name)
    if (name in names or others) and not config.resume:
        raise SearchError(f"storage {url!r} already holds a search; pass --resume to"
                          " continue it or to join it as one more worker, or choose another"
                          " -o DIR / --storage")
    if others and name not in names:
        raise SearchError(f"storage {url!r} holds a search of space {others[0]!r}, not"
                          f" {name[len('edgekit-'):]!r}; choose another -o DIR / --storage")
    # the supernet's evolution also minimises MACs (`edgekit.nas.search_supernet`)
    directions = ["maximize", "minimize"] + (["minimize"] if config.strategy == "supernet" else [])
    study = optuna.create_study(storage=storage, study_name=name, load_if_exists=True,
                                directions=directions,
                                sampler=optuna.samplers.TPESampler(seed=config.seed))
    # what decides which candidates exist and fit: a resumed search or another worker with
    # other values would fill the study with candidates of another search
    record_settings(study, {"board": board.id, "space": config.space, "seed": config.seed,
                            "space_opt": config.space_opt, "bits": config.bits or "default",
                            "resolutions": str(config.resolutions), "widths": str(config.widths),
                            "max_mac_overhead": config.max_mac_overhead,
                            "max_instructions": str(config.max_instructions)})
    return study


def _run_trials(optuna, study, objective: Objective, config: SearchConfig,
                progress) -> tuple[set[int], bool]:
    """Run trials until the study holds ``config.trials`` finished ones (waiting while the
    missing ones run on other workers, taking over the trials of lost ones) or the time budget
    ends. Returns the numbers of the trials this worker finished, and whether time ran out."""
    grace = GRACE_HEARTBEATS * config.heartbeat
    poll = min(2.0, config.heartbeat / 2)
    start = time.monotonic()
    mine: set[int] = set()
    fail_lost_trials(study, grace)
    bar = progress(total=max(0, config.trials - counts(study).finished)) if progress else None
    try:
        while True:
            now = counts(study)
            if now.finished >= config.trials:
                return mine, False
            if config.time_budget is not None and time.monotonic() - start >= config.time_budget:
                return mine, True
            if now.waiting == 0 and now.finished + now.running >= config.trials:
                time.sleep(poll)  # the missing trials run on other workers
                fail_lost_trials(study, grace)
                continue
            objective.current = None
            try:
                # a candidate edgekit refuses is PRUNED in the objective; a surplus trial is
                # recorded as FAIL; anything else is a bug and stops the search
                study.optimize(objective, n_trials=1, catch=(SurplusTrial,))
            except (ValueError, optuna.exceptions.UpdateFinishedTrialError) as err:
                # our trial was taken for lost (no heartbeat through for the grace period) and
                # failed by another worker, which queued it again: not ours any more
                if not _taken_over(optuna, study, objective.current, err):
                    raise
                continue
            number = objective.current
            if number is not None and _state(study, number) in finished_states():
                mine.add(number)
                if bar:
                    bar.update(1)
    finally:
        if bar:
            bar.close()


def _state(study, number: int):
    return next(t.state for t in study.get_trials(deepcopy=False) if t.number == number)


def _taken_over(optuna, study, number: int | None, err: Exception) -> bool:
    """True when ``err`` is Optuna refusing to record a trial that another worker failed."""
    told_late = (isinstance(err, optuna.exceptions.UpdateFinishedTrialError)
                 or str(err).startswith("Cannot tell a FAIL trial"))
    return (told_late and number is not None
            and _state(study, number) == optuna.trial.TrialState.FAIL)


def _rejected(optuna, study) -> dict:
    return rejected_totals(study.get_trials(deepcopy=False, states=finished_states()))


def _write_outputs(optuna, study, config: SearchConfig, family: Family, data: Dataset,
                   train_split: Split, board, out_dir: Path, trials_run: int,
                   space_choice: dict, start_model=None) -> SearchResult:
    """Pareto front (json and plot) of the study's finished trials, then the chosen model."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    rows = [_row(t) for t in complete]
    trained = [r for r in rows if r["feasible"]]
    pareto = pareto_front(trained)
    if not trained:
        raise SearchError(f"none of the {len(rows)} trials fits {board.id} ({board.sram_bytes} B"
                          f" SRAM, {board.flash_bytes} B flash); run more trials")
    pareto = pareto or [max(trained, key=lambda r: r["accuracy"])]
    chosen = max(pareto, key=lambda r: (r["accuracy"], -r["peak_sram"]))
    total = counts(study).finished
    rejected = _rejected(optuna, study)
    limits = Limits.of(config, board)
    constraints = constraint_summary(rejected, chosen, limits)
    atomic_write_text(out_dir / "pareto.json", json.dumps(
        {"board": board.id, "dataset": config.dataset, "space": config.space,
         "sram_budget": sram_budget(board),
         "flash_budget": board.flash_bytes, "max_instructions": limits.max_instructions,
         "trials": total, "objectives": PARETO_OBJECTIVES,
         "rejected": rejected, "constraints": constraints, "space_choice": space_choice,
         "pareto": pareto}, indent=2) + "\n")
    _plot(out_dir / "pareto.png", rows, pareto, sram_budget(board))
    spec = family.spec_from_dict(chosen["spec"])
    report = _final(config, family, spec, data, train_split, board, out_dir,
                    extra={"rejected": rejected, "constraints": constraints,
                           "space_choice": space_choice}, start_model=start_model)
    report["proxy_accuracy"] = chosen["accuracy"]
    report["trial"] = chosen["trial"]
    return SearchResult(trials_run=trials_run, trials_total=total, pareto=pareto, best=report,
                        out_dir=out_dir, best_dir=out_dir / "best", rejected=rejected,
                        space_choice=space_choice,
                        files={"pareto_json": out_dir / "pareto.json",
                               "pareto_png": out_dir / "pareto.png",
                               "model": out_dir / "best" / "model.tflite"})
