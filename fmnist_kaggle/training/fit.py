"""Train one model on one fold: the loop, kept compact (nanoGPT/airbench style), and the parts it
calls in their own modules: batches (`batches`), optimizer, schedule and weight averages
(`optim`), loss and mixer (`loss`), checkpoints (`checkpoint`), the deadline and pace
(`deadline`).

Each epoch is checkpointed atomically with the tag of the unit it belongs to (run identity,
fold, seed); an interrupted fold resumes from it exactly (batch order, augmentation, dropout),
because every generator training draws from is re-seeded from (seed, fold, epoch) at the start
of each epoch.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.models import create_model
from fmnist_kaggle.training.batches import Batches, make_batches
from fmnist_kaggle.training.checkpoint import load_checkpoint, save_checkpoint
from fmnist_kaggle.training.config import TrainConfig
from fmnist_kaggle.training.deadline import Deadline, StepGuard
from fmnist_kaggle.training.device import _autocast, amp_dtype, resolve_device
from fmnist_kaggle.training.engine import keep_freed_memory
from fmnist_kaggle.training.inference import _to_model, eval_batches, normalize, predict, scores, to_float
from fmnist_kaggle.training.loss import loss_fn, make_mixer
from fmnist_kaggle.training.optim import (
    Lookahead,
    build_optimizer,
    build_schedule,
    lr_factor,
    make_ema,
    param_groups,
    train_live_groups,
)
from fmnist_kaggle.training.progressive import resized, side_at, step_work, stop_work, work_before

log = logging.getLogger(__name__)
BN_REFRESH_STEPS = 300  # runs shorter than this refresh batch-norm statistics before each evaluation
REFRESH_ROWS = 10_000  # exact enough statistics; all 48,000 rows took ~9 s of a 2-minute run's ~21 s units


class NonFiniteLoss(FkaggleError):
    """Training diverged: the loss became NaN or infinite."""


def spaced_rows(images: np.ndarray, most: int) -> np.ndarray:
    """Up to `most` of the images, evenly spaced (deterministic), C-contiguous and writable for
    torch; all of them, uncopied where they already are, when there are no more than `most`."""
    if len(images) > most:
        images = images[np.linspace(0, len(images) - 1, most).astype(np.int64)]
    return np.require(images, requirements=["C", "W"])


def refresh_batchnorm(model: torch.nn.Module, images: np.ndarray, cfg: TrainConfig, device: torch.device) -> None:
    """Batch-norm running statistics recomputed as exact averages over up to REFRESH_ROWS of the
    training rows, evenly spaced (torch's `update_bn`). After a few hundred steps the momentum
    averages still lag the weights, and evaluation with them is near chance. Frozen (pretrained)
    models (their batch norms do not train) are left alone; a stage that stopped training part-way
    (`train_live_groups`) is not such a model."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms or not all(p.requires_grad for m in norms for p in m.parameters()):
        return
    x = torch.from_numpy(spaced_rows(images, REFRESH_ROWS))
    torch.optim.swa_utils.update_bn((_to_model(b, cfg) for b in eval_batches(x, cfg, device)), model)


INIT_ROWS = 10_000  # enough patches for a 9-dimensional covariance; bounded cost on big folds


def init_from_data(model: torch.nn.Module, images: np.ndarray, cfg: TrainConfig, device: torch.device) -> None:
    """Data-dependent initialisation (the whitening stem) from up to INIT_ROWS of the fold's
    training images, evenly spaced (deterministic), as the model sees them."""
    if not hasattr(model, "init_from_data"):
        return
    x = torch.from_numpy(spaced_rows(images, INIT_ROWS)).to(device)
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


# ----------------------------------------------------------------------------- one epoch


@dataclass
class Stepper:
    """What a training step needs: the model (and its compiled twin), optimizer, schedule, scaler."""

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
    schedule: Any = None  # a LambdaLR positioned at `step` (`start_at`)
    guard: StepGuard | None = None  # the deadline between steps

    @property
    def eval_model(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def lr(self, step: int) -> float:
        return self.cfg.lr * lr_factor(self.cfg, step, self.total_steps, self.steps_per_epoch)

    def start_at(self, step: int, deadline: Deadline | None = None) -> None:
        """Position the schedule at `step` (0, or where a checkpoint resumes) and start the guard."""
        self.step = step
        self.schedule = build_schedule(self.cfg, self.opt, self.total_steps, self.steps_per_epoch, step)
        train_live_groups(self.opt.param_groups, step)
        if deadline is not None:
            work = work_before(self.cfg, self.total_steps)
            self.guard = StepGuard(deadline, self.total_steps, step, self.cfg.batch_size, work)

    def update(self, loss: torch.Tensor) -> None:
        """One optimizer step, then the schedule and the weight averages."""
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        self.schedule.step()
        self.step += 1
        train_live_groups(self.opt.param_groups, self.step)
        if self.lookahead is not None and (self.step % Lookahead.every == 0 or self.step == self.total_steps):
            factor = lr_factor(self.cfg, self.step - 1, self.total_steps, self.steps_per_epoch)
            self.lookahead.update(self.model, factor, last=self.step == self.total_steps)
        if self.ema is not None:
            self.ema.update(self.model, step=self.step)


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
    s: Stepper, batches: Iterator[tuple[torch.Tensor, ...]], where: str, bar: Any, check_finite: bool = True
) -> dict[str, float]:
    """One pass over the batches; raises NonFiniteLoss within FINITE_CHECK_STEPS steps of the loss
    diverging, and always before the epoch ends (so a diverged epoch is never checkpointed);
    the guard stops it at the deadline, or when its pace would end its run late."""
    s.model.train()
    t0 = time.perf_counter()
    sum_loss = torch.zeros((), device=s.device)
    correct = torch.zeros((), device=s.device, dtype=torch.long)
    diverged = _Divergence(s.device)
    seen, work = 0, 0.0  # images, and their full-cost worth (a smaller image, a step with stopped parameters: less)
    for x, y, *extra in batches:
        if s.guard is not None:
            s.guard.before_step(s.step, where)
        weight, teacher = extra if extra else (None, None)
        x, target = s.mixer(x, y) if s.mixer is not None else (x, y)
        side = side_at(s.cfg, s.step, s.total_steps, x.shape[-1])
        work += len(y) * step_work(side, x.shape[-1]) * stop_work(s.cfg, s.step, s.total_steps)
        x = resized(x, side)
        with _autocast(s.device, s.dtype):
            logits = s.step_model(_to_model(x, s.cfg))
            loss = loss_fn(s.cfg, logits, target, weight, teacher)
            reg = getattr(s.model, "regularization_loss", None)
            if reg is not None:
                loss = loss + reg()
        diverged.watch(loss, s.step)
        if (s.step + 1) % FINITE_CHECK_STEPS == 0:  # a look at the host: the loss, then the pace
            if check_finite:
                diverged.check(where, s)
            if s.guard is not None:
                s.guard.check_pace(s.step, where)
        s.update(loss)
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
        "images_per_s": work / max(seconds, 1e-9),  # full-cost images a second: one speed at every side and stage
    }


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
    train_t: np.ndarray | None = None,
    start: dict[str, torch.Tensor] | None = None,
) -> tuple[Stepper, Batches]:
    """A freshly initialised model (or, with `start`, one continued from those weights) with its
    optimizer, schedule and batches: what `fit` trains and what `estimate` times (`train_t`: a
    teacher's logits for the rows, to distil)."""
    device = resolve_device(cfg.device)
    dtype = amp_dtype(cfg, device)
    keep_freed_memory()
    torch.manual_seed(_seed_for(seed, fold, -1))
    model = create_model(cfg.model, num_classes=num_classes, in_chans=1, **cfg.model_kwargs).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.batch_size > len(train_x):
        log.warning(
            f"{desc} batch size {cfg.batch_size} is larger than the fold's {len(train_x)} "
            f"training rows; using {len(train_x)}"
        )
    batches = make_batches(cfg, train_x, train_y, device, train_w, train_t)
    if start is not None:  # --init-from: the earlier run's fold model, its data-based init included
        model.load_state_dict(start)
    else:
        init_from_data(model, train_x, cfg, device)
    total = cfg.total_steps(len(train_x))
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
    s.start_at(0)
    return s, batches


