"""The newest surfaces hold (issue 49): a record never runs code, your own model is checked before
it trains, labels as written, a full disk named, sizes no machine builds refused, validate names
the ids. Every test goes through the entry point the user called."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, synthetic_images, write_csv

import fmnist_kaggle as fk
from fmnist_kaggle.errors import FkaggleError

TINY = ["--model", "lenet5", "--folds", "2", "--epochs", "1", "--batch-size", "16", "--no-progress"]


def _data(synth) -> list[str]:
    return ["--train", str(synth.train), "--test", str(synth.test)]


def test_reading_a_run_never_imports_or_calls_what_its_record_names(tmp_path, synth):
    assert run_cli("fold-train", *_data(synth), *TINY, "--run", "r", cwd=tmp_path).returncode == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    evil = {"force": True, "filename": str(victim), "filemode": "w"}
    manifest = tmp_path / "oof/r/manifest.json"
    m = json.loads(manifest.read_text())
    m["model"] = m["config"]["model"] = "logging:basicConfig"
    m["config"]["model_kwargs"] = evil
    manifest.write_text(json.dumps(m))
    config = tmp_path / "oof/r/config.toml"
    config.write_text(config.read_text().replace('model = "lenet5"', 'model = "logging:basicConfig"'))
    for args in (["predict", "r", "--test", str(synth.test), "--name", "p"], ["explain", "r", *_data(synth)]):
        res = run_cli(*args, cwd=tmp_path)
        assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
        assert "never imports code a file names" in res.stderr and "Traceback" not in res.stderr
        assert victim.read_text() == "precious"  # nothing the record named ran
    for args in (["status", "r"], ["runs"], ["cv", "r"], ["report"]):  # reading a run needs no model
        res = run_cli(*args, cwd=tmp_path)
        assert res.returncode == 0, (args, res.stderr)
    assert victim.read_text() == "precious"


MODS = """
import torch, torch.nn as nn

class Out(nn.Module):
    def __init__(self, k, shape="ok"):
        super().__init__()
        self.k, self.shape, self.lin = k, shape, nn.Linear(784, k + 3 if shape == "wide" else k)
    def forward(self, x):
        y = self.lin(x.flatten(1))
        if self.shape == "flat":
            return y[:, 0]
        if self.shape == "nan":
            return y * float("nan")
        return y

def number(num_classes=10, in_chans=1):
    return 42

def wide(num_classes=10, in_chans=1):
    return Out(num_classes, "wide")

def flat(num_classes=10, in_chans=1):
    return Out(num_classes, "flat")

def nan(num_classes=10, in_chans=1):
    return Out(num_classes, "nan")

def small_cnn(num_classes=10, in_chans=1):
    return Out(num_classes)
