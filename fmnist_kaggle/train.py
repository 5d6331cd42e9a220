"""Train one model on one fold: the inner loop, kept compact (nanoGPT/airbench style).

Images stay uint8 on the training device (a fold of Fashion-MNIST is ~40 MB) and are
augmented a batch at a time with tensor ops, so there are no DataLoader workers and
no per-sample Python. The per-sample albumentations path remains for custom pipelines.
Each epoch is checkpointed atomically; an interrupted fold resumes from it, with the
same batch order and augmentation (the RNG is re-seeded from (seed, fold, epoch)).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fmnist_kaggle import atomic
from fmnist_kaggle.augment import AlbumentationsDataset, BatchAugment, albumentations_pipeline
from fmnist_kaggle.config import TrainConfig
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.models import create_model

MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST train pixel statistics on the 0..1 scale


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FkaggleError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 where the GPU supports it, else fp16 (with a grad scaler); CPU trains in fp32."""
    if device.type != "cuda" or cfg.amp == "off":
        return None
    if cfg.amp == "fp16" or (cfg.amp == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def build_optimizer(cfg: TrainConfig, params: list[torch.nn.Parameter], device: torch.device) -> torch.optim.Optimizer:
    fused = {"fused": True} if device.type == "cuda" else {}
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0, weight_decay=cfg.weight_decay, **fused)
    return torch.optim.RMSprop(params, lr=cfg.lr, momentum=0.0, weight_decay=cfg.weight_decay)


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


def loss_fn(cfg: TrainConfig, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if cfg.loss == "sigmoid":  # one-vs-all BCE, as compared in report 003
        k = logits.shape[1]
        target = F.one_hot(y, k).float() * (1 - cfg.label_smoothing) + cfg.label_smoothing / k
        return F.binary_cross_entropy_with_logits(logits.float(), target)
    return F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)


