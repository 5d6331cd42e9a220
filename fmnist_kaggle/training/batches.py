"""The training rows of a fold served as batches, one epoch at a time, augmented.

The fast path keeps a fold's uint8 images on the training device (a fold of Fashion-MNIST is
~40 MB) and augments a batch at a time with tensor ops (`augment.BatchAugment`): no DataLoader
workers, no per-sample Python. Custom pipelines go through albumentations, per sample. Every
epoch's order and augmentation follow from its seed (and epoch: the alternating flip), so an
epoch resumed from a checkpoint sees exactly the batches the uninterrupted epoch saw.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from fmnist_kaggle.training.augment import (
    AlbumentationsDataset,
    BatchAugment,
    albumentations_pipeline,
    alternating_flips,
)
from fmnist_kaggle.training.config import TrainConfig, per_sample_pipeline
from fmnist_kaggle.training.inference import normalize, to_float


@dataclass
class Batches:
    """The training rows of a fold, served as (inputs, labels) batches for one epoch at a time."""

    epoch_batches: Callable[[int, int], Iterator[tuple[torch.Tensor, torch.Tensor]]]  # (seed, epoch) -> batches
    steps_per_epoch: int


def make_batches(
    cfg: TrainConfig,
    x: np.ndarray,
    y: np.ndarray,
    device: torch.device,
    w: np.ndarray | None = None,
    t: np.ndarray | None = None,
) -> Batches:
    """(inputs, labels) batches, or (inputs, labels, weights, teacher logits) when per-sample
    weights or a teacher's logits are given (either may be None); a batch larger than the rows
    takes them all."""
    batch_size, steps = min(cfg.batch_size, len(x)), cfg.steps_per_epoch(len(x))
    if per_sample_pipeline(cfg):
        ds = AlbumentationsDataset(
            np.asarray(x), np.asarray(y), albumentations_pipeline(cfg.augment, cfg.augment_pipeline)
        )

        def albu(seed: int, epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            gen = torch.Generator().manual_seed(seed)
            loader = torch.utils.data.DataLoader(
                ds, batch_size=batch_size, shuffle=True, drop_last=True, generator=gen, num_workers=cfg.num_workers
            )
            return (
                (normalize(xb.to(device, non_blocking=True), cfg), yb.to(device, non_blocking=True))
                for xb, yb in loader
            )

        return Batches(albu, steps)
    # the fast path: the fold's uint8 images live on the training device
    augment = BatchAugment(cfg.augment)
    xs = torch.from_numpy(np.require(x, requirements=["C", "W"])).to(
        device
    )  # a read-only array (np.frombuffer, Ray) is copied
    ys = torch.from_numpy(np.asarray(y, dtype=np.int64)).to(device)
    ws = torch.from_numpy(np.asarray(w, dtype=np.float32)).to(device) if w is not None else None
    ts = torch.from_numpy(np.asarray(t, dtype=np.float32)).to(device) if t is not None else None
    extras = ws is not None or ts is not None
    gen = torch.Generator(device=device)
    # the alternating flip's first-epoch mask: drawn once per unit (the global generator is seeded per unit)
    first_flip = torch.rand(len(xs), device=device) < 0.5 if augment.alternating else None

    def fast(seed: int, epoch: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
        gen.manual_seed(seed)
        perm = torch.randperm(len(xs), generator=gen, device=device)[: steps * batch_size].view(steps, batch_size)
        flips = alternating_flips(first_flip, epoch) if first_flip is not None else None
        return (
            (
                normalize(augment(to_float(xs[idx]), gen, flips[idx] if flips is not None else None), cfg),
                ys[idx],
                *((_rows(ws, idx), _rows(ts, idx)) if extras else ()),
            )
            for idx in perm
        )

    return Batches(fast, steps)


def _rows(a: torch.Tensor | None, idx: torch.Tensor) -> torch.Tensor | None:
    return a[idx] if a is not None else None
