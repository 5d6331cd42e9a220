"""NPY: a plain array (with its labels beside it: X/y pairs, images/labels), or a pickled dict
`{'features', 'target'}` read through the restricted unpickler."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmnist_kaggle.data.formats._common import (
    FEATURE_KEYS,
    IDS_KEYS,
    TARGET_KEYS,
    Raw,
    _as_array,
    _opt_array,
    _pick,
    _sibling_labels,
)
from fmnist_kaggle.errors import DataError
from fmnist_kaggle.storage.safe_pickle import load_npy

SUFFIXES = (".npy",)
DOWNLOAD_SUFFIXES = (".npy",)


def by_content(head: bytes) -> bool:
    return head.startswith(b"\x93NUMPY")


def read(path: Path, labels_path: Path | None, use_cache: bool = True) -> Raw:
    obj = load_npy(path)
    if isinstance(obj, dict):
        feats = _pick(obj, FEATURE_KEYS)
        if feats is None:
            raise DataError(
                f"dict has no features key (expected one of {', '.join(FEATURE_KEYS)}; found "
                f"{', '.join(map(str, obj))})",
                path,
            )
        return Raw(
            _as_array(feats, path, "features"),
            _opt_array(_pick(obj, TARGET_KEYS), path),
            _opt_array(_pick(obj, IDS_KEYS), path),
        )
    if not isinstance(obj, np.ndarray):
        raise DataError(f"expected an array or a dict of arrays, found {type(obj).__name__}", path)
    targets = None
    labels_path = labels_path or _sibling_labels(path)
    if labels_path is not None:
        targets = _as_array(load_npy(labels_path), labels_path, "labels")
    return Raw(obj, targets)
