"""`fkaggle auto`: the best submission a time budget can buy.

One deadline, recomputed before every decision. A reserve for what follows training (the
choice among runs and blends, the submission file, the leaderboard, an upload) is kept from
the start and re-measured as runs finish. The portfolio (`portfolio.toml`) is walked in
order; each entry is sized before it starts: its throughput is measured on a few real steps
and its epochs chosen so the whole k-fold run fits what is left (a one-cycle schedule sized
up front, never cut). An entry that cannot finish is not started. Only complete runs are
blended; the choice is the best single run unless a blend beats it on nested CV.

Decisions live in `oof/autopilot/NAME/state.json`, so the same command resumes: finished runs
are reused, a started run is finished with its recorded epochs, and the rest is sized for
the new budget. The runs themselves are ordinary runs (`oof/NAME-<entry>/`).
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmnist_kaggle.data.competition import Competition
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.plots import autopilot_chart
from fmnist_kaggle.runs.driver import RunJob, drive, prepare_run
from fmnist_kaggle.runs.executors import Executor, make_executor
from fmnist_kaggle.runs.store import load_run
from fmnist_kaggle.search.portfolio import Entry, for_hardware, hardware_kind, load_portfolio
from fmnist_kaggle.storage import atomic, csvfile
from fmnist_kaggle.storage.artifacts import CorruptArtifact, read_json, utc_now
from fmnist_kaggle.storage.layout import Workspace, check_name
from fmnist_kaggle.storage.schemas import AUTOPILOT_STATE

if TYPE_CHECKING:
    from fmnist_kaggle.training.estimate import Shape

log = logging.getLogger(__name__)

SAFETY = 0.05  # share of the time left kept free when sizing: throughput drifts
FIRST_SAFETY = (
    0.2  # before any unit of this session has been timed (this project's 2-core VM drifts by +-25% over minutes)
)
SUBMIT_S = 60.0  # kept for an upload with --submit (the client's timeouts)
FINAL_S = (
    10.0  # after training, before any measurement: scikit-learn and matplotlib imports, the submission, the leaderboard
)
SAMPLE_ROWS = 2048  # rows the throughput is measured on
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_time_limit(text: str) -> float:
    """'90s', '20m', '1.5h' (or plain seconds) -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([smh]?)\s*", str(text))
    seconds = float(m.group(1)) * _UNITS[m.group(2)] if m else 0.0
    if not m or not 0 < seconds < 1e7:
        raise FkaggleError(f"--time-limit expects a duration such as 90s, 20m or 1.5h, got {text!r}")
    return seconds


