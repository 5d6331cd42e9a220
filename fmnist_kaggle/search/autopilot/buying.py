"""Buying and resuming runs: the session's runs, one decision at a time.

Runs bought before and not finished come first (finished with their recorded size when what is
left of them fits); then, after each run, the best purchase the time left can buy, until nothing
fits (the reason is recorded), the portfolio's limits are reached, or MAX_RUNS runs are bought.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator

from fmnist_kaggle.durations import duration, duration_arg
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.runs.driver import RunJob, prepare_run
from fmnist_kaggle.search.autopilot import policy
from fmnist_kaggle.search.autopilot.policy import Option, Purchase
from fmnist_kaggle.search.autopilot.session import MAX_RUNS, Session, label
from fmnist_kaggle.search.autopilot.state import OPEN, RunRecord
from fmnist_kaggle.search.portfolio import HARDWARE, Entry
from fmnist_kaggle.training.config import TrainConfig
from fmnist_kaggle.training.estimate import unit_seconds

log = logging.getLogger(__name__)
Start = Callable[[RunJob], RunJob]  # the watch's: a run starts training under the session's deadline


def jobs(s: Session, start: Start) -> Iterator[RunJob]:
    """The runs to train, one decision at a time: unfinished ones first, then purchases."""
    for rec in s.state.runs_with(*OPEN):
        job = resume(s, start, rec)
        if job is not None:
            yield job
    while len(s.state.runs) < MAX_RUNS:
        if not s.buyable():
            s.state.extra["stopped"] = "every portfolio entry was bought as many times as it allows (its runs)"
            return
        seconds = s.available()
        options = s.menu.candidates(s.buyable(), s.affordable(seconds))
        purchase = next_purchase(s, options, seconds) or first_despite_probe(s, options, seconds)
        if purchase is None:
            stop_buying(s, options, seconds)
            return
        yield buy(s, start, purchase)
    s.state.extra["stopped"] = f"{MAX_RUNS} runs bought: choosing among more would cost more than they add"


def next_purchase(s: Session, options: list[Option], seconds: float) -> Purchase | None:
    """The best run the time left buys, fresh or continuing a finished run; before any unit has
    measured the machine, the first part of the run all of it would buy (its safe share), else
    the best run that share buys."""
    share = s.safe_share(seconds)
    if share < seconds:
        return policy.safe_first(options, s.budget(), seconds, share, s.frontier)
    return policy.best_purchase(options, s.budget(), seconds, s.frontier, s.finished())


def first_despite_probe(s: Session, options: list[Option], seconds: float) -> Purchase | None:
    """Before anything is scored, the probe may have read a busy minute: the cheapest run is
    bought at its fewest steps when it would fit at PROBE_DOUBT times the probed speed (its
    first unit measures the machine; a run that cannot finish is cut into a partial one)."""
    if s.state.scored_runs() or any(r.status == "training" for r in s.state.runs.values()):
        return None
    cheapest = policy.cheapest(options, s.budget())
    if cheapest is None or not s.time.doubted_fit(cheapest[1], seconds):
        return None
    opt, need = cheapest
    why = (
        f"it fits the {max(0, seconds):.0f} s available, though not the first purchase's safe share"
        if need <= seconds
        else f"{max(0, seconds):.0f} s are available, and a busy moment reads slow"
    )
    log.warning(
        f"{s.clock} the probe says the cheapest run needs ~{need:.0f} s; {why}: it is bought at its fewest "
        "steps and its first unit measures the machine"
    )
    return policy.shortest_purchase(opt, s.budget())


def stop_buying(s: Session, options: list[Option], seconds: float) -> None:
    """Nothing fits what is left: say why (and refuse the session if it never started a run)."""
    cheapest = policy.cheapest(options, s.budget())  # what the purchase was chosen from
    why = f"{max(0, seconds):.0f} s left to train (after the reserve of {s.reserve():.0f} s)"
    if cheapest is not None:
        opt, need = cheapest
        why += f"; the cheapest run, {label(opt.entry, opt.width)} at {policy.shortest_run(opt, s.budget())}, "
        why += f"needs ~{need:.0f} s"
    s.state.extra["stopped"] = why
    log.info(f"{s.clock} stopped buying: {why}")
    if not s.state.committed:  # nothing started, nothing finished before: refuse, having written nothing
        raise FkaggleError(s.too_short())


def entry_of(s: Session, rec: RunRecord) -> Entry:
    """The entry a run was bought from, as it was then: its recorded settings (the portfolio it
    came from may be gone), or, for a run recorded before they were, the portfolio's entry."""
    if rec.train is not None:
        widths = (rec.width,) if rec.width else ()
        return Entry(rec.entry, HARDWARE, (0, math.inf), rec.train, widths, float(rec.epochs), 0.0, "as bought")
    found = [e for e in s.entries if e.name == rec.entry]
    if not found:
        raise FkaggleError(
            f"runs.{rec.run} was bought from portfolio entry {rec.entry!r}, which this portfolio lacks: "
            "pass the --portfolio it was bought from",
            s.files.state,
        )
    return found[0]


