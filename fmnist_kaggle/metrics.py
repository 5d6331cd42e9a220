"""Scores computed from logits. Probabilities are always softmax(logits)."""

from __future__ import annotations

import numpy as np
from scipy import special
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support, roc_auc_score


def softmax(logits: np.ndarray) -> np.ndarray:
    return special.softmax(logits, axis=1)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    return special.log_softmax(logits, axis=1)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(logits).argmax(1) == labels).mean())


def log_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    """Multiclass log-loss from logits (or log-probabilities), probabilities clipped to
    [1e-15, 1 - 1e-15] like Kaggle's metric."""
    lp = log_softmax(np.asarray(logits, dtype=np.float64))[np.arange(len(labels)), labels]
    return float(-np.clip(lp, np.log(1e-15), np.log1p(-1e-15)).mean())


def per_fold(logits: np.ndarray, labels: np.ndarray, fold_of: np.ndarray) -> list[dict[str, float]]:
    return [
        {
            "fold": int(f),
            "acc": accuracy(logits[fold_of == f], labels[fold_of == f]),
            "logloss": log_loss(logits[fold_of == f], labels[fold_of == f]),
        }
        for f in np.unique(fold_of)
    ]


def full_report(logits: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, log-loss, macro-F1, per-class P/R/F1/accuracy, one-vs-rest ROC AUC, confusion matrix."""
    k = len(class_names)
    pred = logits.argmax(1)
    probs = softmax(np.asarray(logits, dtype=np.float64))
    cm = confusion_matrix(labels, pred, labels=list(range(k)))
    prec, rec, f1, support = precision_recall_fscore_support(labels, pred, labels=list(range(k)), zero_division=0)
    try:
        auc = float(roc_auc_score(labels, probs, multi_class="ovr", labels=list(range(k))))
    except ValueError:  # a class missing from labels
        auc = float("nan")
    per_class = [
        {
            "class": class_names[i],
            "accuracy": float(cm[i, i] / max(cm[i].sum(), 1)),
            "precision": float(prec[i]),
            "recall": float(rec[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i in range(k)
    ]
    off = cm.copy()
    np.fill_diagonal(off, 0)
    pairs = sorted(
        ((int(off[i, j] + off[j, i]), class_names[i], class_names[j]) for i in range(k) for j in range(i + 1, k)),
        reverse=True,
    )
    return {
        "acc": accuracy(logits, labels),
        "logloss": log_loss(logits, labels),
        "macro_f1": float(f1_score(labels, pred, average="macro", labels=list(range(k)), zero_division=0)),
        "roc_auc_ovr": auc,
        "per_class": per_class,
        "confusion": cm.tolist(),
        "most_confused": [{"pair": [a, b], "errors": n} for n, a, b in pairs[:5] if n > 0],
    }
