"""The surfaces added lately hold like the old ones (issue 44): label values as written, groups of
repeated images that keep their promise, and everything the autopilot reads checked as data. Each
case goes through the command a user types, on slices of the real Fashion-MNIST."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, write_csv


def _one_line(res, *fragments: str) -> None:
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and lines and "Traceback" not in res.stderr, res.stderr
    assert all(f in lines[-1] for f in fragments), lines[-1]


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture()
def five(tmp_path, small):
    """A 5-class slice of the real data (labels 0..4 of the official ones), as arrays."""
    keep = small["y_train"] < 5
    test_keep = small["y_test"] < 5
    return small["x_train"][keep], small["y_train"][keep], small["x_test"][test_keep], small["y_test"][test_keep]


# ----------------------------------------------------------------------------- labels


def test_zero_padded_labels_round_trip_from_the_sample_submission_to_the_submission(tmp_path, five):
    x, y, xt, _ = five
    padded = np.array([f"0{v + 1}" for v in y])
    train = write_csv(tmp_path / "train.csv", x, padded)
    test = write_csv(tmp_path / "test.csv", xt, ids=np.arange(1, len(xt) + 1), id_col="Id")
    sample = tmp_path / "sample_submission.csv"
    sample.write_text("Id,Category\n" + "".join(f"{i},01\n" for i in range(1, len(xt) + 1)))
    init = run_cli("init", "--train", train, "--test", test, "--sample-submission", sample, "--json", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    assert json.loads(init.stdout)["train"]["label_values"] == ["01", "02", "03", "04", "05"]
    assert run_cli("validate", sample, cwd=tmp_path).returncode == 0  # the competition's own sample is valid
    args = ("--model", "lenet5", "--epochs", "1", "--folds", "2", "--batch-size", "32", "--no-progress")
    assert run_cli("fold-train", *args, "--run", "pad", cwd=tmp_path).returncode == 0
    assert run_cli("blend", "pad", cwd=tmp_path).returncode == 0
    rows = (tmp_path / "submissions/pad.csv").read_text().splitlines()
    assert rows[0] == "Id,Category" and {r.split(",")[1] for r in rows[1:]} <= {"01", "02", "03", "04", "05"}


def test_one_and_zero_one_are_two_classes_and_missing_words_are_words(tmp_path, five):
    x, y, _, _ = five
    mixed = np.array([f"0{v + 1}" if i % 2 else str(v + 1) for i, v in enumerate(y)])
    res = run_cli("data", "check", "--train", write_csv(tmp_path / "mixed.csv", x, mixed), "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["train"]["classes"] == 10  # '1' and '01' are not merged into one class
    words = np.array(["None", "NA", "null", "Bag", "Coat"])[y]
    res = run_cli("data", "check", "--train", write_csv(tmp_path / "words.csv", x, words), "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert set(json.loads(res.stdout)["train"]["class_counts"]) == {"None", "NA", "null", "Bag", "Coat"}
    lines = (tmp_path / "words.csv").read_text().splitlines()
    lines[3] = lines[3][lines[3].index(",") :]  # an empty label cell in data row 3
    (tmp_path / "empty.csv").write_text("\n".join(lines) + "\n")
    _one_line(run_cli("data", "check", "--train", tmp_path / "empty.csv", cwd=tmp_path), "missing label in row 3")


# ----------------------------------------------------------------------------- repeated images


def test_groups_of_near_copies_are_stars_not_chains(tmp_path):
    flat = np.stack([np.full((28, 28), v, np.uint8) for v in range(0, 120, 2)])  # 0, 2, ..., 118 gray levels
    labels = np.arange(60) % 2
    res = run_cli("data", "check", "--train", write_csv(tmp_path / "flat.csv", flat, labels), "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    dup = json.loads((tmp_path / "oof/data-check/duplicates.json").read_text())
    assert dup["train_groups"] >= 20 and dup["train_rows"] <= 60  # today: one chained group of all 60
    for group in dup["examples"]["train"]:
        levels = flat[group, 0, 0].astype(int)
        assert levels.max() - levels.min() <= 2 * 2, levels  # within the threshold of one representative


def test_a_group_no_fold_can_hold_is_refused_before_anything_is_written(tmp_path, small):
    copies = np.repeat(small["x_train"][:1], 600, axis=0)
    labels = np.arange(600) % 2
    train = write_csv(tmp_path / "same.csv", copies, labels)
    before = _tree(tmp_path)
    res = run_cli("fold-train", "--train", train, "--model", "lenet5", "--epochs", "1", "--folds", "2", cwd=tmp_path)
    _one_line(res, "600 training rows repeat one image", "--folds")
    assert _tree(tmp_path) == before  # no oof/, no fold files


@pytest.mark.timeout(120)
def test_a_large_group_of_copies_is_found_in_near_linear_time(tmp_path, small):
    """8,001 copies of one image: compared with one representative each, not pairwise (a pairwise
    search took 62 s for 4,001 copies; this one would take four times that)."""
    copies = np.concatenate([np.repeat(small["x_train"][:1], 8001, axis=0), small["x_train"][1:200]])
    labels = np.r_[np.zeros(8001, int), small["y_train"][1:200]]
    res = run_cli("data", "check", "--train", write_csv(tmp_path / "copies.csv", copies, labels), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    dup = json.loads((tmp_path / "oof/data-check/duplicates.json").read_text())
    assert dup["train_rows"] >= 8001


# ----------------------------------------------------------------------------- the autopilot's inputs


@pytest.fixture()
def ws(tmp_path, kaggle_csv_pair):
    train, test = kaggle_csv_pair
    return tmp_path, ["--train", str(train), "--test", str(test)]


def _auto(cwd: Path, data: list[str], *args: str):
    return run_cli("auto", *data, "--no-progress", *args, cwd=cwd)


@pytest.mark.parametrize(
    "entry,fragment",
    [
        ('rows = [nan, inf]\ntrain = { model = "lenet5" }', "rows must be [LOW, HIGH]"),
        ('widths = [100000]\ntrain = { recipe = "fast" }', "width 100000"),
        ('train = { model = "lenet5", folds = 3 }', "folds is the session's setting, not an entry's: give --folds"),
    ],
)
def test_a_bad_portfolio_is_one_line_and_writes_nothing(ws, entry, fragment):
    cwd, data = ws
    (cwd / "bad.toml").write_text(f'[[entry]]\nname = "bad"\n{entry}\n')
    before = _tree(cwd)
    for extra in (["--show-plan"], []):
        _one_line(_auto(cwd, data, "--portfolio", str(cwd / "bad.toml"), "--time-limit", "2m", *extra), fragment)
    assert _tree(cwd) == before


def test_a_model_too_large_to_train_is_refused_before_the_data_is_read(tmp_path):
    args = ("--train", tmp_path / "nowhere.csv", "--model", "fmnist_resnet", "--model-arg", "width=100000")
    _one_line(run_cli("fold-train", *args, cwd=tmp_path), "fmnist_resnet with width=100000", "GiB")


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "1e300", "1e-300"])
def test_implausible_stored_speeds_are_measured_again(ws, bad):
    """A planted speeds.json under this machine's key and the small-data entry's own speed keys."""
    from fmnist_kaggle.search.portfolio import load_portfolio
    from fmnist_kaggle.training.device import machine_key

    cwd, data = ws
    small = next(e for e in load_portfolio() if e.name == "small")
    keys = [small.config(w, folds=5, subset=0).speed_key() for w in small.widths]
    planted = {k: {"train_ips": "BAD", "predict_ips": 1000.0, "source": "probe"} for k in keys}
    text = json.dumps({"schema": 1, "machines": {machine_key("auto"): planted}}).replace('"BAD"', bad)
    (cwd / "oof/autopilot").mkdir(parents=True)
    (cwd / "oof/autopilot/speeds.json").write_text(text)
    res = _auto(cwd, data, "--show-plan", "--time-limit", "5m", "--json")
    assert res.returncode == 0 and "measured again" in res.stderr, res.stderr
    plan = json.loads(res.stdout)
    assert len(plan["speeds"]) == len(keys) and all(1 < s["train_ips"] < 1e7 for s in plan["speeds"])
    assert plan["purchases"] and all(r["minutes"] > 0.01 for r in plan["purchases"])


def test_a_refused_subset_writes_nothing_and_show_plan_refuses_it_too(ws):
    cwd, data = ws
    before = _tree(cwd)
    for extra in ([], ["--show-plan"]):
        _one_line(_auto(cwd, data, "--subset", "5", "--folds", "2", "--time-limit", "2m", *extra), "--subset 5")
    assert _tree(cwd) == before
    assert not (cwd / "oof").exists()


def _planted_state(cwd: Path, data: list[str]) -> Path:
    portfolio = cwd / "one.toml"
    portfolio.write_text(
        '[[entry]]\nname = "a"\ntrain = { model = "fmnist_resnet", model_kwargs = { width = 8 }, epochs = 1, '
        'batch_size = 32, optimizer = "sgd", lr = 0.05 }\nmin_epochs = 1\nruns = 1\n'
    )
    res = _auto(cwd, data, "--portfolio", str(portfolio), "--time-limit", "2m", "--json")
    assert res.returncode == 0, res.stderr
    return cwd / "oof/autopilot/auto/state.json"


@pytest.mark.parametrize(
    "edit,fragment",
    [
        (lambda s: s["runs"]["auto-a-1"].update(steps="x"), "runs.auto-a-1.steps must be a whole number"),
        (lambda s: s["sessions"][0].update(wall_s="x"), "sessions[0].wall_s must be a number"),
        (lambda s: s["order"].append("ghost"), "order must name each run"),
    ],
)
def test_a_hand_edited_state_is_one_line_naming_the_key(ws, edit, fragment):
    cwd, data = ws
    path = _planted_state(cwd, data)
    state = json.loads(path.read_text())
    edit(state)
    path.write_text(json.dumps(state))
    _one_line(_auto(cwd, data, "--portfolio", str(cwd / "one.toml"), "--time-limit", "2m"), "state.json", fragment)


@pytest.mark.slow
def test_ctrl_c_keeps_the_wall_time_and_the_run_finishes_without_its_portfolio(ws):
    """A --portfolio session interrupted with Ctrl-C (SIGINT) records the seconds it ran; the same
    command without --portfolio finishes the run it had started from what the state recorded."""
    cwd, data = ws
    portfolio = cwd / "slow.toml"  # 24 epochs: a fold lasts seconds, so the Ctrl-C lands mid-run
    portfolio.write_text(
        '[[entry]]\nname = "p"\ntrain = { model = "fmnist_resnet", model_kwargs = { width = 8 }, epochs = 24, '
        'batch_size = 16, optimizer = "sgd", lr = 0.05 }\nmin_epochs = 24\nruns = 1\n'
    )
    cli = [sys.executable, "-m", "fmnist_kaggle.cli", "auto", *data, "--no-progress", "--folds", "3"]
    cmd = [*cli, "--portfolio", str(portfolio)]
    started = time.monotonic()
    proc = subprocess.Popen([*cmd, "--time-limit", "5m"], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = started + 120
    while not list((cwd / "oof").glob("auto-p-1/fold_*/metrics.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    first_fold_s = time.monotonic() - started  # start-up, plan and one fold at this machine's pace now
    os.kill(proc.pid, signal.SIGINT)
    proc.wait(timeout=60)
    state = json.loads((cwd / "oof/autopilot/auto/state.json").read_text())
    assert state["runs"]["auto-p-1"]["status"] == "training" and state["sessions"][0]["wall_s"] > 1.0, state
    assert state["runs"]["auto-p-1"]["train"]["batch_size"] == 16  # what it was bought with
    # no --portfolio: the packaged one lacks entry p. Two folds are left; the limit is sized from the
    # pace just measured (25 s on a quiet 2-core machine; a slow or busy host needs more)
    limit = max(25, round(3 * first_fold_s))
    res = _auto(cwd, data, "--folds", "3", "--time-limit", f"{limit}s", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert {r["name"]: r["status"] for r in out["leaderboard"] if r["kind"] == "run"}["auto-p-1"] == "complete"
    assert "finishing auto-p-1" in res.stderr
