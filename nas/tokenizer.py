"""A small byte-pair-encoding (BPE) subword tokenizer trained locally on the training texts.

Normalisation: NFKC, lower case; pre-tokens are runs of word characters or single other
non-space characters (``\\w+|[^\\w\\s]``); the first symbol of every pre-token carries ``▁``
(a word start). The base alphabet is every symbol seen at least twice in training (others
encode as ``[UNK]``); id 0 is ``[PAD]``, 1 ``[UNK]``, then the base symbols, then one id per
merge in the order training chose them (greedy: the most frequent adjacent pair, ties to the
smallest id pair, so training is deterministic).

Why merges are identified by ids (two merges may spell the same string) and applied in rank
order: then the tokenizer of a smaller vocabulary is exactly this one with its last merges
dropped (`truncated`), and `reduce_ids` turns ids of the full vocabulary into the ids the
smaller one would give the same text, by splitting every id >= the smaller size back into its
two parents. So one tokenization of a dataset serves every vocabulary size of a search.
"""

from __future__ import annotations

import heapq
import json
import re
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np

from edgekit.errors import ModelFormatError, UsageError

PAD_ID, UNK_ID = 0, 1
SPECIALS = ("[PAD]", "[UNK]")
WORD_START = "\u2581"
FORMAT = "edgekit-bpe"
_PRETOKEN = re.compile(r"\w+|[^\w\s]")


def pretokens(text: str) -> list[str]:
    return _PRETOKEN.findall(unicodedata.normalize("NFKC", text).lower())


def _symbols(word: str) -> list[str]:
    return [WORD_START + word[0]] + list(word[1:])


