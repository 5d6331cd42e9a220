"""The driver of k-fold runs: plan a run's unfinished units, drive them on an executor under an
optional deadline, record each result as it arrives, conclude the run.

A run's state lives in its files, not in memory (`runs.folder` opens the folder and reads its
fold and seed states; `runs.sizing` says how long it will take and sizes it to a --time-limit).
The unit of work is one (fold, seed) training: `prepare_run` opens the run and plans its
unfinished units, `drive` keeps an executor busy with them, `record_unit` saves each result and
finishes its fold once its seeds are in; `conclude` assembles the run (`store.assemble`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_kaggle.data.competition import Competition
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.runs.executors import Executor, Unit, UnitFailed, UnitLate, make_executor
from fmnist_kaggle.runs.folder import (
    check_model,
    default_run_name,
    finish_fold,
    open_run,
    training_data,
    unfinished_units,
)
from fmnist_kaggle.runs.sizing import announce_estimate, fit_to_time
from fmnist_kaggle.runs.store import assemble
from fmnist_kaggle.runs.track import track_run
from fmnist_kaggle.runs.trainset import TrainingData
from fmnist_kaggle.runs.unit import UnitResult, save_unit
from fmnist_kaggle.storage.layout import RunDir, Workspace
from fmnist_kaggle.training.config import TrainConfig
from fmnist_kaggle.training.deadline import Deadline

log = logging.getLogger(__name__)


@dataclass
class RunJob:
    """One run's share of a training session: its folder, config, data and unfinished units."""

    rd: RunDir
    cfg: TrainConfig
    data: TrainingData
    folds: list[int]  # the folds selected here (all, or a --fold shard)
    units: list[tuple[int, int]]  # unfinished (fold, seed)
    tag: Any = None  # the caller's (a sweep's trial)
    deadline: Deadline | None = None  # what its units obey where they train here (the driver's if None)
    size: Callable[[TrainConfig], int] | None = None  # steps a unit starting now may take (the autopilot's)
    failures: list[str] = field(default_factory=list)
    outstanding: int = 0  # units submitted and not back yet
    cancelled: int = 0  # units a deadline stopped


def prepare_run(
    comp: Competition,
    cfg: TrainConfig,
    run: str | None = None,
    workdir: str | Path = ".",
    only_folds: list[int] | None = None,
    overwrite: bool = False,
    tag: Any = None,
    trains_here: bool = True,
    limit: Deadline | None = None,
) -> RunJob:
    """Check everything, open (or create) the run folder and plan its unfinished units
    (`trains_here`: the units train in this process, so its device is checked too). `limit`: the
    deadline of a --time-limit; a new run is sized to the time left (fewer steps a unit), or
    refused with the limit it needs."""
    ws = Workspace(workdir)
    name = run if run is not None else default_run_name(cfg)
    ws.run(name)  # refuse a bad name before any work
    selected = sorted(set(only_folds)) if only_folds else list(range(cfg.folds))
    bad = [f for f in selected if not 0 <= f < cfg.folds]
    if bad:
        raise FkaggleError(f"fold {bad[0]} out of range 0..{cfg.folds - 1}")
    check_model(
        cfg, 10, device=trains_here, forward=False
    )  # before the data is read (seconds for a big CSV) or anything written
    params = check_model(cfg, comp.train_set.num_classes, device=False)
    if limit is not None and trains_here and (overwrite or not ws.run(name).exists()):  # a begun run keeps its size
        cfg = fit_to_time(name, cfg, comp, ws, len(selected) * len(cfg.seeds), limit)  # before anything is written
        name = run if run is not None else default_run_name(cfg)
    data = training_data(comp, cfg, ws)
    rd, manifest = open_run(ws, name, cfg, data, comp, overwrite, params)
    for warning in cfg.warnings():
        log.warning(warning)
    if cfg.subset and tag is None:  # a sweep's trials search on a subset on purpose
        log.warning(
            f"warning: run {name} trains on a stratified subset of {len(data.train)} rows (subset = {cfg.subset}): "
            "its OOF rows cannot be blended with full-data runs; set subset = 0 (or "
            "drop it from the config) to train on all rows"
        )
    units = unfinished_units(rd, cfg, data.identity, selected)
    if manifest["config"] != cfg.to_dict():  # speed settings (device, amp...) may differ between resumes
        rd.write_manifest({**manifest, "config": cfg.to_dict()})
    log.info(
        f"run {name}: {cfg.model}, {cfg.folds} folds ({', '.join(map(str, selected))} "
        f"here), {len(data.train)} train rows, {len(units)} (fold, seed) unit(s) "
        "to train"
    )
    if trains_here and units and tag is None:  # the autopilot and sweeps make their own estimates
        announce_estimate(name, cfg, data, len(units))
    return RunJob(rd, cfg, data, selected, units, tag)


def record_unit(job: RunJob, result: UnitResult) -> None:
    """Save a finished unit; finish its fold when that was the fold's last seed."""
    save_unit(job.rd, result, job.data.identity)
    if _seeds_in(job, result.fold):
        finish_fold(job.rd, job.cfg, job.data, result.fold)
    track_run(job.rd)