def _mmss(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return (
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else f"{seconds // 60}:{seconds % 60:02d}"
    )


@dataclass
class Clock:
    start: float  # time.monotonic() when the command started
    limit: float

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        return self.limit - self.elapsed()

    def __str__(self) -> str:
        return f"[{_mmss(self.elapsed())} elapsed, {_mmss(self.left())} left]"


class Autopilot:
    """One session of `fkaggle auto`: sizes and starts the portfolio's runs, records each
    outcome, chooses the submission. Its state is `state.json`; nothing else is remembered."""

    def __init__(
        self,
        comp: Competition,
        name: str,
        clock: Clock,
        entries: list[Entry],
        workdir: str | Path,
        speed: dict[str, Any],
        capacity: int = 1,
        submitting: bool = False,
    ) -> None:
        self.comp, self.name, self.clock, self.entries, self.workdir, self.speed = (
            comp,
            name,
            clock,
            entries,
            workdir,
            speed,
        )
        self.ws = Workspace(workdir)
        self.files = self.ws.autopilot(name)
        for e in entries:
            check_name(f"{name}-{e.name}", "run")  # refused before anything is written
        self.train, self.test = comp.train_set, comp.test_set
        if self.test is None:
            raise FkaggleError(
                "fkaggle auto makes a submission: the competition needs a test file (--test or the config)"
            )
        self.capacity, self.submitting = capacity, submitting
        self.state = self._read_state()
        self.committed = self.files.state.exists()
        self.speeds: dict[str, Any] = {}
        self.calibration = 1.0  # measured run time / estimate, applied to later estimates
        self.calibrated = False
        self.select_s_per_run = 3.0 * len(self.train) / 60_000  # measured: four blend methods on 60,000 rows
        self.started: dict[str, float] = {}
        self.active: list[RunJob] = []
        self.unit_times: dict[str, list[float]] = {}  # this session's measured seconds per unit, per entry
        self.stopped: dict[str, str] = {}  # entries stopped early, and why
        self.deadline = clock.start + clock.limit  # the training deadline, set when training starts
        self.trained_at = 0.0  # time.monotonic() when training ended

    # -- state

    def _read_state(self) -> dict[str, Any]:
        fingerprint = self.train.fingerprint()
        if not self.files.state.exists():
            return {
                "schema": 1,
                "name": self.name,
                "data_fingerprint": fingerprint,
                "test_fingerprint": self.test.fingerprint(),
                "sessions": [],
                "entries": {},
                "order": [],
            }
        try:
            state = read_json(self.files.state, "autopilot state", AUTOPILOT_STATE)
        except CorruptArtifact as exc:
            raise FkaggleError(f"{exc}; delete {self.files.state.parent} or choose another --name") from None
        if state.get("data_fingerprint") != fingerprint or state.get("test_fingerprint") != self.test.fingerprint():
            raise FkaggleError(
                f"made on other training or test data; choose another --name (or delete {self.files.state.parent})",
                self.files.state,
            )
        return state

    def save(self) -> None:
        """Written once a run has started (or a state existed): a refused session writes nothing."""
        if self.committed:
            atomic.write_json(self.files.state, self.state)

    def record(self, entry: Entry, **fields: Any) -> dict[str, Any]:
        rec = self.state["entries"].setdefault(entry.name, {"entry": entry.name, "run": f"{self.name}-{entry.name}"})
        rec.update(fields)
        if entry.name not in self.state["order"]:
            self.state["order"].append(entry.name)
        self.save()
        return rec

    # -- estimates

    def shape(self, folds: int) -> Shape:
        from fmnist_kaggle.training.estimate import unit_shape

        return unit_shape(len(self.train), folds, len(self.test))

    def measure(self, entry: Entry) -> Any:
        from fmnist_kaggle.training.estimate import measure_throughput

        if entry.name not in self.speeds:
            rows = np.random.default_rng(0).permutation(len(self.train))[:SAMPLE_ROWS]
            rows.sort()
            cfg = entry.config(**self.speed)
            self.speeds[entry.name] = measure_throughput(
                cfg, self.train.images[rows], self.train.labels[rows], self.train.num_classes
            )
            sp = self.speeds[entry.name]
            log.info(
                f"{self.clock} {entry.name}: {sp.train_ips:,.0f} training img/s, {sp.predict_ips:,.0f} "
                f"predicted img/s ({sp.precision} on {sp.device})"
            )
        return self.speeds[entry.name]

    def run_seconds(self, entry: Entry, epochs: int, units: int | None = None) -> float:
        """Estimated wall time of the entry's run (or of `units` of its units) at `epochs`."""
        from fmnist_kaggle.training.estimate import unit_seconds

        cfg = entry.config(epochs, **self.speed)
        units = cfg.folds * len(cfg.seeds) if units is None else units
        shape = self.shape(cfg.folds)
        busy = sum(job.outstanding for job in self.active)
        waves = math.ceil(units / max(1, self.capacity - busy))
        return (
            waves
            * unit_seconds(cfg, self.measure(entry), shape.train_rows, shape.val_rows, shape.test_rows)
            * self.calibration
        )

    def reserve(self) -> float:
        """Seconds kept for after training: the choice and the submission file (measured per
        run), the last unit's predictions, an upload."""
        runs = max(2, 1 + sum(r.get("status") == "complete" for r in self.state["entries"].values()))
        tail = (
            max((2 * self.shape(5).val_rows + len(self.test)) / sp.predict_ips for sp in self.speeds.values())
            if self.speeds
            else 0.0
        )
        base = max(
            FINAL_S, 1.25 * self.state.get("final_s", 0.0)
        )  # imports, the file, its check, the leaderboard: measured last session
        return base + 1.5 * self.select_s_per_run * runs + tail + (SUBMIT_S if self.submitting else 0.0)

    def available(self) -> float:
        return (self.clock.left() - self.reserve()) * (1 - self.safety())

    def safety(self) -> float:
        """Until a unit of this session has measured how good the estimates are, keep more free."""
        return SAFETY if self.calibrated else FIRST_SAFETY

    def epoch_seconds(self, entry: Entry) -> float:
        """One more epoch of the entry's whole k-fold run."""
        from fmnist_kaggle.training.estimate import epoch_seconds

        cfg = entry.config(**self.speed)
        shape = self.shape(cfg.folds)
        waves = math.ceil(cfg.folds * len(cfg.seeds) / max(1, self.capacity))
        return waves * epoch_seconds(cfg, self.measure(entry), shape.train_rows, shape.val_rows) * self.calibration

    def size(self, entry: Entry, floor: int, available: float | None = None) -> tuple[int | None, float]:
        """The most epochs (up to the entry's) whose run fits the time available, or None and
        the time the floor would need."""
        floor = min(floor, entry.max_epochs)
        available = self.available() if available is None else available
        for epochs in range(entry.max_epochs, floor - 1, -1):
            seconds = self.run_seconds(entry, epochs)
            if seconds <= available:
                return epochs, seconds
        return None, self.run_seconds(entry, floor)

    def floor(self, entry: Entry) -> int:
        """A partner needs the epochs of the best finished run (weaker partners only dilute)."""
        done = [r for r in self.state["entries"].values() if r.get("status") == "complete"]
        best = max(done, key=lambda r: r.get("cv_acc", 0), default=None)
        return max(entry.min_epochs, best["epochs"]) if entry.comparable and best else entry.min_epochs

    # -- the portfolio, one decision at a time

    def jobs(self) -> Iterator[RunJob]:
        for entry in self.entries:
            job = self.next_job(entry)
            if job is not None:
                self.started[entry.name] = time.monotonic()
                self.active.append(job)
                yield job
        if not self.committed:  # nothing started, nothing finished before: refuse, having written nothing
            raise FkaggleError(self.too_short())

    def too_short(self) -> str:
        if not self.speeds:
            return (
                f"--time-limit {self.clock.limit:g}s leaves nothing to train: about {self.reserve():.0f} "
                "s go to choosing, writing and checking the submission"
            )
        need, entry = min(
            ((self.run_seconds(e, e.min_epochs), e) for e in self.entries if e.name in self.speeds), key=lambda n: n[0]
        )
        total = self.clock.elapsed() + need / (1 - self.safety()) + self.reserve()
        return (
            f"--time-limit {self.clock.limit:g}s is too short for any run of the portfolio "
            f"here: the cheapest, {entry.name} at {entry.min_epochs} epoch(s), needs "
            f"about {need:.0f} s; give at least {math.ceil(total / 60)}m. Nothing was "
            "written"
        )

    def commit(self) -> None:
        """The first run starts: from now on the session's decisions are on disk."""
        if not self.committed:
            self.committed = True
            self.save()

    def next_job(self, entry: Entry) -> RunJob | None:
        rec = self.state["entries"].get(entry.name, {})
        if rec.get("status") == "complete" or rec.get("epochs"):  # reuse, or finish with its recorded epochs
            job = prepare_run(
                self.comp, entry.config(rec["epochs"], **self.speed), rec["run"], self.workdir, tag=entry.name
            )
            if not job.units:
                return job
            need = self.run_seconds(entry, rec["epochs"], len(job.units))
            if need > self.available():
                self.record(
                    entry,
                    status="incomplete",
                    note=f"{len(job.units)} unit(s) left need ~{need:.0f} s, {max(0, self.available()):.0f} "
                    "s available: re-run with a larger --time-limit to finish it",
                )
                log.warning(f"{self.clock} {entry.name}: {self.state['entries'][entry.name]['note']}")
                return None
            self.commit()
            self.record(
                entry,
                status="training",
                estimate_s=round(need, 1),
                unit_estimate_s=self.unit_estimate(entry, rec["epochs"]),
            )
            log.info(
                f"{self.clock} {entry.name}: finishing {rec['run']} ({len(job.units)} unit(s), "
                f"{rec['epochs']} epochs), estimated {_mmss(need)}"
            )
            return job
        epochs, seconds = self.size(entry, self.floor(entry))
        if epochs is None:
            self.record(
                entry,
                status="skipped",
                note=f"{self.floor(entry)} epochs need ~{seconds:.0f} s, {max(0, self.available()):.0f} s available",
            )
            log.info(f"{self.clock} {entry.name}: skipped ({self.state['entries'][entry.name]['note']})")
            return None
        cfg = entry.config(epochs, **self.speed)
        self.commit()
        self.record(
            entry,
            status="training",
            epochs=epochs,
            estimate_s=round(seconds, 1),
            unit_estimate_s=self.unit_estimate(entry, epochs),
            model=cfg.model,
            note="",
        )
        log.info(
            f"{self.clock} {entry.name}: {cfg.model} {epochs} epochs x {cfg.folds} folds "
            f"x {len(cfg.seeds)} seed(s), estimated {_mmss(seconds)} (reserve {self.reserve():.0f} "
            "s)"
        )
        return prepare_run(self.comp, cfg, f"{self.name}-{entry.name}", self.workdir, tag=entry.name)

    def unit_estimate(self, entry: Entry, epochs: int) -> float:
        """One (fold, seed) unit's estimate before calibration: what `on_unit` measures against."""
        return round(self.run_seconds(entry, epochs, 1) / self.calibration, 2)

    def on_unit(self, job: RunJob, result: Any) -> bool:
        """Each finished unit corrects the estimates; a run projected to end after the training
        deadline is stopped now (its units stay on disk) so the time goes to a run that fits."""
        rec = self.state["entries"][job.tag]
        times = self.unit_times.setdefault(job.tag, [])
        times.append(float(result.summary.get("unit_seconds", 0.0)))
        if rec.get("unit_estimate_s"):
            self.calibration = float(np.clip(np.mean(times) / rec["unit_estimate_s"], 0.5, 3.0))
            self.calibrated = True
        left = job.outstanding  # units of this run not back yet
        finish = time.monotonic() + left * float(np.mean(times))
        if self.capacity == 1 and left and finish > self.deadline:  # one unit at a time: the projection is the queue
            self.stopped[job.tag] = (
                f"stopped after {len(times)} unit(s): at {np.mean(times):.0f} s per unit "
                f"it would end {_mmss(finish - self.deadline)} after the training deadline"
            )
            log.warning(
                f"{self.clock} {job.tag}: {self.stopped[job.tag]}; its finished units are "
                "kept (a larger --time-limit finishes it)"
            )
            return True
        return False

    def on_done(self, job: RunJob, manifest: dict[str, Any]) -> None:
        entry = next(e for e in self.entries if e.name == job.tag)
        self.active = [j for j in self.active if j is not job]
        rec = self.state["entries"][entry.name]
        seconds = time.monotonic() - self.started.get(entry.name, time.monotonic())
        if manifest.get("complete"):
            test = manifest.get("test_metrics") or {}
            self.record(
                entry,
                status="complete",
                cv_acc=manifest["cv"]["acc"],
                cv_logloss=manifest["cv"]["logloss"],
                test_acc=test.get("acc"),
                seconds=rec.get("seconds") if not job.units else round(seconds + rec.get("seconds_before", 0), 1),
                minute=rec.get("minute")
                if not job.units
                else round((self.state.get("elapsed_before", 0) + self.clock.elapsed()) / 60, 2),
                note="",
            )
            log.info(
                f"{self.clock} {entry.name}: complete, CV accuracy {manifest['cv']['acc']:.4f} in {_mmss(seconds)}"
            )
            self.select()
        elif job.failures:
            self.record(entry, status="failed", note=job.failures[0][:300])
        else:
            left = len(manifest.get("missing_folds", []))
            why = self.stopped.pop(entry.name, "stopped at the deadline")
            self.record(
                entry,
                status="incomplete",
                seconds_before=round(seconds + rec.get("seconds_before", 0), 1),
                note=f"{why}; {left} fold(s) unfinished; never blended; the same command (with time) finishes it",
            )

    # -- the choice

    def complete_runs(self) -> list[str]:
        return [
            self.state["entries"][n]["run"]
            for n in self.state["order"]
            if self.state["entries"][n].get("status") == "complete"
        ]

    def select(self) -> dict[str, Any]:
        from fmnist_kaggle.evaluate.choose import choose

        names = self.complete_runs()
        if self.state.get("choice", {}).get("over") == names:
            return self.state["choice"]
        t0 = time.monotonic()
        runs = [load_run(n, self.workdir) for n in names]
        choice = choose(runs, runs[0].labels, self.test.labels)
        if len(runs) > 1:  # blends were scored: the cost the reserve is made of
            self.select_s_per_run = (time.monotonic() - t0) / len(runs)
        self.state["choice"] = {**choice.to_dict(), "over": names}
        self.save()
        log.info(f"{self.clock} choice: {choice.reason}")
        return self.state["choice"]


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
) -> dict[str, Any]:
    """Train the portfolio within `time_limit` seconds (counted from `started`, a
    `time.monotonic()` value: now by default), choose honestly, write the submission and the
    leaderboard; upload it when `submit_message` is given. Returns the summary."""
    from fmnist_kaggle.training.device import cpu_native_bf16, resolve_device

    clock = Clock(started if started is not None else time.monotonic(), time_limit)
    if submit_message is not None:
        comp.require_slug(slug)
    kind = hardware_kind(resolve_device(device or "auto").type, cpu_native_bf16())
    entries = for_hardware(load_portfolio(portfolio), kind)
    speed = {"device": device, "amp": amp}
    executor = executor or make_executor("local", progress=progress)
    with executor as ex:
        pilot = Autopilot(comp, name, clock, entries, workdir, speed, 1, submit_message is not None)
        _refuse_if_hopeless(pilot)
        pilot.capacity = ex.capacity
        pilot.state["sessions"].append(
            {
                "started": utc_now(),
                "time_limit_s": time_limit,
                "hardware": kind,
                "executor": type(ex).__name__,
                "capacity": pilot.capacity,
            }
        )
        pilot.state["elapsed_before"] = sum(s.get("wall_s", 0) for s in pilot.state["sessions"][:-1])
        pilot.save()
        log.info(
            f"{clock} fkaggle auto {name}: {len(entries)} portfolio entries for {kind}, "
            f"{pilot.capacity} unit(s) at once"
        )
        pilot.deadline = clock.start + clock.limit - pilot.reserve()
        drive(ex, pilot.jobs(), pilot.on_done, progress, deadline=pilot.deadline, on_unit=pilot.on_unit)
    pilot.trained_at = time.monotonic()
    for entry in entries:
        if entry.name not in pilot.state["entries"]:
            pilot.record(entry, status="not reached", note="no time left to size it")
    return _conclude(pilot, submit_message, slug)


