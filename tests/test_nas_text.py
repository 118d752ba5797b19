"""Text datasets (Debian fortunes, CSV) and the local BPE tokenizer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekit.errors import ModelFormatError, UsageError
from edgekit.nas.datasets import DatasetUnavailableError, load_dataset
from edgekit.nas.text import FORTUNES_DIR, FORTUNE_CATEGORIES, load_fortunes, read_fortunes
from edgekit.nas.tokenizer import PAD_ID, UNK_ID, Tokenizer

TEXTS = ["The cat sat on the mat.", "The dog sat on the log!", "A cat and a dog, at last.",
         "Cats chase dogs; dogs chase cats.", "the matter of the mats", "Sat, sat, sat."] * 3

fortunes_installed = pytest.mark.skipif(not all((FORTUNES_DIR / c).is_file()
                                                for c in FORTUNE_CATEGORIES),
                                        reason="Debian package fortunes not installed")


# --- tokenizer -----------------------------------------------------------------------------------

def test_tokenizer_training_is_deterministic_and_reaches_the_size():
    a, b = Tokenizer.train(TEXTS, 45), Tokenizer.train(list(TEXTS), 45)
    assert a.to_json() == b.to_json()
    assert a.vocab_size == 45 and a.tokens[PAD_ID] == "[PAD]" and a.tokens[UNK_ID] == "[UNK]"
    # frequent words became single tokens
    assert len(a.encode("the cat sat")) == 3


def test_tokenizer_round_trip_through_json(tmp_path):
    tok = Tokenizer.train(TEXTS, 50)
    loaded = Tokenizer.load(tok.save(tmp_path / "tokenizer.json"))
    assert loaded.to_json() == tok.to_json()
    for text in TEXTS[:6] + ["unseen words: zebra"]:
        assert loaded.encode(text) == tok.encode(text)
    assert tok.decode(tok.encode("The  Cat sat.")) == "the cat sat ."


def test_unknown_symbols_padding_and_truncation():
    tok = Tokenizer.train(TEXTS, 50)
    ids = tok.encode("cat \u00e9\u00e9")  # é never seen in training
    assert UNK_ID in ids and max(ids) < tok.vocab_size
    batch = tok.encode_batch(["cat", "the cat sat on the mat and the dog sat on the log"], 6)
    assert batch.dtype == np.int32 and batch.shape == (2, 6)
    assert list(batch[0, 1:]) == [PAD_ID] * 5 and PAD_ID not in batch[1]


def test_smaller_vocabularies_are_the_first_merges():
    full = Tokenizer.train(TEXTS, 70)
    for size in (full.base, full.base + 5, 60):
        assert full.truncated(size).to_json() == Tokenizer.train(TEXTS, size).to_json()
        ids = full.encode_batch(TEXTS, 12)
        np.testing.assert_array_equal(full.reduce_ids(ids, size, 10),
                                      full.truncated(size).encode_batch(TEXTS, 10))
    with pytest.raises(UsageError, match="below"):
        full.truncated(full.base - 1)


def test_tokenizer_errors(tmp_path):
    with pytest.raises(UsageError, match="base symbols"):
        Tokenizer.train(TEXTS, 5)
    bad = tmp_path / "t.json"
    bad.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ModelFormatError, match="t.json"):
        Tokenizer.load(bad)
    d = Tokenizer.train(TEXTS, 40).to_dict()
    d["merges"].append([0, 3])
    with pytest.raises(ModelFormatError, match="merge"):
        Tokenizer.from_dict(d)


# --- fortunes ------------------------------------------------------------------------------------

def test_read_fortunes_parses_entries(tmp_path):
    path = tmp_path / "topic"
    path.write_text("First entry\n  on two lines\n%\n" + "x" * 201 + "\n%\nFirst entry on two"
                    " lines\n%\nLast one, no trailing separator\n")
    assert read_fortunes(path) == ["First entry on two lines", "Last one, no trailing separator"]


def test_missing_fortunes_name_the_path(tmp_path):
    with pytest.raises(DatasetUnavailableError, match="fortunes") as err:
        load_fortunes(root=tmp_path)
    assert str(tmp_path / FORTUNE_CATEGORIES[0]) in str(err.value)


@fortunes_installed
def test_fortunes_dataset_is_balanced_and_deterministic():
    data = load_dataset("fortunes")
    again = load_fortunes()
    assert data.class_names == FORTUNE_CATEGORIES and data.num_classes == 4
    assert data.train.images.dtype == np.int32 and data.train.images.shape[1] == data.seq_len
    assert data.vocab_size == data.tokenizer.vocab_size == 2048
    assert np.bincount(data.train.labels).tolist() == [len(data.train) // 4] * 4
    assert np.bincount(data.test.labels).tolist() == [len(data.test) // 4] * 4
    assert len(data.test) / (len(data.train) + len(data.test)) == pytest.approx(0.2, abs=0.01)
    np.testing.assert_array_equal(data.train.images, again.train.images)
    assert data.test.texts == again.test.texts and not set(data.train.texts) & set(data.test.texts)
    assert all(len(t) <= 200 for t in data.train.texts)
    np.testing.assert_array_equal(data.test.images[:5],
                                  data.tokenizer.encode_batch(data.test.texts[:5], data.seq_len))


# --- CSV -----------------------------------------------------------------------------------------

def _csv(tmp_path, text: str):
    path = tmp_path / "texts.csv"
    path.write_text(text)
    return path


def test_csv_dataset(tmp_path):
    rows = "".join(f'"{t}",{"pets" if "cat" in t.lower() or "dog" in t.lower() else "other"}\n'
                   for t in TEXTS)
    data = load_dataset(str(_csv(tmp_path, "text,label\n" + rows)))
    assert data.name == "texts" and data.class_names == ("other", "pets")
    assert len(data.train) + len(data.test) == len(TEXTS)
    assert data.train.images.shape[1] == data.seq_len and data.tokenizer is not None


@pytest.mark.parametrize("content, where", [
    ("words,label\nhello,a\n", "texts.csv:1"),
    ("text,label\nhello,a\nbye,\n", "texts.csv:3"),
    ("text,label\nhello,a\nbye,a\n", "at least 2 labels"),
    ("text,label\nhello,a\nbye,a\nhi,b\n", "fewer than 2"),
])
def test_csv_errors_name_file_and_line(tmp_path, content, where):
    with pytest.raises(ModelFormatError, match=where.replace(".", r"\.")):
        load_dataset(str(_csv(tmp_path, content)))
