"""Honest by default (issue 35): no epoch chosen on the rows a run's CV scores unless asked (and then
marked optimistic everywhere the CV is shown), one log-loss for one fold, and the frictions a
competitor meets first, each through the CLI."""

from __future__ import annotations

import csv
import json
import tomllib

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
        chosen_epoch = json.loads((tmp_path / f"oof/chosen/fold_{fold}/metrics.json").read_text())["best_epochs"][0]
        with open(tmp_path / f"oof/chosen/fold_{fold}/history.csv") as f:
            losses = {int(r["epoch"]): float(r["val_loss"]) for r in csv.DictReader(f) if r["val_loss"]}
        histories.append((chosen_epoch, min(losses, key=lambda e: (losses[e], e))))
    # --select-epoch keeps the epoch of lowest validation loss (on any machine, bf16 or fp32, whichever it is)
    assert all(chosen == lowest for chosen, lowest in histories), histories
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


NAMES = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def test_string_labels_go_from_init_to_a_validated_submission_in_those_strings(tmp_path, fmnist):
    import pandas as pd

    rng = np.random.default_rng(0)
    rows = np.sort(
        np.concatenate([rng.choice(np.flatnonzero(fmnist["y_train"] == c), 30, replace=False) for c in range(10)])
    )
    train = pd.DataFrame(fmnist["x_train"][rows].reshape(len(rows), -1), columns=[f"pixel{i + 1}" for i in range(784)])
    train.insert(0, "label", [NAMES[c] for c in fmnist["y_train"][rows]])
    train.to_csv(tmp_path / "train.csv", index=False)
    test = pd.DataFrame(fmnist["x_test"][:40].reshape(40, -1), columns=[f"pixel{i + 1}" for i in range(784)])
    test.insert(0, "id", np.arange(1, 41))
    test.to_csv(tmp_path / "test.csv", index=False)
    pd.DataFrame({"id": np.arange(1, 41), "label": "Bag"}).to_csv(tmp_path / "sample_submission.csv", index=False)
    pd.DataFrame({"id": np.arange(1, 41), "label": [NAMES[c] for c in fmnist["y_test"][:40]]}).to_csv(
        tmp_path / "truth.csv", index=False
    )
    init = run_cli(
        "init",
        "--train",
        "train.csv",
        "--test",
        "test.csv",
        "--sample-submission",
        "sample_submission.csv",
        cwd=tmp_path,
    )
    assert init.returncode == 0, init.stderr
    config = tomllib.loads((tmp_path / "competition/competition.toml").read_text())["competition"]
    assert config["class_names"] == sorted(NAMES)  # the words' class order, recorded
    train_args = ["--model", "lenet5", "--folds", "2", "--epochs", "2", "--batch-size", "32", "--lr", "0.003"]
    assert run_cli("fold-train", *train_args, "--run", "w", "--no-progress", cwd=tmp_path).returncode == 0
    manifest = json.loads((tmp_path / "oof/w/manifest.json").read_text())
    assert manifest["data"]["label_values"] == sorted(NAMES)  # classes are the sorted words
    assert run_cli("blend", "w", "--name", "words", cwd=tmp_path).returncode == 0
    sub = pd.read_csv(tmp_path / "submissions/words.csv")
    assert list(sub.columns) == ["id", "label"] and set(sub["label"]) <= set(NAMES) and len(sub) == 40
    assert run_cli("validate", "submissions/words.csv", cwd=tmp_path).returncode == 0
    (tmp_path / "bad.csv").write_text("id,label\n" + "".join(f"{i},3\n" for i in range(1, 41)))
    bad = run_cli("validate", "bad.csv", cwd=tmp_path)
    assert bad.returncode != 0 and "label(s) outside" in bad.stdout + bad.stderr  # a number is not one of the words
    scored = run_cli("score", "submissions/words.csv", "--test-labels", "truth.csv", "--json", cwd=tmp_path)
    assert scored.returncode == 0 and 0.2 < json.loads(scored.stdout)["acc"] <= 1, scored.stderr


# ----------------------------------------------------------------------------- the frictions of a first afternoon


def test_a_misspelt_model_is_named_with_its_closest_matches_before_any_data_is_read(tmp_path):
    res = run_cli("fold-train", "--model", "timm:resnet81", "--train", "not-there.csv", "--run", "x", cwd=tmp_path)
    assert res.returncode == 2 and "timm has no model 'resnet81'; closest: timm:resnet18" in res.stderr, res.stderr
    assert "not-there.csv" not in res.stderr  # the model is checked first: the data would have taken seconds
    res = run_cli("fold-train", "--model", "lenet6", "--train", "not-there.csv", "--run", "x", cwd=tmp_path)
    assert res.returncode == 2 and "closest: lenet5" in res.stderr
    frozen = run_cli(
        "fold-train", "--model", "timm:resnet18", "--freeze-backbone", "--train", "not-there.csv", cwd=tmp_path
    )
    assert frozen.returncode == 2 and "without --pretrained FILE they are random" in frozen.stderr
    listed = run_cli("models", "--timm", "resnet1*", "--json", cwd=tmp_path)
    rows = json.loads(listed.stdout)["timm"]
    assert {"model": "timm:resnet18", "weights": True} in rows and all(
        r["model"].startswith("timm:resnet1") for r in rows
    )
    assert run_cli("models", "--timm", "no-such-net*", cwd=tmp_path).returncode == 2


