"""Pure logic, no training: config precedence and validation, generated CLI options, the LR
schedule, workspace names, CSV appends, atomic temp files, log-loss and blend math. Seconds."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest
from sklearn.metrics import log_loss as sk_log_loss

from fmnist_kaggle import metrics
from fmnist_kaggle.cli.common import train_config
from fmnist_kaggle.cli.main import build_parser
from fmnist_kaggle.data.folds import make_folds
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.evaluate.blenders._pool import PoolBlender
from fmnist_kaggle.evaluate.blenders.stack import StackBlender
from fmnist_kaggle.storage import atomic, csvfile
from fmnist_kaggle.storage.layout import Workspace, check_name
from fmnist_kaggle.training.config import FIELDS, SEMANTIC, TrainConfig, build_config
from fmnist_kaggle.training.recipes import get_recipe

# ----------------------------------------------------------------------------- config


def test_precedence_defaults_recipe_file_flags_and_recipe_is_recorded(tmp_path):
    assert build_config().lr == FIELDS["lr"].default and build_config().recipe is None
    cpu = build_config(recipe="cpu")
    assert (cpu.lr, cpu.model, cpu.recipe) == (get_recipe("cpu").settings["lr"], "fmnist_resnet", "cpu")
    toml = tmp_path / "c.toml"
    toml.write_text('[train]\nrecipe = "cpu"\nlr = 0.05\nepochs = 7\n')
    f = build_config(config_file=toml)
    assert (f.recipe, f.lr, f.epochs, f.model_kwargs) == (
        "cpu",
        0.05,
        7,
        {"width": 16},
    )  # file beats recipe, recipe kept
    g = build_config(config_file=toml, lr=0.01, model="lenet5")
    assert (g.lr, g.epochs, g.model_kwargs) == (
        0.01,
        7,
        {},
    )  # flags beat the file; another model drops the recipe's knobs
    assert "recipe" not in SEMANTIC and "device" not in SEMANTIC and "lr" in SEMANTIC
    assert (
        build_config(recipe="cpu").semantic_hash()
        == replace(build_config(recipe="cpu"), recipe=None, device="cuda").semantic_hash()
    )


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"lr": -1.0}, "lr must be positive, got -1.0"),
        ({"optimizer": "lion"}, "optimizer must be one of adam, adamw, sgd, rmsprop, got 'lion'"),
        ({"folds": 1}, "folds must be at least 2, got 1"),
        ({"label_smoothing": 1.0}, "label_smoothing must be in [0, 1), got 1.0"),
        ({"lr": float("nan")}, "lr must be a finite number"),
        ({"epochs": "ten"}, "epochs must be a whole number, got 'ten'"),
        ({"recipe": "gpu"}, "unknown recipe 'gpu'"),
    ],
)
def test_validation_names_the_bad_value(overrides, message):
    with pytest.raises(FkaggleError) as exc:
        build_config(**overrides)
    assert message in str(exc.value)


def test_every_cli_field_is_an_option_and_reaches_the_config():
    parser = build_parser()
    ft = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "fold-train")[1]
    flags = {s for a in ft._actions for s in a.option_strings}
    for name, f in FIELDS.items():
        assert (("--" + name.replace("_", "-")) in flags) == f.metadata["cli"], name
    args = parser.parse_args(
        [
            "fold-train",
            "--weight-decay",
            "0.1",
            "--no-nesterov",
            "--seeds",
            "3,4",
            "--amp",
            "off",
            "--model-arg",
            "width=8",
            "--recipe",
            "cpu",
            "--no-compile",
        ]
    )
    cfg = train_config(args)
    assert (cfg.weight_decay, cfg.nesterov, cfg.seeds, cfg.amp, cfg.model_kwargs, cfg.recipe, cfg.compile) == (
        0.1,
        False,
        [3, 4],
        "off",
        {"width": 8},
        "cpu",
        False,
    )


def test_lr_schedule_shapes():
    from fmnist_kaggle.training.optim import lr_factor

    one = TrainConfig(schedule="onecycle")
    f = [lr_factor(one, s, 100, 10) for s in range(100)]
    assert int(np.argmax(f)) == 24 and f[24] == 1.0 and f[0] == pytest.approx(1 / 25) and f[-1] < 0.02
    assert all(a <= b for a, b in zip(f[:25], f[1:25])) and all(a >= b for a, b in zip(f[25:], f[26:]))
    cos = TrainConfig(schedule="cosine", warmup_epochs=1)
    c = [lr_factor(cos, s, 100, 10) for s in range(100)]
    assert c[9] == 1.0 and c[0] == pytest.approx(0.1) and c[-1] < 0.01
    assert lr_factor(TrainConfig(schedule="constant"), 50, 100, 10) == 1.0


# ----------------------------------------------------------------------------- workspace, files


@pytest.mark.parametrize("name", ["run1", "cpu-recipe_k5.abc123", "A"])
def test_good_names(name):
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../x", "a/b", "/abs", "-x", ".x", "x\\y", "history", "FOLDS", "x.tmp", "a b"]
)
def test_bad_names(name):
    with pytest.raises(FkaggleError):
        check_name(name)


def test_unknown_run_suggests_the_closest(tmp_path):
    for name in ("cpu-run", "lenet-run"):
        (tmp_path / "oof" / name).mkdir(parents=True)
        (tmp_path / "oof" / name / "manifest.json").write_text("{}")
    with pytest.raises(FkaggleError, match="did you mean cpu-run"):
        Workspace(tmp_path).find_run("cpu-rnu")
    assert Workspace(tmp_path).find_run("oof/cpu-run/").name == "cpu-run"


def test_csv_append_quotes_widens_and_uses_one_line_ending(tmp_path):
    path = tmp_path / "h.csv"
    csvfile.append_csv_row(path, {"a": 'say "hi", twice', "b": 1})
    csvfile.append_csv_row(path, {"a": "x", "b": 2, "c": "new"})
    rows = csvfile.read_csv_rows(path)
    assert rows == [{"a": 'say "hi", twice', "b": "1", "c": ""}, {"a": "x", "b": "2", "c": "new"}]
    assert b"\r" not in path.read_bytes()


def test_stale_temps_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    dead, live = tmp_path / ".f.txt.99999999.ab.tmp", tmp_path / f".f.txt.{os.getppid()}.cd.tmp"
    dead.write_text("x")
    live.write_text("y")
    atomic.write_text(tmp_path / "g.txt", "ok")
    assert not dead.exists() and live.exists() and (tmp_path / "g.txt").read_text() == "ok"


# ----------------------------------------------------------------------------- metrics and blend math


def test_log_loss_matches_scikit_learn():
    rng = np.random.default_rng(0)
    z, y = rng.normal(0, 3, (500, 5)), rng.integers(0, 5, 500)
    assert metrics.log_loss(z, y) == pytest.approx(sk_log_loss(y, metrics.softmax(z), labels=range(5)), rel=1e-9)
    assert np.allclose(metrics.log_softmax(z), np.log(metrics.softmax(z)))


def _runs(n: int = 600, k: int = 4, r: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    y = rng.integers(0, k, n)
    X = np.stack([s * np.eye(k)[y] + rng.normal(0, 1, (n, k)) for s in (2.0, 1.5, 0.5)][:r], axis=1)
    return X, y


@pytest.mark.parametrize("est", [PoolBlender("weighted"), PoolBlender("hillclimb"), StackBlender(temperature=True)])
def test_blenders_follow_the_estimator_protocol(est):
    from sklearn.base import clone
    from sklearn.model_selection import PredefinedSplit, cross_val_predict

    X, y = _runs()
    fitted = clone(est).fit(X, y)
    lp = fitted.predict_log_proba(X)
    assert np.allclose(np.exp(lp).sum(1), 1) and (fitted.predict(X) == lp.argmax(1)).all()
    if isinstance(est, PoolBlender):
        assert fitted.weights_.sum() == pytest.approx(1) and (fitted.weights_ >= 0).all()
        assert fitted.weights_[0] > fitted.weights_[2]  # the strong run outweighs the weak one
    # cross_val_predict over the runs' folds == fitting on k-1 folds and predicting the held-out one
    fold_of = make_folds(y, 3, 0)
    nested = cross_val_predict(est, X, y, cv=PredefinedSplit(fold_of), method="predict_log_proba")
    for f in range(3):
        manual = clone(est).fit(X[fold_of != f], y[fold_of != f]).predict_log_proba(X[fold_of == f])
        assert np.allclose(nested[fold_of == f], manual)


def test_learning_curves_of_a_one_epoch_run_show_points_on_whole_epochs(tmp_path):
    from fmnist_kaggle.plots import learning_curves, learning_figure

    rows = [
        {
            "fold": f,
            "seed": 0,
            "epoch": 1,
            "train_loss": 1.2 - f / 10,
            "val_loss": 1.0,
            "train_acc": 0.6,
            "val_acc": 0.7 + f / 100,
        }
        for f in range(3)
    ]
    fig = learning_figure(rows)
    ax_loss, ax_acc, ax_both = fig.axes
    for ax in (ax_loss, ax_acc):
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    assert all(line.get_marker() == "o" for ax in fig.axes for line in ax.get_lines())
    assert ax_both.get_xlabel() == "loss" and len(ax_both.get_lines()) == 6
    assert learning_curves(rows, tmp_path / "c.png").stat().st_size > 5_000
