"""The one error type the CLI turns into a one-line message and exit status 2."""

from __future__ import annotations

from pathlib import Path


class FkaggleError(Exception):
    """A user-facing problem (bad input, refused operation). Never a bug."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class DataError(FkaggleError):
    """A data file is missing, malformed or inconsistent."""
