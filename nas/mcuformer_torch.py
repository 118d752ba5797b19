"""`to_torch(spec)`: the float PyTorch model of a `MCUFormerSpec` (NCHW images in), and its
training (`edgekit.nas.train`'s loop: Adam, cosine decay, CPU threads).

The module computes exactly what `edgekit.nas.mcuformer_ir.float_graph` maps it to: tokens in
row-major patch order (the NHWC reshape of the patch convolution's output), attention as
``softmax(q k^T / sqrt(dh)) v`` per head, each MLP layer as two bias-free/biased linears
``x -> U -> V`` (the factorised W).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from edgekit.nas.mcuformer import MCUFormerSpec

#: Adam's learning rate: transformers this small train stably at 2e-3 with the cosine decay
LEARNING_RATE = 2e-3


class LowRankLinear(nn.Module):
    """W = U V: ``in -> rank`` without a bias, then ``rank -> out`` with one."""

    def __init__(self, d_in: int, d_out: int, rank: int):
        super().__init__()
        self.u = nn.Linear(d_in, rank, bias=False)
        self.v = nn.Linear(rank, d_out)

    def forward(self, x):
        return self.v(self.u(x))


class Block(nn.Module):
    def __init__(self, spec: MCUFormerSpec):
        super().__init__()
        d = spec.embed_dim
        self.heads, self.head_dim = spec.heads, spec.head_dim
        self.ln1 = nn.LayerNorm(d)
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = LowRankLinear(d, spec.hidden, spec.rank)
        self.fc2 = LowRankLinear(spec.hidden, d, spec.rank)

    def _split(self, x):  # [N, T, D] -> [N, H, T, dh]
        n, t, _ = x.shape
        return x.reshape(n, t, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x):
        n, t, d = x.shape
        h = self.ln1(x)
        q, k, v = self._split(self.q(h)), self._split(self.k(h)), self._split(self.v(h))
        p = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.head_dim), dim=-1)
        a = (p @ v).transpose(1, 2).reshape(n, t, d)
        x = x + self.proj(a)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class MCUFormer(nn.Module):
    def __init__(self, spec: MCUFormerSpec):
        super().__init__()
        self.spec = spec
        d = spec.embed_dim
        self.embed = nn.Conv2d(spec.in_channels, d, spec.patch, stride=spec.patch)
        self.pos = nn.Parameter(torch.randn(1, spec.tokens, d) * 0.02)
        self.blocks = nn.ModuleList(Block(spec) for _ in range(spec.depth))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, spec.num_classes)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2) + self.pos  # [N, T, D], row-major patches
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x).mean(dim=1))


def to_torch(spec: MCUFormerSpec, seed: int | None = None) -> MCUFormer:
    if seed is not None:
        torch.manual_seed(seed)
    return MCUFormer(spec)


def train(spec: MCUFormerSpec, data, *, steps: int, batch_size: int = 64, seed: int = 0,
          threads: int = 2, lr: float = LEARNING_RATE,
          model: MCUFormer | None = None) -> MCUFormer:
    """``steps`` Adam batches from a seeded initialisation (or from ``model``'s weights: the
    supernet's); the model in eval mode."""
    from edgekit.nas.train import train as train_loop

    torch.set_num_threads(threads)
    return train_loop(spec, data, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                      threads=threads, model=model if model is not None else to_torch(spec, seed))
