"""The MCUNet search space: sampled specs are valid and build; MobileNetV2 0.35 has Keras's
layout."""

from __future__ import annotations

import random

import pytest

from edgekit.errors import UsageError
from edgekit.nas.mcunet import (
    EXPANSIONS, KERNELS, MCUNetSpec, make_divisible, mobilenet_v2_spec, same_pads, sample,
)

torch = pytest.importorskip("torch")


def test_make_divisible_matches_mobilenet_v2():
    assert [make_divisible(c * 0.35) for c in (32, 16, 24, 32, 64, 96, 160, 320)] == \
        [16, 8, 8, 16, 24, 32, 56, 112]


def test_same_pads_puts_the_odd_pixel_at_the_end():
    assert same_pads(144, 3, 2) == (72, 0, 1)
    assert same_pads(145, 3, 2) == (73, 1, 1)
    assert same_pads(9, 5, 1) == (9, 2, 2)


def test_samples_are_valid_and_build():
    rng = random.Random(3)
    for _ in range(20):
        spec = sample(rng)
        blocks = spec.blocks()
        assert len(blocks) == sum(spec.depths)
        assert all(b.kernel in KERNELS for b in blocks[1:])
        assert all(b.expansion in EXPANSIONS for b in blocks[1:])
        assert all(b.out_channels % 8 == 0 and b.in_channels % 8 == 0 for b in blocks)
        assert spec.patch_split is None or 0 <= spec.patch_split < len(blocks)
        assert MCUNetSpec.from_dict(spec.to_dict()) == spec
    spec = sample(5)
    out = spec_forward(spec, batch=2)
    assert out.shape == (2, spec.num_classes)


def spec_forward(spec, batch=1):
    from edgekit.nas.mcunet import to_torch
    net = to_torch(spec).eval()
    with torch.no_grad():
        return net(torch.zeros(batch, spec.in_channels, spec.resolution, spec.resolution))


def test_mobilenet_v2_035_has_the_keras_layout():
    spec = mobilenet_v2_spec(0.35, 144)
    blocks = spec.blocks()
    assert spec.stem_out == 16 and spec.last_channels == 1280 and len(blocks) == 17
    assert [b.out_channels for b in blocks] == [8] + [8] * 2 + [16] * 3 + [24] * 4 + [32] * 3 \
        + [56] * 3 + [112]
    assert [b.stride for b in blocks].count(2) == 4
    assert [b.residual for b in blocks].count(True) == 10
    net = spec_forward(spec)
    assert net.shape == (1, 1000)


def test_bad_specs_are_rejected_naming_the_field():
    good = sample(1).to_dict()
    with pytest.raises(UsageError, match="kernel"):
        MCUNetSpec.from_dict({**good, "kernels": (4,) * len(good["kernels"])})
    with pytest.raises(UsageError, match="patch_split"):
        MCUNetSpec.from_dict({**good, "patch_split": 99})
    with pytest.raises(UsageError, match="blocks"):
        MCUNetSpec.from_dict({**good, "kernels": (3,)})


def test_optuna_trial_drives_the_choices():
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    spec = sample(trial)
    assert trial.params["resolution"] == spec.resolution
    assert trial.params["width"] == spec.width
