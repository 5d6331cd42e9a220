"""The report as one self-contained HTML page: every picture embedded as a data URI (no network,
no other file needed to open it), per-run pictures in collapsed sections, plain CSS, no script."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.plots import correlation_heatmap, cv_against_public
from fmnist_kaggle.storage.artifacts import read_file

EMBEDDED_RUNS = 30  # the best runs get their pictures in the page; the rest link to the files

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1280px;padding:0 16px;color:#222}
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
.muted{color:#666}.warn{color:#a40}.bad{color:#b00}.good{color:#070}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
th{background:#f5f5f5;position:sticky;top:0}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.broken td{color:#b00}img{max-width:100%;border:1px solid #eee;margin:4px 0}
details{margin:4px 0}summary{cursor:pointer}nav a{margin-right:14px}code{background:#f4f4f4;padding:1px 4px}
"""


def render(data: dict[str, Any], out: Path) -> str:
    """The page for `collect()`'s data; `out` (where it will be written) anchors links to files."""
    runs = data["runs"]
    sections = [
        _summary(data),
        _runs_table(runs),
        _blends(data["blends"]),
        _autopilots(data["autopilots"], out),
        _uploads(data["uploads"]),
        _run_details(runs, out),
        _correlation(data["correlation"]),
        _data(data["data"], out),
    ]
    nav = "".join(
        f'<a href="#{a}">{t}</a>'
        for a, t in (
            ("runs", "Runs"),
            ("blends", "Blends"),
            ("autopilot", "Autopilot"),
            ("submissions", "Submissions"),
            ("details", "Per run"),
            ("correlation", "Correlation"),
            ("data", "Data"),
        )
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>fkaggle '
        f"report: {_e(Path(data['workspace']).name)}</title>"
        f"<style>{CSS}</style></head><body><h1>fkaggle report</h1>"
        f'<p class="muted">{_e(data["workspace"])} · generated {_e(data["generated"])}</p>'
        f"<nav>{nav}</nav>{''.join(sections)}</body></html>\n"
    )


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.2f}%"


def _f(v: float | None, digits: int = 4) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _table(
    table_id: str,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    numeric: set[int] = frozenset(),
    row_class: Callable[[int], str] = lambda i: "",
) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        f'<tr class="{row_class(i)}">'
        + "".join(f'<td class="num">{c}</td>' if j in numeric else f"<td>{c}</td>" for j, c in enumerate(r))
        + "</tr>"
        for i, r in enumerate(rows)
    )
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _img(path: str | Path, alt: str, out: Path, embed: bool = True) -> str:
    p = Path(path)
    if not embed:
        return f'<a href="{_e(_relative(p, out))}">{_e(alt)}</a>'
    try:
        return _img_bytes(read_file(p, "picture"), alt)
    except FkaggleError as exc:  # a planted FIFO or link: the page says so instead of hanging
        return f'<p class="muted">{_e(alt)}: {_e(str(exc))}</p>'


