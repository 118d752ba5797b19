"""Evolution over a search space's choices: genomes, mutation, crossover and NSGA-II selection.

A genome is the dict of choices `edgekit.nas.mcunet.sample` makes (name -> value, the names
an Optuna trial would hold), so a genome is stored as a trial's parameters and decoded back
into its spec by replaying it through the same `sample`. Selection is NSGA-II's (Deb et al.
2002): non-dominated fronts first, then crowding distance within the last front taken, so the
population keeps spread along the accuracy / SRAM / MACs front.
"""

from __future__ import annotations

import random
from typing import Any, Callable


class _Recorder:
    """Stands in for an Optuna trial in ``sample``: answers each choice from ``genome`` (or at
    random where the genome lacks it) and records every choice's options."""

    def __init__(self, rng: random.Random, genome: dict[str, Any] | None = None):
        self.rng, self.genome = rng, dict(genome or {})
        self.options: dict[str, tuple] = {}

    def suggest_categorical(self, name: str, options):
        self.options[name] = tuple(options)
        if name not in self.genome or self.genome[name] not in self.options[name]:
            self.genome[name] = self.rng.choice(self.options[name])
        return self.genome[name]


def decode(sample: Callable, space, genome: dict[str, Any]):
    """The spec of ``genome`` (``sample(trial, space)`` replayed)."""
    return sample(_Recorder(random.Random(0), genome), space)


def random_genome(sample: Callable, space, rng: random.Random) -> tuple[dict, dict]:
    """(a uniformly drawn genome, every choice's options)."""
    rec = _Recorder(rng)
    sample(rec, space)
    return rec.genome, rec.options


def mutate(genome: dict, options: dict, rng: random.Random, rate: float) -> dict:
    """Each choice redrawn with probability ``rate``."""
    return {k: rng.choice(options[k]) if rng.random() < rate else v for k, v in genome.items()}


def crossover(a: dict, b: dict, rng: random.Random) -> dict:
    """Uniform crossover: each choice from one parent or the other."""
    return {k: a[k] if rng.random() < 0.5 else b[k] for k in a}


def _dominates(p: tuple, q: tuple) -> bool:
    return all(x <= y for x, y in zip(p, q)) and p != q


def select(points: list[tuple[float, ...]], count: int) -> list[int]:
    """Indices of the ``count`` best ``points`` (every objective minimised): NSGA-II's
    non-dominated sorting, ties in the last front broken by crowding distance (largest
    first)."""
    remaining, chosen = list(range(len(points))), []
    while remaining and len(chosen) < count:
        front = [i for i in remaining
                 if not any(_dominates(points[j], points[i]) for j in remaining if j != i)]
        if len(chosen) + len(front) > count:
            distance = _crowding(points, front)
            front.sort(key=lambda i: -distance[i])
            front = front[:count - len(chosen)]
        chosen += front
        remaining = [i for i in remaining if i not in set(front)]
    return chosen


def _crowding(points: list[tuple], front: list[int]) -> dict[int, float]:
    distance = {i: 0.0 for i in front}
    for m in range(len(points[front[0]])):
        order = sorted(front, key=lambda i: points[i][m])
        span = points[order[-1]][m] - points[order[0]][m] or 1.0
        distance[order[0]] = distance[order[-1]] = float("inf")
        for prev, i, nxt in zip(order, order[1:], order[2:]):
            distance[i] += (points[nxt][m] - points[prev][m]) / span
    return distance
