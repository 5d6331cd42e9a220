"""The notebook user's loop (issue 51): `fk.predict` on arrays agrees with `fkaggle predict` on a
file, and `fk.FoldClassifier` honours scikit-learn's estimator contract, on the real data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli

import fmnist_kaggle as fk
from fmnist_kaggle import metrics


@pytest.fixture(scope="module")
def slice_(fmnist):
    return (fmnist["x_train"][:3000], fmnist["y_train"][:3000], fmnist["x_test"], fmnist["y_test"])


def test_fk_predict_on_the_official_test_images_matches_fkaggle_predict(tmp_path, slice_):
    from conftest import write_csv

    X, y, X_test, y_test = slice_
    train = write_csv(tmp_path / "train.csv", X, y)
    test = write_csv(tmp_path / "test.csv", X_test, y_test)
    args = ["--train", str(train), "--test", str(test), "--model", "lenet5", "--folds", "2", "--epochs", "1"]
    assert run_cli("fold-train", *args, "--run", "r", "--no-progress", cwd=tmp_path).returncode == 0
    official = tmp_path / "official_test.npy"
    np.save(official, X_test)
    res = run_cli("predict", "r", "--test", str(official), "--name", "p", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    cli = metrics.softmax(np.load(tmp_path / "oof/p/test_logits.npy"))
    pred = fk.predict("r", X_test, workdir=tmp_path)
    np.testing.assert_allclose(pred.proba, cli, atol=1e-5)
    floats = fk.predict("r", X_test.reshape(len(X_test), 784) / 255.0, workdir=tmp_path)  # either layout and scale
    np.testing.assert_allclose(floats.proba, cli, atol=1e-5)
    assert pred.classes == tuple(range(10)) and np.array_equal(pred.labels, cli.argmax(1))
    for bad, said in (
        (np.zeros((4, 27, 27)), "expected 784"),
        (np.full((4, 28, 28), np.nan), "NaN"),
        (np.full((4, 28, 28), 300.0), "above 255"),
    ):
        with pytest.raises(fk.DataError, match=said):
            fk.predict("r", bad, workdir=tmp_path)


def test_fold_classifier_follows_the_scikit_learn_contract(tmp_path, slice_):
    from sklearn.base import clone

    X, y, X_test, y_test = slice_
    words = np.array(["tee", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"])
    clf = fk.FoldClassifier(recipe="fast", folds=2, epochs=1, workdir=tmp_path)
    twin = clone(clf)
    assert twin.get_params() == clf.get_params() and twin is not clf
    clf.fit(X, words[y])  # labels as the user has them: words
    assert set(clf.classes_) == set(words) and 0.5 < clf.cv_ < 1
    proba = clf.predict_proba(X_test[:500])
    assert proba.shape == (500, 10) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    by_hand = float((clf.predict(X_test[:500]) == words[y_test[:500]]).mean())
    assert clf.score(X_test[:500], words[y_test[:500]]) == pytest.approx(by_hand)
    listed = {r["run"] for r in json.loads(run_cli("runs", "--json", cwd=tmp_path).stdout)}
    assert clf.run_ in listed  # a normal run folder: blend it, submit it
    assert clone(clf).set_params(epochs=2).get_params()["epochs"] == 2 and clf.get_params()["epochs"] == 1
