"""`weighted`: each run temperature-calibrated, then a log-linear pool with simplex weights
fitted for OOF log-loss (L-BFGS), scored nested."""

from __future__ import annotations

from fmnist_kaggle.evaluate.blenders._pool import PoolBlender, describe

FITTED = True
__all__ = ["FITTED", "describe", "make"]


def make(seed: int = 0, temperature: bool = False) -> PoolBlender:
    return PoolBlender("weighted", seed)
