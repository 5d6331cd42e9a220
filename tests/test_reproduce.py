"""`fkaggle reproduce`: the reports' tables as data, and one report re-run end to end on a tiny budget."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import run_cli, write_csv

from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.models import create_model
from fmnist_kaggle.search.reproduce import base_config, experiment_trials, list_reports, load_spec, published_for
from fmnist_kaggle.training.config import FIELDS


@pytest.mark.parametrize("report", ["report000", "report001", "report002", "report003", "report004"])
def test_every_published_number_belongs_to_exactly_one_trial_we_train(report):
    spec = load_spec(report)
    best = {}
    for exp in spec["experiment"]:
        trials = experiment_trials(exp, "full", best)
        best[exp["name"]] = trials[0]
        for model, params, _ in trials:  # every model and keyword exists, every config key is a field
            kwargs = {k: v for k, v in params.items() if k not in FIELDS}
            create_model(model, **kwargs)
        assert set(exp.get("set", {})) <= set(FIELDS) and set(exp.get("quick", {}).get("set", {})) <= set(FIELDS)
        for row in exp["published"]:
            hits = [t for t in trials if published_for(exp, t[0], t[2]) is row]
            assert len(hits) >= 1, (report, exp["name"], row)
            assert len(hits) == 1 or not set(row) - {"value", "classes"}, (report, exp["name"], row)
            assert 0.5 < row["value"] < 1.0
        quick = experiment_trials(exp, "quick", best)  # the quick budget trains the same rows, maybe shorter
        assert [r for _, _, r in quick] == [r for _, _, r in trials]


def test_quick_budget_keeps_the_report_names_of_shrunk_values():
    spec = load_spec("004")
    exp = next(e for e in spec["experiment"] if e["name"] == "epochs")
    quick = experiment_trials(exp, "quick", {})
    assert [(p["epochs"], r["epochs"]) for _, p, r in quick] == [(1, 10), (2, 30), (4, 50), (6, 70)]
    assert published_for(exp, "keras_model4", quick[2][2])["value"] == 0.9285
    cfg = base_config(spec, exp, "quick", None, None)
    assert (cfg.subset, cfg.folds, cfg.batch_size, cfg.optimizer) == (6000, 3, 128, "adam")
    full = base_config(load_spec("report003"), load_spec("report003")["experiment"][0], "full", None, None)
    assert (full.subset, full.folds, full.lr, full.weight_decay, full.epochs) == (0, 5, 0.004, 0.001, 10)
    later = next(e for e in load_spec("000")["experiment"] if e["name"] == "best-longer")
    assert experiment_trials(
        later, "quick", {"dropout-grid": ("seed000_bncnn", {"dropout3": 0.3}, {"dropout3": 0.3})}
    ) == [("seed000_bncnn", {"dropout3": 0.3}, {"dropout3": 0.3})]
    assert list_reports() == ["report000", "report001", "report002", "report003", "report004"]
    with pytest.raises(FkaggleError, match="unknown report 'report009'"):
        load_spec("report009")


def test_reproduce_report001_on_a_tiny_budget_puts_our_numbers_beside_the_report(tmp_path, small):
    train = write_csv(tmp_path / "train.csv", small["x_train"], small["y_train"])
    test = write_csv(tmp_path / "test.csv", small["x_test"], small["y_test"])
    args = (
        "reproduce",
        "report001",
        "--train",
        str(train),
        "--test",
        str(test),
        "--subset",
        "100",
        "--folds",
        "2",
        "--workdir",
        str(tmp_path),
    )
    res = run_cli(*args, "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    rows = out["experiments"][0]["rows"]
    assert [r["params"]["batch_size"] for r in rows] == [32, 64, 100, 256]
    assert [r["report_value"] for r in rows] == [0.8872, 0.8894, 0.8976, 0.8776]
    sweep = {
        r["run"]: r for r in csv.DictReader(open(tmp_path / "oof" / "sweeps" / f"{out['experiments'][0]['sweep']}.csv"))
    }
    for r in rows:  # our numbers are the sweep's k-fold results of each trial
        assert r["cv_acc"] == float(sweep[r["run"]]["cv_acc"]) and r["test_acc"] == float(sweep[r["run"]]["test_acc"])
        assert set(r["classes"]) == set(r["report_classes"]) and len(r["classes"]) == 10
    assert (
        out["experiments"][0]["trained"] == "ours: 4 epochs (quick budget; the report: epochs 25)"
    )  # the PNG's panel title
    md = (tmp_path / "oof" / "reproduce" / "report001-quick.md").read_text()
    assert "100-row stratified subset, 2-fold CV" in md and "epochs 4 (the report: epochs 25)" in md
    assert "../" not in md and "fmnist_kaggle/report_tables/report001.toml" in md  # a source the user has
    line = next(x for x in md.splitlines() if x.startswith("| lenet5 | 100 |"))
    assert (
        f"{rows[2]['cv_acc']:.4f}" in line and "0.8976" in line and "/ 1.00" in line
    )  # ours beside theirs, per class too
    table = list(csv.DictReader(open(out["csv"])))
    assert [float(t["report_value"]) for t in table] == [0.8872, 0.8894, 0.8976, 0.8776] and table[0][
        "report acc Trouser"
    ] == "0.96"
    assert (tmp_path / "oof" / "reproduce" / "report001-quick.png").stat().st_size > 10_000
    again = run_cli(*args, cwd=tmp_path)  # a second call resumes: nothing retrained, same table
    assert again.returncode == 0 and again.stderr.count("done already, skipped") == 4
    assert (tmp_path / "oof" / "reproduce" / "report001-quick.md").read_text() == md


def test_reproduce_refuses_unknown_reports_and_experiments(tmp_path, synth):
    bad = run_cli("reproduce", "report7", "--train", str(synth.train), cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "fkaggle: error: unknown report 'report7' (choose from report000, report001, report002, report003, report004)"
    ]
    bad = run_cli("reproduce", "004", "--experiment", "nope", "--train", str(synth.train), cwd=tmp_path)
    assert bad.returncode == 2 and "report004 has no experiment nope" in bad.stderr and not (tmp_path / "oof").exists()
