"""Cross-validated grid / random / Optuna search. Every trial is an ordinary run.

Trials share the fold assignment (same data, k, fold seed), so any of them can be
blended later. Their (fold, seed) units go to an executor (this process, or Ray tasks
spread over a cluster); results append to `oof/sweeps/NAME.csv` as trials finish. A
killed sweep re-run with the same arguments skips trials already in that file, and a
trial killed mid-way resumes from its finished units.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_kaggle.data.competition import Competition
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.plots import sweep_scores
from fmnist_kaggle.runs.driver import RunJob, drive, failure_message, prepare_run
from fmnist_kaggle.runs.executors import Executor, make_executor
from fmnist_kaggle.runs.sizing import announce_plan_estimate
from fmnist_kaggle.storage import atomic, csvfile
from fmnist_kaggle.storage.layout import Workspace
from fmnist_kaggle.training.config import FIELDS, TrainConfig, parse_value, to_toml
from fmnist_kaggle.training.deadline import Deadline

log = logging.getLogger(__name__)

_CONFIG_KEYS = set(FIELDS) - {"model", "model_kwargs"}


def parse_grid(specs: list[str]) -> dict[str, list[Any]]:
    """['lr=1e-3,3e-3', 'act=relu,tanh'] -> {'lr': [0.001, 0.003], 'act': ['relu', 'tanh']}."""
    grid: dict[str, list[Any]] = {}
    for spec in specs or []:
        if "=" not in spec:
            raise FkaggleError(f"--grid expects KEY=V1,V2,..., got {spec!r}")
        key, values = spec.split("=", 1)
        grid[key.strip()] = [parse_value(v.strip()) for v in values.split(",") if v.strip()]
        if not grid[key.strip()]:
            raise FkaggleError(f"--grid {key}: no values")
    return grid


def parse_ranges(specs: list[str]) -> dict[str, tuple[float, float, bool, bool]]:
    """['lr=1e-4:1e-2:log', 'epochs=2:6:int'] -> {key: (lo, hi, log, integer)}."""
    out = {}
    for spec in specs or []:
        try:
            key, rng = spec.split("=", 1)
            parts = rng.split(":")
            lo, hi = float(parts[0]), float(parts[1])
            flags = set(parts[2:])
        except (ValueError, IndexError):
            raise FkaggleError(f"--range expects KEY=LO:HI[:log][:int], got {spec!r}") from None
        if hi <= lo or ("log" in flags and lo <= 0):
            raise FkaggleError(f"--range {key}: need LO < HI (and LO > 0 for log)")
        out[key.strip()] = (lo, hi, "log" in flags, "int" in flags)
    return out


def apply_params(base: TrainConfig, model: str, params: dict[str, Any]) -> TrainConfig:
    """Config keys go to the config; anything else is a model keyword (dropout1, act, width...)."""
    top = {k: v for k, v in params.items() if k in _CONFIG_KEYS}
    kw = {k: v for k, v in params.items() if k not in _CONFIG_KEYS}
    model_kwargs = dict(base.model_kwargs) if model == base.model else {}
    return replace(base, model=model, model_kwargs={**model_kwargs, **kw}, **top).validate()


def trial_name(sweep: str, model: str, params: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps([model, params], sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{sweep}-{model.replace('timm:', 'timm-')}-{digest}"


def grid_trials(models: list[str], grid: dict[str, list[Any]]) -> list[tuple[str, dict[str, Any]]]:
    keys = list(grid)
    return [(m, dict(zip(keys, combo))) for m in models for combo in itertools.product(*(grid[k] for k in keys))]


def random_trials(
    models: list[str], grid: dict[str, list[Any]], ranges: dict[str, tuple], n: int, seed: int
) -> list[tuple[str, dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        params: dict[str, Any] = {k: v[int(rng.integers(len(v)))] for k, v in grid.items()}
        for k, (lo, hi, log, integer) in ranges.items():
            x = float(np.exp(rng.uniform(math.log(lo), math.log(hi)))) if log else float(rng.uniform(lo, hi))
            params[k] = int(round(x)) if integer else float(f"{x:.4g}")
        out.append((models[int(rng.integers(len(models)))], params))
    return out


def _trial_row(manifest: dict[str, Any], model: str, params: dict[str, Any], trial: int) -> dict[str, Any]:
    folds = manifest["fold_metrics"]
    seeds = [s for f in folds for s in f["seeds"]]  # per-seed summaries: the selected epoch of each
    row: dict[str, Any] = {"trial": trial, "run": manifest["run"], "model": model}
    row.update({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in params.items()})
    row.update(
        {
            "cv_acc": round(manifest["cv"]["acc"], 5),
            "cv_acc_std": round(float(np.std([f["acc"] for f in folds])), 5),
            "cv_logloss": round(manifest["cv"]["logloss"], 5),
            "cv_logloss_std": round(float(np.std([f["logloss"] for f in folds])), 5),
            "train_acc": round(float(np.mean([s["best"]["train_acc"] for s in seeds])), 4),
            "val_acc": round(float(np.mean([s["best"]["val_acc"] for s in seeds])), 4),
            "test_acc": round(manifest["test_metrics"]["acc"], 5) if manifest.get("test_metrics") else "",
            "epochs_trained": round(float(np.mean([s["best_epoch"] for s in seeds])), 2),
            "seconds": round(
                sum(f["seconds"] for f in folds), 1
            ),  # training time, wherever and however parallel it ran
            "params": manifest.get("params", ""),
        }
    )
    return row


def run_sweep(
    comp: Competition,
    base: TrainConfig,
    name: str,
    models: list[str],
    grid: dict[str, list[Any]],
    ranges: dict[str, tuple] | None = None,
    trials: int = 0,
    use_optuna: bool = False,
    workdir: str | Path = ".",
    progress: bool = False,
    seed: int = 0,
    executor: Executor | None = None,
    plan: list[tuple[str, dict[str, Any]]] | None = None,
    deadline: Deadline | None = None,
) -> dict[str, Any]:
    """Run every trial not yet in the results CSV on `executor` (this process by default;
    on Ray, the units of many trials train at once), then write the table. `plan`: an
    explicit list of (model, params) trials instead of a grid (rows of a report's table).
    `deadline` (a --time-limit): trials estimated to end after it are refused before any
    trains (with the limit they need); no step starts after it."""
    ranges = ranges or {}
    paths = Workspace(workdir).sweep(name)
    done = {r["run"]: r for r in csvfile.read_csv_rows(paths["results"])}

    def job_for(trial: int, model: str, params: dict[str, Any], tag: Any = None) -> RunJob | None:
        run = trial_name(name, model, params)
        if run in done:
            log.info(f"trial {trial}: {run} done already, skipped")
            return None
        return prepare_run(
            comp,
            apply_params(base, model, params),
            run,
            workdir,
            tag=(trial, model, params, tag),
            trains_here=executor is None or executor.trains_here,
        )

    def record_trial(job: RunJob, manifest: dict[str, Any]) -> dict[str, Any] | None:
        trial, model, params, _ = job.tag
        if job.failures:
            return None
        if not manifest["complete"]:
            raise FkaggleError(
                f"trial {trial} ({job.rd.name}) did not finish: folds {manifest['missing_folds']} missing"
            )
        row = _trial_row(manifest, model, params, trial)
        csvfile.append_csv_row(paths["results"], row)
        done[row["run"]] = row
        log.info(
            f"trial {trial}: {model} {params} -> CV acc {row['cv_acc']:.4f} (+-{row['cv_acc_std']:.4f}) "
            f"log-loss {row['cv_logloss']:.4f}  {row['seconds']:.0f}s"
        )
        return row

    with executor or make_executor("local", progress=progress) as ex:
        if use_optuna:
            space = (models, grid, ranges, trials or 10, seed)
            failed = _optuna_search(ex, job_for, record_trial, done, name, paths["optuna"], *space, progress, deadline)
        else:
            plan = plan or (
                random_trials(models, grid, ranges, trials, seed) if (trials or ranges) else grid_trials(models, grid)
            )
            failed = _planned_search(ex, comp, base, name, plan, done, job_for, record_trial, progress, deadline)
    if failed:
        raise FkaggleError(f"{len(failed)} trial(s) did not finish: {failure_message(failed)}")
    swept = list(dict.fromkeys([*grid, *ranges, *(k for _, p in plan or [] for k in p)]))
    return finish(name, swept, base, workdir)


def _planned_search(
    ex: Executor,
    comp: Competition,
    base: TrainConfig,
    name: str,
    plan: list[tuple[str, dict[str, Any]]],
    done: dict[str, Any],
    job_for: Callable,
    record_trial: Callable,
    progress: bool,
    deadline: Deadline | None = None,
) -> list[RunJob]:
    """The trials of a grid, a random search or a report's table, in order, skipping those done."""
    if not plan:
        raise FkaggleError("nothing to sweep: give --grid, --range with --trials, or several --model")
    if ex.trains_here:
        todo = [apply_params(base, m, p) for m, p in plan if trial_name(name, m, p) not in done]
        estimate = announce_plan_estimate(f"sweep {name}", todo, comp, always=deadline is not None)
        left = deadline.left() if deadline is not None else math.inf
        if estimate is not None and estimate > left:
            raise FkaggleError(
                f"the {len(todo)} trial(s) of sweep {name} need about {estimate:.0f} s here and the --time-limit "
                f"leaves {max(0.0, left):.0f} s: give about {math.ceil((estimate - left) / 60)}m more, fewer trials, "
                "or a --subset"
            )
    jobs = (job for i, (m, p) in enumerate(plan) if (job := job_for(i, m, p)) is not None)
    return drive(ex, jobs, record_trial, progress, deadline)


def _optuna_search(
    ex: Executor,
    job_for: Callable,
    record_trial: Callable,
    done: dict,
    name: str,
    db: Path,
    models: list[str],
    grid: dict,
    ranges: dict,
    n: int,
    seed: int,
    progress: bool,
    deadline: Deadline | None = None,
) -> list[RunJob]:
    """Optuna on the driver (ask/tell): each asked trial becomes a job; the executor may run
    several at once (TPE then samples with trials still pending)."""
    try:
        import optuna
    except ImportError:
        raise FkaggleError("--optuna needs the optuna package (pip install 'fmnist_kaggle[optuna]')") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db.parent.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name=name, direction="maximize", storage=f"sqlite:///{db.resolve()}", load_if_exists=True
    )
    # seeded by the trials so far: a resumed study samples new points instead of replaying the first ones
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    remaining = n - len(done)  # --trials N: N trained trials in the table

    def jobs() -> Iterator[RunJob]:
        new = 0
        for _ in range(10 * max(0, remaining)):  # bounded: a small categorical space runs out of new points
            if new == remaining:
                return
            trial = study.ask()
            params: dict[str, Any] = {k: trial.suggest_categorical(k, v) for k, v in grid.items()}
            for k, (lo, hi, log_, integer) in ranges.items():
                params[k] = (
                    trial.suggest_int(k, int(lo), int(hi), log=log_)
                    if integer
                    else trial.suggest_float(k, lo, hi, log=log_)
                )
            model = trial.suggest_categorical("model", models) if len(models) > 1 else models[0]
            job = job_for(trial.number, model, params, trial)
            if job is None:  # these parameters were trained already: tell their score, ask again
                study.tell(trial, float(done[trial_name(name, model, params)]["cv_acc"]))
                continue
            new += 1
            yield job

    def tell(job: RunJob, manifest: dict[str, Any]) -> None:
        row = record_trial(job, manifest)
        trial = job.tag[3]
        if row:
            study.tell(trial, float(row["cv_acc"]))
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)

    return drive(ex, jobs(), tell, progress, deadline)