def show_plan(
    comp: Competition,
    time_limit: float,
    name: str = "auto",
    workdir: str | Path = ".",
    portfolio: str | Path | None = None,
    device: str | None = None,
    amp: str | None = None,
    capacity: int = 1,
) -> list[dict[str, Any]]:
    """The portfolio for this machine with measured speeds, and the epochs each entry would get
    within `time_limit` if every run took its estimate. Trains and writes nothing."""
    from fmnist_kaggle.training.device import cpu_native_bf16, resolve_device

    kind = hardware_kind(resolve_device(device or "auto").type, cpu_native_bf16())
    entries = for_hardware(load_portfolio(portfolio), kind)
    pilot = Autopilot(
        comp, name, Clock(time.monotonic(), time_limit), entries, workdir, {"device": device, "amp": amp}, capacity
    )
    left, best, rows = time_limit - pilot.reserve(), None, []
    for entry in entries:
        speed = pilot.measure(entry)
        floor = max(entry.min_epochs, best) if entry.comparable and best else entry.min_epochs
        epochs, seconds = pilot.size(entry, floor, left * (1 - pilot.safety()))
        cfg = entry.config(**pilot.speed)
        per_epoch = pilot.epoch_seconds(entry)
        rows.append(
            {
                "entry": entry.name,
                "hardware": kind,
                "model": cfg.model,
                "settings": ", ".join(f"{k}={v}" for k, v in entry.train.items()),
                "epochs": f"{floor}..{entry.max_epochs}",
                "train_img_s": speed.train_ips,
                "precision": speed.precision,
                "s_per_epoch": round(per_epoch, 1),
                "planned_epochs": epochs or 0,
                "planned_min": round(seconds / 60, 1) if epochs else 0,
                "why": entry.why,
            }
        )
        if epochs:
            left -= seconds
            best = best or epochs
    return rows


