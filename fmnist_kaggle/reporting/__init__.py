"""`fkaggle report`: the whole workspace on one self-contained HTML page (`collect` reads,
`page` renders, `write_report` writes it atomically)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fmnist_kaggle.reporting.collect import collect
from fmnist_kaggle.reporting.page import render
from fmnist_kaggle.storage import atomic
from fmnist_kaggle.storage.artifacts import utc_now
from fmnist_kaggle.storage.layout import Workspace

__all__ = ["collect", "render", "write_report"]


def write_report(workdir: str | Path = ".", out: str | Path | None = None) -> dict[str, Any]:
    """Write the report page (default `oof/report.html`); returns what it shows and how long it took."""
    started = time.perf_counter()
    ws = Workspace(workdir)
    target = Path(out) if out is not None else ws.report_html
    data = {**collect(ws), "generated": utc_now()}
    page = render(data, target)
    atomic.write_text(target, page)
    runs = data["runs"]
    return {
        "html": str(target),
        "bytes": len(page.encode()),
        "seconds": round(time.perf_counter() - started, 2),
        "runs": len(runs),
        "complete_runs": sum(r.get("cv_acc") is not None for r in runs),
        "broken_runs": [r["run"] for r in runs if r.get("problem")],
        "blends": len(data["blends"]),
        "uploads": len(data["uploads"]),
        "autopilots": len(data["autopilots"]),
        "best_run": next((r["run"] for r in runs if r.get("cv_acc") is not None), None),
    }
