"""Competition configs: where the data is and what a submission looks like.

A competition is a TOML file (default `competition/competition.toml`, or `--competition`
/ `$FKAGGLE_COMPETITION`). Explicit `--train/--test/...` paths override it, so a user
can point at files without writing a config. See docs/artifacts.md for the keys.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
import tomli_w

from fmnist_kaggle.data.formats import check_format
from fmnist_kaggle.data.images import ImageSet, check_pair, from_arrays, load_images
from fmnist_kaggle.errors import DataError, FkaggleError
from fmnist_kaggle.storage import atomic, files
from fmnist_kaggle.storage.tomlfile import read_table

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path("competition/competition.toml")
OFFICIAL_CONFIG = Path(__file__).with_name(
    "official.toml"
)  # `fkaggle init --official`; the repository's competition/ holds the same file
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
_PATH_KEYS = ("train", "train_labels", "test", "test_labels", "sample_submission")


@dataclass(frozen=True)
class Competition:
    name: str = "custom"
    slug: str | None = None  # Kaggle competition slug
    format: str = "auto"
    train: Path | None = None
    train_labels: Path | None = None  # separate labels file (IDX / X,y .npy); guessed when absent
    test: Path | None = None
    test_labels: Path | None = None  # known test truth, for offline scoring
    sample_submission: Path | None = None
    id_column: str = "Id"
    label_column: str = "Label"
    class_names: tuple[str, ...] = ()
    config_path: Path | None = None
    data_dirs: tuple[str, ...] = field(default=(), repr=False)

    # ---------------------------------------------------------------- loading
    @cached_property
    def train_set(self) -> ImageSet:
        if self.train is None:
            raise FkaggleError("no training file: pass --train PATH or a competition config with `train`")
        data = load_images(self.train, self.format, self.train_labels)
        if data.labels is None:
            raise DataError("training file has no labels (expected a label/target column or a labels file)", self.train)
        return data

    @cached_property
    def test_set(self) -> ImageSet | None:
        if self.test is None:
            return None
        values = self.train_set.label_values
        data = load_images(self.test, self.format, self.test_labels, label_values=values)
        check_pair(self.train_set, data)
        return data

    def require_slug(self, slug: str | None = None) -> str:
        """The Kaggle slug to talk to: an explicit one, else the config's."""
        slug = slug or self.slug
        if not slug:
            raise FkaggleError("no Kaggle competition slug: pass --slug or set `slug` in the competition config")
        return slug

    def class_name(self, index: int) -> str:
        if len(self.class_names) == self.train_set.num_classes:
            return self.class_names[index]
        if self.train_set.num_classes == 10 and self.train_set.label_values == tuple(range(10)):
            return FASHION_MNIST_CLASSES[index]
        return str(self.train_set.label_values[index])

    @property
    def names(self) -> list[str]:
        return [self.class_name(i) for i in range(self.train_set.num_classes)]

    def to_toml(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.slug:
            out["slug"] = self.slug
        out["format"] = self.format
        for key in _PATH_KEYS:
            value = getattr(self, key)
            if value is not None:
                out[key] = str(value)
        out["id_column"] = self.id_column
        out["label_column"] = self.label_column
        if self.class_names:
            out["class_names"] = list(self.class_names)
        return {"competition": out}


def _resolve(value: str, base: Path, data_dirs: tuple[str, ...]) -> Path:
    """A relative path is looked up in each data dir in turn; the first that has it wins."""
    path = Path(os.path.expanduser(value))
    if path.is_absolute():
        return path
    roots = []
    for d in data_dirs or ("",):
        expanded = os.path.expandvars(d)
        if "$" in expanded:  # an unset variable: skip this entry
            continue
        root = Path(os.path.expanduser(expanded))
        roots.append(root if root.is_absolute() else base / root)
    for root in roots:
        if (root / path).exists():
            return root / path
    return (roots[0] if roots else base) / path


def _check_types(table: dict[str, Any], path: Path) -> None:
    """Every key of a competition config holds what it names: text, or a list of text."""
    for key, value in table.items():
        lists = key in ("data_dirs", "class_names")
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value) if lists else isinstance(value, str)
        if not ok:
            raise FkaggleError(f"{key} must be {'a list of text values' if lists else 'text'}, got {value!r}", path)