def config_of(s: Session, rec: RunRecord) -> TrainConfig:
    """A bought run's training config, from its record (the entry as it was when bought)."""
    full = rec.steps >= rec.epochs * rec.steps_per_epoch
    max_steps = 0 if full else rec.steps
    sized = dict(max_steps=max_steps, seeds=[rec.seed], init_from=rec.continues)
    return entry_of(s, rec).config(rec.width, rec.epochs, **sized, **s.settings.train())


def buy(s: Session, start: Start, p: Purchase) -> RunJob:
    entry, width = p.option.entry, p.option.width
    n = s.state.purchases(entry.name)
    run = f"{s.settings.name}-{entry.name}-{n + 1}"
    s.state.commit()
    s.menu.book.save()
    rec = s.state.record(
        run,
        entry=entry.name,
        width=width,
        model=entry.config(width).model,
        steps=p.steps,
        steps_per_epoch=p.steps_per_epoch,
        epochs=p.epochs,
        fractional_epochs=round(p.fractional_epochs, 2),
        seed=entry.first_seed + n,  # each purchase of an entry its own seed: its runs differ, a blend can gain
        status="training",
        estimate_s=round(p.seconds, 1),
        unit_estimate_s=round(p.seconds / max(1, s.budget().waves()) / s.time.calibration, 2),
        expected_acc=p.expected_acc,
        continues=p.continues,
        prior_epochs=round(p.prior_epochs, 2) if p.continues else None,
        session=s.state.session_index,
        note="",
        train=entry.train,
    )
    expected = f", expected held-out accuracy {p.expected_acc:.4f}" if p.expected_acc else ""
    grows = f" continuing {p.continues} ({p.prior_epochs:.2f} epochs) by" if p.continues else ""
    log.info(
        f"{s.clock} buying {run}:{grows} {rec.model}{f' width {width}' if width else ''}, "
        f"{p.fractional_epochs:.2f} epochs "
        f"({p.steps} steps) x {s.settings.folds} folds, estimated {duration(p.seconds)}{expected} "
        f"(reserve {s.reserve():.0f} s)"
    )
    return start(
        prepare_run(s.comp, config_of(s, rec), run, s.settings.workdir, tag=run, trains_here=s.executor.trains_here)
    )


def resume(s: Session, start: Start, rec: RunRecord) -> RunJob | None:
    """A run bought before: finished with its recorded size if what is left of it fits."""
    cfg = config_of(s, rec)
    job = prepare_run(s.comp, cfg, rec.run, s.settings.workdir, tag=rec.run, trains_here=s.executor.trains_here)
    if not job.units:
        return start(job)
    shape, budget = s.shape(), s.budget()
    unit = unit_seconds(cfg, s.menu.speed(cfg), shape.train_rows, shape.val_rows, shape.test_rows)
    need = budget.waves() * unit * budget.calibration * len(job.units) / s.settings.folds
    if need > s.available():
        note = (
            f"{len(job.units)} unit(s) left need ~{need:.0f} s and {max(0, s.available()):.0f} s are available: "
            f"this session buys what fits instead; --time-limit {duration_arg(s.limit_for(need))} (or more) finishes it"
        )
        s.state.record(rec.run, status="incomplete", note=note)
        log.warning(f"{s.clock} {rec.run}: {note}")
        return None
    s.state.commit()
    s.menu.book.save()
    s.state.record(rec.run, status="training", session=s.state.session_index)
    log.info(f"{s.clock} finishing {rec.run} ({len(job.units)} unit(s) left), estimated {duration(need)}")
    return start(job)
