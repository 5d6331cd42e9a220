"""Watching the session's runs train: each finished unit corrects the estimates (and the kept
speed when it drifted). Work is not thrown away for seconds: a unit is stopped part-way only when
it could not end before the step deadline anyway (that deadline would cut it), and a run's next
unit starts only when it is projected to end by then; a run cut short is assembled over its
finished folds (partial), so it still counts. A run the first units show was sized far too short
is stopped for a run sized to the time left. Each run's outcome is recorded."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from fmnist_kaggle.durations import duration
from fmnist_kaggle.runs.driver import RunJob
from fmnist_kaggle.runs.store import assemble
from fmnist_kaggle.runs.unit import UnitResult
from fmnist_kaggle.search.autopilot import policy
from fmnist_kaggle.search.autopilot.session import Session
from fmnist_kaggle.training.config import TrainConfig
from fmnist_kaggle.training.deadline import UnitLate
from fmnist_kaggle.training.estimate import MIN_STEPS, Throughput, most_steps, unit_seconds, units_seconds
from fmnist_kaggle.training.timing import MIN_UNIT_SHARE, PROBE_SLOW, lateness

log = logging.getLogger(__name__)
REBUY_MARGIN = 0.003  # expected held-out accuracy a run sized anew must gain over finishing the one training


class Watch:
    """The runs training now: when each started, its units' times, why one was stopped."""

    def __init__(self, session: Session, on_complete: Callable[[], object] = lambda: None) -> None:
        self.s = session
        self.on_complete = on_complete  # the session's choice, made again as each run completes
        self.unit_times: dict[str, list[float]] = {}
        self.stopped: dict[str, str] = {}

    def start(self, job: RunJob) -> RunJob:
        """A run starts (or resumes) training: its units obey the session's deadline and pace, and
        each one after its first is sized to the time left as it starts (`unit_steps`)."""
        s = self.s
        s.training.add(job, s.clock.now())
        job.deadline = s.deadline().with_pace(partial(self.late_by, job))
        job.size = partial(self.unit_steps, job)
        return job

    def unit_steps(self, job: RunJob, cfg: TrainConfig) -> int:
        """The optimizer steps a unit of `job` starting now may take: its run's, or fewer so it ends
        by the training deadline at the speed its run's units measured (a speed error is absorbed
        by the units after the first, never by throwing one away); at least MIN_UNIT_SHARE of
        its run's and MIN_STEPS."""
        s, shape = self.s, self.s.shape()
        nominal, speed = cfg.total_steps(shape.train_rows), self.speed_of(job)
        if s.executor.capacity > 1 or speed is None or not self.unit_times.get(job.rd.name):
            return nominal  # the first unit measures the machine
        left = s.time.training_deadline(s.complete()) - s.clock.now()
        fits = lambda n: units_seconds(cfg, speed, shape, 1, n) * s.time.calibration <= left  # noqa: E731
        if fits(nominal):
            return nominal
        sized = most_steps(min(nominal, max(MIN_STEPS, math.ceil(MIN_UNIT_SHARE * nominal))), nominal, fits)
        if sized is not None:
            log.info(f"{s.clock} {job.rd.name}: its next unit sized to {sized} of {nominal} steps to end in time")
        return sized or nominal

    def speed_of(self, job: RunJob) -> Throughput | None:
        """The kept speed of the run's setup (None: never measured here)."""
        return self.s.menu.book.get(job.cfg)

    def late_by(self, job: RunJob, left_s: float, whole_s: float) -> float:
        """How late the unit training now would end past the step deadline at its pace (its
        prediction included): past it, the deadline would cut the unit anyway, so it stops now
        and the time goes to what fits. The units after it are judged when it is done
        (`on_unit`): a run is never stopped part-way for a projection of its later units. Never
        late while nothing is scored: this unit measures the machine, the alternatives are estimates."""
        s = self.s
        if s.executor.capacity > 1:
            return -math.inf
        late = lateness(s.clock.now(), left_s + self.predict_s(job), 0, 0.0, s.step_deadline())
        return -math.inf if late > 0 and not s.state.scored_runs() else late  # unproven estimates never stop it

    def predict_s(self, job: RunJob) -> float:
        """A unit's prediction of its held-out and test rows at the kept speed (0: never measured)."""
        speed, shape = self.speed_of(job), self.s.shape()
        return (shape.val_rows + shape.test_rows) / speed.predict_ips if speed is not None else 0.0

    def correct(self, job: RunJob, images_per_s: float, fixed_s: float | None = None) -> None:
        """A unit's own speed (and fixed cost) corrects the kept speeds (its width's, and those
        probed with it when it drifted); the options follow."""
        if self.s.menu.book.observe(job.cfg, images_per_s, fixed_s) is not None or fixed_s is not None:
            self.s.menu.refresh()

    def unit_estimate(self, job: RunJob) -> float:
        """A unit of the run as the current speeds estimate it (what calibration compares units to:
        speeds a unit corrected leave only the rest of the error to it)."""
        speed, shape = self.speed_of(job), self.s.shape()
        if speed is None:
            return self.s.state.runs[job.rd.name].unit_estimate_s
        return unit_seconds(job.cfg, speed, shape.train_rows, shape.val_rows, shape.test_rows)

    def on_unit(self, job: RunJob, result: UnitResult | UnitLate) -> bool:
        """A unit came back: correct the estimates; True stops the rest of its run (it would end
        too late and something smaller fits)."""
        if isinstance(result, UnitLate):
            return self.on_late(job, result)
        s, name = self.s, job.rd.name
        spent = result.summary.get("times", {})
        times = self.unit_times.setdefault(name, [])
        times.append(float(result.summary.get("unit_seconds", 0.0)) + spent.get("write", 0.0))
        fixed = sum(spent.get(k, 0.0) for k in ("setup", "checkpoint", "write"))
        self.correct(job, float(result.summary.get("images_per_s", 0.0)), fixed or None)
        estimate = self.unit_estimate(job)
        if estimate:  # the latest unit: a busy first minute must not slow every estimate after it
            s.time.calibrate(times[-1] / estimate)
        left = job.outstanding
        if s.executor.capacity == 1 and left and self.rebuy(job, left * float(np.mean(times))):
            return True
        # the next unit at its least: only its training shrinks (setup, validation, predictions do not),
        # judged by the latest unit (a machine that got busy shows there first)
        shortest = max(float(np.mean(times)), times[-1]) - (1 - MIN_UNIT_SHARE) * float(spent.get("train", 0.0))
        late = lateness(s.clock.now(), 0.0, 1, shortest, s.step_deadline())
        if s.executor.capacity > 1 or not left or late <= 0:
            return False  # it fits, sized to the time left as it starts
        self.stopped[name] = (
            f"stopped after {len(times)} unit(s): at {times[-1]:.0f} s a unit, the next, even cut to "
            f"{MIN_UNIT_SHARE:.0%} of its steps, would end {duration(late)} after the step deadline"
        )
        log.warning(f"{s.clock} {name}: {self.stopped[name]}; its finished folds count (partial)")
        return True

    def rebuy(self, job: RunJob, remaining_s: float) -> bool:
        """After a unit proved the speeds wrong (a probe under load sizes a run far too short): stop
        the run when a run sized to all the time left is expected to beat finishing it and buying
        with what is left by more than REBUY_MARGIN (its finished units are kept)."""
        s, rec = self.s, self.s.state.runs[job.rd.name]
        first = self.unit_times[job.rd.name][0]
        if rec.expected_acc is None or first > PROBE_SLOW * rec.unit_estimate_s:
            return False  # only a probe that read the machine slow is a reason: a run sized small on purpose is kept
        free = (s.clock.left() - s.reserve()) * (1 - s.time.safety())
        options, budget = s.menu.candidates(s.buyable()), s.budget(slots=1)
        instead = policy.best_purchase(options, budget, free, s.frontier)
        grown = [policy.Finished(rec.run, rec.entry, rec.width, rec.total_epochs())]  # what finishing it allows
        then = policy.best_purchase(options, budget, free - remaining_s, s.frontier, grown)
        kept = max(rec.expected_acc, (then.expected_acc or 0.0) if then is not None else 0.0)
        if instead is None or instead.expected_acc is None or instead.expected_acc <= kept + REBUY_MARGIN:
            return False
        self.stopped[job.rd.name] = (
            f"stopped after {len(self.unit_times[job.rd.name])} unit(s): at the speeds its units showed, a run "
            f"sized to the time left ({instead.option.entry.name} width {instead.option.width}, "
            f"{instead.fractional_epochs:.1f} epochs) is expected to score {instead.expected_acc:.4f}, "
            f"finishing this one {kept:.4f}"
        )
        log.warning(f"{s.clock} {job.rd.name}: {self.stopped[job.rd.name]}; its finished units are kept")
        return True

    def on_late(self, job: RunJob, late: UnitLate) -> bool:
        """A unit stopped part-way at a pace that would end its run too late: its pace corrects
        the estimates (and the kept speed when it drifted); the time goes to a run that fits."""
        s, name = self.s, job.rd.name
        self.correct(job, late.images_per_s)
        speed = self.speed_of(job)
        if speed is not None and late.images_per_s > 0:
            s.time.calibrate(speed.train_ips / late.images_per_s)
        done = len(self.unit_times.get(name, []))
        self.stopped[name] = (
            f"stopped during its unit {done + 1}: at {late.images_per_s:,.0f} img/s it "
            f"would end {duration(late.late_s)} too late"
        )
        log.warning(f"{s.clock} {name}: {self.stopped[name]}; its finished units are kept")
        return True

    def on_done(self, job: RunJob, manifest: dict[str, Any]) -> None:
        """A run's units are all back: record it complete, failed or incomplete."""
        s, name = self.s, job.rd.name
        trained_s = s.training.remove(job, s.clock.now())
        if not job.units:  # finished in an earlier session: its record stands
            return
        s.state.add_seconds(name, trained_s)
        if manifest.get("complete"):
            self._complete(job, manifest)
        elif job.failures:
            rec = s.state.record(name, status="failed", note=job.failures[0][:300])
            s.menu.fail(rec.entry, rec.width)
            log.warning(f"{s.clock} {name}: failed ({job.failures[0][:200]}); not bought again this session")
        else:
            self._partial(job, manifest)

    def _partial(self, job: RunJob, manifest: dict[str, Any]) -> None:
        """A run the deadline (or the watch) cut: assembled over its finished folds, it still counts."""
        s, name = self.s, job.rd.name
        left = len(manifest.get("missing_folds", []))
        why = self.stopped.pop(name, "stopped at the deadline")
        done = manifest["data"]["folds"] - left
        part = assemble(job.rd, partial=True) if done else manifest
        cv = part.get("cv") if done else None
        note = (
            f"{why}; {left} fold(s) unfinished; "
            + (f"partial: {done} fold(s) scored alone, never blended; " if cv else "")
            + "the same command (with time) finishes it"
        )
        s.state.record(
            name,
            status="incomplete",
            note=note,
            folds_done=done or None,
            cv_acc=cv["acc"] if cv else None,
            cv_logloss=cv["logloss"] if cv else None,
            test_acc=(part.get("test_metrics") or {}).get("acc") if cv else None,
        )
        if cv:
            log.info(f"{s.clock} {name}: partial, {done} fold(s), CV accuracy {cv['acc']:.4f} over their rows")

    def _complete(self, job: RunJob, manifest: dict[str, Any]) -> None:
        s, cv = self.s, manifest["cv"]
        s.state.record(
            job.rd.name,
            status="complete",
            cv_acc=cv["acc"],
            cv_logloss=cv["logloss"],
            test_acc=(manifest.get("test_metrics") or {}).get("acc"),
            session=s.state.session_index,
            minute=round(s.clock.elapsed() / 60, 2),
            note="optimistic CV: epochs chosen on the scored rows (select_epoch)" if job.cfg.select_epoch else "",
            folds_done=None,
        )
        log.info(f"{s.clock} {job.rd.name}: complete, CV accuracy {cv['acc']:.4f}")
        self.on_complete()
