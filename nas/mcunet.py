"""The MCUNet-style search space: inverted-residual CNNs with a searched patch schedule.

A network is a `MCUNetSpec`: stem conv 3x3 stride 2, inverted-residual blocks grouped in
stages (the first block of a stage may stride 2; a residual ADD where the stride is 1 and the
channels are equal), a final 1x1 conv, global average pooling and a linear classifier, ReLU6
everywhere except after the projecting 1x1 convs (linear bottlenecks, as MobileNetV2).
Channels are rounded to multiples of 8 with `make_divisible` (MobileNetV2's rule), so the same
builder also makes Keras-applications MobileNetV2 (`mobilenet_v2_spec`).

Padding follows TensorFlow's SAME rule (extra padding at the bottom/right), because TFLite has
no other: torch's symmetric ``padding=k//2`` at stride 2 on an even input is neither SAME nor
VALID and would cost a PAD op (and its buffer) in the int8 graph. `to_torch` therefore pads
strided convolutions explicitly with the SAME amounts (`same_pads`); `edgekit.nas.convert`
folds those pads back into the convolution.

``patch_split`` is the index (in `blocks`) of the block that ends the patch-based stage, or
None for layer-by-layer execution; ``patch_n`` the n of n x n output patches.

``weight_bits`` holds the weight bits (8 or 4) of every weighted layer in graph order (stem;
per block [expand], depthwise, project; head; classifier: `weighted_layer_names`), or is empty
for an all-int8 network. `SearchSpace.bits` says which widths `sample` may draw per layer;
`bits_spec` turns a spec's bits into the converter's ``--bits`` value.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from typing import Any

from edgekit.errors import UsageError

KERNELS = (3, 5, 7)
EXPANSIONS = (3, 4, 6)
WIDTHS = (0.25, 0.35, 0.5, 0.75)
#: input resolutions the space offers for small (28x28, 8x8) images: inputs are upsampled
RESOLUTIONS = (32, 40, 48, 56, 64)
DEPTHS = (1, 2, 3)
PATCH_NS = (2, 3, 4)
#: MCUNet's stage layout (base channels, stride) after the fixed first block (16, t=1)
MCUNET_STAGES = ((24, 2), (40, 2), (80, 2), (96, 1), (160, 2))
#: the patched stage may end with the fixed first block or one of this many strided stages
PATCH_STAGES = 2


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """MobileNetV2's channel rounding: nearest multiple of ``divisor``, never 10% below."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """(output size, pad before, pad after) of TensorFlow's SAME padding on one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


@dataclass(frozen=True)
class Block:
    """One inverted-residual block, channels already rounded."""

    in_channels: int
    out_channels: int
    expansion: int
    kernel: int
    stride: int

    @property
    def hidden(self) -> int:
        return self.in_channels * self.expansion

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


