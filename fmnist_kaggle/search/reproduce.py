"""`fkaggle reproduce reportNNN`: a report's experiment tables as k-fold sweeps, side by side
with the numbers the report published.

The reports' settings and numbers are data (`fmnist_kaggle/report_tables/reportNNN.toml`),
one file per report:

    report, source, title, recipe          the report, its file in ../shared/reports, its recipe
    [[experiment]]                         one table of the report
      name, title, metric                  metric: what the report's numbers measure
      models = [...]                       trained with every grid point, or
      grid = {key = [values]}              config keys or model keywords (as in `fkaggle sweep`)
      trials = [{key = value, ...}]        explicit rows instead of a grid
      from_best = "experiment"             one trial: that experiment's best (model, params)
      set = {key = value}                  config for this table, over the recipe
      quick = {set = {...}, grid = {...}}  --budget quick: overrides (same grid shape)
      per_class = true                     also per-class accuracy (report 001)
      published = [{key = value, ..., value = 0.91, classes = [...]}]
                                           a published row matches the trials whose
                                           report-side parameters equal its keys

Each experiment is an ordinary sweep (`oof/sweeps/`), so an interrupted reproduction
resumes, and every trial is a run that can be blended. The comparison table goes to
`oof/reproduce/REPORT-BUDGET.{md,csv,png}`.
"""

from __future__ import annotations

import json
import logging
import tomllib
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from fmnist_kaggle import metrics
from fmnist_kaggle.data.competition import Competition
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.plots import reproduction_chart
from fmnist_kaggle.runs.executors import Executor
from fmnist_kaggle.runs.store import load_run
from fmnist_kaggle.search.sweep import grid_trials, run_sweep, trial_name
from fmnist_kaggle.storage import atomic, csvfile
from fmnist_kaggle.storage.layout import Workspace
from fmnist_kaggle.training.config import FIELDS, TrainConfig, build_config
from fmnist_kaggle.training.deadline import Deadline

log = logging.getLogger(__name__)

BUDGETS = ("quick", "full")
QUICK_SUBSET, QUICK_FOLDS = 6000, 3  # --budget quick: fits a report's table on 2 CPU cores
_TABLES = resources.files("fmnist_kaggle") / "report_tables"  # package data (setup.py)
Trial = tuple[str, dict[str, Any], dict[str, Any]]  # (model, params trained, params as in the report)


def list_reports() -> list[str]:
    return sorted(p.name[: -len(".toml")] for p in _TABLES.iterdir() if p.name.endswith(".toml"))


def load_spec(report: str) -> dict[str, Any]:
    """A report's tables; `000`, `report000` and `report000.toml` all name report 000."""
    name = str(report).removesuffix(".toml")
    name = name if name.startswith("report") else f"report{name}"
    if name not in list_reports():
        raise FkaggleError(f"unknown report {report!r} (choose from {', '.join(list_reports())})")
    return tomllib.loads((_TABLES / f"{name}.toml").read_text())


def experiment_trials(exp: dict[str, Any], budget: str, best: dict[str, Trial]) -> list[Trial]:
    """The experiment's trials: what we train at this budget, and what the report calls them."""
    if "from_best" in exp:
        return [best[exp["from_best"]]]
    if "trials" in exp:
        return [(exp["models"][0], dict(t), dict(t)) for t in exp["trials"]]
    report = grid_trials(exp["models"], exp.get("grid", {}))
    quick_grid = exp.get("quick", {}).get("grid") if budget == "quick" else None
    if not quick_grid:
        return [(m, p, p) for m, p in report]
    grid = {**exp["grid"], **quick_grid}
    if any(len(grid[k]) != len(exp["grid"][k]) for k in grid):
        raise FkaggleError(f"experiment {exp['name']}: a quick grid must keep the shape of the report's grid")
    return [(m, p, r) for (m, p), (_, r) in zip(grid_trials(exp["models"], grid), report)]


def base_config(
    spec: dict[str, Any], exp: dict[str, Any], budget: str, subset: int | None, folds: int | None
) -> TrainConfig:
    settings = {**exp.get("set", {}), **(exp.get("quick", {}).get("set", {}) if budget == "quick" else {})}
    unknown = set(settings) - set(FIELDS)
    if unknown:
        raise FkaggleError(f"experiment {exp['name']}: unknown config key(s) {', '.join(sorted(unknown))}")
    quick = budget == "quick"
    sizes = {
        "subset": subset if subset is not None else (QUICK_SUBSET if quick else 0),
        "folds": folds or (QUICK_FOLDS if quick else 5),
    }
    return build_config(recipe=spec["recipe"], **{**settings, **sizes})


