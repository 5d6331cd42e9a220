"""A submission made from runs: one run or a blend, written as the competition's CSV with
its record (`submissions/NAME.csv` + `NAME.json`: provenance, CV, test score where known)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_kaggle import metrics, tracking
from fmnist_kaggle.data.competition import Competition
from fmnist_kaggle.data.submission_file import write_submission
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.evaluate.blend import BlendResult, blend, check_compatible, single_run
from fmnist_kaggle.runs.identity import require_classes, require_test_file
from fmnist_kaggle.runs.store import Run, load_run
from fmnist_kaggle.storage import csvfile, files
from fmnist_kaggle.storage.layout import SubmissionFiles, Workspace, check_name

log = logging.getLogger(__name__)


def make_submission(
    comp: Competition,
    run_refs: list[str],
    method: str,
    name: str,
    workdir: str | Path = ".",
    space: str = "prob",
    temperature: bool = False,
) -> dict[str, Any]:
    """Blend runs (or take one) and write submissions/NAME.csv + NAME.json."""
    ws = Workspace(workdir)
    check_name(name, "submission")
    files.writable_folder(ws.submissions)
    runs = [load_run(r, workdir) for r in run_refs]
    check_compatible(runs)
    test = comp.test_set
    if test is None:
        raise FkaggleError("the competition has no test file to predict")
    require_test_file(runs[0].name, runs[0].identity, test.fingerprint(), test.path)
    require_classes(runs[0].name, runs[0].manifest["data"]["label_values"], list(comp.train_set.label_values))
    labels = runs[0].labels
    result = (
        single_run(runs[0], labels)
        if len(runs) == 1 and method == "mean"
        else blend(runs, labels, method, space, temperature)
    )
    best = best_single(runs, labels)
    provenance = {
        "method": result.method,
        "runs": [
            {
                "run": r.name,
                "model": r.manifest.get("model"),
                "data_fingerprint": r.manifest["data"]["data_fingerprint"],
                "folds_fingerprint": r.manifest["data"]["folds_fingerprint"],
                "cv_acc": r.manifest.get("cv", {}).get("acc"),
                "optimistic": r.optimistic,
            }
            for r in runs
        ],
        "details": result.details,
        "cv": {"acc": result.cv_acc, "logloss": result.cv_logloss, "nested": result.insample_acc is not None},
        "best_single": best,
    }
    _warnings(provenance, runs, result, best)
    if result.insample_acc is not None:
        provenance["cv_in_sample"] = {"acc": result.insample_acc, "logloss": result.insample_logloss}
    if test.labels is not None:
        provenance["test"] = {
            "acc": metrics.accuracy(result.test, test.labels),
            "logloss": metrics.log_loss(result.test, test.labels),
        }
    out, renamed = unsubmitted_files(ws, name)
    if renamed:
        provenance["renamed_from"] = renamed
        log.warning(f"{renamed} was submitted to Kaggle and is kept as it is; this submission is {out.csv.name}")
    record = write_submission(comp, result.test, out, provenance)
    _track(comp, out.csv.stem, out, record)
    return {"csv": str(out.csv), "json": str(out.record), **provenance}


def _warnings(provenance: dict[str, Any], runs: list[Run], result: BlendResult, best: dict[str, Any]) -> None:
    """What the submission's record warns of (and stderr says): a partial run, an optimistic CV,
    a blend that loses to its best input."""
    if runs[0].partial:
        provenance["partial"] = partial_note(runs[0])
        log.warning(f"note: {provenance['partial']}")
    chosen_on_scored = [r.name for r in runs if r.optimistic]
    if chosen_on_scored:
        provenance["optimistic"] = (
            f"{', '.join(chosen_on_scored)} chose epochs on the rows its CV scores (--select-epoch): "
            "this CV is optimistic; compare with runs trained without it"
        )
        log.warning(f"warning: {provenance['optimistic']}")
    loses = against_best_single(result, best, len(runs))
    if loses:
        provenance["warning"] = loses
        log.warning(f"warning: {loses}")


def partial_note(run: Run) -> str:
    part = run.partial
    return (
        f"{run.name} is partial: {len(part['folds'])} of {run.manifest['data']['folds']} folds finished; "
        f"CV over their {part['rows']} of {part['of']} rows, test predictions from their models"
    )


def best_single(runs: list[Run], labels: np.ndarray) -> dict[str, Any]:
    """The best input run alone, scored the way a blend is (its OOF rows, its folds)."""
    scored = [single_run(r, labels) for r in runs]
    i = max(range(len(runs)), key=lambda j: (scored[j].cv_acc, -scored[j].cv_logloss))
    return {"run": runs[i].name, "acc": scored[i].cv_acc, "logloss": scored[i].cv_logloss}


def against_best_single(result: BlendResult, best: dict[str, Any], n_runs: int) -> str | None:
    """A blend that does not beat its best input alone adds risk and nothing measured: say so."""
    if n_runs < 2 or result.cv_acc > best["acc"]:
        return None
    nested = "nested " if result.insample_acc is not None else ""
    return (
        f"this {result.method} blend ({nested}CV accuracy {result.cv_acc:.4f}) does "
        f"not beat run {best['run']} alone ({best['acc']:.4f}): "
        f"submit `fkaggle blend {best['run']}` instead, or blend stronger or more different runs"
    )


def unsubmitted_files(ws: Workspace, name: str) -> tuple[SubmissionFiles, str | None]:
    """NAME's files, unless NAME.csv was uploaded to Kaggle: a submitted file is never overwritten,
    so the next free NAME-2, NAME-3, ... is used instead (and the submitted name returned)."""
    uploaded = {row.get("file") for row in csvfile.read_csv_rows(ws.history_csv)}
    out = ws.submission(name)
    n = 1
    while out.csv.name in uploaded:
        n += 1
        out = ws.submission(check_name(f"{name}-{n}", "submission"))
    return out, (f"{name}.csv" if n > 1 else None)


def _track(comp: Competition, name: str, out: SubmissionFiles, record: dict[str, Any]) -> None:
    """The submission as an MLflow run: its inputs, method, (nested) CV beside the best input's."""
    if not tracking.active():
        return
    results = {
        "cv_acc": record["cv"]["acc"],
        "cv_logloss": record["cv"]["logloss"],
        "best_single_cv_acc": record["best_single"]["acc"],
        **{f"test_{k}": v for k, v in record.get("test", {}).items()},
    }
    params = {
        "method": record["method"],
        "runs": [r["run"] for r in record["runs"]],
        "nested_cv": record["cv"]["nested"],
        **{f"details.{k}": v for k, v in record["details"].items()},
    }
    tracking.sync_blend(
        comp.name or "fkaggle",
        name,
        record["sha256"],
        params,
        {k: v for k, v in results.items() if v is not None},
        [r["run"] for r in record["runs"]],
        [out.record, out.csv],
    )
