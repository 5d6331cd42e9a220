"""Stratified fold assignment, saved and fingerprinted with the training data.

Every run that names the same data, k and seed gets identical folds, which is what
makes OOF predictions of different runs blendable without leakage.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

from fmnist_kaggle.data.duplicates import group_rows
from fmnist_kaggle.data.images import ImageSet, check_min_class_count
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.storage import atomic
from fmnist_kaggle.storage.artifacts import read_file, read_json
from fmnist_kaggle.storage.layout import Workspace
from fmnist_kaggle.storage.schemas import FOLD_ASSIGNMENT


def make_folds(labels: np.ndarray, k: int, seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Fold id (0..k-1) per row, stratified by label; rows of one group (repeated images: a group
    id per row) all go to the fold of the group's first row, so no image is scored by a model that
    trained on its copy. Without groups of two or more rows, exactly the stratified folds."""
    fold_of = np.full(len(labels), -1, dtype=np.int8)
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for f, (_, val) in enumerate(skf.split(np.zeros(len(labels)), labels)):
        fold_of[val] = f
    if groups is not None:
        fold_of = fold_of[np.asarray(groups)]  # a group id is its first row
    return fold_of


_GROUPS: dict[str, np.ndarray] = {}  # repeated-image groups per data fingerprint (computed once a process)


def repeated_groups(train: ImageSet) -> np.ndarray:
    """The training rows' repeated-image groups (a group id per row), computed once per data."""
    key = train.fingerprint()
    if key not in _GROUPS:
        _GROUPS[key] = group_rows(train.images)
    return _GROUPS[key]


def assign_folds(train: ImageSet, k: int, seed: int) -> np.ndarray:
    """The fold of each training row (stratified, repeated images kept together), refused in one
    line when it cannot be made: a class with fewer rows than folds, a group of repeated images
    larger than a fold holds, or a fold left empty. Nothing is written."""
    check_min_class_count(train, k)
    groups = repeated_groups(train)
    fold_of = make_folds(train.labels, k, seed, groups)
    ids, sizes = np.unique(groups, return_counts=True)
    largest = int(sizes.max())
    if largest > len(groups) // k:
        raise FkaggleError(
            f"{largest} training rows repeat one image (row {int(ids[sizes.argmax()]) + 1} and its copies): more "
            f"than one of {k} folds holds ({len(groups) // k} rows), and copies must share a fold; use fewer "
            "--folds or remove the copies",
            train.path,
        )
    empty = [f for f in range(k) if not (fold_of == f).any()]
    if empty:
        raise FkaggleError(f"fold {empty[0]} of {k} would be empty (repeated images fill the others)", train.path)
    return fold_of


def folds_fingerprint(data_fingerprint: str, fold_of: np.ndarray) -> str:
    h = hashlib.sha256(data_fingerprint.encode())
    h.update(np.asarray(fold_of, dtype=np.int8).tobytes())
    return h.hexdigest()


def stratified_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted row indices of a class-balanced random subset of n rows."""
    if n <= 0 or n >= len(labels):
        return np.arange(len(labels))
    idx, _ = train_test_split(np.arange(len(labels)), train_size=n, stratify=labels, random_state=seed)
    return np.sort(idx)


def check_folds(ws: Workspace, train: ImageSet, k: int, seed: int) -> None:
    """Refuse, writing nothing, folds that cannot be made (`assign_folds`); a saved assignment was
    checked when it was made."""
    npy, meta = ws.fold_assignment(train.fingerprint(), k, seed)
    if not (npy.exists() and meta.exists()):
        assign_folds(train, k, seed)


def load_or_make_folds(ws: Workspace, train: ImageSet, k: int, seed: int) -> tuple[np.ndarray, str]:
    """The saved assignment for (data, k, seed), created on first use and verified on every use."""
    check_min_class_count(train, k)
    data_fp = train.fingerprint()
    npy, meta = ws.fold_assignment(data_fp, k, seed)
    if npy.exists() and meta.exists():
        info = read_json(meta, "fold assignment record", FOLD_ASSIGNMENT)
        try:
            fold_of = np.load(io.BytesIO(read_file(npy, "fold assignment")), allow_pickle=False)
        except ValueError as exc:
            raise FkaggleError(f"unreadable fold assignment ({exc}); delete it to rebuild", npy) from None
        if info.get("data_fingerprint") != data_fp or folds_fingerprint(data_fp, fold_of) != info.get(
            "folds_fingerprint"
        ):
            raise FkaggleError("saved fold assignment does not match its fingerprint; delete it to rebuild", npy)
        return fold_of, info["folds_fingerprint"]
    fold_of = assign_folds(train, k, seed)
    groups = repeated_groups(train)
    fp = folds_fingerprint(data_fp, fold_of)
    repeated = int((np.bincount(groups, minlength=len(groups)) > 1).sum())
    atomic.save_npy(npy, fold_of)
    record = {"data_fingerprint": data_fp, "folds": k, "fold_seed": seed, "rows": len(fold_of)}
    # groups of repeated images, each kept in one fold
    atomic.write_json(meta, record | {"folds_fingerprint": fp, "duplicate_groups": repeated})
    return fold_of, fp
