"""One session of `fkaggle auto`: keep buying the best run the time left can buy, then choose.

Orchestration only; each part is its own module: the time model (`timing`, pure), what can be
bought and at what speed (`menu`, `speeds`), the decisions (`policy`, pure), buying and resuming
runs (`buying`), watching them train (`watch`), the choice and the submission (`finish`), the
memory (`state`) and the leaderboard. A `Session` holds what they share: the data, the settings,
the executor, the clock and the state. One deadline, counted from the command's start, reaches
every layer as one `Deadline` object on the session's clock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fmnist_kaggle.data.competition import Competition
from fmnist_kaggle.data.folds import check_folds
from fmnist_kaggle.durations import duration, duration_arg
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.models import check_model_size
from fmnist_kaggle.runs.driver import RunJob
from fmnist_kaggle.runs.executors import Executor
from fmnist_kaggle.runs.trainset import training_rows
from fmnist_kaggle.search.autopilot import policy
from fmnist_kaggle.search.autopilot.menu import Menu, measure_on
from fmnist_kaggle.search.autopilot.policy import Budget, Option
from fmnist_kaggle.search.autopilot.settings import AutoSettings
from fmnist_kaggle.search.autopilot.speeds import SpeedBook
from fmnist_kaggle.search.autopilot.state import AutopilotState
from fmnist_kaggle.search.portfolio import Entry, Frontier, for_hardware, hardware_kind, load_frontier, load_portfolio
from fmnist_kaggle.storage.layout import AutoFiles, Workspace, check_name
from fmnist_kaggle.training.deadline import Deadline
from fmnist_kaggle.training.estimate import Shape, unit_shape
from fmnist_kaggle.training.timing import UPLOAD_S, Clock, TimeModel

log = logging.getLogger(__name__)
MAX_RUNS = 12  # runs one autopilot buys in all: beyond, choosing costs more than another seed gains


@dataclass
class InTraining:
    """The runs training now and when this session started each (the watch's to change)."""

    jobs: list[RunJob] = field(default_factory=list)
    started_at: dict[str, float] = field(default_factory=dict)

    def add(self, job: RunJob, now: float) -> None:
        self.started_at[job.rd.name] = now
        self.jobs.append(job)

    def remove(self, job: RunJob, now: float) -> float:
        """The run is back: the seconds it trained in this session."""
        self.jobs = [j for j in self.jobs if j is not job]
        return now - self.started_at.pop(job.rd.name, now)

    def outstanding(self) -> int:
        """Units not yet back, over every run training."""
        return sum(job.outstanding for job in self.jobs)


@dataclass(frozen=True)
class Session:
    """What the parts of one autopilot session share (each changing part owns its changes)."""

    comp: Competition
    settings: AutoSettings
    executor: Executor
    hardware: str  # which portfolio rows apply: cpu, cpu-bf16, cuda
    entries: list[Entry]
    frontier: Frontier
    clock: Clock
    files: AutoFiles
    state: AutopilotState
    time: TimeModel
    menu: Menu
    training: InTraining = field(default_factory=InTraining)

    @property
    def rows(self) -> int:
        return self.time.rows

    def shape(self) -> Shape:
        return unit_shape(self.rows, self.settings.folds, len(self.comp.test_set))

    def complete(self) -> int:
        return len(self.state.scored_runs())

    def reserve(self) -> float:
        return self.time.reserve(self.complete())

    def step_deadline(self) -> float:
        return self.time.step_deadline(self.complete())

    def deadline(self) -> Deadline:
        """The deadline every layer obeys, on the session's clock (it moves as runs complete)."""
        return Deadline(self.step_deadline, self.clock.now)

    def slots(self) -> int:
        return max(1, self.executor.capacity - self.training.outstanding())

    def budget(self, slots: int | None = None) -> Budget:
        return Budget(self.shape(), self.settings.folds, slots or self.slots(), self.time.calibration)

    def busy_seconds(self) -> float:
        """Estimated seconds the runs still training need (an executor with one slot waits for them)."""
        if self.executor.capacity > 1:
            return 0.0
        return sum(job.outstanding * self.state.runs[job.rd.name].unit_estimate_s for job in self.training.jobs)

    def available(self) -> float:
        """Seconds a new purchase may take (after the reserve, the runs training, the safety share)."""
        busy = self.busy_seconds() if self.training.jobs else 0.0
        return self.time.available(self.complete(), busy)

    def safe_share(self, seconds: float) -> float:
        """What a purchase may be sized to: before any unit of this session has measured the
        machine, a first run that ends even if it is FIRST_SLOWDOWN times slower than probed
        (what its units measure buys the rest); after, all of `seconds`."""
        first = not self.time.calibrated and not self.state.scored_runs() and not self.training.jobs
        return self.time.first_share(seconds) if first else seconds

    def deadline_reason(self) -> str:
        """Why the session stopped buying when the deadline, not the policy, ended it."""
        at = self.step_deadline() - self.clock.start
        return (
            f"the training deadline ({duration(at)} into the session) came while a run trained; "
            f"{self.reserve():.0f} s were kept for choosing and writing"
        )

    def limit_for(self, need_s: float) -> float:
        return self.time.limit_for(need_s, self.complete())

    def finished(self) -> list[policy.Finished]:
        """The finished runs a purchase may continue: complete, not continued yet, and bought from
        its entry as it is now (the same model and settings)."""
        now = {e.name: e.train for e in self.entries}
        return [
            policy.Finished(r.run, r.entry, r.width, r.total_epochs())
            for r in self.state.finished()
            if r.train is not None and r.train == now.get(r.entry)
        ]

    def buyable(self) -> list[Entry]:
        """Entries that may be bought again (an entry with `runs = N` is bought at most N times)."""
        return [e for e in self.entries if not e.runs or self.state.purchases(e.name) < e.runs]

    def affordable(self, seconds: float) -> Callable[[Option], bool]:
        """Whether an option (with its speed at best) is worth probing: its shortest run fits
        `seconds` (a 2-minute limit is not spent timing widths it could never buy)."""
        budget = self.budget()
        return lambda o: policy.purchase_seconds(o, budget, policy.fewest_steps(o, budget)) <= seconds

    def too_short(self) -> str:
        """The refusal when no run fits: the cheapest run and the limit that would buy it."""
        cheapest = policy.cheapest(list(self.menu.options.values()), self.budget())
        if cheapest is None:
            return (
                f"--time-limit {self.clock.limit:g}s leaves nothing to train: about {self.reserve():.0f} "
                "s go to choosing, writing and checking the submission"
            )
        opt, need = cheapest
        return (
            f"--time-limit {self.clock.limit:g}s is too short for any run of the portfolio here: the cheapest, "
            f"{label(opt.entry, opt.width)} at {policy.shortest_run(opt, self.budget())}, needs about {need:.0f} s; "
            f"give at least --time-limit {duration_arg(self.limit_for(need))}. Nothing was written"
        )


def label(entry: Entry, width: int | None) -> str:
    """'fast width 16': an entry at a width, in words."""
    return f"{entry.name}{f' width {width}' if width else ''}"


def _refuse_what_cannot_run(comp: Competition, settings: AutoSettings, entries: list[Entry], ws: Workspace) -> None:
    """Every check a run would make, made before anything is written: the run names, the rows
    (--subset) and folds it trains on, and every model the portfolio may build here."""
    for e in entries:
        check_name(f"{settings.name}-{e.name}-{MAX_RUNS}", "run")
    first = entries[0].config(entries[0].width_choices()[0], **settings.train())
    check_folds(ws, training_rows(comp, first), settings.folds, first.fold_seed)
    for e in entries:
        for width in e.width_choices():
            cfg = e.config(width, **settings.train())
            try:
                check_model_size(cfg.model, comp.train_set.num_classes, **cfg.model_kwargs)
            except FkaggleError as exc:
                raise FkaggleError(f"portfolio entry {e.name!r}{f' width {width}' if width else ''}: {exc}") from None


def open_session(
    comp: Competition, settings: AutoSettings, executor: Executor, clock: Clock | None = None, writable: bool = True
) -> Session:
    """Check the settings against the data and open the autopilot's state: refused in one line,
    with nothing written, when the session could not run."""
    from fmnist_kaggle.training.device import cpu_native_bf16, resolve_device

    train, test = comp.train_set, comp.test_set
    if test is None:
        raise FkaggleError("fkaggle auto makes a submission: the competition needs a test file (--test or the config)")
    if settings.folds < 2 or settings.folds > len(train):
        raise FkaggleError(f"--folds must be between 2 and the {len(train)} training rows, got {settings.folds}")
    if settings.subset < 0 or 0 < settings.subset < 2 * settings.folds:
        raise FkaggleError(f"--subset must be 0 (all rows) or at least twice --folds, got {settings.subset}")
    clock = clock or Clock(settings.started if settings.started is not None else time.monotonic(), settings.time_limit)
    bf16 = cpu_native_bf16() and settings.amp in (None, "auto", "bf16")  # --amp off trains fp32 there too
    kind = hardware_kind(resolve_device(settings.device or "auto").type, bf16)
    rows = min(settings.subset or len(train), len(train))
    portfolio = for_hardware(load_portfolio(settings.portfolio), kind)
    entries = [e for e in portfolio if e.fits_rows(rows)] or portfolio
    ws = Workspace(settings.workdir)
    files = ws.autopilot(settings.name)
    _refuse_what_cannot_run(comp, settings, entries, ws)
    fingerprints = {
        "data_fingerprint": train.fingerprint(),
        "test_fingerprint": test.fingerprint(),
        "folds": settings.folds,
        "subset": settings.subset,
    }
    state = AutopilotState.open(files, settings.name, fingerprints)
    final_s, upload_s = state.extra.get("final_s", 0.0), state.extra.get("upload_s", UPLOAD_S)
    timing = TimeModel(clock, rows, settings.submitting, final_s, upload_s)
    machine = lambda: executor.describe_machine(settings.device or "auto")  # noqa: E731
    book = lambda: SpeedBook(ws.autopilot_speeds, machine(), writable)  # noqa: E731
    menu = Menu(book, measure_on(executor, train), settings.train(), lambda: str(clock))
    frontier = load_frontier(settings.frontier)
    return Session(comp, settings, executor, kind, entries, frontier, clock, files, state, timing, menu)
