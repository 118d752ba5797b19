"""What a model family gives the search driver: the one interface `edgekit.nas.search` uses,
so MCUNetV2 CNNs, MCUFormer vision transformers and EmbBERT-Q language models go through the
same Optuna loop, budgets, final training, conversion and ``best/`` directory.

A family is a module-level object registered in `FAMILIES` (``edgekit search --space NAME``).
Its specs are frozen dataclasses with ``to_dict``/``from_dict``/``to_json``; its data is an
`edgekit.nas.datasets.Dataset` whose splits hold the model's inputs (images NHWC float32, or
token ids int32 ``[N, T]``) and integer labels.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from edgekit.errors import UsageError


class Family(Protocol):
    name: str

    def space(self, data, config) -> Any:
        """The search space for ``data`` (its input shape and classes) and a `SearchConfig`."""

    def sample(self, trial, space) -> Any:
        """One spec drawn through an Optuna ``trial``."""

    def spec_from_dict(self, d: dict) -> Any: ...

    def memory(self, spec, board) -> dict:
        """``{"peak_sram": bytes, "flash": bytes, "planned": bool, ...}`` from the memory planner
        (the firmware's plan of the int8 graph), cheap enough to call on every trial."""

    def train(self, spec, split, *, steps: int, batch_size: int, seed: int, threads: int):
        """A trained float ``torch.nn.Module``."""

    def float_accuracy(self, module, spec, split) -> float: ...

    def int8_graph(self, module, spec, calib: np.ndarray):
        """The int8 `edgekit.ir.Graph` of a trained module, calibrated on ``calib`` inputs."""

    def int8_accuracy(self, graph, spec, split) -> float:
        """Top-1 of the reference interpreter on ``split`` (what the firmware computes)."""


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    FAMILIES[family.name] = family
    return family


def get_family(name: str) -> Family:
    # the families register themselves on import
    from edgekit.nas import embbert, mcuformer, mcunet  # noqa: F401

    try:
        return FAMILIES[name]
    except KeyError:
        raise UsageError(f"unknown search space {name!r}; choose one of"
                         f" {', '.join(sorted(FAMILIES))}") from None
