"""One session per workspace: an advisory `fcntl` lock on `oof/.session.lock`.

The kernel drops a `flock` when its holder exits, however it exits, so a lock left by a killed
session is simply free: the next session takes it over and rewrites who holds it. The file
names the holder (PID, start time, command) so a refused session says which one is running.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.storage.artifacts import utc_now


@contextmanager
def workspace_lock(path: Path, what: str = "fkaggle auto") -> Iterator[None]:
    """Hold the workspace's session lock for the block; FkaggleError naming the holder if another
    live process holds it. The lock file (and a folder made for it) is removed on release, so a
    refused or finished session leaves nothing behind."""
    made = not path.parent.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(path)
    try:
        me = {"pid": os.getpid(), "started": utc_now(), "command": what}
        os.pwrite(fd, json.dumps(me).encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)  # while still held: a waiter re-checks the inode it locked
        os.close(fd)
        if made:
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # only if empty


def _acquire(path: Path) -> int:
    """A descriptor holding the lock on the file now at `path` (a file unlinked by its releasing
    holder between our open and our lock is not the lock any more: open again)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise FkaggleError(
                f"another session is running in this workspace ({holder}): wait for it to end, "
                "or run this one in another folder (--workdir)",
                path,
            ) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)  # a killed holder's words are stale: the lock is ours now
            return fd
        os.close(fd)


def _holder(fd: int) -> str:
    """'PID 123, fkaggle auto, started 2026-12-07T03:10:00Z' from the lock file (as far as it says)."""
    try:
        who = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        who = {}
    if not isinstance(who, dict) or "pid" not in who:
        return "its holder did not say who it is"
    return f"PID {who.get('pid')}, {who.get('command', 'fkaggle')}, started {who.get('started', '?')}"
