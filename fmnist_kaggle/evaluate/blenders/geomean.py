"""`geomean`: the runs' log-probabilities averaged (a geometric mean of probabilities)."""

from __future__ import annotations

import numpy as np

from fmnist_kaggle.evaluate.blenders._common import _logprobs

FITTED = False


def blend_geomean(oofs: list[np.ndarray], tests: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return _logprobs(np.mean([_logprobs(o) for o in oofs], axis=0)), _logprobs(
        np.mean([_logprobs(t) for t in tests], axis=0)
    )


def combine(
    oofs: list[np.ndarray], tests: list[np.ndarray], space: str = "prob"
) -> tuple[np.ndarray, np.ndarray, dict]:
    return (*blend_geomean(oofs, tests), {"space": "log-prob"})
