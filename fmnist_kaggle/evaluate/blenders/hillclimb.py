"""`hillclimb`: Caruana ensemble selection on the log-linear pool (bagged with 6+ runs),
scored nested."""

from __future__ import annotations

from fmnist_kaggle.evaluate.blenders._pool import PoolBlender, describe

FITTED = True
__all__ = ["FITTED", "describe", "make"]


def make(seed: int = 0, temperature: bool = False) -> PoolBlender:
    return PoolBlender("hillclimb", seed)
