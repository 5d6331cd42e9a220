"""Stratified fold assignment, saved and fingerprinted with the training data.

Every run that names the same data, k and seed gets identical folds, which is what
makes OOF predictions of different runs blendable without leakage.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from fmnist_kaggle import atomic
from fmnist_kaggle.data import ImageSet, check_min_class_count
from fmnist_kaggle.errors import FkaggleError


def make_folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold id (0..k-1) per row, stratified by label."""
    from sklearn.model_selection import StratifiedKFold

    fold_of = np.full(len(labels), -1, dtype=np.int8)
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for f, (_, val) in enumerate(skf.split(np.zeros(len(labels)), labels)):
        fold_of[val] = f
    return fold_of


def folds_fingerprint(data_fingerprint: str, fold_of: np.ndarray) -> str:
    h = hashlib.sha256(data_fingerprint.encode())
    h.update(np.asarray(fold_of, dtype=np.int8).tobytes())
    return h.hexdigest()


def stratified_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted row indices of a class-balanced random subset of n rows."""
    from sklearn.model_selection import train_test_split

    if n <= 0 or n >= len(labels):
        return np.arange(len(labels))
    idx, _ = train_test_split(np.arange(len(labels)), train_size=n, stratify=labels, random_state=seed)
    return np.sort(idx)


def load_or_make_folds(folds_dir: Path, train: ImageSet, k: int, seed: int) -> tuple[np.ndarray, str]:
    """The saved assignment for (data, k, seed), created on first use."""
    check_min_class_count(train, k)
    data_fp = train.fingerprint()
    stem = folds_dir / f"{data_fp[:16]}-k{k}-seed{seed}"
    npy, meta = stem.with_suffix(".npy"), stem.with_suffix(".json")
    if npy.exists() and meta.exists():
        fold_of = np.load(npy, allow_pickle=False)
        info = json.loads(meta.read_text())
        if info["data_fingerprint"] != data_fp or folds_fingerprint(data_fp, fold_of) != info["folds_fingerprint"]:
            raise FkaggleError("saved fold assignment does not match its fingerprint; delete it to rebuild", npy)
        return fold_of, info["folds_fingerprint"]
    fold_of = make_folds(train.labels, k, seed)
    fp = folds_fingerprint(data_fp, fold_of)
    atomic.save_npy(npy, fold_of)
    atomic.write_json(meta, {"data_fingerprint": data_fp, "folds": k, "fold_seed": seed, "rows": len(fold_of), "folds_fingerprint": fp})
    return fold_of, fp
