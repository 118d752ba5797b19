"""The EmbBERT-Q search space: tiny language models for text classification on microcontrollers.

After Bartoli et al., "EmbBERT-Q: Breaking Memory Barriers in Embedded NLP" (2025): a factorised
embedding (a ``vocab x embed_dim`` table projected to ``hidden`` by a linear layer, plus a
learned positional embedding), then ``layers`` blocks, each

    h = norm(x)
    a = softmax(q(h) h^T / sqrt(hidden)) h        single head, keys = values = h
    c = silu(causal depthwise conv over tokens(h))
    x = x + out(a + c)    (or a * c: ``combine="mul"``, the gated variant)

then a final norm, the mean over tokens and a linear classifier. With ``mask`` (the default) the
attention ignores padded keys: ``a`` adds ``-MASK_BIAS`` to the scores of keys whose id is the
tokenizer's ``[PAD]`` (id 0) before the softmax, in torch and in the IR alike (`MASK_BIAS`). The
mean pooling still averages every position (padded queries attend to the text only).
Everything runs in int8 (the "-Q"): `edgekit.nas.embbert_graph` maps the trained module to the
IR op by op.

`EMBBERT` (registered as ``--space embbert``) is the `edgekit.nas.family.Family` the search
driver uses; its data is an `edgekit.nas.text.TextDataset`.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

from edgekit.errors import UsageError
from edgekit.nas.family import register

NORMS = ("layer", "rms")
#: the bias added to the attention scores of padded keys (torch, IR and .tflite alike). Finite,
#: so that the int8 ADD before the softmax keeps a calibrated range: a padded key's score ends
#: at least MASK_BIAS - (the row's spread of scores) below the row's maximum, and softmax's
#: int8 arithmetic drops differences beyond its input radius (about -31) to exactly 0. Larger
#: would widen the masked scores' int8 step for the kept keys.
MASK_BIAS = 32.0
COMBINES = ("add", "mul")


@dataclass(frozen=True)
class EmbBERTSpec:
    """One model: sizes of the embedding, the blocks and the input (token ids ``[1, seq_len]``
    in ``[0, vocab_size)``)."""

    vocab_size: int
    embed_dim: int
    hidden: int
    layers: int
    kernel: int
    seq_len: int
    num_classes: int
    norm: str = "layer"
    combine: str = "add"
    epsilon: float = 1e-5
    mask: bool = True  # key-padding mask from the [PAD] id (see MASK_BIAS)

    def __post_init__(self):
        for name in ("vocab_size", "embed_dim", "hidden", "layers", "kernel", "seq_len",
                     "num_classes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"spec: {name} must be a positive integer, got {value!r}")
        if self.vocab_size < 3 or self.num_classes < 2:
            raise UsageError(f"spec: vocab_size {self.vocab_size} (>= 3) or num_classes"
                             f" {self.num_classes} (>= 2) too small")
        if self.norm not in NORMS:
            raise UsageError(f"spec: norm {self.norm!r} must be one of {NORMS}")
        if self.combine not in COMBINES:
            raise UsageError(f"spec: combine {self.combine!r} must be one of {COMBINES}")
        if not isinstance(self.mask, bool):
            raise UsageError(f"spec: mask must be true or false, got {self.mask!r}")
        if not self.epsilon > 0:
            raise UsageError(f"spec: epsilon {self.epsilon} must be > 0")

    def weight_count(self) -> int:
        """Parameters of the model (what int8 stores, one byte each, besides the biases'
        four)."""
        h, e = self.hidden, self.embed_dim
        norm = 2 * h if self.norm == "layer" else h
        block = norm + 2 * (h * h + h) + self.kernel * h + h
        return (self.vocab_size * e + e * h + h + self.seq_len * h + self.layers * block + norm
                + h * self.num_classes + self.num_classes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EmbBERTSpec":
        try:
            return cls(**data)
        except TypeError as err:
            raise UsageError(f"spec: {err}") from None


@dataclass(frozen=True)
class EmbBERTSpace:
    """The choices `sample` draws from. The defaults keep every model well under 2 MB of
    weights plus activations (the largest: 208 kB of weights + a 25 kB arena) and proxy training
    to seconds on two CPU cores; the paper's EmbBERT-Q is ~781 kB."""

    num_classes: int
    max_vocab: int = 2048
    max_seq_len: int = 64
    vocab_sizes: tuple[int, ...] = (512, 1024, 2048)
    embed_dims: tuple[int, ...] = (16, 32, 64)
    hiddens: tuple[int, ...] = (32, 64, 96)
    layers: tuple[int, ...] = (1, 2, 3)
    kernels: tuple[int, ...] = (3, 5, 7)
    seq_lens: tuple[int, ...] = (32, 48, 64)
    norms: tuple[str, ...] = NORMS
    combines: tuple[str, ...] = COMBINES


