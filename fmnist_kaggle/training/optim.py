"""The optimizer, its parameter groups and the learning-rate schedule (one `LambdaLR` lambda per
group, airbench style), and the weight averages a run may keep (airbench's lookahead, timm's EMA)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from fmnist_kaggle.models.layers import PatchWhitening
from fmnist_kaggle.training.config import TrainConfig

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": lambda groups, cfg, fused: torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused),
    "adamw": lambda groups, cfg, fused: torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused),
    "sgd": lambda groups, cfg, fused: torch.optim.SGD(
        groups,
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
        weight_decay=cfg.weight_decay,
        **fused,
    ),
    "rmsprop": lambda groups, cfg, fused: torch.optim.RMSprop(
        groups, lr=cfg.lr, momentum=0.0, weight_decay=cfg.weight_decay
    ),
}


def param_groups(cfg: TrainConfig, model: torch.nn.Module, total_steps: int) -> list[dict[str, Any]]:
    """The trainable parameters in optimizer groups (airbench): batch-norm scales frozen
    (`bn_freeze_scale`: learning rate 0), batch-norm biases and the whitening stem's bias at
    `bn_bias_lr` x the learning rate with the weight decay divided by it (the same decay per
    step); the whitening bias only for its first steps (`until_step`). With the defaults, one
    group. Each group's `lr` is its peak; the schedule scales it."""
    special: dict[int, dict[str, Any]] = {}
    bias_group = {"lr_scale": cfg.bn_bias_lr, "weight_decay": cfg.weight_decay / cfg.bn_bias_lr}
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.affine:
            if cfg.bn_freeze_scale:
                special[id(m.weight)] = {"name": "bn_scale", "lr_scale": 0.0, "weight_decay": 0.0}
            if cfg.bn_bias_lr != 1.0:
                special[id(m.bias)] = {"name": "bn_bias", **bias_group}
        if isinstance(m, PatchWhitening):
            until = stop_step(stop_share(m), total_steps)
            special[id(m.bias)] = {"name": "whiten_bias", **bias_group, "until_step": until}
    groups: dict[str, dict[str, Any]] = {}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        spec = special.get(id(p), {"name": "default", "lr_scale": 1.0, "weight_decay": cfg.weight_decay})
        group = groups.setdefault(spec["name"], {**spec, "params": []})
        group["lr"] = group["initial_lr"] = cfg.lr * spec["lr_scale"]
        group["params"].append(p)
    return list(groups.values())


def train_live_groups(groups: list[dict[str, Any]], step: int) -> None:
    """At optimizer step `step`, the parameters of a group (an optimizer's `param_groups`, or
    `param_groups`' own) past its `until_step` stop requiring gradients: their learning rate is 0
    from then on (the schedule), and autograd then skips the work only they needed (the whitening
    stem's bias: the first stage's input gradient, 9-23% of a `fast` step in fp32,
    bench/engine.py). The other parameters' gradients are the same."""
    for g in groups:
        if "until_step" in g:
            for p in g["params"]:
                p.requires_grad_(step < g["until_step"])


def stop_share(model: torch.nn.Module) -> float:
    """The share of a run's steps after which some of the model's parameters stop training (1.0:
    none do); `param_groups` stops them at `stop_step`."""
    return min((m.bias_train_fraction for m in model.modules() if isinstance(m, PatchWhitening)), default=1.0)


def stop_step(share: float, total_steps: int) -> int:
    """The first step of `total_steps` at which parameters that train for `share` of them no longer do."""
    return int(share * total_steps)


def build_optimizer(cfg: TrainConfig, groups: list[dict[str, Any]], device: torch.device) -> torch.optim.Optimizer:
    fused = {"fused": True} if device.type == "cuda" and cfg.optimizer != "rmsprop" else {}
    return OPTIMIZERS[cfg.optimizer](groups, cfg, fused)


def lr_factor(cfg: TrainConfig, step: int, total: int, steps_per_epoch: int) -> float:
    """Multiplier of the peak learning rate at optimizer step `step` of `total`."""
    if cfg.schedule == "onecycle":  # linear up for 25% of steps, then linear down to ~0
        peak = max(1, int(0.25 * total))
        return (step + 1) / peak if step < peak else max(0.0, (total - step) / max(1, total - peak))
    warm = int(cfg.warmup_epochs * steps_per_epoch)
    if step < warm:
        return (step + 1) / warm
    if cfg.schedule == "cosine":
        t = (step - warm) / max(1, total - warm)
        return 0.5 * (1 + math.cos(math.pi * t))
    return 1.0


def build_schedule(
    cfg: TrainConfig, opt: torch.optim.Optimizer, total: int, steps_per_epoch: int, step: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule as one lambda per parameter group, positioned at optimizer step `step` (0, or
    where a checkpoint resumes): each group's peak x lr_factor, until its `until_step`."""

    def factor_until(until: int) -> Callable[[int], float]:
        return lambda i: lr_factor(cfg, i, total, steps_per_epoch) * (i < until)

    lambdas = [factor_until(g.get("until_step", total)) for g in opt.param_groups]
    for g in opt.param_groups:  # a checkpoint written before the groups kept their peak
        g.setdefault("initial_lr", cfg.lr * g.get("lr_scale", 1.0))
    return torch.optim.lr_scheduler.LambdaLR(opt, lambdas, last_epoch=step - 1)


class Lookahead:
    """airbench's lookahead: a slow copy of the weights (and batch-norm statistics) that every
    `every` steps moves towards the live net, which then takes the slow copy's values. The
    decay falls with the learning rate, so the end of training is the net's own; the last step
    copies the slow weights in. Its state is saved with the checkpoint (exact resume)."""

    every = 5

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.slow = {k: v.detach().clone() for k, v in model.state_dict().items() if v.dtype.is_floating_point}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, lr_factor: float, last: bool = False) -> None:
        decay = 1.0 if last else self.decay**self.every * lr_factor**3
        for k, v in model.state_dict().items():
            if k in self.slow:
                self.slow[k].lerp_(v, 1 - decay)
                v.copy_(self.slow[k])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.slow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k, v in state.items():
            self.slow[k].copy_(v)


def make_ema(cfg: TrainConfig, model: torch.nn.Module) -> Any:
    """timm's ModelEmaV3 with warm-up (the effective decay grows with the step: short runs
    are not dominated by their random start), or None."""
    if not cfg.ema:
        return None
    from timm.utils import ModelEmaV3

    return ModelEmaV3(model, decay=cfg.ema, use_warmup=True)
