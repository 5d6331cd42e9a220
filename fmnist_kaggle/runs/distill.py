"""Honest distillation (born-again networks, Furlanello et al. 2018): fold k's student learns, beside
its labels, the soft predictions of the teacher run's fold-k model on fold k's own training rows.

That model trained on exactly those rows and never saw fold k's held-out rows, so the student's
fold-k OOF predictions stay honest. The teacher's other fold models trained on fold k's held-out
rows: they are never read for fold k (nor its OOF logits, which they made).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.runs.identity import require_same
from fmnist_kaggle.runs.store import build_fold_model, predicted_from, read_fold_model
from fmnist_kaggle.runs.trainset import Teacher
from fmnist_kaggle.storage.layout import Workspace
from fmnist_kaggle.training.config import build_config

SAME = ("data_fingerprint", "folds_fingerprint")  # a teacher's fold k must hold out the student's fold k


def load_teacher(ws: Workspace, name: str, identity: dict[str, Any], folds: int) -> Teacher:
    """The teacher run's fold models (verified weight files, each fold's seeds), from a run of the
    same training rows and folds as the student; refused in one line otherwise."""
    rd = ws.find_run(name)
    m = rd.read_manifest()
    if predicted_from(m):
        raise FkaggleError(f"distillation teacher {name} is a prediction of {predicted_from(m)}: distil from that run")
    require_same([("this run", identity), (name, m["identity"])], keys=SAME, role="distillation teacher")
    digest, models = hashlib.sha256(), {}
    paths = {k: tuple(rd.fold(k).seed_model(seed) for seed in m["seeds"]) for k in range(folds)}
    for k in range(folds):
        try:
            models[k] = tuple(read_fold_model(rd, m, k, seed) for seed in m["seeds"])
        except FkaggleError as exc:
            raise FkaggleError(f"distillation teacher {name} has no finished fold {k}: {exc}") from None
        for seed, weights in zip(m["seeds"], models[k]):
            digest.update(f"{k}/{seed}/".encode() + hashlib.sha256(weights).digest())
    return Teacher(name, digest.hexdigest(), m, models, paths)


def teacher_logits(teacher: Teacher, fold: int, images: np.ndarray, device: str) -> np.ndarray:
    """The teacher's fold-`fold` model(s) on uint8 images (its own test-time views, fp32), the seeds
    averaged: the soft targets of fold `fold`'s training rows."""
    import torch

    from fmnist_kaggle.training.device import resolve_device
    from fmnist_kaggle.training.inference import predict

    m = teacher.manifest
    cfg = build_config(**{**m["config"], "device": device})
    dev = resolve_device(device)
    x = torch.from_numpy(np.ascontiguousarray(images))
    weights = zip(teacher.models[fold], teacher.paths[fold], strict=True)
    per_seed = [predict(build_fold_model(m, w, path).to(dev), x, cfg, dev) for w, path in weights]
    return np.mean(per_seed, axis=0).astype(np.float32)
