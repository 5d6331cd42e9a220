"""`rank`: per-class ranks averaged (for AUC-like metrics; its log-loss is poor)."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from fmnist_kaggle import metrics

FITTED = False


def _rank(p: np.ndarray) -> np.ndarray:
    return rankdata(p, axis=0) / len(p)


def blend_rank(oofs: list[np.ndarray], tests: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Average per-class ranks (rows ranked within each class column), normalized per row.

    Good for AUC-like metrics; its 'probabilities' are not calibrated, so its log-loss is poor.
    """

    def go(arrs: list[np.ndarray]) -> np.ndarray:
        r = np.mean([_rank(metrics.softmax(a)) for a in arrs], axis=0)
        return np.log(np.clip(r / r.sum(axis=1, keepdims=True), 1e-15, None))

    return go(oofs), go(tests)


def combine(
    oofs: list[np.ndarray], tests: list[np.ndarray], space: str = "prob"
) -> tuple[np.ndarray, np.ndarray, dict]:
    return (*blend_rank(oofs, tests), {"space": "rank"})