def _seeds_in(job: RunJob, fold: int) -> bool:
    fd = job.rd.fold(fold)
    return all(fd.seed_summary(s).exists() for s in job.cfg.seeds)


def conclude(job: RunJob) -> dict[str, Any]:
    """Finish folds whose seeds were all done before, assemble the run, say how it went."""
    for fold in job.folds:
        if not job.rd.fold(fold).metrics.exists() and _seeds_in(job, fold):
            finish_fold(job.rd, job.cfg, job.data, fold)
    manifest = assemble(job.rd)
    track_run(job.rd, manifest, ended=True)
    log.debug(run_summary(manifest))  # the result itself is the caller's to print (stdout)
    warning = near_chance(manifest, job.cfg, job.data)
    if warning:
        log.warning(f"warning: {warning}")
    return manifest


def run_summary(manifest: dict[str, Any]) -> str:
    """A run's result in words: its CV (per fold), the test accuracy where known, or what is missing."""
    name, folds = manifest["run"], manifest["data"]["folds"]
    if not manifest["complete"]:
        return (
            f"run {name}: folds missing {manifest['missing_folds']} (run them, or copy "
            f"their fold_K folders here and `fkaggle assemble {name}`)"
        )
    cv = manifest["cv"]
    lines = [
        f"run {name} ({manifest.get('model')}, {folds} folds): CV accuracy {cv['acc']:.4f} "
        f" log-loss {cv['logloss']:.4f}  (per fold: {_per_fold_text(cv)})"
    ]
    if manifest.get("test_metrics"):
        lines.append(f"  test accuracy of the {folds}-fold ensemble: {manifest['test_metrics']['acc']:.4f}")
    return "\n".join(lines)


def drive(
    executor: Executor,
    jobs: Iterator[RunJob],
    on_done: Callable[[RunJob, dict[str, Any]], None] = lambda job, manifest: None,
    progress: bool = True,
    deadline: Deadline | None = None,
    on_unit: Callable[[RunJob, UnitResult | UnitLate], bool] = lambda job, result: False,
) -> list[RunJob]:
    """Keep the executor busy with the units of `jobs` (pulled lazily, so a search can choose the
    next trial from the last results), record each result as it arrives and conclude each job
    when its last unit is back. `deadline`: no unit starts after it, and units still queued or
    running then are cancelled (finished ones stay recorded, so the same command resumes); units
    that train here obey their job's deadline (its pace check: UnitLate) or this one between
    steps. `on_unit` sees each recorded unit and each UnitLate; on an executor that trains one unit
    at a time, True (and any UnitLate) stops the rest of that job (the autopilot's "this run cannot
    finish in time"). Returns the jobs left incomplete by failed or cancelled units."""
    loop = _DriveLoop(executor, iter(jobs), on_done, on_unit, deadline, progress)
    with loop.bar:
        while True:
            loop.fill()
            if not loop.pending:
                return loop.unfinished
            done = None if loop.late() else executor.next_done(loop.wait_s())
            if done is None:
                loop.cut_at_deadline()
            else:
                loop.take(*done)


class _DriveLoop:
    """`drive`'s state: the units in flight (id(unit) -> its job), the jobs left unfinished."""

    def __init__(
        self,
        executor: Executor,
        jobs: Iterator[RunJob],
        on_done: Callable[[RunJob, dict[str, Any]], None],
        on_unit: Callable[[RunJob, UnitResult | UnitLate], bool],
        deadline: Deadline | None,
        progress: bool,
    ) -> None:
        from tqdm.auto import tqdm

        self.executor, self.jobs, self.on_done, self.on_unit, self.deadline = executor, jobs, on_done, on_unit, deadline
        self.pending: dict[int, RunJob] = {}
        self.unfinished: list[RunJob] = []
        hide = executor.shows_unit_progress or not progress
        self.bar = tqdm(total=0, desc="units", unit="unit", disable=True if hide else None)

    def late(self) -> bool:
        return self.deadline is not None and self.deadline.passed()

    def wait_s(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline.left())

    def fill(self) -> None:
        """Submit jobs' units until the executor is full (the first job before it starts)."""
        while not self.late() and (not self.pending or len(self.pending) < self.executor.capacity):
            job = next(self.jobs, None)
            if job is None:
                return
            if not job.units:
                self.finish(job)
            for fold, seed in job.units:
                unit = Unit(job.rd.name, job.cfg, job.data, fold, seed, job.rd.fold(fold).checkpoint(seed))
                if self.executor.trains_here:  # closures over the session: never sent to workers
                    unit.deadline, unit.size = job.deadline or self.deadline, job.size
                self.executor.submit(unit)
                self.pending[id(unit)] = job
                job.outstanding += 1
                self.bar.total += 1
            self.bar.refresh()

    def finish(self, job: RunJob) -> None:
        self.on_done(job, conclude(job))
        if job.failures or job.cancelled:
            self.unfinished.append(job)

    def give_back(self, unit: Unit) -> RunJob:
        job = self.pending.pop(id(unit))
        job.outstanding -= 1
        return job

    def cut_queued(self) -> None:
        """The rest of a stopped job (one unit at a time: only its units are queued)."""
        if self.executor.capacity == 1:
            for cut in [self.give_back(u) for u in self.executor.cancel()]:
                cut.cancelled += 1

    def cut_at_deadline(self) -> None:
        """The deadline: nothing more starts, nothing in flight is waited for."""
        cut = [self.give_back(unit) for unit in self.executor.cancel()]
        for job in cut:
            job.cancelled += 1
        log.warning(
            f"deadline reached: {len(cut)} (fold, seed) unit(s) cancelled; finished units are kept (re-run to resume)"
        )
        for job in {id(j): j for j in cut}.values():
            if job.outstanding == 0:
                self.finish(job)

    def take(self, unit: Unit, outcome: UnitResult | UnitFailed | UnitLate) -> None:
        job = self.give_back(unit)
        self.bar.update(1)
        if isinstance(outcome, UnitFailed):
            log.error(str(outcome))
            job.failures.append(str(outcome))
        elif isinstance(outcome, UnitLate):
            log.debug(str(outcome))  # the caller that asked says why
            job.cancelled += 1
            self.on_unit(job, outcome)
            self.cut_queued()
        else:
            record_unit(job, outcome)
            log.debug(f"{unit} done{_where(outcome.summary)} in {outcome.summary.get('seconds', 0):.0f}s")
            if self.on_unit(job, outcome):
                self.cut_queued()
        if job.outstanding == 0:
            self.finish(job)


