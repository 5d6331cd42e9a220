"""Talk to the leaderboard through the official `kaggle` client.

`import kaggle` prints auth help and may call the network, so it is imported lazily,
only here and only by the commands that need it. Known traps of kaggle 2.2.x handled:
- a failed blob upload does not raise: `competition_submit` returns a response whose
  message is "Could not submit to competition" and ref 0 -> treated as a failure;
- `authenticate()` calls exit(1) when no credentials are found -> SystemExit caught;
- HTTP 401 / 403 "competitions.participate" -> plain-words explanations;
- no request has a timeout and no session is exposed -> `_deadlines` gives every request
  made inside one of our calls connect/read timeouts; 429/5xx are retried here, with backoff
  and Retry-After honoured up to a cap; every call also has an overall deadline (a server that
  drips bytes, the client's own retries of a stalled upload); the call that creates a
  submission is never retried. Settings: FKAGGLE_KAGGLE_TIMEOUT ("connect,read" seconds,
  default "10,60"), FKAGGLE_KAGGLE_RETRIES (default 3), FKAGGLE_KAGGLE_BACKOFF (first wait in
  seconds, doubled each time, default 2), FKAGGLE_KAGGLE_MAX_WAIT (cap, default 120),
  FKAGGLE_KAGGLE_DEADLINE (seconds per call, default 300).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.storage import csvfile

log = logging.getLogger(__name__)
UPLOAD_FAILED = "Could not submit to competition"
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class NoAnswer(FkaggleError):
    """The request may have reached Kaggle, but no usable answer came back (timeout, garbled reply)."""


def _setting(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


def _number(name: str, default: str, whole: bool = False) -> float:
    """A numeric setting from the environment: one line naming it when it is not a number >= 0."""
    text = _setting(name, default)
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        value = -1
    if not value >= 0 or value == float("inf"):
        raise FkaggleError(f"{name} must be a {'whole ' if whole else ''}number >= 0, got {text!r}")
    return value


def timeouts() -> tuple[float, float]:
    text = _setting("FKAGGLE_KAGGLE_TIMEOUT", "10,60")
    try:
        connect, read = (float(t) for t in (text.split(",") * 2)[:2])
    except ValueError:
        raise FkaggleError(f"FKAGGLE_KAGGLE_TIMEOUT must be 'CONNECT,READ' seconds, got {text!r}") from None
    if not (0 < connect < float("inf") and 0 < read < float("inf")):
        raise FkaggleError(f"FKAGGLE_KAGGLE_TIMEOUT must be positive seconds, got {text!r}")
    return connect, read


@contextlib.contextmanager
def _deadlines() -> Iterator[None]:
    """Connect/read timeouts on every request the kaggle client makes meanwhile (it sets none)."""
    import requests

    limits = timeouts()
    send = requests.Session.send

    def send_with_timeout(self: Any, request: Any, **kw: Any) -> Any:
        if kw.get("timeout") is None:
            kw["timeout"] = limits
        return send(self, request, **kw)

    requests.Session.send = send_with_timeout
    try:
        yield
    finally:
        requests.Session.send = send


def _explain(exc: BaseException, slug: str) -> str:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    text = str(exc)
    body = getattr(getattr(exc, "response", None), "text", "") or ""
    if status == 401:
        return "Kaggle rejected the credentials (HTTP 401): they are stale or wrong; create a new API token"
    if status == 403:
        rules = f"https://www.kaggle.com/competitions/{slug}/rules"
        if "participate" in body or "participate" in text:
            return (
                "Kaggle refused (HTTP 403 competitions.participate): accept the competition's "
                f"rules at {rules} (and check the slug)"
            )
        return (
            f"Kaggle refused the request (HTTP 403) for competition {slug!r}: have you accepted its rules at {rules}?"
        )
    if status == 429:
        return "Kaggle is rate-limiting this account (HTTP 429) and kept refusing after the retries; wait a few minutes"
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
        raise FkaggleError(
            "no Kaggle credentials: put kaggle.json in ~/.kaggle/ or set KAGGLE_USERNAME "
            "and KAGGLE_KEY (or KAGGLE_API_TOKEN)"
        )
    sink = io.StringIO()
    try:
        with _deadlines(), contextlib.redirect_stdout(sink):
            from kaggle.api.kaggle_api_extended import KaggleApi

            client = KaggleApi()
            client.authenticate()
    except SystemExit:
        raise FkaggleError("Kaggle client found no usable credentials") from None
    except Exception as exc:
        raise FkaggleError(_explain(exc, "")) from None
    return client


def _within(seconds: float, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """fn(*args) with an overall deadline: per-read timeouts alone never end a server that drips a
    byte at a time, or the client's own retries of a stalled upload. The call runs in a daemon
    thread; when the deadline passes, NoAnswer (the thread is abandoned, the command goes on)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            with _deadlines():
                outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001  (handed to the caller's thread as it is)
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="kaggle-call", daemon=True)
    with contextlib.redirect_stdout(
        io.StringIO()
    ):  # the client's prints; in this thread, so stdout is ours again after
        worker.start()
        worker.join(seconds)
    if worker.is_alive():
        raise NoAnswer(f"Kaggle gave no complete answer within {seconds:g}s (FKAGGLE_KAGGLE_DEADLINE)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _call(slug: str, fn: Any, *args: Any, retry_on: frozenset[int] = RETRY_STATUS, **kwargs: Any) -> Any:
    """One client call with timeouts and an overall deadline; answers with a status in `retry_on`
    retried with backoff (Retry-After honoured up to a cap). A call that creates something
    retries only 429 (a refusal before any work), never a 5xx (it may have acted)."""
    retries = int(_number("FKAGGLE_KAGGLE_RETRIES", "3", whole=True)) if retry_on else 0
    wait, cap = _number("FKAGGLE_KAGGLE_BACKOFF", "2"), _number("FKAGGLE_KAGGLE_MAX_WAIT", "120")
    deadline = _number("FKAGGLE_KAGGLE_DEADLINE", "300")
    for attempt in range(retries + 1):
        try:
            return _within(deadline, fn, *args, **kwargs)
        except SystemExit:
            raise FkaggleError("Kaggle client exited (credentials?)") from None
        except FkaggleError:
            raise
        except Exception as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status not in retry_on or attempt == retries:
                raise _failure(exc, slug) from None
            delay = min(cap, _retry_after(exc) or wait * 2**attempt)
            log.warning(f"Kaggle answered HTTP {status}; retrying in {delay:.0f}s ({attempt + 1}/{retries})")
            time.sleep(delay)
    raise AssertionError("unreachable")


def _retry_after(exc: BaseException) -> float | None:
    value = getattr(getattr(exc, "response", None), "headers", {}).get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: use the backoff


def _failure(exc: BaseException, slug: str) -> FkaggleError:
    """A definite refusal (an HTTP status) or no usable answer (which may still have taken effect)."""
    import requests

    if getattr(getattr(exc, "response", None), "status_code", None) is not None:
        return FkaggleError(_explain(exc, slug))
    if isinstance(exc, requests.exceptions.ConnectionError) and not isinstance(exc, requests.exceptions.ReadTimeout):
        return FkaggleError(_explain(exc, slug))  # never reached Kaggle
    if isinstance(exc, requests.exceptions.Timeout):
        return NoAnswer(f"Kaggle did not answer within {timeouts()[1]:.0f}s (FKAGGLE_KAGGLE_TIMEOUT)")
    return NoAnswer(f"Kaggle's reply could not be read ({type(exc).__name__})")


def submission_limits(slug: str, client: Any | None = None) -> dict[str, Any]:
    client = client or api()
    lim = _call(slug, client.competition_get_submission_limits, slug)
    return {
        "num_today": int(getattr(lim, "num_today", 0) or 0),
        "num_allowed_now": int(getattr(lim, "num_allowed_now", 0) or 0),
        "limited_by_total": bool(getattr(lim, "limited_by_total", False)),
    }


def require_quota(slug: str, client: Any) -> dict[str, Any]:
    """Kaggle's submission limits; refuses when none are left."""
    limits = submission_limits(slug, client)
    if limits["num_allowed_now"] <= 0 and (limits["num_today"] > 0 or limits["limited_by_total"]):
        scope = "in total" if limits["limited_by_total"] else "today"
        raise FkaggleError(
            f"no submissions left {scope} for {slug!r} ({limits['num_today']} made today); "
            "try again after the daily reset"
        )
    return limits


def upload(path: str | Path, message: str, slug: str, client: Any) -> dict[str, Any]:
    """Upload one file, then create the submission; Kaggle's reply as a dict. The upload steps may
    be retried (nothing counts until the create call); the create call never is: a 5xx, timeout
    or garbled reply there may have counted, so it is NoAnswer. FkaggleError: refused, nothing
    was submitted."""
    from kaggle.api.kaggle_api_extended import ResumableUploadResult
    from kagglesdk.competitions.types.competition_api_service import (
        ApiCreateSubmissionRequest,
        ApiStartSubmissionUploadRequest,
    )

    path = Path(path)

    def start() -> Any:
        request = ApiStartSubmissionUploadRequest()
        request.competition_name, request.file_name = slug, path.name
        request.content_length, request.last_modified_epoch_seconds = path.stat().st_size, int(path.stat().st_mtime)
        with client.build_kaggle_client() as kaggle:
            return kaggle.competitions.competition_api_client.start_submission_upload(request)

    def create(token: str) -> Any:
        request = ApiCreateSubmissionRequest()
        request.competition_name, request.blob_file_tokens, request.submission_description = slug, token, message
        with client.build_kaggle_client() as kaggle:
            return kaggle.competitions.competition_api_client.create_submission(request)

    try:
        started = _call(slug, start)
        status = _call(
            slug, client.upload_complete, str(path), started.create_url, True, retry_on=frozenset()
        )  # it retries itself
    except NoAnswer as exc:  # the create call was never made: nothing can have counted
        raise FkaggleError(f"upload did not finish ({exc}); nothing was submitted", path) from None
    if status != ResumableUploadResult.COMPLETE:
        raise FkaggleError("upload failed: Kaggle's storage did not take the file; nothing was submitted", path)
    try:
        resp = _call(slug, create, started.token, retry_on=frozenset({429}))
    except FkaggleError as exc:
        if isinstance(exc, NoAnswer) or re.search(r"HTTP 5\d\d", str(exc)):
            raise NoAnswer(f"{exc} after the file was uploaded") from None
        raise
    msg = str(getattr(resp, "message", "") or "")
    ref = int(getattr(resp, "ref", 0) or 0)
    if msg.startswith(UPLOAD_FAILED) or ref == 0:
        raise FkaggleError(
            f"upload failed: Kaggle replied {msg or 'nothing'!r} (ref {ref}); nothing was submitted", path
        )
    return {"ref": ref, "message": msg}


def list_submissions(
    slug: str, client: Any | None = None, page_size: int = 100, max_pages: int = 100
) -> list[dict[str, Any]]:
    """Every submission of the competition (all pages; the client's own call returns only the first)."""
    from kagglesdk.competitions.types.competition_api_service import ApiListSubmissionsRequest

    client = client or api()
    out: list[dict[str, Any]] = []
    token = ""
    for _ in range(max_pages):
        request = ApiListSubmissionsRequest()
        request.competition_name, request.page_size, request.page_token = slug, page_size, token

        def page(request: Any = request) -> Any:
            with client.build_kaggle_client() as kaggle:
                return kaggle.competitions.competition_api_client.list_submissions(request)

        reply = _call(slug, page)
        out += [_submission(s) for s in (reply.submissions or []) if s is not None]
        token = reply.next_page_token or ""
        if not token:
            break
    return out


def _submission(s: Any) -> dict[str, Any]:
    return {
        "ref": int(getattr(s, "ref", 0) or 0),
        "file": getattr(s, "file_name", None),
        "description": getattr(s, "description", None),
        "status": str(getattr(s, "status", "")).split(".")[-1].lower(),
        "public_score": csvfile.optional_float(getattr(s, "public_score", None)),
        "private_score": csvfile.optional_float(getattr(s, "private_score", None)),
        "date": str(getattr(s, "date", "") or ""),
        "team": getattr(s, "team_name", None),
    }


def download_files(slug: str, folder: Path, force: bool = False, client: Any | None = None) -> Path:
    """All of a competition's files as the zip Kaggle serves (`folder/SLUG.zip`), through the
    client's own download: progress bar on stderr, resumed with Range where the server allows."""
    client = client or api()
    folder.mkdir(parents=True, exist_ok=True)
    _call(
        slug, client.competition_download_files, slug, path=str(folder), force=force, quiet=not sys.stderr.isatty()
    )  # its bar: stderr, terminals only
    target = folder / f"{slug}.zip"
    if not target.is_file():
        found = sorted(p.name for p in folder.iterdir())
        raise FkaggleError(f"Kaggle's download left no {target.name} (found: {', '.join(found) or 'nothing'})", folder)
    return target


def leaderboard(slug: str, top: int = 20, client: Any | None = None) -> list[dict[str, Any]]:
    """The top `top` rows of the public leaderboard, the user's own team marked (`mine`); when
    the user's team is further down in what Kaggle sent, its row follows the top."""
    client = client or api()
    sent = _call(slug, client.competition_leaderboard_view, slug, page_size=top) or []
    rows = [
        {
            "rank": i + 1,
            "team": getattr(r, "team_name", None),
            "score": getattr(r, "score", None),
            "date": str(getattr(r, "submission_date", "") or ""),
        }
        for i, r in enumerate(sent)
        if r is not None
    ]
    teams = own_teams(slug, client)
    for r in rows:
        r["mine"] = r["team"] in teams
    return rows[:top] + [r for r in rows[top:] if r["mine"]][:1]


def own_teams(slug: str, client: Any) -> set[str]:
    """The names the user's team goes by: the team named on their submissions, else the username."""
    names = {str(n) for n in (client.get_config_value("username"),) if n}
    try:
        reply = list_submissions(slug, client, page_size=20, max_pages=1)
    except FkaggleError:
        return names  # the leaderboard is still worth showing unmarked
    return names | {s["team"] for s in reply if s.get("team")}
