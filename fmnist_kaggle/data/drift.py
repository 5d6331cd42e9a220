"""Adversarial validation (`fkaggle data drift`): can a classifier tell training rows from
test rows? ROC AUC near 0.5 means the two look alike, so CV should track the leaderboard;
near 1 means a shift worth explaining (and worth choosing folds for).

A scikit-learn forest on the raw pixels, scored out of fold (stratified k-fold), so the
AUC is honest; its pixel importances show where the difference lies, and the training
rows it finds most test-like are the ones a validation set could be built from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from fmnist_kaggle.data.images import ImageSet, plain_label
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.plots import drift_figures
from fmnist_kaggle.storage import atomic
from fmnist_kaggle.storage.artifacts import utc_now


def verdict(auc: float) -> str:
    if auc < 0.6:
        return "train and test look alike (no detectable shift): CV should track the leaderboard"
    if auc < 0.8:
        return "mild shift: some test rows differ from training rows; check the pictures and the CV-LB gap"
    return "strong shift: a classifier tells test from training rows; expect CV and leaderboard to disagree"


def adversarial_validation(
    train: ImageSet, test: ImageSet, rows: int = 5000, folds: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Out-of-fold ROC AUC of train-vs-test, pixel importances (28x28) and the most test-like training rows."""
    if folds < 2 or rows < folds:
        raise FkaggleError(f"--folds must be at least 2 and --rows at least --folds, got {folds} and {rows}")
    rng = np.random.default_rng(seed)
    tr = np.sort(rng.choice(len(train), min(rows, len(train)), replace=False))
    te = np.sort(rng.choice(len(test), min(rows, len(test)), replace=False))
    x = np.concatenate([train.images[tr], test.images[te]]).reshape(len(tr) + len(te), -1).astype(np.float32) / 255.0
    is_test = np.r_[np.zeros(len(tr), int), np.ones(len(te), int)]
    forest = ExtraTreesClassifier(n_estimators=200, min_samples_leaf=3, n_jobs=-1, random_state=seed)
    p_test = cross_val_predict(
        forest, x, is_test, cv=StratifiedKFold(folds, shuffle=True, random_state=seed), method="predict_proba"
    )[:, 1]
    auc = float(roc_auc_score(is_test, p_test))
    importance = forest.fit(x, is_test).feature_importances_.reshape(train.images.shape[1:])
    order = np.argsort(-p_test[: len(tr)], kind="stable")[:16]
    return {
        "auc": auc,
        "verdict": verdict(auc),
        "train_rows": len(tr),
        "test_rows": len(te),
        "folds": folds,
        "importance": importance,
        "test_like_rows": tr[order].tolist(),
        "test_like_ids": [plain_label(i) for i in train.ids[tr[order]]],  # the file's ids (1-based rows without)
        "id_column": train.id_column,
        "test_like_p": p_test[order].round(4).tolist(),
    }


def drift_report(
    train: ImageSet,
    test: ImageSet | None,
    importance_png: Path,
    test_like_png: Path,
    rows: int = 5000,
    folds: int = 5,
    result_json: Path | None = None,
) -> dict[str, Any]:
    """Adversarial validation with its pictures; the result also saved to `result_json` (the report reads it)."""
    if test is None:
        raise FkaggleError("drift needs a test file (--test or the competition config)")
    res = adversarial_validation(train, test, rows, folds)
    drift_figures(
        res["importance"],
        train.images[res["test_like_rows"]],
        res["test_like_p"],
        res["auc"],
        importance_png,
        test_like_png,
        res["test_like_ids"],
        train.id_column,
    )
    out = {
        **{k: v for k, v in res.items() if k != "importance"},
        "importance_png": str(importance_png),
        "test_like_png": str(test_like_png),
    }
    if result_json is not None:
        atomic.write_json(
            result_json, {**out, "train_path": str(train.path), "test_path": str(test.path), "created": utc_now()}
        )
    return out