def _where(summary: dict[str, Any]) -> str:
    return f" on {summary['node_ip']} ({summary['host']})" if "node_ip" in summary else ""


def failure_message(jobs: list[RunJob]) -> str:
    lines = [f for job in jobs for f in job.failures]
    cancelled = sum(job.cancelled for job in jobs)
    what = [f"{len(lines)} (fold, seed) unit(s) failed: {'; '.join(lines)}"] if lines else []
    what += [f"{cancelled} (fold, seed) unit(s) stopped at the deadline"] if cancelled else []
    return (
        f"{'; '.join(what)}. Finished units are kept; re-run the same command to "
        f"{'retry' if lines else 'finish'} the rest"
    )


def train_folds(
    comp: Competition,
    cfg: TrainConfig,
    run: str | None = None,
    workdir: str | Path = ".",
    only_folds: list[int] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    executor: Executor | None = None,
    deadline: Deadline | float | None = None,
    time_limit: bool = False,
) -> dict[str, Any]:
    """Train the selected folds of a run (all by default) on `executor` (this process by
    default), recording each (fold, seed) as it finishes; assemble the run if complete.
    `deadline` (a Deadline, or a `time.monotonic()` value): no step or unit starts after it;
    with `time_limit` it is a --time-limit: a new run is sized to end before it (or refused with
    the limit it needs). Returns the run's manifest (`fmnist_kaggle.fold_train` returns the `Run`)."""
    if isinstance(deadline, (int, float)):
        deadline = Deadline.at_time(float(deadline))
    here = executor is None or executor.trains_here
    limit = deadline if time_limit else None
    job = prepare_run(comp, cfg, run, workdir, only_folds, overwrite, trains_here=here, limit=limit)
    done: dict[str, Any] = {}
    with executor or make_executor("local", progress=progress) as ex:
        failed = drive(ex, iter([job]), lambda job, manifest: done.update(manifest), progress, deadline)
    if not done:  # the deadline came before the run's first unit could start
        job.cancelled = len(job.units)
        done.update(conclude(job))
        failed = [job] if job.units else []
    if failed:
        raise FkaggleError(failure_message(failed))
    return done


def _per_fold_text(cv: dict[str, Any]) -> str:
    return ", ".join(f"{f['acc']:.4f}" for f in cv["per_fold"])


def near_chance(manifest: dict[str, Any], cfg: TrainConfig, data: TrainingData, margin: float = 0.1) -> str | None:
    """A finished run whose CV is within `margin` of always guessing the most common class learned
    next to nothing: say so with the number of steps it had. Judged on the measured CV, never
    predicted from the budget (small runs often learn well)."""
    if not manifest.get("complete") or manifest.get("cv") is None:
        return None
    majority = float(np.bincount(data.train.labels).max() / len(data.train.labels))
    if manifest["cv"]["acc"] >= majority + margin:
        return None
    rows = int((data.fold_of != 0).sum())
    steps = cfg.total_steps(rows)
    return (
        f"run {manifest['run']}: CV accuracy {manifest['cv']['acc']:.4f} is near "
        f"chance (always guessing the most common class scores {majority:.4f}) "
        f"after {steps} optimizer steps per fold ({rows} rows, batch {cfg.batch_size}, "
        f"{cfg.epochs} epochs, lr {cfg.lr:g}): "
        "train longer (--epochs), on more rows, with a smaller --batch-size, or check --lr"
    )
