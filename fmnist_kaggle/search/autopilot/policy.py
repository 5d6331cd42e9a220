"""What the autopilot buys next: pure decisions over measured speeds and the time left.

Nothing here reads a clock or trains: the session passes in the seconds available, each option's
measured speed and the shape of a unit, so the policy is tested with made-up speeds in
milliseconds. A purchase is one k-fold run of one entry at one width, sized in optimizer steps
(a fractional number of epochs) to the time it is given; which width and length win is the
frontier's evidence (held-out accuracy per width and length), else the widest width that reaches
half of the entry's epochs.

A purchase may also continue a finished run of the same entry and width (`--init-from`: fold k
starts from that run's fold-k model, its schedule anew). It is judged as a run of their total
epochs, less CONTINUE_LOSS: what a safe first purchase trained is grown on, not set aside.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from fmnist_kaggle.search.portfolio import Entry, Frontier
from fmnist_kaggle.training.estimate import MIN_STEPS, Shape, Throughput, most_steps, unit_seconds

# held-out accuracy a continued run loses to one of the same total length trained straight (fold 0,
# docs/results.md: `fast` w8 2+4 / 1.3+4 epochs -0.09 / +0.05 points, `fast-aug` w16 4+8 +0.22)
CONTINUE_LOSS = 0.001


@dataclass(frozen=True)
class Option:
    """An entry at one width, with its speed measured on the executor that trains it."""

    entry: Entry
    width: int | None
    speed: Throughput


@dataclass(frozen=True)
class Purchase:
    """One sized run: the option, its optimizer steps per unit (the last epoch may stop part-way),
    its estimated wall seconds and the held-out accuracy the evidence expects of it."""

    option: Option
    steps: int
    steps_per_epoch: int
    seconds: float
    expected_acc: float | None = None
    continues: str | None = None  # the finished run whose fold models it starts from
    prior_epochs: float = 0.0  # the epochs those models trained

    @property
    def epochs(self) -> int:
        return math.ceil(self.steps / self.steps_per_epoch)

    @property
    def fractional_epochs(self) -> float:
        return self.steps / self.steps_per_epoch

    @property
    def total_epochs(self) -> float:
        """The epochs its models will have trained: a continued run's and its own."""
        return self.prior_epochs + self.fractional_epochs


@dataclass(frozen=True)
class Finished:
    """A finished run a purchase may continue: its entry, width and the epochs it trained."""

    run: str
    entry: str
    width: int | None
    epochs: float


@dataclass(frozen=True)
class Budget:
    """What a purchase is sized against: the unit shape, the folds, the executor's free slots and
    the correction factor the finished units of this session measured (their time / estimate)."""

    shape: Shape
    folds: int
    slots: int = 1
    calibration: float = 1.0

    def waves(self) -> int:
        return math.ceil(self.folds / max(1, self.slots))


def steps_per_epoch(option: Option, budget: Budget) -> int:
    return option.entry.config(option.width).steps_per_epoch(budget.shape.train_rows)


def purchase_seconds(option: Option, budget: Budget, steps: int) -> float:
    """Estimated wall seconds of the option's whole k-fold run at `steps` optimizer steps a unit."""
    spe = steps_per_epoch(option, budget)
    cfg = option.entry.config(option.width, math.ceil(steps / spe), max_steps=steps, folds=budget.folds)
    shape = budget.shape
    unit = unit_seconds(cfg, option.speed, shape.train_rows, shape.val_rows, shape.test_rows)
    return budget.waves() * unit * budget.calibration


def fewest_steps(option: Option, budget: Budget) -> int:
    """The shortest run worth buying: its entry's min_epochs, and never under MIN_STEPS optimizer
    steps (fewer learn next to nothing on small data: 14 steps on 4,000 rows gave CV 0.65)."""
    spe = steps_per_epoch(option, budget)
    most = max(1, round(option.entry.epochs * spe))
    return min(most, max(MIN_STEPS, math.ceil(option.entry.min_epochs * spe)))


def shortest_purchase(option: Option, budget: Budget) -> Purchase:
    """The option's shortest run worth buying, as a purchase."""
    return _purchase(option, budget, fewest_steps(option, budget))


