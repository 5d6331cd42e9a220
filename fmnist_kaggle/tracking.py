"""MLflow tracking: fkaggle's runs, blends and submissions mirrored into an MLflow store.

Optional (`pip install 'fmnist_kaggle[track]'`). Turned on by `--track [URI]`, or by
`FKAGGLE_TRACKING_URI` / `MLFLOW_TRACKING_URI`; the default store is the workspace's
`mlflow.db` (what `mlflow ui` opens there). The workspace stays the source of truth: every call
here *syncs* what is on disk (find-or-create by tags, log what the store lacks), so a resumed
command continues its MLflow run instead of starting another, and one that could not reach the
store fills the gap next time.

Tracking never breaks the work: every call is guarded; the first failure (server down, slow,
refusing) costs one warning and turns tracking off for the rest of the command. Each HTTP request
is bounded (`MLFLOW_HTTP_REQUEST_TIMEOUT`/`MAX_RETRIES` default to 10 s and 1 retry here).

"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmnist_kaggle.errors import FkaggleError

log = logging.getLogger(__name__)

INSTALL_HINT = "MLflow is not installed: pip install 'fmnist_kaggle[track]' (or pip install mlflow)"
ENV_URIS = ("FKAGGLE_TRACKING_URI", "MLFLOW_TRACKING_URI")
# Defaults a user's environment overrides: bounded requests; stdout keeps only fkaggle's results
# (MLflow prints run URLs there); no usage telemetry sent from a competitor's machine.
MLFLOW_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}
TAG = "fkaggle."  # prefix of the tags that find a store's runs again


@dataclass
class _State:
    uri: str | None = None  # None: off
    artifact_root: str | None = None  # for experiments created in a local store
    client: Any = None
    experiments: dict[str, str] = field(default_factory=dict)
    failed: bool = False


_state = _State()


def enable(uri: str | None, default_db: Path, default_artifacts: Path) -> str:
    """Turn tracking on for this process: `uri`, else the environment's, else the workspace's
    SQLite store. Refuses (FkaggleError) when MLflow is missing."""
    for key, value in MLFLOW_DEFAULTS.items():  # before the import: some are read at import time
        os.environ.setdefault(key, value)
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise FkaggleError(INSTALL_HINT) from None
    chosen = (
        uri or next((os.environ[k] for k in ENV_URIS if os.environ.get(k)), None) or f"sqlite:///{default_db.resolve()}"
    )
    local = chosen.startswith("sqlite:") or "://" not in chosen
    _state.__init__(uri=chosen, artifact_root=str(default_artifacts.resolve()) if local else None)
    return chosen


def enable_from_environment(default_db: Path, default_artifacts: Path) -> None:
    """Tracking on when the environment names a store (no --track given)."""
    if _state.uri is None and any(os.environ.get(k) for k in ENV_URIS):
        try:
            enable(None, default_db, default_artifacts)
        except FkaggleError as exc:
            log.warning(f"{exc}; not tracking")


def disable() -> None:
    _state.__init__()


def active() -> bool:
    return _state.uri is not None and not _state.failed


def _guarded(func: Callable[..., Any]) -> Callable[..., Any]:
    """No-op when off; any failure is one warning and tracking off for the rest of the command."""

    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> Any:
        if not active():
            return None
        try:
            return func(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001  (the store's problem must never become the training's)
            _state.failed = True
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            log.warning(
                f"tracking to {_state.uri} failed ({first}); the work goes on untracked "
                "(re-run the command with --track to sync it)"
            )
            return None

    return call


def _client() -> Any:
    if _state.client is None:
        from mlflow.tracking import MlflowClient

        _state.client = MlflowClient(tracking_uri=_state.uri)
    return _state.client


def _experiment(name: str) -> str:
    if name not in _state.experiments:
        client = _client()
        exp = client.get_experiment_by_name(name)
        if exp is None:
            where = None if _state.artifact_root is None else Path(_state.artifact_root, name).as_uri()
            exp_id = client.create_experiment(name, artifact_location=where)
        else:
            exp_id = exp.experiment_id
        _state.experiments[name] = exp_id
    return _state.experiments[name]


def fingerprint(obj: Any) -> str:
    """A short stable key for what makes two fkaggle objects the same (an identity, a file hash)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _find(exp_id: str, tags: dict[str, str], parent: str | None = None) -> list[Any]:
    terms = [f"tags.`{k}` = '{v}'" for k, v in tags.items()] + (
        [f"tags.`mlflow.parentRunId` = '{parent}'"] if parent else []
    )
    return _client().search_runs([exp_id], filter_string=" and ".join(terms), max_results=1000)


def _open(exp_id: str, name: str, tags: dict[str, str], parent: str | None = None) -> Any:
    """The store's run with these tags (resumed if it was stopped), else a new one."""
    client = _client()
    found = _find(exp_id, tags, parent)
    if found:
        run = found[0]
        if run.info.status != "RUNNING":  # a command that stopped early left it KILLED: this one continues it
            client.update_run(run.info.run_id, status="RUNNING")
        return run
    extra = {"mlflow.parentRunId": parent} if parent else {}
    return client.create_run(exp_id, run_name=name, tags={**tags, **extra})


def _params(flat: dict[str, Any], logged: dict[str, str]) -> list[Any]:
    from mlflow.entities import Param

    return [Param(k, _text(v)[:6000]) for k, v in flat.items() if k not in logged]


def _text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, default=str)


