"""Atomic writes (a temp file beside the target, then rename) of bytes, text, strict JSON
(no bare NaN/Infinity), NPY/NPZ arrays and PNG figures.

A crash or Ctrl-C mid-write leaves the old file (or none), never half a file. Temp
files carry the writer's pid, so the next write to the same folder removes those a
killed writer left behind. Files get the permissions `open()` would give (umask).
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_kaggle.errors import FkaggleError

_TMP = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


_MODE = 0o666 & ~_umask()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temps(folder: Path) -> None:
    """Remove temp files of writers that died (their pid is gone)."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            m = _TMP.match(entry.name)
            if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


class WriteFailed(FkaggleError):
    """The file system refused a write (full, read-only, not permitted): one line naming the path
    and the cause. Nothing half-written is left; work finished before it is kept."""


DISK_ERRORS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


@contextlib.contextmanager
def disk_errors_named(target: Path) -> Iterator[None]:
    """A full disk, a read-only file system or a permission error as one line naming `target`."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in DISK_ERRORS:
            raise
        raise WriteFailed(
            f"cannot write {target}: {DISK_ERRORS[exc.errno]} ({exc.strerror}); "
            "finished work is kept: free space or fix permissions, then run the same command again"
        ) from None


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temp path in the target's folder; rename it onto the target on success."""
    target = Path(target)
    with disk_errors_named(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(target.parent)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp")
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        with disk_errors_named(target):
            yield tmp_path
            os.chmod(tmp_path, _MODE)  # mkstemp makes 0600; honour the umask like open() does
            os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | Path, text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def finite_json(obj: Any) -> Any:
    """A copy that JSON can hold: NaN/Infinity become null, numpy values plain Python."""
    if isinstance(obj, dict):
        return {str(k): finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return finite_json(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps(obj: Any) -> str:
    """Strict JSON text (never bare NaN), the one encoder for files and --json output."""
    return json.dumps(finite_json(obj), indent=2, allow_nan=False)


def write_json(target: str | Path, obj: Any) -> None:
    write_text(target, dumps(obj) + "\n")


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def save_npy(target: str | Path, array: np.ndarray) -> None:
    write_bytes(target, npy_bytes(array))


def save_npz(target: str | Path, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes(target, buf.getvalue())


def save_figure(target: str | Path, fig: Any, dpi: int = 110) -> None:
    """Save a matplotlib figure as PNG atomically and close it."""
    write_bytes(target, figure_png(fig, dpi))


def figure_png(fig: Any, dpi: int = 110) -> bytes:
    """A matplotlib figure as PNG bytes (closed after), for pages that embed their pictures."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
