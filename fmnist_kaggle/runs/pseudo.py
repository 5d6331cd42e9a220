"""Honest pseudo-labels: fold k's extra training rows are test rows labelled only by the
teachers' fold-k models.

A teacher's fold-k model never saw fold k's validation rows, so the student's fold-k OOF
predictions stay honest. A teacher averaged over all folds would not be: its other folds'
models were trained on fold k's rows, and their test-row labels would carry fold k's labels
into the student's fold k through the test set (an optimistic CV).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from fmnist_kaggle import metrics
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.runs.identity import require_same
from fmnist_kaggle.runs.store import predicted_from, read_fold
from fmnist_kaggle.runs.trainset import PseudoLabels
from fmnist_kaggle.storage.artifacts import read_array
from fmnist_kaggle.storage.layout import Workspace


def teacher_fold_logprobs(
    ws: Workspace, teachers: list[str], identity: dict[str, Any], folds: int
) -> tuple[list[np.ndarray], str]:
    """Fold k -> the teachers' fold-k test log-probabilities (averaged over teachers), verified,
    from teachers trained on the same data, folds and test file as the student."""
    per_fold: list[list[np.ndarray]] = [[] for _ in range(folds)]
    digest = hashlib.sha256()
    for name in teachers:
        rd = ws.find_run(name)
        m = rd.read_manifest()
        if predicted_from(m):
            raise FkaggleError(
                f"pseudo-label teacher {name} is a prediction of {predicted_from(m)}; its "
                "fold models never predicted this test file as folds",
                rd.path,
            )
        require_same([("this run", identity), (name, m["identity"])], role="pseudo-label teacher")
        for k in range(folds):
            fd = rd.fold(k)
            fm = read_fold(fd, m["identity"])  # every artifact verified
            rec = fm["artifacts"][fd.test_logits.name]
            per_fold[k].append(metrics.log_softmax(read_array(fd.test_logits, rec, finite=True).astype(np.float64)))
            digest.update(f"{name}/{k}/{rec['sha256']}".encode())
    return [np.mean(lps, axis=0) for lps in per_fold], digest.hexdigest()


def pseudo_labels(
    ws: Workspace, teachers: list[str], identity: dict[str, Any], folds: int, threshold: float
) -> PseudoLabels:
    fold_lp, fingerprint = teacher_fold_logprobs(ws, teachers, identity, folds)
    rows, labels = {}, {}
    for k, lp in enumerate(fold_lp):
        confident = np.flatnonzero(np.exp(lp.max(1)) >= threshold)
        rows[k], labels[k] = confident, lp[confident].argmax(1)
    return PseudoLabels(tuple(teachers), fingerprint, rows, labels)
