"""One session of `fkaggle auto`: keep buying the best run the time left can buy, then choose.

One deadline, counted from the command's start. A reserve for what follows training (the choice,
the submission file, the leaderboard, an upload) is kept from the start, sized by what those steps
measured before. Each purchase is sized by the policy (policy.py) from speeds measured on the
executor that trains the units (speeds.py, kept for later sessions) and corrected by every unit
this session finishes. After each run the next best use of the time is bought, until what is left
cannot buy anything; the reason is recorded. A unit that diverges or crashes is a failed unit:
its run is recorded failed, the option is not bought again, and the session goes on. Only
complete runs are blended; the choice is the best single run unless a blend beats it on nested CV.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_kaggle.data.competition import Competition
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.runs.driver import RunJob, drive, prepare_run
from fmnist_kaggle.runs.executors import Executor, UnitLate, make_executor
from fmnist_kaggle.runs.store import load_run
from fmnist_kaggle.search.autopilot import policy
from fmnist_kaggle.search.autopilot.leaderboard import mmss, write_leaderboard
from fmnist_kaggle.search.autopilot.policy import Budget, Option, Purchase
from fmnist_kaggle.search.autopilot.speeds import SpeedBook, machine_of, sample
from fmnist_kaggle.search.autopilot.state import OPEN, AutopilotState
from fmnist_kaggle.search.portfolio import Entry, SizeTable, for_hardware, hardware_kind, load_portfolio, load_sizes
from fmnist_kaggle.storage.layout import Workspace, check_name
from fmnist_kaggle.training.estimate import Shape, unit_shape

log = logging.getLogger(__name__)

FIRST_SAFETY = 0.15  # share of the time kept free before a unit of this session has checked the estimates
SAFETY = 0.05  # after: throughput drifts on a shared 2-core VM
GRACE = 0.02  # share of the limit a run may be projected to overrun before it is stopped
FINAL_S = 6.0  # after training, before it was ever measured: imports, the submission, its check, the leaderboard
SELECT_S_PER_RUN = 3.0  # choosing among runs and blends, per run of 60,000 rows, before it was measured
UPLOAD_S = 20.0  # an upload, before one was timed here
MAX_RUNS = 12  # runs one autopilot buys in all: beyond, choosing costs more than another seed gains
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_time_limit(text: str) -> float:
    """'90s', '20m', '1.5h' (or plain seconds) -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([smh]?)\s*", str(text))
    seconds = float(m.group(1)) * _UNITS[m.group(2)] if m else 0.0
    if not m or not 0 < seconds < 1e7:
        raise FkaggleError(f"--time-limit expects a duration such as 90s, 20m or 1.5h, got {text!r}")
    return seconds


@dataclass
class Clock:
    """The command's time: `now` is injectable, so decisions are tested without waiting."""

    start: float
    limit: float
    now: Callable[[], float] = time.monotonic

    def elapsed(self) -> float:
        return self.now() - self.start

    def left(self) -> float:
        return self.limit - self.elapsed()

    def __str__(self) -> str:
        return f"[{mmss(self.elapsed())} elapsed, {mmss(self.left())} left]"


@dataclass
class Settings:
    """What the user chose for the session besides the limit."""

    name: str = "auto"
    folds: int = 5
    subset: int = 0
    device: str | None = None
    amp: str | None = None
    submitting: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def train(self) -> dict[str, Any]:
        return {"folds": self.folds, "subset": self.subset, "device": self.device, "amp": self.amp, **self.extra}


