"""A weight-sharing supernet of the MCUNet space (Once-for-All style), trained with the sandwich
rule, from which any sub-network is taken with its weights inherited.

Elastic dimensions, all of them slices of one set of shared weights sized for the space's
largest candidate (`largest_spec`):

- kernel 3/5/7: a depthwise kernel of size k is the centre k x k of the shared 7x7 kernel (OFA
  adds learned kernel-transform matrices; plain centre cropping is the cheap variant BigNAS
  uses, and it needs no extra weights to convert);
- expansion and width: the first channels of each shared conv (input and output channels are
  sliced, BatchNorm's affine parameters too), so a narrower layer reuses the most trained
  channels;
- depth: a stage runs its first ``depth`` blocks and skips the tail;
- resolution: the convolutions take any input size (SAME padding computed per size).

The patch schedule and the weight bits change no float weight: a sub-network is evaluated the
same whatever they are (they matter to memory and flash only, which the screen checks).

Training: the sandwich rule (BigNAS, AttentiveNAS): each step trains the largest sub-network
on the labels, then the smallest and two random ones on the largest's soft predictions
(in-place distillation), summing the gradients before one optimiser step. Why not OFA's
progressive shrinking: it trains the full network first, then unlocks kernel, depth, expansion
in phases, each a full schedule (OFA: ~1,200 GPU hours); on a 2-core CPU budget of minutes
only one short schedule is affordable, and the sandwich rule trains every sub-network size in
that one schedule (the smallest and largest bound the space, so both ends are trained).

Evaluation (`subnet`): the sub-network is copied out into a plain `to_torch` model (the same
module the final training and the converter take) and its BatchNorm statistics recalibrated on
training images: the shared running statistics belong to no single sub-network.
"""

from __future__ import annotations

import dataclasses
import math
import random

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgekit.nas.mcunet import MCUNetSpec, SearchSpace, largest_spec, make_divisible, same_pads

#: the loss weight of the label loss of the smaller sub-networks (the rest is distillation)
LABEL_WEIGHT = 0.5


def smallest_spec(space: SearchSpace) -> MCUNetSpec:
    """The candidate of ``space`` with the fewest weights and MACs (narrowest, shallowest,
    smallest kernels and expansions, lowest resolution; int8, layer by layer)."""
    big = largest_spec(space)
    n_stages = len(space.stages)
    n_blocks = 1 + min(space.depths) * n_stages
    width = min(space.widths)
    return dataclasses.replace(
        big, resolution=min(space.resolutions), width=width,
        depths=(1,) + (min(space.depths),) * n_stages,
        kernels=(3,) + (min(space.kernels),) * (n_blocks - 1),
        expansions=(1,) + (min(space.expansions),) * (n_blocks - 1),
        last_channels=make_divisible(640 * width))


class _SharedConv(nn.Module):
    """One shared convolution + BatchNorm, sliced to the sub-network's channels and kernel."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, *, depthwise: bool = False):
        super().__init__()
        self.depthwise = depthwise
        self.weight = nn.Parameter(torch.empty(out_ch, 1 if depthwise else in_ch, kernel, kernel))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        self.bn = nn.BatchNorm2d(out_ch)

    def sliced(self, in_ch: int, out_ch: int, kernel: int) -> torch.Tensor:
        full = self.weight.shape[-1]
        lo = (full - kernel) // 2
        return self.weight[:out_ch, :1 if self.depthwise else in_ch, lo:lo + kernel, lo:lo + kernel]

    def forward(self, x, out_ch: int, kernel: int, stride: int, act: bool = True):
        in_ch = x.shape[1]
        _, before, after = same_pads(x.shape[-1], kernel, stride)
        if before or after:
            x = F.pad(x, (before, after, before, after))
        y = F.conv2d(x, self.sliced(in_ch, out_ch, kernel), stride=stride,
                     groups=in_ch if self.depthwise else 1)
        bn = self.bn
        y = F.batch_norm(y, bn.running_mean[:out_ch], bn.running_var[:out_ch],
                         bn.weight[:out_ch], bn.bias[:out_ch], self.training, 0.1, bn.eps)
        return F.relu6(y) if act else y


class _SharedBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, hidden: int, kernel: int, expand: bool):
        super().__init__()
        self.expand = _SharedConv(in_ch, hidden, 1) if expand else None
        self.dw = _SharedConv(hidden, hidden, kernel, depthwise=True)
        self.project = _SharedConv(hidden, out_ch, 1)


class SuperNet(nn.Module):
    """The shared weights of every candidate of ``space``; ``forward(x, spec)`` runs one."""

    learning_rate = 3e-3  # Adam's, as the sub-networks' own training (`edgekit.nas.train`)

    def __init__(self, space: SearchSpace):
        super().__init__()
        big = largest_spec(space)
        self.space = space
        blocks = big.blocks()
        self.stem = _SharedConv(big.in_channels, big.stem_out, 3)
        #: per stage, its block slots (the first stage holds the fixed first block)
        self.stages = nn.ModuleList()
        i = 0
        for depth in big.depths:
            slots = nn.ModuleList()
            for _ in range(depth):
                b = blocks[i]
                slots.append(_SharedBlock(b.in_channels, b.out_channels, b.hidden, b.kernel,
                                          b.expansion != 1))
                i += 1
            self.stages.append(slots)
        self.head = _SharedConv(blocks[-1].out_channels, big.last_channels, 1)
        self.classifier = nn.Linear(big.last_channels, big.num_classes)

    def layers(self, spec: MCUNetSpec):
        """(shared conv, in channels, out channels, kernel) of each conv of ``spec`` in
        `to_torch`'s module order, and the blocks they belong to."""
        out = [(self.stem, spec.in_channels, spec.stem_out, 3)]
        blocks = iter(spec.blocks())
        for slots, depth in zip(self.stages, spec.depths):
            for slot in list(slots)[:depth]:
                b = next(blocks)
                if b.expansion != 1:
                    out.append((slot.expand, b.in_channels, b.hidden, 1))
                out.append((slot.dw, b.hidden, b.hidden, b.kernel))
                out.append((slot.project, b.hidden, b.out_channels, 1))
        out.append((self.head, spec.blocks()[-1].out_channels, spec.last_channels, 1))
        return out

    def forward(self, x, spec: MCUNetSpec):
        x = self.stem(x, spec.stem_out, 3, 2)
        blocks = iter(spec.blocks())
        for slots, depth in zip(self.stages, spec.depths):
            for slot in list(slots)[:depth]:
                b = next(blocks)
                y = slot.expand(x, b.hidden, 1, 1) if b.expansion != 1 else x
                y = slot.dw(y, b.hidden, b.kernel, b.stride)
                y = slot.project(y, b.out_channels, 1, 1, act=False)
                x = x + y if b.residual else y
        x = self.head(x, spec.last_channels, 1, 1)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return F.linear(x, self.classifier.weight[:, :spec.last_channels], self.classifier.bias)

    def sandwich(self, rng: random.Random, randoms: int = 2) -> list[MCUNetSpec]:
        return sandwich(self.space, rng, randoms)

    def subnet(self, spec: MCUNetSpec, calib: torch.Tensor | None = None) -> nn.Module:
        return subnet(self, spec, calib)


