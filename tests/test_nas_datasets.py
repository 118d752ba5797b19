"""Fashion-MNIST IDX loader (Debian dataset-fashion-mnist) and its errors on bad files."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from edgekit.errors import ModelFormatError
from edgekit.nas.datasets import (DatasetUnavailableError, fashion_mnist_available,
                                  load_digits, load_fashion_mnist, read_idx)


def _idx_bytes(array: np.ndarray, type_byte: int = 0x08) -> bytes:
    header = bytes([0, 0, type_byte, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(">u1").tobytes()


def test_read_idx_round_trip_gzipped(tmp_path):
    data = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(_idx_bytes(data)))
    np.testing.assert_array_equal(read_idx(path), data)


@pytest.mark.parametrize("mangle, words", [
    (lambda b: b"\x01" + b[1:], "magic"),
    (lambda b: b[:2] + b"\x42" + b[3:], "element type"),
    (lambda b: b[:-1], "holds"),
    (lambda b: b[:5], "truncated"),
])
def test_read_idx_rejects_bad_files(tmp_path, mangle, words):
    path = tmp_path / "bad-idx"
    path.write_bytes(mangle(_idx_bytes(np.zeros((2, 3), np.uint8))))
    with pytest.raises(ModelFormatError, match=words) as err:
        read_idx(path)
    assert "bad-idx" in str(err.value)


def test_missing_dataset_names_the_package(tmp_path):
    with pytest.raises(DatasetUnavailableError, match="dataset-fashion-mnist"):
        load_fashion_mnist("test", root=tmp_path)


@pytest.mark.skipif(not fashion_mnist_available(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_slice():
    split = load_fashion_mnist("test", limit=100)
    assert split.images.shape == (100, 28, 28, 1) and split.images.dtype == np.float32
    assert 0.0 <= split.images.min() and split.images.max() <= 1.0
    assert split.labels.dtype == np.int64 and set(split.labels) <= set(range(10))
    # first test labels of Fashion-MNIST (the published t10k order): ankle boot, pullover, trouser
    assert list(split.labels[:3]) == [9, 2, 1]


def test_digits_needs_sklearn_or_loads():
    try:
        import sklearn  # noqa: F401
    except ImportError:
        with pytest.raises(DatasetUnavailableError, match="scikit-learn"):
            load_digits()
        return
    split = load_digits()
    assert split.images.shape == (1797, 8, 8, 1)