def shortest_run(option: Option, budget: Budget) -> str:
    """The shortest run worth buying, in words: '80 steps (1.6 epochs)'."""
    steps = fewest_steps(option, budget)
    return f"{steps} steps ({steps / steps_per_epoch(option, budget):.2g} epochs)"


def longest_fit(option: Option, budget: Budget, seconds: float) -> Purchase | None:
    """The longest run of the option (up to its entry's epochs) whose estimate fits `seconds`;
    None when even its fewest steps do not fit."""
    spe = steps_per_epoch(option, budget)
    most = max(1, round(option.entry.epochs * spe))
    steps = most_steps(fewest_steps(option, budget), most, lambda n: purchase_seconds(option, budget, n) <= seconds)
    return None if steps is None else _purchase(option, budget, steps)


def _purchase(option: Option, budget: Budget, steps: int) -> Purchase:
    return Purchase(option, steps, steps_per_epoch(option, budget), purchase_seconds(option, budget, steps))


def score(p: Purchase, frontier: Frontier, rows: int) -> float:
    """How good a purchase is expected to be: the frontier's held-out accuracy where it has the
    entry's width (a width of a measured entry that the frontier lacks is never chosen); for an
    entry it has not measured, 1 + width for a run that reaches half of its entry's epochs (wider
    is better once long enough) and its share of those epochs below that."""
    entry = p.option.entry
    acc = expected(p, frontier, rows)
    if acc is not None:
        return acc
    if frontier.widths(entry.name):  # the entry is measured, this width is not: no evidence, not chosen
        return -1.0
    reach = p.total_epochs / entry.epochs
    return 1.0 + (p.option.width or 0) / 1e4 if reach >= 0.5 else reach


def expected(p: Purchase, frontier: Frontier, rows: int) -> float | None:
    """The frontier's held-out accuracy for the run's total epochs (a continuation: less
    CONTINUE_LOSS); None where it has no evidence for the width."""
    width = p.option.width
    acc = frontier.accuracy(p.option.entry.name, width, p.total_epochs, rows) if width else None
    return acc - CONTINUE_LOSS if acc is not None and p.continues else acc


def lengths(option: Option, budget: Budget, longest: Purchase, frontier: Frontier) -> list[Purchase]:
    """The longest run that fits, and each shorter length the frontier measured for this width
    (held-out accuracy can peak before the longest run: the time left then buys another run)."""
    spe, rows = longest.steps_per_epoch, budget.shape.train_rows
    low = fewest_steps(option, budget)
    measured = [e for e, _ in frontier.curve(option.entry.name, option.width, rows)] if option.width else []
    steps = sorted({longest.steps, *(round(e * spe) for e in measured if low <= round(e * spe) < longest.steps)})
    return [longest if n == longest.steps else _purchase(option, budget, n) for n in steps]


def continuations(ps: list[Purchase], finished: Sequence[Finished]) -> list[Purchase]:
    """The same lengths, each continuing each finished run of its entry and width."""
    return [
        replace(p, continues=f.run, prior_epochs=f.epochs)
        for p in ps
        for f in finished
        if (f.entry, f.width) == (p.option.entry.name, p.option.width)
    ]


def best_purchase(
    options: list[Option], budget: Budget, seconds: float, frontier: Frontier, finished: Sequence[Finished] = ()
) -> Purchase | None:
    """The best run `seconds` buy: each option at its longest fitting length or a shorter one the
    frontier measured, fresh or continuing one of the `finished` runs. Entries the frontier
    measured compete on expected held-out accuracy, so a longer augmented run wins where the
    evidence says it climbs past a shorter plain one (ties go to the cheaper run, then to a fresh
    one); an entry it has not measured is bought, in portfolio order, only when no measured entry
    fits."""
    sized: dict[str, list[Purchase]] = {}
    for o in options:
        longest = longest_fit(o, budget, seconds)
        if longest is not None:
            fresh = lengths(o, budget, longest, frontier)
            sized.setdefault(o.entry.name, []).extend(fresh + continuations(fresh, finished))
    evidence = [p for entry, ps in sized.items() if frontier.widths(entry) for p in ps]
    pool = evidence or next(iter(sized.values()), [])
    if not pool:
        return None
    rows = budget.shape.train_rows
    best = max(pool, key=lambda p: (round(score(p, frontier, rows), 4), -p.seconds, p.continues is None))
    return replace(best, expected_acc=expected(best, frontier, rows))