@dataclass(frozen=True)
class MCUNetSpec:
    """One network of the space. ``stage_channels``/``stage_strides`` are base values (before
    ``width``); ``depths`` gives the blocks per stage; ``kernels``/``expansions`` one entry per
    block (``sum(depths)``). ``stem_channels`` is scaled by ``width``; ``last_channels`` is
    absolute (Keras keeps 1280 for widths <= 1)."""

    resolution: int
    in_channels: int
    num_classes: int
    width: float
    stage_channels: tuple[int, ...]
    stage_strides: tuple[int, ...]
    depths: tuple[int, ...]
    kernels: tuple[int, ...]
    expansions: tuple[int, ...]
    stem_channels: int = 32
    last_channels: int = 320
    patch_split: int | None = None
    patch_n: int = 1
    weight_bits: tuple[int, ...] = ()

    def __post_init__(self):
        for name in ("stage_channels", "stage_strides", "depths", "kernels", "expansions",
                     "weight_bits"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        n_stages = len(self.stage_channels)
        if len(self.stage_strides) != n_stages or len(self.depths) != n_stages:
            raise UsageError(f"spec: {n_stages} stage widths, {len(self.stage_strides)} strides"
                             f" and {len(self.depths)} depths must match")
        n_blocks = sum(self.depths)
        if len(self.kernels) != n_blocks or len(self.expansions) != n_blocks:
            raise UsageError(f"spec: {n_blocks} blocks need as many kernels ({len(self.kernels)})"
                             f" and expansions ({len(self.expansions)})")
        if any(k not in (1, 3, 5, 7) for k in self.kernels):
            raise UsageError(f"spec: kernel sizes {self.kernels} must be 3, 5 or 7")
        if any(e < 1 for e in self.expansions):
            raise UsageError(f"spec: expansions {self.expansions} must be >= 1")
        if any(d < 1 for d in self.depths) or self.resolution < 8 or self.width <= 0:
            raise UsageError(f"spec: bad depths {self.depths}, resolution {self.resolution} or"
                             f" width {self.width}")
        if self.patch_split is not None and not 0 <= self.patch_split < n_blocks:
            raise UsageError(f"spec: patch_split {self.patch_split} is not a block index"
                             f" (0..{n_blocks - 1})")
        if self.patch_n < 1:
            raise UsageError(f"spec: patch_n {self.patch_n} must be >= 1")
        if any(b not in (4, 8) for b in self.weight_bits):
            raise UsageError(f"spec: weight_bits {self.weight_bits} must be 8 or 4 each")
        if self.weight_bits and len(self.weight_bits) != len(self.weighted_layer_names()):
            raise UsageError(f"spec: weight_bits has {len(self.weight_bits)} entries for"
                             f" {len(self.weighted_layer_names())} weighted layers")
        if all(b == 8 for b in self.weight_bits):  # one spelling of all-int8
            object.__setattr__(self, "weight_bits", ())

    @property
    def stem_out(self) -> int:
        return make_divisible(self.stem_channels * self.width)

    def blocks(self) -> list[Block]:
        """The blocks in order, with rounded channels."""
        out, channels, i = [], self.stem_out, 0
        for base, stride, depth in zip(self.stage_channels, self.stage_strides, self.depths):
            width = make_divisible(base * self.width)
            for j in range(depth):
                out.append(Block(channels, width, self.expansions[i], self.kernels[i],
                                 stride if j == 0 else 1))
                channels, i = width, i + 1
        return out

    def weighted_layer_names(self) -> list[str]:
        """The weighted layers in graph order (`edgekit.nas.graph`'s names)."""
        names = ["stem"]
        for i, b in enumerate(self.blocks()):
            names += ([f"b{i}/expand"] if b.expansion != 1 else []) + [f"b{i}/dw",
                                                                        f"b{i}/project"]
        return names + ["head", "logits"]

    def layer_bits(self) -> tuple[int, ...]:
        """Weight bits of each weighted layer (`weighted_layer_names` order)."""
        return self.weight_bits or (8,) * len(self.weighted_layer_names())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MCUNetSpec":
        try:
            return cls(**data)
        except TypeError as err:
            raise UsageError(f"spec: {err}") from None


def mobilenet_v2_spec(width: float = 0.35, resolution: int = 144, *, in_channels: int = 3,
                      num_classes: int = 1000) -> MCUNetSpec:
    """Keras-applications MobileNetV2: stem 32*w, (t, c, n, s) = (1,16,1,1), (6,24,2,2),
    (6,32,3,2), (6,64,4,2), (6,96,3,1), (6,160,3,2), (6,320,1,1), last conv 1280 (w <= 1)."""
    layout = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
              (6, 160, 3, 2), (6, 320, 1, 1))
    expansions = tuple(t for t, _, n, _ in layout for _ in range(n))
    return MCUNetSpec(resolution=resolution, in_channels=in_channels, num_classes=num_classes,
                      width=width, stage_channels=tuple(c for _, c, _, _ in layout),
                      stage_strides=tuple(s for *_, s in layout),
                      depths=tuple(n for _, _, n, _ in layout), kernels=(3,) * len(expansions),
                      expansions=expansions, stem_channels=32,
                      last_channels=make_divisible(1280 * width) if width > 1 else 1280)


@dataclass(frozen=True)
class SearchSpace:
    """The choices `sample` draws from; the defaults suit 28x28 / 8x8 grey images."""

    in_channels: int = 1
    num_classes: int = 10
    resolutions: tuple[int, ...] = RESOLUTIONS
    widths: tuple[float, ...] = WIDTHS
    depths: tuple[int, ...] = DEPTHS
    kernels: tuple[int, ...] = KERNELS
    expansions: tuple[int, ...] = EXPANSIONS
    patch_ns: tuple[int, ...] = PATCH_NS
    stages: tuple[tuple[int, int], ...] = field(default=MCUNET_STAGES)
    #: weight bits each layer may take: (8,) int8 only, (4,) int4 only, (8, 4) mixed
    bits: tuple[int, ...] = (8,)


def bits_spec(spec: MCUNetSpec) -> int | str:
    """``spec``'s weight bits as `edgekit.converters.quantize.parse_bits` takes them: 8, 4 or
    ``mixed:default=8,#i=4,...`` (``#i``: the i-th weighted layer, as the converter orders them)."""
    bits = spec.layer_bits()
    if len(set(bits)) == 1:
        return bits[0]
    return "mixed:default=8," + ",".join(f"#{i}=4" for i, b in enumerate(bits) if b == 4)


