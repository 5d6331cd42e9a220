"""`fkaggle sweep`, `reproduce`: searches over runs."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from fmnist_kaggle.cli.common import (
    command,
    competition,
    emit,
    executor,
    executor_options,
    progress,
    text_table,
    time_limit,
    time_limit_option,
    train_config,
    train_options,
)
from fmnist_kaggle.durations import parse_duration
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.training.config import AMP_MODES

ORDER = 40  # place in `fkaggle --help`: the pipeline's order


def cmd_sweep(args: argparse.Namespace) -> int:
    started = time.monotonic()
    from fmnist_kaggle.search.sweep import format_table, parse_grid, parse_ranges, run_sweep

    models = [m for spec in (args.model or []) for m in spec.split(",") if m]
    base = train_config(args, model=models[0] if models else None)
    result = run_sweep(
        competition(args),
        base,
        args.name or "sweep",
        models or [base.model],
        parse_grid(args.grid),
        parse_ranges(args.range),
        trials=args.trials,
        use_optuna=args.optuna,
        workdir=args.workdir,
        progress=progress(args),
        seed=args.search_seed,
        executor=executor(args),
        deadline=time_limit(args, started),
    )
    return emit(
        args,
        result,
        lambda r: (
            f"{format_table(r)}\ntable: {r['table_csv']} and {r['markdown']}; plot: "
            f"{r['png']}; best config: {r['best_config']}"
        ),
    )


def cmd_reproduce(args: argparse.Namespace) -> int:
    started = time.monotonic()
    from fmnist_kaggle.search.reproduce import reproduce

    only = [t.strip() for t in args.experiment.split(",") if t.strip()] if args.experiment else None
    res = reproduce(
        competition(args),
        args.report,
        args.budget,
        args.subset,
        args.folds,
        args.workdir,
        progress(args),
        lambda: executor(args),
        only,
        deadline=time_limit(args, started),
    )
    return emit(
        args, res, lambda r: f"{Path(r['markdown']).read_text()}\ntable: {r['markdown']}, {r['csv']}; plot: {r['png']}"
    )


def cmd_auto(args: argparse.Namespace) -> int:
    started = time.monotonic()  # the limit counts from here: downloading and loading are part of it
    from fmnist_kaggle.search.autopilot import AutoSettings, run_auto, show_plan

    limit = parse_duration(args.time_limit)
    if args.submit and not args.message:
        raise FkaggleError("--submit needs -m/--message (the submission's description on Kaggle)")
    if args.slug:
        from fmnist_kaggle.submit.download import download_once

        args.competition = str(download_once(args.slug, args.competition))
    settings = AutoSettings(
        time_limit=limit,
        name=args.name,
        folds=args.folds,
        subset=args.subset,
        device=args.device,
        amp=args.amp,
        portfolio=args.portfolio,
        workdir=args.workdir,
        submit_message=args.message if args.submit else None,
        slug=args.slug,
        progress=progress(args),
        started=started,
    )
    comp = competition(args)
    if args.show_plan:
        plan = show_plan(comp, settings, executor(args))
        return emit(args, plan, _plan_text)
    return emit(args, run_auto(comp, settings, executor(args)), _auto_text)


def _auto_text(r: dict[str, Any]) -> str:
    from fmnist_kaggle.search.autopilot import COLUMNS

    lines = [
        f"submission: {r['submission']} ({r['reason']})",
        f"CV accuracy {r['cv']['acc']:.4f}" + (f", test accuracy {r['test']['acc']:.4f}" if r.get("test") else ""),
        f"time: {r['wall_s'] / 60:.1f} of {r['time_limit_s'] / 60:g} min ({r['train_s'] / 60:.1f} min training)",
    ]
    if r.get("stopped"):
        lines.append(f"stopped buying: {r['stopped']}")
    if r.get("uploaded"):
        lines.append(f"submitted (ref {r['uploaded']['ref']}): {r['uploaded']['reply']}")
    table = text_table(r["leaderboard"], COLUMNS[:9])
    files = r["files"]
    return "\n".join([*lines, "", *table, "", f"leaderboard: {files['markdown']}, {files['csv']}, {files['png']}"])


def _plan_text(plan: dict[str, Any]) -> str:
    keys = ["run", "entry", "model", "width", "epochs", "steps", "continues", "total_epochs", "minutes", "expected_acc"]
    keys += ["train_img_s", "precision"]
    lines = [
        f"{plan['rows']} rows, {plan['folds']} folds, {plan['limit_s'] / 60:g} min on {plan['hardware']} "
        f"with {plan['reserve_s']:.0f} s kept for choosing and writing",
        *text_table(plan["purchases"], keys),
    ]
    if plan.get("nothing_fits"):
        lines.append(plan["nothing_fits"])
    lines += [
        "",
        f"each row is a k-fold run bought after the ones above, out of {plan['train_s']:.0f} s to train, if every run",
        f"takes its estimate; the first may take {plan['first_s']:.0f} s (to end on a machine slower than probed);",
        "a run that `continues` another starts from its fold models (total_epochs: both together);",
        "expected_acc: held-out accuracy measured for that entry, width and length on the real data (frontier.toml)",
        "",
        "speeds measured here (an autopilot session keeps them in oof/autopilot/speeds.json):",
    ]
    lines += [
        f"  {s['entry']} width {s['width']}: {s['train_ips']:,.0f} training img/s, "
        f"{s['predict_ips']:,.0f} predicted img/s ({s['precision']})"
        for s in plan["speeds"]
    ]
    return "\n".join(lines)


def register(sub: Any) -> None:
    _add_auto(sub)
    _add_sweep(sub)
    _add_reproduce(sub)


def _add_auto(sub: Any) -> None:
    au = command(
        sub,
        "auto",
        "the best submission a time budget buys: sized k-fold runs of a portfolio, "
        "an honest choice, a validated submission",
        cmd_auto,
        data=True,
        workdir=True,
        track=True,
    )
    au.add_argument(
        "slug",
        nargs="?",
        help="a Kaggle competition to download first (as `fkaggle download SLUG`); default: "
        "the competition config or data options",
    )
    au.add_argument("--time-limit", default="20m", help="the whole command's budget: 90s, 20m, 1.5h (default 20m)")
    au.add_argument(
        "--name",
        default="auto",
        help="names the session (oof/autopilot/NAME/), its runs (oof/NAME-ENTRY-N/) and "
        "the submission (submissions/NAME.csv); default auto",
    )
    au.add_argument(
        "--submit", action="store_true", help="upload the chosen submission with the kaggle client (needs -m)"
    )
    au.add_argument("-m", "--message", help="the submission's description on Kaggle")
    au.add_argument(
        "--portfolio", help="a portfolio TOML replacing the packaged one (format: fmnist_kaggle/search/portfolio.toml)"
    )
    au.add_argument(
        "--show-plan",
        action="store_true",
        help="print what the budget would buy here (each run's model, width and epochs, with measured "
        "speeds), or the smallest budget that buys anything; train nothing",
    )
    au.add_argument("--folds", type=int, default=5, help="k-fold CV of every run (default 5)")
    au.add_argument("--subset", type=int, default=0, help="train on a stratified subset of N rows (default 0: all)")
    au.add_argument("--device", help="auto (default), cpu, cuda ...")
    au.add_argument("--amp", choices=AMP_MODES, help="mixed precision (default auto)")
    au.add_argument("--no-progress", action="store_true")
    executor_options(au)


def _add_sweep(sub: Any) -> None:
    sw = command(
        sub,
        "sweep",
        "cross-validated grid / random / Optuna search; every trial is a run",
        cmd_sweep,
        data=True,
        workdir=True,
        track=True,
    )
    train_options(sw, sweep=True)
    sw.add_argument(
        "--grid", action="append", metavar="KEY=V1,V2", help="values to try (config keys or model keywords)"
    )
    sw.add_argument("--range", action="append", metavar="KEY=LO:HI[:log][:int]", help="random/Optuna search range")
    sw.add_argument(
        "--trials", type=int, default=0, help="random search (or Optuna) with N trials instead of the full grid"
    )
    sw.add_argument("--optuna", action="store_true", help="Optuna TPE search (needs optuna installed)")
    sw.add_argument("--search-seed", type=int, default=0)
    sw.add_argument("--name", help="sweep name: results in oof/sweeps/NAME.csv")
    sw.add_argument("--no-progress", action="store_true")


def _add_reproduce(sub: Any) -> None:
    rp = command(
        sub,
        "reproduce",
        "re-run a report's experiment tables as k-fold sweeps; table (Markdown, CSV, PNG) beside the report's numbers",
        cmd_reproduce,
        data=True,
        workdir=True,
        track=True,
    )
    rp.add_argument("report", help="report000 .. report004 (or 000 .. 004)")
    rp.add_argument(
        "--budget",
        choices=["quick", "full"],
        default="quick",
        help="quick: subset, 3 folds, fewer epochs (stated in the table); full: the "
        "report's settings on all rows, 5 folds",
    )
    rp.add_argument("--subset", type=int, help="stratified subset of N training rows (quick default 6000; 0 = all)")
    rp.add_argument("--folds", type=int, help="k-fold CV (quick default 3, full 5)")
    rp.add_argument("--experiment", help="only these tables, comma-separated (names in the report's table file)")
    rp.add_argument("--no-progress", action="store_true")
    executor_options(rp)
    time_limit_option(rp)
