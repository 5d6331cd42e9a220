"""`fkaggle submit / submissions / leaderboard` with the REAL kaggle client against a fake Kaggle on loopback.

The fake Kaggle and how the client reaches it: tests/fake_kaggle.py (the `fake_kaggle` fixture).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time

import numpy as np
import pytest
from conftest import run_cli
from fake_kaggle import competition_zip

from fmnist_kaggle.data.competition import Competition
from fmnist_kaggle.data.submission_file import submission_csv
from fmnist_kaggle.errors import FkaggleError


@pytest.fixture()
def comp_and_file(tmp_path, five_class_npy):
    f = five_class_npy
    comp = Competition(name="five", slug="five-class", train=f["train"], test=f["test"], sample_submission=f["sample"])
    sub = tmp_path / "submissions" / "mine.csv"
    sub.parent.mkdir()
    sub.write_text(submission_csv(comp, np.arange(len(comp.test_set)) % 5))
    digest = hashlib.sha256(sub.read_bytes()).hexdigest()
    (sub.with_suffix(".json")).write_text(
        json.dumps({"file": "mine.csv", "sha256": digest, "cv": {"acc": 0.9, "logloss": 0.3}})
    )
    return comp, sub


def _cli_args(comp: Competition) -> list[str]:
    return ["--train", str(comp.train), "--test", str(comp.test), "--sample-submission", str(comp.sample_submission)]


def test_submit_in_process_records_upload(tmp_path, fake_kaggle, comp_and_file):
    from fmnist_kaggle.submit.uploads import submit_file

    comp, sub = comp_and_file
    res = submit_file(comp, sub, "first try", workdir=tmp_path)
    assert res["ref"] == 1001 and "Successfully" in res["reply"]
    assert fake_kaggle.uploads == [sub.read_bytes()]  # the exact file reached the upload URL
    assert (
        fake_kaggle.created[0]["competitionName"] == "five-class"
        and fake_kaggle.created[0]["submissionDescription"] == "first try"
    )
    assert fake_kaggle.calls[0] == "POST GetSubmissionLimits"  # limits are checked before uploading
    meta = json.loads(sub.with_suffix(".json").read_text())
    assert meta["submissions"][0]["ref"] == 1001 and meta["cv"]["acc"] == 0.9
    hist = (tmp_path / "submissions/history.csv").read_text().splitlines()
    assert hist[0].startswith("time,slug,file,sha256,message,ref,status,reply") and ",1001,submitted," in hist[1]


def test_submit_cli_then_submissions_and_leaderboard(tmp_path, fake_kaggle, comp_and_file):
    comp, sub = comp_and_file
    res = run_cli(
        "submit",
        str(sub),
        "-m",
        "cli try",
        "--slug",
        "five-class",
        "--workdir",
        str(tmp_path),
        *_cli_args(comp),
        env=fake_kaggle.env,
    )
    assert res.returncode == 0, res.stderr
    assert "submitted mine.csv to five-class (ref 1001)" in res.stdout
    lst = run_cli(
        "submissions",
        "--slug",
        "five-class",
        "--workdir",
        str(tmp_path),
        "--json",
        *_cli_args(comp),
        env=fake_kaggle.env,
    )
    assert lst.returncode == 0, lst.stderr
    rows = json.loads(lst.stdout)["submissions"]
    mine = next(r for r in rows if str(r["ref"]) == "1001")
    assert (
        mine["status"] == "complete"
        and mine["public_score"] == 0.9312
        and mine["cv_acc"] == 0.9
        and mine["ref"] == 1001
    )  # CV next to LB, numbers in JSON
    assert any(
        r["ref"] == 7 and r["status"] == "error" and r["cv_acc"] is None for r in rows
    )  # made elsewhere, still listed
    fake_kaggle.submissions.append(
        {
            "ref": 9,
            "fileName": "mine.csv",
            "description": "via the website",
            "status": "COMPLETE",
            "publicScore": "0.91",
            "date": "2026-11-19T10:00:00Z",
        }
    )
    rows = json.loads(
        run_cli(
            "submissions",
            "--slug",
            "five-class",
            "--workdir",
            str(tmp_path),
            "--json",
            *_cli_args(comp),
            env=fake_kaggle.env,
        ).stdout
    )["submissions"]
    assert next(r for r in rows if r["ref"] == 9)["cv_acc"] == 0.9  # uploaded elsewhere, but the file is ours: its CV
    lb = run_cli("leaderboard", "--slug", "five-class", *_cli_args(comp), env=fake_kaggle.env)
    assert lb.returncode == 0, lb.stderr
    assert "team0" in lb.stdout and "0.99000" in lb.stdout


@pytest.mark.parametrize(
    "setup,fragment",
    [
        (lambda k: k.fail.update(StartSubmissionUpload=404), "no competition 'five-class' (HTTP 404)"),
        (lambda k: k.fail.update(GetSubmissionLimits=403), "HTTP 403 competitions.participate"),
        (lambda k: k.fail.update(GetSubmissionLimits=401), "HTTP 401"),
        (
            lambda k: setattr(k, "upload_status", 500),
            "upload failed: Kaggle's storage did not take the file; nothing was submitted",
        ),
        (lambda k: k.limits.update(numAllowedNow=0, numToday=5), "no submissions left today"),
    ],
)
def test_submit_failures_are_one_line_exit_2_records_intact(tmp_path, fake_kaggle, comp_and_file, setup, fragment):
    comp, sub = comp_and_file
    setup(fake_kaggle)
    before = sub.with_suffix(".json").read_text()
    res = run_cli(
        "submit",
        str(sub),
        "-m",
        "x",
        "--slug",
        "five-class",
        "--workdir",
        str(tmp_path),
        *_cli_args(comp),
        env=fake_kaggle.env,
    )
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], res.stderr
    assert "Traceback" not in res.stderr
    assert sub.with_suffix(".json").read_text() == before
    assert not (tmp_path / "submissions/history.csv").exists()
    if "no submissions left" in fragment:
        assert not fake_kaggle.uploads


def test_missing_credentials_and_no_network(tmp_path, fake_kaggle, comp_and_file, monkeypatch):
    comp, sub = comp_and_file
    env = {**fake_kaggle.env, "KAGGLE_CONFIG_DIR": str(tmp_path / "empty")}
    res = run_cli("submit", str(sub), "-m", "x", "--slug", "five-class", *_cli_args(comp), env=env)
    assert res.returncode == 2 and "no Kaggle credentials" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    env = {**fake_kaggle.env, "HTTP_PROXY": f"http://127.0.0.1:{dead}", "http_proxy": f"http://127.0.0.1:{dead}"}
    res = run_cli("leaderboard", "--slug", "five-class", *_cli_args(comp), env=env, timeout=120)
    assert res.returncode == 2 and "cannot reach Kaggle" in res.stderr, res.stderr


def test_invalid_file_is_never_uploaded(tmp_path, fake_kaggle, comp_and_file):
    comp, sub = comp_and_file
    sub.write_text(sub.read_text().replace("Id,Category", "id,label"))
    with pytest.raises(FkaggleError, match="invalid submission, not uploaded"):
        from fmnist_kaggle.submit.uploads import submit_file

        submit_file(comp, sub, "x", workdir=tmp_path)
    assert fake_kaggle.calls == []


def test_dry_run_validates_without_network(tmp_path, comp_and_file):
    comp, sub = comp_and_file
    res = run_cli(
        "submit",
        str(sub),
        "-m",
        "x",
        "--slug",
        "s",
        "--dry-run",
        *_cli_args(comp),
        env={"HTTP_PROXY": "http://127.0.0.1:9"},
    )
    assert res.returncode == 0 and "dry run" in res.stdout


def test_fkaggle_help_does_not_import_kaggle_torch_ray_or_sklearn():
    code = (
        "import sys; from fmnist_kaggle.cli.main import build_parser; build_parser(); "
        "import fmnist_kaggle.data.images, fmnist_kaggle.data.competition; print(sorted(m "
        "for m in ('torch', 'kaggle', 'ray', 'sklearn') if m in sys.modules))"
    )
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ}
    ).stdout.strip()
    assert out == "[]"


# ----------------------------------------------------------------------------- a submit that never hangs and never
# loses a record


def _submit(tmp_path, fake_kaggle, comp, sub, message="try", *extra):
    return run_cli(
        "submit",
        str(sub),
        "-m",
        message,
        "--slug",
        "five-class",
        "--workdir",
        str(tmp_path),
        *_cli_args(comp),
        *extra,
        env=fake_kaggle.env,
    )


def _history(tmp_path) -> list[dict]:
    import csv

    with (tmp_path / "submissions/history.csv").open() as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow  # a real budget or timeout: out of the inner loop (make test-fast)
@pytest.mark.timing
def test_a_stalled_server_ends_in_one_line_within_the_timeout(tmp_path, fake_kaggle, comp_and_file):
    comp, sub = comp_and_file
    fake_kaggle.stall.add("GetSubmissionLimits")
    t0 = time.monotonic()
    res = _submit(tmp_path, fake_kaggle, comp, sub)
    assert res.returncode == 2 and time.monotonic() - t0 < 30
    assert res.stderr.strip().splitlines() == [
        "fkaggle: error: Kaggle did not answer within 2s (FKAGGLE_KAGGLE_TIMEOUT)"
    ]
    assert not fake_kaggle.uploads and not (tmp_path / "submissions/history.csv").exists()
    fake_kaggle.stall = {"ListSubmissions"}
    res = run_cli(
        "submissions", "--slug", "five-class", "--workdir", str(tmp_path), *_cli_args(comp), env=fake_kaggle.env
    )
    assert res.returncode == 0 and "showing local records only" in res.stderr  # falls back to what it knows


def test_a_lost_reply_after_kaggle_stored_the_submission_is_kept_as_unknown_then_reconciled(
    tmp_path, fake_kaggle, comp_and_file
):
    comp, sub = comp_and_file
    assert _submit(tmp_path, fake_kaggle, comp, sub, "first").returncode == 0  # ref 1001
    fake_kaggle.garble.add("CreateSubmission")
    res = _submit(tmp_path, fake_kaggle, comp, sub, "second", "--force")  # the same bytes again: on purpose
    assert res.returncode == 2 and "may have counted" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert [(h["message"], h["status"], h["ref"]) for h in _history(tmp_path)] == [
        ("first", "submitted", "1001"),
        ("second", "unknown", ""),
    ]

    lst = run_cli(
        "submissions",
        "--slug",
        "five-class",
        "--workdir",
        str(tmp_path),
        "--json",
        *_cli_args(comp),
        env=fake_kaggle.env,
    )
    assert lst.returncode == 0, lst.stderr
    second = next(r for r in json.loads(lst.stdout)["submissions"] if r["message"] == "second")
    assert (
        second["ref"] == 1002 and second["status"] == "pending" and second["cv_acc"] == 0.9
    )  # its CV, not a foreign row
    assert [(h["status"], h["ref"]) for h in _history(tmp_path)] == [
        ("submitted", "1001"),
        ("submitted", "1002"),
    ]  # recorded for good
    assert len([r for r in json.loads(lst.stdout)["submissions"] if r["ref"] == 1002]) == 1


def test_429_with_retry_after_is_waited_out_with_a_line_and_every_page_is_read(tmp_path, fake_kaggle, comp_and_file):
    comp, sub = comp_and_file
    fake_kaggle.throttle["CreateSubmission"] = 1
    res = _submit(tmp_path, fake_kaggle, comp, sub)
    assert res.returncode == 0, res.stderr
    assert "Kaggle answered HTTP 429; retrying in 1s (1/3)" in res.stderr and len(fake_kaggle.created) == 1
    fake_kaggle.submissions += [
        {
            "ref": 50 + i,
            "fileName": f"f{i}.csv",
            "description": "old",
            "status": "COMPLETE",
            "publicScore": f"0.{80 + i}",
            "date": "2026-11-01T10:00:00Z",
        }
        for i in range(5)
    ]
    lst = run_cli(
        "submissions",
        "--slug",
        "five-class",
        "--workdir",
        str(tmp_path),
        "--json",
        *_cli_args(comp),
        env=fake_kaggle.env,
    )
    rows = json.loads(lst.stdout)["submissions"]
    assert {r["ref"] for r in rows} == {1001, 7, 50, 51, 52, 53, 54}  # seven pages of one
    assert next(r for r in rows if r["ref"] == 54)["public_score"] == 0.84


# ----------------------------------------------------------------------------- download: the start of the round trip


def test_download_to_leaderboard_round_trip_through_the_cli(tmp_path, fake_kaggle):
    fake_kaggle.files["five-mini.zip"] = competition_zip(tmp_path)
    env = fake_kaggle.env
    res = run_cli("download", "five-mini", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    assert (
        "120 rows, 5 classes, label values [1, 2, 3, 4, 5]" in res.stdout
        and "wrote competition/competition.toml" in res.stdout
    )
    data = tmp_path / "competition/data/five-mini"
    assert sorted(p.name for p in data.iterdir()) == ["sample_submission.csv", "test.csv", "train.csv.zip"]
    cfg = (tmp_path / "competition/competition.toml").read_text()
    assert 'slug = "five-mini"' in cfg and "train.csv.zip" in cfg
    assert (
        run_cli("download", "five-mini", cwd=tmp_path, env=env).returncode == 2
    )  # the config exists: --force to replace

    for args in (
        ["data", "check"],
        [
            "fold-train",
            "--model",
            "lenet5",
            "--folds",
            "2",
            "--epochs",
            "2",
            "--batch-size",
            "16",
            "--run",
            "r",
            "--no-progress",
        ],
        ["blend", "r", "--name", "sub"],
    ):
        step = run_cli(*args, cwd=tmp_path, env=env)
        assert step.returncode == 0, (args, step.stderr)
    sub = tmp_path / "submissions/sub.csv"
    assert sub.read_text().splitlines()[0] == "Id,Category"
    res = run_cli("submit", str(sub), "-m", "round trip", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    rows = json.loads(run_cli("submissions", "--json", cwd=tmp_path, env=env).stdout)["submissions"]
    mine = next(r for r in rows if r["message"] == "round trip")
    assert (
        mine["ref"] == 1001
        and mine["public_score"] == 0.9312
        and mine["cv_acc"] == json.loads((tmp_path / "submissions/sub.json").read_text())["cv"]["acc"]
    )
    assert fake_kaggle.uploads[-1] == sub.read_bytes()


@pytest.mark.parametrize(
    "setup,fragment",
    [
        (lambda k: k.fail.update(DownloadDataFiles=403), "https://www.kaggle.com/competitions/five-mini/rules"),
        (lambda k: k.files.clear(), "no competition 'five-mini' (HTTP 404)"),
        (lambda k: k.fail.update(DownloadDataFiles=401), "HTTP 401"),
        (lambda k: k.throttle.update(DownloadDataFiles=9), "rate-limiting this account (HTTP 429)"),
        (lambda k: k.stall.add("DownloadDataFiles"), "did not answer within 2s"),
    ],
)
def test_download_failures_are_one_line_and_leave_nothing(tmp_path, fake_kaggle, setup, fragment):
    fake_kaggle.files["five-mini.zip"] = competition_zip(tmp_path)
    setup(fake_kaggle)
    res = run_cli("download", "five-mini", cwd=tmp_path, env={**fake_kaggle.env, "FKAGGLE_KAGGLE_MAX_WAIT": "0.2"})
    assert res.returncode == 2, res.stdout + res.stderr
    errors = [line for line in res.stderr.strip().splitlines() if line.startswith("fkaggle: error:")]
    assert len(errors) == 1 and fragment in errors[0] and "Traceback" not in res.stderr, res.stderr
    assert not (tmp_path / "competition").exists()


def test_a_competition_zip_given_as_train_says_what_it_is(tmp_path):
    (tmp_path / "five-mini.zip").write_bytes(competition_zip(tmp_path))
    res = run_cli("data", "check", "--train", str(tmp_path / "five-mini.zip"), cwd=tmp_path)
    assert (
        res.returncode == 2
        and "a zip of 3 files (train.csv.zip, test.csv, sample_submission.csv): a whole competition download"
        in res.stderr
    )


@pytest.mark.slow
@pytest.mark.parametrize("args", [["submissions", "--local", "--json"], ["models"], ["runs"]])
def test_a_reader_that_goes_away_is_no_error(tmp_path, comp_and_file, args):
    """`fkaggle ... | head`: the pipe closes before the output is written; no traceback."""
    import subprocess
    import sys

    comp, _ = comp_and_file
    extra = _cli_args(comp) if args[0] == "submissions" else []
    p = subprocess.Popen(
        [sys.executable, "-m", "fmnist_kaggle.cli", *args, *extra],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(60) == 0 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_download_without_network_is_one_line(tmp_path, fake_kaggle):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    env = {**fake_kaggle.env, "HTTP_PROXY": f"http://127.0.0.1:{dead}", "http_proxy": f"http://127.0.0.1:{dead}"}
    res = run_cli("download", "five-mini", cwd=tmp_path, env=env, timeout=120)
    assert res.returncode == 2 and res.stderr.strip().splitlines()[-1].startswith(
        "fkaggle: error: cannot reach Kaggle"
    ), res.stderr
    assert not (tmp_path / "competition").exists()


@pytest.mark.parametrize(
    "members,env,fragment",
    [
        ({".hidden": b"x", "train.csv": b"label\n1\n"}, {}, "zip member '.hidden' has no plain file name"),
        (
            {"train.csv": b"0" * 3_000_000},
            {"FKAGGLE_MAX_INPUT_BYTES": "1000000"},
            "zip member train.csv is 3,000,000 bytes, above the 1,000,000-byte limit",
        ),
    ],
)
def test_a_hostile_competition_zip_is_refused_before_anything_is_written(tmp_path, fake_kaggle, members, env, fragment):
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    fake_kaggle.files["five-mini.zip"] = buf.getvalue()
    res = run_cli("download", "five-mini", cwd=tmp_path, env={**fake_kaggle.env, **env})
    assert res.returncode == 2 and fragment in res.stderr.strip().splitlines()[-1], res.stderr
    assert not (tmp_path / "competition").exists()


def test_zip_members_with_folders_or_dot_dots_land_inside_the_data_folder(tmp_path, fake_kaggle):
    import io
    import zipfile

    good = zipfile.ZipFile(io.BytesIO(competition_zip(tmp_path)))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for info in good.infolist():
            z.writestr(info.filename, good.read(info))
        z.writestr("../../evil.txt", b"x")
        z.writestr("nested/dir/readme.txt", b"y")
    fake_kaggle.files["five-mini.zip"] = buf.getvalue()
    res = run_cli("download", "five-mini", cwd=tmp_path, env=fake_kaggle.env)
    assert res.returncode == 0, res.stderr
    data = tmp_path / "competition/data/five-mini"
    assert (data / "evil.txt").read_bytes() == b"x" and (data / "readme.txt").read_bytes() == b"y"
    outside = [p for p in tmp_path.parent.rglob("evil.txt") if data not in p.parents]
    assert not outside and not (data / "nested").exists()


def test_a_zipped_csv_that_expands_past_the_limit_is_refused(tmp_path):
    import zipfile

    bomb = tmp_path / "train.csv.zip"  # 3 MB of text in a few kB
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("train.csv", "label," + "0" * 3_000_000)
    assert bomb.stat().st_size < 50_000
    res = run_cli("data", "check", "--train", str(bomb), cwd=tmp_path, env={"FKAGGLE_MAX_INPUT_BYTES": "1000000"})
    assert (
        res.returncode == 2
        and "train.csv decompresses to 3,000,006 bytes, above the 1,000,000-byte limit" in res.stderr
    ), res.stderr


def test_auto_downloads_trains_and_submits_once(tmp_path, fake_kaggle):
    from test_auto import FIXED

    fake_kaggle.files["five-mini.zip"] = competition_zip(tmp_path)
    (tmp_path / "fixed.toml").write_text(FIXED)
    args = [
        "auto",
        "five-mini",
        "--portfolio",
        "fixed.toml",
        "--time-limit",
        "2m",
        "--submit",
        "-m",
        "autopilot",
        "--no-progress",
        "--json",
    ]
    res = run_cli(*args, cwd=tmp_path, env=fake_kaggle.env)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    sub = tmp_path / out["submission"]
    assert sub.read_text().splitlines()[0] == "Id,Category" and fake_kaggle.uploads == [sub.read_bytes()]
    assert out["uploaded"]["status"] == "submitted" and fake_kaggle.created[0]["submissionDescription"] == "autopilot"
    history = (tmp_path / "submissions/history.csv").read_text()
    assert "auto.csv" in history and "autopilot" in history

    again = run_cli(
        *args, cwd=tmp_path, env=fake_kaggle.env
    )  # resumed: nothing left to train, the same file is not sent twice
    assert again.returncode == 0, again.stderr
    assert "already uploaded by this autopilot" in again.stderr and len(fake_kaggle.uploads) == 1
