"""`stack`: a level-2 logistic regression on the runs' log-probabilities (optionally
temperature-scaled), scored nested."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fmnist_kaggle.evaluate.blenders._common import _logprobs, fit_temperature

FITTED = True


class StackBlender(ClassifierMixin, BaseEstimator):
    """Level-2 logistic regression on the runs' log-probabilities, optional temperature. X: (N, runs, K) logits."""

    def __init__(self, C: float = 1.0, temperature: bool = False) -> None:
        self.C = C
        self.temperature = temperature

    @staticmethod
    def _features(X: np.ndarray) -> np.ndarray:
        return _logprobs(X.reshape(-1, X.shape[2])).reshape(len(X), -1)

    def fit(self, X: np.ndarray, y: np.ndarray) -> "StackBlender":
        # log-probabilities span ~[-30, 0]: standardize so lbfgs converges
        self.model_ = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=2000)).fit(
            self._features(X), y
        )
        self.temperature_ = (
            fit_temperature(self.model_.decision_function(self._features(X)), y) if self.temperature else 1.0
        )
        self.classes_ = self.model_.classes_
        return self

    def predict_log_proba(self, X: np.ndarray) -> np.ndarray:
        return _logprobs(self.model_.decision_function(self._features(X)) / self.temperature_)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_log_proba(X).argmax(1)


def make(seed: int = 0, temperature: bool = False) -> StackBlender:
    return StackBlender(temperature=temperature)


def describe(final: StackBlender, names: list[str]) -> dict:
    return {"level2": "StandardScaler + LogisticRegression(C=1.0)", "temperature": final.temperature_}
