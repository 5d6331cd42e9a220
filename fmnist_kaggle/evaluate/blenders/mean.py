"""`mean`: the runs' probabilities averaged (or their logits, `--space logit`)."""

from __future__ import annotations

import numpy as np

from fmnist_kaggle.evaluate.blenders._common import _logprobs, _mix

FITTED = False


def blend_mean(oofs: list[np.ndarray], tests: list[np.ndarray], space: str = "prob") -> tuple[np.ndarray, np.ndarray]:
    if space == "logit":
        return _logprobs(np.mean(oofs, axis=0)), _logprobs(np.mean(tests, axis=0))
    w = np.full(len(oofs), 1 / len(oofs))
    return _mix([_logprobs(o) for o in oofs], w), _mix([_logprobs(t) for t in tests], w)


def combine(
    oofs: list[np.ndarray], tests: list[np.ndarray], space: str = "prob"
) -> tuple[np.ndarray, np.ndarray, dict]:
    return (*blend_mean(oofs, tests, space), {"space": space})
