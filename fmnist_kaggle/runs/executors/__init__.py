"""Where (fold, seed) units train: one module per executor in this folder (`local`, `ray`).

An executor takes units (`submit`) and hands back each one's result as it finishes
(`next_done`); `cancel` stops what is still queued or running (a deadline). It never
touches a run folder: the driver (`runs.driver.drive`) records every result through the
same code, so a run's artifacts do not show where it was trained. Each executor module
defines `make(address, cpus_per_task, progress) -> Executor`; adding one is adding a file.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from fmnist_kaggle import registry
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.training.deadline import Deadline, UnitLate

if TYPE_CHECKING:  # the driver imports these; the CLI lists executors without loading training code
    import numpy as np

    from fmnist_kaggle.runs.trainset import TrainingData
    from fmnist_kaggle.runs.unit import UnitResult
    from fmnist_kaggle.training.config import TrainConfig
    from fmnist_kaggle.training.estimate import Throughput


@dataclass
class Unit:
    """One (fold, seed) training of one run."""

    run: str
    cfg: TrainConfig
    data: TrainingData
    fold: int
    seed: int
    checkpoint: Path | None = None  # epoch checkpoint (local executor only: workers share no disk)
    # the deadline its steps obey and the pace check of its run (an executor that trains here
    # stops the unit at it: DeadlineReached, UnitLate). Never sent to workers.
    deadline: Deadline | None = None
    # the steps a unit starting now may take, given its run's (an executor that trains here asks
    # as the unit starts: the autopilot's units measure the machine and the next ones follow)
    size: Callable[[TrainConfig], int] | None = None

    def sized(self) -> TrainConfig:
        """The config this unit trains with: its run's, or cut to fewer optimizer steps when it
        starts afresh and its run's would end after the deadline (a unit with a checkpoint
        resumes as it began: the run's size)."""
        if self.size is None or (self.checkpoint is not None and self.checkpoint.exists()):
            return self.cfg
        rows = len(self.data.split(self.fold)[0])
        steps, nominal = self.size(self.cfg), self.cfg.total_steps(rows)
        if steps >= nominal:
            return self.cfg
        spe = self.cfg.steps_per_epoch(rows)
        return replace(self.cfg, epochs=math.ceil(steps / spe), max_steps=steps).validate()

    def __str__(self) -> str:
        return f"{self.run} fold {self.fold} seed {self.seed}"


class UnitFailed(FkaggleError):
    """A unit that failed where it ran (after its retries); the driver carries on with the rest."""


# How an executor times several setups at once: short interleaved looks, so a portfolio is timed in seconds.
PROBE = {"seconds": 0.75, "min_steps": 3, "predict_rows": 512}


def first_line(exc: BaseException) -> str:
    """An exception's first line of text (its type when it has none): what a failed unit says."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class Executor(Protocol):
    """Where units train. Every member is required (docs/architecture.md, "an executor")."""

    capacity: int  # units it trains at once
    shows_unit_progress: bool  # per-epoch bars of its own (the driver then draws none)
    trains_here: bool  # units train in this process: their device is checked before a run starts,
    # and they obey their `Unit.deadline` between steps

    def submit(self, unit: Unit) -> None: ...

    def next_done(self, timeout: float | None = None) -> tuple[Unit, UnitResult | UnitFailed | UnitLate] | None:
        """The next finished unit and its outcome; None: nothing finished within `timeout` seconds."""

    def cancel(self) -> list[Unit]:
        """Stop what is queued or running; returns the units that will not come back."""

    def measure(
        self, cfgs: list[TrainConfig], images: np.ndarray, labels: np.ndarray, num_classes: int
    ) -> list[Throughput]:
        """Each config's (training, prediction) speed, measured where its units would train, all of
        them interleaved (they share the machine's noise)."""

    def describe_machine(self, device: str) -> str:
        """The key speeds measured on this executor are kept under (a machine, or a cluster)."""

    def close(self) -> None: ...


def executor_names() -> tuple[str, ...]:
    """The executors `--executor` offers (the modules of this folder)."""
    return registry.names(__name__)


def make_executor(
    kind: str = "local", address: str | None = None, cpus_per_task: int = 1, progress: bool = True
) -> Executor:
    """`--executor KIND [--address ADDR] [--cpus-per-task N]` as an executor."""
    return registry.load(__name__, kind, "executor").make(address, cpus_per_task, progress)
