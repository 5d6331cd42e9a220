"""Read pickled NPY dicts without running arbitrary code.

`np.load(allow_pickle=True)` on a user's file can execute anything. Competition
files like `{'features': ..., 'target': ...}` only need numpy arrays and plain
containers, so the unpickler below admits exactly those globals and refuses the rest.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_kaggle.errors import DataError
from fmnist_kaggle.storage import files

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("builtins", "dict"),
    ("builtins", "list"),
    ("builtins", "tuple"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "bytearray"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),  # numpy pickles raw bytes through codecs.encode in protocol 2
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def restricted_loads(data: bytes, path: str | Path = "<bytes>") -> Any:
    try:
        return _RestrictedUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError, IndexError) as exc:
        raise DataError(f"pickle holds something other than numpy arrays and plain containers ({exc})", path) from None


def check_npy_header(fh: Any, path: Path, member: str | None = None) -> tuple[tuple[int, ...], np.dtype, int]:
    """Read an .npy header: (shape, dtype, header length). Refuses shapes past the input limit
    before anything is allocated (a 3 KB file may declare (10**12, 28, 28))."""
    where = f"member {member}: " if member else ""
    try:
        version = np.lib.format.read_magic(fh)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0}.get(version, np.lib.format.read_array_header_2_0)
        shape, _fortran, dtype = read_header(fh, max_header_size=100_000)
    except (ValueError, EOFError, SyntaxError) as exc:
        raise DataError(f"{where}not a valid .npy header ({exc})", path) from None
    header_len = fh.tell()
    if not dtype.hasobject and int(np.prod(shape, dtype=object)) * dtype.itemsize > files.max_bytes():
        raise DataError(
            f"{where}header declares shape {shape} of {dtype} ({int(np.prod(shape, dtype=object)) * dtype.itemsize:,} "
            f"bytes), above the {files.max_bytes():,}-byte limit",
            path,
        )
    return tuple(shape), dtype, header_len


def load_npy(path: str | Path) -> Any:
    """Load a .npy file: plain arrays directly (size checked against the header), object
    arrays (pickled dicts) through the restricted unpickler."""
    path = files.regular_file(path, ".npy file")
    size = path.stat().st_size
    if size == 0:
        raise DataError("empty file", path)
    with open(path, "rb") as fh:
        shape, dtype, header_len = check_npy_header(fh, path)
        if not dtype.hasobject:
            need = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if size - header_len != need:
                raise DataError(
                    f"truncated or corrupt .npy file: header declares shape {shape} of {dtype} "
                    f"({need:,} bytes), the file holds {size - header_len:,}",
                    path,
                )
            fh.seek(0)
            return np.load(fh, allow_pickle=False)
        if size > files.max_bytes():
            raise DataError(f"file is {size:,} bytes, above the {files.max_bytes():,}-byte limit", path)
        obj = restricted_loads(fh.read(), path)
    # np.save of a dict gives a 0-d object array wrapping the dict
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject and obj.shape == ():
        obj = obj.item()
    return obj
