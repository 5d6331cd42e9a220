"""The checked-artifact store: every finished artifact is recorded with its size and SHA-256
(and shape/dtype for arrays) and verified against that record whenever it is read."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.storage import atomic


class CorruptArtifact(FkaggleError):
    """A recorded artifact is missing, truncated, altered or unreadable."""


def record(path: Path, data: bytes, array: np.ndarray | None = None) -> dict[str, Any]:
    rec: dict[str, Any] = {"file": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if array is not None:
        rec.update(shape=list(array.shape), dtype=str(array.dtype))
    return rec


def write_array(path: Path, array: np.ndarray) -> dict[str, Any]:
    data = atomic.npy_bytes(array)
    atomic.write_bytes(path, data)
    return record(path, data, np.ascontiguousarray(array))


def write_recorded(path: Path, data: bytes) -> dict[str, Any]:
    atomic.write_bytes(path, data)
    return record(path, data)


def read_verified(path: Path, rec: dict[str, Any] | None) -> bytes:
    """The file's bytes if they match their record; CorruptArtifact naming the file otherwise."""
    if not rec:
        raise CorruptArtifact("no record of this artifact in its manifest (written by another version?)", path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorruptArtifact("recorded artifact is missing", path) from None
    except OSError as exc:
        raise CorruptArtifact(f"cannot read ({exc.strerror})", path) from None
    if len(data) != rec["bytes"]:
        raise CorruptArtifact(f"truncated or altered: {len(data)} bytes, recorded {rec['bytes']}", path)
    if hashlib.sha256(data).hexdigest() != rec["sha256"]:
        raise CorruptArtifact("altered: SHA-256 differs from the recorded one", path)
    return data


def read_array(path: Path, rec: dict[str, Any] | None, finite: bool = False) -> np.ndarray:
    data = read_verified(path, rec)
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        raise CorruptArtifact(f"not a valid .npy array ({exc})", path) from None
    if list(arr.shape) != rec.get("shape", list(arr.shape)) or str(arr.dtype) != rec.get("dtype", str(arr.dtype)):
        raise CorruptArtifact(f"array is {arr.dtype}{list(arr.shape)}, recorded {rec.get('dtype')}{rec.get('shape')}", path)
    if finite and arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise FkaggleError("holds NaN or infinite values (a diverged run?); refused", path)
    return arr


def read_json(path: Path, what: str = "metadata") -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorruptArtifact(f"{what} is missing", path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptArtifact(f"unreadable {what} ({exc})", path) from None
    if not isinstance(obj, dict):
        raise CorruptArtifact(f"{what} is not a JSON object", path)
    return obj


def utc_now() -> str:
    """The timestamp every record uses (UTC, ISO 8601, seconds)."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")
