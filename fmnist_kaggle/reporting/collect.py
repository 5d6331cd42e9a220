"""Everything the report shows, read from the workspace (reads only; a broken part is listed
with its problem, never raised): runs, blends, autopilot leaderboards, uploads, data checks."""

from __future__ import annotations

from typing import Any

import numpy as np

from fmnist_kaggle.data.submission_file import read_record
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.evaluate.scoring import oof_correlation
from fmnist_kaggle.runs.store import load_run, predicted_from, status
from fmnist_kaggle.storage import csvfile
from fmnist_kaggle.storage.artifacts import read_json
from fmnist_kaggle.storage.layout import NAME, RESERVED, Workspace
from fmnist_kaggle.storage.schemas import AUTOPILOT_STATE, DRIFT, DUPLICATES
from fmnist_kaggle.submit.uploads import file_state
from fmnist_kaggle.training.config import selects_epoch

# A broken file in a workspace may fail in many ways; the report lists it instead of stopping.
BROKEN = (FkaggleError, OSError, KeyError, TypeError, ValueError, IndexError, AttributeError)
CORRELATED_RUNS = 12  # the heatmap's runs: the best complete runs on the best run's folds


def collect(ws: Workspace) -> dict[str, Any]:
    """The workspace as plain data: what `fkaggle report` renders (and prints with --json)."""
    runs = sorted((_run_row(ws, name) for name in ws.run_names()), key=_rank)
    return {
        "workspace": str(ws.root.resolve()),
        "runs": runs,
        "blends": _blends(ws, {r["run"]: r for r in runs}),
        "autopilots": [_autopilot(ws, name) for name in _autopilot_names(ws)],
        "uploads": _uploads(ws),
        "data": _data(ws),
        "correlation": _correlation(ws, runs),
    }


def _rank(row: dict[str, Any]) -> tuple:
    return (row.get("cv_acc") is None, -(row.get("cv_acc") or 0.0), row["run"])


def _fold_seconds(fold: dict[str, Any]) -> float:
    """A fold's whole time (training, validating, predicting, setup, checkpoints, writes: what the
    autopilot's wall minutes count too), or its training loop's where the phases are not recorded."""
    times = fold.get("times") or {}
    return float(sum(times.values())) if times else float(fold.get("seconds") or 0)


def _run_row(ws: Workspace, name: str) -> dict[str, Any]:
    rd = ws.run(name)
    try:
        m = status(rd)
        cfg, data = m["config"], m["data"]
        assembled = rd.assembled(m)
        cv = m.get("cv") if assembled else None
        per_fold = [f["acc"] for f in (cv or {}).get("per_fold", [])]
        seconds = sum(_fold_seconds(f) for f in m["fold_metrics"])
        done = data["folds"] if predicted_from(m) else sum(s == "done" for s in m["fold_status"].values())
        state = (
            f"predicted from {predicted_from(m)}"
            if predicted_from(m)
            else "complete"
            if assembled
            else f"{done} of {data['folds']} folds"
        )
        pictures = {
            "learning curves": rd.curves_png,
            "confusion matrix": ws.confusion_png(name),
            "predictions": ws.predictions_png(name),
        }
        return {
            "run": name,
            "model": m["model"],
            "recipe": m.get("recipe") or "",
            "folds": data["folds"],
            "seeds": len(m.get("seeds") or [0]),
            "epochs": cfg.get("epochs"),
            "best_epochs": sorted({e for f in m["fold_metrics"] for e in f.get("best_epochs", [])}),
            "minutes": round(seconds / 60, 2) if seconds else None,
            "cv_acc": cv["acc"] if cv else None,
            "cv_logloss": cv["logloss"] if cv else None,
            "cv_std": float(np.std(per_fold)) if len(per_fold) > 1 else None,
            "per_fold": per_fold,
            "test_acc": (m.get("test_metrics") or {}).get("acc") if assembled else None,
            "state": state,
            "pseudo_labelled": bool(m.get("pseudo_label")),
            "optimistic": selects_epoch(cfg),
            "predicted_from": predicted_from(m),
            "partial": bool(m.get("partial")),
            "created": m.get("created", ""),
            "pictures": {k: str(p) for k, p in pictures.items() if p.is_file()},
            "data_fingerprint": data.get("data_fingerprint"),
            "folds_fingerprint": data.get("folds_fingerprint"),
        }
    except BROKEN as exc:
        return {"run": name, "problem": _one_line(exc), "state": "broken"}


