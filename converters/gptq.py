"""GPTQ-style rounding of low-bit weights (Frantar et al., "GPTQ", 2022, Algorithm 1).

Round-to-nearest rounds every weight on its own. GPTQ rounds the input columns of a layer one
at a time and spreads each column's rounding error over the columns not yet rounded, weighted
by the inverse Hessian ``H = X X^T`` of the layer's inputs on calibration data, so the layer's
*output* error ``||W X - Q X||`` is what gets minimised. Scales are fixed beforehand (per output
channel, or one for the tensor); only the integer choice changes.

Layouts: a CONV_2D weight ``[O, KH, KW, C]`` is a matrix ``[O, KH*KW*C]`` over im2col windows in
the same (kh, kw, c) order; FULLY_CONNECTED is ``[N, K]`` already. Depthwise weights mix no
input channels, so they keep round-to-nearest.
"""

from __future__ import annotations

import numpy as np

#: damping added to the Hessian's diagonal, as a fraction of its mean (GPTQ's default)
DAMPING = 0.01


class HessianAccumulator:
    """Accumulates ``X^T X`` over rows of layer inputs (one row per output position)."""

    def __init__(self, k: int):
        self.h = np.zeros((k, k), np.float64)
        self.rows = 0

    def add(self, rows: np.ndarray) -> None:
        rows = rows.reshape(-1, self.h.shape[0]).astype(np.float64)
        self.h += rows.T @ rows
        self.rows += len(rows)


def gptq_round(w: np.ndarray, scale: np.ndarray, hessian: np.ndarray, qmin: int,
               qmax: int) -> np.ndarray:
    """Integer weights for ``w`` ``[O, K]`` with scales ``scale`` (``[O]`` or ``[1]``), chosen
    column by column with error feedback through the inverse of ``hessian`` ``[K, K]``."""
    w = w.astype(np.float64).copy()
    s = np.broadcast_to(np.asarray(scale, np.float64).reshape(-1), (w.shape[0],))
    h = hessian.astype(np.float64).copy()
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h += DAMPING * np.mean(np.diag(h)) * np.eye(len(h))
    # upper Cholesky factor of H^-1: row j holds the feedback weights for column j onwards
    upper = np.linalg.cholesky(np.linalg.inv(h)).T
    q = np.zeros(w.shape, np.int64)
    for j in range(w.shape[1]):
        col = w[:, j]
        q[:, j] = np.clip(np.round(col / s), qmin, qmax)
        err = (col - q[:, j] * s) / upper[j, j]
        w[:, j:] -= np.outer(err, upper[j, j:])
    return q.astype(np.int8)