def _log(
    run_id: str,
    metrics: Iterable[tuple[str, float, int]] = (),
    params: dict[str, Any] | None = None,
    logged: dict[str, str] | None = None,
    tags: dict[str, Any] | None = None,
) -> None:
    from mlflow.entities import Metric, RunTag

    now = int(time.time() * 1000)
    ms = [Metric(k, float(v), now, int(step)) for k, v, step in metrics if v is not None]
    ps = _params(params or {}, logged or {})
    ts = [RunTag(k, _text(v)) for k, v in (tags or {}).items()]
    batches = max(-(-len(ms) // 1000), -(-len(ps) // 100), -(-len(ts) // 100), 1)  # the REST API's limits per batch
    for i in range(batches):
        _client().log_batch(
            run_id,
            metrics=ms[i * 1000 : (i + 1) * 1000],
            params=ps[i * 100 : (i + 1) * 100],
            tags=ts[i * 100 : (i + 1) * 100],
        )


@dataclass(frozen=True)
class UnitLog:
    """One (fold, seed) unit as it finished: its epochs and its summary."""

    fold: int
    seed: int
    history: list[dict[str, Any]]
    summary: dict[str, Any]


EPOCH_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "images_per_s")


@_guarded
def sync_run(
    experiment: str,
    name: str,
    key: str,
    params: dict[str, Any],
    tags: dict[str, Any],
    units: list[UnitLog],
    results: list[tuple[str, float, int]] | None,
    artifacts: list[Path],
    seeds: int,
    ended: bool = False,
) -> str | None:
    """Mirror an fkaggle run: one MLflow run (params, tags), a nested run per (fold, seed) with its
    per-epoch metrics, and once assembled its CV metrics and artifacts. Idempotent. `ended`: the
    command is done with an incomplete run (KILLED until a later command finishes it)."""
    exp_id = _experiment(experiment)
    ids = {TAG + "kind": "run", TAG + "run": name, TAG + "key": key}
    parent = _open(exp_id, name, ids)
    pid = parent.info.run_id
    _log(pid, params=params, logged=parent.data.params, tags=tags if not parent.data.tags.get(TAG + "model") else {})
    children = {
        (c.data.tags.get(TAG + "fold"), c.data.tags.get(TAG + "seed")): c
        for c in _find(exp_id, {TAG + "kind": "unit"}, parent=pid)
    }
    for u in units:
        child = children.get((str(u.fold), str(u.seed)))
        if child is not None and child.info.status == "FINISHED":
            continue  # logged by an earlier command
        label = f"fold {u.fold}" + (f" seed {u.seed}" if seeds > 1 else "")
        cid = (
            child.info.run_id
            if child is not None
            else _client()
            .create_run(
                exp_id,
                run_name=f"{name} {label}",
                tags={
                    TAG + "kind": "unit",
                    TAG + "fold": str(u.fold),
                    TAG + "seed": str(u.seed),
                    "mlflow.parentRunId": pid,
                },
            )
            .info.run_id
        )
        epochs = [(k, _num(r.get(k)), int(r["epoch"])) for r in u.history for k in EPOCH_METRICS]
        best = u.summary.get("best") or {}
        done = [
            ("best_epoch", u.summary.get("best_epoch"), 0),
            ("seconds", u.summary.get("seconds"), 0),
            *((f"best_{k}", _num(v), 0) for k, v in best.items()),
        ]
        _log(
            cid,
            metrics=[m for m in epochs + done if m[1] is not None],
            tags={TAG + "host": u.summary.get("host", ""), TAG + "executor": u.summary.get("executor", "")},
        )
        _client().set_terminated(cid, "FINISHED")
    if results is None:
        if ended:
            _client().set_terminated(pid, "KILLED")
        return pid
    _log(pid, metrics=results)
    _finish(pid, artifacts)
    return pid


def _finish(run_id: str, artifacts: list[Path]) -> None:
    """Upload the files the run lacks (by name), then mark it FINISHED."""
    logged = {Path(a.path).name for a in _client().list_artifacts(run_id)}
    for path in artifacts:
        if path.is_file() and path.name not in logged:
            _client().log_artifact(run_id, str(path))
    _client().set_terminated(run_id, "FINISHED")


@_guarded
def sync_blend(
    experiment: str,
    name: str,
    sha256: str,
    params: dict[str, Any],
    results: dict[str, float],
    inputs: list[str],
    artifacts: list[Path],
) -> str | None:
    """A blend (or single-run submission) as an MLflow run keyed by its CSV's SHA-256."""
    exp_id = _experiment(experiment)
    run = _open(exp_id, name, {TAG + "kind": "submission", TAG + "sha256": sha256})
    rid = run.info.run_id
    _log(
        rid,
        metrics=[(k, v, 0) for k, v in results.items()],
        params=params,
        logged=run.data.params,
        tags={TAG + "submission": name, TAG + "inputs": ",".join(inputs)},
    )
    _finish(rid, artifacts)
    return rid


@_guarded
def log_upload(
    experiment: str, file: str, sha256: str, ref: Any, message: str, scores: dict[str, float] | None = None
) -> str | None:
    """An upload (and, once Kaggle has scored it, its public/private scores) on the run that made
    the file, found by the file's SHA-256 (a run is opened for a file made elsewhere)."""
    exp_id = _experiment(experiment)
    run = _open(exp_id, file, {TAG + "kind": "submission", TAG + "sha256": sha256})
    rid = run.info.run_id
    tags = {TAG + "kaggle_ref": ref, TAG + "kaggle_message": message} if ref not in (None, "") else {}
    _log(rid, metrics=[(k, v, 0) for k, v in (scores or {}).items() if v is not None], tags=tags)
    if run.info.status == "RUNNING":
        _client().set_terminated(rid, "FINISHED")
    return rid


def _num(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as MLflow params (`model_kwargs.width`)."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out
