"""Blend-to-file and submit workflows, with local records of every upload.

`submissions/NAME.json` holds a submission's provenance and its uploads;
`submissions/history.csv` has one row per upload (CV next to the leaderboard score).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_kaggle import atomic
from fmnist_kaggle.competition import Competition
from fmnist_kaggle.errors import FkaggleError


def make_submission(comp: Competition, run_refs: list[str], method: str, name: str, workdir: str | Path = ".", space: str = "prob", temperature: bool = False) -> dict[str, Any]:
    """Blend runs (or take one) and write submissions/NAME.csv + NAME.json."""
    from fmnist_kaggle import metrics
    from fmnist_kaggle.blend import FITTED, blend, check_compatible, single_run
    from fmnist_kaggle.runs import load_run
    from fmnist_kaggle.submission import write_submission

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
    labels = np.load(runs[0].dir / "labels.npy")
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
    csv_path, json_path = write_submission(comp, result.test.argmax(1), Path(workdir) / "submissions" / f"{name}.csv", provenance)
    atomic.save_npy(Path(workdir) / "submissions" / f"{name}.test_logprobs.npy", result.test.astype(np.float32))
    return {"csv": str(csv_path), "json": str(json_path), **provenance}


def submit_file(comp: Competition, path: str | Path, message: str, slug: str | None = None, dry_run: bool = False, workdir: str | Path = ".") -> dict[str, Any]:
    """Validate, upload through the kaggle client, and record the upload locally."""
    from fmnist_kaggle import kaggle_client
    from fmnist_kaggle.submission import validate_file

    path = Path(path)
    problems = validate_file(path, comp)
    if problems:
        raise FkaggleError("invalid submission, not uploaded: " + "; ".join(problems), path)
    slug = slug or comp.slug
    if not slug:
        raise FkaggleError("no Kaggle competition slug: pass --slug or set `slug` in the competition config")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if dry_run:
        return {"file": str(path), "slug": slug, "sha256": digest, "dry_run": True, "valid": True}
    reply = kaggle_client.submit(path, message, slug)
    entry = {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "slug": slug,
        "file": path.name,
        "sha256": digest,
        "message": message,
        "ref": reply["ref"],
        "reply": reply["message"],
    }
    record = path.with_suffix(".json")
    meta = json.loads(record.read_text()) if record.exists() else {"file": path.name}
    meta.setdefault("submissions", []).append(entry)
    atomic.write_json(record, meta)
    cv = meta.get("cv", {})
    atomic.append_csv_row(Path(workdir) / "submissions" / "history.csv", {**entry, "cv_acc": cv.get("acc", ""), "cv_logloss": cv.get("logloss", "")})
    return {**entry, "cv": cv}


def local_history(workdir: str | Path = ".") -> list[dict[str, str]]:
    import csv

    path = Path(workdir) / "submissions" / "history.csv"
    return list(csv.DictReader(path.open())) if path.exists() else []


def submissions_table(comp: Competition, slug: str | None = None, workdir: str | Path = ".", fetch: bool = True) -> list[dict[str, Any]]:
    """Local upload records joined with Kaggle's status and public score (CV next to LB)."""
    from fmnist_kaggle import kaggle_client

    local = local_history(workdir)
    remote = {}
    slug = slug or comp.slug
    if fetch:
        if not slug:
            raise FkaggleError("no Kaggle competition slug: pass --slug or set `slug` in the competition config")
        remote = {s["ref"]: s for s in kaggle_client.list_submissions(slug)}
    rows = []
    for h in local:
        r = remote.get(int(h["ref"]) if h.get("ref") else -1, {})
        rows.append({"time": h["time"], "file": h["file"], "ref": h.get("ref"), "cv_acc": h.get("cv_acc"), "status": r.get("status", "?" if fetch else "-"), "public_score": r.get("public_score"), "message": h.get("message")})
    known = {int(h["ref"]) for h in local if h.get("ref")}
    for ref, r in remote.items():
        if ref not in known:  # uploaded from elsewhere: still worth seeing
            rows.append({"time": r["date"], "file": r["file"], "ref": ref, "cv_acc": None, "status": r["status"], "public_score": r["public_score"], "message": r["description"]})
    return rows
