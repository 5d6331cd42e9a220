"""Submissions in the workspace: made from runs, uploaded through the kaggle client, recorded.

`submissions/NAME.json` holds a submission's provenance and its uploads (with the CSV's
SHA-256, checked on every read); `submissions/history.csv` has one row per upload, wherever
the uploaded file lives (CV next to the leaderboard score).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from fmnist_kaggle import atomic, files, kaggle_client, metrics
from fmnist_kaggle.blend import FITTED, blend, check_compatible, single_run
from fmnist_kaggle.competition import Competition
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.runs import load_run
from fmnist_kaggle.submission_file import MAX_SUBMISSION_BYTES, read_record, validate_file, write_submission
from fmnist_kaggle.workspace import Workspace, check_name


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
    fp = runs[0].manifest["data"].get("test_fingerprint")
    if fp and fp != test.fingerprint():
        raise FkaggleError(f"run {runs[0].name} predicted a different test file than the competition's {test.path}")
    if runs[0].manifest["data"]["label_values"] != list(comp.train_set.label_values):
        raise FkaggleError(f"run {runs[0].name} was trained on other classes than the competition's")
    labels = runs[0].labels
    result = single_run(runs[0], labels) if len(runs) == 1 and method == "mean" else blend(runs, labels, method, space, temperature)
    provenance = {
        "method": result.method,
        "runs": [{"run": r.name, "model": r.manifest.get("model"), "data_fingerprint": r.manifest["data"]["data_fingerprint"], "folds_fingerprint": r.manifest["data"]["folds_fingerprint"], "cv_acc": r.manifest.get("cv", {}).get("acc")} for r in runs],
        "details": result.details,
        "cv": {"acc": result.cv_acc, "logloss": result.cv_logloss, "nested": result.method in FITTED},
    }
    if result.insample_acc is not None:
        provenance["cv_in_sample"] = {"acc": result.insample_acc, "logloss": result.insample_logloss}
    if test.labels is not None:
        provenance["test"] = {"acc": metrics.accuracy(result.test, test.labels), "logloss": metrics.log_loss(result.test, test.labels)}
    write_submission(comp, result.test, out, provenance)
    return {"csv": str(out.csv), "json": str(out.record), **provenance}


def submit_file(comp: Competition, path: str | Path, message: str, slug: str | None = None, dry_run: bool = False, workdir: str | Path = ".") -> dict[str, Any]:
    """Validate, upload through the kaggle client, and record the upload in the workspace."""
    path = Path(path)
    problems = validate_file(path, comp)
    if problems:
        raise FkaggleError("invalid submission, not uploaded: " + "; ".join(problems), path)
    slug = comp.require_slug(slug)
    ws = Workspace(workdir)
    own = ws.submission_for(path)  # a submission made here: its record must describe this file
    meta = read_record(own) if own is not None else None
    digest = hashlib.sha256(files.read_bytes(path, "submission file", MAX_SUBMISSION_BYTES)).hexdigest()
    if dry_run:
        return {"file": str(path), "slug": slug, "sha256": digest, "dry_run": True, "valid": True}
    files.writable_folder(ws.submissions)
    reply = kaggle_client.submit(path, message, slug)
    entry = {"time": atomic.utc_now(), "slug": slug, "file": path.name, "sha256": digest, "message": message, "ref": reply["ref"], "reply": reply["message"]}
    if meta is not None:
        meta.setdefault("submissions", []).append(entry)
        atomic.write_json(own.record, meta)
    cv = (meta or {}).get("cv", {})
    atomic.append_csv_row(ws.history_csv, {**entry, "cv_acc": cv.get("acc", ""), "cv_logloss": cv.get("logloss", "")})
    return {**entry, "cv": cv}


def submissions_table(comp: Competition, slug: str | None = None, workdir: str | Path = ".", fetch: bool = True) -> list[dict[str, Any]]:
    """Local upload records joined with Kaggle's status and public score (CV next to LB)."""
    local = atomic.read_csv_rows(Workspace(workdir).history_csv)
    remote = {s["ref"]: s for s in kaggle_client.list_submissions(comp.require_slug(slug))} if fetch else {}
    rows = []
    for h in local:
        r = remote.get(int(h["ref"]) if h.get("ref") else -1, {})
        rows.append({"time": h["time"], "file": h["file"], "ref": h.get("ref"), "cv_acc": h.get("cv_acc"), "status": r.get("status", "?" if fetch else "-"), "public_score": r.get("public_score"), "message": h.get("message")})
    known = {int(h["ref"]) for h in local if h.get("ref")}
    for ref, r in remote.items():
        if ref not in known:  # uploaded from elsewhere: still worth seeing
            rows.append({"time": r["date"], "file": r["file"], "ref": ref, "cv_acc": None, "status": r["status"], "public_score": r["public_score"], "message": r["description"]})
    return rows
