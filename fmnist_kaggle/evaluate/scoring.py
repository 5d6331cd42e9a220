"""Offline scoring: CV reports of runs and blends, and a local leaderboard for submissions."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_kaggle import metrics
from fmnist_kaggle.data.competition import Competition
from fmnist_kaggle.data.submission_file import read_predictions
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.evaluate.blend import check_compatible
from fmnist_kaggle.plots import confusion_matrix, prediction_grid
from fmnist_kaggle.runs.store import Run, run_images
from fmnist_kaggle.storage.layout import Workspace

log = logging.getLogger(__name__)


def run_report(run: Run, labels: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """Overall and per-fold metrics of a run's OOF logits, plus its test score when known."""
    report = metrics.full_report(run.oof_logits, labels, class_names)
    report["run"] = run.name
    report["model"] = run.manifest.get("model")
    report["params"] = run.manifest.get("params")
    report["per_fold"] = []
    for f in np.unique(run.fold_of):
        m = run.fold_of == f
        r = metrics.full_report(run.oof_logits[m], labels[m], class_names)
        report["per_fold"].append({"fold": int(f), **{k: r[k] for k in ("acc", "logloss", "macro_f1", "roc_auc_ovr")}})
    if run.manifest.get("test_metrics"):
        report["test"] = run.manifest["test_metrics"]
    return report


def oof_correlation(runs: list[Run]) -> np.ndarray:
    """Pearson correlation of the runs' OOF probabilities (flattened): low means diverse."""
    flat = np.stack([metrics.softmax(r.oof_logits).ravel() for r in runs])
    return np.corrcoef(flat)


