"""`--track`: fkaggle's runs, blends and uploads in MLflow, checked against a REAL tracking server
(`mlflow server`, SQLite backend, on loopback) and read back through `MlflowClient`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import missing, run_cli, run_process, synthetic_images, write_csv

pytestmark = [pytest.mark.mlflow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(root: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    cmd = [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'store.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=open(root / "server.log", "w"), start_new_session=True
    )  # noqa: SIM115  (the server keeps it)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(uri + "/health", timeout=2) as r:
                if r.status == 200:
                    return proc, uri
        except OSError:
            time.sleep(0.5)
        if proc.poll() is not None:
            break
    _stop(proc)
    pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")


@pytest.fixture(scope="module")
def mlflow_installed() -> None:
    try:
        import mlflow  # noqa: F401
    except ImportError:
        missing("mlflow is not installed (pip install -e '.[dev,track]')")


@pytest.fixture(scope="module")
def server(tmp_path_factory, mlflow_installed):
    """One server for the module: (process, URI). The last test stops it mid-run."""
    proc, uri = _start_server(tmp_path_factory.mktemp("mlflow"))
    yield proc, uri
    _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """The whole server: `mlflow server` runs its web server as child processes of its own."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(30)


@pytest.fixture()
def data(tmp_path) -> list[str]:
    x, y = synthetic_images(60)
    xt, yt = synthetic_images(10, seed=1)
    return [
        "--train",
        str(write_csv(tmp_path / "train.csv", x, y)),
        "--test",
        str(write_csv(tmp_path / "test.csv", xt, yt)),
    ]


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def _runs(uri: str, **tags: str) -> list:
    client = _client(uri)
    exp = client.get_experiment_by_name("custom")  # the competition's name: data given as files
    terms = " and ".join(f"tags.`fkaggle.{k}` = '{v}'" for k, v in tags.items())
    return client.search_runs([exp.experiment_id], filter_string=terms) if exp else []


@pytest.mark.slow
def test_a_tracked_run_its_folds_and_its_blend_read_back_from_the_server(tmp_path, server, data):
    _, server = server
    train = [
        "fold-train",
        "--model",
        "lenet5",
        "--folds",
        "2",
        "--epochs",
        "3",
        "--batch-size",
        "32",
        "--run",
        "tracked",
        "--no-progress",
        *data,
    ]
    first = run_cli(
        *train, "--fold", "0", "--track", server, cwd=tmp_path
    )  # one shard first: the MLflow run stays open
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        "run tracked: folds missing [1] (run them, or copy their fold_K folders here and `fkaggle assemble tracked`)"
    ]  # the result only: MLflow's run links stay off stdout
    (parent,) = _runs(server, kind="run", run="tracked")
    assert parent.info.status == "KILLED"  # the command ended with the run incomplete

    rest = run_cli(*train, "--track", server, cwd=tmp_path)  # resumes: fold 1 only
    assert rest.returncode == 0, rest.stderr
    (again,) = _runs(server, kind="run", run="tracked")  # the same MLflow run continued, not a second one
    assert again.info.run_id == parent.info.run_id and again.info.status == "FINISHED"
    manifest = json.loads((tmp_path / "oof/tracked/manifest.json").read_text())
    assert (
        again.data.params["model"] == "lenet5"
        and again.data.params["epochs"] == "3"
        and again.data.params["folds"] == "2"
    )
    assert (
        again.data.tags["fkaggle.data_fingerprint"] == manifest["identity"]["data_fingerprint"]
        and again.data.tags["fkaggle.executor"] == "local"
    )
    assert again.data.metrics["cv_acc"] == pytest.approx(manifest["cv"]["acc"]) and again.data.metrics[
        "test_acc"
    ] == pytest.approx(manifest["test_metrics"]["acc"])
    client = _client(server)
    assert {a.path for a in client.list_artifacts(again.info.run_id)} >= {
        "manifest.json",
        "config.toml",
        "learning_curves.png",
        "history.csv",
    }
    folds = sorted(
        client.search_runs(
            [again.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{again.info.run_id}'"
        ),
        key=lambda r: r.data.tags["fkaggle.fold"],
    )
    assert [r.data.tags["fkaggle.fold"] for r in folds] == ["0", "1"] and all(
        r.info.status == "FINISHED" for r in folds
    )
    for fold in folds:  # per-epoch metrics with their steps, equal to the fold's history
        history = [r for r in _csv(tmp_path / f"oof/tracked/fold_{fold.data.tags['fkaggle.fold']}/history.csv")]
        logged = client.get_metric_history(fold.info.run_id, "val_acc")
        assert [(m.step, round(m.value, 6)) for m in logged] == [
            (int(h["epoch"]), round(float(h["val_acc"]), 6)) for h in history
        ]
    assert [m.step for m in client.get_metric_history(again.info.run_id, "fold_acc")] == [0, 1]

    same = run_cli(*train, "--track", server, cwd=tmp_path)  # nothing to train: nothing logged twice
    assert same.returncode == 0, same.stderr
    assert len(_runs(server, kind="run", run="tracked")) == 1 and len(_runs(server, kind="unit")) == 2

    blend = run_cli("blend", "tracked", "--name", "single", "--track", server, *data, cwd=tmp_path)
    assert blend.returncode == 0, blend.stderr
    record = json.loads((tmp_path / "submissions/single.json").read_text())
    (sub,) = _runs(server, kind="submission", sha256=record["sha256"])
    assert (
        sub.data.metrics["cv_acc"] == pytest.approx(record["cv"]["acc"])
        and sub.data.params["method"] == record["method"]
    )
    assert {a.path for a in client.list_artifacts(sub.info.run_id)} == {"single.csv", "single.json"}


@pytest.mark.slow
def test_an_upload_and_its_public_score_land_on_the_run_that_made_the_file(
    tmp_path, server, data, fake_kaggle, monkeypatch
):
    _, server = server
    # Kaggle's calls go through the (fake) proxy; the tracking server is excluded, as behind any proxy
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    kaggle_env = {**fake_kaggle.env, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    assert (
        run_cli(
            "fold-train",
            "--model",
            "lenet5",
            "--folds",
            "2",
            "--epochs",
            "1",
            "--run",
            "r",
            "--no-progress",
            *data,
            cwd=tmp_path,
        ).returncode
        == 0
    )
    assert run_cli("blend", "r", "--name", "mine", "--track", server, *data, cwd=tmp_path).returncode == 0
    sha = json.loads((tmp_path / "submissions/mine.json").read_text())["sha256"]
    slug = ["--slug", "fashion-mnist", "--track", server, *data]
    sub = run_cli("submit", "submissions/mine.csv", "-m", "tracked upload", *slug, cwd=tmp_path, env=kaggle_env)
    assert sub.returncode == 0, sub.stderr
    fake_kaggle.submissions[0].update(status="COMPLETE", publicScore="0.87500", privateScore="0.86000")
    listed = run_cli("submissions", *slug, cwd=tmp_path, env=kaggle_env)
    assert listed.returncode == 0, listed.stderr
    (run,) = _runs(server, kind="submission", sha256=sha)  # the blend's MLflow run, not a new one
    assert (
        run.data.params["runs"] == '["r"]'
        and run.data.tags["fkaggle.kaggle_ref"] == "1001"
        and run.data.tags["fkaggle.kaggle_message"] == "tracked upload"
    )
    assert run.data.metrics["public_score"] == 0.875 and run.data.metrics["private_score"] == 0.86
    history = _csv(tmp_path / "submissions/history.csv")  # the scores are kept for offline readers (report, --local)
    assert history[0]["public_score"] == "0.875" and history[0]["kaggle_status"] == "complete"


@pytest.mark.slow
def test_track_without_a_uri_writes_the_workspace_store_that_mlflow_ui_opens(tmp_path, data, mlflow_installed):
    res = run_cli(
        "fold-train",
        "--model",
        "lenet5",
        "--folds",
        "2",
        "--epochs",
        "1",
        "--run",
        "local",
        "--no-progress",
        "--track",
        *data,
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": "", "FKAGGLE_TRACKING_URI": ""},
    )
    assert res.returncode == 0, res.stderr
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("custom").experiment_id], "tags.`fkaggle.run` = 'local'")
    assert run.info.status == "FINISHED" and "cv_acc" in run.data.metrics
    assert (tmp_path / "mlartifacts/custom").is_dir() and "manifest.json" in {
        a.path for a in client.list_artifacts(run.info.run_id)
    }


