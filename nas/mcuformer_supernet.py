"""A weight-sharing supernet of the MCUFormer space, for ``edgekit search --space mcuformer
--strategy supernet``: the same sandwich-rule training and evolution as the MCUNet supernet
(`edgekit.nas.supernet`, `edgekit.nas.search_supernet`).

Weight entanglement, as MCUFormer's one-shot search inherits it from AutoFormer: every choice
of a sub-network is a slice of one set of weights sized for the space's largest candidate, so
a narrower or shallower sub-network reuses the first (most trained) rows and columns:

- embedding dimension d: the first d channels of the patch embedding, the positional
  embedding, every LayerNorm's affine parameters, the q/k/v/projection matrices ([:d, :d]) and
  the classifier's inputs;
- heads: free (the d channels are split into ``heads`` groups; no weight changes);
- MLP ratio and rank: the first ``hidden`` and ``rank`` rows/columns of the shared low-rank
  factors U and V;
- depth: the first ``depth`` blocks;
- (resolution, patch): one patch embedding per patch size and one positional embedding per
  pair (a different kernel shape and token count share no weights).

LayerNorm normalises over the sub-network's own d channels, so, unlike the CNN's BatchNorm,
nothing is recalibrated when a sub-network is taken out: `SuperFormer.subnet` copies the slices
into a plain `edgekit.nas.mcuformer_torch.MCUFormer` (the module the final training and the
converter take), which computes what ``forward(x, spec)`` computes.
"""

from __future__ import annotations

import dataclasses
import math
import random

import torch
import torch.nn.functional as F
from torch import nn

from edgekit.nas.mcuformer import MCUFormerSpec, SearchSpace, sample
from edgekit.nas.mcuformer_torch import LEARNING_RATE, to_torch


