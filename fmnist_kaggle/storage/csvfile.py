"""Small CSV records (history, upload logs): rows as dicts, written atomically, read back."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from fmnist_kaggle.storage.artifacts import present, read_text
from fmnist_kaggle.storage.atomic import write_text


def csv_text(rows: list[dict[str, Any]], fields: list[str] | None = None) -> str:
    """CSV text with a header (the csv module quotes what needs quoting)."""
    fields = fields or list(dict.fromkeys(k for r in rows for k in r))
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return out.getvalue()


def read_csv_rows(path: str | Path) -> list[dict[str, str]]:
    """Rows of a CSV the workspace wrote, with a header ([] when the file does not exist; read
    through the guarded reader: a FIFO, a link or non-UTF-8 bytes are one error naming the file)."""
    path = Path(path)
    if not present(path):
        return []
    return list(csv.DictReader(io.StringIO(read_text(path, "CSV record"), newline="")))


def optional_float(value: Any) -> float | None:
    """A number read back from a CSV cell or a reply (text or number); None when blank or not a number."""
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def append_csv_row(target: str | Path, row: dict[str, Any]) -> None:
    """Append one row to a CSV (header widened when the row brings new columns), atomically."""
    rows = read_csv_rows(target)
    fields = list(dict.fromkeys([*(rows[0] if rows else {}), *row]))
    write_text(target, csv_text([*rows, row], fields))
