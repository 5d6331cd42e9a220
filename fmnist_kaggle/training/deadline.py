"""One deadline for training, read through one clock, from the autopilot down to a training step.

A `Deadline` says when no training step may start any more (`at`, on `clock`: time.monotonic, or a
test's injected clock) and, optionally, how late the work waiting on a unit would end if the unit
kept its pace (`pace(left_s, whole_s)`, the autopilot's projection). AutoGluon passes a time limit
down as seconds; this is the same number with its clock. Each layer asks the same object: the
driver before it starts a unit, the executor for how long to wait, the training loop between
steps (`StepGuard`). Two exceptions say what happened: `DeadlineReached` (the deadline is here;
the last epoch's checkpoint is kept) and `UnitLate` (at this pace the unit's run would end too
late, so it stopped part-way; its checkpoint is kept too).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from fmnist_kaggle.errors import FkaggleError

PACE_SHARE = 0.2  # of a unit's steps trained before its pace is trusted to project its end


class DeadlineReached(FkaggleError):
    """A deadline came before training finished; the last epoch's checkpoint is kept."""


class UnitLate(FkaggleError):
    """A unit stopped part-way: at its pace its run would end too late (the deadline's `pace`);
    the last epoch's checkpoint is kept and the driver stops the rest of its run."""

    def __init__(self, message: str, images_per_s: float, late_s: float) -> None:
        super().__init__(message)
        self.images_per_s, self.late_s = images_per_s, late_s


def _constant(value: float) -> Callable[[], float]:
    return lambda: value


@dataclass(frozen=True)
class Deadline:
    """When no training step may start (`at()`, on `clock`), and optionally how late a unit's run
    would end at a pace (`pace(seconds of training left, seconds of the whole unit)`)."""

    at: Callable[[], float]  # a function: the autopilot's deadline moves as runs finish
    clock: Callable[[], float] = time.monotonic
    pace: Callable[[float, float], float] | None = None
    started: float | None = None  # when the limit began (on `clock`), where known

    @classmethod
    def at_time(
        cls, when: float, clock: Callable[[], float] = time.monotonic, started: float | None = None
    ) -> Deadline:
        return cls(_constant(when), clock, started=started)

    @classmethod
    def after(cls, seconds: float, clock: Callable[[], float] = time.monotonic) -> Deadline:
        now = clock()
        return cls.at_time(now + seconds, clock, started=now)

    def elapsed_since_start(self) -> float:
        """Seconds since the limit began (0 where unknown)."""
        return 0.0 if self.started is None else self.clock() - self.started

    def left(self) -> float:
        return self.at() - self.clock()

    def passed(self) -> bool:
        return self.clock() >= self.at()

    def late_by(self, left_s: float, whole_s: float) -> float:
        """Seconds the unit's run would end late at this pace (negative: early; -inf: never asked)."""
        return self.pace(left_s, whole_s) if self.pace is not None else -math.inf

    def with_pace(self, pace: Callable[[float, float], float] | None) -> Deadline:
        return replace(self, pace=pace)

    def frozen(self) -> Deadline:
        """The same deadline with `at` read once: what a unit starting now obeys."""
        return replace(self, at=_constant(self.at()))


class StepGuard:
    """What the training loop asks between steps: has the deadline come (`before_step`), and, once
    PACE_SHARE of the unit's steps are trained, would its pace end its run late (`check_pace`)."""

    def __init__(
        self, deadline: Deadline, total_steps: int, start_step: int, batch_size: int, work: np.ndarray | None = None
    ) -> None:
        self.deadline, self.total, self.start, self.batch = deadline, total_steps, start_step, batch_size
        # work[i]: full-cost steps' worth of work before step i (progressive.work_before: some steps cost less)
        self.work = work if work is not None else np.arange(total_steps + 1, dtype=np.float64)
        self.t0 = deadline.clock()

    def before_step(self, step: int, where: str) -> None:
        if self.deadline.passed():
            raise DeadlineReached(f"{where}: deadline reached at step {step + 1}; resumes from the last finished epoch")

    def check_pace(self, step: int, where: str) -> None:
        done = step - self.start
        if self.deadline.pace is None or done < max(1.0, PACE_SHARE * (self.total - self.start)):
            return
        per_step = (self.deadline.clock() - self.t0) / max(self.work[step] - self.work[self.start], 1e-9)
        late = self.deadline.late_by(per_step * (self.work[-1] - self.work[step]), per_step * self.work[-1])
        if late > 0:
            raise UnitLate(
                f"{where}: at {1000 * per_step:.0f} ms a (full-cost) step it would end {late:.0f} s late",
                self.batch / per_step,
                late,
            )
