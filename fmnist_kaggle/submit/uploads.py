"""Submissions in the workspace: made from runs, uploaded through the kaggle client, recorded.

`submissions/NAME.json` holds a submission's provenance and its uploads (with the CSV's
SHA-256, checked on every read); `submissions/history.csv` has one row per upload, wherever
the uploaded file lives (CV next to the leaderboard score).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from pathlib import Path
from typing import Any

from fmnist_kaggle import tracking
from fmnist_kaggle.data.competition import Competition
from fmnist_kaggle.data.submission_file import check_file, read_record, sha256
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.storage import atomic, csvfile, files
from fmnist_kaggle.storage.artifacts import read_file, utc_now
from fmnist_kaggle.storage.layout import Workspace
from fmnist_kaggle.submit import kaggle_client

log = logging.getLogger(__name__)


def submit_file(
    comp: Competition,
    path: str | Path,
    message: str,
    slug: str | None = None,
    dry_run: bool = False,
    workdir: str | Path = ".",
    force: bool = False,
) -> dict[str, Any]:
    """Validate, upload through the kaggle client, and record the upload in the workspace.
    The record is written as `uploading` before the upload, so no submission goes unrecorded:
    it becomes `submitted` with Kaggle's ref, is removed when Kaggle refused the upload, and
    stays `unknown` when no usable answer came back (`submissions` reconciles it later).
    Content already uploaded is refused unless `force` (a daily slot spent on a known score)."""
    path = Path(path)
    text, problems, _ = check_file(path, comp)
    if problems:
        raise FkaggleError("invalid submission, not uploaded: " + "; ".join(problems), path)
    slug = comp.require_slug(slug)
    ws = Workspace(workdir)
    own = ws.submission_for(path)  # a submission made here: its record must describe this file
    meta = read_record(own) if own is not None else None
    reminder = {"warning": meta["warning"]} if meta and meta.get("warning") else {}  # a blend that loses to a run
    if reminder:
        log.warning(f"warning: {path.name}: {reminder['warning']}")
    digest = sha256(text)  # of the bytes validated (UTF-8 text round-trips exactly)
    earlier = earlier_upload(ws, digest)
    if earlier is not None and not force:
        raise FkaggleError(
            f"the same content was already submitted: {describe_upload(earlier)}; not "
            "uploaded again (--force to spend a submission on it anyway)",
            path,
        )
    if dry_run:
        return {"file": str(path), "slug": slug, "sha256": digest, "dry_run": True, "valid": True, **reminder}
    files.writable_folder(ws.submissions)
    client = kaggle_client.api()
    limits = kaggle_client.require_quota(slug, client)
    cv = (meta or {}).get("cv", {})
    entry = _upload_recorded(ws, path, message, slug, digest, cv, client)
    if meta is not None:
        meta.setdefault("submissions", []).append(
            {k: entry[k] for k in ("time", "slug", "file", "sha256", "message", "ref", "reply")}
        )
        atomic.write_json(own.record, meta)
    tracking.log_upload(comp.name or "fkaggle", path.name, digest, entry["ref"], message)
    left = max(0, limits["num_allowed_now"] - 1)
    return {
        **entry,
        "cv": cv,
        "limits_before": limits,
        "left_today": left,
        **({"resubmitted": earlier} if earlier else {}),
        **reminder,
    }


def _upload_recorded(
    ws: Workspace, path: Path, message: str, slug: str, digest: str, cv: dict[str, Any], client: Any
) -> dict[str, Any]:
    """Upload with its history row written first (`uploading`), then made `submitted` with
    Kaggle's ref, removed when Kaggle refused it, or left `unknown` when no answer came."""
    entry = {
        "time": utc_now(),
        "slug": slug,
        "file": path.name,
        "sha256": digest,
        "message": message,
        "ref": "",
        "status": "uploading",
        "reply": "",
        "cv_acc": cv.get("acc", ""),
        "cv_logloss": cv.get("logloss", ""),
        "upload_id": secrets.token_hex(6),
    }
    csvfile.append_csv_row(ws.history_csv, entry)
    try:
        reply = kaggle_client.upload(path, message, slug, client)
    except kaggle_client.NoAnswer as exc:
        _update_history(ws, entry, status="unknown", reply=str(exc))
        raise FkaggleError(
            f"{exc}: the submission may have counted; recorded as 'unknown' (`fkaggle "
            "submissions` matches it with Kaggle's list)",
            path,
        ) from None
    except BaseException:
        _update_history(ws, entry, remove=True)  # Kaggle refused it (or we never reached it): nothing was submitted
        raise
    _update_history(ws, entry, status="submitted", ref=reply["ref"], reply=reply["message"])
    entry.update(status="submitted", ref=reply["ref"], reply=reply["message"])
    return entry


