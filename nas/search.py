"""The search driver: Optuna multi-objective search of the MCUNet space under a board's budgets.

Objectives: maximise the proxy accuracy (short training, `edgekit.nas.train`) and minimise the
peak SRAM (the planner's arena, patch schedule included). Constraints (``Trial.set_constraint``,
feasible when <= 0): arena + the firmware's stack and static data <= the board's SRAM, and
predicted flash (`edgekit.nas.codesize`) <= the board's flash, and a patch schedule's
recomputed MACs <= ``max_mac_overhead`` of the layer-by-layer MACs. A candidate whose fast memory
figure (`peak_sram_bound`: exact without a patch, a lower bound with one) or flash already
breaks a budget is recorded with accuracy 0 and never trained; every other candidate is
planned by the real planner (`peak_sram`) before it is trained, so every peak SRAM in the
study and in the Pareto front of trained candidates is the planner's.

Storage: ``sqlite:///DIR/search.db`` by default (any Optuna RDB URL with ``storage``); each
finished trial is committed as it ends, so a killed search resumes with ``resume=True`` and
loses no finished trial. Outputs (each written to a temporary name, then renamed):
``DIR/pareto.json``, ``DIR/pareto.png``, and ``DIR/best/`` with ``model.tflite`` (int8, the
chosen model after its final training), ``spec.json``, ``patch.json`` and ``report.json``.
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
from edgekit.errors import EdgekitError, SearchError, UsageError
from edgekit.nas.codesize import flash_estimate
from edgekit.nas.datasets import Dataset, Split, load_dataset
from edgekit.nas.mcunet import MCUNetSpec, SearchSpace, sample
from edgekit.nas.memory import firmware_memory, peak_sram_bound

STUDY_NAME = "edgekit-mcunet"
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
    #: bounds of the space (None: `edgekit.nas.mcunet`'s defaults)
    resolutions: tuple[int, ...] | None = None
    widths: tuple[float, ...] | None = None

    def __post_init__(self):
        self.out_dir = Path(self.out_dir)
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
    try:
        import optuna
    except ImportError:
        raise SearchError("edgekit search needs optuna (pip install optuna)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


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

    def __init__(self, config: SearchConfig, space: SearchSpace, board, train: Split, val: Split):
        self.config, self.space, self.board = config, space, board
        self.train, self.val = train, val
        self.sram = sram_budget(board)

    def __call__(self, trial) -> tuple[float, float]:
        from edgekit.nas.train import float_accuracy, train

        spec = sample(trial, self.space)
        trial.set_user_attr("spec", spec.to_dict())
        cpu = self.board.cpu
        flash = flash_estimate(spec, cpu=cpu)
        peak = peak_sram_bound(spec)
        planned, overhead = False, 0.0
        if peak <= self.sram and flash <= self.board.flash_bytes:
            # the firmware's plan (and the patched graph's flash) for what gets trained
            peak, graph, overhead = firmware_memory(spec)
            planned = True
            if spec.patch_split is not None:
                flash = flash_estimate(spec, graph=graph, cpu=cpu)
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
        model = train(spec, self.train, steps=self.config.proxy_steps,
                      batch_size=self.config.batch_size, seed=self.config.seed + trial.number,
                      threads=self.config.threads)
        accuracy = float_accuracy(model, spec, self.val)
        trial.set_user_attr("trained", True)
        trial.set_user_attr("train_seconds", round(time.monotonic() - start, 2))
        return accuracy, float(peak)


def _row(trial) -> dict:
    a = trial.user_attrs
    return {"trial": trial.number, "accuracy": trial.values[0], "peak_sram": a["peak_sram"],
            "flash": a["flash"], "mac_overhead": a.get("mac_overhead", 0.0),
            "feasible": max(a["constraints"]) <= 0,
            "patch": {"split": a["spec"]["patch_split"], "n": a["spec"]["patch_n"]},
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


def _final_memory(spec: MCUNetSpec, graph, cpu: str) -> dict:
    """The converted graph's arena layer by layer and with the spec's patch schedule, with the
    input counted (it lives in SRAM) and without it (as MCUNetV2's papers count)."""
    from edgekit.firmware.codegen import available_inplace_modes, firmware_plan
    from edgekit.nas.memory import patch_schedule

    whole = firmware_plan(graph)
    memory = {"peak_sram_layer_by_layer": whole.arena_bytes}
    chosen, runs = whole, graph
    if spec.patch_split is not None:
        from edgekit.patching import plan_patched

        patched = plan_patched(graph, patch_schedule(spec, graph), inplace=available_inplace_modes())
        chosen, runs = patched.plan, patched.graph
        memory["mac_overhead"] = round(patched.mac_overhead, 4)
    try:
        from edgekit.patching import peak_without_inputs

        memory["peak_sram_without_input"] = peak_without_inputs(chosen)
    except ImportError:
        pass
    return {"peak_sram": chosen.arena_bytes, **memory,
            "flash_estimate": flash_estimate(spec, graph=runs, cpu=cpu)}


def _final(config: SearchConfig, spec: MCUNetSpec, data: Dataset, train_split: Split,
           board, out_dir: Path) -> dict:
    """Train the chosen spec longer, quantize it, check it on the real planner, write best/."""
    from edgekit.converters.tflite_writer import save_tflite
    from edgekit.nas.convert import int8_graph
    from edgekit.nas.memory import patch_schedule
    from edgekit.nas.train import calibration_batch, float_accuracy, int8_accuracy, train

    steps = max(config.proxy_steps,
                math.ceil(config.final_epochs * len(train_split) / config.batch_size))
    start = time.monotonic()
    model = train(spec, train_split, steps=steps, batch_size=config.batch_size,
                  seed=config.seed, threads=config.threads)
    graph = int8_graph(model, calibration_batch(train_split, spec, seed=config.seed))
    test = Split(data.test.images[:config.test_limit], data.test.labels[:config.test_limit])
    schedule = patch_schedule(spec, graph)
    memory = _final_memory(spec, graph, board.cpu)
    peak = memory["peak_sram"]
    report = {"spec": spec.to_dict(), "train_steps": steps,
              "train_seconds": round(time.monotonic() - start, 1),
              "float_accuracy": float_accuracy(model, spec, test),
              "int8_accuracy": int8_accuracy(graph, spec, test), "test_images": len(test),
              **memory,
              "weights_bytes": graph.weights_bytes, "board": board.id,
              "fits": peak <= sram_budget(board) and memory["flash_estimate"] <= board.flash_bytes,
              "patch": schedule.to_dict() if schedule else {"split": None, "n": 1}}
    tmp = Path(tempfile.mkdtemp(prefix=".best-", dir=out_dir))
    try:
        save_tflite(graph, tmp / "model.tflite")
        (tmp / "spec.json").write_text(spec.to_json() + "\n")
        (tmp / "patch.json").write_text(json.dumps(report["patch"]) + "\n")
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
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
    out_dir = config.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    storage = config.storage or f"sqlite:///{(out_dir / 'search.db').resolve()}"
    try:
        names = optuna.study.get_all_study_names(storage)
    except Exception as err:  # optuna/sqlalchemy errors for a bad URL vary by backend
        raise SearchError(f"storage {storage!r} cannot be opened: {type(err).__name__}:"
                          f" {str(err).splitlines()[0]}") from None
    if STUDY_NAME in names and not config.resume:
        raise SearchError(f"storage {storage!r} already holds a search; pass --resume to"
                          " continue it, or choose another -o DIR / --storage")
    bounds = {k: tuple(v) for k, v in (("resolutions", config.resolutions),
                                        ("widths", config.widths)) if v is not None}
    space = SearchSpace(in_channels=data.image_shape[-1], num_classes=data.num_classes, **bounds)
    study = optuna.create_study(
        storage=storage, study_name=STUDY_NAME, load_if_exists=True,
        directions=["maximize", "minimize"])
    done_before = len(study.get_trials(deepcopy=False))
    complete_before = len(study.get_trials(deepcopy=False,
                                           states=(optuna.trial.TrialState.COMPLETE,)))
    # reseeded past the trials already there, so a resumed search does not redraw them
    sampler = optuna.samplers.TPESampler(seed=config.seed + done_before, n_startup_trials=10)
    study.sampler = sampler
    study.set_user_attr("board", board.id)
    study.set_user_attr("dataset", config.dataset)

    train_split, val_split = _split_data(data, config)
    objective = Objective(config, space, board, train_split, val_split)
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
        {"board": board.id, "dataset": config.dataset, "sram_budget": sram_budget(board),
         "flash_budget": board.flash_bytes, "trials": len(rows), "pareto": pareto}, indent=2) + "\n")
    _plot(out_dir / "pareto.png", rows, pareto, sram_budget(board))
    spec = MCUNetSpec.from_dict(chosen["spec"])
    report = _final(config, spec, data, train_split, board, out_dir)
    report["proxy_accuracy"] = chosen["accuracy"]
    report["trial"] = chosen["trial"]
    return SearchResult(trials_run=len(complete) - complete_before,
                        trials_total=len(rows), pareto=pareto, best=report, out_dir=out_dir,
                        best_dir=out_dir / "best",
                        files={"pareto_json": out_dir / "pareto.json",
                               "pareto_png": out_dir / "pareto.png",
                               "model": out_dir / "best" / "model.tflite"})
