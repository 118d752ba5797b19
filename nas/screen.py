"""Screening: a trial trains only a candidate that fits the board, found by redrawing.

Inside one trial, candidates are drawn from the trial's own sampler (the slot-seeded TPE the
objective sets: its random start-up draws first, then its Parzen estimators over the finished
trials) without being recorded, and each is checked with the family's memory figures
(`Family.memory`: for mcunet the fast planner model, thousands per second, and the real
planner only for one that passes it) against the SRAM, flash and recomputation limits. The
first feasible draw becomes the trial's parameters: a `ReplaySampler` hands its values to the
trial's ``suggest_*`` calls, so the study stores them as sampled and TPE learns from them.
At most `MAX_DRAWS` draws; then the space has no candidate that fits (`SearchError`).

Why this and not the alternatives: a candidate Optuna suggests through the trial is fixed in
the trial once suggested, so it cannot be redrawn there; ``constraints_func`` only tells the
sampler afterwards, when the trial (and the training) is spent; ``enqueue_trial`` of
candidates drawn from a plain random source would bypass TPE altogether. Drawing from the
sampler and replaying the feasible draw keeps TPE's proposals (draws it proposes that do not
fit are simply not taken) and costs nothing but the memory model. Rejected draws are not
stored as trials: they would count against ``--trials``; their number per reason is the
trial's ``rejected`` attribute.

Every draw is a function of the slot's seed and the finished trials, so a resumed search
screens the same way. A trial queued again after its worker died already carries the
parameters it had drawn (Optuna's fixed params): it is not screened again.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from edgekit.errors import EdgekitError, SearchError

#: draws one trial may reject before the space is declared to hold nothing that fits
MAX_DRAWS = 10_000
#: draws taken from the trial's sampler before the rest come from a uniform random sampler:
#: past its start-up trials TPE proposes near the best finished trials, and on a tight board
#: it can keep proposing only candidates just over a budget; a uniform draw still finds the
#: small ones (seeded from the sampler's own seed, so a resumed search screens the same way)
SAMPLER_DRAWS = 100
#: rejection reasons, in the order they are checked (a draw counts once, by the first)
REASONS = ("sram", "flash", "recompute", "latency", "refused")


@dataclass(frozen=True)
class Limits:
    """What a candidate must fit before it costs anything: the arena's SRAM budget, the board's
    flash, the patches' recomputed MACs (a fraction of the layer-by-layer MACs) and, when
    given, the estimated instructions per inference of its fastest plan (`edgekit.kernel_costs`:
    the latency constraint)."""

    sram: int
    flash: int
    max_mac_overhead: float = 1.0
    max_instructions: int | None = None

    @classmethod
    def of(cls, config, board) -> "Limits":
        """The limits of a `edgekit.nas.search.SearchConfig` on ``board``."""
        from edgekit.nas.search import sram_budget

        return cls(sram_budget(board), board.flash_bytes, config.max_mac_overhead,
                   config.max_instructions)

    def names(self) -> tuple[str, ...]:
        """The names of `violations`' values, in order."""
        return ("sram", "flash", "mac_overhead") + (
            ("instructions",) if self.max_instructions is not None else ())

    def text(self) -> str:
        latency = ("" if self.max_instructions is None
                   else f", at most {self.max_instructions:,} estimated instructions")
        return (f"{self.sram} B SRAM for the arena, {self.flash} B flash, at most"
                f" {self.max_mac_overhead:g}x MACs recomputed{latency}")


@dataclass
class Screened:
    spec: Any
    #: `Family.memory` of ``spec``
    memory: dict
    #: rejected draws by reason (`REASONS`)
    rejected: dict[str, int]
    #: whether the draws were screened (False: the trial's parameters were fixed already)
    screened: bool = True


def violations(memory: dict, limits: Limits) -> list[float]:
    """The constraint values (feasible when <= 0), named by `Limits.names`: SRAM, flash,
    recomputed MACs, and estimated instructions when ``limits`` bounds them."""
    values = [float(int(memory["peak_sram"]) - limits.sram),
              float(int(memory["flash"]) - limits.flash),
              float(memory.get("mac_overhead", 0.0)) - limits.max_mac_overhead]
    if limits.max_instructions is not None:
        # a candidate over the SRAM or flash budget is not planned and has no estimate: it is
        # rejected by those values first
        instructions = memory.get("instructions")
        values.append(0.0 if instructions is None
                      else float(int(instructions) - limits.max_instructions))
    return values


