"""The search driver: Optuna multi-objective search of one model family under a board's budgets.

``SearchConfig.space`` names the family (`edgekit.nas.family`: ``mcunet``, the default,
``mcuformer``, ``embbert``); the driver only talks to it through the `Family` interface.
Objectives: maximise the proxy accuracy (short training) and minimise the peak SRAM (the
planner's arena, patch schedule included). Constraints (``Trial.set_constraint``, feasible
when <= 0): arena + the firmware's stack and static data <= the board's SRAM
(`sram_budget`), and predicted flash <= the board's flash, and a patch schedule's recomputed
MACs <= ``max_mac_overhead`` of the layer-by-layer MACs (0 for families without patches). A
candidate whose memory figures break a budget is recorded with accuracy 0 and never trained.
For mcunet, a candidate whose fast memory figure (`peak_sram_bound`: exact without a patch, a
lower bound with one) or flash already breaks a budget is not even planned; every candidate
that is trained was planned by the real planner first, so every peak SRAM in the Pareto front
of trained candidates is the planner's.

Storage: ``sqlite:///DIR/search.db`` by default (any Optuna RDB URL with ``storage``); each
finished trial is committed as it ends, so a killed search resumes with ``resume=True`` and
loses no finished trial. Outputs (each written to a temporary name, then renamed):
``DIR/pareto.json``, ``DIR/pareto.png``, and ``DIR/best/`` with ``model.tflite`` (int8, the
chosen model after its final training), ``spec.json``, ``patch.json`` (the patch schedule;
``{"split": null, "n": 1}``, layer by layer, for families without one) and ``report.json``,
so `edgekit build DIR/best` builds the model of any family.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgekit.boards import load_board
import numpy as np

from edgekit.errors import EdgekitError, SearchError, UsageError
from edgekit.nas.datasets import Dataset, Split, load_dataset
from edgekit.nas.family import Family, check_space, get_family

#: the study of the mcunet space (a family's study is ``edgekit-<space>``)
STUDY_NAME = "edgekit-mcunet"
#: training images the quantizer calibrates on
CALIBRATION_COUNT = 64
#: SRAM the firmware needs besides the arena: its stack reservation and a little static data
FIRMWARE_STACK_BYTES = 4 * 1024
FIRMWARE_DATA_BYTES = 64


@dataclass
class SearchConfig:
    """Everything one search run needs; ``trials`` more trials run in this call (on top of
    the study's finished ones with ``resume``), until ``time_budget`` seconds have passed."""

    board: str
    dataset: str
    out_dir: Path
    trials: int = 20
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
    #: bounds of the space (None: the family's defaults); ``widths`` is mcunet's
    resolutions: tuple[int, ...] | None = None
    widths: tuple[float, ...] | None = None
    #: the model family (`edgekit.nas.family.MODULES`)
    space: str = "mcunet"

    def __post_init__(self):
        self.out_dir = Path(self.out_dir)
        check_space(self.space)
        for name in ("trials", "proxy_steps", "train_limit", "val_limit", "test_limit",
                     "batch_size", "threads"):
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
        if self.time_budget is not None and not self.time_budget > 0:
            raise UsageError(f"time-budget must be > 0 seconds, got {self.time_budget}")


@dataclass
class SearchResult:
    trials_run: int
    trials_total: int
    pareto: list[dict]
    best: dict
    out_dir: Path
    best_dir: Path
    files: dict[str, Path] = field(default_factory=dict)


def _optuna():
    from edgekit.extras import require

    optuna = require("optuna", extra="nas", purpose="edgekit search")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
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
    """One trial: sample, check the budgets, plan, train the proxy, report."""

    def __init__(self, config: SearchConfig, family: Family, space, board, train: Split,
                 val: Split):
        self.config, self.family, self.space, self.board = config, family, space, board
        self.train, self.val = train, val
        self.sram = sram_budget(board)

    def __call__(self, trial) -> tuple[float, float]:
        spec = self.family.sample(trial, self.space)
        trial.set_user_attr("spec", spec.to_dict())
        memory = self.family.memory(spec, self.board)
        peak, flash = int(memory["peak_sram"]), int(memory["flash"])
        planned, overhead = bool(memory["planned"]), float(memory.get("mac_overhead", 0.0))
        trial.set_user_attr("peak_sram", peak)
        # False: ``peak_sram`` is the pruning figure (`peak_sram_bound`), already over budget
        trial.set_user_attr("peak_planned", planned)
        trial.set_user_attr("flash", flash)
        trial.set_user_attr("mac_overhead", round(overhead, 4))
        constraints = [float(peak - self.sram), float(flash - self.board.flash_bytes),
                       overhead - self.config.max_mac_overhead]
        trial.set_user_attr("constraints", constraints)
        for name, value in zip(("sram", "flash", "mac_overhead"), constraints):
            trial.set_constraint(name, value)
        if max(constraints) > 0:
            trial.set_user_attr("trained", False)
            return 0.0, float(peak)
        start = time.monotonic()
        model = self.family.train(spec, self.train, steps=self.config.proxy_steps,
                                  batch_size=self.config.batch_size,
                                  seed=self.config.seed + trial.number, threads=self.config.threads)
        accuracy = self.family.float_accuracy(model, spec, self.val)
        trial.set_user_attr("trained", True)
        trial.set_user_attr("train_seconds", round(time.monotonic() - start, 2))
        return accuracy, float(peak)


def _row(trial) -> dict:
    a = trial.user_attrs
    return {"trial": trial.number, "accuracy": trial.values[0], "peak_sram": a["peak_sram"],
            "flash": a["flash"], "mac_overhead": a.get("mac_overhead", 0.0),
            "feasible": max(a["constraints"]) <= 0,
            "patch": {"split": a["spec"].get("patch_split"), "n": a["spec"].get("patch_n", 1)},
            "spec": a["spec"]}


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def _final_memory(family: Family, spec, graph, board) -> dict:
    """The final graph's memory figures: the family's (`Family.final_memory`), else the
    firmware's plan of the graph, layer by layer, and the family's flash figure."""
    if hasattr(family, "final_memory"):
        return dict(family.final_memory(spec, graph, board))
    return layer_by_layer_memory(graph, int(family.memory(spec, board)["flash"]))


def layer_by_layer_memory(graph, flash_estimate: int) -> dict:
    """Report figures of a graph run without patches: the firmware's plan of it (with and
    without the input) and ``flash_estimate``."""
    from edgekit.firmware.codegen import firmware_plan

    plan = firmware_plan(graph)
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
           board, out_dir: Path) -> dict:
    """Train the chosen spec longer, quantize it, check it on the real planner, write best/."""
    from edgekit.converters.tflite_writer import save_tflite

    steps = max(config.proxy_steps,
                math.ceil(config.final_epochs * len(train_split) / config.batch_size))
    start = time.monotonic()
    model = family.train(spec, train_split, steps=steps, batch_size=config.batch_size,
                         seed=config.seed, threads=config.threads)
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
              "patch": patch}
    tmp = Path(tempfile.mkdtemp(prefix=".best-", dir=out_dir))
    try:
        save_tflite(graph, tmp / "model.tflite")
        (tmp / "spec.json").write_text(spec.to_json() + "\n")
        (tmp / "patch.json").write_text(json.dumps(report["patch"]) + "\n")
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        # what else reproduces the model's inputs (embbert: tokenizer.json)
        for name, text in getattr(family, "artifacts", lambda _: {})(spec).items():
            (tmp / name).write_text(text, encoding="utf-8")
        best = out_dir / "best"
        if best.exists():
            shutil.rmtree(best)
        os.replace(tmp, best)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def run_search(config: SearchConfig, *, progress: Callable[..., Any] | None = None,
               data: Dataset | None = None) -> SearchResult:
    """Run (or resume) a search and write its outputs under ``config.out_dir``.
    ``progress(total=...)`` makes a tqdm-like bar (``update()``, ``close()``)."""
    optuna = _optuna()
    board = load_board(config.board)
    data = data or load_dataset(config.dataset)
    # the family checks the data and the bounds before anything is written
    family = get_family(config.space)
    space = family.space(data, config)
    out_dir = config.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    storage = config.storage or f"sqlite:///{(out_dir / 'search.db').resolve()}"
    try:
        names = optuna.study.get_all_study_names(storage)
    except Exception as err:  # optuna/sqlalchemy errors for a bad URL vary by backend
        raise SearchError(f"storage {storage!r} cannot be opened: {type(err).__name__}:"
                          f" {str(err).splitlines()[0]}") from None
    name = study_name(config.space)
    others = sorted(n[len("edgekit-"):] for n in names if n.startswith("edgekit-") and n != name)
    if (name in names or others) and not config.resume:
        raise SearchError(f"storage {storage!r} already holds a search; pass --resume to"
                          " continue it, or choose another -o DIR / --storage")
    if others and name not in names:
        raise SearchError(f"storage {storage!r} holds a search of space {others[0]!r}, not"
                          f" {config.space!r}; choose another -o DIR / --storage")
    study = optuna.create_study(
        storage=storage, study_name=name, load_if_exists=True,
        directions=["maximize", "minimize"])
    done_before = len(study.get_trials(deepcopy=False))
    complete_before = len(study.get_trials(deepcopy=False,
                                           states=(optuna.trial.TrialState.COMPLETE,)))
    # reseeded past the trials already there, so a resumed search does not redraw them
    sampler = optuna.samplers.TPESampler(seed=config.seed + done_before, n_startup_trials=10)
    study.sampler = sampler
    study.set_user_attr("board", board.id)
    study.set_user_attr("dataset", config.dataset)
    study.set_user_attr("space", config.space)

    train_split, val_split = _split_data(data, config)
    objective = Objective(config, family, space, board, train_split, val_split)
    bar = progress(total=config.trials) if progress else None
    callbacks = [lambda study, trial: bar.update(1)] if bar else []
    try:
        # a candidate edgekit cannot plan or convert (a patch split it refuses, ...) is a
        # failed trial, recorded as such; the search goes on
        study.optimize(objective, n_trials=config.trials, timeout=config.time_budget,
                       callbacks=callbacks, catch=(EdgekitError,))
    finally:
        if bar:
            bar.close()

    complete = [t for t in study.get_trials(deepcopy=False)
                if t.state == optuna.trial.TrialState.COMPLETE]
    rows = [_row(t) for t in complete]
    front_numbers = {t.number for t in study.best_trials}
    pareto = [r for r in rows if r["trial"] in front_numbers and r["feasible"]]
    trained = [r for r in rows if r["feasible"]]
    if not trained:
        raise SearchError(f"none of the {len(rows)} trials fits {board.id} ({board.sram_bytes} B"
                          f" SRAM, {board.flash_bytes} B flash); run more trials")
    pareto = pareto or [max(trained, key=lambda r: r["accuracy"])]
    chosen = max(pareto, key=lambda r: (r["accuracy"], -r["peak_sram"]))
    _atomic_write(out_dir / "pareto.json", json.dumps(
        {"board": board.id, "dataset": config.dataset, "space": config.space,
         "sram_budget": sram_budget(board),
         "flash_budget": board.flash_bytes, "trials": len(rows), "pareto": pareto}, indent=2) + "\n")
    _plot(out_dir / "pareto.png", rows, pareto, sram_budget(board))
    spec = family.spec_from_dict(chosen["spec"])
    report = _final(config, family, spec, data, train_split, board, out_dir)
    report["proxy_accuracy"] = chosen["accuracy"]
    report["trial"] = chosen["trial"]
    return SearchResult(trials_run=len(complete) - complete_before,
                        trials_total=len(rows), pareto=pareto, best=report, out_dir=out_dir,
                        best_dir=out_dir / "best",
                        files={"pareto_json": out_dir / "pareto.json",
                               "pareto_png": out_dir / "pareto.png",
                               "model": out_dir / "best" / "model.tflite"})
