"""`fkaggle auto`: a time budget in, a validated submission and a leaderboard out.

Every test runs the CLI a user types, on slices of the real Fashion-MNIST. Budgets are tiny;
the portfolio is the packaged one where the limit is the point, and a small fixed one
(`--portfolio`) where the outcome must be exact.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

# Two small fixed entries, each bought once: epochs cannot be sized differently between sessions,
# so a resumed session must reproduce an uninterrupted one exactly (fmnist_resnet has no dropout).
_SMALL = 'model = "fmnist_resnet", model_kwargs = { width = 8 }, epochs = 3, batch_size = 32, optimizer = "sgd"'


def _entry(name: str, train: str) -> str:
    return f'\n[[entry]]\nname = "{name}"\ntrain = {{ {train} }}\nmin_epochs = 3\nruns = 1\nwhy = "test"\n'


FIXED = _entry("a", f"{_SMALL}, lr = 0.05, label_smoothing = 0.1") + _entry(
    "b", f"{_SMALL}, lr = 0.05, label_smoothing = 0.1, seeds = [1]"
)


@pytest.fixture()
def ws(tmp_path, kaggle_csv_pair):
    train, test = kaggle_csv_pair
    (tmp_path / "fixed.toml").write_text(FIXED)
    return tmp_path, ["--train", str(train), "--test", str(test)]


def auto(cwd: Path, data: list[str], *args: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    res = run_cli("auto", *data, "--no-progress", *args, cwd=cwd, env=env)
    return res, time.monotonic() - t0


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
@pytest.mark.timing
def test_a_tiny_budget_is_honoured_and_ends_in_a_validated_honest_submission(ws):
    cwd, data = ws
    limit = 30
    res, wall = auto(cwd, data, "--time-limit", f"{limit}s", "--json")
    assert res.returncode == 0, res.stderr
    assert wall <= limit + 4, wall  # the limit, plus the interpreter's start before the clock
    out = json.loads(res.stdout)
    runs = [r for r in out["leaderboard"] if r["kind"] == "run"]
    assert runs and all(re.fullmatch(r"auto-small-\d+", r["name"]) for r in runs)  # 400 rows: the small-data entry
    complete = [r for r in runs if r["status"] == "complete"]
    assert complete and all(r["status"] in ("complete", "incomplete") for r in runs)
    assert out["stopped"] and out["train_s"] > 0.3 * limit, out  # it trained, and says why it stopped buying
    said = re.search(r"^(\d+) s left to train \(after the reserve of (\d+) s\).*needs ~(\d+) s", out["stopped"])
    if said:  # the policy stopped: what was left bought nothing, and nothing else was left
        assert int(said.group(3)) > int(said.group(1)), out["stopped"]
        assert out["wall_s"] + int(said.group(1)) + int(said.group(2)) >= limit - 2, out
    else:  # or the training deadline came while a run trained
        assert out["stopped"].startswith("the training deadline") and out["wall_s"] >= 0.8 * limit, out
    assert out["cv"]["acc"] >= max(r["cv_acc"] for r in complete)  # never below the best single run
    assert sum(r["chosen"] for r in out["leaderboard"]) == 1
    assert run_cli("validate", out["submission"], *data, cwd=cwd).returncode == 0
    record = json.loads((cwd / out["record"]).read_text())
    assert record["cv"]["acc"] == out["cv"]["acc"] and "test" in record  # scored: the test file has labels
    for f in out["files"].values():
        assert (cwd / f).stat().st_size > 0
    assert (cwd / out["files"]["png"]).read_bytes()[:4] == b"\x89PNG"
    table = (cwd / out["files"]["markdown"]).read_text()
    assert "Chosen: **" in table and all(r["name"] in table for r in runs)
    assert "elapsed" in res.stderr and "left]" in res.stderr  # progress with the clock on stderr
    report = run_cli("report", "--json", cwd=cwd)  # the session on the workspace's page
    assert report.returncode == 0 and json.loads(report.stdout)["autopilots"] == 1, report.stderr
    page = (cwd / "oof/report.html").read_text()
    chosen = next(r["name"] for r in out["leaderboard"] if r["chosen"])
    assert f"chosen: <b>{chosen}</b>" in page and all(r["name"] in page for r in runs)


def test_a_budget_too_small_is_refused_in_one_line_and_nothing_is_written(ws):
    cwd, data = ws
    huge = cwd / "huge.toml"
    huge.write_text('[[entry]]\nname = "long"\ntrain = { model = "lenet5", epochs = 100000 }\nmin_epochs = 100000\n')
    before = sorted(p.name for p in cwd.iterdir())
    res, _ = auto(cwd, data, "--time-limit", "3s")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "leaves nothing to train" in res.stderr, res.stderr
    res, _ = auto(cwd, data, "--time-limit", "25s", "--portfolio", str(huge))
    assert res.returncode == 2 and "too short for any run" in res.stderr and "Nothing was written" in res.stderr, (
        res.stderr
    )
    assert (
        res.stderr.strip().splitlines()[-1].startswith("fkaggle: error: ") and "Traceback" not in res.stderr
    )  # one error line (after the speed line)
    assert sorted(p.name for p in cwd.iterdir()) == before  # no oof/, no submissions/


@pytest.mark.slow
def test_killed_then_resumed_equals_an_uninterrupted_session(ws, tmp_path):
    cwd, data = ws
    args = ["--portfolio", str(cwd / "fixed.toml"), "--folds", "3", "--time-limit", "3m", "--json"]
    whole = cwd / "whole"
    res, _ = auto(whole.parent, data, "--workdir", str(whole), *args)
    assert res.returncode == 0, res.stderr

    cut = cwd / "cut"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fmnist_kaggle.cli", "auto", *data, "--no-progress", "--workdir", str(cut), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while (
        not (cut / "oof/cut-a-1").exists()
        and not list((cut / "oof").glob("auto-a-1/fold_1/metrics.json"))
        and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    assert list((cut / "oof").glob("auto-a-1/fold_1/metrics.json")), "the first run never finished a fold"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p: sha(p) for p in (cut / "oof/auto-a-1").glob("fold_[01]/*") if p.is_file()}
    state = json.loads((cut / "oof/autopilot/auto/state.json").read_text())
    assert (
        state["runs"]["auto-a-1"]["status"] == "training" and "choice" not in state
    )  # nothing was blended half-trained

    res, _ = auto(cwd, data, "--workdir", str(cut), *args)
    assert res.returncode == 0, res.stderr
    assert {p: sha(p) for p in finished} == finished  # finished units reused, not retrained
    assert "finishing auto-a-1" in res.stderr
    for run in ("auto-a-1", "auto-b-1"):
        for f in ("oof_logits.npy", "test_logits.npy"):
            assert np.array_equal(np.load(whole / "oof" / run / f), np.load(cut / "oof" / run / f)), (run, f)
    a, b = json.loads(res.stdout), json.loads((whole / "oof/autopilot/auto/state.json").read_text())
    same = lambda c: {k: v for k, v in c.items() if k != "seconds"}  # the blend's own timing differs
    assert same(a["chosen"]) == same(b["choice"]["chosen"]) and a["cv"]["acc"] == b["choice"]["chosen"]["cv_acc"]
    assert (cut / "submissions/auto.csv").read_bytes() == (whole / "submissions/auto.csv").read_bytes()

    again, _ = auto(cwd, data, "--workdir", str(cut), *args)  # everything done: reused, same answer
    assert again.returncode == 0 and json.loads(again.stdout)["chosen"] == a["chosen"]
    assert "training img/s" not in again.stderr


def test_blends_that_lose_to_the_best_run_are_not_chosen(ws):
    """A near-chance partner drags blends below the best run; those are never chosen. Which blends
    lose, and by how many rows, follows the CPU's arithmetic (a mean with a near-uniform partner can
    gain a row of 400 on one instruction set and lose 14 on another), so the test asserts the rule:
    the chosen candidate has the best CV, a blend only when it beats every single run."""
    cwd, data = ws
    weak = FIXED.replace(
        "lr = 0.05, label_smoothing = 0.1, seeds = [1]", "lr = 1e-6, seeds = [1]"
    )  # a near-chance partner
    (cwd / "weak.toml").write_text(weak)
    res, _ = auto(cwd, data, "--portfolio", str(cwd / "weak.toml"), "--time-limit", "2m", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    board = out["leaderboard"]
    runs, blends = ([r for r in board if r["kind"] == kind] for kind in ("run", "blend"))
    best_run = max(runs, key=lambda r: r["cv_acc"])
    assert best_run["name"] == "auto-a-1" and min(r["cv_acc"] for r in runs) < 0.2  # b is near chance
    losing = [b for b in blends if b["cv_acc"] < best_run["cv_acc"]]
    assert len(blends) == 4 and losing and not any(b["chosen"] for b in losing)
    (chosen,) = [r for r in board if r["chosen"]]
    assert chosen["cv_acc"] == max(r["cv_acc"] for r in board) == out["cv"]["acc"]
    if chosen["kind"] == "run":
        assert out["chosen"]["runs"] == ["auto-a-1"] and "no blend beat it" in out["reason"]
    else:
        assert chosen["cv_acc"] > best_run["cv_acc"] and "beats the best single run auto-a-1" in out["reason"]


def test_show_plan_measures_and_writes_nothing(ws):
    cwd, data = ws
    res, _ = auto(cwd, data, "--show-plan", "--time-limit", "20m", "--json")
    assert res.returncode == 0, res.stderr
    plan = json.loads(res.stdout)
    bought = plan["purchases"]
    assert bought and {r["entry"] for r in bought} == {"small"}  # 400 rows: the small-data entry
    assert bought[0]["epochs"] == 30 and len(bought) >= 2  # 20 minutes buy its longest runs, and more than one
    assert plan["speeds"] and all(s["train_ips"] > 0 and s["predict_ips"] > 0 for s in plan["speeds"])
    assert bought[0]["minutes"] * 60 <= plan["first_s"] + 0.6 < plan["train_s"]  # it ends on a slower machine too
    earlier = {str(r["run"]) for r in bought}
    assert all(r["continues"] is None or r["continues"] in earlier for r in bought)  # it grows the plan's own runs
    assert not (cwd / "oof").exists()
    short, _ = auto(cwd, data, "--show-plan", "--time-limit", "12s", "--json")  # what 12 s cannot buy, and what would
    assert short.returncode == 0 and not json.loads(short.stdout)["purchases"], short.stderr
    assert re.search(r"the smallest budget that buys a run is about \d+[sm]", json.loads(short.stdout)["nothing_fits"])


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--time-limit", "soon"], "--time-limit expects a duration such as 90s, 20m or 1.5h"),
        (["--name", "../x"], "invalid autopilot name"),
        (["--submit"], "--submit needs -m/--message"),
        (["--portfolio", "nope.toml"], "nope.toml"),
        (["--folds", "1"], "--folds must be between 2 and the 400 training rows, got 1"),
        (["--subset", "3"], "--subset must be 0 (all rows) or at least twice --folds, got 3"),
    ],
)
def test_bad_options_are_one_line(ws, args, fragment):
    cwd, data = ws
    res, _ = auto(cwd, data, *args)
    assert res.returncode == 2 and fragment in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert not (cwd / "oof").exists()


@pytest.mark.slow  # a real budget or timeout: out of the inner loop (make test-fast)
@pytest.mark.timing
def test_a_deadline_stops_a_local_unit_mid_fold_and_keeps_its_last_epoch(tmp_path, synth):
    """The in-process executor cannot be interrupted from outside: the deadline reaches into the
    training loop, so no step starts after it, and the epoch checkpoint stays for a resume."""
    import fmnist_kaggle as fk

    cfg = fk.build_config(
        model="lenet5", folds=2, epochs=5000, batch_size=16, optimizer="adam", schedule="constant"
    )  # minutes per unit
    t0 = time.monotonic()
    with pytest.raises(fk.FkaggleError, match=r"2 \(fold, seed\) unit\(s\) stopped at the deadline"):
        fk.fold_train(synth, cfg, run="late", workdir=tmp_path, progress=False, deadline=t0 + 4)
    assert time.monotonic() - t0 < 10
    assert (tmp_path / "oof/late/fold_0/checkpoint_seed_0.pt").is_file() and not (
        tmp_path / "oof/late/fold_0/seed_0.json"
    ).exists()


def _drive_one(synth, cfg, run: str, workdir: Path, pace=None, **hooks) -> dict:
    """One run through the driver the autopilot uses, on the local executor; its manifest.
    `pace(job, left_s, whole_s)`: the job's deadline asks it within each unit, as the autopilot's does."""
    from fmnist_kaggle.runs.driver import drive, prepare_run
    from fmnist_kaggle.runs.executors import make_executor
    from fmnist_kaggle.training.deadline import Deadline

    done: dict = {}
    job = prepare_run(synth, cfg, run, workdir)
    if pace is not None:
        job.deadline = Deadline.after(3600).with_pace(lambda left, whole: pace(job, left, whole))
    with make_executor("local", progress=False) as ex:
        drive(ex, iter([job]), lambda job, m: done.update(m), False, **hooks)
    return done


def test_a_run_that_cannot_finish_is_stopped_after_a_unit_and_resumes_later(tmp_path, synth):
    """The autopilot's early stop, through the driver it uses: after a unit, the caller may stop
    the rest of the job (one unit at a time); finished units stay and the same call finishes it."""
    import fmnist_kaggle as fk

    cfg = fk.build_config(model="lenet5", folds=3, epochs=1, batch_size=16, optimizer="adam", schedule="constant")
    seen = []
    done = _drive_one(synth, cfg, "cut", tmp_path, on_unit=lambda job, r: seen.append(r.fold) or True)
    assert seen == [0] and not done["complete"] and done["missing_folds"] == [1, 2]
    assert (
        fk.fold_train(synth, cfg, run="cut", workdir=tmp_path, progress=False).cv["acc"] > 0
    )  # the same call finishes it


def test_a_unit_whose_pace_would_end_its_run_late_stops_part_way_and_its_run_with_it(tmp_path, synth):
    """The same stop made within a unit: once a fifth of its steps are trained, the caller is
    told the seconds its training still needs and those of the whole unit at this pace; a
    positive lateness stops the unit there (UnitLate, its last epoch's checkpoint kept) and the
    rest of its run, and the same call finishes it later."""
    import fmnist_kaggle as fk
    from fmnist_kaggle.training.deadline import UnitLate

    cfg = fk.build_config(
        model="lenet5", folds=3, epochs=20, batch_size=16, optimizer="adam", schedule="constant", eval_every=0
    )
    asked, outcomes = [], []
    done = _drive_one(
        synth,
        cfg,
        "slow",
        tmp_path,
        on_unit=lambda job, r: outcomes.append(r) or False,
        pace=lambda job, left, whole: asked.append((job.outstanding, left, whole)) or 1.0,
    )
    assert len(asked) == 1 and asked[0][0] == 3 and 0 < asked[0][1] < asked[0][2]  # asked once, fold 0 of 3 queued
    assert len(outcomes) == 1 and isinstance(outcomes[0], UnitLate) and outcomes[0].late_s == 1.0
    assert "slow fold 0 seed 0" in str(outcomes[0]) and outcomes[0].images_per_s > 0
    assert not done["complete"] and done["missing_folds"] == [0, 1, 2]
    assert (tmp_path / "oof/slow/fold_0/checkpoint_seed_0.pt").is_file()  # epochs before the stop are kept
    assert fk.fold_train(synth, cfg, run="slow", workdir=tmp_path, progress=False).cv["acc"] > 0


@pytest.mark.slow  # a whole session under a real 2-minute budget: out of the inner loop
def test_a_diverging_run_is_a_failed_unit_and_the_session_buys_on(ws):
    """Failures are units, not sessions: the first entry diverges on every unit (the local
    executor hands each back as failed), is recorded failed and not bought again; the next entry
    trains and makes the submission."""
    cwd, data = ws
    boom = _entry("boom", f"{_SMALL}, lr = 1e12").replace("runs = 1", "runs = 3")
    (cwd / "boom.toml").write_text(boom + _entry("ok", f"{_SMALL}, lr = 0.05"))
    res, _ = auto(cwd, data, "--portfolio", str(cwd / "boom.toml"), "--time-limit", "2m", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    status = {r["name"]: r["status"] for r in out["leaderboard"] if r["kind"] == "run"}
    assert status == {"auto-boom-1": "failed", "auto-ok-1": "complete"}, status  # boom is not bought a second time
    assert "training loss is" in next(r["note"] for r in out["leaderboard"] if r["name"] == "auto-boom-1")
    assert out["chosen"]["runs"] == ["auto-ok-1"] and (cwd / out["submission"]).is_file()


def test_folds_and_subset_size_every_run(ws):
    cwd, data = ws
    res, _ = auto(
        cwd, data, "--portfolio", str(cwd / "fixed.toml"), "--time-limit", "2m", "--folds", "4", "--subset", "200"
    )
    assert res.returncode == 0, res.stderr
    names = [r["name"] for r in csv.DictReader((cwd / "oof/autopilot/auto/leaderboard.csv").open())]
    whole = [re.search(rf"(^|\s){re.escape(n)}(\s|$)", res.stdout, re.M) for n in names]
    assert len(names) >= 3 and all(whole), res.stdout  # every run and blend named whole, never cut
    for run in ("auto-a-1", "auto-b-1"):
        manifest = json.loads((cwd / "oof" / run / "manifest.json").read_text())
        assert manifest["data"]["folds"] == 4 and manifest["data"]["rows"] == 200
    again, _ = auto(cwd, data, "--portfolio", str(cwd / "fixed.toml"), "--time-limit", "2m", "--json")
    assert again.returncode == 2 and "made on other folds" in again.stderr  # the same name on other folds is refused