#: ``--scale paper``: the sizes of EmbBERT-Q's paper (~781 kB of weights + activations): up to
#: 935 kB at 4 layers of hidden 256 (on fortunes' 2,048-token vocabulary and 64 tokens)
PAPER_SIZES = dict(vocab_sizes=(1024, 2048), embed_dims=(64, 128), hiddens=(128, 192, 256),
                   layers=(2, 3, 4), kernels=(5, 7), seq_lens=(64,))
#: one model of the paper's size from `PAPER_SIZES`: 729,872 B of weights + a 65,664 B arena on
#: fortunes (`edgekit.nas.embbert_paper`, `bench/embbert_paper.py`)
PAPER_SPEC = dict(vocab_size=2048, embed_dim=128, hidden=256, layers=3, kernel=5, seq_len=64,
                  norm="layer", combine="add")


def _chooser(source):
    if hasattr(source, "suggest_categorical"):
        return lambda name, options: source.suggest_categorical(name, list(options))
    rng = source if isinstance(source, random.Random) else random.Random(source)
    return lambda name, options: rng.choice(list(options))


def sample(source, space: EmbBERTSpace) -> EmbBERTSpec:
    """A spec drawn through an Optuna trial, a `random.Random` or a seed. Vocabularies above
    the dataset's tokenizer and sequences above its stored length are never offered."""
    choose = _chooser(source)
    vocabs = [v for v in space.vocab_sizes if v <= space.max_vocab] or [space.max_vocab]
    lens = [t for t in space.seq_lens if t <= space.max_seq_len] or [space.max_seq_len]
    return EmbBERTSpec(vocab_size=choose("vocab_size", vocabs),
                       embed_dim=choose("embed_dim", space.embed_dims),
                       hidden=choose("hidden", space.hiddens),
                       layers=choose("layers", space.layers),
                       kernel=choose("kernel", space.kernels),
                       seq_len=choose("seq_len", lens),
                       num_classes=space.num_classes,
                       norm=choose("norm", space.norms),
                       combine=choose("combine", space.combines))


# --- the family the search driver uses -----------------------------------------------------------

#: flash besides the constants and the test input: the runtime, harness, kernels and BSP, and
#: one generated function and call per op. Re-measured after each build came to compile only the
#: loops its calls take (2026-12-05), on five builds of random spaces' specs and test_nas_embbert's
#: small one (21-47 ops; the M7 stand-in of nucleo-h743zi and mps2-an386's M4): code less 64 B
#: per op was 23.6-26.0 kB (25.7-27.7 kB before, when the searched model of
#: hil_tests/test_embbert_emulated.py needed 0.4 kB more than the largest); 27 kB + 64 B per op
#: errs high by 1.0-3.4 kB (the search must never take a model whose firmware does not fit).
CODE_FIXED_BYTES = 27_000
CODE_PER_OP_BYTES = 64


