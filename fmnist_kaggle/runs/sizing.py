"""How long a run will take, said before it trains, and a new run sized to a --time-limit (the
sums are `training.timing`'s): the estimates `fold-train`, `sweep` and `reproduce` print."""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Any

from fmnist_kaggle.data.competition import Competition
from fmnist_kaggle.data.folds import check_folds
from fmnist_kaggle.durations import duration, duration_arg
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.runs.trainset import TrainingData, training_rows
from fmnist_kaggle.storage.layout import Workspace
from fmnist_kaggle.training.config import TrainConfig
from fmnist_kaggle.training.deadline import Deadline
from fmnist_kaggle.training.recipes import get_recipe, recipe_names
from fmnist_kaggle.training.timing import LimitModel

log = logging.getLogger(__name__)


LONG_ON_CPU_S = 3600.0
SLOW_ON_CPU_IPS = 500.0  # a timm backbone slower than this on a CPU gets a hint of what is faster


def announce_estimate(name: str, cfg: TrainConfig, data: TrainingData, units: int) -> float | None:
    """Time a few real steps here and say how long the run will take (stderr); warn when a run
    would take hours on a CPU, naming the recipe made for one. Returns the estimate (seconds)."""
    from fmnist_kaggle.training.estimate import measure_run_time

    estimate = measure_run_time(
        cfg,
        data.train.images,
        data.train.labels,
        data.train.num_classes,
        units,
        len(data.test) if data.test is not None else 0,
    )
    return None if estimate is None else _announce(f"run {name}", f"{units} unit(s)", cfg, *estimate)


def fit_to_time(
    name: str, cfg: TrainConfig, comp: Competition, ws: Workspace, units: int, limit: Deadline
) -> TrainConfig:
    """The config sized to train its `units` by `limit` here (timed on a few real steps):
    as it is when it fits, else with fewer optimizer steps a unit (max_steps); refused in one line,
    with the limit it needs, when even MIN_STEPS a unit do not fit."""
    from fmnist_kaggle.training.estimate import MIN_STEPS, measure_throughput, steps_within, unit_shape, units_seconds

    train, test = training_rows(comp, cfg), comp.test_set
    check_folds(ws, train, cfg.folds, cfg.fold_seed)  # refused here, as the run would be, with nothing written
    shape = unit_shape(len(train), cfg.folds, len(test) if test is not None else 0)
    sample = slice(0, min(len(train), 4 * max(cfg.batch_size, cfg.eval_batch_size)))
    speed = measure_throughput(cfg, train.images[sample], train.labels[sample], train.num_classes, seconds=1.5)
    model, whole = LimitModel(), limit.left() + limit.elapsed_since_start()
    seconds = model.trainable(limit.left())
    steps = steps_within(cfg, speed, shape, units, seconds)
    if steps is None:
        need = units_seconds(cfg, speed, shape, units, min(MIN_STEPS, cfg.total_steps(shape.train_rows)))
        give = model.limit_for(need, whole - limit.left())
        raise FkaggleError(
            f"--time-limit leaves {max(0.0, seconds):.0f} s to train, and run {name} needs about {need:.0f} s for "
            f"its {units} unit(s) at the fewest steps worth training ({MIN_STEPS} a unit; {speed.train_ips:,.0f} "
            f"img/s here): give --time-limit {duration_arg(give)} or more, or fewer --folds or --seeds"
        )
    spe = cfg.steps_per_epoch(shape.train_rows)
    sized = steps < cfg.total_steps(shape.train_rows)
    estimate = units_seconds(cfg, speed, shape, units, steps)
    log.info(
        f"run {name}: estimated {duration(estimate)} for {units} unit(s) here ({speed.train_ips:,.0f} img/s)"
        + (f", sized to {steps} steps a unit ({steps / spe:.2f} epochs) to fit the --time-limit" if sized else "")
    )
    return replace(cfg, epochs=math.ceil(steps / spe), max_steps=steps).validate() if sized else cfg


def announce_plan_estimate(what: str, cfgs: list[TrainConfig], comp: Competition, always: bool = False) -> float | None:
    """The same for several whole runs (a sweep's or a reproduction's trials), timed once per model
    setup (`always`: however small they are, for a time limit)."""
    from fmnist_kaggle.training.estimate import measure_runs_time

    if not cfgs:
        return None
    train, test = comp.train_set, comp.test_set
    test_rows = len(test) if test is not None else 0
    estimate = measure_runs_time(cfgs, train.images, train.labels, train.num_classes, test_rows, always)
    return None if estimate is None else _announce(what, f"{len(cfgs)} run(s)", cfgs[0], *estimate)


def _announce(what: str, units: str, cfg: TrainConfig, seconds: float, speed: Any) -> float:
    log.info(
        f"{what}: estimated {duration(seconds)} for {units} here ({speed.train_ips:,.0f} "
        f"img/s training, {speed.predict_ips:,.0f} img/s predicting; {speed.device}, "
        f"{speed.precision})"
    )
    if speed.device == "cpu" and cfg.model.startswith("timm:") and speed.train_ips < SLOW_ON_CPU_IPS:
        log.warning(
            f"note: {cfg.model} trains at {speed.train_ips:,.0f} img/s on this CPU (timm backbones are made for "
            f"GPUs and 224-pixel images); --recipe fast ({get_recipe('fast').settings['model']}) trains several "
            "thousand images a second here and scores about 94% on Fashion-MNIST"
        )
    if speed.device == "cpu" and seconds > LONG_ON_CPU_S:
        made_for = get_recipe(cfg.recipe).hardware if cfg.recipe else None
        instead = (
            f"--recipe {' or '.join(recipe_names('cpu'))} (made for CPUs)"
            if made_for != "cpu"
            else "fewer --epochs or --folds, a --subset to try things"
        )
        why = f"recipe {cfg.recipe} is tuned for a GPU" if made_for == "gpu" else "long for a CPU"
        log.warning(
            f"warning: {what} would train for about {duration(seconds)} on this CPU "
            f"({speed.train_ips:,.0f} img/s): {why}; "
            f"use {instead}, or a GPU (here with CUDA, or --executor ray --address HEAD:PORT); "
            "Ctrl-C keeps finished folds"
        )
    return seconds
