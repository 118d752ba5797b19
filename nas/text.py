"""Labelled short texts for the EmbBERT-Q family, tokenized by our own BPE
(`edgekit.nas.tokenizer`).

- ``fortunes``: Debian's ``fortunes`` corpora (``/usr/share/games/fortunes/<category>``, entries
  separated by lines holding a single ``%``), a topic task over `FORTUNE_CATEGORIES`: entries of
  at most `MAX_CHARS` characters (whitespace collapsed, duplicates dropped), the same number per
  category (the smallest category's count), 20% of each category held out as the test split by
  a fixed permutation, so the split and the class balance are deterministic.
- a CSV file with a header holding columns ``text`` and ``label`` (label names, sorted, become
  the classes); 20% held out the same way.

The tokenizer is trained on the training texts only, at `VOCAB_SIZE` ids; splits hold its ids
as int32 ``[N, SEQ_LEN]`` (truncated, padded with 0) in ``Split.images`` (the family's inputs)
and the raw texts in ``texts``. Smaller vocabularies of a search come from the same ids
through `Tokenizer.reduce_ids`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekit.errors import ModelFormatError
from edgekit.nas.datasets import Dataset, DatasetUnavailableError, Split
from edgekit.nas.tokenizer import Tokenizer

FORTUNES_DIR = Path("/usr/share/games/fortunes")
FORTUNE_CATEGORIES = ("computers", "men-women", "politics", "science")
MAX_CHARS = 200
#: the largest vocabulary a search may choose and the stored sequence length
VOCAB_SIZE = 2048
SEQ_LEN = 64
TEST_FRACTION = 0.2


@dataclass(frozen=True)
class TextSplit(Split):
    """``images``: token ids int32 [N, T]; ``labels``: int64 [N]; ``texts``: the N texts."""

    texts: tuple[str, ...] = ()


@dataclass(frozen=True)
class TextDataset(Dataset):
    class_names: tuple[str, ...] = ()
    seq_len: int = SEQ_LEN
    vocab_size: int = VOCAB_SIZE
    tokenizer: Tokenizer | None = field(default=None, compare=False, repr=False)


def read_fortunes(path: Path, max_chars: int = MAX_CHARS) -> list[str]:
    """The entries of one fortune file (whitespace collapsed, at most ``max_chars``, unique,
    in file order)."""
    try:
        raw = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise DatasetUnavailableError(f"fortune file {str(path)!r} cannot be read: {err}") from None
    entries, seen, lines = [], set(), []
    for line in raw.splitlines() + ["%"]:
        if line.strip() != "%":
            lines.append(line)
            continue
        text = " ".join(" ".join(lines).split())
        lines = []
        if text and len(text) <= max_chars and text not in seen:
            seen.add(text)
            entries.append(text)
    return entries


def _stratified(texts_by_class: list[list[str]], balance: bool, seed: int = 0
                ) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    rng = np.random.default_rng(seed)
    n = min(len(t) for t in texts_by_class) if balance else None
    train, test = [], []
    for label, texts in enumerate(texts_by_class):
        order = rng.permutation(len(texts))[:n]
        cut = len(order) - max(1, int(round(len(order) * TEST_FRACTION)))
        train += [(texts[i], label) for i in order[:cut]]
        test += [(texts[i], label) for i in order[cut:]]
    # the search holds out the end of the training split: mix the classes
    train = [train[i] for i in rng.permutation(len(train))]
    test = [test[i] for i in rng.permutation(len(test))]
    return train, test


def text_dataset(name: str, train: list[tuple[str, int]], test: list[tuple[str, int]],
                 class_names, *, vocab_size: int = VOCAB_SIZE, seq_len: int = SEQ_LEN
                 ) -> TextDataset:
    """Train the tokenizer on ``train``'s texts and tokenize both splits."""
    tok = Tokenizer.train([t for t, _ in train], vocab_size)

    def split(rows):
        texts = tuple(t for t, _ in rows)
        return TextSplit(tok.encode_batch(texts, seq_len),
                         np.array([y for _, y in rows], np.int64), texts)

    return TextDataset(name, split(train), split(test), len(class_names),
                       class_names=tuple(class_names), seq_len=seq_len,
                       vocab_size=tok.vocab_size, tokenizer=tok)


def load_fortunes(root: Path | None = None, categories=FORTUNE_CATEGORIES, **kw) -> TextDataset:
    root = FORTUNES_DIR if root is None else Path(root)
    texts = []
    for c in categories:
        path = root / c
        if not path.is_file():
            raise DatasetUnavailableError(
                f"fortune file {str(path)!r} is missing: install the Debian package fortunes"
                " (apt-get install fortunes)")
        texts.append(read_fortunes(path))
        if len(texts[-1]) < 2:
            raise ModelFormatError(f"fortune file {str(path)!r} holds fewer than 2 entries of"
                                   f" at most {MAX_CHARS} characters")
    return text_dataset("fortunes", *_stratified(texts, balance=True), categories, **kw)


def load_text_csv(path: Path, **kw) -> TextDataset:
    """A CSV with a header row naming columns ``text`` and ``label``."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"text", "label"} <= set(reader.fieldnames):
                raise ModelFormatError(f"{path}:1: the header must name columns 'text' and"
                                       f" 'label' (it has {reader.fieldnames})")
            rows = []
            for row in reader:
                text, label = (row.get("text") or "").strip(), (row.get("label") or "").strip()
                if not text or not label:
                    raise ModelFormatError(f"{path}:{reader.line_num}: empty text or label")
                rows.append((text, label))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ModelFormatError(f"dataset {str(path)!r} cannot be read as CSV: {err}") from None
    names = sorted({label for _, label in rows})
    if len(names) < 2:
        raise ModelFormatError(f"{path}: needs at least 2 labels, found {names}")
    by_class = [[t for t, label in rows if label == name] for name in names]
    small = [n for n, t in zip(names, by_class) if len(t) < 2]
    if small:
        raise ModelFormatError(f"{path}: label(s) {small} have fewer than 2 texts")
    return text_dataset(path.stem, *_stratified(by_class, balance=False), names, **kw)
