"""`fkaggle download SLUG`: a Kaggle competition's files, unpacked, recognised, checked and
turned into a competition config.

The official client downloads `SLUG.zip`; members are extracted one by one (plain names
only, sizes capped, each written atomically), then the train / test / sample-submission
files are recognised by name and loaded by the same loaders as every other command before
the config is written.
"""

from __future__ import annotations

import logging
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

from fmnist_kaggle.data.competition import DEFAULT_CONFIG, Competition, init_competition, load_competition, summary
from fmnist_kaggle.data.formats import download_suffixes
from fmnist_kaggle.errors import DataError, FkaggleError
from fmnist_kaggle.storage.files import max_bytes
from fmnist_kaggle.submit import kaggle_client

log = logging.getLogger(__name__)
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]*")


def download_competition(
    slug: str, folder: str | Path | None = None, config: str | Path = DEFAULT_CONFIG, force: bool = False
) -> tuple[dict[str, Any], Path]:
    """Download, unpack, recognise and check a competition's files; write its config."""
    if not _SLUG.fullmatch(slug):
        raise FkaggleError(
            f"{slug!r} is not a Kaggle competition slug (lower-case letters, digits "
            "and dashes, as in kaggle.com/competitions/SLUG)"
        )
    config = Path(config)
    if config.exists() and not force:  # refuse before the download, not after
        raise FkaggleError("exists; pass --force to replace it", config)
    folder = Path(folder) if folder else config.parent / "data" / slug
    created = next(
        (p for p in reversed([folder, *folder.parents]) if not p.exists()), None
    )  # the topmost folder we make
    staging = folder / ".staging"  # unpacked and checked here; swapped in only when every file loads
    try:
        archive = kaggle_client.download_files(slug, folder / ".download", force)
        shutil.rmtree(staging, ignore_errors=True)
        names = extract(archive, staging)
        staged = recognise([staging / n for n in names])
        summary(Competition(name=slug, slug=slug, **staged))  # the loaders' checks, before the old files are touched
        for n in names:
            (staging / n).replace(folder / n)
        paths = {k: folder / p.name for k, p in staged.items()}
        log.info(f"{slug}: " + ", ".join(f"{k} {p.name}" for k, p in paths.items()))
        _, info = init_competition(paths, config, name=slug, slug=slug, force=force)
    except BaseException:
        if (
            created is not None
        ):  # a failed first download leaves nothing behind (a re-run resumes a partial zip otherwise)
            shutil.rmtree(created, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(folder / ".download", ignore_errors=True)
    return info, folder


def download_once(slug: str, config: str | Path | None = None) -> Path:
    """The config of competition SLUG: downloaded the first time, reused after (a resumed
    `fkaggle auto SLUG`); a config of another competition there is refused."""
    config = Path(config or DEFAULT_CONFIG)
    if config.exists():
        existing = load_competition(config).slug
        if existing != slug:
            raise FkaggleError(
                f"holds the config of {existing or 'a competition without a slug'}, not "
                f"{slug}; pass --competition FILE, or download into another folder",
                config,
            )
        return config
    download_competition(slug, None, config)
    return config


MAX_RATIO = 200  # a member may expand at most this many times its compressed size (CSV of images: ~3-5x)


def extract(archive: Path, folder: Path, limit: int | None = None) -> list[str]:
    """Unpack a competition zip into `folder` under the members' base names (no path leaves it).
    Every declared size is checked before anything is written: each member and their total under
    the input limit, each member's expansion ratio under MAX_RATIO; members are streamed to disk,
    reading no more than they declared (a declared size can lie)."""
    limit = max_bytes() if limit is None else limit
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [i for i in zf.infolist() if not i.is_dir()]
            for info in members:
                name = Path(info.filename).name  # folders flattened: '../x.csv' lands in `folder` as x.csv
                if name in ("", ".", "..") or name.startswith("."):
                    raise DataError(f"zip member {info.filename!r} has no plain file name", archive)
                if info.file_size > limit:
                    raise DataError(
                        f"zip member {name} is {info.file_size:,} bytes, above the {limit:,}-byte limit", archive
                    )
                if info.file_size > (1 << 20) and info.file_size > MAX_RATIO * max(info.compress_size, 1):
                    raise DataError(
                        f"zip member {name} expands {info.file_size / max(info.compress_size, 1):,.0f}x "
                        f"({info.compress_size:,} -> {info.file_size:,} bytes), above {MAX_RATIO}x: "
                        "a decompression bomb?",
                        archive,
                    )
            total = sum(i.file_size for i in members)
            if total > limit:
                raise DataError(f"zip members total {total:,} bytes, above the {limit:,}-byte limit", archive)
            names = [Path(i.filename).name for i in members]
            if len(set(names)) != len(names):
                raise DataError("zip holds two files with the same name in different folders", archive)
            folder.mkdir(parents=True, exist_ok=True)
            for info, name in zip(members, names):
                _stream(zf, info, folder / name, archive)
    except zipfile.BadZipFile as exc:
        raise DataError(f"the download is not a readable zip ({exc})", archive) from None
    return names


def _stream(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, archive: Path) -> None:
    part = target.with_name(f".{target.name}.part")
    try:
        with zf.open(info) as src, part.open("wb") as dst:
            copied = 0
            while chunk := src.read(1 << 20):
                copied += len(chunk)
                if copied > info.file_size:
                    raise DataError(
                        f"zip member {target.name} holds more than its declared {info.file_size:,} bytes, refused",
                        archive,
                    )
                dst.write(chunk)
        part.replace(target)
    finally:
        part.unlink(missing_ok=True)


def recognise(paths: list[Path]) -> dict[str, Path]:
    """train / train_labels / test / test_labels / sample_submission, by file name."""
    data = [p for p in paths if p.name.lower().endswith(download_suffixes())]
    out: dict[str, Path] = {}
    for p in data:
        n = p.name.lower()
        labels = "label" in n
        if "sample" in n or "submission" in n:
            role = "sample_submission"
        elif "train" in n:
            role = "train_labels" if labels else "train"
        elif "test" in n or "t10k" in n:
            role = "test_labels" if labels else "test"
        else:
            continue
        if role in out:
            raise DataError(
                f"two candidates for the {role.replace('_', ' ')} file: {out[role].name} "
                f"and {p.name}; run `fkaggle init` with the ones to use",
                p.parent,
            )
        out[role] = p
    if "train" not in out:
        raise DataError(
            f"no training file among {', '.join(p.name for p in paths) or 'the download'}; "
            "run `fkaggle init --train FILE ...`",
            paths[0].parent if paths else None,
        )
    return out
