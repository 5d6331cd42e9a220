"""Talk to the leaderboard through the official `kaggle` client.

`import kaggle` prints auth help and may call the network, so it is imported lazily,
only here and only by the commands that need it. Known traps of kaggle 2.2.x handled:
- a failed blob upload does not raise: `competition_submit` returns a response whose
  message is "Could not submit to competition" and ref 0 -> treated as a failure;
- `authenticate()` calls exit(1) when no credentials are found -> SystemExit caught;
- HTTP 401 / 403 "competitions.participate" -> plain-words explanations.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Any

from fmnist_kaggle.errors import FkaggleError

UPLOAD_FAILED = "Could not submit to competition"


def _explain(exc: BaseException, slug: str) -> str:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    text = str(exc)
    body = getattr(getattr(exc, "response", None), "text", "") or ""
    if status == 401:
        return "Kaggle rejected the credentials (HTTP 401): they are stale or wrong; create a new API token"
    if status == 403:
        if "participate" in body or "participate" in text:
            return f"Kaggle refused (HTTP 403 competitions.participate): check the slug {slug!r} and accept the competition's rules on kaggle.com"
        return f"Kaggle refused the request (HTTP 403) for competition {slug!r}"
    if status == 404:
        return f"Kaggle has no competition {slug!r} (HTTP 404): check the slug"
    if status is not None:
        return f"Kaggle answered HTTP {status}: {body.strip()[:200] or text[:200]}"
    name = type(exc).__name__
    if "Connection" in name or "Timeout" in name or "NewConnectionError" in text or "Max retries" in text:
        return f"cannot reach Kaggle (no network?): {name}"
    return f"Kaggle client error: {name}: {text.splitlines()[0][:200] if text else ''}"


def has_credentials() -> bool:
    home = Path(os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")
    return bool(
        (os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"))
        or os.environ.get("KAGGLE_API_TOKEN")
        or (home / "kaggle.json").exists()
        or (home / "access_token").exists()
    )


def api() -> Any:
    """An authenticated KaggleApi, imported lazily and quietly."""
    if not has_credentials():
        raise FkaggleError("no Kaggle credentials: put kaggle.json in ~/.kaggle/ or set KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN)")
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink):
            from kaggle.api.kaggle_api_extended import KaggleApi

            client = KaggleApi()
            client.authenticate()
    except SystemExit:
        raise FkaggleError("Kaggle client found no usable credentials") from None
    except Exception as exc:
        raise FkaggleError(_explain(exc, "")) from None
    return client


def _call(slug: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink):
            return fn(*args, **kwargs)
    except SystemExit:
        raise FkaggleError("Kaggle client exited (credentials?)") from None
    except FkaggleError:
        raise
    except Exception as exc:
        raise FkaggleError(_explain(exc, slug)) from None


def submission_limits(slug: str, client: Any | None = None) -> dict[str, Any]:
    client = client or api()
    lim = _call(slug, client.competition_get_submission_limits, slug)
    return {
        "num_today": int(getattr(lim, "num_today", 0) or 0),
        "num_allowed_now": int(getattr(lim, "num_allowed_now", 0) or 0),
        "limited_by_total": bool(getattr(lim, "limited_by_total", False)),
    }


def submit(path: str | Path, message: str, slug: str, client: Any | None = None) -> dict[str, Any]:
    """Upload one file; returns Kaggle's reply as a dict. Any failure raises FkaggleError."""
    client = client or api()
    limits = submission_limits(slug, client)
    if limits["num_allowed_now"] <= 0 and (limits["num_today"] > 0 or limits["limited_by_total"]):
        scope = "in total" if limits["limited_by_total"] else "today"
        raise FkaggleError(f"no submissions left {scope} for {slug!r} ({limits['num_today']} made today); try again after the daily reset")
    resp = _call(slug, client.competition_submit, str(path), message, slug, quiet=True)
    msg = str(getattr(resp, "message", "") or "")
    ref = int(getattr(resp, "ref", 0) or 0)
    if msg.startswith(UPLOAD_FAILED) or ref == 0:
        raise FkaggleError(f"upload failed: Kaggle replied {msg or 'nothing'!r} (ref {ref}); nothing was submitted", path)
    return {"ref": ref, "message": msg, "limits_before": limits}


def list_submissions(slug: str, client: Any | None = None) -> list[dict[str, Any]]:
    client = client or api()
    subs = _call(slug, client.competition_submissions, slug) or []
    out = []
    for s in subs:
        if s is None:
            continue
        out.append({
            "ref": int(getattr(s, "ref", 0) or 0),
            "file": getattr(s, "file_name", None),
            "description": getattr(s, "description", None),
            "status": str(getattr(s, "status", "")).split(".")[-1].lower(),
            "public_score": getattr(s, "public_score", None),
            "private_score": getattr(s, "private_score", None),
            "date": str(getattr(s, "date", "") or ""),
        })  # fmt: skip
    return out


def leaderboard(slug: str, top: int = 20, client: Any | None = None) -> list[dict[str, Any]]:
    client = client or api()
    rows = _call(slug, client.competition_leaderboard_view, slug, page_size=top) or []
    return [
        {"rank": i + 1, "team": getattr(r, "team_name", None), "score": getattr(r, "score", None), "date": str(getattr(r, "submission_date", "") or "")}
        for i, r in enumerate(rows)
        if r is not None
    ]
