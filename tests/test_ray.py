"""Scale-out on Ray's embedded instance, with real Ray and no mocks (a two-node cluster on
loopback: test_ray_cluster.py).

Every run goes through the CLI a user types. The embedded executor must produce the same
artifacts as the local one (identical logits when torch uses the same number of threads), and a
killed driver must lose no finished (fold, seed). The instance the executor would start is
started once for this module (the executor joins an instance this process already runs, as in
a notebook); the killed driver is a process of its own with its own instance.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

CLI_TINY = [
    "--model",
    "lenet5",
    "--epochs",
    "2",
    "--batch-size",
    "16",
    "--lr",
    "0.002",
    "--optimizer",
    "adam",
    "--schedule",
    "constant",
    "--no-progress",
]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # the local run uses as many torch threads as a 1-CPU Ray task


pytestmark = pytest.mark.ray


@pytest.fixture(scope="module", autouse=True)
def embedded_ray():
    """The embedded instance `--executor ray` starts (same options), once for the module."""
    import ray

    from fmnist_kaggle.runs.executors.ray import init_options

    ray.init(**init_options(None))
    yield
    ray.shutdown()


@pytest.fixture(autouse=True)
def _outside_the_repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def data_args(comp) -> list[str]:
    return ["--train", str(comp.train), "--test", str(comp.test)]


def artifacts(run: Path) -> dict[str, np.ndarray]:
    return {f: np.load(run / f) for f in ("oof_logits.npy", "test_logits.npy", "folds.npy", "labels.npy")}


def fold_metrics(run: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(run.glob("fold_*/metrics.json"))]


@pytest.mark.slow
def test_embedded_ray_run_equals_the_local_run(tmp_path, synth):
    args = ["fold-train", *data_args(synth), *CLI_TINY, "--folds", "2", "--workdir", "ws"]
    local = run_cli(*args, "--run", "local", env=ONE_THREAD)
    assert local.returncode == 0, local.stderr
    res = run_cli(*args, "--run", "onray", "--executor", "ray", "--cpus-per-task", "1", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)  # stdout stays JSON only, whatever Ray logs
    assert out["complete"] and "embedded instance on loopback: 1 node(s)" in res.stderr

    a, b = artifacts(tmp_path / "ws/oof/local"), artifacts(tmp_path / "ws/oof/onray")
    for name in a:
        assert a[name].shape == b[name].shape and np.array_equal(a[name], b[name]), name
    ma, mb = (json.loads((tmp_path / f"ws/oof/{r}/manifest.json").read_text()) for r in ("local", "onray"))
    assert ma["identity"] == mb["identity"] and sorted(ma["files"]) == sorted(mb["files"])
    assert mb["cv"] == ma["cv"] and mb["test_metrics"] == ma["test_metrics"]
    for m in fold_metrics(tmp_path / "ws/oof/onray"):  # where and how long each unit ran
        seed = m["seeds"][0]
        assert (
            seed["executor"] == "ray"
            and seed["node_ip"] == "127.0.0.2"
            and seed["unit_seconds"] >= seed["seconds"] > 0
            and len(m["nodes"]) == 1
        )
    # downstream stages cannot tell how the run was trained
    cv = run_cli("cv", "onray", "--workdir", "ws", "--json")
    assert cv.returncode == 0 and json.loads(cv.stdout)["runs"][0]["acc"] == pytest.approx(ma["cv"]["acc"])


def test_failed_units_leave_the_run_incomplete_with_one_line_each(tmp_path, synth):
    res = run_cli(
        "fold-train",
        *data_args(synth),
        *CLI_TINY,
        "--folds",
        "2",
        "--optimizer",
        "sgd",
        "--lr",
        "1e12",
        "--run",
        "nan",
        "--executor",
        "ray",
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("fkaggle: error: 2 (fold, seed) unit(s) failed")
        and "nan fold 0 seed 0" in last
        and "nan fold 1 seed 0" in last
        and "training loss is nan" in last
    )
    assert not list((tmp_path / "oof/nan").glob("fold_*/seed_0.json")) and not list(
        (tmp_path / "oof/nan").glob("fold_*/metrics.json")
    )


@pytest.mark.slow
def test_killed_driver_keeps_finished_units_and_a_rerun_completes(tmp_path, synth):
    args = [
        "fold-train",
        *data_args(synth),
        *CLI_TINY,
        "--folds",
        "4",
        "--epochs",
        "6",
        "--batch-size",
        "8",
        "--run",
        "k",
        "--executor",
        "ray",
    ]
    driver = subprocess.Popen(
        [sys.executable, "-m", "fmnist_kaggle.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    run = tmp_path / "oof/k"
    deadline = time.monotonic() + 240
    while not list(run.glob("fold_*/seed_0.json")) and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    driver.kill()  # SIGKILL: no cleanup of any kind
    driver.wait(30)
    finished = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in run.glob("fold_*/seed_0*")}
    n_done = len(list(run.glob("fold_*/seed_0.json")))
    assert 1 <= n_done < 4, driver.stderr.read().decode()

    res = run_cli(*args)
    assert res.returncode == 0, res.stderr
    assert f"{4 - n_done} (fold, seed) unit(s) to train" in res.stderr
    assert all(
        hashlib.sha256(p.read_bytes()).hexdigest() == h for p, h in finished.items()
    )  # finished work kept as it was
    status = run_cli("status", "k", "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["complete"]


def test_sweep_on_the_embedded_executor_gives_the_local_table(tmp_path, synth):
    args = [
        "sweep",
        *data_args(synth),
        *CLI_TINY,
        "--folds",
        "2",
        "--grid",
        "lr=1e-3,3e-3",
        "--grid",
        "act=relu,tanh",
        "--json",
    ]
    local = run_cli(*args, "--name", "loc", env=ONE_THREAD)
    assert local.returncode == 0, local.stderr
    onray = run_cli(*args, "--name", "ray", "--executor", "ray")
    assert onray.returncode == 0, onray.stderr
    keep = ("model", "lr", "act", "cv_acc", "cv_logloss", "val_acc", "test_acc", "epochs_trained", "params")
    table = lambda res: sorted(tuple(r[k] for k in keep) for r in json.loads(res.stdout)["rows"])  # noqa: E731
    assert len(table(local)) == 4 and table(onray) == table(local)


def test_optuna_asks_and_tells_from_the_driver_while_ray_trains_trials_at_once(tmp_path, synth):
    import optuna

    args = [
        "sweep",
        *data_args(synth),
        *CLI_TINY,
        "--folds",
        "2",
        "--optuna",
        "--range",
        "lr=1e-3:1e-2:log",
        "--name",
        "opt",
        "--executor",
        "ray",
        "--json",
    ]
    res = run_cli(*args, "--trials", "3")
    assert res.returncode == 0, res.stderr
    assert len(json.loads(res.stdout)["rows"]) == 3
    res = run_cli(*args, "--trials", "4")  # a resumed study: one more trial
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)["rows"]
    study = optuna.load_study(study_name="opt", storage=f"sqlite:///{tmp_path / 'oof/sweeps/opt.optuna.db'}")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(rows) == 4 and len(complete) == 4
    assert sorted(round(t.value, 5) for t in complete) == sorted(
        float(r["cv_acc"]) for r in rows
    )  # each tell is its trial's CV


@pytest.mark.parametrize(
    "extra,fragment",
    [
        (["--address", "127.0.0.2:1"], "--address joins a Ray cluster: it needs --executor ray"),
        (["--executor", "ray", "--cpus-per-task", "0"], "--cpus-per-task must be at least 1, got 0"),
        (["--executor", "ray", "--device", "cuda"], "the Ray cluster has no GPUs (a GPU task would wait forever)"),
    ],
)
def test_executor_options_that_cannot_work_are_refused_in_one_line(tmp_path, synth, extra, fragment):
    res = run_cli("fold-train", *data_args(synth), *CLI_TINY, "--folds", "2", "--run", "x", *extra)
    errors = [line for line in res.stderr.splitlines() if line.startswith("fkaggle: error:")]
    assert res.returncode == 2 and len(errors) == 1 and fragment in errors[0] and "Traceback" not in res.stderr, (
        res.stderr
    )


@pytest.mark.slow
@pytest.mark.timing
def test_a_deadline_cancels_the_units_still_running_on_ray(tmp_path, synth):
    """The autopilot's deadline holds across the cluster: tasks in flight are cancelled, not waited for."""
    import fmnist_kaggle as fk
    from fmnist_kaggle.runs.executors import make_executor

    cfg = fk.build_config(
        model="lenet5", folds=2, epochs=6000, batch_size=16, optimizer="adam", schedule="constant"
    )  # minutes per unit
    t0 = time.monotonic()
    with pytest.raises(fk.FkaggleError, match=r"2 \(fold, seed\) unit\(s\) stopped at the deadline"):
        fk.fold_train(
            synth, cfg, run="late", workdir=tmp_path, progress=False, executor=make_executor("ray"), deadline=t0 + 6
        )
    assert time.monotonic() - t0 < 60
    assert not list((tmp_path / "oof/late").glob("fold_*/seed_0.json"))
    assert fk.list_runs(tmp_path)[0]["folds_done"] == 0


@pytest.mark.slow
@pytest.mark.timing
def test_auto_on_the_embedded_executor_trains_runs_at_once_within_its_limit(tmp_path, kaggle_csv_pair):
    from test_auto import FIXED

    train, test = kaggle_csv_pair
    (tmp_path / "fixed.toml").write_text(FIXED)
    t0 = time.monotonic()
    res = run_cli(
        "auto",
        "--train",
        str(train),
        "--test",
        str(test),
        "--portfolio",
        "fixed.toml",
        "--time-limit",
        "90s",
        "--executor",
        "ray",
        "--no-progress",
        "--json",
    )
    wall = time.monotonic() - t0
    assert res.returncode == 0, res.stderr
    assert wall <= 90 + 4 and "embedded instance on loopback" in res.stderr and "2 unit(s) at once" in res.stderr
    out = json.loads(res.stdout)
    assert [r["status"] for r in out["leaderboard"] if r["kind"] == "run"] == ["complete", "complete"]
    for run in ("auto-a-1", "auto-b-1"):
        assert {m["seeds"][0]["executor"] for m in fold_metrics(tmp_path / "oof" / run)} == {"ray"}
    assert run_cli("validate", out["submission"], "--train", str(train), "--test", str(test)).returncode == 0
