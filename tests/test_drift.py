"""`fkaggle data drift`: adversarial validation on the real data, unshifted and visibly shifted."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli, write_csv

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_official_split_looks_alike_and_an_inverted_test_set_does_not(tmp_path, fmnist):
    x, y, xt, yt = fmnist["x_train"][:3000], fmnist["y_train"][:3000], fmnist["x_test"][:3000], fmnist["y_test"][:3000]
    train = write_csv(tmp_path / "train.csv", x, y)
    same = run_cli(
        "data",
        "drift",
        "--train",
        str(train),
        "--test",
        str(write_csv(tmp_path / "test.csv", xt, yt)),
        "--rows",
        "800",
        "--workdir",
        str(tmp_path),
        "--json",
        cwd=tmp_path,
    )
    assert same.returncode == 0, same.stderr
    res = json.loads(same.stdout)
    assert 0.4 < res["auc"] < 0.6 and res["verdict"].startswith("train and test look alike")
    assert res["train_rows"] == res["test_rows"] == 800 and len(res["test_like_rows"]) == 16
    assert res["test_like_p"] == sorted(res["test_like_p"], reverse=True)  # most test-like first
    for key in ("importance_png", "test_like_png"):
        assert open(res[key], "rb").read(8) == PNG
    inverted = write_csv(tmp_path / "inverted.csv", 255 - xt, yt)  # a visibly shifted test set
    shifted = run_cli(
        "data",
        "drift",
        "--train",
        str(train),
        "--test",
        str(inverted),
        "--rows",
        "800",
        "--workdir",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert shifted.returncode == 0, shifted.stderr
    assert "ROC AUC 0.99" in shifted.stdout or "ROC AUC 1.0000" in shifted.stdout
    assert "verdict: strong shift" in shifted.stdout


def test_drift_without_a_test_file_is_one_line(tmp_path, synth):
    bad = run_cli("data", "drift", "--train", str(synth.train), "--workdir", str(tmp_path), cwd=tmp_path)
    assert (
        bad.returncode == 2
        and bad.stderr.strip() == "fkaggle: error: drift needs a test file (--test or the competition config)"
    )
