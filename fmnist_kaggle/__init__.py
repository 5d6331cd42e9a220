"""fmnist_kaggle: win Kaggle-style Fashion-MNIST competitions.

The public API (docs/python.md) is imported lazily (PEP 562): `import fmnist_kaggle` loads
nothing heavy, so `fkaggle --help` and the data commands start fast; `fmnist_kaggle.fold_train`
loads the training stack on first use. The pipeline's stages are subpackages
(docs/architecture.md): storage, data, models, training, runs, evaluate, submit, search, cli.
"""

from __future__ import annotations

import importlib
from typing import Any

from fmnist_kaggle._openmp import set_wait_policy
from fmnist_kaggle._version import __version__
from fmnist_kaggle.errors import DataError, FkaggleError

_API = (
    "Competition",
    "FoldClassifier",
    "Predictions",
    "Run",
    "TrainConfig",
    "auto",
    "blend",
    "build_config",
    "create_model",
    "fold_train",
    "list_models",
    "list_runs",
    "load_competition",
    "load_run",
    "make_submission",
    "predict",
    "register_model",
    "report",
    "track",
)
set_wait_policy()  # before anything loads torch
__all__ = ["DataError", "FkaggleError", "__version__", *_API]


def __getattr__(name: str) -> Any:
    if name == "FoldClassifier":  # scikit-learn loads on use
        return importlib.import_module("fmnist_kaggle.estimator").FoldClassifier
    if name in _API:
        return getattr(importlib.import_module("fmnist_kaggle.api"), name)
    raise AttributeError(f"module 'fmnist_kaggle' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
