"""Train one model on one fold: the inner loop, kept compact (nanoGPT/airbench style).

Images stay uint8 on the training device (a fold of Fashion-MNIST is ~40 MB) and are
augmented a batch at a time with tensor ops, so there are no DataLoader workers and
no per-sample Python. The per-sample albumentations path remains for custom pipelines.
Each epoch is checkpointed atomically (tensors and plain containers only, loaded with
weights_only=True) with the tag of the unit it belongs to (run identity, fold, seed); an
interrupted fold resumes from it exactly (batch order, augmentation, dropout), because every
generator training draws from is re-seeded from (seed, fold, epoch) at the start of each epoch.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.models import create_model
from fmnist_kaggle.models.layers import PatchWhitening
from fmnist_kaggle.storage import atomic
from fmnist_kaggle.storage.artifacts import present, read_file, torch_load
from fmnist_kaggle.training.augment import (
    AlbumentationsDataset,
    BatchAugment,
    albumentations_pipeline,
    alternating_flips,
)
from fmnist_kaggle.training.config import TrainConfig
from fmnist_kaggle.training.device import _autocast, amp_dtype, resolve_device
from fmnist_kaggle.training.inference import _to_model, eval_batches, normalize, predict, scores, to_float

log = logging.getLogger(__name__)
BN_REFRESH_STEPS = 300  # runs shorter than this refresh batch-norm statistics before each evaluation


class NonFiniteLoss(FkaggleError):
    """Training diverged: the loss became NaN or infinite."""


class DeadlineReached(FkaggleError):
    """A deadline came before training finished; the last epoch's checkpoint is kept."""


class WouldEndLate(FkaggleError):
    """At its pace so far, training would end too late (`late_by` said so); stopped early so the
    time goes elsewhere. The last epoch's checkpoint is kept."""

    def __init__(self, message: str, images_per_s: float, late_s: float) -> None:
        super().__init__(message)
        self.images_per_s, self.late_s = images_per_s, late_s


PACE_SHARE = 0.2  # of a unit's steps trained before its pace is trusted to project its end


def param_groups(cfg: TrainConfig, model: torch.nn.Module, total_steps: int) -> list[dict[str, Any]]:
    """The trainable parameters in optimizer groups (airbench): batch-norm scales frozen
    (`bn_freeze_scale`: learning rate 0), batch-norm biases and the whitening stem's bias at
    `bn_bias_lr` x the learning rate with the weight decay divided by it (the same decay per
    step); the whitening bias only for its first steps. `lr_scale` and `until_step` are read
    each step by `train_epoch`. With the defaults, one group as before."""
    special: dict[int, dict[str, Any]] = {}
    bias_group = {"lr_scale": cfg.bn_bias_lr, "weight_decay": cfg.weight_decay / cfg.bn_bias_lr}
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.affine:
            if cfg.bn_freeze_scale:
                special[id(m.weight)] = {"name": "bn_scale", "lr_scale": 0.0, "weight_decay": 0.0}
            if cfg.bn_bias_lr != 1.0:
                special[id(m.bias)] = {"name": "bn_bias", **bias_group}
        if isinstance(m, PatchWhitening):
            special[id(m.bias)] = {
                "name": "whiten_bias",
                **bias_group,
                "until_step": int(m.bias_train_fraction * total_steps),
            }
    groups: dict[str, dict[str, Any]] = {}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        spec = special.get(id(p), {"name": "default", "lr_scale": 1.0, "weight_decay": cfg.weight_decay})
        groups.setdefault(spec["name"], {**spec, "params": []})["params"].append(p)
    return list(groups.values())


def build_optimizer(cfg: TrainConfig, groups: list[dict[str, Any]], device: torch.device) -> torch.optim.Optimizer:
    fused = {"fused": True} if device.type == "cuda" else {}
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            groups,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov and cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
            **fused,
        )
    return torch.optim.RMSprop(groups, lr=cfg.lr, momentum=0.0, weight_decay=cfg.weight_decay)


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