@dataclass
class FitResult:
    model: torch.nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    images_per_s: float = 0.0
    seconds: float = 0.0
    val_logits: np.ndarray | None = None  # the best epoch's validation logits (fp32), when this fit computed them
    times: dict[str, float] = field(default_factory=dict)  # seconds per phase: setup, train, validate, checkpoint

    def summary(self) -> dict[str, Any]:
        """The per-seed summary every reader uses (best epoch and its metrics, speed, where the time went)."""
        best = next((r for r in self.history if r["epoch"] == self.best_epoch), {})
        return {
            "best_epoch": self.best_epoch,
            "epochs_trained": len(self.history),
            "best": {k: best.get(k) for k in ("train_loss", "train_acc", "val_loss", "val_acc")},
            "images_per_s": round(self.images_per_s, 1),
            "seconds": round(self.seconds, 1),
            "times": {k: round(v, 2) for k, v in self.times.items()},
        }


@contextlib.contextmanager
def timed(times: dict[str, float], phase: str) -> Iterator[None]:
    """Add the seconds the block takes to `times[phase]`."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        times[phase] = times.get(phase, 0.0) + time.perf_counter() - t0


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
    deadline: Deadline | None = None,
    checkpoint_tag: dict[str, Any] | None = None,
    train_t: np.ndarray | None = None,
    start: dict[str, torch.Tensor] | None = None,
) -> FitResult:
    """Train on (train_x, train_y) (rows weighted by train_w; train_t: a teacher's logits for them,
    to distil; start: weights to continue from) for the config's steps; the last epoch is the
    result (or, with select_epoch, the one with the lowest validation loss).

    `checkpoint` is written after every epoch; when present at start (with `checkpoint_tag`, what
    it belongs to), training resumes. `deadline`: no step starts after it (DeadlineReached), and
    a unit whose pace would end its run late stops part-way (UnitLate).
    """
    t_start, times = time.perf_counter(), {"setup": 0.0, "train": 0.0, "validate": 0.0, "checkpoint": 0.0}
    with timed(times, "setup"):  # the model, its data-based init, the batches on the device, a checkpoint read
        s, batches = make_stepper(cfg, num_classes, train_x, train_y, fold, seed, desc, train_w, train_t, start)
        state = _resume(s, checkpoint, checkpoint_tag, desc)
        s.start_at(state["epoch"] * batches.steps_per_epoch, deadline)
    val = (torch.from_numpy(np.require(val_x, requirements=["C", "W"])), np.asarray(val_y, dtype=np.int64))
    epochs = math.ceil(s.total_steps / batches.steps_per_epoch)  # fewer than cfg.epochs when max_steps cuts
    images_per_s = 0.0
    with _unit_bar(s, desc, progress) as bar:
        for epoch in range(state["epoch"], epochs):
            if cfg.patience and state["bad_epochs"] >= cfg.patience:
                break
            with timed(times, "train"):
                row = _train_one_epoch(s, batches, (seed, fold, epoch, epochs), desc, bar)
            images_per_s = row["images_per_s"]
            if _validates(cfg, epoch, epochs):
                with timed(times, "validate"):
                    _validate(s, state, row, val, train_x, last=epoch + 1 == epochs)
            state["history"].append(row)
            state["epoch"] = epoch + 1
            if checkpoint is not None:
                with timed(times, "checkpoint"):
                    save_checkpoint(checkpoint, s, state, checkpoint_tag)
            _log_epoch(desc, row, epochs)
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
        times,
    )


def _resume(s: Stepper, checkpoint: Path | None, tag: dict[str, Any] | None, desc: str) -> dict[str, Any]:
    """The checkpoint's training state (the model and optimizer loaded into `s`), or a fresh one."""
    state = load_checkpoint(checkpoint, s, tag) if checkpoint is not None else None
    if state is not None:
        log.info(f"{desc} resuming after epoch {state['epoch']} from {checkpoint.name}")
        return state
    return {"epoch": 0, "history": [], "best_loss": float("inf"), "best_epoch": 0, "best_state": None, "bad_epochs": 0}


