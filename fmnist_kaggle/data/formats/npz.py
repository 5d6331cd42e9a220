"""NPZ: arrays (features/target or a single array), each member checked against its header
before it is decompressed."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from fmnist_kaggle.data.formats._common import FEATURE_KEYS, IDS_KEYS, TARGET_KEYS, Raw, _pick
from fmnist_kaggle.errors import DataError
from fmnist_kaggle.storage.safe_pickle import check_npy_header

SUFFIXES = (".npz",)
DOWNLOAD_SUFFIXES = (".npz",)


def by_content(head: bytes) -> bool:
    return False  # a zip: recognised by detect_format


def read(path: Path, labels_path: Path | None, use_cache: bool = True) -> Raw:
    arrays = read_npz(path)
    feats = _pick(arrays, FEATURE_KEYS)
    if feats is None:
        if len(arrays) != 1:
            raise DataError(f"NPZ has no features array (keys: {', '.join(arrays)})", path)
        feats = next(iter(arrays.values()))
    return Raw(feats, _pick(arrays, TARGET_KEYS), _pick(arrays, IDS_KEYS))


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
                    raise DataError(
                        f"member {info.filename} declares {info.file_size:,} bytes but its header "
                        f"{dtype}{list(shape)} needs {need:,}",
                        path,
                    )
                with zf.open(info) as fh:  # ZipExtFile stops at the declared size
                    arrays[key] = np.lib.format.read_array(fh, allow_pickle=False)
            return arrays
    except zipfile.BadZipFile as exc:
        raise DataError(f"not a valid NPZ/zip file ({exc})", path) from None
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise DataError(f"truncated or corrupt NPZ ({exc})", path) from None
