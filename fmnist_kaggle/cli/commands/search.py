"""`fkaggle sweep`, `reproduce`: searches over runs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fmnist_kaggle.cli.common import command, competition, emit, executor, executor_options, progress, train_config, train_options

ORDER = 40  # place in `fkaggle --help`: the pipeline's order


def cmd_sweep(args: argparse.Namespace) -> int:
    from fmnist_kaggle.search.sweep import format_table, parse_grid, parse_ranges, run_sweep

    models = [m for spec in (args.model or []) for m in spec.split(",") if m]
    base = train_config(args, model=models[0] if models else None)
    result = run_sweep(
        competition(args), base, args.name or "sweep", models or [base.model], parse_grid(args.grid), parse_ranges(args.range),
        trials=args.trials, use_optuna=args.optuna, workdir=args.workdir, progress=progress(args), seed=args.search_seed, executor=executor(args),
    )  # fmt: skip
    return emit(args, result, lambda r: f"{format_table(r)}\ntable: {r['table_csv']} and {r['markdown']}; plot: {r['png']}; best config: {r['best_config']}")


def cmd_reproduce(args: argparse.Namespace) -> int:
    from fmnist_kaggle.search.reproduce import reproduce

    only = [t.strip() for t in args.experiment.split(",") if t.strip()] if args.experiment else None
    res = reproduce(competition(args), args.report, args.budget, args.subset, args.folds, args.workdir, progress(args), lambda: executor(args), only)
    return emit(args, res, lambda r: f"{Path(r['markdown']).read_text()}\ntable: {r['markdown']}, {r['csv']}; plot: {r['png']}")


def register(sub: Any) -> None:
    sw = command(sub, "sweep", "cross-validated grid / random / Optuna search; every trial is a run", cmd_sweep, data=True, workdir=True)
    train_options(sw, sweep=True)
    sw.add_argument("--grid", action="append", metavar="KEY=V1,V2", help="values to try (config keys or model keywords)")
    sw.add_argument("--range", action="append", metavar="KEY=LO:HI[:log][:int]", help="random/Optuna search range")
    sw.add_argument("--trials", type=int, default=0, help="random search (or Optuna) with N trials instead of the full grid")
    sw.add_argument("--optuna", action="store_true", help="Optuna TPE search (needs optuna installed)")
    sw.add_argument("--search-seed", type=int, default=0)
    sw.add_argument("--name", help="sweep name: results in oof/sweeps/NAME.csv")
    sw.add_argument("--no-progress", action="store_true")

    rp = command(sub, "reproduce", "re-run a report's experiment tables as k-fold sweeps; table (Markdown, CSV, PNG) beside the report's numbers", cmd_reproduce, data=True, workdir=True)
    rp.add_argument("report", help="report000 .. report004 (or 000 .. 004)")
    rp.add_argument("--budget", choices=["quick", "full"], default="quick", help="quick: subset, 3 folds, fewer epochs (stated in the table); full: the report's settings on all rows, 5 folds")
    rp.add_argument("--subset", type=int, help="stratified subset of N training rows (quick default 6000; 0 = all)")
    rp.add_argument("--folds", type=int, help="k-fold CV (quick default 3, full 5)")
    rp.add_argument("--experiment", help="only these tables, comma-separated (names in the report's table file)")
    rp.add_argument("--no-progress", action="store_true")
    executor_options(rp)
