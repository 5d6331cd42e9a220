"""Data formats: one module per format in this folder, named as `--format` names it.

A format module defines `SUFFIXES` (file-name endings it claims), `DOWNLOAD_SUFFIXES` (files a
downloaded competition holds in it), `by_content(head) -> bool` (its magic bytes; optional
`NAME_HINTS`), and `read(path, labels_path, use_cache) -> Raw`. `detect_format` tries suffixes,
then zips, then name hints, then content; what nothing claims is CSV.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from fmnist_kaggle import registry
from fmnist_kaggle.errors import DataError
from fmnist_kaggle.storage import files


def format_names() -> tuple[str, ...]:
    return registry.names(__name__)


def format_choices() -> tuple[str, ...]:
    """What `--format` and a config's `format` accept: auto (detect) or a format's name."""
    return ("auto", *format_names())


def check_format(name: str, where: str | Path | None) -> str:
    """The name, when it is one of `format_choices()`; else one line naming the file and the choices."""
    if name not in format_choices():
        raise DataError(f"unknown format {name!r} (choose from {', '.join(format_choices())})", where)
    return name


def load_format(name: str) -> ModuleType:
    return registry.load(__name__, name, "format")


def download_suffixes() -> tuple[str, ...]:
    """File-name endings of competition data files, for recognising a download's files."""
    return tuple(s for name in format_names() for s in load_format(name).DOWNLOAD_SUFFIXES)


def detect_format(path: Path) -> str:
    name = path.name.lower()
    modules = {fmt: load_format(fmt) for fmt in format_names()}
    for fmt, mod in modules.items():
        if mod.SUFFIXES and name.endswith(mod.SUFFIXES):
            return fmt
    if name.endswith(".zip"):
        return _zip_format(path)
    for fmt, mod in modules.items():
        if any(hint in name for hint in getattr(mod, "NAME_HINTS", ())):
            return fmt
    head = files.head(path, 8)
    if head.startswith(b"PK"):
        return _zip_format(path)
    return next((fmt for fmt, mod in modules.items() if mod.by_content(head)), "csv")


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
