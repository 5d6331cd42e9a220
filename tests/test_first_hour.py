"""A newcomer's first hour (issue 43): the README's commands as written on a fresh clone, every
budget honoured on every command, the data's own class names, progress from Python, your own
model in one line, and the smaller frictions, each through the entry point the user called."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_cli, write_csv


def _fresh_clone(root: Path) -> Path:
    """A folder as a fresh clone has it: the shipped competition/ configs, nothing trained."""
    shutil.copytree(REPO / "competition", root / "competition", ignore=shutil.ignore_patterns("data"))
    (root / "competition/data").mkdir()
    return root


def _readme_block(heading: str) -> list[list[str]]:
    text = (REPO / "README.md").read_text()
    block = text[text.index(heading) :].split("```bash\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


@pytest.mark.slow  # a real budget or timeout: out of the inner loop (make test-fast)
def test_the_readme_first_competition_block_runs_as_written_on_a_fresh_clone(tmp_path, fake_kaggle, fmnist):
    root = _fresh_clone(tmp_path / "clone")
    commands = _readme_block("## Your first competition")
    assert [c[:2] for c in commands] == [
        ["fkaggle", "init"],
        ["fkaggle", "data"],
        ["fkaggle", "fold-train"],
        ["fkaggle", "blend"],
        ["fkaggle", "submit"],
    ]
    for argv in commands:
        args = argv[1:]
        if args[0] == "fold-train":  # as written it trains 15-30 min: the same command on a slice
            args += ["--subset", "1200", "--folds", "2", "--epochs", "1", "--no-progress"]
        res = run_cli(*args, cwd=root)
        assert res.returncode == 0, (argv, res.stderr)
    assert (root / "submissions/first.csv").is_file() and fake_kaggle.uploads


def test_init_with_your_own_files_works_on_a_fresh_clone_and_guards_another_competitions_config(tmp_path, small):
    root = _fresh_clone(tmp_path / "clone")
    train = write_csv(tmp_path / "train.csv", small["x_train"], small["y_train"])
    test = write_csv(tmp_path / "test.csv", small["x_test"], ids=np.arange(1, 101), id_col="Id")
    sample = tmp_path / "sample_submission.csv"
    sample.write_text("Id,Label\n" + "".join(f"{i},0\n" for i in range(1, 101)))
    res = run_cli("init", "--train", train, "--test", test, "--sample-submission", sample, cwd=root)
    assert res.returncode == 0 and "replacing the official Fashion-MNIST config" in res.stderr, res.stderr
    again = run_cli("init", "--official", cwd=root)  # now it is another competition's config: kept
    assert again.returncode == 2 and "another competition's config); pass --force" in again.stderr
    assert run_cli("init", "--official", "--force", cwd=root).returncode == 0


def test_files_given_on_the_command_line_are_named_by_their_own_labels(tmp_path, small):
    """The folder's official config names classes T-shirt/top..Ankle boot; a 5-class file labelled
    1..5 checked before `init` keeps its own names, and its counts stay with them."""
    root = _fresh_clone(tmp_path / "clone")
    keep = small["y_train"] < 5
    y = 5 - small["y_train"][keep]  # 1..5, reversed: label 5 is the old class 0
    train = write_csv(tmp_path / "five.csv", small["x_train"][keep], y)
    test = write_csv(tmp_path / "test.csv", small["x_test"], ids=np.arange(1, 101), id_col="Id")
    res = run_cli("data", "check", "--train", train, "--test", test, "--json", cwd=root)
    assert res.returncode == 0, res.stderr
    counts = json.loads(res.stdout)["train"]["class_counts"]
    assert counts == {str(v): int((y == v).sum()) for v in range(1, 6)}, counts


@pytest.mark.slow  # a real budget or timeout: out of the inner loop (make test-fast)
def test_fold_train_sizes_a_run_to_its_time_limit_or_refuses_with_the_time_it_needs(tmp_path, small):
    root = _fresh_clone(tmp_path / "clone")
    train = write_csv(tmp_path / "train.csv", small["x_train"], small["y_train"])
    test = write_csv(tmp_path / "test.csv", small["x_test"], small["y_test"])
    data = ["--train", train, "--test", test, "--recipe", "fast", "--batch-size", "32", "--folds", "2"]
    before = sorted(p.name for p in root.iterdir())
    refused = run_cli("fold-train", *data, "--epochs", "400", "--time-limit", "1s", "--no-progress", cwd=root)
    named = re.search(r"give --time-limit (\d+[sm]) or more", refused.stderr)
    assert refused.returncode == 2 and named, refused.stderr
    assert sorted(p.name for p in root.iterdir()) == before  # nothing written
    limit = named.group(1)  # the limit the refusal named is accepted, whatever this machine's speed
    res = run_cli("fold-train", *data, "--epochs", "400", "--time-limit", limit, "--no-progress", "--json", cwd=root)
    assert res.returncode == 0, res.stderr
    assert re.search(r"estimated \d+:\d\d for 2 unit\(s\) here", res.stderr), res.stderr  # it says its estimate
    sized = re.search(r"sized to (\d+) steps a unit", res.stderr)
    assert sized and int(sized.group(1)) < 400 * 6, res.stderr  # 400 epochs would take far longer
    manifest = json.loads((root / "oof" / json.loads(res.stdout)["run"] / "manifest.json").read_text())
    assert manifest["config"]["max_steps"] == int(sized.group(1)) and manifest["complete"]


def test_a_sweep_that_cannot_fit_its_time_limit_is_refused_before_it_trains(tmp_path, small):
    root = _fresh_clone(tmp_path / "clone")
    train = write_csv(tmp_path / "train.csv", small["x_train"], small["y_train"])
    args = ["sweep", "--train", train, "--model", "lenet5", "--grid", "lr=1e-3,3e-3", "--epochs", "3000"]
    res = run_cli(*args, "--folds", "2", "--time-limit", "20s", "--name", "s", cwd=root)
    assert res.returncode == 2 and "trial(s) of sweep s need about" in res.stderr, res.stderr
    assert not (root / "oof/sweeps").exists()


def test_python_progress_is_a_line_per_fold_whatever_stderr_is_and_quiet_when_off(tmp_path, synth, capfd):
    import fmnist_kaggle as fk

    cfg = fk.build_config(model="lenet5", folds=2, epochs=1, batch_size=16)
    fk.fold_train(synth, cfg, run="loud", workdir=tmp_path)  # stderr here is a pipe, not a terminal
    loud = capfd.readouterr().err
    assert "fold 0: acc" in loud and "fold 1: acc" in loud, loud
    fk.fold_train(synth, cfg, run="quiet", workdir=tmp_path, progress=False)
    assert "fold 0" not in capfd.readouterr().err


def _tiny_net(num_classes: int = 10, in_chans: int = 1, hidden: int = 16):
    import torch.nn as nn

    return nn.Sequential(nn.Flatten(), nn.Linear(in_chans * 28 * 28, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


def test_your_own_model_in_one_line_from_python_and_from_the_command_line(tmp_path, synth):
    import fmnist_kaggle as fk

    cfg = fk.build_config(folds=2, epochs=6, batch_size=16, optimizer="adam", lr=3e-3)
    run = fk.fold_train(synth, cfg, model=_tiny_net, run="mine", workdir=tmp_path, progress=False)
    assert run.cv["acc"] > 0.5 and run.manifest["model"] == "_tiny_net"
    (tmp_path / "mynets.py").write_text(
        "import torch.nn as nn\n\n"
        "def wide(num_classes=10, in_chans=1, hidden=32):\n"
        "    layers = [nn.Flatten(), nn.Linear(in_chans * 784, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)]\n"
        "    return nn.Sequential(*layers)\n"
    )
    args = ["--train", synth.train, "--test", synth.test, "--folds", "2", "--epochs", "2", "--batch-size", "16"]
    res = run_cli("fold-train", *args, "--model", "mynets:wide", "--model-arg", "hidden=8", "--json", cwd=tmp_path)
    assert res.returncode == 0 and json.loads(res.stdout)["complete"], res.stderr
    missing = run_cli("fold-train", *args, "--model", "mynets:nope", cwd=tmp_path)
    assert missing.returncode == 2 and "module 'mynets' has no 'nope'" in missing.stderr, missing.stderr


def test_the_smaller_frictions(tmp_path, small):
    listed = run_cli("models", "--timm", "resnet", "--json", cwd=tmp_path)
    assert listed.returncode == 0 and any("resnet18" in m["model"] for m in json.loads(listed.stdout)["timm"])
    ids = np.arange(1000, 1000 + len(small["x_train"]))
    train = write_csv(tmp_path / "train.csv", small["x_train"], small["y_train"], ids=ids, id_col="Id")
    test = write_csv(tmp_path / "test.csv", small["x_test"], ids=np.arange(1, 101), id_col="Id")
    drift = run_cli("data", "drift", "--train", train, "--test", test, "--rows", "200", "--json", cwd=tmp_path)
    assert drift.returncode == 0, drift.stderr
    found = json.loads(drift.stdout)
    assert found["id_column"] == "Id" and all(1000 <= i < 1000 + len(ids) for i in found["test_like_ids"])


@pytest.mark.parametrize("limit", ["20m"])
def test_the_plan_is_printed_to_four_places_in_columns_as_wide_as_their_cells(tmp_path, kaggle_csv_pair, limit):
    train, test = kaggle_csv_pair
    data = ["--train", train, "--test", test]
    res = run_cli("auto", *data, "--show-plan", "--time-limit", limit, "--json", cwd=tmp_path)
    plan = json.loads(res.stdout)
    assert all(len(str(r["expected_acc"]).split(".")[-1]) <= 4 for r in plan["purchases"] if r["expected_acc"])
    text = run_cli("auto", *data, "--show-plan", "--time-limit", limit, cwd=tmp_path).stdout.splitlines()
    header = next(i for i, line in enumerate(text) if line.startswith("run "))
    start = text[header].index("model")
    # this call measures its own speeds, so on a busy machine it may buy more or fewer rows than the
    # JSON call did: its rows are read up to the blank line that ends its table
    rows = text[header + 1 : text.index("", header)]
    assert plan["purchases"] and rows
    for row in rows:
        assert row[start:].startswith("fmnist_resnet "), row  # the model column holds its whole name