def rejection(family, spec, board, limits: Limits) -> tuple[dict | None, str | None]:
    """(memory figures, None) when ``spec`` fits ``limits``, else (figures or None, the first
    reason)."""
    try:
        if limits.max_instructions is None:
            memory = family.memory(spec, board)
        else:  # only families with an instruction estimate take it (`SearchConfig` checks)
            memory = family.memory(spec, board, max_instructions=limits.max_instructions)
    except EdgekitError:
        return None, "refused"  # a candidate the planner or the patcher refuses
    for reason, value in zip(REASONS, violations(memory, limits)):
        if value > 0:
            return memory, reason
    return memory, None


class _Proposal:
    """Stands in for an Optuna trial in `Family.sample`: each ``suggest_*`` asks the sampler
    for a value without recording it in the study."""

    def __init__(self, study, frozen, sampler):
        self.study, self.frozen, self.sampler = study, frozen, sampler
        self.params: dict[str, Any] = {}

    def _draw(self, name: str, distribution):
        value = self.sampler.sample_independent(self.study, self.frozen, name, distribution)
        self.params[name] = value
        return value

    def suggest_categorical(self, name: str, choices):
        from optuna.distributions import CategoricalDistribution

        return self._draw(name, CategoricalDistribution(list(choices)))

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False):
        from optuna.distributions import IntDistribution

        return int(self._draw(name, IntDistribution(low, high, step=step, log=log)))

    def suggest_float(self, name: str, low: float, high: float, step=None, log: bool = False):
        from optuna.distributions import FloatDistribution

        return float(self._draw(name, FloatDistribution(low, high, step=step, log=log)))


def replay_sampler(params: dict[str, Any]):
    """A sampler that answers each ``suggest_*`` of a trial with ``params[name]``."""
    import optuna

    class ReplaySampler(optuna.samplers.BaseSampler):
        def infer_relative_search_space(self, study, trial):
            return {}

        def sample_relative(self, study, trial, search_space):
            return {}

        def sample_independent(self, study, trial, param_name, param_distribution):
            return params[param_name]

    return ReplaySampler()


def _frozen(trial):
    return next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)


def draw_feasible(trial, sampler, family, space, board, limits: Limits, *,
                  max_draws: int = MAX_DRAWS) -> Screened:
    """Draw candidates from ``sampler`` until one fits ``board``, then make it ``trial``'s
    parameters (the study's sampler is left as a `replay_sampler`). `SearchError` after
    ``max_draws`` rejected draws."""
    frozen = _frozen(trial)
    if frozen.system_attrs.get("fixed_params"):
        # a trial queued again with the parameters its lost run had drawn (and screened)
        spec = family.sample(trial, space)
        memory, _ = rejection(family, spec, board, limits)
        if memory is None:
            memory = family.memory(spec, board)  # the refusal, as the trial's error
        return Screened(spec, memory, {}, screened=False)
    rejected: Counter = Counter()
    for draw in range(max_draws):
        if draw == SAMPLER_DRAWS:
            sampler = _uniform_fallback(sampler)
        proposal = _Proposal(trial.study, frozen, sampler)
        spec = family.sample(proposal, space)
        memory, reason = rejection(family, spec, board, limits)
        if reason is None:
            trial.study.sampler = replay_sampler(proposal.params)
            chosen = family.sample(trial, space)
            return Screened(chosen, memory, {r: rejected[r] for r in REASONS if rejected[r]})
        rejected[reason] += 1
    raise SearchError(
        f"no candidate of the {family.name} space fits {board.id} ({limits.text()}):"
        f" {max_draws} draws rejected ({_totals_text(rejected)}); widen the space"
        " (--resolutions, --widths) towards smaller models or choose a larger board")


def _uniform_fallback(sampler):
    """A uniform random sampler seeded from ``sampler``'s own random state (deterministic for a
    seeded sampler)."""
    import numpy as np
    import optuna

    rng = getattr(sampler, "_rng", None)
    rng = getattr(rng, "rng", rng)  # optuna wraps numpy's RandomState in a LazyRandomState
    seed = int(rng.randint(0, 2**31 - 1)) if isinstance(rng, np.random.RandomState) else 0
    return optuna.samplers.RandomSampler(seed=seed)


def _totals_text(rejected: dict) -> str:
    return ", ".join(f"{reason} {rejected[reason]}" for reason in REASONS if rejected.get(reason))


def rejected_totals(trials) -> dict[str, int]:
    """Rejected draws of ``trials`` (their ``rejected`` attributes) summed by reason, with
    ``total``."""
    sums: Counter = Counter()
    for trial in trials:
        sums.update(trial.user_attrs.get("rejected", {}))
    out = {reason: sums[reason] for reason in REASONS}
    out["total"] = sum(out.values())
    return out


def rejected_text(totals: dict) -> str:
    """"rejected 412 candidates before training: sram 300, flash 100, recompute 12"."""
    if not totals.get("total"):
        return "rejected no candidate before training"
    return f"rejected {totals['total']} candidates before training: {_totals_text(totals)}"
