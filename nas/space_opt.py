"""Search-space optimisation (MCUNet's TinyNAS, first step): for one board, choose the input
resolution and width multiplier before the search.

For each (resolution, width) of the space, `samples` random sub-networks are drawn (the other
choices at random, seeded) and checked against the board with the fast memory figures
(`edgekit.nas.memory.peak_sram_bound`: exact layer by layer, a lower bound for a patched
candidate, and `edgekit.nas.codesize.flash_estimate`). MCUNet's observation: among the choices
whose models fit, the one whose fitting models have the most compute (MACs) gives the most
accurate models. So the choice is the (resolution, width) with the highest mean MACs over its
fitting samples, among those where at least `MIN_FIT_FRACTION` of the samples fit (a choice
where almost nothing fits would cost the screening thousands of draws per trial). The search
then runs in that corner of the space; the figures of every choice are recorded.
"""

from __future__ import annotations

import dataclasses
import itertools
import random

import numpy as np

#: a (resolution, width) choice is eligible only when at least this fraction of samples fit
MIN_FIT_FRACTION = 0.05


def spec_macs(spec) -> int:
    """Multiply-accumulates of one inference of an `MCUNetSpec` (as `edgekit.costs` counts
    them on its graph: one per weight tap per output element)."""
    size = -(-spec.resolution // 2)
    macs = size * size * 9 * spec.in_channels * spec.stem_out
    for block in spec.blocks():
        if block.expansion != 1:
            macs += size * size * block.in_channels * block.hidden
        size = -(-size // block.stride)
        macs += size * size * block.kernel * block.kernel * block.hidden
        macs += size * size * block.hidden * block.out_channels
    last_in = spec.blocks()[-1].out_channels
    return macs + size * size * last_in * spec.last_channels + spec.last_channels * spec.num_classes


def fits_fast(spec, board, sram: int) -> bool:
    from edgekit.nas.codesize import flash_estimate
    from edgekit.nas.memory import peak_sram_bound

    return (peak_sram_bound(spec) <= sram
            and flash_estimate(spec, cpu=board.cpu) <= board.flash_bytes)


def optimise_space(space, board, *, sram: int, samples: int, seed: int, fits=fits_fast):
    """(the space narrowed to the chosen resolution and width, the record of the choice)."""
    from edgekit.nas.mcunet import sample

    options = []
    for resolution, width in itertools.product(space.resolutions, space.widths):
        corner = dataclasses.replace(space, resolutions=(resolution,), widths=(width,))
        rng = random.Random(f"{seed}/{resolution}/{width}")
        macs = [spec_macs(s) for s in (sample(rng, corner) for _ in range(samples))
                if fits(s, board, sram)]
        options.append({"resolution": resolution, "width": width,
                        "fit_fraction": round(len(macs) / samples, 4),
                        "mean_macs": int(np.mean(macs)) if macs else 0})
    eligible = [o for o in options if o["fit_fraction"] >= MIN_FIT_FRACTION]
    record = {"samples_per_choice": samples, "min_fit_fraction": MIN_FIT_FRACTION,
              "options": options}
    if not eligible:
        return space, {**record, "chosen": None,
                       "why": f"no (resolution, width) has {MIN_FIT_FRACTION:.0%} of its"
                              " samples fitting the board: the space is searched whole"}
    best = max(eligible, key=lambda o: (o["mean_macs"], o["fit_fraction"]))
    narrowed = dataclasses.replace(space, resolutions=(best["resolution"],),
                                   widths=(best["width"],))
    return narrowed, {**record, "chosen": {"resolution": best["resolution"],
                                           "width": best["width"]},
                      "why": f"highest mean MACs ({best['mean_macs']}) of the sub-networks that"
                             f" fit {board.id} ({best['fit_fraction']:.0%} of"
                             f" {samples} samples fit)"}
