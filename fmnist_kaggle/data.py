"""Load every supported competition format into one canonical `ImageSet`.

Formats: CSV pixel rows (optionally gzip'd), NPY (plain arrays or pickled dicts read
through a restricted unpickler), NPZ, and the original IDX files. Whatever the
source, the result is uint8 images (N, 28, 28), int64 labels 0..K-1 and the ordered
original label values, so predictions map back to what the competition expects.
Every problem raises `DataError` naming the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_kaggle import atomic, files
from fmnist_kaggle.errors import DataError
from fmnist_kaggle.safe_pickle import check_npy_header, load_npy

FORMATS = ("auto", "csv", "npy", "npz", "idx")
SIDE = 28
NUM_PIXELS = SIDE * SIDE
CACHE_VERSION = 1
CSV_LIMIT = min(files.MAX_BYTES, 1 << 30)  # the 60,000-row Fashion-MNIST CSV is 133 MB
_LABEL_NAMES = ("label", "labels", "target", "class", "y")
_ID_NAMES = ("id", "imageid", "image_id", "index", "sample_id")
_FEATURE_KEYS = ("features", "x", "images", "data", "pixels")
_TARGET_KEYS = ("target", "y", "labels", "label", "targets")
_IDS_KEYS = ("id", "ids")


@dataclass(frozen=True)
class ImageSet:
    """Canonical images of one file, plus what is needed to map predictions back."""

    images: np.ndarray  # uint8 (N, 28, 28)
    labels: np.ndarray | None  # int64 0..K-1 (None: unlabelled test file)
    label_values: tuple[int, ...]  # original label value of each class index
    ids: np.ndarray | None = None  # test ids as in the file (synthesized 1..N if absent)
    id_column: str | None = None
    ids_synthesized: bool = True
    path: Path = Path("<memory>")
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
            h.update(json.dumps([int(v) for v in self.label_values]).encode())
        object.__setattr__(self, "_fingerprint", h.hexdigest())  # frozen dataclass: a memo, not state
        return self._fingerprint

    def class_counts(self) -> dict[int, int]:
        if self.labels is None:
            return {}
        counts = np.bincount(self.labels, minlength=self.num_classes)
        return {int(v): int(c) for v, c in zip(self.label_values, counts)}

    def subset(self, index: np.ndarray) -> "ImageSet":
        return replace(
            self,
            images=self.images[index],
            labels=None if self.labels is None else self.labels[index],
            ids=None if self.ids is None else self.ids[index],
        )


# --------------------------------------------------------------------------- raw readers


@dataclass
class _Raw:
    pixels: np.ndarray  # numeric, (N, 784) or image-shaped
    targets: np.ndarray | None = None
    ids: np.ndarray | None = None
    id_column: str | None = None
    pixel_columns: tuple[str, ...] | None = None


def detect_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz", ".tsv")):
        return "csv"
    if name.endswith(".npy"):
        return "npy"
    if name.endswith(".npz"):
        return "npz"
    if name.endswith(".zip"):
        return _zip_format(path)
    if "idx" in name or "ubyte" in name:
        return "idx"
    head = files.head(path, 8)
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK"):
        return _zip_format(path)
    if len(head) >= 4 and head[:2] == b"\x00\x00" and head[2] == 0x08:
        return "idx"
    return "csv"


def _zip_format(path: Path) -> str:
    """An NPZ (arrays only) or a zipped single file, which is read as its member's format."""
    members = files.zip_members(path)
    if members and all(m.endswith(".npy") for m in members):
        return "npz"
    if len(members) != 1:
        raise DataError(files.multi_file_zip_message(members), path)
    inner = members[0].lower()
    if inner.endswith((".npy", ".npz")) or "idx" in inner or "ubyte" in inner:
        raise DataError(f"a zipped {members[0]}: unzip it first (only CSV files are read from inside a zip)", path)
    return "csv"


