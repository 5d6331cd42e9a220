"""The one time model: every sum of seconds the product plans with, pure, on one injectable clock.

The autopilot (`TimeModel`): one limit, counted from the command's start. A reserve for what
follows training (the choice among runs and blends, measured per run; the submission file and its
check, measured last session; an upload, measured when submitting) is kept from the start. Runs
are bought to end by the training deadline (the limit less the reserve); no training step starts
after the step deadline (the training deadline plus GRACE). Before a unit of this session has
checked the speeds, FIRST_SAFETY of the time left is kept free; after, SAFETY, and the units'
measured time over their estimate (the calibration) scales every estimate. The first purchase
ends even if the machine is FIRST_SLOWDOWN times slower than probed; a probe is doubted by
PROBE_DOUBT: a session is refused only when its cheapest run would not fit even at that many
times the probed speed (a busy first minute must not refuse a budget a quiet one accepts).

`fold-train`/`sweep`/`reproduce --time-limit` (`LimitModel`): a reserve for what follows
training, and the share of the rest a run is sized to; the limit a refused run would need is
computed by the same sums, so the limit a refusal names is then accepted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fmnist_kaggle.durations import duration

FIRST_SAFETY = 0.15  # share of the time kept free before a unit of this session has checked the estimates
SAFETY = 0.05  # after: throughput drifts on a shared 2-core VM
GRACE = 0.02  # share of the limit a run may be projected to overrun before it is stopped
FINAL_S = 6.0  # after training, before it was ever measured: imports, the submission, its check, the leaderboard
SELECT_S_PER_RUN = 3.0  # choosing among runs and blends, per run of 60,000 rows, before it was measured
UPLOAD_S = 20.0  # an upload, before one was timed here
CALIBRATION_RANGE = (0.5, 3.0)  # a unit's time over its estimate, trusted within this range
MIN_UNIT_SHARE = 0.5  # of its run's steps, the least a unit sized to the time left trains (else not started)
PROBE_SLOW = 0.67  # a first unit under this share of its estimate: the probe read the machine slow
FIRST_SLOWDOWN = 3.0  # the first purchase ends even if the machine is this much slower than probed
# a probe beside two busy threads on 2 cores read 210-229 img/s, 10-20x below the units that then trained
# beside the same load (1,030-2,554 img/s): a refusal needs the cheapest run to exceed this many times the time left
PROBE_DOUBT = 20.0


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
        return f"[{duration(self.elapsed())} elapsed, {duration(self.left())} left]"


def lateness(now: float, this_unit_left: float, units_after: int, per_unit: float, deadline: float) -> float:
    """Seconds a run would end past `deadline` (negative: before it) if the unit training now needs
    `this_unit_left` more seconds and each of the `units_after` units after it `per_unit`."""
    return now + this_unit_left + units_after * per_unit - deadline


@dataclass
class TimeModel:
    """The reserve, the deadlines, the safety share and the calibration of one session."""

    clock: Clock
    rows: int  # training rows: the choice's cost scales with them
    submitting: bool = False
    final_s: float = 0.0  # the final steps, as the last session measured them (0: never)
    upload_s: float = UPLOAD_S  # an upload, as last measured
    calibration: float = 1.0
    calibrated: bool = False
    select_s_per_run: float = field(init=False)

    def __post_init__(self) -> None:
        self.select_s_per_run = SELECT_S_PER_RUN * self.rows / 60_000

    def final_reserve(self) -> float:
        """The submission file, its check, the leaderboard and an upload: what no session may skip."""
        final = max(FINAL_S, 1.25 * self.final_s)
        return final + (max(5.0, 1.5 * self.upload_s) if self.submitting else 0.0)

    def reserve(self, complete_runs: int) -> float:
        """Seconds kept for after training: the choice among the runs (and one more), the final steps."""
        return self.final_reserve() + 1.5 * self.select_s_per_run * (1 + complete_runs)

    def training_deadline(self, complete_runs: int) -> float:
        """What runs are bought to end by: the limit less the reserve; while no run is complete,
        less only the final steps (the one run that can make a submission gets the choice's share)."""
        keep = self.reserve(complete_runs) if complete_runs else self.final_reserve()
        return self.clock.start + self.clock.limit - keep

    def step_deadline(self, complete_runs: int) -> float:
        """No training step starts after this: the training deadline and GRACE (a run kept for
        ending within it must be let to end)."""
        return self.training_deadline(complete_runs) + GRACE * self.clock.limit

    def safety(self) -> float:
        return SAFETY if self.calibrated else FIRST_SAFETY

    def available(self, complete_runs: int, busy_s: float = 0.0) -> float:
        """Seconds a new purchase may take: what is left before the reserve and the runs still
        training (`busy_s`), less the safety share."""
        return (self.clock.left() - self.reserve(complete_runs) - busy_s) * (1 - self.safety())

    def limit_for(self, need_s: float, complete_runs: int) -> float:
        """The --time-limit under which `need_s` seconds of training would be bought now: what has
        passed, the need with its safety share, and the reserve."""
        return self.clock.elapsed() + need_s / (1 - self.safety()) + self.reserve(complete_runs)

    def doubted_fit(self, need_s: float, seconds: float) -> bool:
        """Whether a run estimated at `need_s` could fit `seconds` if the probe read the machine
        PROBE_DOUBT times slow (its first unit will tell)."""
        return need_s / PROBE_DOUBT <= seconds

    def first_share(self, seconds: float) -> float:
        """The first purchase's seconds: it must end even at FIRST_SLOWDOWN times its estimate."""
        return seconds / FIRST_SLOWDOWN

    def calibrate(self, slowness: float) -> None:
        """Units took `slowness` x their estimate (their time over it, or the estimate's speed over
        theirs): every later estimate scales by that, within CALIBRATION_RANGE."""
        low, high = CALIBRATION_RANGE
        self.calibration = min(high, max(low, float(slowness)))
        self.calibrated = True


LIMIT_RESERVE_S = 5.0  # of a --time-limit, kept for what follows training (the fold lines, assembling)
# Of the rest, what a run is sized to: on a quiet machine estimates ran 9-20% long (bench/estimates.py);
# on a busy one the deadline cuts the run and its finished units are kept.
LIMIT_SHARE = 0.92


@dataclass(frozen=True)
class LimitModel:
    """`fold-train`/`sweep`/`reproduce --time-limit`: what a run may be sized to, and the limit
    a run that needs more would take."""

    reserve_s: float = LIMIT_RESERVE_S
    share: float = LIMIT_SHARE

    def trainable(self, left_s: float) -> float:
        """Seconds a run may be sized to when `left_s` are left."""
        return (left_s - self.reserve_s) * self.share

    def limit_for(self, need_s: float, spent_s: float = 0.0) -> float:
        """The --time-limit under which a run needing `need_s` would be accepted (`spent_s`: what
        passed before sizing, the probe included)."""
        return spent_s + self.reserve_s + need_s / self.share
