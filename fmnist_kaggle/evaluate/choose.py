"""The honest final choice: the best single run, unless a blend beats it on nested CV.

Every blend method is scored on the runs' own folds (fitted methods nested: fitted on k-1
folds, scored on the held-out one). A blend is chosen only when its CV accuracy is above the
best single run's: a blend that ties or loses adds risk and nothing measured.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from fmnist_kaggle import metrics
from fmnist_kaggle.evaluate.blend import BlendResult, blend, single_run
from fmnist_kaggle.runs.store import Run

BLEND_METHODS = (
    "mean",
    "weighted",
    "hillclimb",
    "stack",
)  # one per family: pooling, fitted weights, selection, level-2 model


@dataclass
class Candidate:
    """A possible submission: one run, or a blend of runs with a method."""

    runs: list[str]
    method: str  # "single" or a blend method
    cv_acc: float
    cv_logloss: float
    nested: bool  # fitted on OOF rows and scored nested
    test_acc: float | None = None  # where the test labels are known (never used to choose)
    seconds: float = 0.0
    partial: bool = False  # a run only some of whose folds finished: CV over their rows

    @property
    def label(self) -> str:
        return self.runs[0] if self.method == "single" else f"{self.method}({', '.join(self.runs)})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "runs": self.runs,
            "method": self.method,
            "cv_acc": self.cv_acc,
            "cv_logloss": self.cv_logloss,
            "nested": self.nested,
            "test_acc": self.test_acc,
            "seconds": round(self.seconds, 2),
            "partial": self.partial,
        }


@dataclass
class Choice:
    chosen: Candidate
    best_single: Candidate
    candidates: list[Candidate]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen.to_dict(),
            "best_single": self.best_single.to_dict(),
            "reason": self.reason,
            "candidates": [c.to_dict() for c in self.candidates],
        }


def _candidate(result: BlendResult, runs: list[str], test_labels: np.ndarray | None, seconds: float) -> Candidate:
    test_acc = metrics.accuracy(result.test, test_labels) if test_labels is not None else None
    return Candidate(
        runs, result.method, result.cv_acc, result.cv_logloss, result.insample_acc is not None, test_acc, seconds
    )


def choose(
    runs: list[Run], labels: np.ndarray, test_labels: np.ndarray | None = None, methods: tuple[str, ...] = BLEND_METHODS
) -> Choice:
    """Score every run alone and every blend of the complete ones; choose by CV accuracy (then
    log-loss), a blend only when it beats the best single run. A partial run (some folds
    finished) is chosen only when it beats the best complete candidate on the rows it covers."""
    whole = [r for r in runs if not r.partial]  # a partial run is scored alone, never blended
    results: dict[str, BlendResult] = {}
    singles, blends = [], []
    for run in runs:
        t0 = time.perf_counter()
        results[run.name] = single_run(run, run.labels)
        single = _candidate(results[run.name], [run.name], test_labels, time.perf_counter() - t0)
        single.partial = bool(run.partial)
        singles.append(single)
    if len(whole) > 1:
        for method in methods:
            t0 = time.perf_counter()
            result = blend(whole, whole[0].labels, method)
            blends.append(_candidate(result, [r.name for r in whole], test_labels, time.perf_counter() - t0))
            results[blends[-1].label] = result
    key = lambda c: (c.cv_acc, -c.cv_logloss)
    best_single = max([c for c in singles if not c.partial] or singles, key=key)
    best_blend = max(blends, key=key, default=None)
    if best_blend is not None and best_blend.cv_acc > best_single.cv_acc:
        reason = (
            f"{best_blend.label}: {'nested ' if best_blend.nested else ''}CV accuracy "
            f"{best_blend.cv_acc:.4f} beats the best single run {best_single.label} "
            f"({best_single.cv_acc:.4f})"
        )
        chosen = best_blend
    elif best_blend is None:
        reason = (
            f"the best single run {best_single.label} (CV accuracy {best_single.cv_acc:.4f}); "
            f"{'one finished run, ' if len(whole) < 2 else ''}nothing to blend"
        )
        chosen = best_single
    else:
        reason = (
            f"the best single run {best_single.label} (CV accuracy {best_single.cv_acc:.4f}): "
            f"no blend beat it (best: {best_blend.label} {best_blend.cv_acc:.4f})"
        )
        chosen = best_single
    partial = _partial_instead(runs, chosen, results, labels)
    if partial is not None:
        run, rival = partial
        what = "nothing complete" if chosen.partial else f"{chosen.label} {rival:.4f} on the same rows"
        reason = (
            f"the best run {run.name}, partial: {len(run.partial['folds'])} of {run.manifest['data']['folds']} "
            f"folds finished (CV accuracy {results[run.name].cv_acc:.4f} over their {run.partial['rows']} rows; "
            f"{what}; its test predictions average those folds' models)"
        )
        return Choice(next(c for c in singles if c.runs == [run.name]), best_single, singles + blends, reason)
    return Choice(chosen, best_single, singles + blends, reason)


def _partial_instead(
    runs: list[Run], chosen: Candidate, results: dict[str, BlendResult], labels: np.ndarray
) -> tuple[Run, float] | None:
    """The partial run to submit instead of `chosen` (a complete candidate, or the best partial
    when nothing is complete), with the rival's accuracy: the one that beats it by most on the
    rows that partial run covers."""
    best: tuple[float, Run, float] | None = None
    for run in (r for r in runs if r.partial):
        if chosen.partial:  # nothing complete: the partials compete on their own CV
            rival = chosen.cv_acc if chosen.runs[0] != run.name else -1.0
        else:
            rival = metrics.accuracy(results[chosen.label].oof[run.rows], labels[run.rows])
        margin = results[run.name].cv_acc - rival
        if margin > 0 and (best is None or margin > best[0]):
            best = (margin, run, rival)
    return None if best is None else (best[1], best[2])
