"""`fk.FoldClassifier`: the k-fold machinery as a scikit-learn estimator (skorch's pattern).

`fit(X, y)` trains a k-fold run on the arrays (a normal run folder: blend it, submit it, report
it), `cv_` is its out-of-fold accuracy; `predict_proba`/`predict` average its fold models over
new images; `classes_` are the labels' own values; `get_params`/`set_params`/`clone` come from
`BaseEstimator`, `score` (accuracy) from `ClassifierMixin`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from fmnist_kaggle import api
from fmnist_kaggle.data.competition import competition_from_arrays
from fmnist_kaggle.durations import parse_duration
from fmnist_kaggle.runs.driver import train_folds
from fmnist_kaggle.runs.folder import default_run_name
from fmnist_kaggle.runs.predict import predict_arrays
from fmnist_kaggle.training.deadline import Deadline


class FoldClassifier(ClassifierMixin, BaseEstimator):
    """A k-fold run of `recipe` (any `TrainConfig` field in `settings`, e.g. epochs=2) on X, y.

    `time_limit` ('5m', or seconds): the run is sized to it (fewer steps a unit), as
    `fkaggle fold-train --time-limit` sizes one. `run`: the run's name (default: from the data
    and settings, so fitting the same data again resumes instead of retraining)."""

    def __init__(
        self,
        recipe: str = "fast",
        folds: int = 5,
        time_limit: str | float | None = None,
        run: str | None = None,
        workdir: str | Path = ".",
        progress: bool = False,
        **settings: Any,
    ) -> None:
        self.recipe, self.folds, self.time_limit, self.run = recipe, folds, time_limit, run
        self.workdir, self.progress, self.settings = workdir, progress, settings

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        params = {k: getattr(self, k) for k in ("recipe", "folds", "time_limit", "run", "workdir", "progress")}
        return {**params, **self.settings}

    def set_params(self, **params: Any) -> FoldClassifier:
        for key, value in params.items():
            if key in ("recipe", "folds", "time_limit", "run", "workdir", "progress"):
                setattr(self, key, value)
            else:
                self.settings[key] = value
        return self

    def fit(self, X: Any, y: Any, X_test: Any = None, y_test: Any = None) -> FoldClassifier:
        """Train the k-fold run on X, y; with `X_test` (and `y_test`), the run also predicts the
        competition's test images, so `fk.make_submission` can submit it."""
        comp = competition_from_arrays(X, y, X_test, y_test, name="fold-classifier")
        cfg = api.build_config(recipe=self.recipe, folds=self.folds, **self.settings)
        train = comp.train_set
        name = self.run or f"fc-{train.fingerprint()[:8]}-{default_run_name(cfg).rsplit('-', 1)[-1]}"
        deadline = None
        if self.time_limit is not None:
            seconds = parse_duration(self.time_limit) if isinstance(self.time_limit, str) else float(self.time_limit)
            deadline = Deadline.after(seconds)
        with api._progress(self.progress):
            manifest = train_folds(
                comp,
                cfg,
                name,
                self.workdir,
                progress=self.progress,
                deadline=deadline,
                time_limit=deadline is not None,
            )
        self.run_ = manifest["run"]
        self.cv_ = manifest["cv"]["acc"]
        words = any(isinstance(v, str) for v in train.label_values)
        self.classes_ = np.asarray(train.label_values, dtype=object if words else np.int64)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "run_")
        return predict_arrays(self.run_, X, self.workdir)[0]

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


__all__ = ["FoldClassifier"]
