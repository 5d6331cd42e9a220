"""What a competitor sees, through the CLI: blends measured against the best run, submitted files
never lost or sent twice, results on stdout, runs that remember their data, warnings only where
the measurements show harm, sweeps' best configs at full budget, the official data from any
folder, and tables and pictures that say what they show (issue 24, one test per class)."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_cli, write_csv

TINY = ("--folds", "3", "--batch-size", "32", "--lr", "0.003", "--no-progress")


@pytest.fixture(scope="module")
def ws(tmp_path_factory, fmnist):
    """A workspace with no competition config: 1,000 real training rows (100 per class) and 200 test
    rows as CSV files given by flags, two good runs of few optimizer steps and one that learns nothing."""
    root = tmp_path_factory.mktemp("competitor")
    rng = np.random.default_rng(0)
    rows = np.sort(
        np.concatenate([rng.choice(np.flatnonzero(fmnist["y_train"] == c), 100, replace=False) for c in range(10)])
    )
    train = write_csv(root / "train.csv", fmnist["x_train"][rows], fmnist["y_train"][rows])
    test = write_csv(root / "test.csv", fmnist["x_test"][:200], ids=np.arange(1, 201))
    data = ["--train", str(train), "--test", str(test)]
    results = {}
    for run, extra in (
        ("a", ["--model", "lenet5", "--epochs", "2"]),
        ("b", ["--model", "keras_model1", "--epochs", "1"]),
        ("bad", ["--model", "lenet5", "--epochs", "1", "--lr", "1e-7"]),
    ):
        res = run_cli("fold-train", *data, *TINY, *extra, "--run", run, cwd=root)
        assert res.returncode == 0, res.stderr
        results[run] = res
    return {"root": root, "data": data, "train": train, "test": test, "fold_train": results}


def _manifest(root: Path, run: str) -> dict:
    return json.loads((root / "oof" / run / "manifest.json").read_text())


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- 1. blends against the best single run


def test_every_blend_names_the_best_single_run_and_warns_when_it_does_not_beat_it(ws):
    root, data = ws["root"], ws["data"]
    best = max(("a", "b", "bad"), key=lambda r: _manifest(root, r)["cv"]["acc"])
    for method in ("mean", "hillclimb", "stack"):
        res = run_cli(
            "blend", "a", "b", "bad", "--method", method, "--name", f"all-{method}", *data, "--json", cwd=root
        )
        assert res.returncode == 0, res.stderr
        out = json.loads(res.stdout)
        assert out["best_single"]["run"] == best and out["best_single"]["acc"] == pytest.approx(
            _manifest(root, best)["cv"]["acc"]
        )
        loses = out["cv"]["acc"] <= out["best_single"]["acc"]
        assert (f"does not beat run {best} alone" in res.stderr) == loses, (method, out["cv"], res.stderr)
        assert ("warning" in out) == loses
    # run a's fold models predicting the same test file again: a run with a's OOF logits, so their
    # mean is run a; it cannot beat a, and says so, naming it, in words and in JSON
    assert run_cli("predict", "a", "--test", str(ws["test"]), "--name", "a-again", cwd=root).returncode == 0
    res = run_cli("blend", "a", "a-again", "--method", "mean", "--name", "tie", *data, cwd=root)
    assert res.returncode == 0, res.stderr
    cv_a = _manifest(root, "a")["cv"]["acc"]
    assert f"best single run a: CV accuracy {cv_a:.4f}" in res.stdout and "no gain" in res.stdout
    assert "does not beat run a alone" in res.stderr and "fkaggle blend a" in res.stderr
    assert json.loads((root / "submissions/tie.json").read_text())["best_single"]["run"] == "a"


# ----------------------------------------------------------------------------- 2 + 3. submitted files: never
# overwritten, never sent twice


def test_a_submitted_file_is_never_overwritten_or_sent_twice_and_the_quota_is_shown(ws, fake_kaggle, tmp_path):
    root, data = ws["root"], ws["data"]
    kaggle = [*data, "--slug", "five-class", "--workdir", str(tmp_path)]
    for run in ("a", "b", "bad"):
        (tmp_path / "oof").mkdir(exist_ok=True)
        _copy_run(root / "oof" / run, tmp_path / "oof" / run)
    assert run_cli("blend", "a", "--name", "sub", *data, "--workdir", str(tmp_path)).returncode == 0
    sub = tmp_path / "submissions/sub.csv"
    sent = _sha(sub)
    up = run_cli("submit", str(sub), "-m", "first", *kaggle, env=fake_kaggle.env)
    assert up.returncode == 0, up.stderr
    assert "submitted sub.csv" in up.stdout and "3 submission(s) left today" in up.stdout  # the fake allows 4 now
    assert len(fake_kaggle.created) == 1

    again = run_cli("blend", "a", "b", "--name", "sub", *data, "--workdir", str(tmp_path))  # the same name again
    assert again.returncode == 0, again.stderr
    assert (
        "wrote" in again.stdout
        and "sub-2.csv" in again.stdout
        and "sub.csv was submitted to Kaggle and is kept" in again.stderr
    )
    assert (
        _sha(sub) == sent
        and json.loads((tmp_path / "submissions/sub.json").read_text())["submissions"][0]["ref"] == 1001
    )

    lst = run_cli("submissions", *kaggle, "--json", env=fake_kaggle.env)  # learns the public score, shows the quota
    assert lst.returncode == 0, lst.stderr
    out = json.loads(lst.stdout)
    mine = next(r for r in out["submissions"] if r["ref"] == 1001)
    assert mine["file_check"] == "match" and mine["public_score"] == 0.9312 and out["left_today"] == 4
    assert "submission(s) left today" in run_cli("submissions", *kaggle, env=fake_kaggle.env).stdout

    twice = run_cli("submit", str(sub), "-m", "again", *kaggle, env=fake_kaggle.env)
    assert twice.returncode == 2 and len(twice.stderr.strip().splitlines()) == 1
    assert (
        "already submitted" in twice.stderr
        and "ref 1001" in twice.stderr
        and "public score 0.9312" in twice.stderr
        and "--force" in twice.stderr
    )
    assert len(fake_kaggle.created) == 1  # no daily slot spent
    forced = run_cli("submit", str(sub), "-m", "on purpose", *kaggle, "--force", env=fake_kaggle.env)
    assert forced.returncode == 0 and len(fake_kaggle.created) == 2

    sub.write_text(sub.read_text() + "\n")  # edited by hand after the upload
    local = json.loads(run_cli("submissions", *kaggle, "--local", "--json").stdout)["submissions"]
    assert {r["file_check"] for r in local} == {"changed since upload"}
    assert next(r for r in local if r["ref"] == 1001)["public_score"] == 0.9312  # offline: the last known score
    sub.unlink()
    assert {
        r["file_check"] for r in json.loads(run_cli("submissions", *kaggle, "--local", "--json").stdout)["submissions"]
    } == {"missing"}


def _copy_run(src: Path, dst: Path) -> None:
    import shutil

    shutil.copytree(src, dst)


# ----------------------------------------------------------------------------- 4. results on stdout


def test_fold_train_prints_its_result_on_stdout_and_its_log_on_stderr(ws):
    res = ws["fold_train"]["a"]
    cv = _manifest(ws["root"], "a")["cv"]["acc"]
    assert res.stdout.splitlines()[0].startswith(f"run a (lenet5, 3 folds): CV accuracy {cv:.4f}")
    assert "CV accuracy" not in res.stderr and "fold 0: acc" in res.stderr  # logs and progress stay on stderr


# ----------------------------------------------------------------------------- 5. runs remember their data


def test_a_run_trained_from_flags_finds_its_images_and_says_which_option_when_they_moved(ws, tmp_path):
    root = ws["root"]
    ex = run_cli("explain", "a", "--json", cwd=root)  # no competition config, no data option
    assert ex.returncode == 0, ex.stderr
    assert Path(root / json.loads(ex.stdout)["png"]).stat().st_size > 10_000
    cv = run_cli("cv", "a", "--json", cwd=root)
    assert cv.returncode == 0 and Path(root / json.loads(cv.stdout)["runs"][0]["predictions_png"]).is_file(), cv.stderr

    copy = tmp_path / "train.csv"  # a run whose file then moves, then changes
    copy.write_bytes(ws["train"].read_bytes())
    assert (
        run_cli(
            "fold-train",
            "--train",
            str(copy),
            "--test",
            str(ws["test"]),
            *TINY,
            "--model",
            "lenet5",
            "--epochs",
            "1",
            "--run",
            "m",
            "-q",
            cwd=tmp_path,
        ).returncode
        == 0
    )
    moved = tmp_path / "elsewhere.csv"
    copy.rename(moved)
    gone = run_cli("explain", "m", cwd=tmp_path)
    assert gone.returncode == 2 and len(gone.stderr.strip().splitlines()) == 1
    assert str(copy) in gone.stderr and "gone" in gone.stderr and "--train" in gone.stderr
    assert run_cli("explain", "m", "--train", str(moved), cwd=tmp_path).returncode == 0
    write_csv(copy, np.zeros((30, 28, 28), np.uint8), np.arange(30) % 10)  # other data at the recorded path
    changed = run_cli("explain", "m", cwd=tmp_path)
    assert changed.returncode == 2 and "fingerprints differ" in changed.stderr and "--train" in changed.stderr


# ----------------------------------------------------------------------------- 6. predict's hint works as printed


def test_predicts_next_step_works_as_printed(ws, fmnist, tmp_path):
    sample = tmp_path / "sample_submission.csv"
    sample.write_text("Id,Category\n" + "".join(f"{i},0\n" for i in range(1, 201)))
    init = run_cli("init", *ws["data"], "--sample-submission", str(sample), cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    assert (
        run_cli("fold-train", *TINY, "--model", "lenet5", "--epochs", "1", "--run", "r", "-q", cwd=tmp_path).returncode
        == 0
    )
    private = write_csv(tmp_path / "private_test.csv", fmnist["x_test"][200:260], ids=np.arange(5001, 5061))
    pred = run_cli("predict", "r", "--test", private.name, cwd=tmp_path)
    assert pred.returncode == 0, pred.stderr
    hint = next(line for line in pred.stdout.splitlines() if line.startswith("submission: "))[len("submission: ") :]
    argv = shlex.split(hint)
    assert argv[:2] == ["fkaggle", "blend"]
    res = run_cli(*argv[1:], cwd=tmp_path)  # exactly as printed
    assert res.returncode == 0, res.stderr
    rows = (tmp_path / "submissions/r-on-private_test.csv").read_text().splitlines()
    assert rows[0] == "Id,Category" and [r.split(",")[0] for r in rows[1:]] == [str(i) for i in range(5001, 5061)]
    assert (
        run_cli("validate", "submissions/r-on-private_test.csv", "--test", private.name, cwd=tmp_path).returncode == 0
    )
    empty = run_cli(
        "blend", "r", "--sample-submission", "", "--name", "no-sample", cwd=tmp_path
    )  # "": no sample, not the folder "."
    assert empty.returncode == 0, empty.stderr


# ----------------------------------------------------------------------------- 7. warnings only where the measurements
# show harm


def test_the_near_chance_warning_fires_on_a_run_that_learned_nothing_and_not_on_small_good_runs(ws):
    for run in ("a", "b"):  # 40 and 20 optimizer steps per fold: the old rule warned on both
        assert _manifest(ws["root"], run)["cv"]["acc"] > 0.3
        assert "near chance" not in ws["fold_train"][run].stderr
    bad = ws["fold_train"]["bad"].stderr
    cv = _manifest(ws["root"], "bad")["cv"]["acc"]
    assert f"run bad: CV accuracy {cv:.4f} is near chance" in bad and "lr 1e-07" in bad and "--epochs" in bad


# ----------------------------------------------------------------------------- 8. a sweep's best config trains at full
# budget


def test_a_sweeps_best_config_leaves_its_search_budget_out(ws, tmp_path):
    data = ws["data"]
    sw = run_cli(
        "sweep",
        *data,
        "--model",
        "lenet5",
        "--grid",
        "lr=0.001,0.003",
        "--subset",
        "300",
        "--folds",
        "3",
        "--epochs",
        "1",
        "--name",
        "s",
        "--no-progress",
        "--json",
        cwd=tmp_path,
    )
    assert sw.returncode == 0, sw.stderr
    assert "trains on a stratified subset" not in sw.stderr  # a sweep searches on a subset on purpose
    best = Path(tmp_path / json.loads(sw.stdout)["best_config"])
    text = best.read_text()
    import tomllib

    train = tomllib.loads(text)["train"]
    assert not {"subset", "folds", "epochs"} & set(train) and train["lr"] in (0.001, 0.003)
    assert "searched at subset = 300, folds = 3, epochs = 1" in text
    full = run_cli(
        "fold-train",
        *data,
        "--config",
        str(best),
        "--folds",
        "3",
        "--epochs",
        "1",
        "--run",
        "full",
        "--no-progress",
        cwd=tmp_path,
    )
    assert full.returncode == 0, full.stderr
    assert _manifest(tmp_path, "full")["data"]["rows"] == 1000 and "subset" not in full.stderr  # every row
    subset_cfg = tmp_path / "subset.toml"
    subset_cfg.write_text(text.replace("[train]\n", "[train]\nsubset = 300\n"))
    part = run_cli(
        "fold-train",
        *data,
        "--config",
        str(subset_cfg),
        "--folds",
        "3",
        "--epochs",
        "1",
        "--run",
        "part",
        "--no-progress",
        cwd=tmp_path,
    )
    assert part.returncode == 0 and "run part trains on a stratified subset of 300 rows" in part.stderr


# ----------------------------------------------------------------------------- 9. the official data from any folder


def test_the_official_data_from_a_fresh_folder(tmp_path, fmnist):
    refused = run_cli("data", "check", cwd=tmp_path)
    assert refused.returncode == 2 and "fkaggle init --official" in refused.stderr
    init = run_cli("init", "--official", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    assert "60000 rows, 10 classes" in init.stdout
    assert (tmp_path / "competition/competition.toml").read_text() == (
        REPO / "competition/competition.toml"
    ).read_text()  # one official config
    check = run_cli("data", "check", "--json", cwd=tmp_path)
    assert check.returncode == 0 and json.loads(check.stdout)["test"]["has_labels"], check.stderr
    again = run_cli("init", "--official", cwd=tmp_path)  # the same config again: nothing to replace
    assert (
        again.returncode == 0
        and (tmp_path / "competition/competition.toml").read_text()
        == (REPO / "competition/competition.toml").read_text()
    )
    (tmp_path / "competition/competition.toml").write_text('[competition]\nname = "mine"\ntrain = "x.csv"\n')
    other = run_cli("init", "--official", cwd=tmp_path)  # another competition's config is never replaced silently
    assert other.returncode == 2 and "--force" in other.stderr
    both = run_cli("init", "--official", "--train", "x.csv", cwd=tmp_path)
    assert both.returncode == 2 and len(both.stderr.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- 10. tables and pictures that say what
# they show


def test_models_show_the_recipes_as_trained_with_speed_measured_here(ws, tmp_path):
    res = run_cli(
        "fold-train",
        *ws["data"],
        "--recipe",
        "cpu",
        "--subset",
        "300",
        "--folds",
        "2",
        "--epochs",
        "1",
        "--run",
        "cpu",
        "-q",
        "--no-progress",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(run_cli("models", "--json", "--workdir", str(tmp_path)).stdout)
    cpu = next(r for r in out["recipes"] if r["recipe"] == "cpu")
    assert cpu["params"] == _manifest(tmp_path, "cpu")["params"] and cpu["model_kwargs"] == {"width": 16}
    assert cpu["images_per_s"] and cpu["images_per_s"] > 0  # measured by the run just trained
    plain = next(r for r in out["models"] if r["model"] == "fmnist_resnet")
    assert (
        plain["params"] != cpu["params"] and plain["images_per_s"] is None
    )  # the default width was never trained here
    text = run_cli("models", "--workdir", str(tmp_path)).stdout
    assert re.search(r"^cpu\s+[\d,]+\s+fmnist_resnet\(width=16\)\s+[\d,]+ img/s measured here", text, re.MULTILINE)


def test_runs_are_listed_best_cv_first_under_a_header(ws):
    lines = run_cli("runs", "--workdir", str(ws["root"])).stdout.splitlines()
    assert lines[0].split()[:3] == ["run", "(best", "CV"]
    cvs = [float(line.split()[3]) for line in lines[1:]]
    assert cvs == sorted(cvs, reverse=True) and len(cvs) >= 3


def test_the_leaderboard_shows_the_top_and_marks_the_users_team(ws, fake_kaggle):
    fake_kaggle.leaderboard = [
        {
            "teamId": i,
            "teamName": "tester" if i == 29 else f"team{i}",
            "score": f"{0.99 - i / 1000:.5f}",
            "submissionDate": "2026-11-21T00:00:00Z",
        }
        for i in range(40)
    ]
    res = run_cli("leaderboard", "--slug", "five-class", "--top", "5", *ws["data"], "--json", env=fake_kaggle.env)
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5, 30] and [r["mine"] for r in rows] == [False] * 5 + [True]
    text = run_cli(
        "leaderboard", "--slug", "five-class", "--top", "5", *ws["data"], env=fake_kaggle.env
    ).stdout.splitlines()
    assert (
        len(text) == 1 + 5 + 2
        and text[-2].strip() == "..."
        and text[-1].split()[:2] == ["30", "tester"]
        and text[-1].endswith("<- your team")
    )


def test_explain_and_drift_say_what_their_pictures_show(ws):
    root = ws["root"]
    ex = json.loads(run_cli("explain", "a", "--layers", "2", "--json", cwd=root).stdout)
    names = [x["name"] for x in ex["layers"]]
    assert len(names) == 2 and "first 2 convolution layer(s)" in ex["title"] and all(n in ex["title"] for n in names)
    dr = run_cli("data", "drift", *ws["data"], "--rows", "200", "--folds", "3", "--workdir", str(root), cwd=root)
    assert dr.returncode == 0, dr.stderr
    drawn = json.loads((root / "oof/data-check/drift.json").read_text())
    listed = [int(m) for m in re.findall(r"(\d+): [01]\.\d\d", dr.stdout.splitlines()[-1])]
    assert listed == drawn["test_like_ids"] and len(listed) == 16  # by the file's ids (1-based rows without)
    assert [r + 1 for r in drawn["test_like_rows"]] == listed


# ----------------------------------------------------------------------------- 11. a README that starts a newcomer


def test_the_readme_leads_with_the_two_commands_then_a_first_competition_that_parses():
    from fmnist_kaggle.cli.main import build_parser

    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.DOTALL)
    assert "make demo" in blocks[0] and "make test" in blocks[0]
    first = readme.index("## Your first competition")
    assert first < readme.index("## The autopilot") < readme.index("## The loop, step by step")
    commands = [shlex.split(line, comments=True) for line in blocks[1].splitlines() if line.strip()]
    assert 3 <= len(commands) <= 6 and commands[0][:2] == ["fkaggle", "init"]
    parser = build_parser()
    for argv in commands:  # each one a command fkaggle accepts as written
        assert argv[0] == "fkaggle" and parser.parse_args(argv[1:]).func
    assert "(docs/results.md)" in readme and "| CV |" in readme  # the headline numbers stay, the tables moved
    assert (REPO / "docs/results.md").read_text().count("\n|") > 30 and len(readme.splitlines()) < 320
