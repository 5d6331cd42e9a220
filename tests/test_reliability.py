"""Nothing lost, nothing hung, nothing trusted unchecked (issue 26): every check that can fail
runs before anything is written or removed, a replacement is staged and swapped in only when
checked, a submission is created once and every wait is bounded, every workspace file is read
through one guarded, schema-checked reader, checkpoints carry their unit's identity and resume
exactly, numbers and settings are checked before use, and zip extraction is bounded. Each case
through the CLI: exit 2, one line naming the file or option, no traceback, and a sentinel file
and a finished run in the workspace unchanged (by content hash)."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import run_cli, synthetic_images, write_csv
from fake_kaggle import competition_zip

TINY = ("--model", "lenet5", "--folds", "2", "--epochs", "1", "--batch-size", "32", "--no-progress")


def _tree(root: Path) -> dict[str, str]:
    """Every file under root (links not followed) with its content hash."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def _one_line(res, fragment: str) -> None:
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace with a finished run and a sentinel file; the tests that share it must leave it as it was."""
    tmp_path = tmp_path_factory.mktemp("reliability")
    x, y = synthetic_images(12)
    data = [
        "--train",
        str(write_csv(tmp_path / "train.csv", x, y)),
        "--test",
        str(write_csv(tmp_path / "test.csv", *synthetic_images(3, seed=1))),
    ]
    assert run_cli("fold-train", *data, *TINY, "--run", "good", "-q", cwd=tmp_path).returncode == 0
    (tmp_path / "oof" / "sentinel.txt").write_text("keep me")
    return tmp_path, data


def _junk(folder: Path) -> str:
    folder.mkdir(exist_ok=True)
    path = folder / "junk.pt"
    path.write_bytes(os.urandom(256))
    return str(path)


def _fifo(folder: Path) -> str:
    folder.mkdir(exist_ok=True)
    path = folder / "weights.fifo"
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    return str(path)


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--run", "good", "--overwrite", "--model-arg", "foo=1"], "unexpected keyword argument 'foo'"),
        (["--run", "ma", "--model-arg", "foo=1"], "unexpected keyword argument 'foo'"),
        (["--run", "w", "--model", "fmnist_resnet", "--model-arg", "width=-3"], "negative dimension"),
        (["--run", "p", "--model", "timm:resnet18", "--pretrained", "{fifo}"], "not a regular file"),
        (["--run", "p", "--model", "timm:resnet18", "--pretrained", "/dev/zero"], "not a regular file"),
        (["--run", "p", "--model", "timm:resnet18", "--pretrained", "{junk}"], "not a readable weights file"),
        (["--run", "x" * 300], "300 characters, at most 120"),
        (["--run", "cu", "--device", "cuda"], "CUDA is not available"),
    ],
)
def test_a_refused_fold_train_writes_and_removes_nothing(ws, args, fragment):
    root, data = ws
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("CUDA is available here: the refusal needs a machine without it")
    args = [
        a.format(fifo=_fifo(root / "in") if "{fifo}" in a else "", junk=_junk(root / "in") if "{junk}" in a else "")
        for a in args
    ]
    before = _tree(root / "oof")
    res = run_cli("fold-train", *data, *TINY, *args, cwd=root, timeout=120)
    _one_line(res, fragment)
    assert _tree(root / "oof") == before and sorted(p.name for p in (root / "oof").iterdir()) == [
        "folds",
        "good",
        "sentinel.txt",
    ]
    if args[1] == "ma":  # the name is not blocked: the corrected command runs
        assert run_cli("fold-train", *data, *TINY, "--run", "ma", "-q", cwd=root).returncode == 0
        shutil.rmtree(root / "oof/ma")


def test_overwrite_swaps_in_a_complete_new_run_and_leaves_no_staging(tmp_path):
    x, y = synthetic_images(12)
    root, data = tmp_path, ["--train", str(write_csv(tmp_path / "train.csv", x, y))]
    assert run_cli("fold-train", *data, *TINY, "--run", "good", "-q", cwd=root).returncode == 0
    (root / "oof" / "sentinel.txt").write_text("keep me")
    old = (root / "oof/good/manifest.json").read_text()
    res = run_cli("fold-train", *data, *TINY, "--lr", "0.003", "--run", "good", "--overwrite", cwd=root)
    assert res.returncode == 0 and "--overwrite: replaced the run" in res.stderr, res.stderr
    assert (root / "oof/good/manifest.json").read_text() != old and (root / "oof/sentinel.txt").read_text() == "keep me"
    assert not [p for p in (root / "oof").iterdir() if p.name.startswith(".")]  # no staging folder left


@pytest.mark.parametrize(
    "line,fragment",
    [
        ("epochs = 2.5", "epochs must be a whole number, got 2.5"),
        ('seeds = "01"', "seeds must be a list of whole numbers"),
        ("folds = 2.0", "folds must be a whole number, got 2.0"),
        ("lr = true", "lr must be a number"),
    ],
)
def test_wrongly_typed_config_values_are_one_line_before_any_write(ws, line, fragment):
    root, data = ws
    cfg = root / "bad.toml"
    cfg.write_text(f'[train]\nmodel = "lenet5"\n{line}\n')
    before = _tree(root / "oof")
    _one_line(run_cli("fold-train", *data, "--config", str(cfg), "--run", "typed", cwd=root), fragment)
    assert _tree(root / "oof") == before


def test_options_and_settings_that_are_not_numbers_are_refused_in_one_line(ws):
    root, data = ws
    before = _tree(root / "oof")
    _one_line(run_cli("fold-train", *data, *TINY, "--seeds", "0,0", "--run", "twice", cwd=root), "different seeds")
    _one_line(run_cli("fold-train", *data, *TINY, "--fold-seed=-1", "--run", "neg", cwd=root), "fold_seed must be >= 0")
    _one_line(
        run_cli("sweep", *data, "--model", "lenet5", "--grid", "epochs=1.5", "--folds", "2", "--name", "s", cwd=root),
        "epochs must be a whole number, got 1.5",
    )
    assert _tree(root / "oof") == before
    _one_line(
        run_cli("runs", cwd=root, env={"FKAGGLE_MAX_INPUT_BYTES": "abc"}),
        "FKAGGLE_MAX_INPUT_BYTES must be a positive whole number",
    )
    for key, value in (("train", "123"), ("data_dirs", "[1]"), ("class_names", "5")):
        comp = root / "comp.toml"
        comp.write_text(f"[competition]\n{key} = {value}\n")
        _one_line(run_cli("data", "check", "--competition", str(comp), cwd=root), f"comp.toml: {key} must be")


def test_labels_and_idx_headers_that_overflow_are_refused(tmp_path):
    x, y = synthetic_images(3)
    for bad in ("inf", "1e20"):
        path = write_csv(tmp_path / f"{bad}.csv", x, y)
        lines = path.read_text().splitlines()
        lines[1] = bad + lines[1][lines[1].index(",") :]
        path.write_text("\n".join(lines) + "\n")
        _one_line(run_cli("data", "check", "--train", str(path), cwd=tmp_path), "is not a class label")
    idx = tmp_path / "images.idx"
    idx.write_bytes(bytes([0, 0, 8, 4]) + struct.pack(">4I", *[65536] * 4))  # 2**64 items: an int64 product wraps to 0
    _one_line(run_cli("data", "check", "--train", str(idx), "--train-labels", str(idx), cwd=tmp_path), "above the")


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_download_force_keeps_the_good_files_when_the_new_ones_fail_their_checks(tmp_path, fake_kaggle):
    fake_kaggle.files["five-mini.zip"] = competition_zip(tmp_path)
    assert run_cli("download", "five-mini", cwd=tmp_path, env=fake_kaggle.env).returncode == 0
    comp = tmp_path / "competition"
    before = _tree(comp)
    fake_kaggle.files["five-mini.zip"] = _zip(
        {"train.csv": b"label," + ",".join(f"pixel{i}" for i in range(1, 785)).encode() + b"\n", "test.csv": b"x"}
    )
    res = run_cli("download", "five-mini", "--force", cwd=tmp_path, env=fake_kaggle.env)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    after = _tree(comp)
    assert {k: v for k, v in after.items() if "/.download/" not in k} == {
        k: v for k, v in before.items() if "/.download/" not in k
    }  # data and config as they were
    assert not (comp / "data/five-mini/.staging").exists()


@pytest.mark.parametrize(
    "members,env,fragment",
    [
        (
            {f"part{i}.csv": bytes(8 << 20) for i in range(4)},
            {},
            "above 200x: a decompression bomb?",
        ),  # 32 MiB of zeros in ~32 KB
        (
            {f"part{i}.csv": os.urandom(400_000) for i in range(3)},
            {"FKAGGLE_MAX_INPUT_BYTES": "1000000"},
            "zip members total 1,200,000 bytes, above the 1,000,000-byte limit",
        ),
    ],
)
def test_a_zip_bomb_is_refused_before_anything_is_written(tmp_path, fake_kaggle, members, env, fragment):
    fake_kaggle.files["five-mini.zip"] = _zip(members)
    res = run_cli("download", "five-mini", cwd=tmp_path, env={**fake_kaggle.env, **env})
    assert res.returncode == 2 and fragment in res.stderr.strip().splitlines()[-1], res.stderr
    assert not (tmp_path / "competition").exists()


# ----------------------------------------------------------------------------- a submit that is never repeated, every
# wait bounded


def _submission(tmp_path: Path) -> tuple[list[str], Path]:
    import json

    import numpy as np

    x, y = synthetic_images(3, k=5)
    train, test = (
        write_csv(tmp_path / "train.csv", x, y + 1),
        write_csv(tmp_path / "test.csv", x[:5], ids=np.arange(1, 6)),
    )
    sub = tmp_path / "submissions" / "mine.csv"
    sub.parent.mkdir()
    sub.write_text("Id,Label\n" + "".join(f"{i},{1 + i % 5}\n" for i in range(1, 6)))
    sub.with_suffix(".json").write_text(
        json.dumps(
            {
                "file": "mine.csv",
                "sha256": hashlib.sha256(sub.read_bytes()).hexdigest(),
                "cv": {"acc": 0.9, "logloss": 0.3},
            }
        )
    )
    return ["--train", str(train), "--test", str(test), "--slug", "five-class", "--workdir", str(tmp_path)], sub


def _history(tmp_path: Path) -> list[dict]:
    import csv

    with (tmp_path / "submissions/history.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_a_create_that_fails_after_kaggle_stored_it_is_sent_once_and_kept_as_unknown(tmp_path, fake_kaggle):
    args, sub = _submission(tmp_path)
    fake_kaggle.submissions = []  # Kaggle's list: what this test's create stores
    fake_kaggle.act_then_fail["CreateSubmission"] = 500
    res = run_cli("submit", str(sub), "-m", "once", *args, env=fake_kaggle.env)
    _one_line(res, "may have counted")
    assert len(fake_kaggle.created) == 1  # never retried: one daily slot, not four
    assert [(h["message"], h["status"]) for h in _history(tmp_path)] == [("once", "unknown")]
    fake_kaggle.act_then_fail.clear()
    assert run_cli("submissions", *args, env=fake_kaggle.env).returncode == 0  # matched in Kaggle's list
    assert [(h["status"], h["ref"]) for h in _history(tmp_path)] == [("submitted", "1001")]


@pytest.mark.slow
@pytest.mark.timing
def test_a_stalled_upload_ends_within_the_deadline_and_nothing_counts(tmp_path, fake_kaggle):
    import time

    args, sub = _submission(tmp_path)
    fake_kaggle.stall_upload = True
    t0 = time.monotonic()
    res = run_cli("submit", str(sub), "-m", "stalled", *args, env={**fake_kaggle.env, "FKAGGLE_KAGGLE_DEADLINE": "6"})
    assert time.monotonic() - t0 < 40
    _one_line(res, "nothing was submitted")
    assert not fake_kaggle.created and not (tmp_path / "submissions/history.csv").exists()


@pytest.mark.slow
@pytest.mark.timing
def test_a_server_that_drips_bytes_ends_within_the_deadline(tmp_path, fake_kaggle):
    import time

    args, _ = _submission(tmp_path)
    fake_kaggle.drip.add("GetLeaderboard")
    t0 = time.monotonic()
    res = run_cli("leaderboard", *args[:-2], env={**fake_kaggle.env, "FKAGGLE_KAGGLE_DEADLINE": "5"})
    assert time.monotonic() - t0 < 30
    _one_line(res, "no complete answer within 5s (FKAGGLE_KAGGLE_DEADLINE)")


@pytest.mark.timing
def test_a_ray_address_that_is_malformed_unreachable_or_not_ray_is_one_line_within_seconds(ws):
    import http.server
    import threading
    import time

    root, data = ws

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # the CLI's stderr is this process's while it runs
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)  # answers, but is no Ray cluster
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    before = _tree(root / "oof")
    cases = [
        (["--address", "127.0.0.9:1"], {}, "cannot reach the Ray cluster at 127.0.0.9:1 (Connection refused"),
        ([], {"RAY_ADDRESS": "garbage"}, "RAY_ADDRESS 'garbage' is not a Ray address"),
        (["--address", "127.0.0.2:99999"], {}, "--address '127.0.0.2:99999' is not a Ray address"),
        (["--address", f"127.0.0.1:{server.server_address[1]}"], {}, "but not a Ray cluster (no gRPC)"),
    ]
    try:
        for args, env, fragment in cases:
            t0 = time.monotonic()
            res = run_cli(
                "fold-train",
                *data,
                *TINY,
                "--executor",
                "ray",
                *args,
                "--run",
                "remote",
                cwd=root,
                env=env,
                timeout=120,
            )
            assert time.monotonic() - t0 < 60  # Ray alone retries for minutes
            _one_line(res, fragment)
    finally:
        server.shutdown()
    assert _tree(root / "oof") == before and not (root / "oof/remote").exists()


# ----------------------------------------------------------------------------- one guarded, schema-checked reader


@pytest.fixture
def copy(ws, tmp_path):
    """A private copy of the shared workspace (these tests plant things in it)."""
    root, data = ws
    shutil.copytree(root / "oof", tmp_path / "oof", symlinks=True)
    return tmp_path, data


def _plant_fifo(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path)


SLUG = ("--slug", "mine")


def _blend(root: Path, data: list[str]) -> Path:
    assert run_cli("blend", "good", "--name", "b", *data, "-q", cwd=root).returncode == 0
    return root / "submissions"


@pytest.mark.parametrize(
    "planted",
    ["oof/good/manifest.json", "oof/good/fold_0/metrics.json", "submissions/history.csv", "submissions/b.json"],
)
def test_a_fifo_planted_in_the_workspace_is_one_line_never_a_hang(copy, planted):
    root, data = copy
    subs = _blend(root, data)
    (subs / "history.csv").write_text("time,file,sha256,status\n")
    _plant_fifo(root / planted)
    status = run_cli("status", "good", "--json", cwd=root, timeout=60)
    local = run_cli("submissions", "--local", *data, *SLUG, cwd=root, timeout=60)
    dry = run_cli("submit", str(subs / "b.csv"), "-m", "x", "--dry-run", *data, *SLUG, cwd=root, timeout=60)
    runs = run_cli("runs", cwd=root, timeout=60)
    assert runs.returncode == 0 and "good" in runs.stdout, runs.stderr  # listed, with its problem when broken
    if planted == "oof/good/manifest.json":
        _one_line(status, "manifest.json: run manifest is not a regular file")
        assert "not a regular file" in runs.stdout
    elif planted.endswith("metrics.json"):  # the fold is corrupt: status says so and carries on
        import json

        assert status.returncode == 1 and json.loads(status.stdout)["fold_status"]["0"] == "corrupt", (
            status.stderr
        )  # 1: incomplete
    elif planted.endswith("history.csv"):
        _one_line(local, "history.csv: CSV record is not a regular file")
        _one_line(dry, "history.csv: CSV record is not a regular file")
    else:
        _one_line(dry, "b.json: submission record is not a regular file")


def test_nothing_the_workspace_reads_or_writes_follows_a_link_out_of_it(copy, tmp_path_factory):
    root, data = copy
    outside = tmp_path_factory.mktemp("outside")
    (outside / "history.csv").write_text("time,file,sha256,status\n2026-01-01,theirs.csv,abc,submitted\n")
    before = _tree(outside)
    assert run_cli("fold-train", *data, *TINY, "--run", "half", "--fold", "0", "-q", cwd=root).returncode == 0
    (root / "oof/half/fold_1").symlink_to(outside, target_is_directory=True)
    _one_line(
        run_cli("fold-train", *data, *TINY, "--run", "half", cwd=root), "fold_1: a symbolic link out of the workspace"
    )
    subs = _blend(root, data)
    (subs / "history.csv").symlink_to(outside / "history.csv")
    _one_line(
        run_cli("submissions", "--local", *data, *SLUG, cwd=root), "history.csv: a symbolic link out of the workspace"
    )
    _one_line(
        run_cli("submit", str(subs / "b.csv"), "-m", "x", "--dry-run", *data, *SLUG, cwd=root),
        "history.csv: a symbolic link out of the workspace",
    )
    (subs / "history.csv").unlink()
    (root / "oof/good/fold_0/seed_0.json").rename(outside / "seed_0.json")
    (root / "oof/good/fold_0/seed_0.json").symlink_to(
        outside / "seed_0.json"
    )  # a link inside the run: never followed either
    _one_line(
        run_cli("predict", "good", "--test", data[3], "--name", "p", cwd=root),
        "seed_0.json: seed summary is a symbolic link",
    )
    assert (
        _tree(outside) == {**before, "seed_0.json": _tree(outside)["seed_0.json"]} and len(list(outside.iterdir())) == 2
    )


def _edit_manifest(path: Path, change) -> None:
    import json

    m = json.loads(path.read_text())
    change(m)
    path.write_text(json.dumps(m))


@pytest.mark.parametrize(
    "change,fragment",
    [
        (lambda m: m.pop("identity"), "malformed run manifest: top level: 'identity' is a required property"),
        (lambda m: m["data"].update(folds="2"), "malformed run manifest: data.folds: '2' is not of type 'integer'"),
        (
            lambda m: m["data"].update(folds=10**12),
            "malformed run manifest: data.folds: 1000000000000 is greater than the maximum of 1000",
        ),
        (
            lambda m: m["files"]["folds.npy"].pop("bytes"),
            "malformed run manifest: files.folds.npy: 'bytes' is a required property",
        ),
        (
            lambda m: m["files"]["folds.npy"].update(bytes="x"),
            "malformed run manifest: files.folds.npy.bytes: 'x' is not of type 'integer'",
        ),
    ],
)
def test_a_malformed_manifest_is_one_line_and_listed_as_broken(copy, change, fragment):
    root, data = copy
    _edit_manifest(root / "oof/good/manifest.json", change)
    _one_line(run_cli("status", "good", cwd=root, timeout=60), fragment)
    _one_line(run_cli("blend", "good", "--name", "b", *data, cwd=root, timeout=60), fragment)
    runs = run_cli("runs", cwd=root, timeout=60)
    assert runs.returncode == 0 and fragment in runs.stdout, runs.stdout + runs.stderr


def test_non_utf8_records_and_an_edited_csv_cache_are_caught(copy):
    root, data = copy
    subs = _blend(root, data)
    (subs / "history.csv").write_bytes(b"time,file\n\xff\xfe,b.csv\n")
    _one_line(run_cli("submissions", "--local", *data, *SLUG, cwd=root), "history.csv: CSV record is not UTF-8 text")
    import json

    import numpy as np

    from fmnist_kaggle.data.formats.csv import CACHE_VERSION

    first = run_cli("data", "check", *data, "--json", cwd=root)
    [cache] = Path(os.environ["FKAGGLE_CACHE"]).glob(
        f"csv-v{CACHE_VERSION}-{hashlib.blake2b(Path(data[1]).read_bytes(), digest_size=16).hexdigest()}.npz"
    )
    with np.load(cache) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["targets"] = np.zeros_like(arrays["targets"])  # every row now class 0, its recorded hash kept
    with cache.open("wb") as fh:
        np.savez(fh, **arrays)
    second = run_cli("data", "check", *data, "--json", cwd=root)
    assert second.returncode == 0 and "does not match its recorded hash" in second.stderr, second.stderr
    assert json.loads(second.stdout) == json.loads(first.stdout)  # the CSV parsed again, not the edited cache


# ----------------------------------------------------------------------------- checkpoints and model files


def test_a_checkpoint_of_another_unit_is_discarded_and_the_fold_trains(copy):
    import numpy as np

    root, data = copy
    args = [*data, "--model", "lenet5", "--folds", "2", "--epochs", "2", "--batch-size", "32", "--no-progress"]
    assert run_cli("fold-train", *args, "--run", "clean", "-q", cwd=root).returncode == 0
    assert run_cli("fold-train", *args, "--run", "forged", "--fold", "1", "-q", cwd=root).returncode == 0
    fold = root / "oof/forged/fold_0"
    fold.mkdir()
    from fmnist_kaggle.models import create_model

    model = create_model("lenet5", num_classes=10, in_chans=1)  # arbitrary weights, loadable: only the tag tells
    history = [
        {"fold": 0, "seed": 0, "epoch": e, "train_loss": 0.1, "train_acc": 0.99, "val_loss": 0.1, "val_acc": 0.99}
        for e in (1, 2)
    ]
    state = {"epoch": 2, "history": history, "best_loss": 0.0, "best_epoch": 2, "best_state": None, "bad_epochs": 0}
    torch.save(
        {
            "model": model.state_dict(),
            "opt": torch.optim.Adam(model.parameters()).state_dict(),
            "scaler": {},
            "state": state,
        },
        fold / "checkpoint_seed_0.pt",
    )
    res = run_cli("fold-train", *args, "--run", "forged", cwd=root)
    assert (
        res.returncode == 0
        and "unusable checkpoint" in res.stderr
        and "belongs to another run, fold or seed" in res.stderr
    ), res.stderr
    assert "resuming after epoch" not in res.stderr
    assert np.array_equal(
        np.load(root / "oof/forged/oof_logits.npy"), np.load(root / "oof/clean/oof_logits.npy")
    )  # trained, as an untouched run


@pytest.mark.parametrize(
    "model",
    [
        ["--model", "seed000_bncnn"],
        ["--recipe", "fast", "--lookahead", "0.9", "--model-arg", "width=4"],
        ["--recipe", "fast", "--augment", "altflip-cutout", "--tta", "--model-arg", "width=4"],
    ],
    ids=["dropout", "fast-lookahead-whitening", "augmented-alternating-flip-cutout-tta"],
)
@pytest.mark.slow
def test_a_run_killed_mid_fold_resumes_exactly_with_dropout(tmp_path, model):
    import signal
    import subprocess
    import sys
    import time

    import numpy as np

    x, y = synthetic_images(60)
    args = [
        "fold-train",
        "--train",
        str(write_csv(tmp_path / "train.csv", x, y)),
        *model,
        "--folds",
        "2",
        "--epochs",
        "4",
        "--batch-size",
        "32",
        "--no-progress",
    ]
    assert run_cli(*args, "--run", "whole", "-q", cwd=tmp_path).returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "fmnist_kaggle.cli", *args, "--run", "killed"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoint = tmp_path / "oof/killed/fold_0/checkpoint_seed_0.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # inside fold 0's second epoch
    proc.wait()
    assert checkpoint.exists(), "the run finished before a checkpoint was seen"
    res = run_cli(*args, "--run", "killed", cwd=tmp_path)
    assert res.returncode == 0 and "resuming after epoch" in res.stderr, res.stderr
    for name in ("oof_logits.npy", "test_logits.npy"):
        if (tmp_path / "oof/whole" / name).exists():
            assert (tmp_path / "oof/killed" / name).read_bytes() == (tmp_path / "oof/whole" / name).read_bytes()
    assert np.load(tmp_path / "oof/killed/oof_logits.npy").shape == (600, 10)


def test_a_pickle_payload_as_a_model_file_is_one_line_and_never_runs(copy):
    import json
    import pickle

    root, data = copy
    marker = root / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    model = root / "oof/good/fold_0/model_seed_0.pt"
    model.write_bytes(pickle.dumps(Payload()))
    summary = root / "oof/good/fold_0/seed_0.json"
    s = json.loads(summary.read_text())
    s["artifacts"][model.name].update(
        bytes=model.stat().st_size, sha256=hashlib.sha256(model.read_bytes()).hexdigest()
    )  # its record rewritten to match
    summary.write_text(json.dumps(s))
    _one_line(
        run_cli("predict", "good", "--test", data[3], "--name", "p", cwd=root),
        "model_seed_0.pt: not a weights-only PyTorch model file (UnpicklingError); never executed",
    )
    assert not marker.exists() and not (root / "oof/p").exists()