def loss_fn(
    cfg: TrainConfig, logits: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Hard labels (N,), or soft targets (N, K) from mixup/cutmix (already smoothed);
    `weight`: per-sample loss weights (pseudo-labelled rows)."""
    logits = logits.float()
    if y.dim() == 2:
        per = (
            F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(1)
            if cfg.loss == "sigmoid"
            else F.cross_entropy(logits, y, reduction="none")
        )
    elif cfg.loss == "sigmoid":  # one-vs-all BCE, as compared in report 003
        k = logits.shape[1]
        target = F.one_hot(y, k).float() * (1 - cfg.label_smoothing) + cfg.label_smoothing / k
        per = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(1)
    else:
        per = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing, reduction="none")
    return (per * weight).mean() if weight is not None else per.mean()


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


def make_ema(cfg: TrainConfig, model: torch.nn.Module) -> Any:
    """timm's ModelEmaV3 with warm-up (the effective decay grows with the step: short runs
    are not dominated by their random start), or None."""
    if not cfg.ema:
        return None
    from timm.utils import ModelEmaV3

    return ModelEmaV3(model, decay=cfg.ema, use_warmup=True)


def refresh_batchnorm(model: torch.nn.Module, images: np.ndarray, cfg: TrainConfig, device: torch.device) -> None:
    """Batch-norm running statistics recomputed as exact averages over the training rows
    (torch's `update_bn`). After a few hundred steps the momentum averages still lag the
    weights, and evaluation with them is near chance. Frozen (pretrained) models are left alone."""
    if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()) or not all(
        p.requires_grad for p in model.parameters()
    ):
        return
    x = torch.from_numpy(np.require(images, requirements=["C", "W"]))
    torch.optim.swa_utils.update_bn((_to_model(b, cfg) for b in eval_batches(x, cfg, device)), model)


INIT_ROWS = 10_000  # enough patches for a 9-dimensional covariance; bounded cost on big folds


def init_from_data(model: torch.nn.Module, images: np.ndarray, cfg: TrainConfig, device: torch.device) -> None:
    """Data-dependent initialisation (the whitening stem) from up to INIT_ROWS of the fold's
    training images, evenly spaced (deterministic), as the model sees them."""
    if not hasattr(model, "init_from_data"):
        return
    rows = np.linspace(0, len(images) - 1, min(len(images), INIT_ROWS)).astype(np.int64)
    x = torch.from_numpy(np.ascontiguousarray(images[rows])).to(device)
    model.init_from_data(normalize(to_float(x), cfg))


def _seed_for(seed: int, fold: int, epoch: int) -> int:
    return (seed * 1_000_003 + fold * 10_007 + epoch) % (2**63)


def seed_epoch(seed: int, fold: int, epoch: int) -> None:
    """Re-seed every global generator an epoch may draw from (torch CPU and CUDA: dropout, drop
    path; numpy: timm's Mixup; Python's random: albumentations), so an epoch resumed from its
    checkpoint draws exactly what the uninterrupted epoch drew."""
    s = _seed_for(seed, fold, epoch)
    torch.manual_seed(s)
    np.random.seed(s % 2**32)
    random.seed(s)


# ----------------------------------------------------------------------------- batches


@dataclass
class Batches:
    """The training rows of a fold, served as (inputs, labels) batches for one epoch at a time."""

    epoch_batches: Callable[[int, int], Iterator[tuple[torch.Tensor, torch.Tensor]]]  # (seed, epoch) -> batches
    steps_per_epoch: int


def make_batches(
    cfg: TrainConfig, x: np.ndarray, y: np.ndarray, device: torch.device, batch_size: int, w: np.ndarray | None = None
) -> Batches:
    """(inputs, labels) batches, or (inputs, labels, weights) when per-sample weights are given."""
    steps = max(1, len(x) // batch_size)  # drop the ragged last batch (BN on tiny batches)
    if cfg.augment == "custom" or cfg.augment_backend == "albumentations":
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
                *([ws[idx]] if ws is not None else []),
            )
            for idx in perm
        )

    return Batches(fast, steps)


# ----------------------------------------------------------------------------- one epoch


@dataclass
class Stepper:
    """What a training step needs: the model (and its compiled twin), optimizer, scaler, schedule."""

    model: torch.nn.Module
    step_model: torch.nn.Module
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    cfg: TrainConfig
    device: torch.device
    dtype: torch.dtype | None
    total_steps: int
    steps_per_epoch: int
    step: int = 0
    ema: Any = None  # timm ModelEmaV3: its module is what gets evaluated and saved
    mixer: Any = None  # timm Mixup
    lookahead: Lookahead | None = None
    stop_at: float | None = None  # time.monotonic() after which no step starts
    # (seconds of training left, seconds of the whole training) at the pace so far -> seconds late
    late_by: Callable[[float, float], float] | None = None
    paced_from: tuple[float, int] = (0.0, 0)  # (time.monotonic(), step) the pace is measured from

    @property
    def eval_model(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def lr(self, step: int) -> float:
        return self.cfg.lr * lr_factor(self.cfg, step, self.total_steps, self.steps_per_epoch)

    def check_pace(self, where: str) -> None:
        """Past PACE_SHARE of the unit's steps, raise WouldEndLate when `late_by` says the pace so
        far ends what waits on this training too late (looked at with the loss, every
        FINITE_CHECK_STEPS steps)."""
        t0, step0 = self.paced_from
        done = self.step - step0
        if self.late_by is None or done < max(1.0, PACE_SHARE * (self.total_steps - step0)):
            return
        per_step = (time.monotonic() - t0) / done
        late = self.late_by(per_step * (self.total_steps - self.step), per_step * self.total_steps)
        if late > 0:
            raise WouldEndLate(
                f"{where}: at {1000 * per_step:.0f} ms a step it would end {late:.0f} s late",
                self.cfg.batch_size / per_step,
                late,
            )

    def set_lr(self) -> None:
        for g in self.opt.param_groups:
            g["lr"] = self.lr(self.step) * g.get("lr_scale", 1.0) * (self.step < g.get("until_step", self.total_steps))


FINITE_CHECK_STEPS = 50  # steps between looks at the loss on the host (each look waits for the device)


class _Divergence:
    """The first non-finite training loss of an epoch, kept on the device: the host looks every
    FINITE_CHECK_STEPS steps and at the end of the epoch instead of after every step."""

    def __init__(self, device: torch.device) -> None:
        self.first_step = torch.full((), -1, dtype=torch.long, device=device)
        self.value = torch.zeros((), device=device)

    def watch(self, loss: torch.Tensor, step: int) -> None:
        new = ~torch.isfinite(loss.detach()) & (self.first_step < 0)
        self.first_step = torch.where(new, step, self.first_step)
        self.value = torch.where(new, loss.detach().float(), self.value)

    def check(self, where: str, s: "Stepper") -> None:
        step = int(self.first_step)
        if step >= 0:
            raise NonFiniteLoss(
                f"{where}: training loss is {float(self.value)} at step {step + 1} (lr {s.lr(step):.3g}); "
                "lower --lr or check the data"
            )


def train_epoch(
    s: Stepper, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], where: str, bar: Any, check_finite: bool = True
) -> dict[str, float]:
    """One pass over the batches; raises NonFiniteLoss within FINITE_CHECK_STEPS steps of the loss
    diverging, and always before the epoch ends (so a diverged epoch is never checkpointed)."""
    s.model.train()
    t0 = time.perf_counter()
    sum_loss = torch.zeros((), device=s.device)
    correct = torch.zeros((), device=s.device, dtype=torch.long)
    diverged = _Divergence(s.device)
    seen = 0
    for x, y, *w in batches:
        if s.stop_at is not None and time.monotonic() >= s.stop_at:
            raise DeadlineReached(
                f"{where}: deadline reached at step {s.step + 1}; resumes from the last finished epoch"
            )
        s.set_lr()
        x, target = s.mixer(x, y) if s.mixer is not None else (x, y)
        with _autocast(s.device, s.dtype):
            logits = s.step_model(_to_model(x, s.cfg))
            loss = loss_fn(s.cfg, logits, target, w[0] if w else None)
            reg = getattr(s.model, "regularization_loss", None)
            if reg is not None:
                loss = loss + reg()
        diverged.watch(loss, s.step)
        if check_finite and (s.step + 1) % FINITE_CHECK_STEPS == 0:
            diverged.check(where, s)
            s.check_pace(where)
        s.opt.zero_grad(set_to_none=True)
        s.scaler.scale(loss).backward()
        s.scaler.step(s.opt)
        s.scaler.update()
        s.step += 1
        if s.lookahead is not None and (s.step % Lookahead.every == 0 or s.step == s.total_steps):
            s.lookahead.update(
                s.model, lr_factor(s.cfg, s.step - 1, s.total_steps, s.steps_per_epoch), last=s.step == s.total_steps
            )
        if s.ema is not None:
            s.ema.update(s.model, step=s.step)
        seen += len(y)
        sum_loss += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        bar.update(1)
        if s.step % 20 == 0 and not bar.disable:
            bar.set_postfix(
                loss=f"{sum_loss.item() / seen:.4f}",
                acc=f"{correct.item() / seen:.4f}",
                img_s=f"{seen / (time.perf_counter() - t0):.0f}",
            )
    if check_finite:
        diverged.check(where, s)
    seconds = time.perf_counter() - t0
    return {
        "train_loss": sum_loss.item() / max(seen, 1),
        "train_acc": correct.item() / max(seen, 1),
        "seconds": seconds,
        "images_per_s": seen / max(seconds, 1e-9),
    }


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: Path, s: Stepper, state: dict[str, Any], tag: dict[str, Any] | None = None) -> None:
    ck = {
        "model": s.model.state_dict(),
        "opt": s.opt.state_dict(),
        "scaler": s.scaler.state_dict(),
        "state": state,
        "tag": tag,
    }
    if s.ema is not None:
        ck["ema"] = s.ema.module.state_dict()
    if s.lookahead is not None:
        ck["lookahead"] = s.lookahead.state_dict()
    with atomic.atomic_path(path) as tmp:
        torch.save(ck, tmp)


def load_checkpoint(path: Path, s: Stepper, tag: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The saved training state, or None when there is none, it belongs to another unit (its tag:
    run identity, fold, seed) or it is unusable (then it is removed, with a warning).

    weights_only=True: a planted pickle in a copied fold folder cannot run code here.
    """
    if not present(path):
        return None
    try:
        ck = torch_load(read_file(path, "checkpoint"), path, "checkpoint", map_location=s.device)
        if ck.get("tag") != tag:
            raise ValueError("it belongs to another run, fold or seed (its tag differs)")
        state = ck["state"]
        epoch = int(state["epoch"])
        if not 0 < epoch <= s.cfg.epochs or len(state["history"]) != epoch:
            raise ValueError(
                f"epoch {epoch} with {len(state['history'])} epochs of history, for a {s.cfg.epochs}-epoch training"
            )
        s.model.load_state_dict(ck["model"])
        s.opt.load_state_dict(ck["opt"])
        s.scaler.load_state_dict(ck["scaler"])
        if s.ema is not None:
            s.ema.module.load_state_dict(ck["ema"])
        if s.lookahead is not None:
            s.lookahead.load_state_dict(ck["lookahead"])
        return state
    except Exception as exc:  # truncated, foreign, or not weights-only: restart this seed
        first = str(exc).splitlines()[0][:120] if str(exc) else ""
        log.warning(f"{path}: unusable checkpoint ({type(exc).__name__}: {first}); discarded, this seed restarts")
        path.unlink(missing_ok=True)
        return None


# ----------------------------------------------------------------------------- fit


def make_stepper(
    cfg: TrainConfig,
    num_classes: int,
    train_x: np.ndarray,
    train_y: np.ndarray,
    fold: int = 0,
    seed: int = 0,
    desc: str = "",
    train_w: np.ndarray | None = None,
) -> tuple[Stepper, Batches]:
    """A freshly initialised model with its optimizer, schedule and batches: what `fit` trains
    and what `estimate` times."""
    device = resolve_device(cfg.device)
    dtype = amp_dtype(cfg, device)
    torch.manual_seed(_seed_for(seed, fold, -1))
    model = create_model(cfg.model, num_classes=num_classes, in_chans=1, **cfg.model_kwargs).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    batch_size = min(cfg.batch_size, len(train_x))
    if batch_size < cfg.batch_size:
        log.warning(
            f"{desc} batch size {cfg.batch_size} is larger than the fold's {len(train_x)} "
            f"training rows; using {batch_size}"
        )
    batches = make_batches(cfg, train_x, train_y, device, batch_size, train_w)
    init_from_data(model, train_x, cfg, device)
    total = total_steps(cfg, batches.steps_per_epoch)
    s = Stepper(
        model,
        torch.compile(model) if cfg.compile else model,
        build_optimizer(cfg, param_groups(cfg, model, total), device),
        torch.amp.GradScaler("cuda", enabled=dtype == torch.float16),
        cfg,
        device,
        dtype,
        total,
        batches.steps_per_epoch,
        ema=make_ema(cfg, model),
        mixer=make_mixer(cfg, num_classes),
        lookahead=Lookahead(model, cfg.lookahead) if cfg.lookahead else None,
    )
    return s, batches


@dataclass
class FitResult:
    model: torch.nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    images_per_s: float = 0.0
    seconds: float = 0.0
    val_logits: np.ndarray | None = None  # the best epoch's validation logits (fp32), when this fit computed them

    def summary(self) -> dict[str, Any]:
        """The per-seed summary every reader uses (best epoch and its metrics, speed)."""
        best = next((r for r in self.history if r["epoch"] == self.best_epoch), {})
        return {
            "best_epoch": self.best_epoch,
            "epochs_trained": len(self.history),
            "best": {k: best.get(k) for k in ("train_loss", "train_acc", "val_loss", "val_acc")},
            "images_per_s": round(self.images_per_s, 1),
            "seconds": round(self.seconds, 1),
        }


def fit(
    cfg: TrainConfig,
    num_classes: int,
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    fold: int,
    seed: int,
    checkpoint: Path | None = None,
    progress: bool = True,
    desc: str = "",
    train_w: np.ndarray | None = None,
    stop_at: float | None = None,
    checkpoint_tag: dict[str, Any] | None = None,
    late_by: Callable[[float, float], float] | None = None,
) -> FitResult:
    """Train on (train_x, train_y) (rows weighted by train_w), select the epoch with the lowest validation loss.

    `checkpoint` is written after every epoch; when present at start, training resumes.
    `stop_at` (a `time.monotonic()` value): no step starts after it (DeadlineReached).
    `late_by(left_s, whole_s)`: how late what waits on this training ends if it keeps its pace
    (its seconds left, the seconds of the whole training); past 0, it stops early (WouldEndLate).
    `checkpoint_tag`: what the checkpoint belongs to; a checkpoint with another tag is discarded.
    """
    t_start = time.perf_counter()
    s, batches = make_stepper(cfg, num_classes, train_x, train_y, fold, seed, desc, train_w)
    s.stop_at = stop_at
    device = s.device
    vx, vy = torch.from_numpy(np.require(val_x, requirements=["C", "W"])), np.asarray(val_y, dtype=np.int64)

    state = load_checkpoint(checkpoint, s, checkpoint_tag) if checkpoint is not None else None
    if state is not None:
        log.info(f"{desc} resuming after epoch {state['epoch']} from {checkpoint.name}")
    state = state or {
        "epoch": 0,
        "history": [],
        "best_loss": float("inf"),
        "best_epoch": 0,
        "best_state": None,
        "bad_epochs": 0,
    }
    s.step = state["epoch"] * batches.steps_per_epoch
    s.late_by, s.paced_from = late_by, (time.monotonic(), s.step)
    epochs = math.ceil(s.total_steps / batches.steps_per_epoch)  # fewer than cfg.epochs when max_steps cuts
    images_per_s = 0.0
    # one bar for the whole unit (its ETA is the unit's remaining time), resumed steps counted
    with tqdm(
        total=s.total_steps,
        initial=s.step,
        desc=desc,
        unit="step",
        leave=False,
        disable=None if progress else True,
        mininterval=1.0,
    ) as bar:
        for epoch in range(state["epoch"], epochs):
            if cfg.patience and state["bad_epochs"] >= cfg.patience:
                break
            seed_epoch(seed, fold, epoch)
            bar.set_description(f"{desc} ep {epoch + 1}/{epochs}")
            steps = min(batches.steps_per_epoch, s.total_steps - s.step)  # the last epoch of a max_steps run is cut
            epoch_batches = itertools.islice(batches.epoch_batches(_seed_for(seed, fold, epoch), epoch), steps)
            tr = train_epoch(s, epoch_batches, f"{desc} epoch {epoch + 1}", bar)
            images_per_s = tr["images_per_s"]
            row = {
                "fold": fold,
                "seed": seed,
                "epoch": epoch + 1,
                "train_loss": round(tr["train_loss"], 6),
                "train_acc": round(tr["train_acc"], 6),
                "val_loss": None,
                "val_acc": None,
                "lr": s.lr(max(s.step - 1, 0)),
                "images_per_s": round(images_per_s, 1),
                "seconds": round(tr["seconds"], 2),
            }
            if _validates(cfg, epoch, epochs):
                if s.total_steps < BN_REFRESH_STEPS:
                    refresh_batchnorm(s.eval_model, train_x, cfg, device)
                logits = predict(
                    s.eval_model, vx, cfg, device
                )  # fp32, as the saved predictions: the epoch line and the fold line agree
                val_loss, val_acc = scores(logits, vy)
                row.update(val_loss=round(val_loss, 6), val_acc=round(val_acc, 6))
                last = epoch + 1 == epochs
                if (cfg.select_epoch and val_loss < state["best_loss"]) or (last and not cfg.select_epoch):
                    state.update(
                        best_loss=val_loss,
                        best_epoch=epoch + 1,
                        best_state=snapshot(s.eval_model, state["best_state"]) if cfg.select_epoch else None,
                        best_val=torch.from_numpy(logits),
                        bad_epochs=0,
                    )
                else:
                    state["bad_epochs"] += 1
            state["history"].append(row)
            state["epoch"] = epoch + 1
            if checkpoint is not None:
                save_checkpoint(checkpoint, s, state, checkpoint_tag)
            val = f"{row['val_loss']:.4f}/{row['val_acc']:.4f}" if row["val_loss"] is not None else "-"
            log.info(
                f"{desc} epoch {epoch + 1}/{epochs}  train {row['train_loss']:.4f}/{row['train_acc']:.4f} "
                f" val {val}  {images_per_s:.0f} img/s"
            )
    if state["best_state"] is not None:
        s.eval_model.load_state_dict(state["best_state"])
    best_val = state.get("best_val")
    return FitResult(
        s.eval_model,
        state["history"],
        state["best_epoch"],
        images_per_s,
        time.perf_counter() - t_start,
        best_val.numpy() if best_val is not None else None,
    )


def snapshot(model: torch.nn.Module, into: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """The model's weights, copied into the tensors of an earlier snapshot when there is one (an
    improving epoch then allocates nothing), else into new ones."""
    current = model.state_dict()
    if into is None or into.keys() != current.keys():
        return {k: v.detach().clone() for k, v in current.items()}
    for k, v in current.items():
        into[k].copy_(v)
    return into


def total_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """Optimizer steps of one (fold, seed): every epoch's, or cfg.max_steps when that is fewer."""
    every = steps_per_epoch * cfg.epochs
    return min(every, cfg.max_steps) if cfg.max_steps else every


def _validates(cfg: TrainConfig, epoch: int, epochs: int) -> bool:
    return epoch + 1 == epochs or (cfg.eval_every > 0 and (epoch + 1) % cfg.eval_every == 0)