def _blends(ws: Workspace, runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for record in sorted(ws.submissions.glob("*.json")) if ws.submissions.is_dir() else []:
        name = record.stem
        if not NAME.fullmatch(name) or name.lower() in RESERVED:
            continue
        try:
            meta = read_record(ws.submission(name))
            inputs = [r["run"] for r in meta["runs"]]
            best = _best_single(meta)
            out.append(
                {
                    "name": name,
                    "file": meta["file"],
                    "method": meta["method"],
                    "runs": inputs,
                    "cv_acc": meta["cv"]["acc"],
                    "cv_logloss": meta["cv"]["logloss"],
                    "nested": bool(meta["cv"].get("nested")),
                    "best_single": best[1],
                    "best_single_cv": best[0],
                    "test_acc": (meta.get("test") or {}).get("acc"),
                    "created": meta.get("created", ""),
                    "uploads": len(meta.get("submissions") or []),
                }
            )
        except BROKEN as exc:
            out.append({"name": name, "problem": _one_line(exc)})
    return sorted(out, key=lambda b: (b.get("cv_acc") is None, -(b.get("cv_acc") or 0.0), b["name"]))


def _best_single(meta: dict[str, Any]) -> tuple[float | None, str | None]:
    """(CV, run) of the blend's best input alone: recorded in the record; older records: the runs' manifests' CV."""
    if isinstance(meta.get("best_single"), dict):
        return meta["best_single"].get("acc"), meta["best_single"].get("run")
    singles = [(r["cv_acc"], r["run"]) for r in meta["runs"] if r.get("cv_acc") is not None]
    return max(singles) if singles else (None, None)


def _autopilot_names(ws: Workspace) -> list[str]:
    root = ws.autopilot_root
    return sorted(p.name for p in root.iterdir() if p.is_dir() and NAME.fullmatch(p.name)) if root.is_dir() else []


def _autopilot(ws: Workspace, name: str) -> dict[str, Any]:
    files = ws.autopilot(name)
    try:
        rows = csvfile.read_csv_rows(files.csv) if files.csv.is_file() else []
        state = read_json(files.state, "autopilot state", AUTOPILOT_STATE) if files.state.is_file() else {}
        choice = state.get("choice") or {}
        chosen = choice.get("chosen")
        label = (
            chosen.get("label") if isinstance(chosen, dict) else chosen
        )  # state.json records the chosen candidate whole
        return {
            "name": name,
            "rows": rows,
            "png": str(files.png) if files.png.is_file() else None,
            "chosen": label,
            "reason": choice.get("reason"),
            "submission": state.get("submission"),
        }
    except BROKEN as exc:
        return {"name": name, "problem": _one_line(exc), "rows": [], "png": None}


def _uploads(ws: Workspace) -> list[dict[str, Any]]:
    try:
        rows = csvfile.read_csv_rows(ws.history_csv) if ws.history_csv.is_file() else []
    except BROKEN as exc:
        return [{"problem": _one_line(exc)}]
    out = []
    for h in rows:
        out.append(
            {
                "time": h.get("time", ""),
                "file": h.get("file", ""),
                "ref": h.get("ref", ""),
                "status": h.get("kaggle_status") or h.get("status") or "submitted",
                "message": h.get("message", ""),
                "cv_acc": csvfile.optional_float(h.get("cv_acc")),
                "public_score": csvfile.optional_float(h.get("public_score")),
                "private_score": csvfile.optional_float(h.get("private_score")),
                "sha256": file_state(ws, h.get("file"), h.get("sha256", "")),
            }
        )
    return out


def _data(ws: Workspace) -> dict[str, Any]:
    drift = None
    if ws.drift_json.is_file():
        try:
            drift = read_json(ws.drift_json, "drift result", DRIFT)
            drift = {k: drift[k] for k in ("auc", "verdict", "train_rows", "test_rows", "created") if k in drift}
        except BROKEN as exc:
            drift = {"problem": _one_line(exc)}
    duplicates = None
    if ws.duplicates_json.is_file():
        try:
            duplicates = read_json(ws.duplicates_json, "duplicates check", DUPLICATES)
        except BROKEN as exc:
            duplicates = {"problem": _one_line(exc)}
    pictures = {
        "samples per class": ws.data_check_png,
        "drift: pixel importance": ws.drift_pngs[0],
        "drift: most test-like training images": ws.drift_pngs[1],
    }
    return {
        "drift": drift,
        "duplicates": duplicates,
        "pictures": {k: str(p) for k, p in pictures.items() if p.is_file()},
    }


def _correlation(ws: Workspace, runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """OOF correlation of the best complete runs that share the best run's folds."""
    complete = [r for r in runs if r.get("cv_acc") is not None and not r.get("predicted_from") and not r.get("partial")]
    if len(complete) < 2:
        return None
    same = [r for r in complete if r["folds_fingerprint"] == complete[0]["folds_fingerprint"]][:CORRELATED_RUNS]
    try:
        loaded = [load_run(r["run"], ws.root) for r in same]
    except BROKEN:
        return None
    return (
        {"runs": [r.name for r in loaded], "matrix": np.round(oof_correlation(loaded), 4).tolist()}
        if len(loaded) > 1
        else None
    )


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, FkaggleError) else text.splitlines()[0]