"""


@pytest.mark.parametrize(
    ("factory", "said"),
    [
        ("number", "its factory returned int, not a torch.nn.Module"),
        ("wide", "expected logits of shape (2, 10)"),
        ("flat", "expected logits of shape (2, 10)"),
        ("nan", "not finite"),
        ("smal_cnn", "did you mean mods:small_cnn"),
    ],
)
def test_your_own_model_is_checked_before_it_trains_and_nothing_claims_a_fold(tmp_path, synth, factory, said):
    (tmp_path / "mods.py").write_text(MODS)
    res = run_cli("fold-train", *_data(synth), *TINY[2:], "--model", f"mods:{factory}", "--run", "m", cwd=tmp_path)
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert said in res.stderr and f"mods:{factory}" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "oof/m").exists()


def test_your_own_model_from_python_raises_fkaggle_error_and_writes_nothing(tmp_path, synth, monkeypatch):
    (tmp_path / "mods.py").write_text(MODS)
    monkeypatch.syspath_prepend(str(tmp_path))
    import mods

    cfg = fk.build_config(model="lenet5", folds=2, epochs=1, batch_size=16)
    for factory in (mods.number, mods.wide):
        with pytest.raises(FkaggleError, match=rf"model {factory.__name__}: "):
            fk.fold_train(synth, cfg, model=factory, run="py", workdir=tmp_path, progress=False)
        assert not (tmp_path / "oof/py").exists()
    run = fk.fold_train(synth, cfg, model=mods.small_cnn, run="ok", workdir=tmp_path, progress=False)
    assert run.cv["acc"] > 0


def test_labels_are_compared_and_written_back_as_written(tmp_path):
    x, y = synthetic_images(30, k=5)
    xt, yt = synthetic_images(6, k=5, seed=1)
    mixed = np.array([f"{v + 1}" if v != 1 else "1.0" for v in y], dtype=object)  # class 2 written '1.0'
    train = write_csv(tmp_path / "mixed.csv", x, mixed)
    check = run_cli("data", "check", "--train", str(train), "--json", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    seen = json.loads(check.stdout)["train"]
    assert seen["classes"] == 5 and sorted(map(str, seen["label_values"])) == ["1", "1.0", "3", "4", "5"], seen

    dotted = np.array([f"{v + 1}.0" for v in y], dtype=object)  # every label written '1.0'..'5.0'
    train = write_csv(tmp_path / "dotted.csv", x, dotted)
    test = write_csv(tmp_path / "test.csv", xt, None)
    data = ["--train", str(train), "--test", str(test)]
    assert run_cli("fold-train", *data, *TINY, "--run", "d", cwd=tmp_path).returncode == 0
    sub = run_cli("blend", "d", "--name", "d", *data, cwd=tmp_path)
    assert sub.returncode == 0, sub.stderr
    body = (tmp_path / "submissions/d.csv").read_text().splitlines()[1:]
    assert body and all(line.split(",")[1].endswith(".0") for line in body), body[:3]  # as written
    plain = tmp_path / "plain.csv"
    plain.write_text(
        "\n".join(
            [(tmp_path / "submissions/d.csv").read_text().splitlines()[0]] + [line.removesuffix(".0") for line in body]
        )
    )
    bad = run_cli("validate", str(plain), *data, cwd=tmp_path)
    assert bad.returncode != 0 and "label(s) outside" in bad.stdout + bad.stderr  # '4' is not '4.0'


def test_a_full_disk_is_named_in_one_line_with_the_path():
    from fmnist_kaggle.storage.atomic import WriteFailed, disk_errors_named

    target = Path("/dev/full")  # the kernel's always-full device: a real ENOSPC
    with pytest.raises(WriteFailed, match=r"cannot write /dev/full: no space left on the device"):
        with disk_errors_named(target), open(target, "wb") as f:
            f.write(b"x" * 65536)
            f.flush()


def test_a_width_no_machine_builds_is_refused_in_one_line(tmp_path, synth):
    (tmp_path / "huge.toml").write_text(
        f'[[entry]]\nname = "huge"\nwidths = [{2**63 - 1}]\ntrain = {{ model = "fmnist_resnet" }}\nepochs = 1\n'
    )
    for extra in (["--show-plan"], []):
        res = run_cli("auto", *_data(synth), "--portfolio", "huge.toml", "--time-limit", "1m", *extra, cwd=tmp_path)
        assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
        assert "too large for any machine" in res.stderr


def test_validate_names_the_missing_and_unknown_ids(tmp_path, synth):
    assert run_cli("fold-train", *_data(synth), *TINY, "--run", "v", cwd=tmp_path).returncode == 0
    assert run_cli("blend", "v", "--name", "v", *_data(synth), cwd=tmp_path).returncode == 0
    lines = (tmp_path / "submissions/v.csv").read_text().splitlines()
    gone = lines[5].split(",")[0]
    (tmp_path / "cut.csv").write_text("\n".join(lines[:5] + lines[6:] + ["99999,1"]) + "\n")
    res = run_cli("validate", str(tmp_path / "cut.csv"), *_data(synth), cwd=tmp_path)
    said = res.stdout + res.stderr
    assert res.returncode != 0 and f"missing '{gone}'" in said and "unknown '99999'" in said, said
    assert os.path.exists(tmp_path / "submissions/v.csv")


def test_on_a_terminal_log_lines_start_on_their_own_line_not_on_a_progress_bar(tmp_path, synth):
    """stderr a real terminal (a pty): bars draw, and every log line starts at a line's start."""
    import pty
    import subprocess

    primary, secondary = pty.openpty()
    args = ["fold-train", *_data(synth), *TINY[:-1], "--epochs", "2", "--run", "tty"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "fmnist_kaggle.cli", *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=secondary
    )
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 65536)
        except OSError:  # the terminal closed: the command ended
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(primary)
    screen = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0 and "fold 1: acc" in screen, screen[-500:]
    for line in screen.replace("\r\n", "\n").split("\n"):
        if "fold 0: acc" in line or "fold 1: acc" in line:
            shown = line.split("\r")[-1].lstrip()  # what the terminal shows after the last carriage return
            assert shown.startswith("fold "), repr(line)


def test_a_run_trained_without_a_test_file_is_refused_for_a_submission_in_one_line(tmp_path):
    x, y = synthetic_images(20)
    xt, _ = synthetic_images(5, seed=1)
    cfg = fk.build_config(model="lenet5", folds=2, epochs=1, batch_size=16)
    fk.fold_train(fk.load_competition(X=x, y=y), cfg, run="blind", workdir=tmp_path, progress=False)
    with pytest.raises(FkaggleError, match="run blind was trained without a test file, so it has no test predictions"):
        fk.make_submission(fk.load_competition(X=x, y=y, X_test=xt), ["blind"], name="s", workdir=tmp_path)
    assert not (tmp_path / "submissions/s.csv").exists()