def largest_spec(space: SearchSpace) -> MCUFormerSpec:
    """The candidate with the most weights and MACs: the most tokens, widest, deepest."""
    resolution, patch = max(space.resolution_patches, key=lambda rp: ((rp[0] // rp[1]) ** 2, rp))
    return MCUFormerSpec(resolution=resolution, in_channels=space.in_channels,
                         num_classes=space.num_classes, embed_dim=max(space.embed_dims),
                         depth=max(space.depths), heads=max(space.heads),
                         mlp_ratio=max(space.mlp_ratios), rank_ratio=max(space.rank_ratios),
                         patch=patch)


def smallest_spec(space: SearchSpace) -> MCUFormerSpec:
    """The candidate with the fewest weights and MACs."""
    resolution, patch = min(space.resolution_patches, key=lambda rp: ((rp[0] // rp[1]) ** 2, rp))
    return dataclasses.replace(largest_spec(space), resolution=resolution, patch=patch,
                               embed_dim=min(space.embed_dims), depth=min(space.depths),
                               heads=min(space.heads), mlp_ratio=min(space.mlp_ratios),
                               rank_ratio=min(space.rank_ratios))


def _linear(layer: nn.Linear, x, out: int, into: int):
    bias = None if layer.bias is None else layer.bias[:out]
    return F.linear(x, layer.weight[:out, :into], bias)


def _norm(layer: nn.LayerNorm, x, d: int):
    return F.layer_norm(x, (d,), layer.weight[:d], layer.bias[:d], layer.eps)


class _SharedBlock(nn.Module):
    """One block slot, in `edgekit.nas.mcuformer_torch.Block`'s layout, at the largest sizes."""

    def __init__(self, dim: int, hidden: int, rank: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.fc1_u, self.fc1_v = nn.Linear(dim, rank, bias=False), nn.Linear(rank, hidden)
        self.fc2_u, self.fc2_v = nn.Linear(hidden, rank, bias=False), nn.Linear(rank, dim)

    def forward(self, x, spec: MCUFormerSpec):
        n, t, d = x.shape
        heads, hidden, rank = spec.heads, spec.hidden, spec.rank

        def split(y):  # [N, T, d] -> [N, heads, T, d / heads]
            return y.reshape(n, t, heads, d // heads).transpose(1, 2)

        h = _norm(self.ln1, x, d)
        q, k, v = (split(_linear(m, h, d, d)) for m in (self.q, self.k, self.v))
        p = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // heads), dim=-1)
        x = x + _linear(self.proj, (p @ v).transpose(1, 2).reshape(n, t, d), d, d)
        h = _linear(self.fc1_v, _linear(self.fc1_u, _norm(self.ln2, x, d), rank, d), hidden, rank)
        h = _linear(self.fc2_v, _linear(self.fc2_u, F.gelu(h), rank, hidden), d, rank)
        return x + h

    def copy_into(self, block, spec: MCUFormerSpec) -> None:
        """Copy this slot's slices for ``spec`` into a plain `Block`."""
        d, hidden, rank = spec.embed_dim, spec.hidden, spec.rank
        pairs = [(block.ln1, self.ln1, d, None), (block.ln2, self.ln2, d, None),
                 (block.q, self.q, d, d), (block.k, self.k, d, d), (block.v, self.v, d, d),
                 (block.proj, self.proj, d, d), (block.fc1.u, self.fc1_u, rank, d),
                 (block.fc1.v, self.fc1_v, hidden, rank), (block.fc2.u, self.fc2_u, rank, hidden),
                 (block.fc2.v, self.fc2_v, d, rank)]
        for plain, shared, out, into in pairs:
            plain.weight.copy_(shared.weight[:out] if into is None
                               else shared.weight[:out, :into])
            if plain.bias is not None:
                plain.bias.copy_(shared.bias[:out])


def _pair_key(resolution: int, patch: int) -> str:
    return f"{resolution}_{patch}"


class SuperFormer(nn.Module):
    """The shared weights of every candidate of ``space``; ``forward(x, spec)`` runs one (NCHW
    images at ``spec.resolution``)."""

    learning_rate = LEARNING_RATE  # Adam's, as the sub-networks' own training

    def __init__(self, space: SearchSpace):
        super().__init__()
        self.space = space
        big = largest_spec(space)
        dim = big.embed_dim
        hidden = max(max(1, round(d * r)) for d in space.embed_dims for r in space.mlp_ratios)
        rank = min(dim, hidden)  # rank_ratio <= 1 of min(d, hidden) never exceeds this
        self.embeds = nn.ModuleDict({str(p): nn.Conv2d(space.in_channels, dim, p, stride=p)
                                     for p in sorted({p for _, p in space.resolution_patches})})
        self.pos = nn.ParameterDict({
            _pair_key(r, p): nn.Parameter(torch.randn(1, (r // p) ** 2, dim) * 0.02)
            for r, p in space.resolution_patches})
        self.blocks = nn.ModuleList(_SharedBlock(dim, hidden, rank) for _ in range(big.depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, space.num_classes)

    def forward(self, x, spec: MCUFormerSpec):
        d = spec.embed_dim
        embed = self.embeds[str(spec.patch)]
        x = F.conv2d(x, embed.weight[:d], embed.bias[:d], stride=spec.patch)
        x = x.flatten(2).transpose(1, 2) + self.pos[_pair_key(spec.resolution, spec.patch)][..., :d]
        for block in list(self.blocks)[:spec.depth]:
            x = block(x, spec)
        return _linear(self.head, _norm(self.norm, x, d).mean(dim=1), spec.num_classes, d)

    def sandwich(self, rng: random.Random, randoms: int = 2) -> list[MCUFormerSpec]:
        """The sub-networks of one training step: largest, smallest and ``randoms`` random."""
        return ([largest_spec(self.space), smallest_spec(self.space)]
                + [sample(rng, self.space) for _ in range(randoms)])

    def subnet(self, spec: MCUFormerSpec, calib: torch.Tensor | None = None) -> nn.Module:
        """``spec`` as a plain `MCUFormer` with the supernet's weights (``calib`` is not needed:
        LayerNorm keeps no running statistics)."""
        d = spec.embed_dim
        model = to_torch(spec)
        embed = self.embeds[str(spec.patch)]
        with torch.no_grad():
            model.embed.weight.copy_(embed.weight[:d])
            model.embed.bias.copy_(embed.bias[:d])
            model.pos.copy_(self.pos[_pair_key(spec.resolution, spec.patch)][..., :d])
            for plain, shared in zip(model.blocks, self.blocks):
                shared.copy_into(plain, spec)
            model.norm.weight.copy_(self.norm.weight[:d])
            model.norm.bias.copy_(self.norm.bias[:d])
            model.head.weight.copy_(self.head.weight[:, :d])
            model.head.bias.copy_(self.head.bias)
        return model.eval()