def _unit_bar(s: Stepper, desc: str, progress: bool) -> Any:
    """One bar for the whole unit (its ETA is the unit's remaining time), resumed steps counted."""
    return tqdm(
        total=s.total_steps,
        initial=s.step,
        desc=desc,
        unit="step",
        leave=False,
        disable=None if progress else True,
        mininterval=1.0,
    )


def _train_one_epoch(
    s: Stepper, batches: Batches, where: tuple[int, int, int, int], desc: str, bar: Any
) -> dict[str, Any]:
    """Epoch `epoch` of `epochs` (seeded by seed, fold, epoch; the last one of a max_steps run is
    cut): its history row, validation columns still empty."""
    seed, fold, epoch, epochs = where
    seed_epoch(seed, fold, epoch)
    bar.set_description(f"{desc} ep {epoch + 1}/{epochs}")
    steps = min(batches.steps_per_epoch, s.total_steps - s.step)
    epoch_batches = itertools.islice(batches.epoch_batches(_seed_for(seed, fold, epoch), epoch), steps)
    tr = train_epoch(s, epoch_batches, f"{desc} epoch {epoch + 1}", bar)
    return {
        "fold": fold,
        "seed": seed,
        "epoch": epoch + 1,
        "train_loss": round(tr["train_loss"], 6),
        "train_acc": round(tr["train_acc"], 6),
        "val_loss": None,
        "val_acc": None,
        "lr": s.lr(max(s.step - 1, 0)),
        "images_per_s": round(tr["images_per_s"], 1),
        "seconds": round(tr["seconds"], 2),
    }


