"""What each training step of a run costs, relative to a full-cost step: the time model's unit.

Progressive resizing (FFCV, fast.ai's DAWNBench entries): the first steps of a run train on
smaller images, which cost fewer FLOPs, and the run ends at full size, where it predicts. And once
some parameters stop training (the whitening stem's bias after 30% of the steps), autograd skips
the gradients only they needed: a later step costs less (`late_work`).

The side at a step follows from the step alone (its share of the run's steps), so an epoch
resumed from its checkpoint trains at the sizes the uninterrupted epoch did. Sides move in
steps of QUANTUM pixels: a CPU builds its convolution kernels once per shape, so few shapes.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import torch
import torch.nn.functional as F

from fmnist_kaggle.models import create_model
from fmnist_kaggle.training.config import TrainConfig
from fmnist_kaggle.training.engine import flops_per_image
from fmnist_kaggle.training.optim import param_groups, stop_share, stop_step, train_live_groups

QUANTUM = 4
FULL = 28  # the side of every image this product trains on


def side_at(cfg: TrainConfig, step: int, total_steps: int, full: int = FULL) -> int:
    """The side of the images step `step` of `total_steps` trains on: `full` when resizing is off
    or the run is past `resize_until` of its steps; before that `resize_from` (mode step: a cheaper
    first stage) or a linear ramp from it towards `full` (mode ramp), rounded down to QUANTUM."""
    if not cfg.resize_from or cfg.resize_from >= full:
        return full
    done = step / max(total_steps, 1)
    if done >= cfg.resize_until:
        return full
    if cfg.resize_mode == "step":
        return cfg.resize_from
    side = cfg.resize_from + (full - cfg.resize_from) * done / cfg.resize_until
    return max(cfg.resize_from, min(full, int(side) // QUANTUM * QUANTUM))


def resized(x: torch.Tensor, side: int) -> torch.Tensor:
    """A batch (N, C, H, W) at side x side (antialiased bilinear), or itself at its own size."""
    if x.shape[-1] == side and x.shape[-2] == side:
        return x
    return F.interpolate(x, size=(side, side), mode="bilinear", antialias=True, align_corners=False)


def step_work(side: int, full: int = FULL) -> float:
    """A step's work relative to a full-size step: its share of the pixels (a convolution's cost
    grows with them; measured on 2 CPU cores, bench/per_second.py: 16 px 0.32, 20 px 0.47, 24 px
    0.69 of a 28 px step's time, against 0.33, 0.51, 0.73 of its pixels)."""
    return (side / full) ** 2


def late_work(cfg: TrainConfig) -> tuple[float, float]:
    """(the share of a run's steps after which some parameters stop training, 1.0 if none do; the
    FLOPs of a later step relative to an earlier one, forward and backward). Counted, not timed, so
    the same config always costs the same; the time falls further than the FLOPs (2 CPU cores, fp32,
    `fast` w8 / w16 / w24: 0.81 / 0.88 / 0.92 of the time), so the time model errs long."""
    if cfg.model.startswith("timm:"):  # no stage stops in a timm backbone; and it is slow to build
        return 1.0, 1.0
    return _late_work(cfg.model, json.dumps(cfg.model_kwargs, sort_keys=True))


@functools.cache
def _late_work(model_name: str, kwargs: str) -> tuple[float, float]:
    cfg = TrainConfig(model=model_name, model_kwargs=json.loads(kwargs))
    model = create_model(model_name, num_classes=10, in_chans=1, **cfg.model_kwargs)
    share = stop_share(model)
    if share >= 1.0:
        return 1.0, 1.0
    sample = torch.zeros(2, 1, FULL, FULL)
    before = flops_per_image(model, sample, True)
    train_live_groups(param_groups(cfg, model, 100), 100)  # as at the end of a 100-step run
    return share, flops_per_image(model, sample, True) / before


def stop_work(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """Step `step`'s FLOPs relative to a step before any parameter stopped training."""
    share, late = late_work(cfg)
    return late if step >= stop_step(share, total_steps) else 1.0


def work_before(cfg: TrainConfig, total_steps: int, full: int = FULL) -> np.ndarray:
    """work[i]: the full-cost steps' worth of work of steps 0..i-1 (total_steps + 1 entries)."""
    if cfg.resize_from:
        works = np.array([step_work(side_at(cfg, s, total_steps, full), full) for s in range(total_steps)])
    else:
        works = np.ones(total_steps)
    share, late = late_work(cfg)
    works[stop_step(share, total_steps) :] *= late
    return np.concatenate([[0.0], np.cumsum(works)])


def work_share(cfg: TrainConfig, total_steps: int, full: int = FULL) -> float:
    """The run's training work relative to every step at full cost: what the time model charges."""
    if total_steps <= 0:
        return 1.0
    return float(work_before(cfg, total_steps, full)[-1]) / total_steps
