"""An earlier run's fold models, read for a run that learns from them: a distillation teacher
(`--distill-from`) or the run a continuation starts from (`--init-from`).

Either way fold k reads only the earlier run's fold-k model(s): they trained on exactly fold k's
training rows and never saw its held-out rows, so fold k's OOF predictions stay honest. The other
folds' models trained on fold k's held-out rows and are never read for it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.runs.identity import require_same
from fmnist_kaggle.runs.store import predicted_from, read_fold_model
from fmnist_kaggle.runs.trainset import FoldModels
from fmnist_kaggle.storage.artifacts import torch_load
from fmnist_kaggle.storage.layout import Workspace
from fmnist_kaggle.training.config import TrainConfig

SAME = ("data_fingerprint", "folds_fingerprint")  # the earlier run's fold k must hold out this run's fold k


def load_fold_models(ws: Workspace, name: str, identity: dict[str, Any], folds: int, role: str) -> FoldModels:
    """The run's fold models (verified weight files, each fold's seeds), from a run of the same
    training rows and folds as this one; refused in one line otherwise. `role` names it in errors."""
    rd = ws.find_run(name)
    m = rd.read_manifest()
    if predicted_from(m):
        raise FkaggleError(f"{role} {name} is a prediction of {predicted_from(m)}: name that run")
    require_same([("this run", identity), (name, m["identity"])], keys=SAME, role=role)
    digest, models = hashlib.sha256(), {}
    paths = {k: tuple(rd.fold(k).seed_model(seed) for seed in m["seeds"]) for k in range(folds)}
    for k in range(folds):
        try:
            models[k] = tuple(read_fold_model(rd, m, k, seed) for seed in m["seeds"])
        except FkaggleError as exc:
            raise FkaggleError(f"{role} {name} has no finished fold {k}: {exc}") from None
        for seed, weights in zip(m["seeds"], models[k]):
            digest.update(f"{k}/{seed}/".encode() + hashlib.sha256(weights).digest())
    return FoldModels(name, digest.hexdigest(), m, models, paths)


def load_start(ws: Workspace, cfg: TrainConfig, identity: dict[str, Any]) -> FoldModels:
    """The run a continuation starts from: the same data, folds and model (architecture and
    settings) and one seed per fold, so each unit's weights load exactly."""
    start = load_fold_models(ws, cfg.init_from, identity, cfg.folds, "the run to continue (--init-from)")
    theirs = start.manifest["config"]
    if (theirs.get("model"), theirs.get("model_kwargs") or {}) != (cfg.model, cfg.model_kwargs):
        raise FkaggleError(
            f"--init-from {cfg.init_from}: it trained {theirs.get('model')} {theirs.get('model_kwargs') or {}}, "
            f"this run trains {cfg.model} {cfg.model_kwargs}: a continuation keeps the model"
        )
    if len(start.manifest["seeds"]) != 1:
        raise FkaggleError(
            f"--init-from {cfg.init_from}: it has {len(start.manifest['seeds'])} seeds a fold; continue a run of one"
        )
    return start


def start_state(start: FoldModels, fold: int) -> dict[str, Any]:
    """Fold `fold`'s starting weights: the earlier run's fold-`fold` model (tensors only)."""
    return torch_load(start.models[fold][0], start.paths[fold][0])