def _validate(
    s: Stepper,
    state: dict[str, Any],
    row: dict[str, Any],
    val: tuple[torch.Tensor, np.ndarray],
    train_x: np.ndarray,
    last: bool,
) -> None:
    """Score the held-out rows (fp32, as the saved predictions: the epoch line and the fold line
    agree) into `row`; keep this epoch as the result when it is the last (or, with select_epoch,
    the best so far)."""
    cfg = s.cfg
    if s.total_steps < BN_REFRESH_STEPS:
        refresh_batchnorm(s.eval_model, train_x, cfg, s.device)
    logits = predict(s.eval_model, val[0], cfg, s.device)
    val_loss, val_acc = scores(logits, val[1])
    row.update(val_loss=round(val_loss, 6), val_acc=round(val_acc, 6))
    if (cfg.select_epoch and val_loss < state["best_loss"]) or (last and not cfg.select_epoch):
        state.update(
            best_loss=val_loss,
            best_epoch=row["epoch"],
            best_state=snapshot(s.eval_model, state["best_state"]) if cfg.select_epoch else None,
            best_val=torch.from_numpy(logits),
            bad_epochs=0,
        )
    else:
        state["bad_epochs"] += 1


def _log_epoch(desc: str, row: dict[str, Any], epochs: int) -> None:
    val = f"{row['val_loss']:.4f}/{row['val_acc']:.4f}" if row["val_loss"] is not None else "-"
    log.info(
        f"{desc} epoch {row['epoch']}/{epochs}  train {row['train_loss']:.4f}/{row['train_acc']:.4f} "
        f" val {val}  {row['images_per_s']:.0f} img/s"
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


def _validates(cfg: TrainConfig, epoch: int, epochs: int) -> bool:
    return epoch + 1 == epochs or (cfg.eval_every > 0 and (epoch + 1) % cfg.eval_every == 0)
