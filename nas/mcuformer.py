"""The MCUFormer search space: small vision transformers with low-rank factorised MLPs and a
searched patch size (Liang et al., "MCUFormer: Deploying Vision Transformers on
Microcontrollers with Limited Memory", NeurIPS 2023), as the search driver's ``mcuformer``
family.

A network is a `MCUFormerSpec`: a patch embedding (a convolution with kernel = stride =
``patch``) to ``tokens = (resolution / patch)**2`` tokens of ``embed_dim`` channels, a learned
positional embedding added to them, ``depth`` pre-norm blocks (LayerNorm, ``heads``-head self
attention, residual; LayerNorm, MLP with GELU, residual), a final LayerNorm, the mean over the
tokens and a linear classifier. Each MLP fully-connected layer is factorised, W = U V, with
rank ``r = round(rank_ratio * min(embed_dim, hidden))`` (the same r for both layers: their
smaller side is ``embed_dim`` or ``hidden`` alike), which is MCUFormer's low-rank
decomposition: fewer weights in flash and fewer MACs.

Images are resized to ``resolution`` (bilinear, as `edgekit.nas.train.to_input`). The
(resolution, patch) pairs are sampled as one choice, so that every sampled patch divides its
resolution and Optuna's categorical distribution stays fixed.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from typing import Any

from edgekit.errors import UsageError

#: (resolution, patch) pairs for 28x28 images: 16, 16, 36 and 49 tokens. 32/4 (64) and 48/4 (144)
#: tokens fit the SRAM of the boards too but train too slowly on two CPU cores for a search
RESOLUTION_PATCHES = ((28, 7), (32, 8), (48, 8), (28, 4))
EMBED_DIMS = (32, 48, 64, 96)
DEPTHS = (1, 2, 3, 4)
HEADS = (1, 2, 4)
MLP_RATIOS = (1.0, 2.0, 4.0)
RANK_RATIOS = (0.25, 0.5, 1.0)

#: ``--scale paper``: MCUFormer's scale (DeiT-Tiny-like: 196 tokens, dim up to 192), on 28x28
#: images upscaled to 56 or 112 px: 49 to 784 tokens. 784 tokens or dim 192 at depth 8 do not
#: fit a 320 KB SRAM or 1 MB flash, so the board's budgets decide (`bench/mcuformer_paper_budgets.py`)
PAPER_RESOLUTION_PATCHES = ((56, 8), (56, 4), (112, 8), (112, 7), (112, 4))
PAPER_EMBED_DIMS = (64, 96, 128, 192)
PAPER_DEPTHS = (2, 4, 6, 8)
PAPER_HEADS = (2, 4, 8)
PAPER_MLP_RATIOS = (2.0, 4.0)


@dataclass(frozen=True)
class MCUFormerSpec:
    resolution: int
    in_channels: int
    num_classes: int
    embed_dim: int
    depth: int
    heads: int
    mlp_ratio: float
    rank_ratio: float
    patch: int

    def __post_init__(self):
        for name in ("resolution", "in_channels", "num_classes", "embed_dim", "depth", "heads",
                     "patch"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise UsageError(f"mcuformer spec: {name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        for name in ("mlp_ratio", "rank_ratio"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.resolution % self.patch:
            raise UsageError(f"mcuformer spec: patch {self.patch} does not divide resolution"
                             f" {self.resolution}")
        if self.embed_dim % self.heads:
            raise UsageError(f"mcuformer spec: {self.heads} heads do not divide embed_dim"
                             f" {self.embed_dim}")
        if not self.mlp_ratio > 0 or not 0 < self.rank_ratio <= 1:
            raise UsageError(f"mcuformer spec: mlp_ratio {self.mlp_ratio} must be > 0 and"
                             f" rank_ratio {self.rank_ratio} in (0, 1]")

    @property
    def grid(self) -> int:
        return self.resolution // self.patch

    @property
    def tokens(self) -> int:
        return self.grid ** 2

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.heads

    @property
    def hidden(self) -> int:
        return max(1, round(self.embed_dim * self.mlp_ratio))

    @property
    def rank(self) -> int:
        return max(1, round(self.rank_ratio * min(self.embed_dim, self.hidden)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MCUFormerSpec":
        try:
            return cls(**data)
        except TypeError as err:
            raise UsageError(f"mcuformer spec: {err}") from None


@dataclass(frozen=True)
class SearchSpace:
    """The choices `sample` draws from; the defaults suit 28x28 grey images."""

    in_channels: int = 1
    num_classes: int = 10
    resolution_patches: tuple[tuple[int, int], ...] = RESOLUTION_PATCHES
    embed_dims: tuple[int, ...] = EMBED_DIMS
    depths: tuple[int, ...] = DEPTHS
    heads: tuple[int, ...] = HEADS
    mlp_ratios: tuple[float, ...] = MLP_RATIOS
    rank_ratios: tuple[float, ...] = RANK_RATIOS

    def __post_init__(self):
        if not self.resolution_patches:
            raise UsageError("mcuformer space: no (resolution, patch) pair to search")
        for r, p in self.resolution_patches:
            if p < 1 or r % p:
                raise UsageError(f"mcuformer space: patch {p} does not divide resolution {r}")
        bad = [(d, h) for d in self.embed_dims for h in self.heads if d % h]
        if bad:
            raise UsageError(f"mcuformer space: heads must divide every embed dim, not {bad[0]}")


def _chooser(source):
    if hasattr(source, "suggest_categorical"):
        return lambda name, options: source.suggest_categorical(name, list(options))
    rng = source if isinstance(source, random.Random) else random.Random(source)
    return lambda name, options: rng.choice(list(options))


def sample(source, space: SearchSpace = SearchSpace()) -> MCUFormerSpec:
    """Draw a spec: ``source`` is an Optuna trial, a `random.Random` or a seed."""
    choose = _chooser(source)
    pairs = {f"{r}/{p}": (r, p) for r, p in space.resolution_patches}
    resolution, patch = pairs[choose("resolution_patch", pairs)]
    return MCUFormerSpec(resolution=resolution, in_channels=space.in_channels,
                         num_classes=space.num_classes,
                         embed_dim=choose("embed_dim", space.embed_dims),
                         depth=choose("depth", space.depths), heads=choose("heads", space.heads),
                         mlp_ratio=choose("mlp_ratio", space.mlp_ratios),
                         rank_ratio=choose("rank_ratio", space.rank_ratios), patch=patch)


def spec_macs(spec: MCUFormerSpec) -> int:
    """Multiply-accumulates of one inference, as `edgekit.costs.graph_macs` counts them on the
    spec's graph: the patch embedding, per block q/k/v/projection, the attention's two matmuls
    and the two low-rank MLP layers, and the classifier."""
    t, d, hidden, rank = spec.tokens, spec.embed_dim, spec.hidden, spec.rank
    block = 4 * t * d * d + 2 * t * t * d + 2 * t * rank * (d + hidden)
    return (t * d * spec.in_channels * spec.patch ** 2 + spec.depth * block
            + d * spec.num_classes)


def space_for(data, config=None) -> SearchSpace:
    """The default space for ``data`` (images NHWC), its pairs limited to the config's
    ``resolutions`` when given."""
    shape = tuple(data.image_shape)
    if len(shape) != 3:
        raise UsageError(f"search space mcuformer takes images (N, H, W, C); dataset"
                         f" {data.name!r} holds inputs of shape {shape}")
    if config is not None and config.widths is not None:
        raise UsageError("widths bound the mcunet space only; mcuformer searches embed dims")
    paper = config is not None and getattr(config, "scale", "default") == "paper"
    pairs = PAPER_RESOLUTION_PATCHES if paper else RESOLUTION_PATCHES
    if config is not None and config.resolutions is not None:
        wanted = tuple(config.resolutions)
        pairs = tuple((r, p) for r in wanted for p in (4, 7, 8) if r % p == 0 and r // p >= 2)
        if not pairs:
            raise UsageError(f"resolutions {wanted}: none is divisible by a patch of 4, 7 or 8")
    sizes = (dict(embed_dims=PAPER_EMBED_DIMS, depths=PAPER_DEPTHS, heads=PAPER_HEADS,
                  mlp_ratios=PAPER_MLP_RATIOS) if paper else {})
    return SearchSpace(in_channels=shape[-1], num_classes=data.num_classes,
                       resolution_patches=pairs, **sizes)


class MCUFormerFamily:
    name = "mcuformer"

    def space(self, data, config):
        return space_for(data, config)

    def sample(self, trial, space):
        return sample(trial, space)

    def spec_from_dict(self, d: dict):
        return MCUFormerSpec.from_dict(d)

    def memory(self, spec, board) -> dict:
        from edgekit.nas.mcuformer_ir import memory

        return memory(spec, board)

    def supernet(self, space):
        from edgekit.nas.mcuformer_supernet import SuperFormer

        return SuperFormer(space)

    def macs(self, spec) -> int:
        return spec_macs(spec)

    def train(self, spec, split, *, steps: int, batch_size: int, seed: int, threads: int,
              model=None):
        """``model``: a module of ``spec`` to continue training (the supernet's weights)."""
        from edgekit.nas.mcuformer_torch import train

        return train(spec, split, steps=steps, batch_size=batch_size, seed=seed, threads=threads,
                     model=model)

    def float_accuracy(self, module, spec, split) -> float:
        from edgekit.nas.train import float_accuracy

        return float_accuracy(module, spec, split)

    def int8_graph(self, module, spec, calib):
        from edgekit.nas.mcuformer_ir import int8_graph

        return int8_graph(module, spec, calib)

    def int8_accuracy(self, graph, spec, split) -> float:
        from edgekit.nas.train import int8_accuracy

        return int8_accuracy(graph, spec, split)

    def final_memory(self, spec, graph, board) -> dict:
        """The firmware's plan and the flash estimate of the final (calibrated) int8 graph."""
        from edgekit.nas.mcuformer_ir import flash_estimate
        from edgekit.nas.search import layer_by_layer_memory

        return layer_by_layer_memory(graph, flash_estimate(graph, board.cpu))


def _register():
    from edgekit.nas.family import register

    return register(MCUFormerFamily())


FAMILY = _register()
