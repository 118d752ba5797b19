"""Accuracy of candidates: a short-training proxy during the search, and the final training of
the chosen model with float and int8 top-1.

Training is plain PyTorch on the CPU (``torch.set_num_threads``: 2 by default, this project's
machine has 2 cores): Adam with a cosine-decayed learning rate, cross entropy, batches drawn
from the training split. Images are NHWC floats in [0, 1]; `to_input` resizes them to the
candidate's resolution (bilinear, `torch.nn.functional.interpolate`), so 28x28 and 8x8 data
feed any resolution of the space. The int8 figure runs the converted graph in edgekit's
reference interpreter (bit-exact with TFLite Micro) on a test subset.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from edgekit.interpreter import Interpreter
from edgekit.ir import Graph
from edgekit.nas.datasets import Split
from edgekit.nas.mcunet import MCUNetSpec, to_torch


def to_input(images: np.ndarray, resolution: int) -> torch.Tensor:
    """(N, H, W, C) floats -> (N, C, R, R) float32 tensor at ``resolution``."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).permute(0, 3, 1, 2)
    if x.shape[-1] != resolution or x.shape[-2] != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
    return x.contiguous()


def train(spec: MCUNetSpec, data: Split, *, steps: int, batch_size: int = 64, lr: float = 3e-3,
          seed: int = 0, threads: int = 2, model: torch.nn.Module | None = None) -> torch.nn.Module:
    """Train ``spec`` (or continue ``model``) for ``steps`` batches; returns it in eval mode."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = to_torch(spec) if model is None else model
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x_all = to_input(data.images, spec.resolution)
    y_all = torch.from_numpy(data.labels)
    # cosine decay to 5% of lr
    return fit(model, opt, x_all, y_all, steps=steps, batch_size=batch_size, rng=rng,
               lr_at=lambda step: lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step
                                                                         / max(steps, 1)))))


def fit(model: torch.nn.Module, opt, x_all: torch.Tensor, y_all: torch.Tensor, *, steps: int,
        batch_size: int, rng: np.random.Generator, lr_at) -> torch.nn.Module:
    """``steps`` of cross entropy on batches drawn with replacement, the learning rate of step
    i set to ``lr_at(i)``; returns the model in eval mode. Every family's training loop."""
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        idx = torch.from_numpy(rng.integers(0, len(y_all), size=min(batch_size, len(y_all))))
        loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def float_accuracy(model: torch.nn.Module, spec: MCUNetSpec, data: Split,
                   batch_size: int = 256) -> float:
    """Top-1 of the float model on ``data``."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            x = to_input(data.images[start:start + batch_size], spec.resolution)
            pred = model(x).argmax(1).numpy()
            correct += int((pred == data.labels[start:start + batch_size]).sum())
    return correct / max(len(data), 1)


def int8_accuracy(graph: Graph, spec: MCUNetSpec, data: Split) -> float:
    """Top-1 of the int8 graph in the reference interpreter (inputs quantized as the graph's
    input quantization says; one image at a time, as the firmware runs)."""
    t_in = graph[graph.inputs[0]]
    scale, zp = float(t_in.quant.scale[0]), int(t_in.quant.zero_point[0])
    interp = Interpreter(graph)
    x = to_input(data.images, spec.resolution).permute(0, 2, 3, 1).numpy()  # NHWC for the IR
    q = np.clip(np.round(x / scale) + zp, -128, 127).astype(np.int8)
    correct = sum(int(np.argmax(interp.run([q[i:i + 1]])[0]) == data.labels[i])
                  for i in range(len(data)))
    return correct / max(len(data), 1)


def calibration_batch(data: Split, spec: MCUNetSpec, count: int = 64, seed: int = 0) -> np.ndarray:
    """(count, C, R, R) float32 training images for the quantizer's calibration."""
    idx = np.random.default_rng(seed).permutation(len(data))[:count]
    return to_input(data.images[idx], spec.resolution).numpy()