class Autopilot:
    """Sizes and buys runs, records each outcome, chooses the submission. Its memory is state.json."""

    def __init__(
        self,
        comp: Competition,
        clock: Clock,
        entries: list[Entry],
        workdir: str | Path,
        settings: Settings,
        executor: Executor,
        table: SizeTable,
    ) -> None:
        self.comp, self.clock, self.workdir, self.settings, self.executor, self.table = (
            comp,
            clock,
            workdir,
            settings,
            executor,
            table,
        )
        self.ws = Workspace(workdir)
        self.files = self.ws.autopilot(settings.name)
        self.train, self.test = comp.train_set, comp.test_set
        if self.test is None:
            raise FkaggleError(
                "fkaggle auto makes a submission: the competition needs a test file (--test or the config)"
            )
        if settings.folds < 2 or settings.folds > len(self.train):
            raise FkaggleError(
                f"--folds must be between 2 and the {len(self.train)} training rows, got {settings.folds}"
            )
        if settings.subset < 0 or 0 < settings.subset < 2 * settings.folds:
            raise FkaggleError(f"--subset must be 0 (all rows) or at least twice --folds, got {settings.subset}")
        self.rows = min(settings.subset or len(self.train), len(self.train))
        self.entries = [e for e in entries if e.fits_rows(self.rows)] or entries
        for e in self.entries:
            check_name(f"{settings.name}-{e.name}-{MAX_RUNS}", "run")  # refused before anything is written
        fingerprints = {
            "data_fingerprint": self.train.fingerprint(),
            "test_fingerprint": self.test.fingerprint(),
            "folds": settings.folds,
            "subset": settings.subset,
        }
        self.state = AutopilotState.open(self.files, settings.name, fingerprints)
        self.book: SpeedBook | None = None  # once the executor runs (a Ray cluster is asked what it is)
        self.options: dict[tuple[str, int | None], Option] = {}
        self.failed_options: set[tuple[str, int | None]] = set()
        self.calibration, self.calibrated = 1.0, False
        self.select_s_per_run = SELECT_S_PER_RUN * self.rows / 60_000
        self.jobs_started: dict[str, float] = {}
        self.active: list[RunJob] = []
        self.unit_times: dict[str, list[float]] = {}
        self.stopped_runs: dict[str, str] = {}

    # -- the time model

    def shape(self) -> Shape:
        return unit_shape(self.rows, self.settings.folds, len(self.test))

    def reserve(self) -> float:
        """Seconds kept for after training: the choice (measured per run), the final steps
        (measured last session), an upload (measured, when submitting)."""
        runs = 1 + len(self.state.complete_runs())
        return self.final_reserve() + 1.5 * self.select_s_per_run * runs

    def final_reserve(self) -> float:
        """The submission file, its check, the leaderboard and an upload: what no session may skip."""
        final = max(FINAL_S, 1.25 * self.state.data.get("final_s", 0.0))
        upload = max(5.0, 1.5 * self.state.data.get("upload_s", UPLOAD_S)) if self.settings.submitting else 0.0
        return final + upload

    def training_deadline(self) -> float:
        """What runs are bought to end by: the limit less the reserve; while no run is complete,
        less only the final steps (the one run that can make a submission gets the choice's share)."""
        keep = self.reserve() if self.state.complete_runs() else self.final_reserve()
        return self.clock.start + self.clock.limit - keep

    def step_deadline(self) -> float:
        """No training step starts after this: the training deadline and GRACE, the overrun a run
        projected late is allowed (a run kept for ending within it must be let to end)."""
        return self.training_deadline() + GRACE * self.clock.limit

    def safety(self) -> float:
        return SAFETY if self.calibrated else FIRST_SAFETY

    def busy_seconds(self) -> float:
        """Estimated seconds the runs still training need (an executor with many slots buys meanwhile)."""
        return sum(
            job.outstanding * self.state.data["runs"][job.rd.name].get("unit_estimate_s", 0) for job in self.active
        )

    def slots(self) -> int:
        return max(1, self.executor.capacity - sum(job.outstanding for job in self.active))

    def budget(self) -> Budget:
        return Budget(self.shape(), self.settings.folds, self.slots(), self.calibration)

    def available(self) -> float:
        """Seconds a new purchase may take: what is left before the reserve, less the safety share."""
        left = self.clock.left() - self.reserve()
        if self.active and self.executor.capacity == 1:
            left -= self.busy_seconds()
        return left * (1 - self.safety())

    # -- speeds, measured cheapest first, once per machine

    def speed_book(self) -> SpeedBook:
        if self.book is None:
            self.book = SpeedBook(self.ws.autopilot_speeds, machine_of(self.executor, self.settings.device or "auto"))
        return self.book

    def option(self, entry: Entry, width: int | None) -> Option:
        key = (entry.name, width)
        if key not in self.options:
            cfg = entry.config(width, **self.settings.train())
            speed = self.speed_book().get(cfg)
            if speed is None:
                x, y = sample(self.train.images, self.train.labels)
                speed = self.executor.measure(cfg, x, y, self.train.num_classes)
                self.speed_book().put(cfg, speed, "measured")
                log.info(
                    f"{self.clock} {entry.name}{f' width {width}' if width else ''}: {speed.train_ips:,.0f} "
                    "training img/s, "
                    f"{speed.predict_ips:,.0f} predicted img/s ({speed.precision} on {speed.device})"
                )
            self.options[key] = Option(entry, width, speed)
        return self.options[key]

    def buyable(self) -> list[Entry]:
        """Entries that may be bought again (an entry with `runs = N` is bought at most N times)."""
        return [e for e in self.entries if not e.runs or self.state.purchases(e.name) < e.runs]

    def candidates(self, seconds: float) -> list[Option]:
        """Each entry's widths, narrowest first, measured until one cannot fit its shortest run in
        `seconds` (wider ones are slower still): a short budget times only what it can buy."""
        out = []
        for entry in self.buyable():
            for width in entry.sizes():
                if (entry.name, width) in self.failed_options:
                    continue
                opt = self.option(entry, width)
                out.append(opt)
                if policy.size(opt, self.budget(), seconds) is None:
                    break
        return out

    # -- buying

    def jobs(self) -> Iterator[RunJob]:
        """The runs to train, one decision at a time: unfinished ones first, then purchases."""
        for rec in self.state.runs(*OPEN):
            job = self.resume(rec)
            if job is not None:
                yield job
        while len(self.state.data["runs"]) < MAX_RUNS:
            if not self.buyable():
                self.state.data["stopped"] = "every portfolio entry was bought as many times as it allows (its runs)"
                return
            seconds = self.available()
            purchase = policy.best_purchase(self.candidates(seconds), self.budget(), seconds, self.table)
            if purchase is None:
                self.stop_buying(seconds)
                return
            yield self.buy(purchase)
        self.state.data["stopped"] = f"{MAX_RUNS} runs bought: choosing among more would cost more than they add"

    def stop_buying(self, seconds: float) -> None:
        cheapest = policy.cheapest(
            [o for o in self.options.values() if (o.entry.name, o.width) not in self.failed_options], self.budget()
        )
        why = f"{max(0, seconds):.0f} s left to train (after the reserve of {self.reserve():.0f} s)"
        if cheapest is not None:
            opt, need = cheapest
            why += (
                f"; the cheapest run, {opt.entry.name}{f' width {opt.width}' if opt.width else ''} "
                f"at {opt.entry.min_epochs:g} epoch(s), needs ~{need:.0f} s"
            )
        self.state.data["stopped"] = why
        log.info(f"{self.clock} stopped buying: {why}")
        if not self.state.committed:  # nothing started, nothing finished before: refuse, having written nothing
            raise FkaggleError(self.too_short())

    def deadline_reason(self) -> str:
        at = self.step_deadline() - self.clock.start
        return (
            f"the training deadline ({mmss(at)} into the session) came while a run trained; "
            f"{self.reserve():.0f} s were kept for choosing and writing"
        )

    def too_short(self) -> str:
        cheapest = policy.cheapest(list(self.options.values()), self.budget())
        if cheapest is None:
            return (
                f"--time-limit {self.clock.limit:g}s leaves nothing to train: about {self.reserve():.0f} "
                "s go to choosing, writing and checking the submission"
            )
        opt, need = cheapest
        total = self.clock.elapsed() + need / (1 - self.safety()) + self.reserve()
        return (
            f"--time-limit {self.clock.limit:g}s is too short for any run of the portfolio here: the cheapest, "
            f"{opt.entry.name}{f' width {opt.width}' if opt.width else ''} at {opt.entry.min_epochs:g} "
            f"epoch(s), needs about {need:.0f} s; "
            f"give at least {math.ceil(total / 60)}m. Nothing was written"
        )

    def config_of(self, rec: dict[str, Any]) -> Any:
        entry = next(e for e in self.entries if e.name == rec["entry"])
        full = rec["steps"] >= rec["epochs"] * rec["steps_per_epoch"]
        return entry.config(
            rec.get("width"),
            rec["epochs"],
            max_steps=0 if full else rec["steps"],
            seeds=[rec["seed"]],
            **self.settings.train(),
        )

    def buy(self, p: Purchase) -> RunJob:
        entry, width = p.option.entry, p.option.width
        n = self.state.purchases(entry.name)
        seed = entry.first_seed + n  # each purchase of an entry its own seed: its runs differ, a blend can gain
        run = f"{self.settings.name}-{entry.name}-{n + 1}"
        self.state.commit()
        self.speed_book().save()
        expected = f", expected held-out accuracy {p.expected_acc:.4f}" if p.expected_acc else ""
        rec = self.state.record(
            run,
            entry=entry.name,
            width=width,
            model=entry.config(width).model,
            steps=p.steps,
            steps_per_epoch=p.steps_per_epoch,
            epochs=p.epochs,
            fractional_epochs=round(p.fractional_epochs, 2),
            seed=seed,
            status="training",
            estimate_s=round(p.seconds, 1),
            unit_estimate_s=round(p.seconds / max(1, self.budget().waves()) / self.calibration, 2),
            expected_acc=p.expected_acc,
            session=self.state.session_index,
            note="",
        )
        log.info(
            f"{self.clock} buying {run}: {rec['model']}{f' width {width}' if width else ''}, "
            f"{p.fractional_epochs:.2f} epochs "
            f"({p.steps} steps) x {self.settings.folds} folds, estimated {mmss(p.seconds)}{expected} "
            f"(reserve {self.reserve():.0f} s)"
        )
        return self.start(rec)

    def resume(self, rec: dict[str, Any]) -> RunJob | None:
        """A run bought before: finished with its recorded size if what is left of it fits."""
        cfg = self.config_of(rec)
        job = prepare_run(
            self.comp, cfg, rec["run"], self.workdir, tag=rec["run"], trains_here=self.executor.trains_here
        )
        if not job.units:
            return self.track(job)
        opt = self.option(next(e for e in self.entries if e.name == rec["entry"]), rec.get("width"))
        need = policy.run_seconds(opt, self.budget(), rec["steps"]) * len(job.units) / self.settings.folds
        if need > self.available():
            note = (
                f"{len(job.units)} unit(s) left need ~{need:.0f} s, {max(0, self.available()):.0f} "
                "s available: a larger --time-limit finishes it"
            )
            self.state.record(rec["run"], status="incomplete", note=note)
            log.warning(f"{self.clock} {rec['run']}: {note}")
            return None
        self.state.commit()
        self.speed_book().save()
        self.state.record(rec["run"], status="training", session=self.state.session_index)
        log.info(f"{self.clock} finishing {rec['run']} ({len(job.units)} unit(s) left), estimated {mmss(need)}")
        return self.track(job)

    def start(self, rec: dict[str, Any]) -> RunJob:
        job = prepare_run(
            self.comp,
            self.config_of(rec),
            rec["run"],
            self.workdir,
            tag=rec["run"],
            trains_here=self.executor.trains_here,
        )
        return self.track(job)

    def track(self, job: RunJob) -> RunJob:
        self.jobs_started[job.rd.name] = self.clock.now()
        self.active.append(job)
        return job

    # -- outcomes

    def late_by(self, job: RunJob, left_s: float, whole_s: float) -> float:
        """How late `job` would end past the step deadline if the unit training
        now, and each one after it, kept this unit's pace: the projection made after each unit,
        made within it, so a run found too slow loses part of a unit rather than units. Never
        late while it is the only hope of a submission (nothing complete, nothing smaller fits)."""
        if self.executor.capacity > 1:
            return -math.inf
        opt = self.option_of(self.state.data["runs"][job.rd.name])
        shape = self.shape()
        predict_s = (shape.val_rows + shape.test_rows) / opt.speed.predict_ips if opt is not None else 0.0
        after = (job.outstanding - 1) * (whole_s + predict_s)  # the one training is still outstanding
        late = self.clock.now() + left_s + predict_s + after - self.step_deadline()
        return -math.inf if late > 0 and self.only_hope() else late

    def option_of(self, rec: dict[str, Any]) -> Option | None:
        """The measured option a bought run's record was sized from (None: not measured this session)."""
        return self.options.get((rec["entry"], rec.get("width")))

    def only_hope(self) -> bool:
        """No run is complete and nothing smaller would fit: the run training now is never stopped early."""
        return not self.state.complete_runs() and self.smaller_run_fits() is None

    def on_late(self, job: RunJob, late: UnitLate) -> bool:
        """A unit stopped part-way at a pace that would end its run too late: its pace corrects
        the estimates (and the kept speed when it drifted); the time goes to a run that fits."""
        opt = self.option_of(self.state.data["runs"][job.rd.name])
        if opt is not None and late.images_per_s > 0:
            self.calibration = float(np.clip(opt.speed.train_ips / late.images_per_s, 0.5, 3.0))
            self.calibrated = True
        self.speed_book().observe(job.cfg, late.images_per_s)
        done = len(self.unit_times.get(job.rd.name, []))
        self.stopped_runs[job.rd.name] = (
            f"stopped during its unit {done + 1}: at {late.images_per_s:,.0f} img/s it "
            f"would end {mmss(late.late_s)} too late"
        )
        log.warning(f"{self.clock} {job.rd.name}: {self.stopped_runs[job.rd.name]}; its finished units are kept")
        return True

    def on_unit(self, job: RunJob, result: Any) -> bool:
        """Each finished unit corrects the estimates (and the kept speed when it drifted). A run
        projected to end well after the training deadline is stopped now (its units stay on disk)
        so the time goes to a run that fits, unless it is the only hope of a submission: no run is
        complete and nothing smaller would fit either (then the deadline alone stops it)."""
        if isinstance(result, UnitLate):
            return self.on_late(job, result)
        rec = self.state.data["runs"][job.rd.name]
        times = self.unit_times.setdefault(job.rd.name, [])
        times.append(float(result.summary.get("unit_seconds", 0.0)))
        if rec.get("unit_estimate_s"):
            self.calibration = float(np.clip(np.mean(times) / rec["unit_estimate_s"], 0.5, 3.0))
            self.calibrated = True
        self.speed_book().observe(job.cfg, float(result.summary.get("images_per_s", 0.0)))
        left = job.outstanding
        finish = self.clock.now() + left * float(np.mean(times))
        late = finish - self.step_deadline()
        if self.executor.capacity > 1 or not left or late <= 0:
            return False
        if self.only_hope():
            log.warning(f"{self.clock} {job.rd.name}: would end {mmss(late)} late; kept, as nothing smaller fits")
            return False
        self.stopped_runs[job.rd.name] = (
            f"stopped after {len(times)} unit(s): at {np.mean(times):.0f} s a unit it would end {mmss(late)} too late"
        )
        log.warning(f"{self.clock} {job.rd.name}: {self.stopped_runs[job.rd.name]}; its finished units are kept")
        return True

    def smaller_run_fits(self) -> Purchase | None:
        """What the time left would buy with the speeds measured so far (nothing is timed anew)."""
        options = [o for key, o in self.options.items() if key not in self.failed_options]
        seconds = (self.clock.left() - self.reserve()) * (1 - self.safety())
        return policy.best_purchase(
            options, Budget(self.shape(), self.settings.folds, 1, self.calibration), seconds, self.table
        )

    def on_done(self, job: RunJob, manifest: dict[str, Any]) -> None:
        name = job.rd.name
        self.active = [j for j in self.active if j is not job]
        started = self.jobs_started.pop(name, self.clock.now())
        if not job.units:  # finished in an earlier session: its record stands
            return
        self.state.add_seconds(name, self.clock.now() - started)
        if manifest.get("complete"):
            test = manifest.get("test_metrics") or {}
            self.state.record(
                name,
                status="complete",
                cv_acc=manifest["cv"]["acc"],
                cv_logloss=manifest["cv"]["logloss"],
                test_acc=test.get("acc"),
                session=self.state.session_index,
                minute=round(self.clock.elapsed() / 60, 2),
                note="optimistic CV: epochs chosen on the scored rows (select_epoch)" if job.cfg.select_epoch else "",
            )
            log.info(f"{self.clock} {name}: complete, CV accuracy {manifest['cv']['acc']:.4f}")
            self.select()
        elif job.failures:
            rec = self.state.record(name, status="failed", note=job.failures[0][:300])
            self.failed_options.add((rec["entry"], rec.get("width")))
            log.warning(f"{self.clock} {name}: failed ({job.failures[0][:200]}); not bought again this session")
        else:
            left = len(manifest.get("missing_folds", []))
            why = self.stopped_runs.pop(name, "stopped at the deadline")
            self.state.record(
                name,
                status="incomplete",
                note=f"{why}; {left} fold(s) unfinished; never blended; the same command (with time) finishes it",
            )

    def select(self) -> dict[str, Any]:
        """Score every complete run alone and every blend of them; keep the honest choice."""
        from fmnist_kaggle.evaluate.choose import choose

        names = self.state.complete_runs()
        if (self.state.data.get("choice") or {}).get("over") == names:
            return self.state.data["choice"]
        t0 = time.monotonic()
        runs = [load_run(n, self.workdir) for n in names]
        choice = choose(runs, runs[0].labels, self.test.labels)
        if len(runs) > 1:  # blends were scored: the cost the reserve is made of
            self.select_s_per_run = (time.monotonic() - t0) / len(runs)
        minute = round(self.clock.elapsed() / 60, 2)
        self.state.data["choice"] = {
            **choice.to_dict(),
            "over": names,
            "session": self.state.session_index,
            "minute": minute,
        }
        self.state.save()
        log.info(f"{self.clock} choice: {choice.reason}")
        return self.state.data["choice"]


