"""Datasets that need no download at run time.

- Fashion-MNIST from Debian's ``dataset-fashion-mnist`` (gzipped IDX files under
  ``/usr/share/datasets/fashion-mnist/``), read with numpy only;
- scikit-learn's bundled ``load_digits`` (8x8 digits) where scikit-learn is installed.

Images come back as float32 NHWC in [0, 1] (``(N, H, W, 1)``), labels as int64 ``(N,)``.
Every file problem raises a `ModelError` subclass naming the file, never an ``assert``.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.errors import EdgekitError, ModelFormatError

#: where Debian's dataset-fashion-mnist package puts its files
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")

#: IDX type byte -> numpy dtype (big-endian where multi-byte), per the IDX format spec
_IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


class DatasetUnavailableError(EdgekitError):
    """The dataset's files or package are not installed here."""


@dataclass(frozen=True)
class Split:
    """One split of a labelled image dataset: ``images`` (N, H, W, C) float32, ``labels`` (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (gzipped when the name ends in ``.gz``) into a numpy array."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise ModelFormatError(f"IDX file {str(path)!r} cannot be read: {err}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ModelFormatError(f"IDX file {str(path)!r}: bad magic number {raw[:4].hex()}")
    dtype = _IDX_DTYPES.get(raw[2])
    if dtype is None:
        raise ModelFormatError(f"IDX file {str(path)!r}: unknown element type 0x{raw[2]:02x}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ModelFormatError(f"IDX file {str(path)!r}: truncated header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    count = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header != count * dtype.itemsize:
        raise ModelFormatError(f"IDX file {str(path)!r}: header says shape {shape}"
                               f" ({count * dtype.itemsize} bytes), file holds"
                               f" {len(raw) - header} bytes of data")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def load_fashion_mnist(split: str = "train", *, limit: int | None = None,
                       root: Path | None = None) -> Split:
    """Fashion-MNIST ``split`` ("train": 60000, "test": 10000) as (N, 28, 28, 1) floats in [0, 1].

    ``limit`` keeps the first ``limit`` samples (tests use small slices); ``root`` overrides the
    Debian install directory.
    """
    prefixes = {"train": "train", "test": "t10k"}
    if split not in prefixes:
        raise EdgekitError(f"Fashion-MNIST has splits 'train' and 'test', not {split!r}")
    root = FASHION_MNIST_DIR if root is None else Path(root)
    image_file = root / f"{prefixes[split]}-images-idx3-ubyte.gz"
    label_file = root / f"{prefixes[split]}-labels-idx1-ubyte.gz"
    for path in (image_file, label_file):
        if not path.is_file():
            raise DatasetUnavailableError(
                f"Fashion-MNIST file {str(path)!r} is missing: install the Debian package"
                " dataset-fashion-mnist (apt-get install dataset-fashion-mnist)")
    images = read_idx(image_file)
    labels = read_idx(label_file)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ModelFormatError(f"Fashion-MNIST {split}: images {images.shape} and labels"
                               f" {labels.shape} do not match")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return Split(images=(images.astype(np.float32) / 255.0)[..., None],
                 labels=labels.astype(np.int64))


def fashion_mnist_available(root: Path | None = None) -> bool:
    """True when the Debian Fashion-MNIST files are installed."""
    root = FASHION_MNIST_DIR if root is None else Path(root)
    return (root / "t10k-images-idx3-ubyte.gz").is_file()


def load_digits() -> Split:
    """scikit-learn's 8x8 digits (1797 samples) as (N, 8, 8, 1) floats in [0, 1]."""
    try:
        from sklearn.datasets import load_digits as sklearn_load_digits
    except ImportError:
        raise DatasetUnavailableError("the digits dataset needs scikit-learn, which is not"
                                      " installed") from None
    bunch = sklearn_load_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[..., None]
    return Split(images=images, labels=bunch.target.astype(np.int64))