def load_competition(path: str | Path, base: Path | None = None) -> Competition:
    """A competition config; its relative paths are found from `base` (default: the config's folder)."""
    path = Path(path)
    table = read_table(
        path, "competition", {f for f in Competition.__dataclass_fields__ if f != "config_path"}, "competition config"
    )
    _check_types(table, path)
    data_dirs = tuple(table.get("data_dirs", ("",)))
    kw: dict[str, Any] = {k: v for k, v in table.items() if k not in _PATH_KEYS and k != "data_dirs"}
    for key in _PATH_KEYS:
        if table.get(key):
            kw[key] = _resolve(table[key], path.parent if base is None else base, data_dirs)
    if "class_names" in kw:
        kw["class_names"] = tuple(kw["class_names"])
    check_format(kw.get("format", "auto"), path)
    return Competition(config_path=path, data_dirs=data_dirs, **kw)


def resolve_competition(
    competition: str | Path | None = None,
    train: str | Path | None = None,
    test: str | Path | None = None,
    sample_submission: str | Path | None = None,
    format: str | None = None,
    train_labels: str | Path | None = None,
    test_labels: str | Path | None = None,
) -> Competition:
    """The competition a command works on: config file, then explicit paths on top."""
    config = competition or os.environ.get("FKAGGLE_COMPETITION")
    if config:
        comp = load_competition(config)
    elif DEFAULT_CONFIG.exists():
        comp = load_competition(DEFAULT_CONFIG)
    elif train is not None:
        comp = Competition()
    else:
        raise FkaggleError(
            f"no competition config at {DEFAULT_CONFIG}: pass --competition FILE or "
            "--train PATH (or `fkaggle init --official` for the official Fashion-MNIST)"
        )
    overrides = {
        "train": train,
        "test": test,
        "sample_submission": sample_submission,
        "train_labels": train_labels,
        "test_labels": test_labels,
    }
    kw: dict[str, Any] = {k: Path(v) if v != "" else None for k, v in overrides.items() if v is not None}  # "": none
    if train is not None and train_labels is None:
        kw["train_labels"] = None  # the config's labels belong to the config's train file
    if train is not None and not _same_file(comp.train, Path(train)):
        kw["class_names"] = ()  # and its class names: these files name their classes themselves
    if test is not None and test_labels is None:
        kw["test_labels"] = None
    if (
        test is not None
        and sample_submission is None
        and comp.sample_submission is not None
        and not _same_file(comp.test, kw["test"])
    ):
        # the config's sample lists the config's test ids: keep its header, take the rows from the new test file
        columns = list(read_sample_submission(comp).columns)
        kw.update(sample_submission=None, id_column=columns[0], label_column=columns[1])
    if format is not None:
        kw["format"] = format
    return replace(comp, **kw) if kw else comp


def _same_file(a: Path | None, b: Path | None) -> bool:
    try:
        return a is not None and b is not None and a.resolve() == b.resolve()
    except OSError:
        return False


def init_competition(
    paths: dict[str, Path | None],
    target: str | Path = DEFAULT_CONFIG,
    name: str = "custom",
    slug: str | None = None,
    format: str = "auto",
    force: bool = False,
) -> tuple[Competition, dict[str, Any]]:
    """A competition config from files it has loaded and checked (`fkaggle init`, `download`):
    `paths` maps train / train_labels / test / test_labels / sample_submission to files.
    Returns the competition and its `summary`; nothing is written unless every file loads."""
    target = Path(target)
    comp = Competition(
        name=name, slug=slug, format=format, **{k: Path(v).resolve() for k, v in paths.items() if v is not None}
    )
    if comp.sample_submission is not None:  # submission columns come from the sample
        cols = list(read_sample_submission(comp).columns)
        comp = replace(comp, id_column=cols[0], label_column=cols[1])
    values = comp.train_set.label_values
    if any(isinstance(v, str) for v in values):  # labels given as words: the class order, recorded
        comp = replace(comp, class_names=tuple(str(v) for v in values))
    info = summary(comp)
    _may_write(target, tomli_w.dumps(comp.to_toml()), force)
    write_config(comp, target)
    return comp, info


def _may_write(target: Path, text: str, force: bool) -> None:
    """A config may replace nothing, itself, or the official config a fresh clone ships (what
    `init --official` writes back); anything else only with --force."""
    if force or not target.exists():
        return
    old = files.read_text(target, "competition config", limit=1 << 20)
    if old == text or old == files.read_text(OFFICIAL_CONFIG, "official competition config"):
        if old != text:
            log.info(
                f"{target}: replacing the official Fashion-MNIST config (`fkaggle init --official` writes it back)"
            )
        return
    raise FkaggleError("exists (another competition's config); pass --force to replace it", target)