def _pilot(
    comp: Competition,
    time_limit: float,
    workdir: str | Path,
    portfolio: str | Path | None,
    settings: Settings,
    executor: Executor,
    started: float | None,
    sizes: str | Path | None = None,
    clock: Clock | None = None,
) -> Autopilot:
    from fmnist_kaggle.training.device import cpu_native_bf16, resolve_device

    clock = clock or Clock(started if started is not None else time.monotonic(), time_limit)
    kind = hardware_kind(resolve_device(settings.device or "auto").type, cpu_native_bf16())
    return Autopilot(
        comp, clock, for_hardware(load_portfolio(portfolio), kind), workdir, settings, executor, load_sizes(sizes)
    )


def run_auto(
    comp: Competition,
    time_limit: float,
    name: str = "auto",
    workdir: str | Path = ".",
    portfolio: str | Path | None = None,
    device: str | None = None,
    amp: str | None = None,
    executor: Executor | None = None,
    submit_message: str | None = None,
    slug: str | None = None,
    progress: bool = True,
    started: float | None = None,
    folds: int = 5,
    subset: int = 0,
) -> dict[str, Any]:
    """Buy runs within `time_limit` seconds (counted from `started`, a `time.monotonic()` value:
    now by default), choose honestly, write the submission and the leaderboard; upload it when
    `submit_message` is given. Returns the summary."""
    if submit_message is not None:
        comp.require_slug(slug)
    settings = Settings(name, folds, subset, device, amp, submit_message is not None)
    with executor or make_executor("local", progress=progress) as ex:
        pilot = _pilot(comp, time_limit, workdir, portfolio, settings, ex, started)
        _refuse_if_hopeless(pilot)
        from fmnist_kaggle.training.device import cpu_native_bf16, resolve_device

        kind = hardware_kind(resolve_device(device or "auto").type, cpu_native_bf16())
        pilot.state.start_session(
            time_limit_s=time_limit, hardware=kind, executor=type(ex).__name__, capacity=ex.capacity
        )
        pilot.state.data.pop("stopped", None)
        pilot.state.save()
        log.info(
            f"{pilot.clock} fkaggle auto {name}: {len(pilot.entries)} portfolio entries "
            f"for {kind} and {pilot.rows} rows, {ex.capacity} unit(s) at once"
        )
        drive(
            ex,
            pilot.jobs(),
            pilot.on_done,
            progress,
            deadline=pilot.step_deadline,
            on_unit=pilot.on_unit,
            late_by=pilot.late_by,
        )
        pilot.state.data.setdefault("stopped", pilot.deadline_reason())  # the deadline, not the policy, ended it
    return _conclude(pilot, submit_message, slug)


