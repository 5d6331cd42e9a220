"""Honest pseudo-labels: fold k's extra training rows are test rows labelled only by the
teachers' fold-k models.

A teacher's fold-k model never saw fold k's validation rows, so the student's fold-k OOF
predictions stay honest. A teacher averaged over all folds would not be: its other folds'
models were trained on fold k's rows, and their test-row labels would carry fold k's labels
into the student's fold k through the test set (an optimistic CV).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from fmnist_kaggle import metrics
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.workspace import Workspace, read_array


@dataclass(frozen=True)
class PseudoLabels:
    """Per fold: the test rows whose teacher confidence reaches the threshold, and their labels."""

    teachers: tuple[str, ...]
    fingerprint: str  # SHA-256 over the teachers' recorded fold test logits
    rows: dict[int, np.ndarray]
    labels: dict[int, np.ndarray]

    def record(self, threshold: float, weight: float) -> dict[str, Any]:
        return {"teachers": list(self.teachers), "threshold": threshold, "weight": weight, "teacher_fingerprint": self.fingerprint, "rows_per_fold": {str(k): int(len(r)) for k, r in self.rows.items()}}


def teacher_fold_logprobs(ws: Workspace, teachers: list[str], identity: dict[str, Any], folds: int) -> tuple[list[np.ndarray], str]:
    """Fold k -> the teachers' fold-k test log-probabilities (averaged over teachers), verified,
    from teachers trained on the same data, folds and test file as the student."""
    from fmnist_kaggle.runs import read_fold  # runs uses this module: imported when needed

    per_fold: list[list[np.ndarray]] = [[] for _ in range(folds)]
    digest = hashlib.sha256()
    for name in teachers:
        rd = ws.find_run(name)
        m = rd.read_manifest()
        if m.get("predicted_from"):
            raise FkaggleError(f"pseudo-label teacher {name} is a prediction of {m['predicted_from']['run']}; its fold models never predicted this test file as folds", rd.path)
        for key, what in (("data_fingerprint", "training data"), ("folds_fingerprint", "fold assignment"), ("test_fingerprint", "test data")):
            if m["identity"].get(key) != identity.get(key):
                raise FkaggleError(f"pseudo-label teacher {name} has a different {what} than this run; fold k's labels must come from the teacher's fold-k model of the same folds", rd.path)
        for k in range(folds):
            fd = rd.fold(k)
            fm = read_fold(fd, m["identity"])  # every artifact verified
            rec = fm["artifacts"][fd.test_logits.name]
            per_fold[k].append(metrics.log_softmax(read_array(fd.test_logits, rec, finite=True).astype(np.float64)))
            digest.update(f"{name}/{k}/{rec['sha256']}".encode())
    return [np.mean(lps, axis=0) for lps in per_fold], digest.hexdigest()


def pseudo_labels(ws: Workspace, teachers: list[str], identity: dict[str, Any], folds: int, threshold: float) -> PseudoLabels:
    fold_lp, fingerprint = teacher_fold_logprobs(ws, teachers, identity, folds)
    rows, labels = {}, {}
    for k, lp in enumerate(fold_lp):
        confident = np.flatnonzero(np.exp(lp.max(1)) >= threshold)
        rows[k], labels[k] = confident, lp[confident].argmax(1)
    return PseudoLabels(tuple(teachers), fingerprint, rows, labels)