def sample_predictions(logits: np.ndarray, labels: np.ndarray, n: int = 32) -> np.ndarray:
    """Rows to show: the most confident mistakes first (up to half), then the most
    confident correct prediction of each class in turn."""
    pred, conf = logits.argmax(1), metrics.softmax(logits).max(1)
    wrong = np.flatnonzero(pred != labels)
    shown = list(wrong[np.argsort(-conf[wrong], kind="stable")][: n // 2])
    right = [
        c[np.argsort(-conf[c], kind="stable")]
        for c in (np.flatnonzero((pred == labels) & (labels == k)) for k in np.unique(labels))
    ]
    for depth in range(max((len(c) for c in right), default=0)):
        shown += [c[depth] for c in right if depth < len(c)]
        if len(shown) >= n:
            break
    return np.array(shown[:n], dtype=np.int64)


def predictions_png(
    run: Run, competition: Callable[[], Competition | None], class_names: list[str], target: Path
) -> str:
    """Report 001's sample predictions from a run's OOF logits (images rebuilt from the competition)."""
    rows = sample_predictions(run.oof_logits, run.labels)
    images = run_images(run.manifest, competition()).images[rows]
    probs = metrics.softmax(run.oof_logits[rows])
    title = (
        f"{run.name}: out-of-fold predictions, the most confident mistakes first (red), then correct ones of each class"
    )
    return str(prediction_grid(images, run.labels[rows], probs.argmax(1), probs.max(1), class_names, target, title))


def cv(
    runs: list[Run],
    class_names: list[str],
    ws: Workspace | None = None,
    competition: Callable[[], Competition | None] | None = None,
) -> dict[str, Any]:
    """CV report of runs (confusion PNGs into the workspace's oof/cv/ when given one, and
    prediction grids from the runs' training images: `competition()`'s, or, when it gives None,
    where each run recorded its data)."""
    labels = runs[0].labels
    if len(runs) > 1:
        check_compatible(runs)
    reports = [{**run_report(r, labels, class_names), "optimistic": r.optimistic} for r in runs]
    out: dict[str, Any] = {"runs": reports}
    if ws is not None:
        for r, rep in zip(runs, reports):
            rep["confusion_png"] = str(
                confusion_matrix(np.array(rep["confusion"]), class_names, ws.confusion_png(r.name), f"{r.name} (OOF)")
            )
            if competition is None:
                continue
            try:
                rep["predictions_png"] = predictions_png(r, competition, class_names, ws.predictions_png(r.name))
            except FkaggleError as exc:  # the report stands without the pictures
                rep["predictions_png_problem"] = str(exc)
                log.warning(f"{r.name}: no predictions grid: {exc}")
    if len(runs) > 1:
        out["correlation"] = {"runs": [r.name for r in runs], "matrix": np.round(oof_correlation(runs), 4).tolist()}
    return out


def format_cv(result: dict[str, Any]) -> str:
    lines = []
    for rep in result["runs"]:
        lines.append(f"== {rep['run']} ({rep['model']}, {rep['params']:,} params)")
        lines.append(
            f"OOF accuracy {rep['acc']:.4f}  log-loss {rep['logloss']:.4f}  macro-F1 "
            f"{rep['macro_f1']:.4f}  ROC AUC (ovr) {rep['roc_auc_ovr']:.4f}"
            + ("  (optimistic: epochs chosen on these rows, --select-epoch)" if rep.get("optimistic") else "")
        )
        if "test" in rep:
            lines.append(f"test accuracy {rep['test']['acc']:.4f}  log-loss {rep['test']['logloss']:.4f}")
        lines.append("fold  acc     logloss  macro-F1")
        for f in rep["per_fold"]:
            lines.append(f"{f['fold']:>4}  {f['acc']:.4f}  {f['logloss']:.4f}   {f['macro_f1']:.4f}")
        lines.append(f"{'class':<14} {'acc':>6} {'prec':>6} {'rec':>6} {'f1':>6} {'n':>6}")
        for c in rep["per_class"]:
            lines.append(
                f"{c['class']:<14} {c['accuracy']:.4f} {c['precision']:.4f} {c['recall']:.4f} "
                f"{c['f1']:.4f} {c['support']:>6}"
            )
        names = [c["class"] for c in rep["per_class"]]
        width = max(5, max(len(n) for n in names[:12]) if names else 5)
        lines.append("confusion (rows true, columns predicted):")
        cell = max(5, len(str(max((max(r) for r in rep["confusion"]), default=0))))  # rows and columns both named
        lines.append(" " * (width + 1) + " ".join(f"{n[:cell]:>{cell}}" for n in names))
        for i, row in enumerate(rep["confusion"]):
            lines.append(f"{names[i][:width]:<{width}} " + " ".join(f"{v:>{cell}}" for v in row))
        if rep["most_confused"]:
            lines.append(
                "most confused: "
                + "; ".join(
                    f"{a} <-> {b}: {n}" for (a, b), n in ((m["pair"], m["errors"]) for m in rep["most_confused"])
                )
            )
        if "confusion_png" in rep:
            lines.append(f"confusion matrix PNG: {rep['confusion_png']}")
        if "predictions_png" in rep:
            lines.append(f"sample predictions PNG: {rep['predictions_png']}")
        lines.append("")
    if len(result["runs"]) > 1:
        lines.append(f"{'run':<40} {'cv_acc':>7} {'logloss':>8} {'test_acc':>8}")
        for rep in sorted(result["runs"], key=lambda r: r["logloss"]):
            t = f"{rep['test']['acc']:.4f}" if "test" in rep else "-"
            lines.append(f"{rep['run'][:40]:<40} {rep['acc']:.4f}  {rep['logloss']:.4f}  {t:>8}")
        corr = result["correlation"]
        lines.append("OOF probability correlation (lower = more diverse, more worth blending):")
        for name, row in zip(corr["runs"], corr["matrix"]):
            lines.append(f"{name[:40]:<40} " + " ".join(f"{v:.3f}" for v in row))
    return "\n".join(lines)


def score_submission(path: str | Path, comp: Competition) -> dict[str, Any]:
    """Accuracy of a submission file against the competition's known test labels."""
    test = comp.test_set
    if test is None or test.labels is None:
        raise FkaggleError(
            "the competition config has no test labels to score against (set test_labels)", comp.config_path
        )
    pred = read_predictions(path, comp)
    names = comp.names
    rep = metrics.full_report(np.eye(len(names))[pred] * 10.0, test.labels, names)
    return {
        "file": str(path),
        "acc": rep["acc"],
        "macro_f1": rep["macro_f1"],
        "per_class": rep["per_class"],
        "confusion": rep["confusion"],
    }
