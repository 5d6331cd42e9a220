"""Honest by default (issue 35): no epoch chosen on the rows a run's CV scores unless asked (and then
marked optimistic everywhere the CV is shown), one log-loss for one fold, and the frictions a
competitor meets first, each through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import run_cli, write_csv

from fmnist_kaggle.training.config import build_config

# Adam at a constant 1e-2 on 200 rows a fold wanders: its validation loss is lowest before the
# last epoch, so an epoch chosen on those rows is not the last one
WANDERING = ["--model", "lenet5", "--epochs", "10", "--batch-size", "32", "--optimizer", "adam", "--lr", "0.01"]
WANDERING += ["--schedule", "constant", "--folds", "2", "--no-progress"]


@pytest.fixture(scope="module")
def rows(tmp_path_factory, fmnist):
    root = tmp_path_factory.mktemp("honest")
    x, y = fmnist["x_train"][:400], fmnist["y_train"][:400]
    return root, [
        "--train",
        str(write_csv(root / "train.csv", x, y)),
        "--test",
        str(write_csv(root / "test.csv", fmnist["x_test"][:50])),
    ]


def test_a_default_run_keeps_its_last_epoch_and_select_epoch_is_marked_optimistic(rows, tmp_path):
    root, data = rows
    for run, extra in (("last", []), ("chosen", ["--select-epoch"])):
        res = run_cli("fold-train", *data, *WANDERING, *extra, "--run", run, "-q", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
    from fmnist_kaggle.runs.store import load_fold_model, load_run
    from fmnist_kaggle.training.inference import predict

    last, chosen = load_run("last", tmp_path), load_run("chosen", tmp_path)
    histories = []
    for fold in range(2):
        metrics = json.loads((tmp_path / f"oof/last/fold_{fold}/metrics.json").read_text())
        assert metrics["best_epochs"] == [10]  # the sized schedule's last epoch, whatever the validation said
        held = last.fold_of == fold
        model = load_fold_model(last.dir, last.manifest, fold, 0)
        x = torch.from_numpy(np.ascontiguousarray(last_images(root)[held]))
        np.testing.assert_allclose(
            last.oof_logits[held],
            predict(model, x, build_config(**last.manifest["config"]), torch.device("cpu")),
            atol=1e-5,
        )
        histories.append(json.loads((tmp_path / f"oof/chosen/fold_{fold}/metrics.json").read_text())["best_epochs"][0])
    assert any(e < 10 for e in histories)  # --select-epoch did pick another epoch on these rows
    assert not last.optimistic and chosen.optimistic
    runs = run_cli("runs", "--json", cwd=tmp_path)
    marks = {r["run"]: r["optimistic"] for r in json.loads(runs.stdout)}
    assert marks == {"last": False, "chosen": True}
    assert "optimistic CV" in run_cli("runs", cwd=tmp_path).stdout
    cv = run_cli("cv", "chosen", "last", "--json", cwd=tmp_path)
    assert [r["optimistic"] for r in json.loads(cv.stdout)["runs"]] == [True, False], cv.stderr
    blend = run_cli("blend", "chosen", "last", "--name", "both", *data, "--json", cwd=tmp_path)
    assert (
        blend.returncode == 0
        and "chosen chose epochs on the rows its CV scores" in json.loads(blend.stdout)["optimistic"]
    )
    assert "optimistic" in blend.stderr
    run_cli("report", cwd=tmp_path)
    assert "optimistic CV" in (tmp_path / "oof/report.html").read_text()


def last_images(root):
    from fmnist_kaggle.data.images import load_images

    return load_images(root / "train.csv").images


def test_patience_without_select_epoch_is_refused_in_one_line(rows, tmp_path):
    _, data = rows
    res = run_cli("fold-train", *data, *WANDERING, "--patience", "2", "--run", "p", cwd=tmp_path)
    assert res.returncode == 2 and "it needs --select-epoch" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_the_epoch_line_and_the_fold_line_give_one_log_loss(rows, tmp_path):
    """The fold score clips probabilities like Kaggle's metric; the epoch line does the same."""
    from fmnist_kaggle import metrics
    from fmnist_kaggle.training.inference import scores

    logits = np.array([[200.0, 0.0], [0.0, 1.0]], dtype=np.float32)  # row 0 is confidently wrong: log-prob -200
    labels = np.array([1, 1])
    assert scores(logits, labels)[0] == pytest.approx(metrics.log_loss(logits, labels))
    assert scores(logits, labels)[0] < 20  # clipped at 1e-15, not -200
    root, data = rows
    res = run_cli("fold-train", *data, *WANDERING, "--run", "one", cwd=tmp_path)
    lines = [line for line in res.stderr.splitlines() if "epoch 10/10" in line or line.startswith("fold ")]
    for fold in range(2):
        epoch_loss = float(
            next(line for line in lines if f"f{fold} s0] epoch 10/10" in line).split("val ")[1].split("/")[0]
        )
        fold_loss = float(
            next(line for line in lines if line.startswith(f"fold {fold}:")).split("logloss ")[1].split()[0]
        )
        assert epoch_loss == pytest.approx(fold_loss, abs=1e-4)
