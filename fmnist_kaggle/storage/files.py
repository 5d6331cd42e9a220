"""Guarded reads of user-named files: regular files only, bounded sizes, errors that name the file.

A FIFO or `/dev/zero` given as an input would hang or read until memory runs out, and a
small compressed file can expand to gigabytes: every input goes through here first.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import zipfile
import zlib
from pathlib import Path

from fmnist_kaggle.errors import DataError, FkaggleError

DEFAULT_MAX_BYTES = 4 << 30  # no Fashion-MNIST file comes close (the 60,000-row CSV is 133 MB)


def max_bytes_setting() -> tuple[int, str | None]:
    """The input size limit from $FKAGGLE_MAX_INPUT_BYTES (default 4 GiB), and what is wrong with
    the setting, if anything (the CLI reports it in one line before any work)."""
    text = os.environ.get("FKAGGLE_MAX_INPUT_BYTES", "").strip()
    try:
        value = int(text) if text else DEFAULT_MAX_BYTES
    except ValueError:
        value = 0
    if value <= 0:
        return DEFAULT_MAX_BYTES, f"FKAGGLE_MAX_INPUT_BYTES must be a positive whole number of bytes, got {text!r}"
    return value, None


def max_bytes() -> int:
    """The input size limit in force now (read on each use: the environment may change)."""
    return max_bytes_setting()[0]


def regular_file(path: str | Path, what: str = "file") -> Path:
    """The path, if it names an existing, readable regular file; else one clear error."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DataError(f"{what} not found", path) from None
    except PermissionError:
        raise DataError("permission denied", path) from None
    except OSError as exc:
        raise DataError(f"cannot access ({exc.strerror})", path) from None
    if stat.S_ISDIR(st.st_mode):
        raise DataError(f"is a folder, expected a {what}", path)
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"not a regular file (a FIFO, socket or device), expected a {what}", path)
    if not os.access(path, os.R_OK):
        raise DataError("permission denied", path)
    return path


def read_bytes(
    path: str | Path, what: str = "file", limit: int | None = None, unzipped_limit: int | None = None
) -> bytes:
    """Contents of a regular file, gunzipped if it is gzip. The file may hold at most `limit`
    bytes, its decompressed stream at most `unzipped_limit` (default `limit`)."""
    path = regular_file(path, what)
    limit = max_bytes() if limit is None else limit
    if path.stat().st_size > limit:
        raise DataError(f"file is {path.stat().st_size:,} bytes, above the {limit:,}-byte limit", path)
    data = path.read_bytes()
    if data[:4] == b"PK\x03\x04":  # Kaggle serves single files zipped (train.csv.zip)
        data = unzip_single(data, path, unzipped_limit or limit)
    return gunzip(data, path, unzipped_limit or limit) if data[:2] == b"\x1f\x8b" else data


def zip_members(path: Path) -> list[str]:
    """The file names inside a zip (folders left out)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return [i.filename for i in zf.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"not a readable zip file ({exc})", path) from None


def unzip_single(data: bytes, path: Path, limit: int | None = None) -> bytes:
    """The one file inside a zip, read no further than `limit` bytes (bomb guard)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = [i for i in zf.infolist() if not i.is_dir()]
            if len(members) != 1:
                raise DataError(multi_file_zip_message([i.filename for i in members]), path)
            return read_member(zf, members[0], path, limit)
    except zipfile.BadZipFile as exc:
        raise DataError(f"truncated or corrupt zip file ({exc})", path) from None


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, limit: int | None = None) -> bytes:
    """One zip member's bytes: its declared size checked first, then read no further than
    `limit` (a declared size can lie: bomb guard)."""
    limit = max_bytes() if limit is None else limit
    if info.file_size > limit:
        raise DataError(
            f"{info.filename} decompresses to {info.file_size:,} bytes, above the {limit:,}-byte limit", path
        )
    with zf.open(info) as fh:
        out = fh.read(limit + 1)
    if len(out) > limit:
        raise DataError(
            f"{info.filename} decompresses to more than {limit:,} bytes (a decompression bomb?), refused", path
        )
    return out


def multi_file_zip_message(names: list[str]) -> str:
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    return (
        f"a zip of {len(names)} files ({shown}): a whole competition download, not "
        "one data file; unzip it and pass the train/test files, or let `fkaggle "
        "download SLUG` unpack it and write the config"
    )


def gunzip(data: bytes, path: Path, limit: int | None = None) -> bytes:
    """Decompress gzip bytes, stopping as soon as the output would pass `limit` (bomb guard)."""
    limit = max_bytes() if limit is None else limit
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, limit + 1)
        if len(out) > limit or d.unconsumed_tail:
            raise DataError(f"decompresses to more than {limit:,} bytes (a decompression bomb?), refused", path)
        out += d.flush()
    except zlib.error as exc:
        raise DataError(f"truncated or corrupt gzip file ({exc})", path) from None
    if not d.eof:
        raise DataError("truncated or corrupt gzip file (ends early)", path)
    return out


def read_text(path: str | Path, what: str = "file", limit: int | None = None) -> str:
    try:
        return read_bytes(path, what, limit).decode("utf-8")
    except UnicodeDecodeError:
        raise DataError("not UTF-8 text", path) from None


def head(path: Path, n: int) -> bytes:
    """First n bytes (of the decompressed stream for .gz), b'' when unreadable."""
    try:
        with (gzip.open if path.name.endswith(".gz") else open)(path, "rb") as fh:
            return fh.read(n)
    except (OSError, EOFError, zlib.error):
        return b""


def writable_folder(path: str | Path) -> Path:
    """Refuse an output folder that could not be created or written, before any work starts
    (and without creating it: a refused command leaves nothing behind)."""
    path = Path(path)
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise FkaggleError("cannot create output folder: a file is in the way", probe)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise FkaggleError("output folder is not writable", path if probe == path else probe)
    return path