def plan_table(rows: list[dict[str, Any]]) -> str:
    keys = ["entry", "model", "epochs", "train_img_s", "precision", "s_per_epoch", "planned_epochs", "planned_min"]
    lines = ["  ".join(f"{k:<14}" for k in keys)]
    lines += ["  ".join(f"{r[k]!s:<14}" for k in keys) + f"  {r['settings']}" for r in rows]
    lines += [
        "",
        "s_per_epoch: one more epoch of the whole k-fold run; planned: what the "
        "budget buys if every run takes its estimate",
    ]
    lines += [f"{r['entry']}: {r['why']}" for r in rows]
    return "\n".join(lines)


def _refuse_if_hopeless(pilot: Autopilot) -> None:
    """Before anything is measured or written: the reserve alone must leave time to train."""
    if not pilot.committed and pilot.clock.left() <= 5.0 + pilot.reserve():
        raise FkaggleError(pilot.too_short())


def _conclude(pilot: Autopilot, submit_message: str | None, slug: str | None) -> dict[str, Any]:
    from fmnist_kaggle.data.submission_file import check_file, sha256
    from fmnist_kaggle.evaluate.submission import make_submission

    session = pilot.state["sessions"][-1]
    if not pilot.committed:  # the deadline came before any run could start
        raise FkaggleError(pilot.too_short())
    if not pilot.complete_runs():
        session["wall_s"] = round(pilot.clock.elapsed(), 1)
        write_leaderboard(pilot)
        raise FkaggleError(
            f"no run finished within {pilot.clock.limit:g}s; finished units are kept: "
            "re-run the same command (with a larger --time-limit) to go on"
        )
    choice = pilot.select()
    chosen = choice["chosen"]
    sub = make_submission(
        pilot.comp,
        chosen["runs"],
        "mean" if chosen["method"] == "single" else chosen["method"],
        pilot.name,
        pilot.workdir,
    )
    text, problems, _ = check_file(Path(sub["csv"]), pilot.comp)
    if problems:
        raise FkaggleError("the written submission is invalid: " + "; ".join(problems), sub["csv"])
    pilot.state["submission"] = {"csv": sub["csv"], "json": sub["json"], "cv": sub["cv"], "test": sub.get("test")}
    before = pilot.state.get("uploaded") or {}
    uploaded = None
    if submit_message is not None and before.get("sha256") == sha256(text):
        log.warning(
            f"{sub['csv']} was already uploaded by this autopilot (ref {before.get('ref')}); not uploaded again"
        )
    elif submit_message is not None:
        from fmnist_kaggle.submit.uploads import submit_file

        uploaded = submit_file(pilot.comp, sub["csv"], submit_message, slug=slug, workdir=pilot.workdir)
        pilot.state["uploaded"] = {k: uploaded.get(k) for k in ("ref", "status", "reply", "time", "sha256")}
    session["wall_s"] = round(pilot.clock.elapsed(), 1)
    rows = write_leaderboard(pilot)
    pilot.state["final_s"] = round(time.monotonic() - pilot.trained_at, 1)
    session["wall_s"] = round(pilot.clock.elapsed(), 1)
    pilot.save()
    log.info(f"{pilot.clock} submission {sub['csv']}: {choice['reason']}")
    return {
        "name": pilot.name,
        "submission": sub["csv"],
        "record": sub["json"],
        "chosen": chosen,
        "reason": choice["reason"],
        "cv": sub["cv"],
        "test": sub.get("test"),
        "leaderboard": rows,
        "time_limit_s": pilot.clock.limit,
        "wall_s": session["wall_s"],
        "files": {
            "markdown": str(pilot.files.markdown),
            "csv": str(pilot.files.csv),
            "png": str(pilot.files.png),
            "state": str(pilot.files.state),
        },
        **({"uploaded": uploaded} if uploaded else {}),
    }


