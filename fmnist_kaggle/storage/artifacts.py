"""The checked-artifact store: every finished artifact is recorded with its size and SHA-256
(and shape/dtype for arrays) and verified against that record whenever it is read.

Every file the workspace reads back comes through `read_file`: a regular file (a FIFO never
blocks a reader), not a link (nothing the workspace reads follows a link out of it), of a
bounded size. JSON records are then checked against their schema (`storage.schemas`).
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.storage import atomic
from fmnist_kaggle.storage.schemas import schema_problem


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


RECORD_LIMIT = 64 << 20  # JSON and CSV records: the largest (a 101-run history) is well under 1 MB
ARTIFACT_LIMIT = 4 << 30  # arrays, model files and checkpoints


def read_file(path: Path, what: str = "file", limit: int = ARTIFACT_LIMIT) -> bytes:
    """A workspace file's bytes: a regular file, not a symbolic link, at most `limit` bytes;
    CorruptArtifact naming the file otherwise (never a hang on a FIFO)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise CorruptArtifact(f"{what} is missing", path) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CorruptArtifact(
                f"{what} is a symbolic link: the workspace follows no links; remove it", path
            ) from None
        raise CorruptArtifact(f"cannot read {what} ({exc.strerror})", path) from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CorruptArtifact(f"{what} is not a regular file (a FIFO, socket, device or folder); remove it", path)
        if st.st_size > limit:
            raise CorruptArtifact(f"{what} is {st.st_size:,} bytes, above the {limit:,}-byte limit", path)
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise CorruptArtifact(f"{what} grew past the {limit:,}-byte limit while read", path)
    return data


def present(path: Path) -> bool:
    """Whether anything is at `path`, a dangling link included (which `read_file` then refuses by name)."""
    return path.exists() or path.is_symlink()


def _check_record(rec: Any, path: Path) -> dict[str, Any]:
    if not rec:
        raise CorruptArtifact("no record of this artifact in its manifest (written by another version?)", path)
    if not isinstance(rec, dict) or type(rec.get("bytes")) is not int or not isinstance(rec.get("sha256"), str):
        raise CorruptArtifact("its record is malformed (needs whole-number bytes and a sha256)", path)
    return rec


def read_verified(path: Path, rec: dict[str, Any] | None) -> bytes:
    """The file's bytes if they match their record; CorruptArtifact naming the file otherwise."""
    rec = _check_record(rec, path)
    data = read_file(path, "recorded artifact")
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
        raise CorruptArtifact(
            f"array is {arr.dtype}{list(arr.shape)}, recorded {rec.get('dtype')}{rec.get('shape')}", path
        )
    if finite and arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise FkaggleError("holds NaN or infinite values (a diverged run?); refused", path)
    return arr


def read_text(path: Path, what: str = "file", limit: int = RECORD_LIMIT) -> str:
    """A workspace text file (`read_file`'s checks), which must be UTF-8."""
    try:
        return read_file(path, what, limit).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptArtifact(f"{what} is not UTF-8 text (byte {exc.start})", path) from None


def read_json(path: Path, what: str = "metadata", schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """A JSON object the workspace wrote, checked against `schema` (storage.schemas) when given."""
    try:
        obj = json.loads(read_text(path, what))
    except json.JSONDecodeError as exc:
        raise CorruptArtifact(f"unreadable {what} ({exc})", path) from None
    if not isinstance(obj, dict):
        raise CorruptArtifact(f"{what} is not a JSON object", path)
    if schema is not None:
        problem = schema_problem(obj, schema)
        if problem:
            raise CorruptArtifact(f"malformed {what}: {problem}", path)
    return obj


def torch_load(data: bytes, path: Path, what: str = "model file", map_location: Any = "cpu") -> Any:
    """Tensors and plain containers from verified bytes (weights_only: a pickle payload is never
    executed, and refused in one line)."""
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of what it then refuses
            warnings.simplefilter("ignore")
            return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001  (UnpicklingError for a payload, RuntimeError for a torn zip, ...)
        raise CorruptArtifact(
            f"not a weights-only PyTorch {what} ({type(exc).__name__}); never executed, refused", path
        ) from None


def utc_now() -> str:
    """The timestamp every record uses (UTC, ISO 8601, seconds)."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")
