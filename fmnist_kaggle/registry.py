"""Plug-in folders: one module per entry, found by name without importing it.

A blender, a data format and an executor are each one file in their stage's plug-in
folder (`evaluate/blenders/`, `data/formats/`, `runs/executors/`); the file's name is the
entry's name. Listing reads the folder, so the CLI can offer every entry as a choice
without importing scikit-learn, torch or Ray; an entry is imported when it is used.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from types import ModuleType

from fmnist_kaggle.errors import FkaggleError


@functools.cache  # the folders do not change while the process runs; detection asks per file
def names(package: str) -> tuple[str, ...]:
    """The entries of a plug-in package, sorted (modules whose names start with '_' are helpers)."""
    folder = importlib.import_module(package).__path__
    return tuple(sorted(m.name for m in pkgutil.iter_modules(folder) if not m.name.startswith("_")))


def load(package: str, name: str, what: str) -> ModuleType:
    """The entry's module; an unknown name is one line listing the choices."""
    choices = names(package)
    if name not in choices:
        raise FkaggleError(f"unknown {what} {name!r} (choose from {', '.join(choices)})")
    return importlib.import_module(f"{package}.{name}")
