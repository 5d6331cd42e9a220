"""Blend the OOF/test logits of several runs, with an honest CV estimate.

Every method returns log-probabilities for the OOF rows and the test rows. Methods that
fit something on OOF predictions (weights, a selection, a level-2 model, a temperature)
are scored nested: fitted on k-1 folds, scored on the held-out fold, with the runs' own
fold assignment. The final fit uses all OOF rows and is applied to the test logits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fmnist_kaggle import metrics
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.evaluate.blenders import blender_names, load_blender
from fmnist_kaggle.evaluate.blenders._common import _logprobs
from fmnist_kaggle.runs.identity import require_same
from fmnist_kaggle.runs.store import Run

METHODS = blender_names()


def check_compatible(runs: list[Run]) -> None:
    """Refuse runs that do not share their training data, folds and test file (the run identity)."""
    if not runs:
        raise FkaggleError("no runs to blend")
    require_same([(r.name, r.identity) for r in runs])
    partial = [r for r in runs if r.partial] if len(runs) > 1 else []
    if partial:  # a blend is fitted and scored on rows every member covers: a partial run covers too few
        r = partial[0]
        raise FkaggleError(
            f"run {r.name} is partial (folds {r.partial['folds']} of {r.manifest['data']['folds']} finished): "
            f"it is not blended; finish it first (`fkaggle status {r.name}` shows how)"
        )


@dataclass
class BlendResult:
    method: str
    oof: np.ndarray  # log-probabilities (N_train, K)
    test: np.ndarray  # log-probabilities (N_test, K)
    cv_acc: float
    cv_logloss: float
    insample_acc: float | None = None  # fitted methods: the optimistic in-sample score, for contrast
    insample_logloss: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


def blend(
    runs: list[Run],
    labels: np.ndarray,
    method: str = "mean",
    space: str = "prob",
    temperature: bool = False,
    seed: int = 0,
) -> BlendResult:
    """Blend finished runs; `labels` are the training labels (0..K-1) the OOF rows belong to."""
    blender = load_blender(method)
    check_compatible(runs)
    oofs = [r.oof_logits for r in runs]
    tests = [r.test_logits for r in runs]
    details: dict[str, Any] = {"runs": [r.name for r in runs]}
    if not blender.FITTED:
        oof, test, extra = blender.combine(oofs, tests, space)
        details.update(extra)
        return BlendResult(
            method, oof, test, metrics.accuracy(oof, labels), metrics.log_loss(oof, labels), details=details
        )

    from sklearn.base import clone
    from sklearn.model_selection import PredefinedSplit, cross_val_predict

    X, X_test = np.stack(oofs, axis=1).astype(np.float64), np.stack(tests, axis=1).astype(np.float64)
    est = blender.make(seed=seed, temperature=temperature)
    final = clone(est).fit(X, labels)
    test, insample = final.predict_log_proba(X_test), final.predict_log_proba(X)
    details.update(blender.describe(final, [r.name for r in runs]))
    # honest CV: each fold scored by a blender fitted on the other folds (the runs' own folds)
    nested = cross_val_predict(est, X, labels, cv=PredefinedSplit(runs[0].fold_of), method="predict_log_proba")
    details["nested_per_fold"] = metrics.per_fold(nested, labels, runs[0].fold_of)
    result = BlendResult(
        method,
        nested,
        test,
        metrics.accuracy(nested, labels),
        metrics.log_loss(nested, labels),
        insample_acc=metrics.accuracy(insample, labels),
        insample_logloss=metrics.log_loss(insample, labels),
        details=details,
    )
    warning = overfit_warning(result)
    if warning:
        details["warning"] = warning
    return result


def overfit_warning(r: BlendResult, acc_gap: float = 0.01, logloss_ratio: float = 1.25) -> str | None:
    """A fitted blend whose nested CV is far below its in-sample score learned the OOF rows,
    not the runs: say so with the per-fold spread, so the nested number is the one trusted."""
    if r.insample_acc is None or (
        r.insample_acc - r.cv_acc < acc_gap and r.cv_logloss < logloss_ratio * r.insample_logloss
    ):
        return None
    accs = [f["acc"] for f in r.details["nested_per_fold"]]
    return (
        f"{r.method} overfits the OOF rows: nested CV accuracy {r.cv_acc:.4f} (log-loss {r.cv_logloss:.4f}) against "
        f"{r.insample_acc:.4f} ({r.insample_logloss:.4f}) in-sample; per fold {min(accs):.4f}..{max(accs):.4f} "
        f"(std {np.std(accs):.4f}). "
        "Expect the nested number on the leaderboard; a simpler method (mean, weighted) "
        "or stronger runs may do better."
    )


def single_run(run: Run, labels: np.ndarray) -> BlendResult:
    """A run on its own, in the same shape as a blend (for `fkaggle blend RUN`)."""
    oof, test = _logprobs(run.oof_logits), _logprobs(run.test_logits)
    return BlendResult(
        "single", oof, test, metrics.accuracy(oof, labels), metrics.log_loss(oof, labels), details={"runs": [run.name]}
    )