def _refuse_if_hopeless(pilot: Autopilot) -> None:
    """Before anything is measured or written: the reserve alone must leave time to train."""
    if not pilot.state.committed and pilot.clock.left() <= 5.0 + pilot.reserve():
        raise FkaggleError(pilot.too_short())


def _conclude(pilot: Autopilot, submit_message: str | None, slug: str | None) -> dict[str, Any]:
    from fmnist_kaggle.data.submission_file import check_file, sha256
    from fmnist_kaggle.evaluate.submission import make_submission

    trained_at = pilot.clock.now()
    state, session = pilot.state, pilot.state.session
    if not state.committed:  # the deadline came before any run could start
        raise FkaggleError(pilot.too_short())
    if not state.complete_runs():
        session["wall_s"] = round(pilot.clock.elapsed(), 1)
        state.save()
        write_leaderboard(pilot.settings.name, state.data, pilot.files)
        raise FkaggleError(
            f"no run finished within {pilot.clock.limit:g}s; finished units are kept: "
            "re-run the same command (with a larger --time-limit) to go on"
        )
    choice = pilot.select()
    chosen = choice["chosen"]
    method = "mean" if chosen["method"] == "single" else chosen["method"]
    sub = make_submission(pilot.comp, chosen["runs"], method, pilot.settings.name, pilot.workdir)
    text, problems, _ = check_file(Path(sub["csv"]), pilot.comp)
    if problems:
        raise FkaggleError("the written submission is invalid: " + "; ".join(problems), sub["csv"])
    state.data["submission"] = {"csv": sub["csv"], "json": sub["json"], "cv": sub["cv"], "test": sub.get("test")}
    before = state.data.get("uploaded") or {}
    uploaded = None
    if submit_message is not None and before.get("sha256") == sha256(text):
        log.warning(
            f"{sub['csv']} was already uploaded by this autopilot (ref {before.get('ref')}); not uploaded again"
        )
    elif submit_message is not None:
        from fmnist_kaggle.submit.uploads import submit_file

        t0 = pilot.clock.now()
        uploaded = submit_file(pilot.comp, sub["csv"], submit_message, slug=slug, workdir=pilot.workdir)
        state.data["upload_s"] = round(pilot.clock.now() - t0, 1)
        state.data["uploaded"] = {k: uploaded.get(k) for k in ("ref", "status", "reply", "time", "sha256")}
    session["wall_s"] = round(pilot.clock.elapsed(), 1)
    rows = write_leaderboard(pilot.settings.name, state.data, pilot.files)
    state.data["final_s"] = round(pilot.clock.now() - trained_at, 1)
    session["wall_s"] = round(pilot.clock.elapsed(), 1)
    state.save()
    log.info(f"{pilot.clock} submission {sub['csv']}: {choice['reason']}")
    return {
        "name": pilot.settings.name,
        "submission": sub["csv"],
        "record": sub["json"],
        "chosen": chosen,
        "reason": choice["reason"],
        "cv": sub["cv"],
        "test": sub.get("test"),
        "leaderboard": rows,
        "time_limit_s": pilot.clock.limit,
        "wall_s": session["wall_s"],
        "train_s": session["train_s"],
        "stopped": state.data.get("stopped"),
        "totals": state.totals(),
        "files": {
            "markdown": str(pilot.files.markdown),
            "csv": str(pilot.files.csv),
            "png": str(pilot.files.png),
            "state": str(pilot.files.state),
        },
        **({"uploaded": uploaded} if uploaded else {}),
    }


