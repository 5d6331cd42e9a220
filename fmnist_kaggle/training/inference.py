"""Inference: uint8 images to normalized batches, test-time views (flip, shifts), logits
averaged over the views, and validation loss/accuracy."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from fmnist_kaggle import metrics
from fmnist_kaggle.training.config import TrainConfig
from fmnist_kaggle.training.device import _autocast
from fmnist_kaggle.training.engine import fold_batchnorm, keep_freed_memory

MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST train pixel statistics on the 0..1 scale


def normalize(x: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """Float images in [0, 1] -> model inputs (standardized when cfg.normalize)."""
    return (x - MEAN) / STD if cfg.normalize else x


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 (N,28,28) -> float (N,1,28,28) in [0,1]."""
    return x.unsqueeze(1).float().div_(255.0)


def _to_model(x: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if cfg.channels_last else x


def eval_batches(
    images: torch.Tensor, cfg: TrainConfig, device: torch.device, batch: int | None = None
) -> Iterator[torch.Tensor]:
    """uint8 images (N,28,28) as normalized float batches on the device, in order (no augmentation);
    `batch` images a batch (default cfg.eval_batch_size; 0 there means 1024)."""
    batch = batch or cfg.eval_batch_size or 1024
    for i in range(0, len(images), batch):
        yield normalize(to_float(images[i : i + batch].to(device, non_blocking=True)), cfg)


def shift(x: torch.Tensor, dy: int, dx: int, fill: float) -> torch.Tensor:
    """Images moved by (dy, dx) pixels (down, right), the uncovered border filled with `fill`."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)), value=fill)
    return padded[..., max(-dy, 0) : max(-dy, 0) + h, max(-dx, 0) : max(-dx, 0) + w]


def tta_views(x: torch.Tensor, cfg: TrainConfig) -> list[torch.Tensor]:
    """The test-time views of a normalized batch: itself, its mirror (cfg.tta), and each of
    those shifted by cfg.tta_shift pixels up, down, left and right (background-filled)."""
    views = [x, x.flip(-1)] if cfg.tta else [x]
    s = cfg.tta_shift
    if s:
        fill = float(normalize(torch.zeros(()), cfg))
        views += [shift(v, dy, dx, fill) for v in views for dy, dx in ((-s, 0), (s, 0), (0, -s), (0, s))]
    return views


def prediction_batch(model: torch.nn.Module, images: torch.Tensor, cfg: TrainConfig, device: torch.device) -> int:
    """Images a forward pass takes (all test-time views counted): cfg.eval_batch_size, or with 0
    (automatic) the largest batch whose activations fit this CPU's cache (training.engine)."""
    if cfg.eval_batch_size:
        return cfg.eval_batch_size
    from fmnist_kaggle.training.engine import auto_eval_batch

    sample = _to_model(normalize(to_float(images[:2].to(device)), cfg), cfg)
    return auto_eval_batch(model, sample, device)


@torch.inference_mode()
def predict(
    model: torch.nn.Module,
    images: torch.Tensor,
    cfg: TrainConfig,
    device: torch.device,
    dtype: torch.dtype | None = None,
) -> np.ndarray:
    """Logits for uint8 images (N,28,28), averaged (in logit space) over the TTA views; the views of
    a batch go through the model as one batch."""
    keep_freed_memory()
    model.eval()
    if cfg.channels_last:  # a model loaded from its file is contiguous: 2x slower on channels_last inputs
        model.to(memory_format=torch.channels_last)
    n_views = views_per_image(cfg)
    per_pass = max(1, prediction_batch(model, images, cfg, device) // n_views)
    if device.type == "cpu":
        model = fold_batchnorm(model)
    out = []
    for x in eval_batches(images, cfg, device, per_pass):
        with _autocast(device, dtype):
            views = tta_views(x, cfg)
            both = torch.cat(views) if len(views) > 1 else views[0]
            logits = model(_to_model(both, cfg)).float().view(len(views), len(x), -1).mean(0)
        out.append(logits.cpu())
    return torch.cat(out).numpy().astype(np.float32)


def views_per_image(cfg: TrainConfig) -> int:
    """Test-time views of each image: itself, its mirror (tta), and four shifts of each (tta_shift)."""
    return (2 if cfg.tta else 1) * (5 if cfg.tta_shift else 1)


def evaluate(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: np.ndarray,
    cfg: TrainConfig,
    device: torch.device,
    dtype: torch.dtype | None,
) -> tuple[float, float]:
    """Validation loss and accuracy."""
    return scores(predict(model, images, cfg, device, dtype), labels)


def scores(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Log-loss (clipped like Kaggle's, the same number the fold and run lines give) and accuracy."""
    labels = np.asarray(labels, dtype=np.int64)
    return metrics.log_loss(logits, labels), metrics.accuracy(logits, labels)