def subnet(supernet: SuperNet, spec: MCUNetSpec, calib: torch.Tensor | None = None) -> nn.Module:
    """``spec`` as a plain `to_torch` model with the supernet's weights; with ``calib`` (an
    NCHW batch of training images at ``spec.resolution``) its BatchNorm statistics are
    recomputed on it, else they are the supernet's (sliced)."""
    from edgekit.nas.torch_model import recalibrate_bn, to_torch

    model = to_torch(spec)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    layers = supernet.layers(spec)
    with torch.no_grad():
        for (shared, in_ch, out_ch, kernel), conv, bn in zip(layers, convs, norms, strict=True):
            conv.weight.copy_(shared.sliced(in_ch, out_ch, kernel))
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(bn, name).copy_(getattr(shared.bn, name)[:out_ch])
        model.classifier.weight.copy_(supernet.classifier.weight[:, :spec.last_channels])
        model.classifier.bias.copy_(supernet.classifier.bias)
    return recalibrate_bn(model, calib) if calib is not None else model.eval()


def sandwich(space: SearchSpace, rng: random.Random, randoms: int = 2) -> list[MCUNetSpec]:
    """The sub-networks of one training step: largest, smallest and ``randoms`` random ones."""
    from edgekit.nas.mcunet import sample

    return [largest_spec(space), smallest_spec(space)] + [sample(rng, space)
                                                          for _ in range(randoms)]


def train_steps(supernet: nn.Module, opt, images: np.ndarray, labels: np.ndarray, *,
                start: int, stop: int, total: int, batch_size: int, seed: int,
                lr: float = 3e-3, on_step=None) -> None:
    """Sandwich-rule steps ``start``..``stop - 1`` of a ``total``-step cosine schedule. Each
    step's batch and sub-networks are drawn from (seed, step) alone, so a schedule resumed
    from a checkpoint at step k trains exactly as the uninterrupted one would. ``supernet``:
    any family's (`SuperNet`, `edgekit.nas.mcuformer_supernet.SuperFormer`): its
    ``sandwich(rng)`` names the step's sub-networks, ``forward(x, spec)`` runs one."""
    from edgekit.nas.train import to_input

    y_all = torch.from_numpy(labels)
    inputs: dict[int, torch.Tensor] = {}  # resolution -> all training images at it
    supernet.train()
    for step in range(start, stop):
        rng = random.Random(f"{seed}/{step}")
        idx = torch.from_numpy(np.random.default_rng([seed, step]).integers(
            0, len(labels), size=min(batch_size, len(labels))))
        for group in opt.param_groups:
            group["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / max(total, 1))))
        opt.zero_grad()
        teacher = None
        for i, spec in enumerate(supernet.sandwich(rng)):
            if spec.resolution not in inputs:
                inputs[spec.resolution] = to_input(images, spec.resolution)
            logits = supernet(inputs[spec.resolution][idx], spec)
            loss = F.cross_entropy(logits, y_all[idx])
            if i == 0:
                teacher = F.softmax(logits.detach(), 1)
            else:  # in-place distillation from the largest
                distill = F.kl_div(F.log_softmax(logits, 1), teacher, reduction="batchmean")
                loss = LABEL_WEIGHT * loss + (1 - LABEL_WEIGHT) * distill
            loss.backward()
        opt.step()
        if on_step is not None:
            on_step(step + 1)
    supernet.eval()
