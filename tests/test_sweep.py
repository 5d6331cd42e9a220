"""`fkaggle sweep`: a 2x2 CV grid to completion, resume, table/plot/best config, retrain from it."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import run_cli, write_csv

from fmnist_kaggle.data.competition import Competition
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.runs.executors.local import LocalExecutor
from fmnist_kaggle.search.sweep import parse_grid, parse_ranges, random_trials, run_sweep
from fmnist_kaggle.training.config import build_config, load_toml


@pytest.fixture()
def comp(tmp_path, small) -> Competition:
    train = write_csv(tmp_path / "train.csv", small["x_train"], small["y_train"])
    test = write_csv(tmp_path / "test.csv", small["x_test"], small["y_test"])
    return Competition(name="tiny", train=train, test=test)


BASE = dict(
    model="seed000_bncnn", folds=2, epochs=1, batch_size=64, optimizer="adam", schedule="constant", eval_batch_size=256
)


class CountingExecutor(LocalExecutor):
    """The in-process executor, recording the runs of the units it trains; Ctrl-C after `stop_after` units."""

    def __init__(self, stop_after: int | None = None) -> None:
        super().__init__(progress=False)
        self.stop_after, self.trained = stop_after, []

    def next_done(self, timeout=None):
        if len(self.trained) == self.stop_after:
            raise KeyboardInterrupt
        unit, result = super().next_done(timeout)
        self.trained.append(unit.run)
        return unit, result


@pytest.mark.slow
def test_grid_runs_resumes_and_writes_table_plot_best_config(tmp_path, comp, caplog):
    base = build_config(**BASE)
    grid = parse_grid(["dropout3=0,0.5", "lr=1e-3,3e-3"])
    with pytest.raises(KeyboardInterrupt):
        run_sweep(comp, base, "g", ["seed000_bncnn"], grid, workdir=tmp_path, executor=CountingExecutor(stop_after=5))
    rows = list(csv.DictReader((tmp_path / "oof/sweeps/g.csv").open()))
    assert len(rows) == 2  # two trials (2 folds each) finished before the kill, and one unit of the third

    caplog.set_level("INFO", "fmnist_kaggle")
    ex = CountingExecutor()
    result = run_sweep(comp, base, "g", ["seed000_bncnn"], grid, workdir=tmp_path, executor=ex)
    assert (
        caplog.text.count("done already, skipped") == 2 and len(set(ex.trained)) == 2 and len(ex.trained) == 3
    )  # only what was missing ran
    rows = result["rows"]
    assert len(rows) == 4 and {(r["dropout3"], r["lr"]) for r in rows} == {
        ("0", "0.001"),
        ("0", "0.003"),
        ("0.5", "0.001"),
        ("0.5", "0.003"),
    }
    accs = [float(r["cv_acc"]) for r in rows]
    assert accs == sorted(accs, reverse=True)
    for r in rows:
        assert float(r["params"]) == 315_148 and float(r["seconds"]) > 0 and r["cv_acc_std"] != ""
    sweeps = tmp_path / "oof/sweeps"
    assert (sweeps / "g.png").stat().st_size > 5_000
    md = (sweeps / "g.md").read_text().splitlines()
    assert md[0].startswith("| model | dropout3 | lr | cv_acc") and len(md) == 6
    best = load_toml(sweeps / "g_best.toml")
    assert best["model_kwargs"]["dropout3"] == float(rows[0]["dropout3"]) and best["lr"] == float(rows[0]["lr"])
    # every trial shares the folds, so trials can be blended
    fps = {
        json.loads((tmp_path / "oof" / r["run"] / "manifest.json").read_text())["data"]["folds_fingerprint"]
        for r in rows
    }
    assert len(fps) == 1

    # the best config re-trains through fold-train --config
    res = run_cli(
        "fold-train",
        "--config",
        str(sweeps / "g_best.toml"),
        "--train",
        str(comp.train),
        "--test",
        str(comp.test),
        "--run",
        "best",
        "--workdir",
        str(tmp_path),
        "--no-progress",
        "--json",
    )
    assert res.returncode == 0, res.stderr
    man = json.loads((tmp_path / "oof/best/manifest.json").read_text())
    assert man["config"]["model_kwargs"]["dropout3"] == best["model_kwargs"]["dropout3"] and man["complete"]


def test_model_comparison_and_activation_optimizer_knobs_via_cli(tmp_path, comp):
    res = run_cli(
        "sweep",
        "--model",
        "lenet5,cnn4",
        "--grid",
        "act=relu,tanh",
        "--grid",
        "optimizer=adam,sgd",
        "--folds",
        "2",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--schedule",
        "constant",
        "--train",
        str(comp.train),
        "--test",
        str(comp.test),
        "--name",
        "arch",
        "--workdir",
        str(tmp_path),
        "--no-progress",
        "--json",
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert len(out["rows"]) == 8 and {r["model"] for r in out["rows"]} == {"lenet5", "cnn4"}
    assert {r["act"] for r in out["rows"]} == {"relu", "tanh"} and {r["optimizer"] for r in out["rows"]} == {
        "adam",
        "sgd",
    }


def test_random_search_and_bad_specs():
    trials = random_trials(
        ["lenet5"], {"act": ["relu", "tanh"]}, parse_ranges(["lr=1e-4:1e-2:log", "epochs=1:3:int"]), 6, seed=0
    )
    assert len(trials) == 6
    assert all(1e-4 <= p["lr"] <= 1e-2 and p["epochs"] in (1, 2, 3) and p["act"] in ("relu", "tanh") for _, p in trials)
    assert trials == random_trials(
        ["lenet5"], {"act": ["relu", "tanh"]}, parse_ranges(["lr=1e-4:1e-2:log", "epochs=1:3:int"]), 6, seed=0
    )
    with pytest.raises(FkaggleError, match="--grid expects"):
        parse_grid(["lr"])
    with pytest.raises(FkaggleError, match="LO < HI"):
        parse_ranges(["lr=1:0.1"])


@pytest.mark.slow
@pytest.mark.timing
def test_a_sweep_estimates_its_whole_time_before_training_and_warns_of_a_gpu_recipe_on_a_cpu(tmp_path):
    """All trials' time is measured here (once per model setup) and printed before the first
    trial; the sweep is stopped once it has said so (it would train for hours)."""
    from conftest import stderr_until, synthetic_images

    x, y = synthetic_images(100)
    args = [
        "sweep",
        "--train",
        str(write_csv(tmp_path / "train.csv", x, y)),
        "--recipe",
        "strong",
        "--batch-size",
        "64",
        "--epochs",
        "2000",
        "--grid",
        "lr=0.1,0.2",
        "--name",
        "long",
        "--no-progress",
    ]
    lines = stderr_until(args, tmp_path, "warning: sweep long would train")
    text = "".join(lines)
    assert any(
        "sweep long: estimated" in ln and "for 2 run(s) here" in ln and "img/s training" in ln for ln in lines
    ), text
    assert "recipe strong is tuned for a GPU; use --recipe cpu or fast or fast-aug (made for CPUs)" in text, text
    assert not list(tmp_path.glob("oof/*/fold_0/metrics.json"))  # said before any fold finished
