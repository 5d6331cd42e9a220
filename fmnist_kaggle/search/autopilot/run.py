"""`fkaggle auto` and `--show-plan`: a session opened, its runs bought and watched under one
deadline, then the choice and the submission (or, for a plan, what the limit would buy)."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from fmnist_kaggle.data.competition import Competition
from fmnist_kaggle.durations import duration_arg
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.runs.driver import drive
from fmnist_kaggle.runs.executors import Executor, make_executor
from fmnist_kaggle.search.autopilot import policy
from fmnist_kaggle.search.autopilot.buying import jobs
from fmnist_kaggle.search.autopilot.finish import conclude, select
from fmnist_kaggle.search.autopilot.plan import plan_row
from fmnist_kaggle.search.autopilot.session import MAX_RUNS, open_session
from fmnist_kaggle.search.autopilot.settings import AutoSettings
from fmnist_kaggle.search.autopilot.watch import Watch
from fmnist_kaggle.storage.layout import Workspace
from fmnist_kaggle.storage.lock import workspace_lock

log = logging.getLogger(__name__)


def run_auto(comp: Competition, settings: AutoSettings, executor: Executor | None = None) -> dict[str, Any]:
    """Buy runs within `settings.time_limit` seconds (counted from `settings.started`: now by
    default), choose honestly, write the submission and the leaderboard; upload it when
    `settings.submit_message` is given. Returns the summary."""
    if settings.submitting:
        comp.require_slug(settings.slug)
    with (
        workspace_lock(Workspace(settings.workdir).session_lock),
        executor or make_executor("local", progress=settings.progress) as ex,
    ):
        session = open_session(comp, settings, ex)
        if not session.state.committed and session.clock.left() <= 5.0 + session.reserve():
            raise FkaggleError(session.too_short())  # the reserve alone leaves no time to train
        state = session.state
        state.start_session(
            session.clock.elapsed,
            time_limit_s=settings.time_limit,
            hardware=session.hardware,
            executor=type(ex).__name__,
            capacity=ex.capacity,
        )
        state.extra.pop("stopped", None)
        state.save()
        log.info(
            f"{session.clock} fkaggle auto {settings.name}: {len(session.entries)} portfolio entries "
            f"for {session.hardware} and {session.rows} rows, {ex.capacity} unit(s) at once"
        )
        watch = Watch(session, on_complete=lambda: select(session))
        try:
            drive(ex, jobs(session, watch.start), watch.on_done, settings.progress, session.deadline(), watch.on_unit)
        except KeyboardInterrupt:  # the session's wall time is kept; the same command resumes
            state.save()
            raise
        state.extra.setdefault("stopped", session.deadline_reason())  # the deadline, not the policy, ended it
    return conclude(session)


def show_plan(comp: Competition, settings: AutoSettings, executor: Executor | None = None) -> dict[str, Any]:
    """What the limit would buy here if every run took its estimate, decided as the session
    decides (the first run sized to its safe share, later ones free to grow earlier ones): the
    purchases in order, with measured speeds; when nothing fits, the smallest budget that would.
    Trains and writes nothing."""
    with executor or make_executor("local", progress=False) as ex:
        session = open_session(comp, replace(settings, started=None), ex, writable=False)  # as if it started now
        budget = session.budget()
        seconds = session.available()
        options = session.menu.candidates(session.entries, session.affordable(seconds))
        share = session.safe_share(seconds)  # what the first purchase may take, as in a session
        purchases = policy.purchases(
            options, budget, seconds, session.frontier, MAX_RUNS, share=share, finished=session.finished()
        )
        result: dict[str, Any] = {
            "limit_s": settings.time_limit,
            "hardware": session.hardware,  # cpu (fp32), cpu-bf16 or cuda: what the speeds and the choice are for
            "reserve_s": round(session.reserve(), 1),
            "train_s": round(seconds, 1),
            "first_s": round(share, 1),
            "purchases": [plan_row(p, i) for i, p in enumerate(purchases)],
            "folds": settings.folds,
            "rows": session.rows,
            "speeds": [
                {"entry": o.entry.name, "width": o.width, **o.speed.to_dict()} for o in session.menu.options.values()
            ],
        }
        cheapest = policy.cheapest(list(session.menu.options.values()), budget) if not purchases else None
        if cheapest is not None:
            result["nothing_fits"] = (
                f"nothing fits {settings.time_limit:g} s here at the probed speeds; the smallest budget that buys "
                f"a run is about {duration_arg(session.limit_for(cheapest[1]))} ({cheapest[0].entry.name} at "
                f"{policy.shortest_run(cheapest[0], budget)})"
            )
        return result