class EmbBERTFamily:
    """`edgekit.nas.family.Family` of EmbBERT-Q. Inputs are the dataset tokenizer's ids
    (``Split.images``, int32 [N, T]); `inputs` turns them into a spec's (its vocabulary through
    `Tokenizer.reduce_ids`, its sequence length). The tokenizer comes from the split when it
    carries one, else from the dataset the last `space` call saw (the driver slices splits
    into plain `Split`s)."""

    name = "embbert"

    def __init__(self):
        self.tokenizer = None

    def space(self, data, config=None) -> EmbBERTSpace:
        tok = getattr(data, "tokenizer", None)
        if tok is None:
            raise UsageError(f"the embbert space classifies texts; dataset {data.name!r} is not"
                             " one (use --dataset fortunes or a .csv with columns text,label)")
        self.tokenizer = tok
        paper = config is not None and getattr(config, "scale", "default") == "paper"
        return EmbBERTSpace(num_classes=data.num_classes, max_vocab=tok.vocab_size,
                            max_seq_len=data.seq_len, **(PAPER_SIZES if paper else {}))

    def sample(self, trial, space: EmbBERTSpace) -> EmbBERTSpec:
        return sample(trial, space)

    def spec_from_dict(self, d: dict) -> EmbBERTSpec:
        return EmbBERTSpec.from_dict(d)

    def tokenizer_for(self, spec: EmbBERTSpec, split=None):
        """The tokenizer of ``spec``'s vocabulary (what ``best/tokenizer.json`` holds)."""
        tok = getattr(split, "tokenizer", None) or self.tokenizer
        if tok is None:
            raise UsageError("the embbert family has no tokenizer: call space(dataset) first")
        return tok.truncated(spec.vocab_size)

    def inputs(self, spec: EmbBERTSpec, ids) -> "np.ndarray":
        """Dataset token ids [N, T] -> ``spec``'s int32 [N, seq_len] (idempotent)."""
        import numpy as np

        ids = np.asarray(getattr(ids, "images", ids))
        if self.tokenizer is not None and ids.size and ids.max() < self.tokenizer.vocab_size:
            return self.tokenizer.reduce_ids(ids, spec.vocab_size, spec.seq_len)
        if ids.ndim != 2 or (ids.size and (ids.min() < 0 or ids.max() >= spec.vocab_size)):
            raise UsageError(f"token ids of shape {ids.shape} are not [N, T] ids in"
                             f" [0, {spec.vocab_size}) and no tokenizer can reduce them")
        out = np.zeros((len(ids), spec.seq_len), np.int32)
        n = min(spec.seq_len, ids.shape[1])
        out[:, :n] = ids[:, :n]
        return out

    def memory(self, spec: EmbBERTSpec, board=None) -> dict:
        """The firmware's plan of the int8 graph of ``spec`` (untrained weights calibrated on random ids: the planner sees only shapes and op
        attributes). ``peak_sram``: the arena (input and output in it); ``flash``: constants
        and test input plus `CODE_FIXED_BYTES` and `CODE_PER_OP_BYTES` per op; ``total_bytes``:
        the paper's "weights + activations" (``weights_bytes`` + the arena)."""
        return dict(_memory(spec))

    def final_memory(self, spec, graph, board) -> dict:
        """`memory`'s figures for the final (calibrated) graph, for report.json."""
        return {**_graph_memory(graph), "patch": {"split": None, "n": 1}}

    def train(self, spec, split, *, steps: int, batch_size: int = 64, seed: int = 0,
              threads: int = 2):
        from edgekit.nas.embbert_torch import train

        return train(spec, self.inputs(spec, split), split.labels, steps=steps,
                     batch_size=batch_size, seed=seed, threads=threads)

    def float_accuracy(self, module, spec, split) -> float:
        from edgekit.nas.embbert_torch import predict

        if len(split) == 0:
            return 0.0
        return float((predict(module, self.inputs(spec, split)).argmax(1) == split.labels).mean())

    def int8_graph(self, module, spec, calib):
        from edgekit.nas.embbert_graph import int8_graph

        return int8_graph(module, self.inputs(spec, calib), spec)

    def int8_accuracy(self, graph, spec, split) -> float:
        """Top-1 of the reference interpreter, one text at a time (as the firmware runs)."""
        import numpy as np

        from edgekit.interpreter import Interpreter

        interp, ids = Interpreter(graph), self.inputs(spec, split)
        hits = sum(int(np.argmax(interp.run([ids[i:i + 1]])[0]) == split.labels[i])
                   for i in range(len(ids)))
        return hits / max(len(ids), 1)

    def calibration(self, spec, split, count: int = 64, seed: int = 0):
        """``count`` training inputs of ``spec`` for the quantizer."""
        import numpy as np

        idx = np.random.default_rng(seed).permutation(len(split))[:count]
        return self.inputs(spec, np.asarray(split.images)[idx])

    def artifacts(self, spec, split=None) -> dict[str, str]:
        """Files for ``best/`` besides the model: the tokenizer that makes the model's ids."""
        return {"tokenizer.json": self.tokenizer_for(spec, split).to_json()}


def placeholder_graph(spec: EmbBERTSpec, seed: int = 0):
    """The int8 graph of an untrained ``spec`` (what `memory` plans)."""
    import numpy as np
    import torch

    from edgekit.nas.embbert_graph import int8_graph
    from edgekit.nas.embbert_torch import to_torch

    torch.manual_seed(seed)
    calib = np.random.default_rng(seed).integers(0, spec.vocab_size, (4, spec.seq_len))
    return int8_graph(to_torch(spec).eval(), calib.astype(np.int32), spec)


def _graph_memory(graph) -> dict:
    from edgekit.attention import fuse_attention
    from edgekit.firmware.codegen import firmware_plan
    from edgekit.nas.codesize import graph_features

    arena, weights = firmware_plan(fuse_attention(graph)).arena_bytes, graph.weights_bytes
    f = graph_features(graph)
    flash = f["constants"] + f["input"] + CODE_FIXED_BYTES + CODE_PER_OP_BYTES * len(graph.ops)
    return {"peak_sram": arena, "peak_sram_layer_by_layer": arena, "arena_bytes": arena,
            "flash": flash, "flash_estimate": flash, "planned": True, "weights_bytes": weights,
            "activations_bytes": arena, "total_bytes": weights + arena}


@lru_cache(maxsize=256)
def _memory(spec: EmbBERTSpec) -> tuple:
    return tuple(_graph_memory(placeholder_graph(spec)).items())


EMBBERT = register(EmbBERTFamily())
