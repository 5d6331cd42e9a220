"""One (fold, seed) training: `train_unit` trains and predicts wherever an executor runs it
(no file writes but its epoch checkpoint); `save_unit` records its artifacts in the run folder."""

from __future__ import annotations

import io
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_kaggle.runs.trainset import TrainingData
from fmnist_kaggle.storage import atomic, csvfile
from fmnist_kaggle.storage.artifacts import utc_now, write_array, write_recorded
from fmnist_kaggle.storage.layout import RunDir
from fmnist_kaggle.training.config import TrainConfig
from fmnist_kaggle.training.deadline import Deadline


@dataclass
class UnitResult:
    """Everything one (fold, seed) training produces; written by `save_unit` wherever it ran."""

    fold: int
    seed: int
    val_logits: np.ndarray
    test_logits: np.ndarray
    model_bytes: bytes  # torch.save of the state dict (tensors only)
    history: list[dict[str, Any]]
    summary: dict[str, Any]


def train_unit(
    cfg: TrainConfig,
    data: TrainingData,
    fold: int,
    seed: int,
    checkpoint: Path | None = None,
    progress: bool = False,
    desc: str = "",
    deadline: Deadline | None = None,
    resized: bool = False,
) -> UnitResult:
    """Train one seed on one fold and predict its held-out rows and the test set (fp32).
    `deadline`: what the steps obey (DeadlineReached, UnitLate). `resized`: `cfg` is its run's cut
    to fewer steps (recorded in its summary and checkpoint tag: it resumes only as it began)."""
    import torch

    from fmnist_kaggle.training.device import resolve_device
    from fmnist_kaggle.training.fit import fit, timed
    from fmnist_kaggle.training.inference import predict

    t0 = time.perf_counter()
    _, va = data.split(fold)
    train = data.train
    x, y, w = fold_rows(cfg, data, fold)
    soft, start, spent = _from_earlier_runs(cfg, data, fold, x)
    result = fit(
        cfg,
        train.num_classes,
        x,
        y,
        train.images[va],
        train.labels[va],
        fold=fold,
        seed=seed,
        checkpoint=checkpoint,
        progress=progress,
        desc=desc,
        train_w=w,
        deadline=deadline,
        checkpoint_tag=_tag(data, fold, seed, cfg.max_steps if resized else None),
        train_t=soft,
        start=start,
    )
    device = resolve_device(cfg.device)
    times = {**result.times, **spent}
    with timed(times, "predict"):
        val = (
            result.val_logits
            if result.val_logits is not None
            else predict(result.model, torch.from_numpy(train.images[va]), cfg, device)
        )
        test = (
            predict(result.model, torch.from_numpy(_writable(data.test.images)), cfg, device)
            if data.test is not None
            else np.zeros((0, train.num_classes), np.float32)
        )
    buf = io.BytesIO()
    torch.save(result.model.state_dict(), buf)
    summary = {
        "fold": fold,
        "seed": seed,
        **result.summary(),
        "steps": cfg.total_steps(len(x)),  # optimizer steps it trained (a unit sized to the time left: fewer)
        **({"sized_to_time": True} if resized else {}),
        "host": platform.node(),
        "unit_seconds": round(time.perf_counter() - t0, 1),
        "finished": utc_now(),
    }
    return UnitResult(fold, seed, val, test, buf.getvalue(), result.history, summary)


def fold_rows(cfg: TrainConfig, data: TrainingData, fold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """What fold k trains on: its training rows, and with pseudo-labels the test rows its teachers'
    fold-k models label (weighted by pseudo_weight; None: every row weighs 1)."""
    tr, _ = data.split(fold)
    x, y = data.train.images[tr], data.train.labels[tr]
    if data.pseudo is None:
        return x, y, None
    rows = data.pseudo.rows[fold]
    x, y = np.concatenate([x, data.test.images[rows]]), np.concatenate([y, data.pseudo.labels[fold]])
    return x, y, np.r_[np.ones(len(tr), np.float32), np.full(len(rows), cfg.pseudo_weight, np.float32)]


def _from_earlier_runs(
    cfg: TrainConfig, data: TrainingData, fold: int, x: np.ndarray
) -> tuple[np.ndarray | None, dict[str, Any] | None, dict[str, float]]:
    """What fold k learns from earlier runs' fold-k models (which never saw its held-out rows):
    a distillation teacher's logits for its training rows, the weights a continuation starts
    from (each None without one), and the seconds the teacher's pass took (`times.teacher`)."""
    from fmnist_kaggle.runs.distill import teacher_logits
    from fmnist_kaggle.runs.fold_models import start_state

    start = start_state(data.start, fold) if data.start is not None else None
    if data.teacher is None:
        return None, start, {}
    t0 = time.perf_counter()
    soft = teacher_logits(data.teacher, fold, x, cfg.device)
    return soft, start, {"teacher": time.perf_counter() - t0}


def _tag(data: TrainingData, fold: int, seed: int, max_steps: int | None) -> dict[str, Any]:
    """What a unit's checkpoint belongs to: the run, the fold, the seed (and a size of its own)."""
    tag = {"identity": data.identity, "fold": fold, "seed": seed}
    return {**tag, "max_steps": max_steps} if max_steps is not None else tag


def _writable(a: np.ndarray) -> np.ndarray:
    """Arrays that came through Ray's object store are read-only views: copy before torch uses them."""
    return a if a.flags.writeable else a.copy()


def save_unit(rd: RunDir, result: UnitResult, identity: dict[str, Any]) -> None:
    """Record a finished (fold, seed): artifacts first, the summary naming their hashes last."""
    fd = rd.fold(result.fold)
    s = result.seed
    t0 = time.perf_counter()
    arts = {
        fd.seed_val(s).name: write_array(fd.seed_val(s), result.val_logits),
        fd.seed_test(s).name: write_array(fd.seed_test(s), result.test_logits),
        fd.seed_model(s).name: write_recorded(fd.seed_model(s), result.model_bytes),
        fd.seed_history(s).name: write_recorded(fd.seed_history(s), csvfile.csv_text(result.history).encode()),
    }
    result.summary["times"] = {**result.summary.get("times", {}), "write": round(time.perf_counter() - t0, 2)}
    summary = {**result.summary, "identity": identity, "artifacts": arts}
    atomic.write_json(fd.seed_summary(s), summary)
    fd.checkpoint(s).unlink(missing_ok=True)
