"""The original IDX files (`*-images-idx3-ubyte[.gz]` with `*-labels-idx1-ubyte[.gz]`)."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from fmnist_kaggle.data.formats._common import Raw, _sibling_labels
from fmnist_kaggle.errors import DataError
from fmnist_kaggle.storage import files

SUFFIXES = ()
DOWNLOAD_SUFFIXES = (".gz", ".ubyte")
NAME_HINTS = ("idx", "ubyte")  # weaker than a suffix: checked after every format's suffixes


def by_content(head: bytes) -> bool:
    return len(head) >= 4 and head[:2] == b"\x00\x00" and head[2] == 0x08


def parse_idx(path: Path) -> np.ndarray:
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
    expected = math.prod(dims)  # exact: int64 wraps (65536**4 -> 0)
    if expected > files.max_bytes():
        raise DataError(
            f"IDX header declares {'x'.join(map(str, dims))} ({expected:,} bytes), above "
            f"the {files.max_bytes():,}-byte limit",
            path,
        )
    # read no more than the header declares (+1 to notice extra data): a .gz bomb stops here
    data = files.read_bytes(path, "IDX file", unzipped_limit=4 + 4 * ndim + expected + 1)
    payload = len(data) - 4 - 4 * ndim
    if payload != expected:
        raise DataError(
            f"IDX header says {'x'.join(map(str, dims))} ({expected} bytes) but the file holds {payload}", path
        )
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims).copy()  # writable, for torch


def read(path: Path, labels_path: Path | None, use_cache: bool = True) -> Raw:
    images = parse_idx(path)
    if images.ndim != 3:
        raise DataError(f"IDX images file has {images.ndim} dimensions, expected 3 (N, 28, 28)", path)
    labels_path = labels_path or _sibling_labels(path)
    targets = None
    if labels_path is not None:
        targets = parse_idx(labels_path)
        if targets.ndim != 1:
            raise DataError(f"IDX labels file has {targets.ndim} dimensions, expected 1", labels_path)
        if len(targets) != len(images):
            raise DataError(
                f"IDX labels count {len(targets)} differs from images count {len(images)} in {path.name}", labels_path
            )
    return Raw(images, targets)
