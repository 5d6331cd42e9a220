"""The autopilot's leaderboard: every run it bought and every blend it scored, as Markdown, CSV
and a picture of CV accuracy against each session's own minutes (docs/artifacts.md)."""

from __future__ import annotations

from typing import Any

from fmnist_kaggle.durations import duration
from fmnist_kaggle.plots import autopilot_chart
from fmnist_kaggle.storage import atomic, csvfile
from fmnist_kaggle.storage.layout import AutoFiles

COLUMNS = ["kind", "name", "model", "epochs", "minutes", "cv_acc", "cv_logloss", "test_acc", "status", "chosen", "note"]


def _model(r: dict[str, Any]) -> str:
    return f"{r.get('model', '')} w{r['width']}" if r.get("width") else r.get("model", "")


def leaderboard_rows(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Everything tried: each run bought (its training minutes summed over sessions), then each blend."""
    choice = state.get("choice") or {}
    chosen = (choice.get("chosen") or {}).get("label")
    rows = []
    for name in state["order"]:
        r = state["runs"][name]
        rows.append(
            {
                "kind": "run",
                "name": r["run"],
                "model": _model(r),
                "epochs": r.get("epochs", ""),
                "minutes": round(r["seconds"] / 60, 2) if r.get("seconds") else "",
                "cv_acc": r.get("cv_acc", ""),
                "cv_logloss": r.get("cv_logloss", ""),
                "test_acc": "" if r.get("test_acc") is None else r["test_acc"],
                "status": r["status"],
                "chosen": r["run"] == chosen,
                "note": r.get("note", ""),
                "session": r.get("session"),
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
                    "test_acc": "" if c["test_acc"] is None else c["test_acc"],
                    "status": "nested CV" if c["nested"] else "CV",
                    "chosen": c["label"] == chosen,
                    "note": "",
                    "session": choice.get("session"),
                    "minute": choice.get("minute"),
                }
            )
    return rows


def _fmt(key: str, v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.2f}" if key in ("minutes", "epochs") else f"{v:.4f}"
    return "**yes**" if v is True else "" if v is False else str(v)


def write_leaderboard(name: str, state: dict[str, Any], files: AutoFiles) -> list[dict[str, Any]]:
    rows = leaderboard_rows(state)
    atomic.write_text(files.csv, csvfile.csv_text([{k: r[k] for k in COLUMNS} for r in rows], COLUMNS))
    sessions = ", ".join(
        f"{s['started']} ({duration(s['time_limit_s'])} limit, {duration(s.get('wall_s', 0))} used, "
        f"{duration(s.get('train_s', 0))} training, {s['hardware']})"
        for s in state["sessions"]
    )
    choice = state.get("choice")
    lines = [f"# fkaggle auto: {name}", "", f"Sessions: {sessions}.", ""]
    if choice:
        lines += [f"Chosen: **{choice['chosen']['label']}**: {choice['reason']}.", ""]
    if state.get("stopped"):
        lines += [f"Stopped buying: {state['stopped']}.", ""]
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(k, r[k]) for k in COLUMNS) + " |" for r in rows]
    lines += ["", "Test accuracy is shown where the test labels are known; it is never used to choose."]
    atomic.write_text(files.markdown, "\n".join(lines) + "\n")
    _chart(name, state, rows, files)
    return [{k: r[k] for k in COLUMNS} for r in rows]


def _chart(name: str, state: dict[str, Any], rows: list[dict[str, Any]], files: AutoFiles) -> None:
    limits = [s["time_limit_s"] / 60 for s in state["sessions"]]
    placed = [r for r in rows if r["minute"] is not None and r["status"] in ("complete", "CV", "nested CV")]
    runs = [
        {
            "label": r["name"],
            "minute": r["minute"],
            "cv_acc": r["cv_acc"],
            "test_acc": r["test_acc"] or None,
            "chosen": r["chosen"],
        }
        for r in placed
        if r["kind"] == "run"
    ]
    blends = [
        {
            "method": r["name"].split("(")[0],
            "label": r["name"],
            "minute": r["minute"],
            "cv_acc": r["cv_acc"],
            "chosen": r["chosen"],
        }
        for r in placed
        if r["kind"] == "blend"
    ]
    autopilot_chart(runs, blends, limits, f"fkaggle auto (--name {name}): CV accuracy against time", files.png)