def _read_csv(path: Path) -> _Raw:
    import pandas as pd

    raw = files.read_bytes(path, "CSV file", CSV_LIMIT)  # gunzip ourselves: one clear error, bombs capped
    if not raw.strip():
        raise DataError("empty file", path)
    sep = "\t" if path.name.lower().endswith(".tsv") else ","
    try:
        df = pd.read_csv(io.BytesIO(raw), sep=sep, engine=_csv_engine())
    except Exception as exc:  # parser errors come in many types; all mean "bad CSV"
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot parse CSV ({msg})", path) from None
    if len(df) == 0:
        raise DataError("no data rows", path)
    columns = [str(c).strip() for c in df.columns]
    if all(_is_number(c) for c in columns):  # headerless file: first row is data
        df = pd.read_csv(io.BytesIO(raw), sep=sep, header=None, engine=_csv_engine())
        ncol = df.shape[1]
        if ncol not in (NUM_PIXELS, NUM_PIXELS + 1):
            raise DataError(f"expected 784 pixel columns (plus an optional label), found {ncol} columns", path)
        columns = (["label"] if ncol == NUM_PIXELS + 1 else []) + [f"pixel{i}" for i in range(NUM_PIXELS)]
    df.columns = columns
    lower = {c.lower(): c for c in columns}
    pixel_cols = [c for c in columns if re.fullmatch(r"(pixel|px|p)?_?\d+", c, flags=re.I)]
    label_col = next((lower[n] for n in _LABEL_NAMES if n in lower), None)
    id_col = next((lower[n] for n in _ID_NAMES if n in lower), None)
    if id_col is None:
        id_col = next((c for c in columns if c.lower().endswith("id") and c not in pixel_cols and c != label_col), None)
    others = [c for c in columns if c not in pixel_cols and c not in (label_col, id_col)]
    if others:
        raise DataError(f"unexpected column(s) {', '.join(others[:3])}: expected label, id and pixel columns", path)
    if len(pixel_cols) != NUM_PIXELS:
        raise DataError(f"expected 784 pixel columns, found {len(pixel_cols)}", path)
    pixels = _numeric_block(df, pixel_cols, path)
    targets = None
    if label_col is not None:
        col = df[label_col]
        if col.isna().any():
            raise DataError(f"missing label in row {int(np.flatnonzero(col.isna().to_numpy())[0]) + 1}", path)
        targets = col.to_numpy()
    ids = None if id_col is None else df[id_col].to_numpy()
    return _Raw(pixels, targets, ids, id_col, (pixel_cols[0], pixel_cols[-1]))


def _csv_engine() -> str:
    try:
        import pyarrow  # noqa: F401

        return "pyarrow"
    except ImportError:
        return "c"


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _numeric_block(df: Any, cols: list[str], path: Path) -> np.ndarray:
    import pandas as pd

    block = df[cols]
    bad = [c for c in cols if not pd.api.types.is_numeric_dtype(block[c]) or pd.api.types.is_bool_dtype(block[c])]
    if bad:
        col = block[bad[0]]
        conv = pd.to_numeric(col, errors="coerce")
        row = int(np.flatnonzero(conv.isna().to_numpy() & col.notna().to_numpy())[0]) if conv.isna().any() else 0
        raise DataError(f"non-numeric pixel value {col.iloc[row]!r} in column {bad[0]} (row {row + 1})", path)
    values = block.to_numpy()
    if values.dtype.kind == "f":
        nan = np.isnan(values)
        if nan.any():
            r, c = np.argwhere(nan)[0]
            raise DataError(f"missing/NaN pixel value in column {cols[c]} (row {r + 1})", path)
    return values


def _pick(mapping: dict[str, Any], keys: tuple[str, ...]) -> Any:
    lower = {str(k).lower(): k for k in mapping}
    for k in keys:
        if k in lower:
            return mapping[lower[k]]
    return None


def _read_npy(path: Path, labels_path: Path | None) -> _Raw:
    obj = load_npy(path)
    if isinstance(obj, dict):
        feats = _pick(obj, _FEATURE_KEYS)
        if feats is None:
            raise DataError(f"dict has no features key (expected one of {', '.join(_FEATURE_KEYS)}; found {', '.join(map(str, obj))})", path)
        return _Raw(_as_array(feats, path, "features"), _opt_array(_pick(obj, _TARGET_KEYS), path), _opt_array(_pick(obj, _IDS_KEYS), path))
    if not isinstance(obj, np.ndarray):
        raise DataError(f"expected an array or a dict of arrays, found {type(obj).__name__}", path)
    targets = None
    labels_path = labels_path or _sibling_labels(path)
    if labels_path is not None:
        targets = _as_array(load_npy(labels_path), labels_path, "labels")
    return _Raw(obj, targets)


