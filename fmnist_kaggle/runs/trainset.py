"""What every (fold, seed) unit of a run trains on: the rows, the folds, the identity they are
recorded under, (with --pseudo-label) the teachers' per-fold test labels, (with --distill-from)
the teacher's fold models and (with --init-from) the fold models each unit starts from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_kaggle.data.competition import Competition
from fmnist_kaggle.data.folds import stratified_subset
from fmnist_kaggle.data.images import ImageSet
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.training.config import TrainConfig


@dataclass(frozen=True)
class PseudoLabels:
    """Per fold: the test rows whose teacher confidence reaches the threshold, and their labels."""

    teachers: tuple[str, ...]
    fingerprint: str  # SHA-256 over the teachers' recorded fold test logits
    rows: dict[int, np.ndarray]
    labels: dict[int, np.ndarray]

    def record(self, threshold: float, weight: float) -> dict[str, Any]:
        return {
            "teachers": list(self.teachers),
            "threshold": threshold,
            "weight": weight,
            "teacher_fingerprint": self.fingerprint,
            "rows_per_fold": {str(k): int(len(r)) for k, r in self.rows.items()},
        }


@dataclass(frozen=True)
class FoldModels:
    """An earlier run's fold models, as a distillation teacher or a continuation's start: its
    run's record and, per fold, its seeds' verified weight files (bytes travel to wherever a unit
    trains)."""

    name: str
    fingerprint: str  # SHA-256 over its fold models' weights
    manifest: dict[str, Any]
    models: dict[int, tuple[bytes, ...]]
    paths: dict[int, tuple[Path, ...]]  # where each came from (named when one is not the model's)

    def record(self, role: str = "teacher") -> dict[str, Any]:
        return {role: self.name, f"{role}_fingerprint": self.fingerprint}


@dataclass
class TrainingData:
    """What every (fold, seed) unit of a run trains on, and the identity it is recorded under."""

    train: ImageSet
    test: ImageSet | None
    fold_of: np.ndarray
    identity: dict[str, Any]  # data/folds/test fingerprints and the semantic config
    pseudo: PseudoLabels | None = None  # --pseudo-label: per fold, test rows and their teacher labels
    teacher: FoldModels | None = None  # --distill-from: the teacher run's fold models
    start: FoldModels | None = None  # --init-from: the run whose fold-k model fold k starts from

    def split(self, fold: int) -> tuple[np.ndarray, np.ndarray]:
        return np.flatnonzero(self.fold_of != fold), np.flatnonzero(self.fold_of == fold)


def training_rows(comp: Competition, cfg: TrainConfig) -> ImageSet:
    """The competition's training rows a run with this config trains on (all, or its --subset)."""
    train = comp.train_set
    if cfg.subset:
        need = cfg.folds * train.num_classes
        if cfg.subset < need:
            raise FkaggleError(
                f"--subset {cfg.subset} is too small: {cfg.folds}-fold stratified CV of "
                f"{train.num_classes} classes needs at least {need} rows"
            )
        train = train.subset(stratified_subset(train.labels, cfg.subset, cfg.fold_seed))
    return train