def _csv(path: Path) -> list[dict]:
    import csv

    with path.open() as f:
        return list(csv.DictReader(f))


def test_the_environment_turns_tracking_on_and_a_down_server_costs_one_warning(tmp_path, data, mlflow_installed):
    dead = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    started = time.monotonic()
    res = run_cli(
        "fold-train",
        "--model",
        "lenet5",
        "--folds",
        "2",
        "--epochs",
        "1",
        "--run",
        "r",
        "--no-progress",
        *data,
        cwd=tmp_path,
        env={"FKAGGLE_TRACKING_URI": dead},
    )
    assert res.returncode == 0, res.stderr
    warnings = [line for line in res.stderr.splitlines() if "tracking to" in line]
    assert len(warnings) == 1 and dead in warnings[0] and "untracked" in warnings[0], res.stderr
    assert "Traceback" not in res.stderr and json.loads((tmp_path / "oof/r/manifest.json").read_text())["cv"]["acc"] > 0
    assert time.monotonic() - started < 120


def test_track_without_mlflow_says_how_to_install_it(tmp_path, data):
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "mlflow.py").write_text(
        "raise ImportError('No module named mlflow')\n"
    )  # as on a machine without the extra
    args = ["fold-train", "--model", "lenet5", "--folds", "2", "--epochs", "1", "--run", "r", "--track", *data]
    res = run_process(
        *args, cwd=tmp_path, env={"PYTHONPATH": f"{shadow}:{Path(__file__).resolve().parents[1]}"}
    )  # what a fresh interpreter imports
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [
        "fkaggle: error: MLflow is not installed: pip install 'fmnist_kaggle[track]' (or pip install mlflow)"
    ]
    assert not (tmp_path / "oof").exists()


@pytest.mark.slow
def test_a_server_stopped_mid_run_costs_a_warning_and_the_run_completes(tmp_path, data, server):
    """Last in this file: it stops the module's server."""
    proc, uri = server
    train = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fmnist_kaggle.cli",
            "fold-train",
            "--model",
            "lenet5",
            "--folds",
            "3",
            "--epochs",
            "4",
            "--batch-size",
            "32",
            "--run",
            "long",
            "--no-progress",
            "--track",
            uri,
            *data,
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not _runs(uri, kind="unit") and time.monotonic() < deadline and train.poll() is None:
            time.sleep(0.5)  # the first fold is in the store: the server goes away
        assert train.poll() is None, "the run ended before the server could be stopped; make it longer"
    finally:
        _stop(proc)
    _, err = train.communicate(timeout=300)
    assert train.returncode == 0, err
    failed = [line for line in err.splitlines() if "failed" in line]
    assert (
        len(failed) == 1
        and f"tracking to {uri} failed" in failed[0]
        and "untracked" in failed[0]
        and "Traceback" not in err
    ), err
    assert json.loads((tmp_path / "oof/long/manifest.json").read_text())["complete"]