class Tokenizer:
    """Base ``symbols`` and ``merges`` (pairs of ids); see the module docstring."""

    def __init__(self, symbols: list[str], merges: list[tuple[int, int]]):
        self.symbols = list(symbols)
        self.merges = [(int(a), int(b)) for a, b in merges]
        self.base = len(SPECIALS) + len(self.symbols)
        self.tokens = list(SPECIALS) + self.symbols
        self.rank: dict[tuple[int, int], int] = {}
        for i, (a, b) in enumerate(self.merges):
            if not (0 <= a < self.base + i and 0 <= b < self.base + i) or min(a, b) < len(SPECIALS):
                raise ModelFormatError(f"tokenizer merge {i} ({a}, {b}) names an id that is a"
                                       " special token or not yet defined")
            self.rank.setdefault((a, b), self.base + i)
            self.tokens.append(self.tokens[a] + self.tokens[b])
        self._ids = {s: len(SPECIALS) + i for i, s in enumerate(self.symbols)}
        self._cache: dict[str, list[int]] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    # --- training ---------------------------------------------------------------------------

    @classmethod
    def train(cls, texts, vocab_size: int, *, min_count: int = 2) -> "Tokenizer":
        """Learn merges on ``texts`` until ``vocab_size`` ids (fewer if no pair occurs
        ``min_count`` times any more)."""
        words = Counter(w for t in texts for w in pretokens(t))
        sym_count: Counter = Counter()
        for w, n in words.items():
            for s in _symbols(w):
                sym_count[s] += n
        symbols = sorted(s for s, n in sym_count.items() if n >= min_count)
        if vocab_size < len(SPECIALS) + len(symbols):
            raise UsageError(f"tokenizer vocabulary size {vocab_size} is smaller than the"
                             f" {len(SPECIALS)} special tokens plus the {len(symbols)} base"
                             " symbols of the training texts")
        ids = {s: len(SPECIALS) + i for i, s in enumerate(symbols)}
        seqs = [[ids.get(s, UNK_ID) for s in _symbols(w)] for w in sorted(words)]
        freq = [words[w] for w in sorted(words)]
        counts: Counter = Counter()
        where: dict[tuple[int, int], set[int]] = {}

        def pairs(seq):
            return [(a, b) for a, b in zip(seq, seq[1:]) if a != UNK_ID and b != UNK_ID]

        for i, seq in enumerate(seqs):
            for p in pairs(seq):
                counts[p] += freq[i]
                where.setdefault(p, set()).add(i)
        heap = [(-n, p) for p, n in counts.items()]
        heapq.heapify(heap)
        merges: list[tuple[int, int]] = []
        next_id = len(SPECIALS) + len(symbols)
        while next_id < vocab_size and heap:
            neg, pair = heapq.heappop(heap)
            if counts.get(pair, 0) != -neg:
                continue  # stale: the pair's current count has its own entry
            if -neg < min_count:
                break
            merges.append(pair)
            touched: set[tuple[int, int]] = set()
            for i in sorted(where.pop(pair, ())):
                old = seqs[i]
                new = _merge(old, pair, next_id)
                for p in pairs(old):
                    counts[p] -= freq[i]
                    touched.add(p)
                for p in pairs(new):
                    counts[p] += freq[i]
                    where.setdefault(p, set()).add(i)
                    touched.add(p)
                seqs[i] = new
            counts.pop(pair, None)
            for p in touched:
                if counts.get(p, 0) > 0:
                    heapq.heappush(heap, (-counts[p], p))
                else:
                    counts.pop(p, None)
            next_id += 1
        return cls(symbols, merges)

    # --- encoding ---------------------------------------------------------------------------

    def encode_word(self, word: str) -> list[int]:
        hit = self._cache.get(word)
        if hit is not None:
            return hit
        seq = [self._ids.get(s, UNK_ID) for s in _symbols(word)]
        while len(seq) > 1:
            best = min((self.rank.get(p, 1 << 30), p) for p in zip(seq, seq[1:]))
            if best[0] == 1 << 30:
                break
            seq = _merge(seq, best[1], best[0])
        self._cache[word] = seq
        return seq

    def encode(self, text: str) -> list[int]:
        return [i for w in pretokens(text) for i in self.encode_word(w)]

    def encode_batch(self, texts, seq_len: int) -> np.ndarray:
        """int32 ``[N, seq_len]``: ids truncated, then padded with `PAD_ID`."""
        out = np.full((len(texts), seq_len), PAD_ID, np.int32)
        for row, text in enumerate(texts):
            ids = self.encode(text)[:seq_len]
            out[row, :len(ids)] = ids
        return out

    def decode(self, ids) -> str:
        text = "".join(self.tokens[i] for i in ids if i != PAD_ID)
        return text.replace(WORD_START, " ").strip()

    # --- smaller vocabularies ---------------------------------------------------------------

    def truncated(self, vocab_size: int) -> "Tokenizer":
        """The tokenizer that training with ``vocab_size`` would have made (its first merges)."""
        if vocab_size < self.base:
            raise UsageError(f"vocabulary size {vocab_size} is below the tokenizer's"
                             f" {self.base} special and base symbols")
        return Tokenizer(self.symbols, self.merges[:vocab_size - self.base])

    def reduce_ids(self, ids: np.ndarray, vocab_size: int, seq_len: int) -> np.ndarray:
        """Ids of this tokenizer -> the ids ``truncated(vocab_size)`` gives the same texts,
        truncated/padded to ``seq_len``. Exact as long as ``ids`` were truncated to at least
        ``seq_len`` tokens (every id splits into one or more)."""
        ids = np.asarray(ids)
        if ids.ndim != 2:
            raise UsageError(f"token ids must be [N, T], got shape {ids.shape}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise UsageError(f"token ids outside [0, {self.vocab_size}) of the tokenizer")
        if vocab_size < self.base:
            raise UsageError(f"vocabulary size {vocab_size} is below the tokenizer's"
                             f" {self.base} special and base symbols")
        expand = [[i] for i in range(min(vocab_size, self.vocab_size))]
        for i in range(vocab_size, self.vocab_size):
            a, b = self.merges[i - self.base]
            expand.append(expand[a] + expand[b])
        out = np.full((ids.shape[0], seq_len), PAD_ID, np.int32)
        for row, seq in enumerate(ids.tolist()):
            flat = [j for i in seq if i != PAD_ID for j in expand[i]][:seq_len]
            out[row, :len(flat)] = flat
        return out

    # --- files ------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": 1, "normalize": "NFKC lowercase",
                "pretokenize": _PRETOKEN.pattern, "word_start": WORD_START,
                "specials": list(SPECIALS), "symbols": self.symbols,
                "merges": [list(m) for m in self.merges]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=0)

    @classmethod
    def from_dict(cls, d: dict, where: str = "tokenizer") -> "Tokenizer":
        if not isinstance(d, dict) or d.get("format") != FORMAT or d.get("version") != 1:
            raise ModelFormatError(f"{where}: not an {FORMAT} version 1 tokenizer")
        try:
            return cls([str(s) for s in d["symbols"]], [tuple(m) for m in d["merges"]])
        except (KeyError, TypeError, ValueError) as err:
            raise ModelFormatError(f"{where}: bad symbols or merges ({err})") from None

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizer":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ModelFormatError(f"tokenizer {str(path)!r} cannot be read: {err}") from None
        return cls.from_dict(data, where=f"tokenizer {str(path)!r}")


def _merge(seq: list[int], pair: tuple[int, int], new: int) -> list[int]:
    """``seq`` with every non-overlapping occurrence of ``pair`` (left to right) -> ``new``."""
    out, i, a, b = [], 0, pair[0], pair[1]
    while i < len(seq):
        if i + 1 < len(seq) and seq[i] == a and seq[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(seq[i])
            i += 1
    return out