def first_part(
    options: list[Option], budget: Budget, seconds: float, share: float, frontier: Frontier
) -> Purchase | None:
    """The first purchase, when only `share` of the `seconds` may be risked on it: the run that
    all of them would buy, at the longest length the share fits, when what is left would then buy
    its continuation and that is expected to beat the best safe run and what is left after it
    (else None: the best run the share buys comes first, as a run of its own)."""
    plan = best_purchase(options, budget, seconds, frontier)
    part = None if plan is None else longest_fit(plan.option, budget, share)
    safe = best_purchase(options, budget, share, frontier)
    if part is None or safe is None:
        return None
    part = replace(part, expected_acc=expected(part, frontier, budget.shape.train_rows))
    done = Finished("", part.option.entry.name, part.option.width, part.fractional_epochs)
    grown = best_purchase(options, budget, seconds - part.seconds, frontier, [done])
    if grown is None or grown.continues is None:
        return None  # what is left would buy a run of its own: the part would only be a weaker first run
    after_safe = best_purchase(options, budget, seconds - safe.seconds, frontier)
    either = max(p.expected_acc or 0.0 for p in (safe, after_safe) if p is not None)
    return part if (grown.expected_acc or 0.0) > either else None


def safe_first(
    options: list[Option], budget: Budget, seconds: float, share: float, frontier: Frontier
) -> Purchase | None:
    """The first purchase when only `share` of the `seconds` may be risked on it: the first part
    of the run all of them buy, where its continuation is expected to win, else the best run the
    share buys."""
    return first_part(options, budget, seconds, share, frontier) or best_purchase(options, budget, share, frontier)


def cheapest(options: list[Option], budget: Budget) -> tuple[Option, float] | None:
    """The option whose shortest worthwhile run costs least, and those seconds."""
    costs = [(o, purchase_seconds(o, budget, fewest_steps(o, budget))) for o in options]
    return min(costs, key=lambda c: c[1]) if costs else None


def purchases(
    options: list[Option],
    budget: Budget,
    seconds: float,
    frontier: Frontier,
    max_runs: int,
    runs_of: dict[str, int] | None = None,
    share: float | None = None,
    finished: Sequence[Finished] = (),
) -> list[Purchase]:
    """What `seconds` buy if every run takes its estimate, decided as a session decides: a first
    purchase that may take only `share` of them is the first part of the run all of them buy (or
    the best run the share buys); each later one is the best of what is left, fresh or continuing
    a run bought before it (named by its place, "1" for the first) or one of the `finished` runs;
    until nothing fits (or `max_runs`). `runs_of` counts purchases already made per entry (an
    entry with `runs = N` is bought at most N times)."""
    bought = dict(runs_of or {})
    out: list[Purchase] = []
    while len(out) < max_runs:
        open_options = [o for o in options if not o.entry.runs or bought.get(o.entry.name, 0) < o.entry.runs]
        if not out and share is not None and share < seconds:
            p = safe_first(open_options, budget, seconds, share, frontier) or _cheapest_fit(
                open_options, budget, seconds
            )
        else:
            p = best_purchase(open_options, budget, seconds, frontier, _growable(out, finished))
        if p is None:
            break
        out.append(p)
        seconds -= p.seconds
        bought[p.option.entry.name] = bought.get(p.option.entry.name, 0) + 1
    return out


def _cheapest_fit(options: list[Option], budget: Budget, seconds: float) -> Purchase | None:
    """A session's first purchase where its safe share buys nothing: the cheapest run at its
    fewest steps, when it fits (its first unit then measures the machine)."""
    found = cheapest(options, budget)
    return shortest_purchase(found[0], budget) if found is not None and found[1] <= seconds else None


def _growable(planned: list[Purchase], finished: Sequence[Finished]) -> list[Finished]:
    """The runs a planned purchase may continue: those finished before the plan and those it
    bought, each until a later purchase continues it."""
    runs = [
        *finished,
        *(Finished(str(i + 1), p.option.entry.name, p.option.width, p.total_epochs) for i, p in enumerate(planned)),
    ]
    continued = {p.continues for p in planned}
    return [f for f in runs if f.run not in continued]