def finish(name: str, swept: list[str], base: TrainConfig, workdir: str | Path = ".") -> dict[str, Any]:
    """Sorted table (CSV + Markdown), score-vs-parameter plot, best config as TOML."""
    paths = Workspace(workdir).sweep(name)
    rows = csvfile.read_csv_rows(paths["results"])
    if not rows:
        raise FkaggleError(f"sweep {name!r} has no finished trials")
    rows.sort(key=lambda r: (-float(r["cv_acc"]), float(r["cv_logloss"])))
    cols = [
        "model",
        *[c for c in swept if c in rows[0]],
        "cv_acc",
        "cv_acc_std",
        "cv_logloss",
        "train_acc",
        "val_acc",
        "test_acc",
        "epochs_trained",
        "seconds",
        "params",
        "run",
    ]
    cols = [c for c in dict.fromkeys(cols) if c in rows[0]]
    atomic.write_text(paths["table"], csvfile.csv_text(rows, cols))
    md = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)] + [
        "| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows
    ]
    atomic.write_text(paths["markdown"], "\n".join(md) + "\n")
    plot_params = [p for p in swept if p in rows[0]] + (["model"] if len({r["model"] for r in rows}) > 1 else [])
    sweep_scores(rows, plot_params, paths["png"])
    best = rows[0]
    params = {c: parse_value(best[c]) for c in swept if c in best and best[c] != ""}
    best_cfg = apply_params(base, best["model"], params)
    atomic.write_text(paths["best"], best_config_toml(name, best, best_cfg, swept))
    return {
        "rows": rows,
        "columns": cols,
        "table_csv": str(paths["table"]),
        "markdown": str(paths["markdown"]),
        "png": str(paths["png"]),
        "best_config": str(paths["best"]),
        "best": best,
    }


SEARCH_BUDGET = ("subset", "folds", "epochs")  # what a sweep saves time with, not what it chooses


def best_config_toml(name: str, best: dict[str, Any], cfg: TrainConfig, swept: list[str]) -> str:
    """The best trial's config to retrain at full budget: the search's budget (subset, folds,
    epochs, unless swept) is left out, so the defaults or the flags given with it apply, and
    named in the header so nobody mistakes it for the retrain's."""
    settings = cfg.to_dict()
    budget = {k: settings[k] for k in SEARCH_BUDGET if k not in swept}
    searched = ", ".join(f"{k} = {v}" for k, v in budget.items())
    header = (
        f"# best of sweep {name}: CV acc {best['cv_acc']} (run {best['run']})\n"
        f"# searched at {searched}; left out here so `fkaggle fold-train --config THIS` trains at full budget\n"
        f"# (all rows, the default folds and epochs; add --epochs N / --folds K to choose)\n"
    )
    return header + to_toml(cfg, leave_out=tuple(budget))


def format_table(result: dict[str, Any]) -> str:
    cols = [c for c in result["columns"] if c != "run"]
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in result["rows"])) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols) for r in result["rows"]]
    return "\n".join(lines)
