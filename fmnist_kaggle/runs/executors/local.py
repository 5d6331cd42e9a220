"""`--executor local` (the default): units train one at a time in this process."""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np

from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.runs.executors import PROBE, Unit, UnitFailed, UnitLate, first_line
from fmnist_kaggle.runs.unit import UnitResult, train_unit
from fmnist_kaggle.storage.atomic import WriteFailed
from fmnist_kaggle.training.config import TrainConfig
from fmnist_kaggle.training.deadline import Deadline, DeadlineReached

if TYPE_CHECKING:
    from fmnist_kaggle.training.estimate import Throughput

log = logging.getLogger(__name__)


class LocalExecutor:
    """Train units one at a time in this process, with epoch checkpoints. A unit that diverges
    or crashes is handed back as failed (as on Ray), so a session goes on with its next unit;
    Ctrl-C still stops everything at once."""

    capacity = 1
    trains_here = True  # units train in this process (its device is checked before a run starts)
    shows_unit_progress = True

    def __init__(self, progress: bool = True) -> None:
        self.progress = progress
        self._queue: deque[Unit] = deque()
        self._stopped: list[Unit] = []  # units a timeout stopped mid-training (their checkpoints stay)

    def submit(self, unit: Unit) -> None:
        self._queue.append(unit)

    def next_done(self, timeout: float | None = None) -> tuple[Unit, UnitResult | UnitFailed | UnitLate] | None:
        """Train the next unit here and now. No training step starts after its deadline (the unit's
        own, read once as it starts, else `timeout` seconds from now): None, the unit stopped,
        resumable from its last epoch's checkpoint. A unit whose pace would end its run too late
        (its deadline's `pace`) comes back as UnitLate (resumable too)."""
        unit = self._queue.popleft()
        deadline = unit.deadline.frozen() if unit.deadline is not None else None
        if deadline is None and timeout is not None:
            deadline = Deadline.after(timeout)
        try:
            cfg = unit.sized()
            result = train_unit(
                cfg,
                unit.data,
                unit.fold,
                unit.seed,
                checkpoint=unit.checkpoint,
                progress=self.progress,
                desc=f"[{unit.run} f{unit.fold} s{unit.seed}]",
                deadline=deadline,
                resized=cfg is not unit.cfg,
            )
        except UnitLate as exc:
            return unit, UnitLate(f"{unit}: {exc}", exc.images_per_s, exc.late_s)
        except DeadlineReached:
            self._stopped.append(unit)
            return None
        except WriteFailed:  # a full disk fails every unit alike: one line, not one failure per unit
            raise
        # a diverged or crashed unit is a result: the driver records it, the rest goes on
        except Exception as exc:  # noqa: BLE001
            log.debug(f"{unit} failed", exc_info=True)
            return unit, UnitFailed(f"{unit} failed: {type(exc).__name__}: {first_line(exc)}")
        result.summary["executor"] = "local"
        return unit, result

    def measure(
        self, cfgs: list[TrainConfig], images: np.ndarray, labels: np.ndarray, num_classes: int
    ) -> list[Throughput]:
        """The configs' training and prediction speeds here, where their units would train (interleaved)."""
        from fmnist_kaggle.training.estimate import measure_throughputs

        return measure_throughputs(cfgs, images, labels, num_classes, **PROBE)

    def describe_machine(self, device: str) -> str:
        """This machine: speeds measured here are kept under its CPU, threads, torch and device."""
        from fmnist_kaggle.training.device import machine_key

        return machine_key(device)

    def cancel(self) -> list[Unit]:
        """Queued units are dropped, with those a timeout stopped; nothing runs between calls of `next_done`."""
        dropped, self._queue, self._stopped = self._stopped + list(self._queue), deque(), []
        return dropped

    def close(self) -> None:
        self._queue.clear()

    def __enter__(self) -> "LocalExecutor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def make(address: str | None, cpus_per_task: int, progress: bool) -> LocalExecutor:
    if address:
        raise FkaggleError("--address joins a Ray cluster: it needs --executor ray")
    return LocalExecutor(progress)