def _prep(x: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """uint8 (N,28,28) -> float (N,1,28,28) in [0,1] (or standardized)."""
    x = x.unsqueeze(1).float().div_(255.0)
    return (x - MEAN) / STD if cfg.normalize else x


def _to_model(x: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if cfg.channels_last else x


@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, cfg: TrainConfig, device: torch.device, dtype: torch.dtype | None) -> np.ndarray:
    """Logits for uint8 images (N,28,28), averaged with the flipped view when cfg.tta."""
    model.eval()
    out = []
    for i in range(0, len(images), cfg.eval_batch_size):
        x = _prep(images[i : i + cfg.eval_batch_size].to(device, non_blocking=True), cfg)
        with _autocast(device, dtype):
            logits = model(_to_model(x, cfg)).float()
            if cfg.tta:
                logits = (logits + model(_to_model(x.flip(-1), cfg)).float()) / 2
        out.append(logits.cpu())
    return torch.cat(out).numpy().astype(np.float32)


def _autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


@dataclass
class FitResult:
    model: torch.nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    images_per_s: float = 0.0


def _seed_for(seed: int, fold: int, epoch: int) -> int:
    return (seed * 1_000_003 + fold * 10_007 + epoch) % (2**63)


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
) -> FitResult:
    """Train on (train_x, train_y), select the epoch with the lowest validation loss.

    `checkpoint` is written after every epoch; when present at start, training resumes.
    """
    from tqdm.auto import tqdm

    device = resolve_device(cfg.device)
    dtype = amp_dtype(cfg, device)
    torch.manual_seed(_seed_for(seed, fold, -1))
    model = create_model(cfg.model, num_classes=num_classes, in_chans=1, **cfg.model_kwargs).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = build_optimizer(cfg, params, device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    step_model = torch.compile(model) if cfg.compile else model

    albu_ds = None
    if cfg.augment == "custom" or cfg.augment_backend == "albumentations":
        albu_ds = AlbumentationsDataset(np.asarray(train_x), np.asarray(train_y), albumentations_pipeline(cfg.augment, cfg.augment_pipeline))
    else:  # the fast path: the fold's uint8 images live on the training device
        augment = BatchAugment(cfg.augment)
        xs = torch.from_numpy(np.ascontiguousarray(train_x)).to(device)
        ys = torch.from_numpy(np.asarray(train_y, dtype=np.int64)).to(device)
    vx = torch.from_numpy(np.ascontiguousarray(val_x))
    vy = np.asarray(val_y, dtype=np.int64)
    n = len(train_x)
    steps_per_epoch = max(1, n // cfg.batch_size)  # drop the ragged last batch (BN on tiny batches)
    total = steps_per_epoch * cfg.epochs

    state: dict[str, Any] = {"epoch": 0, "history": [], "best_loss": float("inf"), "best_epoch": 0, "best_state": None, "bad_epochs": 0}
    if checkpoint is not None and checkpoint.exists():
        ck = torch.load(checkpoint, map_location=device, weights_only=False)  # our own file, written below
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        scaler.load_state_dict(ck["scaler"])
        state = ck["state"]
        tqdm.write(f"{desc} resuming after epoch {state['epoch']} from {checkpoint.name}")

    gen = torch.Generator(device=device)
    step = state["epoch"] * steps_per_epoch
    images_per_s = 0.0
    for epoch in range(state["epoch"], cfg.epochs):
        if cfg.patience and state["bad_epochs"] >= cfg.patience:
            break
        model.train()
        gen.manual_seed(_seed_for(seed, fold, epoch))
        t0 = time.perf_counter()
        sum_loss = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        if albu_ds is not None:
            cpu_gen = torch.Generator().manual_seed(_seed_for(seed, fold, epoch))
            batches = torch.utils.data.DataLoader(albu_ds, batch_size=cfg.batch_size, shuffle=True, drop_last=True, generator=cpu_gen, num_workers=cfg.num_workers)
            it = ((x.to(device, non_blocking=True), y.to(device, non_blocking=True)) for x, y in batches)
        else:
            perm = torch.randperm(n, generator=gen, device=device)[: steps_per_epoch * cfg.batch_size].view(steps_per_epoch, cfg.batch_size)
            it = ((augment(_prep(xs[idx], cfg), gen), ys[idx]) for idx in perm)
        bar = tqdm(it, total=steps_per_epoch, desc=f"{desc} ep {epoch + 1}/{cfg.epochs}", leave=False, disable=not progress, mininterval=1.0)
        for x, y in bar:
            if albu_ds is not None and cfg.normalize:
                x = (x - MEAN) / STD
            for g in opt.param_groups:
                g["lr"] = cfg.lr * lr_factor(cfg, step, total, steps_per_epoch)
            with _autocast(device, dtype):
                logits = step_model(_to_model(x, cfg))
                loss = loss_fn(cfg, logits, y)
                reg = getattr(model, "regularization_loss", None)
                if reg is not None:
                    loss = loss + reg()
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            step += 1
            seen += len(y)
            sum_loss += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
            if progress and step % 20 == 0:
                bar.set_postfix(loss=f"{sum_loss.item() / seen:.4f}", acc=f"{correct.item() / seen:.4f}", img_s=f"{seen / (time.perf_counter() - t0):.0f}")
        train_time = time.perf_counter() - t0
        images_per_s = seen / max(train_time, 1e-9)
        val_logits = predict(model, vx, cfg, device, dtype)
        val_loss = float(F.cross_entropy(torch.from_numpy(val_logits), torch.from_numpy(vy)).item())
        val_acc = float((val_logits.argmax(1) == vy).mean())
        row = {
            "fold": fold, "seed": seed, "epoch": epoch + 1,
            "train_loss": round(sum_loss.item() / max(seen, 1), 6), "train_acc": round(correct.item() / max(seen, 1), 6),
            "val_loss": round(val_loss, 6), "val_acc": round(val_acc, 6),
            "lr": cfg.lr * lr_factor(cfg, max(step - 1, 0), total, steps_per_epoch), "images_per_s": round(images_per_s, 1),
            "seconds": round(train_time, 2),
        }  # fmt: skip
        state["history"].append(row)
        if val_loss < state["best_loss"]:
            state.update(best_loss=val_loss, best_epoch=epoch + 1, best_state=copy.deepcopy(model.state_dict()), bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch + 1
        if checkpoint is not None:
            with atomic.atomic_path(checkpoint) as tmp:
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "scaler": scaler.state_dict(), "state": state}, tmp)
        if progress:
            tqdm.write(f"{desc} epoch {epoch + 1}/{cfg.epochs}  train {row['train_loss']:.4f}/{row['train_acc']:.4f}  val {val_loss:.4f}/{val_acc:.4f}  {images_per_s:.0f} img/s")
    if state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
    return FitResult(model=model, history=state["history"], best_epoch=state["best_epoch"], images_per_s=images_per_s)
