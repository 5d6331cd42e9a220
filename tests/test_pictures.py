"""The pictures the reports show: activation maps of a saved fold model (report 000) and the
out-of-fold sample-prediction grid of `fkaggle cv` (report 001), on a tiny real-data run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli, write_csv

from fmnist_kaggle.evaluate.explain import feature_maps, pick_rows
from fmnist_kaggle.evaluate.scoring import sample_predictions
from fmnist_kaggle.runs.store import load_fold_model
from fmnist_kaggle.storage.layout import Workspace

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, small):
    """A 2-fold lenet5 run on a 200-row stratified subset of the real data (shared: tests only read it)."""
    tmp_path = tmp_path_factory.mktemp("pictures")
    train = write_csv(tmp_path / "train.csv", small["x_train"], small["y_train"])
    test = write_csv(tmp_path / "test.csv", small["x_test"], small["y_test"])
    res = run_cli(
        "fold-train",
        "--model",
        "lenet5",
        "--folds",
        "2",
        "--epochs",
        "2",
        "--subset",
        "200",
        "--optimizer",
        "adam",
        "--lr",
        "3e-3",
        "--train",
        str(train),
        "--test",
        str(test),
        "--run",
        "tiny",
        "--workdir",
        str(tmp_path),
        "-q",
        cwd=tmp_path,
        env={"FKAGGLE_CACHE": str(tmp_path / "cache")},
    )
    assert res.returncode == 0, res.stderr
    return {"dir": tmp_path, "data": ["--train", str(train), "--test", str(test)], "ws": Workspace(tmp_path)}


@pytest.mark.slow
def test_explain_draws_held_out_images_of_every_class_through_the_saved_fold_model(tiny_run):
    ws, data = tiny_run["ws"], tiny_run["data"]
    res = run_cli(
        "explain", "tiny", "--fold", "1", "--images", "2", *data, "--workdir", str(ws.root), "--json", cwd=ws.root
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    rd = ws.run("tiny")
    manifest = rd.read_manifest()
    fold_of, labels = rd.array("folds", manifest), rd.array("labels", manifest)
    rows = np.array(out["rows"])
    assert (fold_of[rows] == 1).all()  # images the fold-1 model never trained on
    assert np.bincount(labels[rows], minlength=10).tolist() == [2] * 10
    assert [(x["channels"], x["size"]) for x in out["layers"]] == [(6, [28, 28]), (16, [10, 10])]  # lenet5's two convs
    png = rd.explain_png(1)
    assert out["png"] == str(png) and png.read_bytes()[:8] == PNG
    other = run_cli("explain", "tiny", "--fold", "0", *data, "--workdir", str(ws.root), "--json", cwd=ws.root)
    assert set(json.loads(other.stdout)["rows"]).isdisjoint(out["rows"]) and rd.explain_png(0).exists()


def test_feature_maps_are_the_first_convolutions_outputs_of_the_loaded_model(tiny_run):
    rd = tiny_run["ws"].run("tiny")
    manifest = rd.read_manifest()
    model = load_fold_model(rd, manifest, 0, 0)
    x = torch.rand(3, 1, 28, 28)
    maps = feature_maps(model, x, 2)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        first = convs[0](x)
        second = convs[1](model[2](model[1](first)))  # conv -> act -> avg-pool -> conv
    assert [n for n, _ in maps] == ["0", "3"]
    np.testing.assert_allclose(maps[0][1], first.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(maps[1][1], second.numpy(), rtol=1e-5, atol=1e-6)
    assert pick_rows(np.array([0, 1, 0, 1, 0]), np.array([0, 0, 1, 1, 0]), 0, 2).tolist() == [0, 4, 1]


def test_explain_refuses_other_data_and_missing_folds_in_one_line(tiny_run, tmp_path, small):
    ws, data = tiny_run["ws"], tiny_run["data"]
    other = write_csv(tmp_path / "other.csv", small["x_train"][::-1], small["y_train"][::-1])
    bad = run_cli("explain", "tiny", "--train", str(other), "--workdir", str(ws.root), cwd=ws.root)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "trained on other data" in bad.stderr
    bad = run_cli("explain", "tiny", "--fold", "2", *data, "--workdir", str(ws.root), cwd=ws.root)
    assert bad.returncode == 2 and "--fold 2: run tiny has folds 0..1" in bad.stderr
    assert not ws.run("tiny").explain_png(2).exists()


def test_sample_predictions_put_the_most_confident_mistakes_first():
    labels = np.array([0, 0, 1, 1, 2, 2])
    logits = np.array([[5, 0, 0], [1, 0, 0], [0, 0, 9], [0, 3, 0], [4, 0, 0], [0, 0, 2]], dtype=float)
    shown = sample_predictions(logits, labels, n=4).tolist()
    assert shown[:2] == [2, 4]  # mistakes: row 2 (p=0.9998 for class 2) before row 4
    assert shown[2:] == [0, 3]  # then the most confident correct row of each class in turn
    assert sample_predictions(logits, labels, n=6).tolist() == [2, 4, 0, 3, 5, 1]


def test_cv_draws_the_oof_prediction_grid_and_still_reports_without_the_images(tiny_run):
    ws, data = tiny_run["ws"], tiny_run["data"]
    res = run_cli("cv", "tiny", *data, "--workdir", str(ws.root), "--json", cwd=ws.root)
    assert res.returncode == 0, res.stderr
    rep = json.loads(res.stdout)["runs"][0]
    assert (
        rep["predictions_png"] == str(ws.predictions_png("tiny")) and ws.predictions_png("tiny").read_bytes()[:8] == PNG
    )
    ws.predictions_png("tiny").unlink()
    plain = run_cli(
        "cv", "tiny", "--workdir", str(ws.root), cwd=ws.root
    )  # no data option, no config: the run's recorded data
    assert plain.returncode == 0 and ws.predictions_png("tiny").read_bytes()[:8] == PNG, plain.stderr
    ws.predictions_png("tiny").unlink()
    train = Path(data[1])
    train.rename(train.with_suffix(".moved"))
    try:  # the images gone: the report, a warning naming the option, no grid
        gone = run_cli("cv", "tiny", "--workdir", str(ws.root), cwd=ws.root)
    finally:
        train.with_suffix(".moved").rename(train)
    assert gone.returncode == 0 and "OOF accuracy" in gone.stdout
    assert (
        "no predictions grid: run tiny was trained on" in gone.stderr
        and "--train" in gone.stderr
        and not ws.predictions_png("tiny").exists()
    )