def published_for(exp: dict[str, Any], model: str, report_params: dict[str, Any]) -> dict[str, Any] | None:
    """The report's row for a trial: every key of the row but its numbers must match."""
    for row in exp.get("published", []):
        keys = {k: v for k, v in row.items() if k not in ("value", "classes")}
        if all(_same(model if k == "model" else report_params.get(k), v) for k, v in keys.items()):
            return row
    return None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


def reproduce(
    comp: Competition,
    report: str,
    budget: str = "quick",
    subset: int | None = None,
    folds: int | None = None,
    workdir: str | Path = ".",
    progress: bool = False,
    executor: Callable[[], Executor | None] = lambda: None,
    only: list[str] | None = None,
    deadline: Deadline | None = None,
) -> dict[str, Any]:
    """Run the report's experiments (or `only` these) as sweeps and write the comparison table
    (`deadline`: a --time-limit every sweep keeps)."""
    if budget not in BUDGETS:
        raise FkaggleError(f"--budget must be one of {', '.join(BUDGETS)}, got {budget!r}")
    spec = load_spec(report)
    names = [e["name"] for e in spec["experiment"]]
    missing = sorted(set(only or []) - set(names))
    if missing:
        raise FkaggleError(f"{spec['report']} has no experiment {', '.join(missing)} (it has {', '.join(names)})")
    best: dict[str, Trial] = {}
    sections = []
    for exp in spec["experiment"]:
        if (
            only
            and exp["name"] not in only
            and not any(e.get("from_best") == exp["name"] for e in spec["experiment"] if e["name"] in only)
        ):
            continue
        where = (budget, subset, folds, workdir, progress)
        sections.append(_run_experiment(comp, spec, exp, *where, executor(), best, deadline))
    return write_tables(spec, budget, sections, workdir)


def _run_experiment(
    comp: Competition,
    spec: dict,
    exp: dict,
    budget: str,
    subset: int | None,
    folds: int | None,
    workdir: str | Path,
    progress: bool,
    executor: Executor | None,
    best: dict[str, Trial],
    deadline: Deadline | None = None,
) -> dict[str, Any]:
    base = base_config(spec, exp, budget, subset, folds)
    trials = experiment_trials(exp, budget, best)
    sweep = f"{spec['report']}-{exp['name']}-{budget}-n{base.subset or 'all'}-k{base.folds}"
    log.info(f"{spec['report']} {exp['name']}: {len(trials)} trial(s) as sweep {sweep}")
    result = run_sweep(
        comp,
        base,
        sweep,
        [m for m, _, _ in trials],
        {},
        workdir=workdir,
        progress=progress,
        executor=executor,
        plan=[(m, p) for m, p, _ in trials],
        deadline=deadline,
    )
    by_run = {r["run"]: r for r in result["rows"]}
    rows = [_row(exp, m, p, r, by_run[trial_name(sweep, m, p)], workdir) for m, p, r in trials]
    top = max(range(len(trials)), key=lambda i: (rows[i]["cv_acc"], -rows[i]["cv_logloss"]))
    best[exp["name"]] = trials[top]
    changed = dict(exp.get("quick", {}).get("set", {})) if budget == "quick" else {}
    report_side = {k: exp.get("set", {}).get(k, "recipe") for k in changed}
    swept = {k for _, p, _ in trials for k in p}
    shared = [
        f"{base.epochs} epochs" if "epochs" not in swept else "",
        f"batch {base.batch_size}" if "batch_size" not in swept else "",
    ]
    trained = f"ours: {', '.join(t for t in shared if t) or 'settings per row'}" + (
        f" (quick budget; the report: {', '.join(f'{k} {v}' for k, v in report_side.items())})" if changed else ""
    )
    return {
        "name": exp["name"],
        "title": exp["title"],
        "trained": trained,
        "metric": exp["metric"],
        "sweep": sweep,
        "rows": rows,
        "epochs": base.epochs,
        "batch_size": base.batch_size,
        "quick_changes": changed,
        "report_settings": report_side,
    }


def _row(
    exp: dict, model: str, params: dict, report_params: dict, trial: dict[str, str], workdir: str | Path
) -> dict[str, Any]:
    pub = published_for(exp, model, report_params)
    row: dict[str, Any] = {
        "experiment": exp["name"],
        "model": model,
        "params": params,
        "report_params": report_params,
        "cv_acc": float(trial["cv_acc"]),
        "cv_acc_std": float(trial["cv_acc_std"]),
        "cv_logloss": float(trial["cv_logloss"]),
        "test_acc": csvfile.optional_float(trial["test_acc"]),
        "report_value": pub["value"] if pub else None,
        "run": trial["run"],
    }
    if exp.get("per_class"):
        run = load_run(trial["run"], str(workdir))
        rep = metrics.full_report(run.oof_logits, run.labels, run.manifest["data"]["class_names"])
        row["classes"] = {c["class"]: round(c["accuracy"], 4) for c in rep["per_class"]}
        row["report_classes"] = dict(zip(row["classes"], pub["classes"])) if pub and "classes" in pub else {}
    return row