def earlier_upload(ws: Workspace, digest: str) -> dict[str, str] | None:
    """The newest upload of the same bytes that Kaggle took or may have taken (refused ones are not kept)."""
    same = [h for h in csvfile.read_csv_rows(ws.history_csv) if h.get("sha256") == digest]
    return same[-1] if same else None


def describe_upload(h: dict[str, str]) -> str:
    score = h.get("public_score") or ""
    status = h.get("kaggle_status") or h.get("status")
    scored = f", public score {score}" if score else ""
    return f"{h.get('file')} on {h.get('time')} (ref {h.get('ref') or '?'}, {status}{scored})"


def file_state(ws: Workspace, file: str | None, digest: str) -> str:
    """Does the file in submissions/ still hold the bytes that were uploaded?"""
    own = ws.submission_named(file)
    if own is None or not (own.csv.is_file() or own.record.is_file()):
        return "not in submissions/"  # uploaded from elsewhere
    if not own.csv.is_file():
        return "missing"
    return (
        "match"
        if hashlib.sha256(read_file(own.csv, "submission file")).hexdigest() == digest
        else "changed since upload"
    )


def _update_history(ws: Workspace, entry: dict[str, Any], remove: bool = False, **changes: Any) -> dict[str, Any]:
    """Rewrite one upload row of history.csv atomically. The row is found by its upload id (two
    uploads of the same file can share a second); rows written before ids, by time and file hash."""
    rows = csvfile.read_csv_rows(ws.history_csv)
    key = ("upload_id",) if entry.get("upload_id") else ("time", "sha256")
    same = lambda r: all(r.get(k) == entry[k] for k in key)  # noqa: E731
    updated = {**{k: str(v) for k, v in entry.items()}, **{k: str(v) for k, v in changes.items()}}
    rows = [r for r in rows if not same(r)] if remove else [updated if same(r) else r for r in rows]
    if not rows:  # the refused upload was the only record: leave no file behind
        ws.history_csv.unlink(missing_ok=True)
    else:
        atomic.write_text(ws.history_csv, csvfile.csv_text(rows, list(dict.fromkeys(k for r in rows for k in r))))
    return updated


RECONCILE_WINDOW_S = 1800  # an unknown upload matches a Kaggle submission with its message this close in time