def largest_spec(space: SearchSpace) -> MCUNetSpec:
    """The candidate of ``space`` with the most weights (widest, deepest, largest kernels and
    expansions; int8): what decides whether the board's flash binds the search."""
    depth, n_stages = max(space.depths), len(space.stages)
    n_blocks = 1 + depth * n_stages
    width = max(space.widths)
    return MCUNetSpec(resolution=max(space.resolutions), in_channels=space.in_channels,
                      num_classes=space.num_classes, width=width,
                      stage_channels=(16,) + tuple(c for c, _ in space.stages),
                      stage_strides=(1,) + tuple(s for _, s in space.stages),
                      depths=(1,) + (depth,) * n_stages,
                      kernels=(3,) + (max(space.kernels),) * (n_blocks - 1),
                      expansions=(1,) + (max(space.expansions),) * (n_blocks - 1),
                      stem_channels=32, last_channels=make_divisible(640 * width))


def _chooser(source):
    """A ``choose(name, options)`` over an Optuna trial, a `random.Random` or an int seed."""
    if hasattr(source, "suggest_categorical"):
        return lambda name, options: source.suggest_categorical(name, list(options))
    rng = source if isinstance(source, random.Random) else random.Random(source)
    return lambda name, options: rng.choice(list(options))


def sample(source, space: SearchSpace = SearchSpace()) -> MCUNetSpec:
    """Draw a spec: ``source`` is an Optuna trial (``suggest_categorical`` per choice, so the
    sampler learns them), a `random.Random`, or a seed. Every per-block choice is suggested
    even for blocks the depth drops, so the trial's parameter set is fixed (what TPE wants)."""
    choose = _chooser(source)
    resolution = choose("resolution", space.resolutions)
    width = choose("width", space.widths)
    depths = [1] + [choose(f"depth{s}", space.depths) for s in range(len(space.stages))]
    kernels, expansions = [3], [1]  # the fixed first block (t=1), as MCUNet and MobileNetV2
    for s, depth in enumerate(depths[1:]):
        for j in range(max(space.depths)):
            k = choose(f"kernel{s}_{j}", space.kernels)
            e = choose(f"expand{s}_{j}", space.expansions)
            if j < depth:
                kernels.append(k)
                expansions.append(e)
    # the patched stage ends with one of the first 1 + PATCH_STAGES stages (a fixed choice set:
    # Optuna's categorical distributions cannot change between trials); 0 = layer by layer
    stage = choose("patch_stage", range(PATCH_STAGES + 2))
    n = choose("patch_n", space.patch_ns)
    split = sum(depths[:stage]) if stage else 0
    bits = _sample_bits(choose, space, depths, expansions)
    return MCUNetSpec(resolution=resolution, in_channels=space.in_channels,
                      num_classes=space.num_classes, width=width,
                      stage_channels=(16,) + tuple(c for c, _ in space.stages),
                      stage_strides=(1,) + tuple(s for _, s in space.stages),
                      depths=tuple(depths), kernels=tuple(kernels), expansions=tuple(expansions),
                      stem_channels=32, last_channels=make_divisible(640 * width),
                      patch_split=split - 1 if stage else None, patch_n=n if stage else 1,
                      weight_bits=bits)


def _sample_bits(choose, space: SearchSpace, depths: list[int],
                 expansions: list[int]) -> tuple[int, ...]:
    """Each weighted layer's bits, drawn after the architecture (so a space of one width draws
    nothing and its trials are those of an int8 search); as for kernels, every block slot's
    bits are suggested even where the depth drops the block."""
    if len(space.bits) == 1:
        layers = 1 + sum(3 if e != 1 else 2 for e in expansions) + 2
        return (space.bits[0],) * layers
    bits = [choose("bits_stem", space.bits), choose("bits_b0_dw", space.bits),
            choose("bits_b0_project", space.bits)]
    block = 1
    for s, depth in enumerate(depths[1:]):
        for j in range(max(space.depths)):
            drawn = [choose(f"bits{s}_{j}_{layer}", space.bits)
                     for layer in ("expand", "dw", "project")]
            if j < depth:
                bits += drawn if expansions[block] != 1 else drawn[1:]
                block += 1
    return tuple(bits + [choose("bits_head", space.bits), choose("bits_fc", space.bits)])


def to_torch(spec: MCUNetSpec):
    """The float PyTorch model of ``spec`` (see `edgekit.nas.torch_model`)."""
    from edgekit.nas.torch_model import to_torch as build

    return build(spec)
