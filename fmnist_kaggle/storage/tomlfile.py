"""Read one table of a TOML file, refusing unknown keys (a typo must not pass silently)."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.storage import files


def read_table(path: str | Path, table: str, known: Iterable[str], what: str) -> dict[str, Any]:
    """`[table]` of the file (or its top level when the table is absent)."""
    path = Path(path)
    text = files.read_text(path, what, limit=1 << 20)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FkaggleError(f"invalid TOML ({exc})", path) from None
    values = doc.get(table, doc)
    if not isinstance(values, dict):
        raise FkaggleError(f"[{table}] is not a table", path)
    unknown = set(values) - set(known)
    if unknown:
        raise FkaggleError(f"unknown key(s) in [{table}]: {', '.join(sorted(unknown))}", path)
    return dict(values)