# ----------------------------------------------------------------------------- leaderboard

COLUMNS = ["kind", "name", "model", "epochs", "minutes", "cv_acc", "cv_logloss", "test_acc", "status", "chosen", "note"]


def leaderboard_rows(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Everything tried: each portfolio entry's run, then each blend candidate."""
    choice = state.get("choice") or {}
    chosen = (choice.get("chosen") or {}).get("label")
    rows = []
    for name in state["order"]:
        r = state["entries"][name]
        rows.append(
            {
                "kind": "run",
                "name": r["run"],
                "model": r.get("model", ""),
                "epochs": r.get("epochs", ""),
                "minutes": round(r["seconds"] / 60, 2) if r.get("seconds") else "",
                "cv_acc": r.get("cv_acc", ""),
                "cv_logloss": r.get("cv_logloss", ""),
                "test_acc": r.get("test_acc") if r.get("test_acc") is not None else "",
                "status": r.get("status", ""),
                "chosen": r["run"] == chosen,
                "note": r.get("note", ""),
                "minute": r.get("minute"),
            }
        )
    for c in choice.get("candidates", []):
        if c["method"] != "single":
            rows.append(
                {
                    "kind": "blend",
                    "name": c["label"],
                    "model": "",
                    "epochs": "",
                    "minutes": round(c["seconds"] / 60, 3),
                    "cv_acc": c["cv_acc"],
                    "cv_logloss": c["cv_logloss"],
                    "test_acc": c["test_acc"] if c["test_acc"] is not None else "",
                    "status": "nested CV" if c["nested"] else "CV",
                    "chosen": c["label"] == chosen,
                    "note": "",
                }
            )
    return rows


def _fmt(key: str, v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.2f}" if key == "minutes" else f"{v:.4f}"
    return "**yes**" if v is True else "" if v is False else str(v)


def write_leaderboard(pilot: Autopilot) -> list[dict[str, Any]]:
    state, files = pilot.state, pilot.files
    rows = leaderboard_rows(state)
    atomic.write_text(files.csv, csvfile.csv_text([{k: r[k] for k in COLUMNS} for r in rows], COLUMNS))
    limit_min = max(s["time_limit_s"] for s in state["sessions"]) / 60
    sessions = ", ".join(
        f"{s['started']} ({_mmss(s['time_limit_s'])} limit, {_mmss(s.get('wall_s', 0))} used, {s['hardware']})"
        for s in state["sessions"]
    )
    choice = state.get("choice")
    lines = [f"# fkaggle auto: {pilot.name}", "", f"Sessions: {sessions}.", ""]
    if choice:
        lines += [f"Chosen: **{choice['chosen']['label']}**: {choice['reason']}.", ""]
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(k, r[k]) for k in COLUMNS) + " |" for r in rows]
    lines += ["", "Test accuracy is shown where the test labels are known; it is never used to choose."]
    atomic.write_text(files.markdown, "\n".join(lines) + "\n")
    runs = [
        {
            "label": r["name"],
            "minute": r["minute"],
            "cv_acc": r["cv_acc"],
            "test_acc": r["test_acc"] or None,
            "chosen": r["chosen"],
        }
        for r in rows
        if r["kind"] == "run" and r["status"] == "complete"
    ]
    blends = [
        {"method": r["name"].split("(")[0], "label": r["name"], "cv_acc": r["cv_acc"], "chosen": r["chosen"]}
        for r in rows
        if r["kind"] == "blend"
    ]
    autopilot_chart(runs, blends, limit_min, f"fkaggle auto (--name {pilot.name}): CV accuracy against time", files.png)
    return [{k: r[k] for k in COLUMNS} for r in rows]
