"""Honest distillation (born-again networks, Furlanello et al. 2018): fold k's student learns, beside
its labels, the soft predictions of the teacher run's fold-k model on fold k's own training rows
(read by `fold_models`: that model never saw fold k's held-out rows, so the student's fold-k OOF
predictions stay honest).
"""

from __future__ import annotations

import numpy as np

from fmnist_kaggle.runs.store import build_fold_model
from fmnist_kaggle.runs.trainset import FoldModels
from fmnist_kaggle.training.config import build_config


def teacher_logits(teacher: FoldModels, fold: int, images: np.ndarray, device: str) -> np.ndarray:
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
