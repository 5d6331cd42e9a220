"""How long a training will take, measured before it starts.

A few real training steps (the run's model, batch size, precision, augmentation, mixup, EMA)
and a prediction pass with its test-time views give two speeds; a (fold, seed) unit's time
follows from the epochs, the rows and the evaluations it does. Measuring beats tables of
known speeds: the same recipe runs at 81 img/s or 57,000 img/s depending on the machine.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from fmnist_kaggle.training.config import TrainConfig
from fmnist_kaggle.training.fit import BN_REFRESH_STEPS, REFRESH_ROWS, make_stepper, refresh_batchnorm, train_epoch
from fmnist_kaggle.training.inference import predict
from fmnist_kaggle.training.optim import train_live_groups
from fmnist_kaggle.training.progressive import work_share

REFRESH_IPS_MAX = 1e6  # a model without batch norm refreshes nothing in ~0 s: a finite, plausible speed for it
UNIT_FIXED_S = 1.0  # a unit's seconds besides its steps and predictions, until measured (model, init, writes)


@dataclass(frozen=True)
class Throughput:
    """Measured speeds of one config on this machine."""

    train_ips: float  # training images per second (forward, backward, step, augmentation)
    predict_ips: float  # images predicted per second, all test-time views included
    device: str
    precision: str
    fixed_s: float = UNIT_FIXED_S  # a unit's seconds besides training and predicting (setup, checkpoints, writes)
    refresh_ips: float = 0.0  # images a batch-norm refresh passes per second (0: not measured; train_ips then)

    def refresh_speed(self) -> float:
        """A refresh is one forward pass in training mode, without test-time views: near the
        prediction speed on an fp32 CPU, near the training speed where training runs in bf16."""
        return self.refresh_ips or self.train_ips

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _NoBar:
    disable = True

    def update(self, n: int) -> None:
        pass


def measure_throughput(
    cfg: TrainConfig,
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    seconds: float = 2.0,
    max_steps: int = 12,
) -> Throughput:
    """Time training steps for about `seconds` (after one untimed step; at least one timed
    step, at most `max_steps`) and prediction passes on the given rows (uint8 (N, 28, 28),
    labels 0..K-1). The median step and the faster of two passes count: a stall of a shared
    machine in one of them says nothing about the run. A loss that diverges here is no concern
    of a speed (the run's own units fail for it). Nothing is written."""
    return measure_throughputs([cfg], images, labels, num_classes, seconds, max_steps)[0]


def measure_throughputs(
    cfgs: list[TrainConfig],
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    seconds: float = 2.0,
    max_steps: int = 12,
    predict_rows: int = 1024,
    min_steps: int = 1,
) -> list[Throughput]:
    """`measure_throughput` for several configs at once, their steps and prediction passes
    interleaved (one step of each in turn, `seconds` each in all, at least `min_steps` each): a
    busy moment of a shared machine slows them alike, so their ratios hold and one correction
    fixes them all. Each speed also keeps its setup seconds on these rows (model, init, batches)."""
    probes = [
        _Probe(replace(cfg, batch_size=min(cfg.batch_size, len(images))), images, labels, num_classes) for cfg in cfgs
    ]
    for probe in probes:
        probe.step()  # warm-up: allocations, kernel choice
    t_end = time.perf_counter() + seconds * len(probes)
    while len(probes[0].times) < max_steps and (len(probes[0].times) < min_steps or time.perf_counter() < t_end):
        for probe in probes:
            probe.timed_step()
    rows = torch.from_numpy(
        np.require(images[: max(max(c.eval_batch_size for c in cfgs), predict_rows)], requirements=["C", "W"])
    )
    for probe in probes:  # warm-up; predictions are fp32, as every unit makes them
        predict(probe.s.eval_model, rows[:64], probe.cfg, probe.s.device)
    for _ in range(2):
        for probe in probes:
            probe.timed_pass(rows[: max(probe.cfg.eval_batch_size, predict_rows)])
            probe.timed_refresh(images[:predict_rows])
    return [probe.throughput() for probe in probes]


class _Probe:
    """One config being timed: its stepper, its endless feed of batches, its step and pass times."""

    def __init__(self, cfg: TrainConfig, images: np.ndarray, labels: np.ndarray, num_classes: int) -> None:
        t0 = time.perf_counter()
        self.cfg = cfg
        self.s, batches = make_stepper(replace(cfg, resize_from=0), num_classes, images, labels)  # full-size steps
        self.setup_s = time.perf_counter() - t0
        self.feed = itertools.chain.from_iterable(batches.epoch_batches(e, e) for e in itertools.count())
        self.times: list[float] = []
        self.passes: list[tuple[int, float]] = []
        self.refreshes: list[tuple[int, float]] = []

    def step(self) -> None:
        train_live_groups(self.s.opt.param_groups, 0)  # a full-cost step (every parameter training): what speeds are of
        train_epoch(self.s, itertools.islice(self.feed, 1), "throughput", _NoBar(), check_finite=False)

    def timed_step(self) -> None:
        t0 = time.perf_counter()
        self.step()
        self.times.append(time.perf_counter() - t0)

    def timed_pass(self, rows: torch.Tensor) -> None:
        t0 = time.perf_counter()
        predict(self.s.eval_model, rows, self.cfg, self.s.device)
        self.passes.append((len(rows), time.perf_counter() - t0))

    def timed_refresh(self, rows: np.ndarray) -> None:
        t0 = time.perf_counter()
        refresh_batchnorm(self.s.eval_model, rows, self.cfg, self.s.device)
        self.refreshes.append((len(rows), time.perf_counter() - t0))

    def throughput(self) -> Throughput:
        rows, fastest = min(self.passes, key=lambda p: p[1])
        refreshed, refresh_s = min(self.refreshes, key=lambda p: p[1])
        dtype = self.s.dtype
        return Throughput(
            round(self.cfg.batch_size / max(float(np.median(self.times)), 1e-9), 1),
            round(rows / max(fastest, 1e-9), 1),
            str(self.s.device),
            str(dtype).replace("torch.", "") if dtype else "float32",
            round(UNIT_FIXED_S + self.setup_s, 2),  # until a unit measures its own
            round(min(REFRESH_IPS_MAX, refreshed / max(refresh_s, 1e-9)), 1),
        )


@dataclass(frozen=True)
class Shape:
    """The rows one (fold, seed) unit trains, validates and predicts."""

    train_rows: int
    val_rows: int
    test_rows: int


def unit_shape(rows: int, folds: int, test_rows: int) -> Shape:
    val = rows // folds
    return Shape(rows - val, val, test_rows)


def unit_seconds(
    cfg: TrainConfig, speed: Throughput, train_rows: int, val_rows: int, test_rows: int, epochs: int | None = None
) -> float:
    """Estimated seconds of one (fold, seed) unit: its epochs of training, each followed by a
    validation pass (and a batch-norm refresh on short runs), then the final predictions."""
    cfg = replace(cfg, epochs=cfg.epochs if epochs is None else epochs)
    batch = min(cfg.batch_size, train_rows)
    per_epoch, steps = cfg.steps_per_epoch(train_rows), cfg.total_steps(train_rows)
    epochs = math.ceil(steps / per_epoch)
    validations = epochs // cfg.eval_every + (epochs % cfg.eval_every > 0) if cfg.eval_every else 1
    per_validation = val_rows / speed.predict_ips
    if steps < BN_REFRESH_STEPS:  # update_bn before each validation, at its measured speed
        per_validation += min(train_rows, REFRESH_ROWS) / speed.refresh_speed()
    training = steps * batch * work_share(cfg, steps) / speed.train_ips  # speeds are of full-cost images
    return training + validations * per_validation + test_rows / speed.predict_ips + speed.fixed_s


RUN_ESTIMATE_MIN_IMAGES = 50_000  # below this many training images a run takes minutes at worst: not timed
MIN_STEPS = 50  # optimizer steps of a unit below which a run learns next to nothing (14 steps on 4,000 rows: CV 0.65)


def units_seconds(cfg: TrainConfig, speed: Throughput, shape: Shape, units: int, steps: int) -> float:
    """Estimated seconds of `units` units of the config cut to `steps` optimizer steps each."""
    sized = replace(cfg, epochs=math.ceil(steps / cfg.steps_per_epoch(shape.train_rows)), max_steps=steps)
    return units * unit_seconds(sized, speed, shape.train_rows, shape.val_rows, shape.test_rows)


def most_steps(low: int, high: int, fits: Callable[[int], bool]) -> int | None:
    """The largest step count in [low, high] that `fits`, or None. Estimates grow with the steps
    on each side of BN_REFRESH_STEPS, not across it (a shorter run also refreshes batch norm
    before each validation), so each side is searched alone, the longer runs first."""
    for lo, hi in ((max(low, BN_REFRESH_STEPS), high), (low, min(high, BN_REFRESH_STEPS - 1))):
        if lo > hi or not fits(lo):
            continue
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
        return lo
    return None


def steps_within(cfg: TrainConfig, speed: Throughput, shape: Shape, units: int, seconds: float) -> int | None:
    """The most optimizer steps a unit may take (the config's own at most) for `units` units to fit
    `seconds` at `speed`; None when even MIN_STEPS do not fit."""
    most = cfg.total_steps(shape.train_rows)
    return most_steps(
        min(MIN_STEPS, most), most, lambda steps: units_seconds(cfg, speed, shape, units, steps) <= seconds
    )


def measure_run_time(
    cfg: TrainConfig, images: np.ndarray, labels: np.ndarray, num_classes: int, units: int, test_rows: int
) -> tuple[float, Throughput] | None:
    """Estimated seconds of `units` (fold, seed) units of a run on these training rows, timed
    on this machine (a second or two of real steps); None for a run too small to be worth it."""
    shape = unit_shape(len(images), cfg.folds, test_rows)
    if units * cfg.epochs * shape.train_rows < RUN_ESTIMATE_MIN_IMAGES:
        return None
    sample = slice(0, min(len(images), 4 * max(cfg.batch_size, cfg.eval_batch_size)))
    speed = measure_throughput(cfg, images[sample], labels[sample], num_classes, seconds=1.5, max_steps=8)
    return units * unit_seconds(cfg, speed, shape.train_rows, shape.val_rows, shape.test_rows), speed


def measure_runs_time(
    cfgs: list[TrainConfig],
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    test_rows: int,
    always: bool = False,
) -> tuple[float, Throughput] | None:
    """Estimated seconds of whole runs (every fold and seed of each config: a sweep's trials),
    timed on this machine once per distinct model setup; None when all together are too small
    to be worth timing. The speed returned is the first config's."""
    shapes = [unit_shape(cfg.subset or len(images), cfg.folds, test_rows) for cfg in cfgs]
    images_trained = sum(len(c.seeds) * c.folds * c.epochs * sh.train_rows for c, sh in zip(cfgs, shapes, strict=True))
    if images_trained < RUN_ESTIMATE_MIN_IMAGES and not always:
        return None
    speeds: dict[str, Throughput] = {}
    total = 0.0
    sample = slice(0, min(len(images), 4 * max(max(c.batch_size, c.eval_batch_size) for c in cfgs)))
    for cfg, sh in zip(cfgs, shapes, strict=True):
        key = cfg.speed_key()
        if key not in speeds:
            speeds[key] = measure_throughput(cfg, images[sample], labels[sample], num_classes, seconds=1.0, max_steps=6)
        total += len(cfg.seeds) * cfg.folds * unit_seconds(cfg, speeds[key], sh.train_rows, sh.val_rows, sh.test_rows)
    return total, next(iter(speeds.values()))


def epoch_seconds(cfg: TrainConfig, speed: Throughput, train_rows: int, val_rows: int) -> float:
    """The marginal cost of one more epoch of one unit (with its validation, if it has one)."""
    batch = min(cfg.batch_size, train_rows)
    return cfg.steps_per_epoch(train_rows) * batch / speed.train_ips + (
        val_rows / speed.predict_ips if cfg.eval_every == 1 else 0.0
    )
