"""What the format readers share: the raw form a reader returns, the canonical image shape and
pixel scale, label/id column and key names, and array checks."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_kaggle.errors import DataError

SIDE = 28
NUM_PIXELS = SIDE * SIDE
LABEL_COLUMNS = ("label", "labels", "target", "class", "category", "y")  # a label column, in a data CSV or a labels CSV
ID_COLUMNS = ("id", "imageid", "image_id", "index", "sample_id")
FEATURE_KEYS = ("features", "x", "images", "data", "pixels")  # arrays of an NPY dict / NPZ
TARGET_KEYS = ("target", "y", "labels", "label", "targets")
IDS_KEYS = ("id", "ids")


@dataclass
class Raw:
    """What a reader found in a file, before the canonical form (uint8 images, class indices)."""

    pixels: np.ndarray  # numeric, (N, 784) or image-shaped
    targets: np.ndarray | None = None
    ids: np.ndarray | None = None
    id_column: str | None = None
    pixel_columns: tuple[str, ...] | None = None
    scale: str | None = None  # set when the reader already made the pixels uint8 ("0..255" or "0..1")


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _pick(mapping: dict[str, Any], keys: tuple[str, ...]) -> Any:
    lower = {str(k).lower(): k for k in mapping}
    for k in keys:
        if k in lower:
            return mapping[lower[k]]
    return None


def _as_array(obj: Any, path: Path, what: str) -> np.ndarray:
    if not isinstance(obj, np.ndarray):
        try:
            obj = np.asarray(obj)
        except Exception:
            raise DataError(f"{what} is not an array", path) from None
    if obj.dtype.hasobject:
        if obj.ndim == 1 and all(isinstance(v, str) for v in obj):  # labels given as words
            return obj
        inner = obj.item() if obj.ndim == 0 else None
        if isinstance(inner, dict):
            keys = ", ".join(map(str, list(inner)[:4]))
            hint = "; a file of images and their targets goes as the data file itself (--test FILE), not as its labels"
            raise DataError(f"{what} is a pickled dict ({keys}), expected an array of labels{hint}", path)
        raise DataError(f"{what} is an object array, expected numbers or words", path)
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
        raise DataError(
            f"fractional pixel value {bad:g} among values above 1 (0..1 floats mixed with 0..255 ints?)", path
        )
    return pixels.astype(np.uint8), "0..255"


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
