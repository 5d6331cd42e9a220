"""Atomic artifact writes: write a temp file beside the target, then rename.

A crash or Ctrl-C mid-write leaves the old file (or none), never half a file.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temp path in the target's folder; rename it onto the target on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | Path, text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def write_json(target: str | Path, obj: Any) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def save_npy(target: str | Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    write_bytes(target, buf.getvalue())


def save_npz(target: str | Path, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes(target, buf.getvalue())


def save_figure(target: str | Path, fig: Any, dpi: int = 110) -> None:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    write_bytes(target, buf.getvalue())


def append_csv_row(target: str | Path, row: dict[str, Any]) -> None:
    """Append one row to a CSV (header on first write), rewriting the file atomically."""
    import csv

    target = Path(target)
    old = target.read_text() if target.exists() else ""
    fields = list(row)
    out = io.StringIO()
    if old:
        out.write(old if old.endswith("\n") else old + "\n")
        header = next(csv.reader(io.StringIO(old)))
        fields = header + [k for k in row if k not in header]
        if fields != header:  # new column: rewrite with the wider header
            rows = list(csv.DictReader(io.StringIO(old)))
            out = io.StringIO()
            w = csv.DictWriter(out, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)
    w = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    if not old:
        w.writeheader()
    w.writerow(row)
    write_text(target, out.getvalue())
