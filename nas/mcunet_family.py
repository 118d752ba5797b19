"""The MCUNetV2 space (`edgekit.nas.mcunet`) as the search driver's ``mcunet`` family.

Memory per trial as the search always did it: the fast figure (`peak_sram_bound`) and the
spec's flash estimate prune; a candidate that passes both is planned for real
(`firmware_memory`, the patch schedule included), and a patched one gets the patched graph's
flash. The final model's figures (`final_memory`) carry its patch schedule, which the driver
writes as best/patch.json for `edgekit build`.

Weight bits (``edgekit search --bits``, `SearchConfig.bits`): ``8``, ``4`` or ``mixed`` (each
layer 8 or 4, drawn with the architecture); none given, ``mixed`` where the board's flash binds
(`flash_binds`), else ``8``. The flash figures count int4 weights packed; the chosen model is
converted with its own per-layer bits (int4 layers with ``--recover``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from edgekit.errors import UsageError
from edgekit.nas.family import register


#: ``edgekit search --bits`` -> the weight bits each layer may take
SPACE_BITS = {"8": (8,), "4": (4,), "mixed": (8, 4)}


def flash_binds(space, board) -> bool:
    """True when the largest int8 candidate of ``space`` (`largest_spec`) does not fit
    ``board``'s flash (the flash estimate), so int4 layers widen what the search can take."""
    from edgekit.nas.codesize import flash_estimate
    from edgekit.nas.mcunet import largest_spec

    return flash_estimate(largest_spec(space), cpu=board.cpu) > board.flash_bytes


def default_bits(space, board) -> str:
    """``edgekit search``'s ``--bits`` when none is given: mixed where flash binds, else 8."""
    return "mixed" if flash_binds(replace(space, bits=(8,)), board) else "8"


class MCUNetFamily:
    name = "mcunet"

    def space(self, data, config):
        from edgekit.boards import load_board
        from edgekit.nas.mcunet import SearchSpace

        if len(data.image_shape) != 3:
            raise UsageError(f"search space mcunet takes images (N, H, W, C); dataset"
                             f" {data.name!r} holds inputs of shape {data.image_shape}")
        bounds = {k: tuple(v) for k, v in (("resolutions", config.resolutions),
                                            ("widths", config.widths)) if v is not None}
        space = SearchSpace(in_channels=data.image_shape[-1], num_classes=data.num_classes,
                            **bounds)
        bits = config.bits or default_bits(space, load_board(config.board))
        return replace(space, bits=SPACE_BITS[bits])

    def sample(self, trial, space):
        from edgekit.nas.mcunet import sample

        return sample(trial, space)

    def spec_from_dict(self, d: dict):
        from edgekit.nas.mcunet import MCUNetSpec

        return MCUNetSpec.from_dict(d)

    def memory(self, spec, board, max_instructions: int | None = None) -> dict:
        """Peak SRAM, flash, recomputation and (for a candidate within the budgets) estimated
        instructions of ``spec`` on ``board``. With ``max_instructions``, a candidate whose
        layer-by-layer estimate is already over it is not planned (its figures stay the fast
        ones): a patch schedule only adds recomputed work, so that estimate is a lower bound,
        found in milliseconds where the planner takes seconds. The planned figure uses
        `SCREEN_STRATEGY`: never below the build's arena (`final_memory` plans that exactly)."""
        from edgekit.nas.codesize import flash_estimate
        from edgekit.nas.memory import (SCREEN_STRATEGY, firmware_memory, graph_from_spec,
                                        peak_sram_bound)
        from edgekit.nas.search import sram_budget
        from edgekit.planner.objective import fastest_instructions

        flash = flash_estimate(spec, cpu=board.cpu)
        memory = {"peak_sram": peak_sram_bound(spec), "flash": flash, "planned": False,
                  "mac_overhead": 0.0}
        if memory["peak_sram"] > sram_budget(board) or flash > board.flash_bytes:
            return memory
        graph = graph_from_spec(spec)
        if max_instructions is not None:
            bound = fastest_instructions(graph, board.cpu)
            if bound > max_instructions:
                return {**memory, "instructions": bound}
        peak, graph, overhead = firmware_memory(spec, graph, strategy=SCREEN_STRATEGY)
        if spec.patch_split is not None:
            flash = flash_estimate(spec, graph=graph, cpu=board.cpu)
        # the latency objective, from the kernel cost model (`edgekit.kernel_costs`)
        return {"peak_sram": peak, "flash": flash, "planned": True, "mac_overhead": overhead,
                "instructions": fastest_instructions(graph, board.cpu)}

    def optimise_space(self, space, board, *, sram: int, samples: int, seed: int):
        """TinyNAS's choice of resolution and width for ``board`` (`edgekit.nas.space_opt`)."""
        from edgekit.nas.space_opt import optimise_space

        return optimise_space(space, board, sram=sram, samples=samples, seed=seed)

    def supernet(self, space):
        from edgekit.nas.supernet import SuperNet

        return SuperNet(space)

    def macs(self, spec) -> int:
        from edgekit.nas.space_opt import spec_macs

        return spec_macs(spec)

    def train(self, spec, split, *, steps: int, batch_size: int, seed: int, threads: int,
              model=None):
        """``model``: a module of ``spec`` to continue training (the supernet's weights)."""
        from edgekit.nas.train import train

        return train(spec, split, steps=steps, batch_size=batch_size, seed=seed, threads=threads,
                     model=model)

    def float_accuracy(self, module, spec, split) -> float:
        from edgekit.nas.train import float_accuracy

        return float_accuracy(module, spec, split)

    def int8_graph(self, module, spec, calib: np.ndarray):
        from edgekit.nas.convert import int8_graph
        from edgekit.nas.mcunet import bits_spec
        from edgekit.nas.train import to_input

        return int8_graph(module, to_input(calib, spec.resolution).numpy(),
                          bits=bits_spec(spec))

    def int8_accuracy(self, graph, spec, split) -> float:
        from edgekit.nas.train import int8_accuracy

        return int8_accuracy(graph, spec, split)

    def final_memory(self, spec, graph, board) -> dict:
        """The converted graph's arena layer by layer and with the spec's patch schedule, with
        the input counted (it lives in SRAM) and without it (as MCUNetV2's papers count)."""
        from edgekit.firmware.codegen import available_inplace_modes, firmware_plan
        from edgekit.nas.codesize import flash_estimate
        from edgekit.nas.memory import patch_schedule

        schedule = patch_schedule(spec, graph)
        whole = firmware_plan(graph)
        memory = {"peak_sram_layer_by_layer": whole.arena_bytes}
        chosen, runs = whole, graph
        if schedule is not None:
            from edgekit.patching import plan_patched

            patched = plan_patched(graph, schedule, inplace=available_inplace_modes())
            chosen, runs = patched.plan, patched.graph
            memory["mac_overhead"] = round(patched.mac_overhead, 4)
        try:
            from edgekit.patching import peak_without_inputs

            memory["peak_sram_without_input"] = peak_without_inputs(chosen)
        except ImportError:
            pass
        from edgekit.nas.mcunet import bits_spec

        return {"peak_sram": chosen.arena_bytes, **memory, "bits": str(bits_spec(spec)),
                "flash_estimate": flash_estimate(spec, graph=runs, cpu=board.cpu),
                "patch": schedule.to_dict() if schedule else {"split": None, "n": 1}}


FAMILY = register(MCUNetFamily())