def init_official(target: str | Path = DEFAULT_CONFIG, force: bool = False) -> tuple[Competition, dict[str, Any]]:
    """The official Fashion-MNIST config (shipped with the package) written to `target`, once
    its four IDX files are found where it looks: $FKAGGLE_DATA, `data/` beside the config,
    Debian's dataset-fashion-mnist folder."""
    target = Path(target)
    comp = replace(official_competition(target.parent), config_path=target)
    info = summary(comp)
    text = files.read_text(OFFICIAL_CONFIG, "official competition config")
    _may_write(target, text, force)
    atomic.write_text(target, text)
    return comp, info


def official_competition(base: str | Path = ".") -> Competition:
    """The official Fashion-MNIST (60,000 + 10,000 IDX images) from the packaged config: its files
    are looked for in $FKAGGLE_DATA, `base`/data and Debian's dataset-fashion-mnist folder."""
    base = Path(base)
    comp = load_competition(OFFICIAL_CONFIG, base=base)
    if comp.train is None or not comp.train.is_file():
        raise FkaggleError(
            f"the official Fashion-MNIST files are not in $FKAGGLE_DATA, {base / 'data'} "
            "or /usr/share/datasets/fashion-mnist: "
            "sudo apt-get install dataset-fashion-mnist, or set FKAGGLE_DATA to the "
            "folder holding the four IDX .gz files"
        )
    return comp


def write_config(comp: Competition, target: str | Path) -> Path:
    """Write a competition config (TOML) atomically; paths stay as given."""
    target = Path(target)
    atomic.write_text(target, tomli_w.dumps(comp.to_toml()))
    return target


def summary(comp: Competition) -> dict[str, Any]:
    """What `fkaggle data check` prints: rows, classes, pixel range, ids, formats."""
    train = comp.train_set
    test = comp.test_set
    out: dict[str, Any] = {
        "competition": comp.name,
        "config": str(comp.config_path) if comp.config_path else None,
        "train": {
            "path": str(train.path),
            "format": train.format,
            "rows": len(train),
            "classes": train.num_classes,
            "label_values": list(train.label_values),
            "class_counts": {comp.class_name(i): c for i, c in enumerate(train.class_counts().values())},
            "pixel_dtype": str(train.images.dtype),
            "pixel_range": [int(train.images.min()), int(train.images.max())],
            "stored_scale": train.source_scale,
            "fingerprint": train.fingerprint()[:16],
        },
    }
    if test is not None:
        out["test"] = {
            "path": str(test.path),
            "format": test.format,
            "rows": len(test),
            "id_column": test.id_column,
            "ids_synthesized": test.ids_synthesized,
            "has_labels": test.labels is not None,
            "pixel_range": [int(test.images.min()), int(test.images.max())],
            "stored_scale": test.source_scale,
        }
    if comp.sample_submission is not None:
        sample = read_sample_submission(comp)
        out["sample_submission"] = {
            "path": str(comp.sample_submission),
            "columns": list(sample.columns),
            "rows": len(sample),
        }
    return out


def read_sample_submission(comp: Competition) -> pd.DataFrame:
    """The competition's sample submission (2 columns: id, label), all values as text."""
    path = comp.sample_submission
    if path is None:
        raise FkaggleError("the competition has no sample submission")
    text = files.read_text(path, "sample submission", limit=256 << 20)
    try:
        df = pd.read_csv(io.StringIO(text.lstrip("\ufeff")), dtype=str, keep_default_na=False)
    except Exception as exc:
        raise FkaggleError(f"cannot read sample submission ({str(exc).splitlines()[0]})", path) from None
    if df.shape[1] != 2:
        raise FkaggleError(f"sample submission has {df.shape[1]} columns, expected 2 (id, label)", path)
    return df


def competition_from_arrays(
    images: Any,
    labels: Any,
    test_images: Any = None,
    test_labels: Any = None,
    class_names: tuple[str, ...] | list[str] = (),
    name: str = "in-memory",
    slug: str | None = None,
) -> Competition:
    """A competition on arrays in memory (a notebook's X, y, X_test), checked as files are:
    it trains, blends and writes submissions like one read from files (test ids 1..N)."""
    train = from_arrays(images, labels)
    if train.labels is None:
        raise DataError("training arrays need labels", train.path)
    test = None if test_images is None else from_arrays(test_images, test_labels, label_values=train.label_values)
    comp = Competition(name=name, slug=slug, class_names=tuple(class_names))
    comp.__dict__.update(train_set=train, test_set=test)  # given, not loaded: fills the cached properties
    return comp