# ----------------------------------------------------------------------------- the comparison table


def write_tables(
    spec: dict[str, Any], budget: str, sections: list[dict[str, Any]], workdir: str | Path
) -> dict[str, Any]:
    paths = Workspace(workdir).reproduction(f"{spec['report']}-{budget}")
    first = sections[0]["rows"][0]["run"] if sections and sections[0]["rows"] else None
    header = _header(spec, budget, load_run(first, str(workdir)).manifest if first else {})
    atomic.write_text(paths["markdown"], markdown(spec, header, sections))
    atomic.write_text(paths["csv"], csvfile.csv_text(_flat_rows(spec, budget, sections)))
    reproduction_chart(sections, f"{spec['report']} ({budget}): ours vs the report", paths["png"])
    return {
        "report": spec["report"],
        "budget": budget,
        "header": header,
        "experiments": sections,
        **{k: str(v) for k, v in paths.items()},
    }


def _header(spec: dict[str, Any], budget: str, manifest: dict[str, Any]) -> str:
    data = manifest.get("data", {})
    rows = (
        f"{data['rows']:,}-row stratified subset"
        if manifest.get("config", {}).get("subset")
        else f"all {data.get('rows', 0):,} rows"
    )
    return (
        f"Budget {budget}: {rows}, {data.get('folds', '?')}-fold CV of {data.get('competition', 'the competition')} "
        "(the report used one split). Ours: OOF CV accuracy (mean ± std over folds) "
        "and test accuracy when the test labels are known; "
        f"the report's: the metric named per table. Source: the write-up {spec['source']}, "
        f"its numbers transcribed in fmnist_kaggle/report_tables/{spec['report']}.toml."
    )


def markdown(spec: dict[str, Any], header: str, sections: list[dict[str, Any]]) -> str:
    out = [f"# {spec['report']}: {spec['title']}", "", header, ""]
    for s in sections:
        out += [f"## {s['name']}: {s['title']}", ""]
        if s["quick_changes"]:
            ours = ", ".join(f"{k} {v}" for k, v in s["quick_changes"].items())
            theirs = ", ".join(f"{k} {v}" for k, v in s["report_settings"].items())
            out += [f"Quick budget: {ours} (the report: {theirs}).", ""]
        out += [f"Report metric: {s['metric']}.", ""]
        keys = list(dict.fromkeys(k for r in s["rows"] for k in r["params"]))
        classes = list(s["rows"][0].get("classes", {})) if s["rows"] else []
        cols = ["model", *keys, "CV acc", "± (folds)", "test acc", "report", *classes]
        out += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for r in s["rows"]:
            shown = [_param(r, k) for k in keys]
            per_class = [
                f"{r['classes'][c]:.3f} / " + (f"{r['report_classes'][c]:.2f}" if c in r["report_classes"] else "-")
                for c in classes
            ]
            out.append(
                "| "
                + " | ".join(
                    [
                        r["model"],
                        *shown,
                        f"{r['cv_acc']:.4f}",
                        f"{r['cv_acc_std']:.4f}",
                        _num(r["test_acc"]),
                        _num(r["report_value"]),
                        *per_class,
                    ]
                )
                + " |"
            )
        if classes:
            out += ["", "Per-class columns: our OOF accuracy / the report's."]
        out.append("")
    return "\n".join(out)


def _param(row: dict[str, Any], key: str) -> str:
    ours, theirs = row["params"].get(key, ""), row["report_params"].get(key, "")
    return f"{ours} (report {theirs})" if not _same(ours, theirs) else str(ours)


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def _flat_rows(spec: dict[str, Any], budget: str, sections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for s in sections:
        for r in s["rows"]:
            flat = {
                "report": spec["report"],
                "budget": budget,
                "experiment": s["name"],
                "model": r["model"],
                "params": json.dumps(r["params"], sort_keys=True),
                "report_params": json.dumps(r["report_params"], sort_keys=True),
            }
            flat.update({k: r[k] for k in ("cv_acc", "cv_acc_std", "cv_logloss", "test_acc", "report_value")})
            flat.update(
                {"report_metric": s["metric"], "epochs": r["params"].get("epochs", s["epochs"]), "run": r["run"]}
            )
            for c, v in r.get("classes", {}).items():
                flat[f"acc {c}"], flat[f"report acc {c}"] = v, r["report_classes"].get(c)
            out.append(flat)
    return out
