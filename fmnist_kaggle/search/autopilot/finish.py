"""The end of a session: the honest choice among the complete runs and their blends (`select`,
also made after each run completes), the submission file, its check, an upload when asked, the
leaderboard and the summary (`conclude`). Only complete runs are blended; the choice is the best
single run unless a blend beats it on nested CV."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fmnist_kaggle.data.submission_file import check_file, sha256
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.evaluate.choose import choose
from fmnist_kaggle.evaluate.submission import make_submission
from fmnist_kaggle.runs.store import load_run
from fmnist_kaggle.search.autopilot.leaderboard import write_leaderboard
from fmnist_kaggle.search.autopilot.session import Session
from fmnist_kaggle.submit.uploads import submit_file

log = logging.getLogger(__name__)


def select(s: Session) -> dict[str, Any]:
    """Score every complete run alone and every blend of them; keep the honest choice."""
    names = s.state.scored_runs()
    if (s.state.extra.get("choice") or {}).get("over") == names:
        return s.state.extra["choice"]
    t0 = s.clock.now()
    runs = [load_run(n, s.settings.workdir) for n in names]
    choice = choose(runs, next((r.labels for r in runs if not r.partial), runs[0].labels), s.comp.test_set.labels)
    if len(runs) > 1:  # blends were scored: the cost the reserve is made of
        s.time.select_s_per_run = (s.clock.now() - t0) / len(runs)
    s.state.extra["choice"] = {
        **choice.to_dict(),
        "over": names,
        "session": s.state.session_index,
        "minute": round(s.clock.elapsed() / 60, 2),
    }
    s.state.save()
    log.info(f"{s.clock} choice: {choice.reason}")
    return s.state.extra["choice"]


def conclude(s: Session) -> dict[str, Any]:
    """The chosen submission written and checked (and uploaded), the leaderboard, the summary."""
    trained_at = s.clock.now()
    state = s.state
    if not state.committed:  # the deadline came before any run could start
        raise FkaggleError(s.too_short())
    if not state.scored_runs():
        state.save()
        write_leaderboard(s.settings.name, state.to_dict(), s.files)
        raise FkaggleError(
            f"no (fold, seed) unit finished within {s.clock.limit:g}s; what trained is kept: "
            "re-run the same command (with a larger --time-limit) to go on"
        )
    choice = select(s)
    sub, text = _write_submission(s, choice["chosen"])
    uploaded = _upload(s, sub, text)
    state.save()
    rows = write_leaderboard(s.settings.name, state.to_dict(), s.files)
    state.extra["final_s"] = round(s.clock.now() - trained_at, 1)
    state.save()
    log.info(f"{s.clock} submission {sub['csv']}: {choice['reason']}")
    return {
        "name": s.settings.name,
        "submission": sub["csv"],
        "record": sub["json"],
        "chosen": choice["chosen"],
        "reason": choice["reason"],
        "cv": sub["cv"],
        "test": sub.get("test"),
        "leaderboard": rows,
        "time_limit_s": s.clock.limit,
        "wall_s": state.session.wall_s,
        "train_s": state.session.train_s,
        "stopped": state.extra.get("stopped"),
        "totals": state.totals(),
        "files": {k: str(getattr(s.files, k)) for k in ("markdown", "csv", "png", "state")},
        **({"uploaded": uploaded} if uploaded else {}),
    }


def _write_submission(s: Session, chosen: dict[str, Any]) -> tuple[dict[str, Any], str]:
    method = "mean" if chosen["method"] == "single" else chosen["method"]
    sub = make_submission(s.comp, chosen["runs"], method, s.settings.name, s.settings.workdir)
    text, problems, _ = check_file(Path(sub["csv"]), s.comp)
    if problems:
        raise FkaggleError("the written submission is invalid: " + "; ".join(problems), sub["csv"])
    s.state.extra["submission"] = {k: sub.get(k) for k in ("csv", "json", "cv", "test")}
    return sub, text


def _upload(s: Session, sub: dict[str, Any], text: str) -> dict[str, Any] | None:
    """Upload the submission when asked, unless this autopilot already sent the same content."""
    if not s.settings.submitting:
        return None
    before = s.state.extra.get("uploaded") or {}
    if before.get("sha256") == sha256(text):
        log.warning(
            f"{sub['csv']} was already uploaded by this autopilot (ref {before.get('ref')}); not uploaded again"
        )
        return None
    t0 = s.clock.now()
    uploaded = submit_file(
        s.comp, sub["csv"], s.settings.submit_message, slug=s.settings.slug, workdir=s.settings.workdir
    )
    s.state.extra["upload_s"] = round(s.clock.now() - t0, 1)
    s.state.extra["uploaded"] = {k: uploaded.get(k) for k in ("ref", "status", "reply", "time", "sha256")}
    return uploaded