# ----------------------------------------------------------------------------- the plan, without training


def show_plan(
    comp: Competition,
    time_limit: float,
    name: str = "auto",
    workdir: str | Path = ".",
    portfolio: str | Path | None = None,
    device: str | None = None,
    amp: str | None = None,
    folds: int = 5,
    subset: int = 0,
    executor: Executor | None = None,
) -> dict[str, Any]:
    """What `time_limit` would buy here if every run took its estimate: the purchases in order, with
    measured speeds; when nothing fits, the smallest budget that would. Trains and writes nothing."""
    settings = Settings(name, folds, subset, device, amp)
    with executor or make_executor("local", progress=False) as ex:
        pilot = _pilot(comp, time_limit, workdir, portfolio, settings, ex, None)
        pilot.book = SpeedBook(pilot.ws.autopilot_speeds, machine_of(ex, device or "auto"), writable=False)
        seconds = (time_limit - pilot.reserve() - pilot.clock.elapsed()) * (1 - pilot.safety())
        purchases = policy.plan(pilot.candidates(seconds), pilot.budget(), seconds, pilot.table, MAX_RUNS)
        rows = [_plan_row(p, i) for i, p in enumerate(purchases)]
        result: dict[str, Any] = {
            "limit_s": time_limit,
            "reserve_s": round(pilot.reserve(), 1),
            "purchases": rows,
            "folds": folds,
            "rows": pilot.rows,
        }
        speeds = [{"entry": o.entry.name, "width": o.width, **o.speed.to_dict()} for o in pilot.options.values()]
        result["speeds"] = speeds
        if not rows:
            cheapest = policy.cheapest(list(pilot.options.values()), pilot.budget())
            if cheapest is not None:
                need = pilot.reserve() + cheapest[1] / (1 - FIRST_SAFETY) + pilot.clock.elapsed()
                result["nothing_fits"] = (
                    f"nothing fits {time_limit:g} s here; the smallest budget that buys a run "
                    f"is about {math.ceil(need / 60)}m ({cheapest[0].entry.name} at {cheapest[0].entry.min_epochs:g} "
                    "epoch(s))"
                )
        return result