def submissions_table(
    comp: Competition, slug: str | None = None, workdir: str | Path = ".", fetch: bool = True
) -> dict[str, Any]:
    """Local upload records joined with Kaggle's status and scores (CV next to LB), every page
    of Kaggle's list read; `unknown` uploads matched to Kaggle's list by message and time; each
    file checked against the bytes uploaded; the submissions left today. When Kaggle cannot be
    reached (or `fetch` is off), the local records with their last known scores."""
    ws = Workspace(workdir)
    remote: dict[int, dict[str, Any]] = {}
    limits = None
    if fetch:
        try:
            client = kaggle_client.api()
            remote = {s["ref"]: s for s in kaggle_client.list_submissions(comp.require_slug(slug), client)}
            limits = kaggle_client.submission_limits(comp.require_slug(slug), client)
        except FkaggleError as exc:
            log.warning(f"{exc}; showing local records only")
            fetch = False
    local = _reconcile(ws, csvfile.read_csv_rows(ws.history_csv), remote)
    if remote:
        _remember_scores(ws, comp, local, remote)
    rows = []
    for h in local:
        r = remote.get(_int(h.get("ref")), {})
        status = (
            h["status"]
            if h.get("status") in ("unknown", "uploading")
            else r.get("status") or h.get("kaggle_status") or ("?" if fetch else "-")
        )
        scores = {
            k: r[k] if r else csvfile.optional_float(h.get(k)) for k in ("public_score", "private_score")
        }  # offline: the last known
        rows.append(
            {
                "time": h["time"],
                "file": h["file"],
                "ref": _int(h.get("ref")),
                "cv_acc": csvfile.optional_float(h.get("cv_acc")),
                "status": status,
                **scores,
                "message": h.get("message"),
                "file_check": file_state(ws, h.get("file"), h.get("sha256", "")),
            }
        )
    known = {_int(h.get("ref")) for h in local}
    for ref, r in remote.items():
        if ref not in known:  # uploaded from elsewhere: still worth seeing, with its CV when the file is one of ours
            rows.append(
                {
                    "time": r["date"],
                    "file": r["file"],
                    "ref": ref,
                    "cv_acc": _cv_of(ws, r["file"]),
                    "status": r["status"],
                    "public_score": r["public_score"],
                    "private_score": r["private_score"],
                    "message": r["description"],
                    "file_check": None,
                }
            )
    return {"submissions": rows, "limits": limits, "left_today": None if limits is None else limits["num_allowed_now"]}


def _remember_scores(
    ws: Workspace, comp: Competition, local: list[dict[str, str]], remote: dict[int, dict[str, Any]]
) -> None:
    """Keep Kaggle's last known status and scores in history.csv (the report and `--local` read
    them offline); a newly learnt score also goes onto the file's tracked run."""
    changed = []
    for h in local:
        r = remote.get(_int(h.get("ref")))
        if r is None:
            continue
        known = {
            "public_score": _text(r.get("public_score")),
            "private_score": _text(r.get("private_score")),
            "kaggle_status": _text(r.get("status")),
        }
        if any(h.get(k, "") != v for k, v in known.items()):
            h.update(known)
            changed.append(h)
    if not changed:
        return
    atomic.write_text(ws.history_csv, csvfile.csv_text(local))  # the header: every row's keys, the new scores included
    for h in changed:
        scores = {k: csvfile.optional_float(h[k]) for k in ("public_score", "private_score")}
        tracking.log_upload(
            comp.name or "fkaggle", h["file"], h.get("sha256", ""), h.get("ref"), h.get("message", ""), scores
        )


def _text(v: Any) -> str:
    return "" if v is None else str(v)


def _cv_of(ws: Workspace, file: str | None) -> float | None:
    """The CV accuracy recorded for submissions/FILE, if the workspace made that file."""
    own = ws.submission_named(file)
    if own is None or not own.record.is_file():
        return None
    try:
        return csvfile.optional_float(read_record(own).get("cv", {}).get("acc"))
    except FkaggleError:
        return None  # a record that no longer matches its CSV says nothing about this upload


def _reconcile(ws: Workspace, local: list[dict[str, str]], remote: dict[int, dict[str, Any]]) -> list[dict[str, str]]:
    """Give each `unknown`/`uploading` record the ref of the Kaggle submission it became, if any."""
    taken = {_int(h.get("ref")) for h in local}
    for h in local:
        if h.get("status") not in ("unknown", "uploading") or not remote:
            continue
        t = _when(h["time"])
        matches = [
            r
            for ref, r in remote.items()
            if ref not in taken
            and r["description"] == h.get("message")
            and t is not None
            and (w := _when(r["date"])) is not None
            and abs(w - t) <= RECONCILE_WINDOW_S
        ]
        if matches:
            best = min(matches, key=lambda r: abs(_when(r["date"]) - t))
            h.update(ref=str(best["ref"]), status="submitted", reply="matched in Kaggle's list")
            _update_history(ws, h)
            taken.add(best["ref"])
            log.info(f"{h['file']} ({h['time']}): the upload with no answer reached Kaggle as ref {best['ref']}")
    return local


def _when(text: str) -> float | None:
    from datetime import datetime, timezone

    try:
        t = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()


def _int(v: Any) -> int | None:
    try:
        return int(v) if v not in (None, "") else None
    except (TypeError, ValueError):
        return None