def _read_npz(path: Path, labels_path: Path | None) -> _Raw:
    arrays = read_npz(path)
    feats = _pick(arrays, _FEATURE_KEYS)
    if feats is None:
        if len(arrays) != 1:
            raise DataError(f"NPZ has no features array (keys: {', '.join(arrays)})", path)
        feats = next(iter(arrays.values()))
    return _Raw(feats, _pick(arrays, _TARGET_KEYS), _pick(arrays, _IDS_KEYS))


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Arrays of an NPZ, each member's size checked against its declared shape before it is
    decompressed (a zip bomb is refused at once); pickled members are refused."""
    try:
        with zipfile.ZipFile(path) as zf:
            arrays = {}
            for info in zf.infolist():
                key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                with zf.open(info) as fh:
                    shape, dtype, header_len = check_npy_header(fh, path, member=info.filename)
                need = header_len + int(np.prod(shape)) * dtype.itemsize
                if info.file_size != need:
                    raise DataError(f"member {info.filename} declares {info.file_size:,} bytes but its header {dtype}{list(shape)} needs {need:,}", path)
                with zf.open(info) as fh:  # ZipExtFile stops at the declared size
                    arrays[key] = np.lib.format.read_array(fh, allow_pickle=False)
            return arrays
    except zipfile.BadZipFile as exc:
        raise DataError(f"not a valid NPZ/zip file ({exc})", path) from None
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise DataError(f"truncated or corrupt NPZ ({exc})", path) from None


def _as_array(obj: Any, path: Path, what: str) -> np.ndarray:
    if not isinstance(obj, np.ndarray):
        try:
            obj = np.asarray(obj)
        except Exception:
            raise DataError(f"{what} is not an array", path) from None
    if obj.dtype.hasobject:
        raise DataError(f"{what} is an object array, expected numbers", path)
    return obj


def _opt_array(obj: Any, path: Path) -> np.ndarray | None:
    return None if obj is None else _as_array(obj, path, "target")


def _sibling_labels(path: Path) -> Path | None:
    """Guess the labels file next to an images file (IDX names, X/y .npy pairs)."""
    name = path.name
    candidates = [
        name.replace("images-idx3", "labels-idx1"),
        name.replace("images", "labels"),
        re.sub(r"(^|[_\-.])[Xx](?=[_\-.])", r"\1y", name),
        re.sub(r"(^|[_\-.])features(?=[_\-.])", r"\1target", name),
    ]
    for cand in candidates:
        if cand != name and (path.parent / cand).exists():
            return path.parent / cand
    return None


def _parse_idx(path: Path) -> np.ndarray:
    head = files.head(files.regular_file(path, "IDX file"), 4 + 4 * 255)
    if len(head) == 0:
        raise DataError("empty file", path)
    if len(head) < 4 or head[0] != 0 or head[1] != 0:
        raise DataError("not an IDX file (bad magic number)", path)
    if head[2] != 0x08:
        raise DataError(f"IDX type code 0x{head[2]:02x} unsupported (expected unsigned bytes 0x08)", path)
    ndim = head[3]
    if len(head) < 4 + 4 * ndim:
        raise DataError("IDX header is truncated", path)
    dims = struct.unpack(f">{ndim}I", head[4 : 4 + 4 * ndim])
    expected = int(np.prod(dims, dtype=np.int64))
    if expected > files.MAX_BYTES:
        raise DataError(f"IDX header declares {'x'.join(map(str, dims))} ({expected:,} bytes), above the {files.MAX_BYTES:,}-byte limit", path)
    # read no more than the header declares (+1 to notice extra data): a .gz bomb stops here
    data = files.read_bytes(path, "IDX file", unzipped_limit=4 + 4 * ndim + expected + 1)
    payload = len(data) - 4 - 4 * ndim
    if payload != expected:
        raise DataError(f"IDX header says {'x'.join(map(str, dims))} ({expected} bytes) but the file holds {payload}", path)
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims).copy()  # writable, for torch


def _read_idx(path: Path, labels_path: Path | None) -> _Raw:
    images = _parse_idx(path)
    if images.ndim != 3:
        raise DataError(f"IDX images file has {images.ndim} dimensions, expected 3 (N, 28, 28)", path)
    labels_path = labels_path or _sibling_labels(path)
    targets = None
    if labels_path is not None:
        targets = _parse_idx(labels_path)
        if targets.ndim != 1:
            raise DataError(f"IDX labels file has {targets.ndim} dimensions, expected 1", labels_path)
        if len(targets) != len(images):
            raise DataError(f"IDX labels count {len(targets)} differs from images count {len(images)} in {path.name}", labels_path)
    return _Raw(images, targets)


# --------------------------------------------------------------------------- canonical form


def _to_uint8(pixels: np.ndarray, path: Path) -> tuple[np.ndarray, str]:
    if pixels.dtype.kind not in "uifb":
        raise DataError(f"pixels have dtype {pixels.dtype}, expected numbers", path)
    n = pixels.shape[0] if pixels.ndim else 0
    if n == 0:
        raise DataError("no images", path)
    shape = pixels.shape[1:]
    if shape in ((NUM_PIXELS,), (SIDE, SIDE), (SIDE, SIDE, 1), (1, SIDE, SIDE)):
        pixels = pixels.reshape(n, SIDE, SIDE)
    else:
        raise DataError(f"each image has shape {shape} ({int(np.prod(shape))} pixels), expected 784 = 28x28", path)
    if pixels.dtype.kind == "f":
        if np.isnan(pixels).any():
            raise DataError("NaN pixel values", path)
        if np.isinf(pixels).any():
            raise DataError("infinite pixel values", path)
    lo, hi = float(pixels.min()), float(pixels.max())
    if lo < 0:
        raise DataError(f"negative pixel value {lo:g}; expected 0..255 or 0..1", path)
    if hi > 255:
        raise DataError(f"pixel value {hi:g} above 255", path)
    if pixels.dtype.kind == "f" and hi <= 1.0:
        return np.rint(pixels * 255.0).astype(np.uint8), "0..1"
    if pixels.dtype.kind == "f" and not np.array_equal(pixels, np.rint(pixels)):
        bad = pixels[(pixels != np.rint(pixels))][0]
        raise DataError(f"fractional pixel value {bad:g} among values above 1 (0..1 floats mixed with 0..255 ints?)", path)
    return pixels.astype(np.uint8), "0..255"


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
        if np.isnan(targets).any() or not np.array_equal(targets, np.rint(targets)):
            bad = targets[np.isnan(targets) | (targets != np.rint(targets))][0]
            raise DataError(f"label {_plain(bad)!r} is not an integer", path)
        targets = targets.astype(np.int64)
    elif targets.dtype.kind in "OUS":
        try:
            as_num = np.array([float(t) for t in targets])
        except (TypeError, ValueError):
            bad = next(t for t in targets if not _is_number(str(t)))
            raise DataError(f"label {_plain(bad)!r} is not an integer", path) from None
        return _targets_to_values(as_num, n, path)
    elif targets.dtype.kind not in "iub":
        raise DataError(f"labels have dtype {targets.dtype}, expected integers", path)
    return targets.astype(np.int64)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


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
    if format not in FORMATS:
        raise DataError(f"unknown format {format!r} (choose from {', '.join(FORMATS)})", path)
    for p in (path, labels_path):
        if p is not None:
            files.regular_file(p, "data file")
    if path.stat().st_size == 0:
        raise DataError("empty file", path)
    fmt = detect_format(path) if format == "auto" else format
    if fmt == "csv":
        raw, scale = _cached_csv(path, use_cache)
        images = raw.pixels
    else:
        raw = {"npy": _read_npy, "npz": _read_npz, "idx": _read_idx}[fmt](path, labels_path)
        images, scale = _to_uint8(np.asarray(raw.pixels), path)
    n = len(images)
    if labels_path is not None and raw.targets is None:  # labels kept in a separate file
        raw.targets = _as_array(load_images_labels(labels_path, raw.ids, raw.id_column), labels_path, "labels")
    labels = None
    values = tuple(label_values) if label_values is not None else ()
    if raw.targets is not None:
        original = _targets_to_values(np.asarray(raw.targets), n, labels_path or path)
        found = np.unique(original)
        if label_values is None:
            values = tuple(int(v) for v in found)
            if len(values) < 2:
                raise DataError(f"only {len(values)} distinct label value(s); need at least 2 classes", labels_path or path)
        else:
            unknown = np.setdiff1d(found, np.asarray(values))
            if len(unknown):
                raise DataError(f"label value(s) {', '.join(map(str, unknown[:5]))} not among the training classes {list(values)}", labels_path or path)
        labels = np.searchsorted(np.asarray(values), original).astype(np.int64)
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


LABEL_COLUMNS = ("label", "labels", "target", "class", "category")
EXTRA_COLUMNS = ("usage",)  # Kaggle solution files mark Public/Private rows


def load_images_labels(path: Path, ids: np.ndarray | None = None, id_column: str | None = None) -> np.ndarray:
    """Labels from a separate file (.npy array, IDX, or CSV). A CSV with an id column is joined
    on the ids (`ids`: the data file's, in its row order): any row order works, and missing or
    extra ids are refused. A one-column CSV is read in row order."""
    fmt = detect_format(path)
    if fmt == "idx":
        return _parse_idx(path)
    if fmt in ("npy", "npz"):
        return np.asarray(load_npy(path))
    import pandas as pd

    try:
        df = pd.read_csv(io.BytesIO(files.read_bytes(path, "labels file", CSV_LIMIT)), dtype=str, keep_default_na=False)
    except Exception as exc:
        raise DataError(f"cannot parse labels CSV ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})", path) from None
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
        raise DataError(f"labels CSV: id {by_id.index[by_id.index.duplicated()][0]!r} appears twice in column {key!r}", path)
    wanted = pd.Index([str(i) for i in (ids if ids is not None else np.arange(1, len(df) + 1))])
    missing, extra = wanted.difference(by_id.index), by_id.index.difference(wanted)
    if len(missing) or len(extra):
        detail = f"{len(missing)} test id(s) missing (first {missing[0]!r})" if len(missing) else f"{len(extra)} id(s) not in the test file (first {extra[0]!r})"
        raise DataError(f"labels CSV joined on {key!r}: {detail}", path)
    return _numeric(by_id.loc[wanted], path)


def _numeric(labels: Any, path: Path) -> np.ndarray:
    import pandas as pd

    nums = pd.to_numeric(labels, errors="coerce")
    if nums.isna().any():
        raise DataError(f"label {labels[nums.isna()].iloc[0]!r} is not a number", path)
    return nums.to_numpy()


def _cache_dir() -> Path:
    return Path(os.environ.get("FKAGGLE_CACHE") or Path.home() / ".cache" / "fmnist_kaggle")


def _cached_csv(path: Path, use_cache: bool) -> tuple[_Raw, str]:
    """Parse a CSV once; later loads of the same bytes come from an .npz cache."""
    digest = hashlib.blake2b(files.read_bytes(path, "CSV file", CSV_LIMIT), digest_size=16).hexdigest()
    cache = _cache_dir() / f"csv-v{CACHE_VERSION}-{digest}.npz"
    if use_cache and cache.exists():
        try:
            with np.load(cache, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                raw = _Raw(
                    z["pixels"],
                    z["targets"] if "targets" in z.files else None,
                    z["ids"] if "ids" in z.files else None,
                    meta["id_column"],
                    tuple(meta["pixel_columns"]),
                )
                return raw, meta["scale"]
        except Exception:  # unreadable cache: fall through and rebuild it
            pass
    raw = _read_csv(path)
    raw.pixels, scale = _to_uint8(raw.pixels, path)
    if use_cache:
        arrays = {"pixels": raw.pixels}
        if raw.targets is not None:
            arrays["targets"] = raw.targets
        if raw.ids is not None:  # npz refuses object arrays: string ids are stored as str
            arrays["ids"] = raw.ids.astype(str) if raw.ids.dtype.kind == "O" else raw.ids
        meta = {"id_column": raw.id_column, "pixel_columns": list(raw.pixel_columns or ()), "scale": scale}
        try:
            atomic.save_npz(cache, meta=np.array(json.dumps(meta)), **arrays)
        except OSError:
            pass  # a read-only cache folder must not break loading
    return raw, scale


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
                f"class {value} has only {count} sample{'s' if count != 1 else ''}; {folds}-fold stratified CV needs at least {folds}",
                train.path,
            )
