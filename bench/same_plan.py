"""The autopilot's plan for SECONDS with an injected clock (no wall-clock jitter), for
bench/same_behaviour.sh: run in a workspace holding its speeds.json, it prints the purchases.
It speaks both the API before issue 41 (`session._pilot`) and after (`session.open_session`).

    python bench/same_plan.py SECONDS [AMP]
"""

from __future__ import annotations

import sys

from fmnist_kaggle.data.competition import resolve_competition
from fmnist_kaggle.runs.executors import make_executor


def main() -> None:
    comp = resolve_competition()
    limit, amp = float(sys.argv[1]), (sys.argv[2] if len(sys.argv) > 2 else None)
    try:
        from fmnist_kaggle.search.autopilot import AutoSettings, policy
        from fmnist_kaggle.search.autopilot.session import MAX_RUNS, open_session
        from fmnist_kaggle.training.timing import Clock

        with make_executor("local", progress=False) as ex:
            s = open_session(comp, AutoSettings(limit, amp=amp), ex, Clock(0.0, limit, lambda: 0.0), writable=False)
            budget, seconds = s.budget(), (limit - s.reserve()) * (1 - s.time.safety())
            bought = policy.purchases(s.menu.candidates(s.entries), budget, seconds, s.frontier, MAX_RUNS)
    except ImportError:  # before issue 41
        from fmnist_kaggle.search.autopilot import policy
        from fmnist_kaggle.search.autopilot.session import MAX_RUNS, Clock, Settings, SpeedBook, _pilot, machine_of

        with make_executor("local", progress=False) as ex:
            clock = Clock(0.0, limit, now=lambda: 0.0)
            pilot = _pilot(comp, limit, ".", None, Settings("auto", 5, 0, None, amp), ex, None, clock=clock)
            pilot.book = SpeedBook(pilot.ws.autopilot_speeds, machine_of(ex, "auto"), writable=False)
            seconds = (limit - pilot.reserve()) * (1 - pilot.safety())
            bought = policy.plan(pilot.candidates(seconds), pilot.budget(), seconds, pilot.table, MAX_RUNS)
    print(int(limit), [(p.option.entry.name, p.option.width, p.steps, round(p.seconds, 6)) for p in bought])


if __name__ == "__main__":
    main()
