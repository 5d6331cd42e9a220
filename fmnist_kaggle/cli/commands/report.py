"""`fkaggle report`: the workspace on one HTML page."""

from __future__ import annotations

import argparse
from typing import Any

from fmnist_kaggle.cli.common import command, emit

ORDER = 60  # place in `fkaggle --help`: the pipeline's order (after submitting)


def cmd_report(args: argparse.Namespace) -> int:
    from fmnist_kaggle.reporting import write_report

    return emit(args, write_report(args.workdir, args.out), _text)


def _text(res: dict[str, Any]) -> str:
    broken = f", {len(res['broken_runs'])} broken ({', '.join(res['broken_runs'][:5])})" if res["broken_runs"] else ""
    best = f"; best run {res['best_run']}" if res["best_run"] else ""
    return (
        f"wrote {res['html']} ({res['bytes'] / 1e6:.1f} MB, {res['seconds']:.1f}s): "
        f"{res['runs']} runs ({res['complete_runs']} complete{broken}), {res['blends']} "
        f"submission files, {res['uploads']} uploads{best}"
    )


def register(sub: Any) -> None:
    rp = command(
        sub,
        "report",
        "one self-contained HTML page of the workspace: runs ranked by CV, blends, "
        "autopilot, submissions (CV vs public), pictures",
        cmd_report,
        workdir=True,
    )
    rp.add_argument("--out", help="where to write the page (default oof/report.html)")
