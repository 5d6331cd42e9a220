"""A submission made from runs: one run or a blend, written as the competition's CSV with
its record (`submissions/NAME.csv` + `NAME.json`: provenance, CV, test score where known)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fmnist_kaggle import metrics, tracking
from fmnist_kaggle.data.competition import Competition
from fmnist_kaggle.data.submission_file import write_submission
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.evaluate.blend import blend, check_compatible, single_run
from fmnist_kaggle.runs.identity import require_classes, require_test_file
from fmnist_kaggle.runs.store import load_run
from fmnist_kaggle.storage import files
from fmnist_kaggle.storage.layout import SubmissionFiles, Workspace, check_name


def make_submission(comp: Competition, run_refs: list[str], method: str, name: str, workdir: str | Path = ".", space: str = "prob", temperature: bool = False) -> dict[str, Any]:
    """Blend runs (or take one) and write submissions/NAME.csv + NAME.json."""
    ws = Workspace(workdir)
    out = ws.submission(check_name(name, "submission"))
    files.writable_folder(ws.submissions)
    runs = [load_run(r, workdir) for r in run_refs]
    check_compatible(runs)
    test = comp.test_set
    if test is None:
        raise FkaggleError("the competition has no test file to predict")
    require_test_file(runs[0].name, runs[0].identity, test.fingerprint(), test.path)
    require_classes(runs[0].name, runs[0].manifest["data"]["label_values"], list(comp.train_set.label_values))
    labels = runs[0].labels
    result = single_run(runs[0], labels) if len(runs) == 1 and method == "mean" else blend(runs, labels, method, space, temperature)
    provenance = {
        "method": result.method,
        "runs": [{"run": r.name, "model": r.manifest.get("model"), "data_fingerprint": r.manifest["data"]["data_fingerprint"], "folds_fingerprint": r.manifest["data"]["folds_fingerprint"], "cv_acc": r.manifest.get("cv", {}).get("acc")} for r in runs],
        "details": result.details,
        "cv": {"acc": result.cv_acc, "logloss": result.cv_logloss, "nested": result.insample_acc is not None},
    }
    if result.insample_acc is not None:
        provenance["cv_in_sample"] = {"acc": result.insample_acc, "logloss": result.insample_logloss}
    if test.labels is not None:
        provenance["test"] = {"acc": metrics.accuracy(result.test, test.labels), "logloss": metrics.log_loss(result.test, test.labels)}
    record = write_submission(comp, result.test, out, provenance)
    _track(comp, name, out, record)
    return {"csv": str(out.csv), "json": str(out.record), **provenance}


def _track(comp: Competition, name: str, out: SubmissionFiles, record: dict[str, Any]) -> None:
    """The submission as an MLflow run: its inputs, method, (nested) CV beside the best input's."""
    if not tracking.active():
        return
    best_single = max((r["cv_acc"] for r in record["runs"] if r["cv_acc"] is not None), default=None)
    results = {"cv_acc": record["cv"]["acc"], "cv_logloss": record["cv"]["logloss"], "best_single_cv_acc": best_single, **{f"test_{k}": v for k, v in record.get("test", {}).items()}}
    params = {"method": record["method"], "runs": [r["run"] for r in record["runs"]], "nested_cv": record["cv"]["nested"], **{f"details.{k}": v for k, v in record["details"].items()}}
    tracking.sync_blend(comp.name or "fkaggle", name, record["sha256"], params, {k: v for k, v in results.items() if v is not None}, [r["run"] for r in record["runs"]], [out.record, out.csv])
