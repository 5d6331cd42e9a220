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


def load_npy(path: str | Path) -> Any:
    """Load a .npy file: plain arrays directly, object arrays (pickled dicts) restricted."""
    path = Path(path)
    with open(path, "rb") as fh:
        try:
            version = np.lib.format.read_magic(fh)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0}.get(version, np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(fh)
        except ValueError as exc:
            raise DataError(f"not a valid .npy file ({exc})", path) from None
        if not dtype.hasobject:
            fh.seek(0)
            try:
                return np.load(fh, allow_pickle=False)
            except ValueError as exc:
                raise DataError(f"truncated or corrupt .npy file ({exc})", path) from None
        obj = restricted_loads(fh.read(), path)
    # np.save of a dict gives a 0-d object array wrapping the dict
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject and obj.shape == ():
        obj = obj.item()
    return obj
