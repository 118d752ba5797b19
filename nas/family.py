"""What a model family gives the search driver: the one interface `edgekit.nas.search` uses,
so MCUNetV2 CNNs, MCUFormer vision transformers and EmbBERT-Q language models go through the
same Optuna loop, budgets, final training, conversion and ``best/`` directory.

A family is a module-level object registered in `FAMILIES` (``edgekit search --space NAME``);
`get_family` imports the family's module (`MODULES`) the first time its name is asked for, so a
search imports only its own family. Its specs are frozen dataclasses with
``to_dict``/``from_dict``/``to_json``; its data is an `edgekit.nas.datasets.Dataset` whose
splits hold the model's inputs (images NHWC float32, or token ids int32 ``[N, T]``) and
integer labels. ``calib`` (`Family.int8_graph`) is a batch of such raw inputs drawn from the
training split: the family brings them to its model's input (resizing, ...) itself.

The driver asks `Family.memory` on every trial and calls the trial infeasible when
``peak_sram`` exceeds `edgekit.nas.search.sram_budget` (the board's SRAM less the firmware's
stack and data) or ``flash`` the board's flash; ``mac_overhead`` (optional, patch schedules)
is checked against ``SearchConfig.max_mac_overhead``. ``final_memory`` is optional: without
it, the driver plans the final int8 graph with the firmware's planner and takes the flash from
``memory(spec, board)``.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

import numpy as np

from edgekit.errors import UsageError


class Family(Protocol):
    name: str

    def space(self, data, config) -> Any:
        """The search space for ``data`` (its input shape and classes) and a `SearchConfig`;
        `UsageError` when the data or the config's bounds do not suit the family."""

    def sample(self, trial, space) -> Any:
        """One spec drawn through an Optuna ``trial``."""

    def spec_from_dict(self, d: dict) -> Any: ...

    def memory(self, spec, board) -> dict:
        """``{"peak_sram": bytes, "flash": bytes, "planned": bool, ["mac_overhead": float]}``
        from the memory planner (the firmware's plan of the int8 graph), cheap enough to call
        on every trial. ``planned`` False: ``peak_sram`` is a cheaper figure that already
        breaks the board's budget (the trial is not trained)."""

    def train(self, spec, split, *, steps: int, batch_size: int, seed: int, threads: int):
        """A trained float ``torch.nn.Module``."""

    def float_accuracy(self, module, spec, split) -> float: ...

    def int8_graph(self, module, spec, calib: np.ndarray):
        """The int8 `edgekit.ir.Graph` of a trained module, calibrated on ``calib`` (raw inputs
        of the training split, as the dataset holds them)."""

    def int8_accuracy(self, graph, spec, split) -> float:
        """Top-1 of the reference interpreter on ``split`` (what the firmware computes)."""

    # optional:
    # def final_memory(self, spec, graph, board) -> dict:
    #     """The final graph's figures for report.json: ``peak_sram``,
    #     ``peak_sram_layer_by_layer``, ``flash_estimate``, ``patch`` (``{"split": tensor or
    #     None, "n": N}``, written as best/patch.json), optionally ``mac_overhead`` and
    #     ``peak_sram_without_input``."""
    # def artifacts(self, spec) -> dict[str, str]:
    #     """Files for ``best/`` besides the model (name -> text): embbert's tokenizer.json."""
    # def supernet(self, space) -> torch.nn.Module:
    #     """The weight-sharing supernet of ``space`` (``--strategy supernet``): ``forward(x,
    #     spec)``, ``sandwich(rng)`` (a training step's specs), ``subnet(spec, calib)`` (a
    #     plain `train`-able module of ``spec`` with the inherited weights)."""
    # def macs(self, spec) -> int:
    #     """Multiply-accumulates of one inference (the supernet evolution's cost objective)."""


#: search space name -> the module that registers it
MODULES = {"mcunet": "edgekit.nas.mcunet_family", "mcuformer": "edgekit.nas.mcuformer",
           "embbert": "edgekit.nas.embbert"}

FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    FAMILIES[family.name] = family
    return family


def check_space(name: str) -> str:
    """``name`` when it is a known search space, else `UsageError` listing them."""
    if name not in MODULES:
        raise UsageError(f"unknown search space {name!r}; choose one of"
                         f" {', '.join(sorted(MODULES))}")
    return name


def get_family(name: str) -> Family:
    check_space(name)
    if name not in FAMILIES:
        try:
            importlib.import_module(MODULES[name])
        except ModuleNotFoundError as err:
            if err.name != MODULES[name]:
                raise
            raise UsageError(f"search space {name!r} is not available in this install"
                             f" ({MODULES[name]} is missing)") from None
    try:
        return FAMILIES[name]
    except KeyError:
        raise UsageError(f"{MODULES[name]} registers no family named {name!r}") from None
