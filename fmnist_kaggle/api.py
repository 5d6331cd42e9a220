"""The Python API: the pipeline in a notebook, one function per step (docs/python.md).

    import fmnist_kaggle as fk
    comp = fk.load_competition()                                  # or fk.load_competition(X=X, y=y, X_test=X_test)
    run = fk.fold_train(comp, fk.build_config("cpu"), run="cpu")  # a Run: oof_logits, test_logits, cv
    result = fk.blend([run, other])                               # a BlendResult with an honest CV
    fk.make_submission(comp, [run, other], method="stack", name="mine")

Every function is a thin layer over the stage that does the work; what it returns is the
library's own object (a `Competition`, a `TrainConfig`, a `Run`, a `BlendResult`), and a run
trained here is the same run folder the CLI makes, so both can be mixed freely.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_kaggle import tracking
from fmnist_kaggle.console import BarSafeHandler
from fmnist_kaggle.data.competition import (
    Competition,
    competition_from_arrays,
    official_competition,
    resolve_competition,
)
from fmnist_kaggle.durations import parse_duration
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.evaluate import blend as blending
from fmnist_kaggle.evaluate import submission
from fmnist_kaggle.models import create_model, list_models, register_model
from fmnist_kaggle.models.registry import import_model
from fmnist_kaggle.reporting import write_report
from fmnist_kaggle.runs.driver import train_folds
from fmnist_kaggle.runs.executors import Executor
from fmnist_kaggle.runs.predict import predict_arrays
from fmnist_kaggle.runs.store import Run, list_runs, load_run
from fmnist_kaggle.search.autopilot import AutoSettings, run_auto
from fmnist_kaggle.storage.layout import Workspace
from fmnist_kaggle.training.config import TrainConfig
from fmnist_kaggle.training.config import build_config as _build_config

__all__ = [
    "Competition",
    "Run",
    "TrainConfig",
    "auto",
    "blend",
    "build_config",
    "create_model",
    "fold_train",
    "list_models",
    "list_runs",
    "load_competition",
    "load_run",
    "make_submission",
    "register_model",
    "report",
    "track",
]


@contextlib.contextmanager
def _progress(progress: bool) -> Iterator[None]:
    """With `progress`, the log lines the CLI prints (a line per fold, the autopilot's decisions)
    go to stderr whatever stderr is (a notebook, a pipe), unless the caller configured logging."""
    logger = logging.getLogger("fmnist_kaggle")
    printing = [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) in (sys.stderr, sys.stdout)
    ]
    if not progress or logger.handlers or printing:  # the caller's own logging prints them already
        yield
        return
    handler = BarSafeHandler()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _with_model(config: TrainConfig, model: str | Callable[..., Any] | None) -> TrainConfig:
    """`model`: a registered name, `timm:NAME`, `module:factory`, or your own factory (a callable
    `factory(num_classes=10, in_chans=1, **kwargs) -> nn.Module`, registered under its name)."""
    if model is None:
        return config
    if callable(model):
        name = register_model(model).__name__
        return replace(config, model=name, model_kwargs={}).validate()
    return replace(config, model=_trusted(str(model)), model_kwargs={}).validate()


def _trusted(model: str) -> str:
    """A `module:factory` named in Python is the user's own choice: imported and registered."""
    return import_model(model)


def load_competition(
    config: str | Path | None = None,
    *,
    train: str | Path | None = None,
    test: str | Path | None = None,
    sample_submission: str | Path | None = None,
    X: Any = None,
    y: Any = None,
    X_test: Any = None,
    y_test: Any = None,
    class_names: list[str] | tuple[str, ...] = (),
    **options: Any,
) -> Competition:
    """A competition: the official Fashion-MNIST (`"official"`: its IDX files found in
    $FKAGGLE_DATA or Debian's dataset-fashion-mnist, no config needed), a config file (default
    `competition/competition.toml` or `$FKAGGLE_COMPETITION`), data files (`train=`, `test=`, `sample_submission=`, and
    `format=`, `train_labels=`, `test_labels=`), or from arrays in memory (`X`, `y`, optional
    `X_test`, `y_test`): images (N, 28, 28) or (N, 784), 0..255 or 0..1; labels any integers,
    which submissions write back as given. Data is checked as it is loaded, with one clear error."""
    if X is not None:
        if config is not None or train is not None or test is not None:
            raise FkaggleError("load_competition: pass arrays (X, y, X_test) or files, not both")
        return competition_from_arrays(X, y, X_test, y_test, class_names, **options)
    if config == "official" and train is None and test is None:
        comp = official_competition()
        return comp if not class_names else _with_names(comp, class_names)
    comp = resolve_competition(config, train=train, test=test, sample_submission=sample_submission, **options)
    return comp if not class_names else _with_names(comp, class_names)


def _with_names(comp: Competition, class_names: list[str] | tuple[str, ...]) -> Competition:
    return replace(comp, class_names=tuple(class_names))


def build_config(recipe: str | None = None, config_file: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """A training config: a recipe (`cpu`, `strong`, `report000`..`report004`), then a TOML
    file's `[train]` table, then keyword overrides (any `TrainConfig` field: `epochs=4`,
    `model="lenet5"`, `model_kwargs={"width": 32}`...). Unknown fields and bad values raise."""
    if isinstance(overrides.get("model"), str):
        _trusted(overrides["model"])
    return _build_config(recipe=recipe, config_file=config_file, **overrides)


def fold_train(
    competition: Competition,
    config: TrainConfig | None = None,
    *,
    run: str | None = None,
    workdir: str | Path = ".",
    folds: list[int] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    executor: Executor | None = None,
    deadline: float | None = None,
    model: str | Callable[..., Any] | None = None,
) -> Run:
    """Stratified k-fold training of `config` (default: the default `TrainConfig`) on the
    competition: every (fold, seed) trained and recorded under `workdir/oof/RUN/`, resumed if it
    was interrupted, and returned as a `Run` with `oof_logits` (one held-out prediction per
    training row), fold-averaged `test_logits` and `cv` (accuracy and log-loss, overall and per
    fold). `folds` trains a shard only (then a `FkaggleError` says which folds are missing);
    `executor` trains units elsewhere (`fmnist_kaggle.runs.executors.make_executor("ray")`);
    `deadline` (a `time.monotonic()` value) starts no unit after it; `model`: another model for
    the config (a name, or your own factory: see docs/python.md). With `progress`, a line per fold
    on stderr (and bars where stderr is a terminal)."""
    with _progress(progress):
        manifest = train_folds(
            competition,
            _with_model(config or _build_config(), model),
            run=run,
            workdir=workdir,
            only_folds=folds,
            overwrite=overwrite,
            progress=progress,
            executor=executor,
            deadline=deadline,
        )
    if not manifest.get("complete"):
        raise FkaggleError(
            f"run {manifest.get('run')} is incomplete: folds {manifest.get('missing_folds')} "
            "missing (train them, then `load_run`)"
        )
    return load_run(manifest["run"], workdir)


def _runs(runs: list[Run | str], workdir: str | Path) -> list[Run]:
    return [r if isinstance(r, Run) else load_run(r, workdir) for r in runs]


def blend(
    runs: list[Run | str],
    method: str = "mean",
    *,
    workdir: str | Path = ".",
    space: str = "prob",
    temperature: bool = False,
    seed: int = 0,
) -> blending.BlendResult:
    """Blend finished runs (objects or names) with `method` (see `fkaggle blend --help`): OOF and
    test log-probabilities and a CV estimate, nested (fitted on k-1 folds) for fitted methods."""
    loaded = _runs(runs, workdir)
    if not loaded:
        raise FkaggleError("no runs to blend")
    return blending.blend(loaded, loaded[0].labels, method, space, temperature, seed)


def make_submission(
    competition: Competition,
    runs: list[Run | str],
    method: str = "mean",
    name: str = "submission",
    *,
    workdir: str | Path = ".",
    space: str = "prob",
    temperature: bool = False,
) -> dict[str, Any]:
    """Write `workdir/submissions/NAME.csv` (validated against the competition's layout) and its
    record `NAME.json` from one run or a blend; returns the record (CV, and test accuracy where
    the competition knows the test labels)."""
    names = [r.name if isinstance(r, Run) else r for r in runs]
    return submission.make_submission(competition, names, method, name, workdir, space=space, temperature=temperature)


def auto(
    competition: Competition,
    time_limit: str | float = "20m",
    name: str = "auto",
    *,
    workdir: str | Path = ".",
    executor: Executor | None = None,
    progress: bool = False,
    **settings: Any,
) -> dict[str, Any]:
    """`fkaggle auto`: the portfolio's runs sized to `time_limit` ('20m', '90s' or seconds), the
    honest choice among runs and blends, `submissions/NAME.csv` and the leaderboard. Resumable.
    Every option of the command: `folds`, `subset`, `device`, `amp`, `portfolio`, `frontier`,
    `submit_message` (upload the choice; with `slug`); see `AutoSettings`."""
    seconds = parse_duration(time_limit) if isinstance(time_limit, str) else float(time_limit)
    chosen = AutoSettings(seconds, name, workdir=workdir, progress=progress, **settings)
    with _progress(progress):
        return run_auto(competition, chosen, executor)


@dataclass(frozen=True)
class Predictions:
    """What `predict` gives: class probabilities (N, K), the class values as the training labels
    wrote them, and each row's most likely class value."""

    proba: np.ndarray
    classes: tuple

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self.classes, dtype=object)[self.proba.argmax(axis=1)]


def predict(
    runs: Run | str | list[Run | str], images: Any, *, workdir: str | Path = ".", device: str = "auto"
) -> Predictions:
    """New images as arrays (uint8 0..255 or floats 0..1; (N, 28, 28), (N, 784) or (N, 28, 28, 1))
    through a finished run's fold models (its own test-time views; several runs: their
    probabilities averaged): the same numbers `fkaggle predict` writes. Bad arrays: `DataError`."""
    refs = runs if isinstance(runs, list) else [runs]
    proba, classes = predict_arrays(refs, images, workdir, device)
    return Predictions(proba, classes)


def report(workdir: str | Path = ".", out: str | Path | None = None) -> dict[str, Any]:
    """`fkaggle report`: the workspace on one self-contained HTML page (default `oof/report.html`)."""
    return write_report(workdir, out)


def track(uri: str | None = None, workdir: str | Path = ".") -> str:
    """Turn MLflow tracking on for this process (`--track`): `uri`, else `$FKAGGLE_TRACKING_URI` /
    `$MLFLOW_TRACKING_URI`, else the workspace's `mlflow.db`. Returns the store's URI."""
    ws = Workspace(workdir)
    return tracking.enable(uri, ws.tracking_db, ws.tracking_artifacts)