def test_a_pickled_dict_given_as_test_labels_says_where_it_belongs(five_class_npy, tmp_path):
    f = five_class_npy
    res = run_cli(
        "data",
        "check",
        "--train",
        str(f["train"]),
        "--test",
        str(f["test"]),
        "--test-labels",
        str(f["train"]),
        cwd=tmp_path,
    )
    assert res.returncode == 2 and "is a pickled dict (features, target)" in res.stderr and "--test FILE" in res.stderr


def test_status_prints_a_command_that_trains_the_missing_folds_as_printed(rows, tmp_path):
    import shlex

    _, data = rows
    assert run_cli("fold-train", *data, *WANDERING, "--run", "half", "--fold", "0", "-q", cwd=tmp_path).returncode == 0
    status = run_cli("status", "half", cwd=tmp_path)
    command = status.stdout.strip().splitlines()[-1].strip()
    assert command.startswith("fkaggle fold-train ") and "..." not in command, status.stdout
    again = run_cli(*shlex.split(command)[1:], "-q", cwd=tmp_path)
    assert again.returncode == 0 and json.loads(run_cli("status", "half", "--json", cwd=tmp_path).stdout)["complete"]


def test_public_scores_print_like_cv_and_a_losing_blend_is_recalled_at_submit(tmp_path, fake_kaggle, five_class_npy):
    from fmnist_kaggle.data.competition import Competition
    from fmnist_kaggle.data.submission_file import submission_csv

    f = five_class_npy
    fake_kaggle.submissions[0]["publicScore"] = "0.90000"
    args = [
        "--train",
        str(f["train"]),
        "--test",
        str(f["test"]),
        "--sample-submission",
        str(f["sample"]),
        "--slug",
        "five-class",
    ]
    lst = run_cli("submissions", *args, "--workdir", str(tmp_path), cwd=tmp_path)
    assert lst.returncode == 0 and " 0.9000 " in lst.stdout, lst.stdout
    comp = Competition(name="five", train=f["train"], test=f["test"], sample_submission=f["sample"])
    sub = tmp_path / "submissions/blend.csv"
    sub.parent.mkdir(exist_ok=True)
    sub.write_text(submission_csv(comp, np.zeros(len(comp.test_set), dtype=int)))
    import hashlib

    warning = "blend (mean) CV accuracy 0.5000 does not beat run a alone (0.6000): submit run a instead"
    record = {
        "file": "blend.csv",
        "sha256": hashlib.sha256(sub.read_bytes()).hexdigest(),
        "cv": {"acc": 0.5},
        "warning": warning,
    }
    sub.with_suffix(".json").write_text(json.dumps(record))
    dry = run_cli("submit", str(sub), "-m", "x", "--dry-run", *args, "--workdir", str(tmp_path), "--json", cwd=tmp_path)
    assert dry.returncode == 0 and json.loads(dry.stdout)["warning"] == warning and warning in dry.stderr


# ----------------------------------------------------------------------------- repeated images


def test_planted_duplicates_are_reported_by_kind_and_kept_in_one_fold(tmp_path, small):
    x, y = small["x_train"].copy(), small["y_train"].copy()
    x[10], y[10] = x[3], y[3]  # an exact copy, same label
    x[11], y[11] = np.clip(x[4].astype(int) + 1, 0, 255).astype(np.uint8), y[4]  # near-exact: a gray level brighter
    x[12], y[12] = x[5], (y[5] + 1) % 10  # a copy with another label
    xt = small["x_test"][:20].copy()
    xt[0] = x[7]  # a test image that is a training image
    xt[1] = xt[2]  # a repeat within test
    train, test = write_csv(tmp_path / "train.csv", x, y), write_csv(tmp_path / "test.csv", xt)
    res = run_cli("data", "check", "--train", str(train), "--test", str(test), "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    dup = json.loads(res.stdout)["duplicates"]
    groups = sorted(sorted(g) for g in dup["examples"]["train"])
    assert [3, 10] in groups and [4, 11] in groups and [5, 12] in groups
    assert dup["conflicting_label_groups"] == 1 and dup["examples"]["conflicting"] == [[5, 12]]
    assert dup["test_groups"] == 1 and dup["examples"]["test"] == [[1, 2]] and dup["train_test_rows"] >= 1
    assert [0] in dup["examples"]["train_test"]
    text = run_cli("data", "check", "--train", str(train), "--test", str(test), cwd=tmp_path).stdout
    assert "1 with labels that disagree" in text and "repeating a training image" in text
    run = run_cli(
        "fold-train",
        "--train",
        str(train),
        "--model",
        "lenet5",
        "--folds",
        "5",
        "--epochs",
        "1",
        "--run",
        "g",
        "-q",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    fold_of = np.load(tmp_path / "oof/g/folds.npy")
    for a, b in ([3, 10], [4, 11], [5, 12]):
        assert fold_of[a] == fold_of[b]  # never scored by a model that trained on its copy
    record = json.loads(next((tmp_path / "oof/folds").glob("*.json")).read_text())
    assert record["duplicate_groups"] >= 3
    run_cli("report", cwd=tmp_path)
    assert "repeated images" in (tmp_path / "oof/report.html").read_text()


def test_train_given_as_test_is_said_in_the_data_check(tmp_path, small):
    train = write_csv(tmp_path / "train.csv", small["x_train"], small["y_train"])
    res = run_cli("data", "check", "--train", str(train), "--test", str(train), "--json", cwd=tmp_path)
    assert res.returncode == 0 and json.loads(res.stdout)["duplicates"]["train_test_rows"] == len(small["x_train"])