def _img_bytes(png: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _relative(path: Path, out: Path) -> str:
    return Path(os.path.relpath(path.resolve(), out.resolve().parent)).as_posix()


def _summary(data: dict[str, Any]) -> str:
    runs = data["runs"]
    complete = [r for r in runs if r.get("cv_acc") is not None]
    broken = [r for r in runs if r.get("problem")]
    if not runs:
        return (
            '<section id="summary"><h2>Start here</h2><p>No runs in this workspace '
            "yet. The quickest way to a good submission:</p>"
            "<pre><code>fkaggle data check\nfkaggle auto --time-limit 20m</code></pre>"
            "<p>or train one run yourself: <code>fkaggle fold-train --recipe cpu</code>, "
            "then <code>fkaggle blend RUN</code> and <code>fkaggle report</code> again.</p></section>"
        )
    best = complete[0] if complete else None
    scored = [u for u in data["uploads"] if u.get("public_score") is not None]
    items = [
        f"{len(runs)} runs ({len(complete)} complete{f', {len(broken)} broken' if broken else ''}), "
        f"{len(data['blends'])} submission files, {len(data['uploads'])} uploads"
    ]
    if best:
        items.append(
            f"best run by CV: <b>{_e(best['run'])}</b> ({_e(best['model'])}) CV {_pct(best['cv_acc'])}"
            + (f", test {_pct(best['test_acc'])}" if best.get("test_acc") is not None else "")
        )
    if scored:
        top = max(scored, key=lambda u: u["public_score"])
        items.append(
            f"best public score: <b>{top['public_score']:.5f}</b> ({_e(top['file'])}, CV {_pct(top['cv_acc'])})"
        )
    return '<section id="summary"><h2>Summary</h2><ul>' + "".join(f"<li>{i}</li>" for i in items) + "</ul></section>"


def _runs_table(runs: list[dict[str, Any]]) -> str:
    header = [
        "#",
        "run",
        "model",
        "recipe",
        "folds × seeds",
        "epochs (best)",
        "minutes",
        "CV accuracy",
        "± fold std",
        "CV log-loss",
        "test accuracy",
        "state",
    ]
    rows = []
    for i, r in enumerate(runs, 1):
        if r.get("problem"):
            rows.append([str(i), _e(r["run"]), "", "", "", "", "", "", "", "", "", f"broken: {_e(r['problem'])}"])
            continue
        best = ",".join(map(str, r["best_epochs"])) if r["best_epochs"] else "–"
        state = r["state"] + (" · pseudo-labelled" if r["pseudo_labelled"] else "")
        if r.get("optimistic"):
            state += " · optimistic CV (epochs chosen on the scored rows)"
        rows.append(
            [
                str(i),
                f'<a href="#run-{_e(r["run"])}">{_e(r["run"])}</a>',
                _e(r["model"]),
                _e(r["recipe"]),
                f"{r['folds']} × {r['seeds']}",
                f"{r['epochs']} ({best})",
                _f(r["minutes"], 1),
                _pct(r["cv_acc"]),
                _pct(r["cv_std"]),
                _f(r["cv_logloss"]),
                _pct(r["test_acc"]),
                _e(state),
            ]
        )
    note = (
        '<p class="muted">Ranked by out-of-fold CV accuracy; test accuracy only '
        "where the competition knows the test labels.</p>"
    )
    return (
        f'<section id="runs"><h2>Runs ({len(runs)})</h2>{note}'
        + _table("runs-table", header, rows, {0, 6, 7, 8, 9, 10}, lambda i: "broken" if runs[i].get("problem") else "")
        + "</section>"
    )


def _blends(blends: list[dict[str, Any]]) -> str:
    if not blends:
        return (
            '<section id="blends"><h2>Blends and submission files</h2><p class="muted">None '
            "yet: <code>fkaggle blend RUN [RUN ...] --method stack</code>.</p></section>"
        )
    rows = []
    for b in blends:
        if b.get("problem"):
            rows.append([_e(b["name"]), "", "", "", "", "", f'<span class="bad">broken: {_e(b["problem"])}</span>'])
            continue
        gain = None if b["best_single_cv"] is None else b["cv_acc"] - b["best_single_cv"]
        verdict = "–" if gain is None or len(b["runs"]) < 2 else _against_best(gain, b["best_single"])
        rows.append(
            [
                _e(b["name"]),
                _e(b["method"]),
                _e(", ".join(b["runs"])),
                _pct(b["cv_acc"]) + (" (nested)" if b["nested"] else ""),
                _pct(b["best_single_cv"]),
                _pct(b["test_acc"]),
                verdict,
            ]
        )
    return (
        '<section id="blends"><h2>Blends and submission files</h2>'
        + _table(
            "blends-table",
            [
                "file",
                "method",
                "runs",
                "CV accuracy",
                "best single run CV",
                "test accuracy",
                "against the best single run",
            ],
            rows,
            {3, 4, 5},
        )
        + "</section>"
    )


def _against_best(gain: float, best: str) -> str:
    if abs(gain) < 5e-5:  # the same predictions, or as good as: the blend adds nothing
        return f'<span class="warn">ties with {_e(best)} alone: no gain</span>'
    if gain > 0:
        return f'<span class="good">+{100 * gain:.2f} pts over {_e(best)}</span>'
    return f'<span class="warn">{100 * gain:+.2f} pts: loses to {_e(best)} alone</span>'


def _autopilots(autos: list[dict[str, Any]], out: Path) -> str:
    if not autos:
        return (
            '<section id="autopilot"><h2>Autopilot</h2><p class="muted">No <code>fkaggle '
            "auto</code> sessions here.</p></section>"
        )
    parts = ['<section id="autopilot"><h2>Autopilot</h2>']
    for a in autos:
        parts.append(f"<h3>{_e(a['name'])}</h3>")
        if a.get("problem"):
            parts.append(f'<p class="bad">broken: {_e(a["problem"])}</p>')
            continue
        if a.get("chosen"):
            parts.append(f"<p>chosen: <b>{_e(a['chosen'])}</b> — {_e(a.get('reason') or '')}</p>")
        keys = ["kind", "name", "model", "epochs", "minutes", "cv_acc", "test_acc", "status", "chosen", "note"]
        rows = [[_cell(k, r.get(k, "")) for k in keys] for r in a["rows"]]
        parts.append(_table(f"autopilot-{_e(a['name'])}", keys, rows, {3, 4, 5, 6}))
        if a.get("png"):
            parts.append(_img(a["png"], f"autopilot {a['name']} leaderboard", out))
    return "".join(parts) + "</section>"


def _cell(key: str, value: Any) -> str:
    if key in ("cv_acc", "test_acc"):
        return _pct(_float(value))
    if key == "chosen":
        return "<b>yes</b>" if str(value).lower() in ("true", "yes", "1") else ""
    return _e(value)


def _float(v: Any) -> float | None:
    try:
        return float(v) if v not in (None, "") else None
    except ValueError:
        return None


def _uploads(uploads: list[dict[str, Any]]) -> str:
    parts = ['<section id="submissions"><h2>Submissions to Kaggle</h2>']
    if not uploads:
        return (
            parts[0] + '<p class="muted">Nothing uploaded yet: <code>fkaggle submit submissions/NAME.csv '
            '-m "message"</code>; <code>fkaggle submissions</code> fetches the scores.</p></section>'
        )
    if uploads[0].get("problem"):
        return parts[0] + f'<p class="bad">submissions/history.csv is broken: {_e(uploads[0]["problem"])}</p></section>'
    points = [u for u in uploads if u["cv_acc"] is not None and u["public_score"] is not None]
    if points:
        parts.append(_img_bytes(cv_against_public(points), "CV against public score"))
    else:
        parts.append(
            '<p class="muted">No public scores known yet (run <code>fkaggle submissions</code> to fetch them).</p>'
        )
    rows = [
        [
            _e(u["time"]),
            _e(u["file"]),
            _e(u["ref"]),
            _e(u["status"]),
            _pct(u["cv_acc"]),
            _f(u["public_score"], 5),
            _f(u["private_score"], 5),
            _sha(u["sha256"]),
            _e(u["message"]),
        ]
        for u in uploads
    ]
    return (
        "".join(parts)
        + _table(
            "uploads-table",
            ["time", "file", "ref", "status", "CV accuracy", "public", "private", "file vs upload", "message"],
            rows,
            {4, 5, 6},
        )
        + "</section>"
    )


def _sha(state: str) -> str:
    cls = "good" if state == "match" else "muted" if state.startswith("not in") else "bad"
    return f'<span class="{cls}">{_e(state)}</span>'


def _run_details(runs: list[dict[str, Any]], out: Path) -> str:
    parts = ['<section id="details"><h2>Per run</h2>']
    if runs:
        parts.append(
            f'<p class="muted">Pictures are embedded for the {EMBEDDED_RUNS} best runs; '
            "later runs link to their files.</p>"
        )
    for i, r in enumerate(runs):
        if r.get("problem"):
            continue
        embed = i < EMBEDDED_RUNS
        folds = ", ".join(_pct(a) for a in r["per_fold"]) or "–"
        pics = (
            "".join(f"<h4>{_e(k)}</h4>" + _img(p, r["run"] + " " + k, out, embed) for k, p in r["pictures"].items())
            or '<p class="muted">no pictures yet (<code>fkaggle cv RUN</code> draws the '
            "confusion matrix and predictions)</p>"
        )
        parts.append(
            f'<details id="run-{_e(r["run"])}"><summary><b>{_e(r["run"])}</b> — CV {_pct(r["cv_acc"])} '
            f"· {_e(r['state'])}</summary><p>per fold: {folds}</p>{pics}</details>"
        )
    return "".join(parts) + "</section>"


def _correlation(corr: dict[str, Any] | None) -> str:
    if not corr:
        return (
            '<section id="correlation"><h2>OOF correlation</h2><p class="muted">Needs '
            "two complete runs on the same folds.</p></section>"
        )
    png = correlation_heatmap(corr["runs"], np.asarray(corr["matrix"]))
    return (
        '<section id="correlation"><h2>OOF correlation</h2><p class="muted">The '
        "best complete runs on the best run's folds; the least correlated pairs "
        "gain most from blending.</p>" + _img_bytes(png, "OOF correlation") + "</section>"
    )


def _data(data: dict[str, Any], out: Path) -> str:
    parts = ['<section id="data"><h2>Data</h2>']
    drift = data.get("drift")
    if drift and drift.get("problem"):
        parts.append(f'<p class="bad">drift result broken: {_e(drift["problem"])}</p>')
    elif drift:
        parts.append(
            f"<p>train vs test (adversarial validation): ROC AUC <b>{drift['auc']:.3f}</b> — {_e(drift['verdict'])}</p>"
        )
    dup = data.get("duplicates")
    if dup and dup.get("problem"):
        parts.append(f'<p class="bad">duplicates check broken: {_e(dup["problem"])}</p>')
    elif dup:
        warn = ' class="warn"' if dup["conflicting_label_groups"] or dup["train_test_rows"] else ""
        parts.append(
            f"<p{warn}>repeated images ({_e(dup.get('threshold', ''))}): <b>{dup['train_groups']}</b> group(s) of "
            f"{dup['train_rows']} training rows ({dup['conflicting_label_groups']} with disagreeing labels; each group "
            f"kept in one fold), {dup['test_groups']} within test, <b>{dup['train_test_rows']}</b> test row(s) "
            "repeating a training image</p>"
        )
    for k, p in data["pictures"].items():
        parts.append(f"<h4>{_e(k)}</h4>{_img(p, k, out)}")
    if len(parts) == 1:
        parts.append(
            '<p class="muted">No data checks yet: <code>fkaggle data check</code>, <code>fkaggle data drift</code>.</p>'
        )
    return "".join(parts) + "</section>"
