"""The toy dataset of the search tests: 90 random 8x8 grey images in 3 classes, as an .npz
file that `edgekit search --dataset PATH` reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_toy_npz(path: Path) -> Path:
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.integers(0, 256, size=(90, 8, 8), dtype=np.uint8),
             y=rng.integers(0, 3, size=90))
    return path
