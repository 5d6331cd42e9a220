"""A run folder you can trust, tried as an adversarial user would, through the CLI.

Every refusal is one line on stderr, exit status 2, no traceback, and nothing written or
lost elsewhere: each test keeps a sentinel file and a finished run in the workspace and
checks they survive.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from fmnist_kaggle.runs.driver import train_folds
from fmnist_kaggle.training.config import build_config

TINY = dict(
    model="lenet5",
    folds=2,
    epochs=1,
    batch_size=32,
    lr=2e-3,
    optimizer="adam",
    schedule="constant",
    eval_batch_size=256,
)
CLI_TINY = [
    "--model",
    "lenet5",
    "--folds",
    "2",
    "--epochs",
    "1",
    "--batch-size",
    "32",
    "--lr",
    "0.002",
    "--optimizer",
    "adam",
    "--schedule",
    "constant",
    "--no-progress",
]


@pytest.fixture(autouse=True)
def _outside_the_repo(tmp_path, monkeypatch):
    """CLI calls run where no competition/competition.toml is found: only the given files count."""
    monkeypatch.chdir(tmp_path)


def _train_keep(root: Path) -> None:
    from conftest import synthetic_images, write_csv

    from fmnist_kaggle.data.competition import Competition

    data = root.parent / f"{root.name}-data"  # the run records where its data came from: kept for the session
    data.mkdir()
    x, y = synthetic_images(20)
    comp = Competition(
        name="synth",
        train=write_csv(data / "train.csv", x, y),
        test=write_csv(data / "test.csv", *synthetic_images(5, seed=1)),
    )
    train_folds(comp, build_config(**TINY), run="keep", workdir=str(root), progress=False)


@pytest.fixture()
def ws(tmp_path, synth, built):
    """A workspace holding a finished run `keep` (trained once per session on `synth`'s data) and
    a sentinel file next to oof/."""
    root = built("trust-keep", _train_keep, tmp_path / "ws")
    (root / "sentinel.txt").write_text("precious")
    return root


def data_args(comp) -> list[str]:
    return ["--train", str(comp.train), "--test", str(comp.test)]


def snapshot(root: Path) -> dict[str, str]:
    """Content hash of every file under root: what 'nothing written or lost' is checked against."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def refused(res, *fragments: str) -> None:
    """One error line (after any log lines of work done before it), exit 2, no traceback, naming what is wrong."""
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("fkaggle: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""
    for f in fragments:
        assert f in errors[0], (f, errors[0])


# ----------------------------------------------------------------------------- names never leave their folder


@pytest.mark.parametrize("name", ["..", "../x", "/tmp/abs-run", "a/b", ".hidden", "folds", "sweeps", "cv", ""])
def test_run_names_that_would_leave_oof_are_refused_and_overwrite_deletes_nothing(ws, synth, name):
    before = snapshot(ws.parent)
    res = run_cli("fold-train", *data_args(synth), *CLI_TINY, "--run", name, "--overwrite", "--workdir", str(ws))
    refused(res, "invalid run name")
    assert snapshot(ws.parent) == before  # the sentinel, the other run and everything above oof/ are untouched


@pytest.mark.parametrize(
    "cmd,name", [("blend", "../x"), ("blend", "history"), ("blend", "/tmp/x"), ("sweep", "../../x")]
)
def test_blend_and_sweep_names_are_one_component(ws, synth, cmd, name):
    before = snapshot(ws.parent)
    args = (
        ["blend", "keep", "--name", name]
        if cmd == "blend"
        else ["sweep", *CLI_TINY, "--grid", "lr=1e-3", "--name", name]
    )
    res = run_cli(*args, *data_args(synth), "--workdir", str(ws))
    refused(res, "name")
    assert snapshot(ws.parent) == before


def test_overwrite_only_removes_a_folder_whose_manifest_names_the_run(ws, synth):
    stranger = ws / "oof" / "mine"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("not a run")
    res = run_cli("fold-train", *data_args(synth), *CLI_TINY, "--run", "mine", "--overwrite", "--workdir", str(ws))
    refused(res, "without a run manifest")
    assert (stranger / "notes.txt").read_text() == "not a run"
    # a run whose manifest names another run is not deleted either
    shutil.copytree(ws / "oof" / "keep", ws / "oof" / "other")
    res = run_cli(
        "fold-train",
        *data_args(synth),
        *CLI_TINY,
        "--lr",
        "0.01",
        "--run",
        "other",
        "--overwrite",
        "--workdir",
        str(ws),
    )
    refused(res, "manifest names 'keep'")
    assert (ws / "oof/other/manifest.json").exists() and (ws / "oof/keep/oof_logits.npy").exists()


def test_upload_records_stay_in_the_workspace(tmp_path, ws, synth):
    from fmnist_kaggle.evaluate.submission import make_submission

    make_submission(synth, ["keep"], "mean", "keep", workdir=str(ws))
    outside = tmp_path / "elsewhere" / "keep.csv"
    outside.parent.mkdir()
    shutil.copy(ws / "submissions/keep.csv", outside)
    res = run_cli(
        "submit", str(outside), "-m", "x", "--slug", "s", "--dry-run", *data_args(synth), "--workdir", str(ws)
    )
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in outside.parent.iterdir()) == ["keep.csv"]  # no record written next to it


# ----------------------------------------------------------------------------- files are verified, never executed


class _Pwn:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_planted_pickle_checkpoint_never_runs(tmp_path, ws, synth):
    marker = tmp_path / "pwned"
    fold0 = ws / "oof" / "evil" / "fold_0"
    res = run_cli("fold-train", *data_args(synth), *CLI_TINY, "--run", "evil", "--fold", "1", "--workdir", str(ws))
    assert res.returncode == 0, res.stderr
    fold0.mkdir(parents=True, exist_ok=True)
    import torch

    torch.save({"model": _Pwn(marker), "state": {"epoch": 1}}, fold0 / "checkpoint_seed_0.pt")
    res = run_cli("fold-train", *data_args(synth), *CLI_TINY, "--run", "evil", "--workdir", str(ws))
    assert res.returncode == 0, res.stderr
    assert "unusable checkpoint" in res.stderr and "this seed restarts" in res.stderr
    assert not marker.exists()  # weights_only=True refused the pickle: no code ran
    assert json.loads((ws / "oof/evil/manifest.json").read_text())["complete"]


def test_corrupt_checkpoint_is_discarded_and_the_seed_restarts(ws, synth):
    res = run_cli("fold-train", *data_args(synth), *CLI_TINY, "--run", "ck", "--fold", "1", "--workdir", str(ws))
    assert res.returncode == 0
    (ws / "oof/ck/fold_0").mkdir(exist_ok=True)
    (ws / "oof/ck/fold_0/checkpoint_seed_0.pt").write_bytes(b"PK\x03\x04 truncated garbage")
    for _ in range(2):  # not a crash the first time, and not forever after
        res = run_cli("fold-train", *data_args(synth), *CLI_TINY, "--run", "ck", "--workdir", str(ws))
        assert res.returncode == 0, res.stderr
    assert not (ws / "oof/ck/fold_0/checkpoint_seed_0.pt").exists()


def test_fold_copied_from_a_run_with_other_folds_is_refused_by_name(tmp_path, ws, synth):
    other = tmp_path / "other"
    res = run_cli(
        "fold-train", *data_args(synth), *CLI_TINY, "--fold-seed", "7", "--run", "keep", "--workdir", str(other)
    )
    assert res.returncode == 0, res.stderr
    shutil.rmtree(ws / "oof/keep/fold_1")
    shutil.copytree(other / "oof/keep/fold_1", ws / "oof/keep/fold_1")
    st = run_cli("status", "keep", "--workdir", str(ws))
    assert st.returncode == 1 and "fold 1: foreign" in st.stdout and "fold assignment" in st.stdout
    before = snapshot(ws)
    res = run_cli("fold-train", *data_args(synth), *CLI_TINY, "--run", "keep", "--workdir", str(ws))
    refused(res, "fold_1", "fold assignment")
    assert snapshot(ws) == before


def test_truncated_fold_artifact_shows_corrupt_and_is_retrained(ws, synth):
    val = ws / "oof/keep/fold_0/val_logits.npy"
    val.write_bytes(val.read_bytes()[:-40])
    st = run_cli("status", "keep", "--workdir", str(ws))
    assert st.returncode == 1 and "fold 0: corrupt" in st.stdout and "truncated" in st.stdout
    before = (ws / "oof/keep/fold_1/metrics.json").read_bytes()
    res = run_cli("fold-train", *data_args(synth), *CLI_TINY, "--run", "keep", "--workdir", str(ws))
    assert res.returncode == 0, res.stderr
    assert "fold 0 will be rebuilt" in res.stderr
    assert (ws / "oof/keep/fold_1/metrics.json").read_bytes() == before  # finished work kept
    assert run_cli("status", "keep", "--workdir", str(ws)).returncode == 0


def test_truncated_or_altered_run_arrays_are_refused_by_readers(ws, synth):
    oof = ws / "oof/keep/oof_logits.npy"
    data = bytearray(oof.read_bytes())
    data[-1] ^= 0xFF
    oof.write_bytes(bytes(data))
    for args in (["cv", "keep"], ["blend", "keep", *data_args(synth)]):
        refused(run_cli(*args, "--workdir", str(ws)), "oof_logits.npy", "SHA-256")
    oof.write_bytes(bytes(data[:100]))
    refused(run_cli("cv", "keep", "--workdir", str(ws)), "oof_logits.npy", "truncated")
    assert not (ws / "submissions").exists()


# ----------------------------------------------------------------------------- finite numbers only


def test_diverging_run_stops_with_one_line_and_nothing_finished(ws, synth):
    res = run_cli(
        "fold-train",
        *data_args(synth),
        *CLI_TINY,
        "--optimizer",
        "sgd",
        "--lr",
        "1e12",
        "--run",
        "boom",
        "--workdir",
        str(ws),
    )
    refused(res, "training loss is", "lower --lr")
    assert not list((ws / "oof/boom").glob("fold_*/metrics.json")) and not list(
        (ws / "oof/boom").glob("fold_*/seed_*.json")
    )


def test_non_finite_logits_never_reach_a_submission_and_json_has_no_nan(ws, synth):
    from fmnist_kaggle.storage import atomic
    from fmnist_kaggle.storage.artifacts import write_array
    from fmnist_kaggle.storage.layout import Workspace

    rd = Workspace(ws).run("keep")
    m = json.loads(rd.manifest_path.read_text())
    bad = np.load(rd.test_logits)
    bad[0, 0] = np.nan
    m["files"]["test_logits.npy"] = write_array(rd.test_logits, bad)  # recorded as if a run wrote it
    rd.write_manifest(m)
    refused(run_cli("blend", "keep", *data_args(synth), "--workdir", str(ws)), "test_logits.npy", "NaN")
    assert not (ws / "submissions").exists()
    assert json.loads(atomic.dumps({"a": float("nan"), "b": [float("inf"), 1.0]})) == {"a": None, "b": [None, 1.0]}
    for label in ("nan", "inf", "1.0", "+1"):
        sub = ws / "s.csv"
        sub.write_text("Id,Label\n" + "".join(f"{i},{label if i == 1 else 0}\n" for i in range(1, 51)))
        res = run_cli("validate", str(sub), *data_args(synth))
        assert res.returncode == 2 and "label(s) outside" in res.stderr, (label, res.stderr)


# ----------------------------------------------------------------------------- atomic pairs, stale temps, umask


def test_submission_pair_cannot_disagree_and_stale_temps_are_cleaned(ws, synth):
    sub = ws / "submissions"
    sub.mkdir()
    stale = sub / ".b1.csv.99999999.abcd.tmp"  # a writer killed mid-write (pid long gone)
    stale.write_text("half")
    res = run_cli("blend", "keep", "--name", "b1", *data_args(synth), "--workdir", str(ws))
    assert res.returncode == 0, res.stderr
    assert not stale.exists() and not list(sub.glob(".*.tmp"))
    meta = json.loads((sub / "b1.json").read_text())
    assert meta["sha256"] == hashlib.sha256((sub / "b1.csv").read_bytes()).hexdigest()
    # a kill between the CSV's rename and the record's: the record describes another CSV
    lines = (sub / "b1.csv").read_text().splitlines()
    lines[1] = lines[1].split(",")[0] + "," + ("1" if not lines[1].endswith(",1") else "2")
    (sub / "b1.csv").write_text("\n".join(lines) + "\n")
    refused(
        run_cli(
            "submit",
            str(sub / "b1.csv"),
            "-m",
            "x",
            "--slug",
            "s",
            "--dry-run",
            *data_args(synth),
            "--workdir",
            str(ws),
        ),
        "b1.json",
        "another version",
    )


def test_files_honour_the_umask(ws):
    for p in [ws / "oof/keep/manifest.json", ws / "oof/keep/oof_logits.npy", ws / "oof/keep/fold_0/model_seed_0.pt"]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~_umask(), p


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


# ----------------------------------------------------------------------------- hostile inputs


def _npy_header(shape: tuple, dtype: str = "<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def test_hostile_array_files_are_refused_early(tmp_path, ws):
    giant = tmp_path / "giant.npy"
    giant.write_bytes(_npy_header((10**12, 28, 28)) + b"\0" * 3000)
    refused(run_cli("data", "check", "--train", str(giant), "--png", str(tmp_path / "g.png")), "giant.npy", "limit")
    short = tmp_path / "short.npy"
    short.write_bytes(_npy_header((100, 28, 28)) + b"\0" * 3000)
    refused(run_cli("data", "check", "--train", str(short), "--png", str(tmp_path / "g.png")), "short.npy", "truncated")
    bomb = tmp_path / "bomb.npz"  # the member's header says 10 images, the zip entry expands to 64 MB
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("features.npy", _npy_header((10, 28, 28), "|u1") + b"\0" * (64 << 20))
    assert bomb.stat().st_size < 200_000
    refused(run_cli("data", "check", "--train", str(bomb), "--png", str(tmp_path / "g.png")), "bomb.npz", "declares")
    idx = tmp_path / "train-images-idx3-ubyte.gz"  # a valid header for 10 images, then 64 MB of zeros
    idx.write_bytes(gzip.compress(b"\0\0\x08\x03" + struct.pack(">3I", 10, 28, 28) + b"\0" * (64 << 20), 1))
    refused(
        run_cli("data", "check", "--train", str(idx), "--png", str(tmp_path / "g.png")),
        "train-images-idx3-ubyte.gz",
        "decompression bomb",
    )
    assert not (tmp_path / "g.png").exists()


def test_fifos_devices_and_folders_are_not_regular_files(tmp_path, ws, synth):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for args in (
        ["data", "check", "--competition", str(fifo)],
        ["data", "check", "--train", "/dev/zero"],
        ["data", "check", "--train", str(tmp_path)],
        ["validate", str(fifo), *data_args(synth)],
        ["validate", "/dev/zero", *data_args(synth)],
        ["blend", "keep", *data_args(synth), "--sample-submission", str(fifo), "--workdir", str(ws)],
        ["fold-train", "--config", str(fifo), *data_args(synth)],
    ):
        res = run_cli(*args, timeout=60)  # a hang fails here instead of blocking forever
        refused(res)
        assert "not a regular file" in res.stderr or "is a folder" in res.stderr, (args, res.stderr)


def test_unusable_output_folder_subset_and_batch_size(tmp_path, ws, synth):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    refused(run_cli("fold-train", *data_args(synth), *CLI_TINY, "--run", "r", "--workdir", str(blocker)), str(blocker))
    refused(
        run_cli("fold-train", *data_args(synth), *CLI_TINY, "--subset", "3", "--run", "r", "--workdir", str(ws)),
        "--subset 3 is too small",
    )
    res = run_cli(
        "fold-train", *data_args(synth), *CLI_TINY, "--batch-size", "4096", "--run", "big", "--workdir", str(ws)
    )
    assert res.returncode == 0 and "larger than the fold's 100 training rows" in res.stderr, res.stderr


def test_runs_lists_the_workspace_and_models_counts_for_k_classes(tmp_path, ws, synth):
    assert (
        run_cli(
            "fold-train", *data_args(synth), *CLI_TINY, "--fold", "0", "--run", "half", "--workdir", str(ws)
        ).returncode
        == 0
    )
    res = run_cli("runs", "--workdir", str(ws), "--json")
    assert res.returncode == 0, res.stderr
    rows = {r["run"]: r for r in json.loads(res.stdout)}
    keep = json.loads((ws / "oof/keep/manifest.json").read_text())
    assert (
        set(rows) == {"keep", "half"}
        and rows["keep"]["cv_acc"] == keep["cv"]["acc"]
        and rows["keep"]["folds_done"] == 2
    )
    assert rows["half"]["folds_done"] == 1 and rows["half"]["cv_acc"] is None
    assert any(
        line.startswith("half ") and " 1/2 " in line
        for line in run_cli("runs", "--workdir", str(ws)).stdout.splitlines()
    )

    five = {r["model"]: r["params"] for r in json.loads(run_cli("models", "--classes", "5", "--json").stdout)["models"]}
    ten = {r["model"]: r["params"] for r in json.loads(run_cli("models", "--classes", "10", "--json").stdout)["models"]}
    assert ten["lenet5"] - five["lenet5"] == 5 * (84 + 1)  # the last layer is 84 -> K
    assert keep["params"] == ten["lenet5"]  # the count a 10-class run records
    refused(run_cli("models", "--classes", "1"), "--classes must be at least 2")
