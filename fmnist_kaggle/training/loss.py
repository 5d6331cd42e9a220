"""The training loss (softmax cross-entropy or report 003's one-vs-all sigmoid, label smoothing,
per-sample weights for pseudo-labelled rows, a teacher's soft targets) and the batch mixer (timm's mixup / cutmix)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from fmnist_kaggle.training.config import TrainConfig


def loss_fn(
    cfg: TrainConfig,
    logits: torch.Tensor,
    y: torch.Tensor,
    weight: torch.Tensor | None = None,
    teacher: torch.Tensor | None = None,
) -> torch.Tensor:
    """Hard labels (N,), or soft targets (N, K) from mixup/cutmix (already smoothed);
    `weight`: per-sample loss weights (pseudo-labelled rows); `teacher`: a teacher's logits for
    the same rows, mixed in with `distill_weight` (Hinton et al.: KL at temperature T, times T^2
    so its gradients keep their scale as T changes)."""
    logits = logits.float()
    per = _label_loss(cfg, logits, y)
    if teacher is not None:
        temp, share = cfg.distill_temperature, cfg.distill_weight
        kl = F.kl_div(
            F.log_softmax(logits / temp, 1), F.log_softmax(teacher.float() / temp, 1), reduction="none", log_target=True
        ).sum(1)
        per = (1 - share) * per + share * temp**2 * kl
    return (per * weight).mean() if weight is not None else per.mean()


def _label_loss(cfg: TrainConfig, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each row's loss against its label (or its soft target)."""
    if y.dim() == 2:
        if cfg.loss == "sigmoid":
            return F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(1)
        return F.cross_entropy(logits, y, reduction="none")
    if cfg.loss == "sigmoid":  # one-vs-all BCE, as compared in report 003
        k = logits.shape[1]
        target = F.one_hot(y, k).float() * (1 - cfg.label_smoothing) + cfg.label_smoothing / k
        return F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(1)
    return F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing, reduction="none")


def make_mixer(cfg: TrainConfig, num_classes: int) -> Any:
    """timm's Mixup (per-sample mixup and/or cutmix with label smoothing), or None."""
    if not (cfg.mixup or cfg.cutmix):
        return None
    from timm.data import Mixup

    return Mixup(
        mixup_alpha=cfg.mixup,
        cutmix_alpha=cfg.cutmix,
        prob=1.0,
        switch_prob=0.5,
        mode="elem",
        label_smoothing=cfg.label_smoothing,
        num_classes=num_classes,
    )
