"""Load every supported competition format into one canonical `ImageSet`.

Each format is one reader in `formats/` (CSV pixel rows, NPY arrays or pickled dicts read
through a restricted unpickler, NPZ, the original IDX files). Whatever the source, the result
is uint8 images (N, 28, 28), int64 labels 0..K-1 and the ordered original label values, so
predictions map back to what the competition expects.
Every problem raises `DataError` naming the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_kaggle.data.formats import check_format, csv, detect_format, load_format
from fmnist_kaggle.data.formats._common import LABEL_COLUMNS, Raw, _as_array, _plain, _to_uint8
from fmnist_kaggle.data.formats.idx import parse_idx
from fmnist_kaggle.errors import DataError
from fmnist_kaggle.storage import files
from fmnist_kaggle.storage.safe_pickle import load_npy

MEMORY = Path("<memory>")  # the path of data given as arrays


@dataclass(frozen=True)
class ImageSet:
    """Canonical images of one file, plus what is needed to map predictions back."""

    images: np.ndarray  # uint8 (N, 28, 28)
    labels: np.ndarray | None  # int64 0..K-1 (None: unlabelled test file)
    label_values: tuple[int | str, ...]  # original label value of each class index (numbers, or words: 'Sandal')
    ids: np.ndarray | None = None  # test ids as in the file (synthesized 1..N if absent)
    id_column: str | None = None
    ids_synthesized: bool = True
    path: Path = MEMORY
    format: str = "memory"
    source_scale: str = "0..255"  # how pixels were stored: "0..255" ints or "0..1" floats
    pixel_columns: tuple[str, ...] | None = None  # CSV: first and last pixel column names
    _fingerprint: str | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.label_values)

    @property
    def original_labels(self) -> np.ndarray | None:
        return None if self.labels is None else np.asarray(self.label_values)[self.labels]

    def fingerprint(self) -> str:
        """Content hash of images and labels: the same data in any format hashes the same.

        Hashing 47 MB takes a noticeable moment and folds, runs and blends all ask: computed once.
        """
        if self._fingerprint is not None:
            return self._fingerprint
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.images).tobytes())
        if self.labels is not None:
            h.update(np.asarray(self.labels, dtype=np.int64).tobytes())
            h.update(json.dumps([plain_label(v) for v in self.label_values]).encode())
        object.__setattr__(self, "_fingerprint", h.hexdigest())  # frozen dataclass: a memo, not state
        return self._fingerprint

    def class_counts(self) -> dict[int, int]:
        if self.labels is None:
            return {}
        counts = np.bincount(self.labels, minlength=self.num_classes)
        return {plain_label(v): int(c) for v, c in zip(self.label_values, counts)}

    def subset(self, index: np.ndarray) -> "ImageSet":
        return replace(
            self,
            images=self.images[index],
            labels=None if self.labels is None else self.labels[index],
            ids=None if self.ids is None else self.ids[index],
        )


# --------------------------------------------------------------------------- raw readers


# --------------------------------------------------------------------------- canonical form


MAX_LABEL = 1_000_000  # class labels are small integers; a float beyond this is not one


def plain_label(v: object) -> int | str:
    """A label value as JSON and CSV hold it: an int, or the word itself (numpy types unwrapped)."""
    return v if isinstance(v, str) else int(v)  # type: ignore[call-overload]


_PLAIN = re.compile(r"-?(0|[1-9][0-9]*)")  # an integer written plainly: else ('01', '1.0', '1e3') the text is the class


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _text_labels(targets: np.ndarray, path: Path) -> np.ndarray:
    """Label cells given as text, compared as written: numbers when every one is an integer written
    plainly ('3', '-1'), else the text is the class ('Sandal'; '01' and '1.0' beside '1' are three
    classes, and come back as written). An empty cell is a missing label; a fraction, an infinite
    or huge number, or words beside plain numbers are refused."""
    texts = np.array([str(t).strip() for t in targets], dtype=object)
    empty = np.flatnonzero(texts == "")
    if len(empty):
        raise DataError(f"missing label in row {int(empty[0]) + 1}", path)
    values = [_number(t) for t in texts]
    for i, (t, v) in enumerate(zip(texts, values, strict=True)):
        if v is not None and (not np.isfinite(v) or abs(v) > MAX_LABEL):
            raise DataError(
                f"label {t} in row {i + 1} is not a class label (labels are integers of at most {MAX_LABEL:,})", path
            )
        if v is not None and v != int(v):
            raise DataError(f"label {t} is not an integer", path)
    plain = [_PLAIN.fullmatch(t) is not None for t in texts]
    if all(plain):
        return np.array([int(v) for v in values], dtype=np.int64)
    if any(plain) and any(v is None for v in values):
        bad = next(t for t, v in zip(texts, values, strict=True) if v is None)
        raise DataError(
            f"label {bad!r} is not an integer (the other labels are numbers: all numbers or all words)", path
        )
    return texts


def _targets_to_values(targets: np.ndarray, n: int, path: Path) -> np.ndarray:
    """Raw targets (ints, integer-valued floats, or one-hot rows) -> int64 original values."""
    if targets.ndim == 2 and targets.shape[1] > 1:  # one-hot
        ok = np.isin(targets, (0, 1)).all() and (targets.sum(axis=1) == 1).all()
        if not ok:
            raise DataError("2-D target is not one-hot (each row needs exactly one 1)", path)
        targets = targets.argmax(axis=1)
    targets = targets.reshape(-1) if targets.ndim == 2 else targets
    if targets.ndim != 1:
        raise DataError(f"target has shape {targets.shape}, expected (N,)", path)
    if len(targets) != n:
        raise DataError(f"features have {n} rows but target has {len(targets)}", path)
    if targets.dtype.kind == "f":
        huge = ~np.isfinite(targets) | (np.abs(targets) > MAX_LABEL)  # inf or 1e20 would wrap in the cast below
        if huge.any():
            raise DataError(
                f"label {float(targets[huge][0]):g} in row {int(np.flatnonzero(huge)[0]) + 1} "
                f"is not a class label (labels are integers of at most {MAX_LABEL:,})",
                path,
            )
        if np.isnan(targets).any() or not np.array_equal(targets, np.rint(targets)):
            bad = targets[np.isnan(targets) | (targets != np.rint(targets))][0]
            raise DataError(f"label {_plain(bad)!r} is not an integer", path)
        targets = targets.astype(np.int64)
    elif targets.dtype.kind in "OUS":  # text: numbers or words (classes are the sorted distinct words)
        return _text_labels(targets, path)
    elif targets.dtype.kind not in "iub":
        raise DataError(f"labels have dtype {targets.dtype}, expected integers", path)
    return targets.astype(np.int64)


def _check_ids(ids: np.ndarray, n: int, path: Path) -> np.ndarray:
    ids = np.asarray(ids).reshape(-1)
    if len(ids) != n:
        raise DataError(f"{len(ids)} ids for {n} images", path)
    uniq, counts = np.unique(ids.astype(str), return_counts=True)
    if (counts > 1).any():
        raise DataError(f"duplicate id {_plain(uniq[counts > 1][0])!r} ({int((counts > 1).sum())} ids repeated)", path)
    return ids


# --------------------------------------------------------------------------- public API


def load_images(
    path: str | Path,
    format: str = "auto",
    labels_path: str | Path | None = None,
    label_values: tuple[int, ...] | None = None,
    use_cache: bool = True,
) -> ImageSet:
    """Load one data file into an `ImageSet`.

    `label_values` maps labels of a second file (test) onto the classes of the first
    (train); labels outside them are an error. Without it, classes are the sorted
    distinct label values found.
    """
    path = Path(path)
    labels_path = None if labels_path is None else Path(labels_path)
    check_format(format, path)
    for p in (path, labels_path):
        if p is not None:
            files.regular_file(p, "data file")
    if path.stat().st_size == 0:
        raise DataError("empty file", path)
    fmt = detect_format(path) if format == "auto" else format
    raw = load_format(fmt).read(path, labels_path, use_cache)
    if labels_path is not None and raw.targets is None:  # labels kept in a separate file
        raw.targets = _as_array(load_images_labels(labels_path, raw.ids, raw.id_column), labels_path, "labels")
    return canonical(raw, path, fmt, label_values, labels_path or path)


def from_arrays(
    images: Any, labels: Any = None, label_values: tuple[int, ...] | None = None, ids: Any = None
) -> ImageSet:
    """An `ImageSet` from arrays in memory (a notebook's X, y), checked like a file:
    images (N, 28, 28), (N, 784) or (N, 28, 28, 1), 0..255 or 0..1; labels any integers."""
    raw = Raw(
        _as_array(images, MEMORY, "images"),
        None if labels is None else _as_array(labels, MEMORY, "labels"),
        None if ids is None else np.asarray(ids),
    )
    return canonical(raw, MEMORY, "memory", label_values, MEMORY)


def canonical(raw: Raw, path: Path, fmt: str, label_values: tuple[int, ...] | None, labels_path: Path) -> ImageSet:
    """What a reader found, in the canonical form: uint8 images, class indices, original label values, ids."""
    images, scale = (raw.pixels, raw.scale) if raw.scale else _to_uint8(np.asarray(raw.pixels), path)
    n = len(images)
    labels = None
    values = tuple(label_values) if label_values is not None else ()
    if raw.targets is not None:
        original = _targets_to_values(np.asarray(raw.targets), n, labels_path)
        found = np.unique(original)
        if label_values is None:
            values = tuple(plain_label(v) for v in found)
            if len(values) < 2:
                raise DataError(f"only {len(values)} distinct label value(s); need at least 2 classes", labels_path)
        else:
            if (original.dtype == object) != any(isinstance(v, str) for v in values):
                kind = "words" if original.dtype == object else "numbers"
                raise DataError(f"labels are {kind}, the training classes are not: {list(values)[:5]}", labels_path)
            unknown = np.setdiff1d(found, np.asarray(values, dtype=original.dtype))
            if len(unknown):
                raise DataError(
                    f"label value(s) {', '.join(map(str, unknown[:5]))} not among the training classes {list(values)}",
                    labels_path,
                )
        labels = np.searchsorted(np.asarray(values, dtype=original.dtype), original).astype(np.int64)
    ids = raw.ids
    synthesized = ids is None
    ids = np.arange(1, n + 1) if ids is None else _check_ids(ids, n, path)
    return ImageSet(
        images=np.ascontiguousarray(images, dtype=np.uint8),
        labels=labels,
        label_values=values,
        ids=ids,
        id_column=raw.id_column,
        ids_synthesized=synthesized,
        path=path,
        format=fmt,
        source_scale=scale,
        pixel_columns=raw.pixel_columns,
    )


EXTRA_COLUMNS = ("usage",)  # Kaggle solution files mark Public/Private rows


def load_images_labels(path: Path, ids: np.ndarray | None = None, id_column: str | None = None) -> np.ndarray:
    """Labels from a separate file (.npy array, IDX, or CSV). A CSV with an id column is joined
    on the ids (`ids`: the data file's, in its row order): any row order works, and missing or
    extra ids are refused. A one-column CSV is read in row order."""
    fmt = detect_format(path)
    if fmt == "idx":
        return parse_idx(path)
    if fmt in ("npy", "npz"):
        return np.asarray(load_npy(path))
    import pandas as pd

    try:
        df = pd.read_csv(
            io.BytesIO(files.read_bytes(path, "labels file", csv.csv_limit())), dtype=str, keep_default_na=False
        )
    except Exception as exc:
        raise DataError(
            f"cannot parse labels CSV ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})", path
        ) from None
    df = df[[c for c in df.columns if c.strip().lower() not in EXTRA_COLUMNS]]
    if df.shape[1] == 1:
        return _numeric(df.iloc[:, 0], path)
    key = id_column if id_column in df.columns else df.columns[0]
    named = [c for c in df.columns if c != key and c.strip().lower() in LABEL_COLUMNS]
    rest = [c for c in df.columns if c != key]
    if len(named) != 1 and len(rest) != 1:
        raise DataError(f"labels CSV: cannot tell the label column among {', '.join(rest)} (name it 'label')", path)
    column = named[0] if len(named) == 1 else rest[0]
    by_id = pd.Series(df[column].to_numpy(), index=df[key].str.strip())
    if by_id.index.duplicated().any():
        raise DataError(
            f"labels CSV: id {by_id.index[by_id.index.duplicated()][0]!r} appears twice in column {key!r}", path
        )
    wanted = pd.Index([str(i) for i in (ids if ids is not None else np.arange(1, len(df) + 1))])
    missing, extra = wanted.difference(by_id.index), by_id.index.difference(wanted)
    if len(missing) or len(extra):
        detail = (
            f"{len(missing)} test id(s) missing (first {missing[0]!r})"
            if len(missing)
            else f"{len(extra)} id(s) not in the test file (first {extra[0]!r})"
        )
        raise DataError(f"labels CSV joined on {key!r}: {detail}", path)
    return _numeric(by_id.loc[wanted], path)


def _numeric(labels: Any, path: Path) -> np.ndarray:
    """Label cells of a labels CSV as the text they hold (numbers or words are told apart later, as
    for every file: `_text_labels`)."""
    return labels.astype(str).to_numpy(dtype=object)


def check_pair(train: ImageSet, test: ImageSet) -> None:
    """Refuse train/test files whose layouts differ (the model would see shifted pixels)."""
    if train.pixel_columns and test.pixel_columns and train.pixel_columns != test.pixel_columns:
        raise DataError(
            f"pixel columns {test.pixel_columns[0]}..{test.pixel_columns[1]} differ from the training file's "
            f"{train.pixel_columns[0]}..{train.pixel_columns[1]}",
            test.path,
        )


def check_min_class_count(train: ImageSet, folds: int) -> None:
    """Stratified k-fold needs every class in every fold."""
    for value, count in train.class_counts().items():
        if count < folds:
            raise DataError(
                f"class {value} has only {count} sample{'s' if count != 1 else ''}; {folds}-fold "
                f"stratified CV needs at least {folds}",
                train.path,
            )
