"""`to_torch(spec)`: the float PyTorch model of an `MCUNetSpec` (NCHW), for training.

Strided convolutions pad with TensorFlow's SAME amounts (`same_pads`) through an explicit
``ZeroPad2d`` wherever torch's symmetric padding would differ (even inputs), so the trained
model computes exactly what the int8 TFLite graph will.
"""

from __future__ import annotations

import torch
from torch import nn

from edgekit.nas.mcunet import Block, MCUNetSpec, same_pads


def conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int, size: int, *, groups: int = 1,
            act: bool = True) -> nn.Sequential:
    """Conv (SAME padding for an input ``size`` x ``size``) + BatchNorm (+ ReLU6)."""
    layers: list[nn.Module] = []
    _, before, after = same_pads(size, kernel, stride)
    if before == after:
        pad = before
    else:
        layers.append(nn.ZeroPad2d((before, after, before, after)))
        pad = 0
    layers += [nn.Conv2d(in_ch, out_ch, kernel, stride, pad, groups=groups, bias=False),
               nn.BatchNorm2d(out_ch)]
    if act:
        layers.append(nn.ReLU6())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, block: Block, size: int):
        super().__init__()
        layers: list[nn.Module] = []
        if block.expansion != 1:
            layers.append(conv_bn(block.in_channels, block.hidden, 1, 1, size))
        layers.append(conv_bn(block.hidden, block.hidden, block.kernel, block.stride, size,
                              groups=block.hidden))
        layers.append(conv_bn(block.hidden, block.out_channels, 1, 1, -(-size // block.stride),
                              act=False))
        self.body = nn.Sequential(*layers)
        self.residual = block.residual

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


class MCUNet(nn.Module):
    def __init__(self, spec: MCUNetSpec):
        super().__init__()
        size = spec.resolution
        self.stem = conv_bn(spec.in_channels, spec.stem_out, 3, 2, size)
        size = -(-size // 2)
        blocks = []
        for block in spec.blocks():
            blocks.append(InvertedResidual(block, size))
            size = -(-size // block.stride)
        self.blocks = nn.Sequential(*blocks)
        last_in = spec.blocks()[-1].out_channels
        self.head = conv_bn(last_in, spec.last_channels, 1, 1, size)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(spec.last_channels, spec.num_classes)

    def forward(self, x):
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))


def to_torch(spec: MCUNetSpec) -> nn.Module:
    """A freshly initialised float model of ``spec`` (input (N, C, R, R))."""
    return MCUNet(spec)


def recalibrate_bn(module: nn.Module, batch) -> nn.Module:
    """Reset every BatchNorm's running statistics to those of ``batch`` (N, C, H, W): an
    untrained model's activations then stay spread out through all its layers, instead of
    dying (an all-zero ReLU6 layer has no int8 scale TFLite Micro accepts)."""
    for mod in module.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.reset_running_stats()
            mod.momentum = None  # cumulative average: one batch sets the statistics
    module.train()
    with torch.no_grad():
        module(torch.as_tensor(batch))
    return module.eval()