def _plan_row(p: Purchase, index: int) -> dict[str, Any]:
    o = p.option
    return {
        "run": index + 1,
        "entry": o.entry.name,
        "width": o.width,
        "model": o.entry.config(o.width).model,
        "epochs": round(p.fractional_epochs, 2),
        "steps": p.steps,
        "minutes": round(p.seconds / 60, 2),
        "expected_acc": p.expected_acc,
        "train_img_s": o.speed.train_ips,
        "precision": o.speed.precision,
    }


def plan_table(plan: dict[str, Any]) -> str:
    keys = ["run", "entry", "model", "width", "epochs", "steps", "minutes", "expected_acc", "train_img_s", "precision"]
    lines = [
        f"{plan['rows']} rows, {plan['folds']} folds, {plan['limit_s'] / 60:g} min "
        f"with {plan['reserve_s']:.0f} s kept for choosing and writing"
    ]
    lines.append("  ".join(f"{k:<12}" for k in keys))
    lines += ["  ".join(f"{'' if r[k] is None else r[k]!s:<12}" for k in keys) for r in plan["purchases"]]
    if plan.get("nothing_fits"):
        lines.append(plan["nothing_fits"])
    lines += [
        "",
        "each row is a k-fold run bought after the ones above, if every run takes its estimate;",
        "expected_acc: held-out accuracy measured for that width and length on the real data (sizes.toml)",
    ]
    lines += ["", "speeds measured here (an autopilot session keeps them in oof/autopilot/speeds.json):"]
    lines += [
        f"  {s['entry']} width {s['width']}: {s['train_ips']:,.0f} training img/s, "
        f"{s['predict_ips']:,.0f} predicted img/s ({s['precision']})"
        for s in plan["speeds"]
    ]
    return "\n".join(lines)
